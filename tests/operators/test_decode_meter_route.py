"""decode → meter → route: batches, counters, O(1) routing and handler isolation."""

from __future__ import annotations

from typing import Any

import pytest
import reactivex
from reactivex.abc import ObserverBase
from reactivex.testing import ReactiveTest, TestScheduler

from rxalpaca import ops
from rxalpaca.codec import Codec
from rxalpaca.errors import FrameError
from rxalpaca.frames import Frame, Opcode
from rxalpaca.metrics import Metrics
from rxalpaca.models import ErrorMessage, Quote, SuccessMessage, Trade, Unknown

on_next, on_completed = ReactiveTest.on_next, ReactiveTest.on_completed

TRADE = (
    b'{"T":"t","S":"%s","i":1,"x":"V","p":1.5,"s":10,"c":["@"],"z":"C",'
    b'"t":"2024-01-02T03:04:05.123456789Z"}'
)
QUOTE = (
    b'{"T":"q","S":"%s","bx":"V","bp":1.0,"bs":1,"ax":"V","ap":1.1,"as":2,"c":["R"],"z":"C",'
    b'"t":"2024-01-02T03:04:05Z"}'
)


def frame(*parts: bytes, t: int = 7) -> Frame:
    return Frame(b"[" + b",".join(parts) + b"]", Opcode.TEXT, True, t)


class Sink(ObserverBase[Any]):
    def __init__(self, fail: bool = False) -> None:
        self.items: list[Any] = []
        self.fail = fail

    def on_next(self, v: Any) -> None:
        self.items.append(v)
        if self.fail:
            raise RuntimeError("user bug")

    def on_error(self, e: Exception) -> None:  # pragma: no cover - not used
        raise AssertionError(e)

    def on_completed(self) -> None:
        pass


def pipeline(frames: list[Frame | FrameError], router: ops.Router, metrics: Metrics) -> list[Any]:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(
        *[on_next(210 + i, f) for i, f in enumerate(frames)], on_completed(400)
    )
    res = scheduler.start(
        lambda: xs.pipe(ops.decode(Codec("stocks", "json")), ops.meter(metrics), ops.route(router))
    )
    return [m.value.value for m in res.messages if m.value.kind == "N"]


def test_decode_emits_one_batch_per_frame_with_received_time() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(
        on_next(210, frame(TRADE % b"AAPL", QUOTE % b"MSFT", t=99))
    )
    res = scheduler.start(lambda: xs.pipe(ops.decode(Codec("stocks", "json"))))
    [batch] = [m.value.value for m in res.messages]
    assert [type(x) for x in batch.items] == [Trade, Quote]
    assert isinstance(batch.items[0], Trade)
    assert batch.received_ns == 99 and batch.items[0].received_ns == 99
    assert not batch.failed


def test_route_delivers_by_channel_and_symbol_and_star() -> None:
    metrics = Metrics()
    router = ops.Router(metrics)
    aapl_trades, star_trades, msft_quotes = Sink(), Sink(), Sink()
    router.add("trades", "AAPL", aapl_trades)
    router.add("trades", "*", star_trades)
    router.add("quotes", "MSFT", msft_quotes)
    rest = pipeline(
        [
            frame(TRADE % b"AAPL", TRADE % b"TSLA", QUOTE % b"MSFT", QUOTE % b"IBM"),
            frame(b'{"T":"success","msg":"connected"}'),
            frame(b'{"T":"zz","S":"AAPL"}'),
        ],
        router,
        metrics,
    )
    assert [t.symbol for t in aapl_trades.items] == ["AAPL"]
    assert [t.symbol for t in star_trades.items] == ["AAPL", "TSLA"]
    assert [q.symbol for q in msft_quotes.items] == ["MSFT"]
    assert [type(x) for x in rest] == [SuccessMessage, Unknown]
    assert metrics.messages_delivered == 3 and metrics.messages_unrouted == 1
    assert metrics.messages_balance() and metrics.frames_balance()
    assert metrics.messages_by_type["Trade"] == 2


