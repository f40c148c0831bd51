"""The fused pipeline behaves exactly like the five operators piped one after another."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import orjson
import pytest
import reactivex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reactivex import Observable
from reactivex.abc import ObserverBase
from reactivex.testing import ReactiveTest, TestScheduler

from rxalpaca import ops
from rxalpaca.codec import Codec
from rxalpaca.errors import FrameError
from rxalpaca.frames import Frame, Opcode
from rxalpaca.metrics import Metrics

T, C = Opcode.TEXT, Opcode.CONTINUATION
Q = b'{"T":"q","S":"%s","bp":1,"bs":1,"ap":2,"as":1,"t":"2024-01-01T00:00:00.5Z"}'

FRAMES: list[Frame | FrameError] = [
    Frame(b'[{"T":"success","msg":"connected"}]', T, True, 1),
    Frame(b"[" + Q % b"AAPL" + b"," + Q % b"MSFT" + b"]", T, True, 2),
    Frame(b"[" + Q % b"AAPL", T, False, 3),
    Frame(b"]", C, True, 4),
    Frame(b"garbage", T, True, 5),
    Frame(b"", Opcode.PING, True, 6),
    FrameError("refused by the transport", b"", 7),
    Frame(b"[" + Q % b"IBM" + b',{"T":"zz"},' + Q % b"AAPL" + b"]", T, True, 8),
    Frame(b"x" * 300, C, True, 9),
]


class Sink(ObserverBase[Any]):
    def __init__(self) -> None:
        self.items: list[Any] = []

    def on_next(self, v: Any) -> None:
        self.items.append(v)

    def on_error(self, e: Exception) -> None:
        raise AssertionError(e)

    def on_completed(self) -> None:
        pass


def run(fused: bool) -> tuple[list[Any], list[Any], dict[str, Any]]:
    metrics = Metrics()
    router = ops.Router(metrics)
    sink = Sink()
    router.add("quotes", "AAPL", sink)
    codec = Codec("stocks", "json")
    op: list[Callable[[Observable[Any]], Observable[Any]]]
    if fused:
        op = [ops.pipeline(codec, metrics, router, 200)]
    else:
        op = [
            ops.reassemble(200),
            ops.validate(),
            ops.decode(codec),
            ops.meter(metrics),
            ops.route(router),
        ]
    rest: list[Any] = []
    reactivex.from_iterable(FRAMES).pipe(*op).subscribe(rest.append)
    snap = metrics.snapshot()
    for volatile in ("observer_time_p50_us", "observer_time_p99_us", "observer_batches"):
        snap.pop(volatile)
    return sink.items, [repr(x) for x in rest], snap


def test_fused_equals_piped() -> None:
    assert run(fused=True) == run(fused=False)
    delivered, rest, snap = run(fused=True)
    assert [q.received_ns for q in delivered] == [2, 4, 8]
    assert snap["frames_received"] == snap["frames_decoded"] + snap["frames_failed"]
    assert len(rest) >= 4  # greeting, garbage, transport error, unknown T


# ---------------------------------------------------------------- property: one mechanism

MAX = 200  # max_message_bytes of both paths: small, so "oversized" is easy to reach
_QUOTE = {"T": "q", "S": "AAPL", "bp": 1, "bs": 1, "ap": 2, "as": 1, "t": "2024-01-01T00:00:00Z"}
_MESSAGES = [
    _QUOTE,
    {**_QUOTE, "S": "MSFT"},
    {"T": "t", "S": "AAPL", "p": 1.5, "s": 3, "c": ["@"], "t": "2024-01-01T00:00:01Z"},
    {"T": "success", "msg": "authenticated"},
    {"T": "subscription", "trades": ["AAPL"], "quotes": ["AAPL", "MSFT"]},
    {"T": "zz"},  # unknown T
    {"T": "q", "S": "AAPL"},  # missing fields
]


@st.composite
def _payloads(draw: st.DrawFn) -> bytes | str:
    """A whole message's bytes: valid frames in either encoding, and every kind of bad one."""
    kind = draw(st.sampled_from(["json", "msgpack", "str", "bad", "big", "raw"]))
    messages = draw(st.lists(st.sampled_from(_MESSAGES), max_size=3))
    if kind == "json":
        return orjson.dumps(messages)
    if kind == "msgpack":
        return msgspec.msgpack.encode(messages)
    if kind == "str":
        return orjson.dumps(messages).decode()
    if kind == "big":
        return orjson.dumps([_QUOTE] * draw(st.integers(2, 5)))  # over MAX
    if kind == "bad":
        return draw(
            st.sampled_from(
                [b"", b"[]", b"\x90", b"{}", b"[{", b"[\xff\xfe]", b"\xdc\x00", b"\xc1", b"garbage"]
            )
        )
    return draw(st.binary(max_size=40))


