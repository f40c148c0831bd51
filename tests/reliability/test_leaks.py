"""Leaks: 100,000 subscribe/dispose cycles and 1,000 connect/close cycles leave nothing behind.

The server runs in a child process (``child_server``), so everything traced and every
thread and socket counted in this process is the client's (and pytest's). Counted
afterwards:

* the router's entries and registered observers, the SubscriptionBook's wanted pairs,
  reference counts, rejected holders, acked set (the server's own acknowledged state)
  and in-flight request;
* threads (``threading.enumerate()``) and open sockets (``/proc/self/fd`` entries that
  are sockets) against the numbers before the cycles;
* memory: ``tracemalloc`` from before the cycles (after a warm-up and ``gc.collect()``)
  to after them; pytest's log capture (``logging``) is left out. The growth must stay
  under the stated bound.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from rxalpaca import ConnectionState, StreamClient

from .conftest import (
    TIMING_FACTOR,
    CountingObserver,
    assert_books_balance,
    child_server,
    new_client,
)

SYMBOLS = [f"L{i:03d}" for i in range(200)]

SUBSCRIBE_CYCLES = 100_000
CONNECT_CYCLES = 1_000
#: Allowed traced growth over all cycles, after warm-up (see docs/reliability.md).
SUBSCRIBE_GROWTH_BOUND = 64 * 1024
CONNECT_GROWTH_BOUND = 256 * 1024

_NOT_CLIENT = ("*/logging/*", "*/tracemalloc.py", "*/_pytest/*", "*/pluggy/*")


def _filters() -> list[tracemalloc.Filter]:
    return [tracemalloc.Filter(False, p) for p in _NOT_CLIENT]


def _traced(snap: tracemalloc.Snapshot) -> int:
    return sum(s.size for s in snap.filter_traces(_filters()).statistics("filename"))


def _top_growth(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot) -> str:
    stats = after.filter_traces(_filters()).compare_to(before.filter_traces(_filters()), "lineno")
    return "\n".join(str(s) for s in stats[:10])


def _sockets() -> int:
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                n += 1
        except OSError:
            pass  # closed meanwhile (the listdir fd itself)
    return n


def _join_new_threads(baseline: set[threading.Thread], timeout: float) -> list[str]:
    """Give threads started during the test (timers, socket threads) time to end."""
    deadline = time.monotonic() + timeout
    for t in threading.enumerate():
        if t not in baseline and t is not threading.current_thread():
            t.join(max(0.0, deadline - time.monotonic()))
    return [t.name for t in threading.enumerate() if t not in baseline]


def _wait_acked(client: StreamClient, pairs: set[tuple[str, str]], timeout: float) -> None:
    """Until the server's last ack holds exactly ``pairs`` and nothing is in flight.

    A bounded poll: the client has no event for "acknowledged" (see the report)."""
    book = client._book
    deadline = time.monotonic() + timeout
    while book.in_flight is not None or book.acked() != pairs or book.wanted() != pairs:
        assert time.monotonic() < deadline, (book.in_flight, book.acked() ^ pairs)
        time.sleep(0.01)


@pytest.fixture
def quiet_logs() -> Iterator[None]:
    """Connect/close cycles log at INFO by design; keep pytest from keeping 1000s of them."""
    log = logging.getLogger("rxalpaca")
    old = log.level
    log.setLevel(logging.WARNING)
    yield
    log.setLevel(old)


class Keep(CountingObserver):
    def __init__(self) -> None:
        super().__init__()
        self.event = threading.Event()

    def on_next(self, value: Any) -> None:
        super().on_next(value)
        self.event.set()


@pytest.mark.no_cover  # tracemalloc under coverage's tracer: 10x slower, past the timeout
@pytest.mark.slow
@pytest.mark.timeout(600)  # a hang guard: ~2 min under tracemalloc, 5+ on a loaded machine
def test_subscribe_dispose_cycles_leave_nothing(quiet_logs: None) -> None:
    # A live market on every symbol, so dispatch races with the cycles.
    market = {"symbols": [*SYMBOLS, "KEEP"], "rate": 2000, "seed": 5}
    with child_server(test_stream=False, market=market) as url:
        client = new_client(url)
        try:
            _subscribe_cycles(client)
        finally:
            client.close()


def _subscribe_cycles(client: StreamClient) -> None:
    streams = (client.trades, client.quotes, client.bars)
    keep = Keep()
    keep_sub = client.quotes("KEEP").subscribe(keep)
    assert keep.event.wait(10 * TIMING_FACTOR), "no data"
    keep_pairs = {("quotes", "KEEP")}
    observers_with_data = 0

    def cycles(start: int, n: int) -> int:
        got = 0
        for i in range(start, start + n):
            obs = CountingObserver()
            sym = SYMBOLS[i % len(SYMBOLS)]
            if i % 10 == 0:  # multi-symbol subscriptions and a second holder of a pair
                sub = streams[i % 3](sym, SYMBOLS[(i * 7) % len(SYMBOLS)]).subscribe(obs)
                extra = streams[i % 3](sym).subscribe(obs)
                extra.dispose()
            else:
                sub = streams[i % 3](sym).subscribe(obs)
            sub.dispose()
            got += obs.n > 0
            assert not obs.errors and not obs.completed
        return got

    cycles(0, 5_000)  # warm-up: caches, timing windows, lazily made dicts
    _wait_acked(client, keep_pairs, 10 * TIMING_FACTOR)
    gc.collect()
    threads_before = set(threading.enumerate())

    def fresh_read() -> None:
        # The socket thread sits in recv() with a 64 KiB buffer; let it return and
        # start a new recv() while tracing, so both snapshots hold one such buffer.
        keep.event.clear()
        assert keep.event.wait(10 * TIMING_FACTOR)
        gc.collect()

    tracemalloc.start(1)
    try:
        fresh_read()
        snap0 = tracemalloc.take_snapshot()
        t0 = time.monotonic()
        observers_with_data = cycles(5_000, SUBSCRIBE_CYCLES)
        elapsed = time.monotonic() - t0
        _wait_acked(client, keep_pairs, 10 * TIMING_FACTOR)
        left = _join_new_threads(threads_before, 5 * TIMING_FACTOR)
        fresh_read()
        snap1 = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = _traced(snap1) - _traced(snap0)
    router, book = client._router, client._book
    assert router.entries() == 1 and router.observer_count() == 1, router.snapshot()
    keep_sub.dispose()
    _wait_acked(client, set(), 10 * TIMING_FACTOR)
    assert router.entries() == 0, router.snapshot()
    assert router.observer_count() == 0
    assert all(not v for v in router._table.values()), router._table
    assert book.live == 0 and book._counts == {} and book._rejected == {}
    assert client.metrics.live_subscriptions == 0
    assert keep.errors == [] and keep.completed == 0
    assert client.current_state is ConnectionState.AUTHENTICATED
    assert_books_balance(client)
    assert left == [], left
    print(
        f"\nleaks: {SUBSCRIBE_CYCLES} subscribe/dispose cycles in {elapsed:.1f} s (traced), "
        f"{observers_with_data} cycle observers got data, {keep.n} KEEP quotes; "
        f"traced growth {grown} B (bound {SUBSCRIBE_GROWTH_BOUND}); "
        f"{book.requests_sent} requests sent; "
        f"session history {len(client._upstream.session.history)}",
        file=sys.stderr,
    )
    assert grown < SUBSCRIBE_GROWTH_BOUND, _top_growth(snap0, snap1)


@pytest.mark.no_cover  # as above
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_connect_close_cycles_leave_no_thread_socket_or_memory(quiet_logs: None) -> None:
    # No per-key connection limit: a new client must not wait for the server to notice
    # that the previous one left (that would be a 406 and a back-off, not a leak).
    with child_server(test_stream=False, connection_limit=None) as url:

        def cycle(i: int) -> None:
            client = new_client(url, ping_interval=10.0)  # the pinger thread too
            authed = threading.Event()
            client.state.subscribe(
                lambda s: authed.set() if s is ConnectionState.AUTHENTICATED else None
            )
            obs = CountingObserver()
            try:
                client.trades(SYMBOLS[i % len(SYMBOLS)]).subscribe(obs)
                assert authed.wait(10 * TIMING_FACTOR), f"cycle {i}: never authenticated"
                if i == 0:
                    assert _sockets() >= 1  # the counter does see the client's socket
            finally:
                client.close()
            assert client.current_state is ConnectionState.CLOSED
            assert obs.completed == 1 and not obs.errors
            assert_books_balance(client)
            assert client._upstream.transport.threads_alive() == 0

        for i in range(20):  # warm-up
            cycle(i)
        gc.collect()
        threads_before = set(threading.enumerate())
        assert _join_new_threads(threads_before, 0) == []
        sockets_before = _sockets()
        tracemalloc.start(1)
        try:
            snap0 = tracemalloc.take_snapshot()
            t0 = time.monotonic()
            for i in range(CONNECT_CYCLES):
                cycle(i)
            elapsed = time.monotonic() - t0
            left = _join_new_threads(threads_before, 10 * TIMING_FACTOR)
            gc.collect()
            snap1 = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        grown = _traced(snap1) - _traced(snap0)
        sockets_after = _sockets()
    print(
        f"\nleaks: {CONNECT_CYCLES} connect/close cycles in {elapsed:.1f} s (traced); "
        f"threads left {len(left)}, sockets {sockets_before} -> {sockets_after}; "
        f"traced growth {grown} B (bound {CONNECT_GROWTH_BOUND})",
        file=sys.stderr,
    )
    assert left == [], left
    assert sockets_after <= sockets_before, (sockets_before, sockets_after)
    assert grown < CONNECT_GROWTH_BOUND, _top_growth(snap0, snap1)


@pytest.mark.timeout(60)
def test_session_history_stays_bounded() -> None:
    """A day-long client sees ~10^5-10^6 acks; its per-transition history must not grow.

    (Found by the subscribe/dispose leak cycles: ``Session.history`` once kept every
    transition — one per ack — for the life of the client.)"""
    from rxalpaca.models import SubscriptionMessage, SuccessMessage
    from rxalpaca.protocol import Session

    s = Session("key", "secret")
    s.connect()
    s.receive(SuccessMessage(msg="connected"))
    s.receive(SuccessMessage(msg="authenticated"))
    for i in range(20_000):
        s.receive(SubscriptionMessage(trades=(f"S{i % 50}",)))
        if i % 100 == 0:  # a reconnect now and then
            s.lost()
            s.connect()
            s.receive(SuccessMessage(msg="connected"))
            s.receive(SuccessMessage(msg="authenticated"))
    assert len(s.history) <= 10_000, len(s.history)
