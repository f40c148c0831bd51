"""Routing benchmarks: ``Router.dispatch`` with 1, 100 and 1,000 subscriptions.

Run (numbers in ``docs/benchmarks.md``, section "Routing and the in-process pipeline")::

    pytest benchmarks/bench_route.py --benchmark-enable --benchmark-only -q

Without ``--benchmark-enable`` (the project default) each case runs once as a plain test
and checks that every message reached its observer.

The records are decoded once, up front: only routing is timed. "N subscriptions" is N
symbols with an observer per (channel, symbol) of trades, quotes and bars (``_pipeline.py``),
so every message reaches exactly one observer whatever N is and only the table grows —
routing must stay a dictionary lookup per message. For contrast, the design's rejected
alternative: one ``filter`` operator per subscription on a shared Subject (every message
tested by every subscription).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest
from _pipeline import CHANNELS, Counter, subscribed_router, workload
from frames import symbols
from reactivex import operators as rx_ops
from reactivex.subject import Subject

from rxalpaca.codec import Codec
from rxalpaca.models import MarketRecord

SUBSCRIPTIONS = (1, 100, 1000)


@cache
def decoded(n: int) -> tuple[Any, list[list[Any]]]:
    w = workload(n, frames=200)
    codec = Codec("iex", "msgpack")
    return w, [codec.decode(f, 1) for f in w.msgpack_frames]


@pytest.mark.parametrize("subscriptions", SUBSCRIPTIONS)
def test_dispatch(benchmark: Any, subscriptions: int) -> None:
    w, batches = decoded(subscriptions)
    counter = Counter()
    router = subscribed_router(subscriptions, counter)
    dispatch = router.dispatch

    def run() -> None:
        for batch in batches:
            dispatch(batch)

    before = counter.n
    benchmark(run)
    assert counter.n - before >= w.messages
    assert (counter.n - before) % w.messages == 0
    assert router.entries() == len(CHANNELS) * subscriptions


@pytest.mark.parametrize("subscriptions", SUBSCRIPTIONS)
def test_dispatch_one_wildcard_observer(benchmark: Any, subscriptions: int) -> None:
    """The same stream to one ``"*"`` observer per channel (``client.trades("*")``)."""
    from reactivex.observer.autodetachobserver import AutoDetachObserver

    from rxalpaca.operators import Router

    w, batches = decoded(subscriptions)
    counter = Counter()
    router = Router()
    for ch in CHANNELS:
        router.add(ch, "*", AutoDetachObserver(on_next=counter))
    dispatch = router.dispatch

    def run() -> None:
        for batch in batches:
            dispatch(batch)

    benchmark(run)
    assert counter.n > 0
    assert counter.n % w.messages == 0


@pytest.mark.parametrize("subscriptions", (1, 100))
def test_filter_per_subscription(benchmark: Any, subscriptions: int) -> None:
    """Rejected design: a ``filter`` per (channel, symbol) on one Subject of records."""
    w, batches = decoded(subscriptions)
    counter = Counter()
    subject: Subject[Any] = Subject()
    for ch in CHANNELS:
        for sym in symbols(subscriptions, 1):

            def mine(r: MarketRecord, c: str = ch, s: str = sym) -> bool:
                return c == r.CHANNEL and s == r.symbol

            subject.pipe(rx_ops.filter(mine)).subscribe(counter)
    on_next = subject.on_next

    def run() -> None:
        for batch in batches:
            for rec in batch:
                on_next(rec)

    benchmark(run)
    assert counter.n > 0
    assert counter.n % w.messages == 0
