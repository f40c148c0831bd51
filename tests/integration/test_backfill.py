"""``rxalpaca.backfill``: the bars a gap lost, fetched from the embedded server's REST
history through alpaca-py, delivered in place; failures on ``errors``, never fatal."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from rxalpaca import StreamClient
from rxalpaca.backfill import (
    AlpacaHistory,
    Backfill,
    BackfilledBar,
    BackfillError,
    BarSource,
    backfill,
    decode_bars,
)
from rxalpaca.errors import AuthFailed, ConnectionLostError, HandlerError
from rxalpaca.models import Bar, CryptoBar, Gap
from rxalpaca.testing import DEFAULT_KEY, DEFAULT_SECRET, AlpacaStreamServer
from tests.conftest import TIMING_FACTOR

from .conftest import Collector

pytestmark = pytest.mark.timeout(60)

MIN = 60_000_000_000


def bar(sym: str, t: int, price: float = 100.0) -> dict[str, Any]:
    return {"T": "b", "S": sym, "o": price, "h": price + 1, "l": price - 1, "c": price + 0.5,
            "v": 100, "t": t, "n": 3, "vw": price + 0.25}  # fmt: skip


def history(server: AlpacaStreamServer, secret: str = DEFAULT_SECRET) -> AlpacaHistory:
    return AlpacaHistory(DEFAULT_KEY, secret, url=server.rest_url)


class Gaps:
    def __init__(self, client: StreamClient) -> None:
        self.items: list[Gap] = []
        self.event = threading.Event()
        client.gaps.subscribe(self.on)

    def on(self, gap: Gap) -> None:
        self.items.append(gap)
        self.event.set()

    def wait(self) -> Gap:
        assert self.event.wait(10 * TIMING_FACTOR), "no gap"
        return self.items[-1]


def until(pred: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait for a condition the server offers no event for (its market's progress)."""
    deadline = time.monotonic() + timeout * TIMING_FACTOR
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def fields(b: Bar) -> tuple[Any, ...]:
    return (b.timestamp_ns, b.open, b.high, b.low, b.close, b.volume, b.trade_count, b.vwap)


def wire(h: dict[str, Any]) -> tuple[Any, ...]:
    return (h["t"], h["o"], h["h"], h["l"], h["c"], h["v"], h["n"], h["vw"])


