"""Hand-over benchmarks: moving records from a producer thread to an asyncio loop.

Run (numbers in ``docs/benchmarks.md``, section "Hand-over to an event loop")::

    pytest benchmarks/bench_handover.py --benchmark-enable --benchmark-only -q

Without ``--benchmark-enable`` (the project default) each case runs once as a plain test
and checks that every item arrived, in order.

One round: a producer thread pushes ``N`` ints as fast as it can; a coroutine on a
running loop takes them with ``async for`` until the last. Cases:

* ``per_item_callback`` — the baseline, what ``aiterate`` did before: one
  ``loop.call_soon_threadsafe(queue.put_nowait, item)`` per item (unbounded: a loop
  that falls behind queues one callback per item);
* ``handover_unbounded`` — ``aiterate(source)``: the Handover queue, with the loop
  woken only when its consumer is parked;
* ``handover_bounded_block`` — ``aiterate(source, maxsize=1024, overflow="block")``:
  bounded, nothing lost, the producer waits for room;
* ``async_handler`` — an ``async def`` observer through ``ops.on_loop`` (size 1024,
  ``"block"``): the consumer awaits a coroutine per item.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from reactivex.subject import Subject

import rxalpaca
from rxalpaca import ops

N = 20_000


def produce(source: Subject[int], started: threading.Event) -> threading.Thread:
    def run() -> None:
        started.wait()
        for i in range(N):
            source.on_next(i)
        source.on_completed()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


async def per_item_callback() -> list[int]:
    loop = asyncio.get_running_loop()
    q: asyncio.Queue[int | None] = asyncio.Queue()
    source: Subject[int] = Subject()

    def push(item: int | None) -> None:
        loop.call_soon_threadsafe(q.put_nowait, item)

    source.subscribe(push, on_completed=lambda: push(None))
    started = threading.Event()
    thread = produce(source, started)
    started.set()
    got = []
    while (item := await q.get()) is not None:
        got.append(item)
    thread.join()
    return got


async def via_aiterate(**kw: Any) -> list[int]:
    source: Subject[int] = Subject()
    started = threading.Event()
    thread = produce(source, started)
    got = []
    it = rxalpaca.aiterate(source, **kw)
    first = asyncio.ensure_future(anext(it))
    await asyncio.sleep(0)  # subscribed
    started.set()
    got.append(await first)
    got += [item async for item in it]
    thread.join()
    return got


async def async_handler() -> list[int]:
    source: Subject[int] = Subject()
    got: list[int] = []
    done = asyncio.Event()

    async def on_item(item: int) -> None:
        got.append(item)

    async def on_done() -> None:
        done.set()

    source.pipe(ops.on_loop(size=1024, overflow="block")).subscribe(on_item, on_completed=on_done)
    started = threading.Event()
    thread = produce(source, started)
    started.set()
    await done.wait()
    thread.join()
    return got


CASES: dict[str, Callable[[], Coroutine[Any, Any, list[int]]]] = {
    "per_item_callback": per_item_callback,
    "handover_unbounded": via_aiterate,
    "handover_bounded_block": lambda: via_aiterate(maxsize=1024, overflow="block"),
    "async_handler": async_handler,
}


@pytest.mark.parametrize("case", list(CASES))
def test_handover(benchmark: Any, case: str) -> None:
    results: list[list[int]] = []

    def run() -> None:
        results.append(asyncio.run(CASES[case]()))

    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    assert all(r == list(range(N)) for r in results)