def test_a_raising_observer_harms_nobody_else() -> None:
    metrics = Metrics()
    seen: list[tuple[BaseException, object]] = []
    router = ops.Router(metrics, lambda e, rec, o: seen.append((e, rec)))
    bad, good = Sink(fail=True), Sink()
    router.add("trades", "AAPL", bad)
    router.add("trades", "AAPL", good)
    pipeline([frame(TRADE % b"AAPL", TRADE % b"AAPL")], router, metrics)
    assert len(good.items) == 2 and len(bad.items) == 2
    assert len(seen) == 2 and isinstance(seen[0][0], RuntimeError)
    assert metrics.handler_errors == 2 and metrics.messages_delivered == 2


def test_all_observers_raising_counts_failed() -> None:
    metrics = Metrics()
    router = ops.Router(metrics)
    router.add("trades", "AAPL", Sink(fail=True))
    pipeline([frame(TRADE % b"AAPL")], router, metrics)
    assert metrics.messages_failed == 1 and metrics.messages_balance()


def test_bad_frames_flow_as_error_values_and_are_counted() -> None:
    metrics = Metrics()
    router = ops.Router(metrics)
    rest = pipeline(
        [
            Frame(b"not json", Opcode.TEXT, True, 1),
            FrameError("oversized", b"[...", 2),
            frame(TRADE % b"AAPL", b'{"T":"t","S":"X"}'),
        ],
        router,
        metrics,
    )
    assert all(isinstance(x, FrameError) for x in rest) and len(rest) == 3
    assert metrics.frames_received == 3 and metrics.frames_failed == 2
    assert metrics.frames_decoded == 1 and metrics.decode_failures == 3
    assert metrics.frames_balance()


def test_remove_leaves_no_entry_behind() -> None:
    router = ops.Router()
    sinks = [Sink() for _ in range(3)]
    for s in sinks:
        router.add("quotes", "AAPL", s)
    assert router.observer_count() == 3
    for s in sinks:
        assert router.remove("quotes", "AAPL", s)
    assert router.entries() == 0 and not router.remove("quotes", "AAPL", sinks[0])


def test_news_routes_by_symbols_once_per_observer() -> None:
    metrics = Metrics()
    router = ops.Router(metrics)
    both, star = Sink(), Sink()
    router.add("news", "AAPL", both)
    router.add("news", "MSFT", both)
    router.add("news", "*", star)
    news = (
        b'{"T":"n","id":1,"headline":"h","created_at":"2024-01-01T00:00:00Z",'
        b'"symbols":["AAPL","MSFT"]}'
    )
    untagged = b'{"T":"n","id":2,"headline":"h","created_at":"2024-01-01T00:00:00Z","symbols":[]}'
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(on_next(210, frame(news, untagged)))
    scheduler.start(
        lambda: xs.pipe(ops.decode(Codec("news", "json")), ops.meter(metrics), ops.route(router))
    )
    assert [n.id for n in both.items] == [1]
    assert [n.id for n in star.items] == [1, 2]


def test_errors_in_the_rest_are_emitted_in_order() -> None:
    router = ops.Router()
    out = pipeline(
        [frame(b'{"T":"error","code":405,"msg":"symbol limit exceeded"}')], router, Metrics()
    )
    assert out == [ErrorMessage(code=405, msg="symbol limit exceeded")]


@pytest.mark.parametrize("n", [1, 1000])
def test_route_cost_does_not_depend_on_subscriptions(n: int) -> None:
    """Structural check: dispatch touches only the entries of the message's symbol."""
    router = ops.Router()
    sinks = [Sink() for _ in range(n)]
    for i, s in enumerate(sinks):
        router.add("trades", f"S{i}", s)
    codec = Codec("stocks", "json")
    items = codec.decode(b"[" + TRADE % b"S0" + b"]")
    router.dispatch(items)
    assert len(sinks[0].items) == 1
    assert all(not s.items for s in sinks[1:])


def test_decode_never_raises_on_garbage_through_reactivex() -> None:
    got: list[Any] = []
    reactivex.of(Frame(b"\xff\xfe", Opcode.BINARY, True, 1)).pipe(
        ops.decode(Codec("stocks", "msgpack"))
    ).subscribe(got.append)
    assert got[0].failed