def test_a_drop_in_a_paced_stream_is_filled_with_exactly_the_missing_bars(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
) -> None:
    """The issue's proof: the gap holds exactly what the server sent that the client
    never got (and what it made while the socket was mute); backfill delivers exactly
    those bars, in order, before live data resumes, and nothing else."""
    client = make_client(alpaca_server)
    gaps = Gaps(client)
    filled, live = collector(), collector()
    Backfill(client, history(alpaca_server)).bars("AAPL").subscribe(filled)
    client.bars("AAPL").subscribe(live)
    alpaca_server.wait_for_subscriptions({"bars": {"AAPL"}})
    # Trades only (not subscribed): ~10 per virtual minute, so ~40 bars a second.
    alpaca_server.start_market(symbols=["AAPL"], rate=400, mix={"t": 1.0}, step_ns=6 * 10**9)
    live.wait_for(10, 10 * TIMING_FACTOR)
    first = alpaca_server.wait_for_authenticated(1)
    # Mute the socket while the market goes on: bars made, never sent; then drop it,
    # losing what is in flight.
    alpaca_server.mute(first)
    made = len(alpaca_server.bar_history("AAPL"))
    until(lambda: len(alpaca_server.bar_history("AAPL")) >= made + 5, "bars while muted")
    alpaca_server.drop(first)
    gap = gaps.wait()
    second = alpaca_server.wait_for_subscriptions({"bars": {"AAPL"}})
    n = len(live.items)
    live.wait_for(n + 10, 10 * TIMING_FACTOR)
    alpaca_server.stop_market()
    last = live.items[-1].timestamp_ns
    until(lambda: bool(filled.items) and filled.items[-1].timestamp_ns >= last, "the last bar")

    # The gap: live bars before and after it, none inside.
    assert gaps.items == [gap] and gap.channels == ("bars",) and gap.symbols == ("AAPL",)
    assert gap.last_before_ns is not None and gap.first_after_ns is not None
    before = [b for b in live.items if b.received_ns <= gap.last_before_ns]
    after = [b for b in live.items if b.received_ns >= gap.first_after_ns]
    assert before and after and len(before) + len(after) == len(live.items)

    def key(b: Bar) -> tuple[Any, ...]:
        return (b.timestamp_ns, b.open, b.high, b.low, b.close)

    def sent(conn: int) -> list[tuple[Any, ...]]:
        info = alpaca_server.connection(conn)
        assert len(info.sent_data) == info.sent_data_count  # the whole log is kept
        r = [x.record for x in info.sent_data if x.T == "b"]
        return [(x["t"], x["o"], x["h"], x["l"], x["c"]) for x in r]

    sent_first, sent_second = sent(first.id), sent(second.id)
    assert [key(b) for b in before] == sent_first[: len(before)]
    assert [key(b) for b in after] == sent_second[: len(after)]
    in_flight = sent_first[len(before) :]  # sent on the dropped socket, never received

    # What is missing: every bar the server made between the last before and the first after.
    made_bars = alpaca_server.bar_history("AAPL")
    t0, t1 = before[-1].timestamp_ns, after[0].timestamp_ns
    missing = [h for h in made_bars if t0 < h["t"] < t1]
    assert len(missing) >= 5  # at least the muted ones
    assert {x[0] for x in in_flight} <= {h["t"] for h in missing}

    # Backfill delivered exactly those, marked, with the server's values, in place.
    backfilled = [b for b in filled.items if isinstance(b, BackfilledBar)]
    assert [fields(b) for b in backfilled] == [wire(h) for h in missing]
    assert all(type(b) is Bar for b in filled.items if b not in backfilled)
    times = [b.timestamp_ns for b in filled.items]
    assert times == sorted(set(times))  # in order, once each
    assert times == [h["t"] for h in made_bars if times[0] <= h["t"] <= times[-1]]  # no hole
    # ... before live data resumed: every live bar after the gap comes after them.
    first_after = next(i for i, b in enumerate(filled.items) if fields(b) == fields(after[0]))
    assert filled.items[first_after - len(backfilled) : first_after] == backfilled
    assert not filled.errors and filled.items[0] is live.items[0]