@st.composite
def _items(draw: st.DrawFn) -> Sequence[Frame | FrameError]:
    """One step of a stream: a whole frame, a (maybe partial) fragmented message, a stray
    continuation, a control frame or an error value from the transport."""
    kind = draw(st.sampled_from(["whole", "fragments", "continuation", "control", "error"]))
    ns = draw(st.integers(1, 10**6))
    if kind == "whole":
        return [Frame(draw(_payloads()), draw(st.sampled_from([T, Opcode.BINARY])), True, ns)]
    if kind == "continuation":
        return [Frame(draw(_payloads()), C, draw(st.booleans()), ns)]
    if kind == "control":
        op = draw(st.sampled_from([Opcode.PING, Opcode.PONG, Opcode.CLOSE]))
        return [Frame(draw(st.binary(max_size=8)), op, True, ns)]
    if kind == "error":
        return [FrameError("refused by the transport", draw(st.binary(max_size=8)), ns)]
    payload = draw(_payloads())
    data = payload.encode() if isinstance(payload, str) else payload
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), min_size=1, max_size=3)))
    parts = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    frames = [
        Frame(part, draw(st.sampled_from([T, Opcode.BINARY])) if i == 0 else C, False, ns + i)
        for i, part in enumerate(parts)
    ]
    if draw(st.booleans()):  # finished; otherwise left partial for what follows
        frames[-1] = frames[-1]._replace(fin=True)
    return frames


def _normal(value: Any) -> Any:
    """Comparable: a FrameError by type, reason and excerpt (not its clock-read time)."""
    if isinstance(value, FrameError):
        return (type(value), value.reason, value.excerpt)
    return value


def _through(fused: bool, items: list[Frame | FrameError], end: str) -> tuple[Any, ...]:
    """Everything both paths can show: emitted items and the terminal notification, the
    records delivered to subscribers, and the metrics."""
    scheduler = TestScheduler()
    metrics = Metrics()
    router = ops.Router(metrics)
    delivered = Sink()
    for channel in ("quotes", "trades"):
        router.add(channel, "*", delivered)
    codec = Codec("stocks", "json")
    if fused:
        ops_: list[Any] = [ops.pipeline(codec, metrics, router, MAX)]
    else:
        ops_ = [ops.reassemble(MAX), ops.validate(), ops.decode(codec), ops.meter(metrics)]
        ops_.append(ops.route(router))
    notes = [ReactiveTest.on_next(210 + i, item) for i, item in enumerate(items)]
    at = 210 + len(items)
    notes.append(
        ReactiveTest.on_completed(at) if end == "completed" else ReactiveTest.on_error(at, LOST)
    )
    source = scheduler.create_cold_observable(*notes)
    res = scheduler.start(lambda: source.pipe(*ops_), created=0, subscribed=0)
    out = [
        (m.time, m.value.kind, _normal(m.value.value if m.value.kind == "N" else None))
        for m in res.messages
    ]
    errors = [m.value.exception for m in res.messages if m.value.kind == "E"]
    snap = metrics.snapshot()
    for volatile in ("observer_time_p50_us", "observer_time_p99_us", "observer_batches"):
        snap.pop(volatile)
    return out, errors, delivered.items, snap


LOST = ConnectionError("connection lost")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(_items(), max_size=12),
    end=st.sampled_from(["completed", "error"]),
)
def test_fused_pipeline_is_the_five_operators_piped(
    steps: list[Sequence[Frame | FrameError]], end: str
) -> None:
    items = [item for step in steps for item in step]
    fused = _through(True, items, end)
    piped = _through(False, items, end)
    assert fused == piped
    out, errors, _, _ = fused
    assert out[-1][1] == ("C" if end == "completed" else "E")  # the terminal notification
    assert errors == ([] if end == "completed" else [LOST])


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "piped"])
def test_a_message_cut_off_by_completion_is_reported_by_both(fused: bool) -> None:
    """The case that once told them apart (issue #9): fin=0, then the stream completes."""
    out, _, _, _ = _through(fused, [Frame(b"[", T, False, 1)], "completed")
    assert [(kind, value[1] if value else None) for _, kind, value in out] == [
        ("N", "stream ended inside a fragmented message"),
        ("C", None),
    ]


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "piped"])
def test_an_empty_array_delivers_nothing_a_zero_byte_frame_is_an_error(fused: bool) -> None:
    """§6: a frame is an array; ``[]`` is valid with nothing to deliver, zero bytes is not."""
    frames: list[Frame | FrameError] = [
        Frame(b"[]", T, True, 1),
        Frame(b" [ ]", T, True, 2),
        Frame(b"", T, True, 3),
    ]
    out, _, delivered, snap = _through(fused, frames, "completed")
    assert [(kind, value[1] if value else None) for _, kind, value in out] == [
        ("N", "empty frame (zero bytes)"),
        ("C", None),
    ]
    assert delivered == []
    assert (snap["frames_received"], snap["frames_decoded"], snap["frames_failed"]) == (3, 2, 1)