def published_gap(
    server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
    source: BarSource,
    *,
    client: StreamClient | None = None,
    on_subscribed: Callable[[Any], None] | None = None,
    **kw: Any,
) -> tuple[StreamClient, Collector, list[Exception], Backfill]:
    """Two bars live, two made while muted, a drop, one bar live after the gap."""
    client = client if client is not None else make_client(server)
    gaps = Gaps(client)
    errors: list[Exception] = []
    client.errors.subscribe(errors.append)
    filled = collector()
    bf = Backfill(client, source, **kw)
    subscription = bf.bars("AAPL").subscribe(filled)
    if on_subscribed is not None:
        on_subscribed(subscription)
    server.wait_for_subscriptions({"bars": {"AAPL"}})
    t = (time.time_ns() // MIN - 10) * MIN
    server.publish([bar("AAPL", t), bar("AAPL", t + MIN, 101)])
    filled.wait_for(2)
    first = server.wait_for_authenticated(1)
    server.mute(first)
    server.publish([bar("AAPL", t + 2 * MIN, 102), bar("AAPL", t + 3 * MIN, 103)])
    server.drop(first)
    gaps.wait()
    server.wait_for_subscriptions({"bars": {"AAPL"}})
    server.publish([bar("AAPL", t + 4 * MIN, 104)])
    return client, filled, errors, bf


def test_the_missing_bars_come_first_then_the_held_live_one(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
) -> None:
    _, filled, errors, bf = published_gap(
        alpaca_server, make_client, collector, history(alpaca_server)
    )
    got = filled.wait_for(5)
    assert [b.open for b in got] == [100, 101, 102, 103, 104]
    assert [isinstance(b, BackfilledBar) for b in got] == [False, False, True, True, False]
    assert not [e for e in errors if isinstance(e, BackfillError)]
    assert (bf.filled, bf.duplicates, bf.failures) == (2, 0, 0)
    # Live again: the next bar passes straight through; a repeat of a minute is dropped.
    alpaca_server.publish([bar("AAPL", got[-1].timestamp_ns, 1.0)])
    alpaca_server.publish([bar("AAPL", got[-1].timestamp_ns + MIN, 105)])
    assert [b.open for b in filled.wait_for(6)[5:]] == [105] and bf.duplicates == 1


class Broken:
    """A ``BarSource`` of the user's own that fails its own way."""

    def fetch_bars(
        self, feed: str, symbols: Sequence[str], start_ns: int, end_ns: int
    ) -> list[Bar | CryptoBar]:
        raise RuntimeError("boom")


@pytest.mark.parametrize("fault", ["bad keys", "server error", "no server", "own source"])
def test_a_failed_fetch_is_an_error_and_the_stream_goes_on(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
    fault: str,
) -> None:
    source = history(alpaca_server, "wrong-secret" if fault == "bad keys" else DEFAULT_SECRET)
    if fault == "server error":
        alpaca_server.fail_next_rest(500)
    if fault == "no server":
        source = AlpacaHistory(DEFAULT_KEY, DEFAULT_SECRET, url="http://127.0.0.1:9")
    own = Broken() if fault == "own source" else source
    _, filled, errors, bf = published_gap(alpaca_server, make_client, collector, own)
    got = filled.wait_for(3)
    assert [b.open for b in got] == [100, 101, 104]  # the hole stays, the stream goes on
    [error] = [e for e in errors if isinstance(e, BackfillError)]
    text = str(error)
    assert text.startswith("backfill of AAPL bars from ") and bf.failures == 1
    expected = {
        "bad keys": "HTTP 403: forbidden",
        "server error": "HTTP 500: injected failure 500",
        "no server": "ConnectionError",
        "own source": "RuntimeError: boom",
    }[fault]
    assert expected in text and "wrong-secret" not in text and DEFAULT_SECRET not in text
    assert "wrong-secret" not in repr(source) and "wrong-secret" not in repr(bf)
    alpaca_server.publish([bar("AAPL", got[-1].timestamp_ns + MIN, 105)])
    assert filled.wait_for(4)[-1].open == 105 and not filled.errors


def test_without_live_bars_the_wait_ends_the_window_at_the_last_whole_minute(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
) -> None:
    client = make_client(alpaca_server)
    gaps = Gaps(client)
    filled = collector()
    Backfill(client, history(alpaca_server), wait=0.1).bars("AAPL", "MSFT").subscribe(filled)
    alpaca_server.wait_for_subscriptions({"bars": {"AAPL", "MSFT"}})
    t = (time.time_ns() // MIN - 10) * MIN
    alpaca_server.publish([bar("AAPL", t)])
    filled.wait_for(1)
    first = alpaca_server.wait_for_authenticated(1)
    alpaca_server.mute(first)
    recent = (time.time_ns() // MIN - 1) * MIN
    alpaca_server.publish([bar("AAPL", t + MIN, 101), bar("MSFT", recent, 201)])
    alpaca_server.drop(first)
    gap = gaps.wait()
    got = filled.wait_for(3, 10 * TIMING_FACTOR)
    # AAPL from its last bar on; MSFT (no bar before) from two minutes before the gap.
    assert sorted((b.symbol, b.open) for b in got[1:]) == [("AAPL", 101), ("MSFT", 201)]
    assert all(isinstance(b, BackfilledBar) for b in got[1:])
    [request] = alpaca_server.rest_requests()  # both symbols in one request
    assert "symbols=AAPL%2CMSFT" in request
    assert gap.last_before_ns is not None
    client.close()
    assert filled.completed.is_set()


def test_backfill_of_one_gap(alpaca_server: AlpacaStreamServer) -> None:
    now_min = time.time_ns() // MIN * MIN
    alpaca_server.publish([bar("AAPL", now_min - i * MIN, 100 + i) for i in range(1, 8)])
    source = history(alpaca_server)
    gap = Gap(feed="iex", channels=("bars",), symbols=("AAPL",),
              last_before_ns=now_min - 5 * MIN + 10**9, first_after_ns=now_min + 10**9)  # fmt: skip
    # From the minute before the one of last_before_ns to the minute of first_after_ns.
    assert [b.open for b in backfill(source, gap)] == [106, 105, 104, 103, 102, 101]
    assert [b.open for b in backfill(source, gap, start_ns=now_min - 2 * MIN)] == [102, 101]
    assert backfill(source, Gap(feed="iex", channels=("quotes",))) == []
    with pytest.raises(BackfillError, match="no start"):
        backfill(source, Gap(feed="iex", channels=("bars",), symbols=("AAPL",)))
    with pytest.raises(BackfillError, match="no historical bars for the test feed"):
        backfill(source, Gap(feed="test", channels=("bars",), symbols=("FAKEPACA",),
                             last_before_ns=now_min))  # fmt: skip
    # Crypto through alpaca-py's crypto client, the same way.
    alpaca_server.publish([{**bar("BTC/USD", now_min - MIN), "v": 0.25}])
    crypto = backfill(source, Gap(feed="crypto/us", channels=("bars",), symbols=("BTC/USD",),
                                  last_before_ns=now_min - MIN))  # fmt: skip
    assert [(b.symbol, b.volume) for b in crypto] == [("BTC/USD", 0.25)]
    with pytest.raises(BackfillError, match="malformed"):
        decode_bars({"AAPL": [{"t": "2024-01-01T00:00:00Z"}]}, BackfilledBar, 0, 2**62)


class Gated:
    """A ``BarSource`` of the user's own: the real REST client behind a gate, so a
    test decides when a fetch returns."""

    def __init__(self, inner: AlpacaHistory) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.entered = threading.Semaphore(0)
        self.answered = threading.Semaphore(0)

    def fetch_bars(
        self, feed: str, symbols: Sequence[str], start_ns: int, end_ns: int
    ) -> list[Bar | CryptoBar]:
        self.entered.release()
        assert self.gate.wait(20)
        try:
            return self.inner.fetch_bars(feed, symbols, start_ns, end_ns)
        finally:
            self.answered.release()


def test_a_second_gap_while_fetching_is_filled_after_the_first(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
) -> None:
    source = Gated(history(alpaca_server))
    client = make_client(alpaca_server)
    gaps = Gaps(client)
    filled = collector()
    Backfill(client, source).bars("AAPL").subscribe(filled)
    t = (time.time_ns() // MIN - 10) * MIN

    def drop_with_a_hole(i: int) -> None:
        """Bar ``i`` is made but never sent, then the connection drops and comes back."""
        conn = alpaca_server.wait_for_subscriptions({"bars": {"AAPL"}})
        gaps.event.clear()
        alpaca_server.mute(conn)
        alpaca_server.publish([bar("AAPL", t + i * MIN, 100 + i)])
        alpaca_server.drop(conn)
        gaps.wait()
        alpaca_server.wait_for_subscriptions({"bars": {"AAPL"}})

    alpaca_server.wait_for_subscriptions({"bars": {"AAPL"}})
    alpaca_server.publish([bar("AAPL", t, 100)])
    filled.wait_for(1)
    drop_with_a_hole(1)
    alpaca_server.publish([bar("AAPL", t + 2 * MIN, 102)])  # held; its fetch waits …
    assert source.entered.acquire(timeout=10)
    drop_with_a_hole(3)  # … while a second gap opens
    alpaca_server.publish([bar("AAPL", t + 4 * MIN, 104)])
    source.gate.set()
    got = filled.wait_for(5)
    assert [(b.open, isinstance(b, BackfilledBar)) for b in got] == [
        (100, False), (101, True), (102, False), (103, True), (104, False)
    ]  # fmt: skip
    assert len(gaps.items) == 2


def test_a_stream_that_ends_while_fetching_delivers_what_it_held(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
) -> None:
    source = Gated(history(alpaca_server))
    _, filled, _, bf = published_gap(alpaca_server, make_client, collector, source)
    assert source.entered.acquire(timeout=10)
    filled_client = bf.client
    filled_client.close()  # the fetch is still out: the held live bar is delivered
    assert filled.completed.is_set()
    assert [b.open for b in filled.items] == [100, 101, 104]
    source.gate.set()  # the late answer is dropped
    assert source.answered.acquire(timeout=10)  # (before the server stops)


def test_the_rest_history_is_what_the_market_sent(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
) -> None:
    """A prepared market (``total``) records its bars as it streams them."""
    client = make_client(alpaca_server)
    got = collector()
    client.bars("AAPL", "MSFT").subscribe(got)
    conn = alpaca_server.wait_for_subscriptions({"bars": {"AAPL", "MSFT"}})
    handle = alpaca_server.start_market(
        symbols=["AAPL", "MSFT"], rate=None, total=2000, mix={"t": 1.0}, step_ns=6 * 10**9
    )
    assert handle.done.wait(10 * TIMING_FACTOR)
    sent = [r.record for r in alpaca_server.connection(conn).sent_data if r.T == "b"]
    got.wait_for(len(sent), 10 * TIMING_FACTOR)
    for sym in ("AAPL", "MSFT"):
        made = alpaca_server.bar_history(sym)
        assert [h["t"] for h in made] == [r["t"] for r in sent if r["S"] == sym]
        assert [h["o"] for h in made] == [r["o"] for r in sent if r["S"] == sym]


class WaitsForTheSocket(Collector):
    """An observer that, on the first backfilled bar (on the fetch thread), has the
    server send a live bar and then a trade, and waits (bounded) for the socket thread
    to deliver the trade: the socket thread must get past the live bar meanwhile."""

    def __init__(self, server: AlpacaStreamServer, trade_seen: threading.Event) -> None:
        super().__init__()
        self.server = server
        self.trade_seen = trade_seen
        self.waited: bool | None = None

    def on_next(self, value: Any) -> None:
        if self.waited is None and isinstance(value, BackfilledBar):
            self.server.wait_for_subscriptions({"trades": {"AAPL"}})
            t = value.timestamp_ns + 10 * MIN
            self.server.publish([bar("AAPL", t, 110)])
            self.server.publish([{"T": "t", "S": "AAPL", "i": 1, "x": "V", "p": 110.0,
                                  "s": 1, "c": ["@"], "z": "C", "t": t}])  # fmt: skip
            self.waited = self.trade_seen.wait(3 * TIMING_FACTOR)
        super().on_next(value)


def test_an_observer_may_wait_for_the_socket_thread_while_backfill_delivers(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
) -> None:
    """Regression: the observer used to be called under the subscription's lock, so a
    live bar arriving meanwhile stopped the socket thread on that lock, and an observer
    waiting for the socket thread deadlocked. Now the live bar is queued behind the
    backfilled ones and the socket thread goes on."""
    trade_seen = threading.Event()
    observer = WaitsForTheSocket(alpaca_server, trade_seen)
    client = make_client(alpaca_server)
    client.trades("AAPL").subscribe(lambda _: trade_seen.set())
    _, filled, errors, bf = published_gap(
        alpaca_server, make_client, lambda: observer, history(alpaca_server), client=client
    )
    got = filled.wait_for(6, 10 * TIMING_FACTOR)
    assert observer.waited is True, "the socket thread was stuck behind the observer"
    assert [(b.open, isinstance(b, BackfilledBar)) for b in got] == [
        (100, False), (101, False), (102, True), (103, True), (104, False), (110, False)
    ]  # fmt: skip
    assert (bf.filled, bf.duplicates, bf.failures) == (2, 0, 0)
    assert not [e for e in errors if not isinstance(e, ConnectionLostError)]


class ClosesOnBackfill(Collector):
    """An observer that, on the first backfilled bar, closes the client (``close``)
    or disposes its own subscription (``dispose``) from the fetch thread."""

    def __init__(self, client: StreamClient, how: str) -> None:
        super().__init__()
        self.client = client
        self.how = how
        self.subscription: Any = None

    def on_next(self, value: Any) -> None:
        super().on_next(value)
        if isinstance(value, BackfilledBar) and value.open == 102:
            if self.how == "close":
                self.client.close()
            else:
                self.subscription.dispose()


@pytest.mark.parametrize("how", ["close", "dispose"])
def test_an_observer_may_close_the_client_or_dispose_while_backfill_delivers(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    how: str,
) -> None:
    """Closing the client from the observer (fetch thread) completes the stream after
    what was already due; disposing stops it at once. Neither waits for the lock."""
    client = make_client(alpaca_server)
    observer = ClosesOnBackfill(client, how)
    done = threading.Event()
    _, filled, _, _ = published_gap(
        alpaca_server, make_client, lambda: observer, history(alpaca_server), client=client,
        on_subscribed=lambda sub: setattr(observer, "subscription", sub),
    )  # fmt: skip
    if how == "close":
        assert filled.completed.wait(10 * TIMING_FACTOR)
        # Everything already due when the client closed still arrives, then the end.
        assert [b.open for b in filled.items] == [100, 101, 102, 103, 104]
    else:
        filled.wait_for(3, 10 * TIMING_FACTOR)

        def close() -> None:
            client.close()
            done.set()

        threading.Thread(target=close, daemon=True).start()
        assert done.wait(10 * TIMING_FACTOR)
        assert [b.open for b in filled.items] == [100, 101, 102]  # nothing after dispose
        assert not filled.completed.is_set()


class RaisesOnBackfill(Collector):
    def on_next(self, value: Any) -> None:
        super().on_next(value)
        if isinstance(value, BackfilledBar) and value.open == 102:
            raise ValueError("strategy bug")


def test_an_observer_that_raises_on_a_backfilled_bar_is_reported_and_the_stream_goes_on(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
) -> None:
    """As on the client's own streams: a ``HandlerError`` on ``errors``, counted; the
    fetch thread goes on delivering (and fetching: a later gap is filled too)."""
    observer = RaisesOnBackfill()
    client, filled, errors, _ = published_gap(
        alpaca_server, make_client, lambda: observer, history(alpaca_server)
    )
    assert [b.open for b in filled.wait_for(5)] == [100, 101, 102, 103, 104]
    [error] = [e for e in errors if isinstance(e, HandlerError)]
    assert isinstance(error.__cause__, ValueError) and client.metrics.handler_errors == 1
    alpaca_server.publish([bar("AAPL", filled.items[-1].timestamp_ns + MIN, 105)])
    assert filled.wait_for(6)[-1].open == 105 and not filled.errors


def test_a_fatal_client_error_ends_the_backfilled_stream_once(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
) -> None:
    """The client's error reaches the observer through the same outbox (after anything
    due); a close afterwards adds no second end."""
    client = make_client(alpaca_server, secret="wrong")
    got = collector()
    Backfill(client, history(alpaca_server)).bars("AAPL").subscribe(got)
    assert got.errored.wait(10 * TIMING_FACTOR) and isinstance(got.errors[0], AuthFailed)
    client.close()
    assert len(got.errors) == 1 and not got.completed.is_set() and not got.items
