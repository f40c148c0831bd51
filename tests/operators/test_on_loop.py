"""ops.on_loop and its Handover: from any thread to an asyncio loop, bounded, in order.

A real event loop (the point is which thread runs what), with producers on their own
threads; every wait is on an event, never a sleep.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from reactivex.abc import DisposableBase
from reactivex.subject import Subject

import rxalpaca
from rxalpaca import ops
from rxalpaca.errors import BufferOverflow
from rxalpaca.operators._loop import LoopObservable
from tests.conftest import TIMING_FACTOR

WAIT = 10 * TIMING_FACTOR


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="the-loop", daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


class Gate:
    """An async observer that records items and can be held on an item."""

    def __init__(self, loop: asyncio.AbstractEventLoop, hold_at: int | None = None) -> None:
        self.loop = loop
        self.items: list[Any] = []
        self.threads: set[str] = set()
        self.errors: list[Exception] = []
        self.done = threading.Event()
        self.holding = threading.Event()
        self.hold_at = hold_at
        self._release = asyncio.Event()
        self.active = 0
        self.max_active = 0
        self._cond = threading.Condition()

    async def on_next(self, value: Any) -> None:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self.threads.add(threading.current_thread().name)
        if value == self.hold_at:
            self.holding.set()
            await self._release.wait()
        await asyncio.sleep(0)
        with self._cond:
            self.items.append(value)
            self._cond.notify_all()
        self.active -= 1

    async def on_error(self, error: Exception) -> None:
        self.errors.append(error)
        self.done.set()

    async def on_completed(self) -> None:
        self.done.set()

    def attach(self, source: LoopObservable[Any]) -> DisposableBase:
        return source.subscribe(self.on_next, self.on_error, self.on_completed)

    def release(self) -> None:
        self.loop.call_soon_threadsafe(self._release.set)

    def wait_for(self, n: int) -> list[Any]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.items) >= n, WAIT), self.items
        return list(self.items)


def test_items_arrive_in_order_on_the_loop_one_handler_at_a_time(
    loop: asyncio.AbstractEventLoop,
) -> None:
    source: Subject[int] = Subject()
    gate = Gate(loop)
    gate.attach(source.pipe(ops.on_loop(loop, size=0)))

    def produce() -> None:
        for i in range(500):
            source.on_next(i)

    producer = threading.Thread(target=produce)
    producer.start()
    producer.join()
    source.on_completed()
    assert gate.done.wait(WAIT)
    assert gate.items == list(range(500))
    assert gate.threads == {"the-loop"} and gate.max_active == 1


@pytest.mark.parametrize(
    ("overflow", "kept"),
    [("drop_oldest", [0, 7, 8, 9]), ("drop_newest", [0, 1, 2, 3])],
)
def test_a_slow_handler_meets_the_drop_policies(
    loop: asyncio.AbstractEventLoop, overflow: Any, kept: list[int]
) -> None:
    source: Subject[int] = Subject()
    gate = Gate(loop, hold_at=0)
    drops: list[int] = []
    gate.attach(source.pipe(ops.on_loop(loop, size=3, overflow=overflow, on_overflow=drops.append)))
    source.on_next(0)
    assert gate.holding.wait(WAIT)
    for i in range(1, 10):
        source.on_next(i)  # never waits: the handler is stuck on 0
    assert drops == [1, 2, 3, 4, 5, 6]
    gate.release()
    source.on_completed()
    assert gate.done.wait(WAIT)
    assert gate.items == kept


def test_error_policy_ends_the_stream_after_the_queued_items(
    loop: asyncio.AbstractEventLoop,
) -> None:
    source: Subject[int] = Subject()
    gate = Gate(loop, hold_at=0)
    gate.attach(source.pipe(ops.on_loop(loop, size=2, overflow="error")))
    source.on_next(0)
    assert gate.holding.wait(WAIT)
    for i in range(1, 5):
        source.on_next(i)
    gate.release()
    assert gate.done.wait(WAIT)
    assert gate.items == [0, 1, 2]
    assert isinstance(gate.errors[0], BufferOverflow)


def test_block_makes_the_producer_wait_for_room_and_loses_nothing(
    loop: asyncio.AbstractEventLoop,
) -> None:
    source: Subject[int] = Subject()
    gate = Gate(loop, hold_at=0)
    gate.attach(source.pipe(ops.on_loop(loop, size=2, overflow="block")))
    finished = threading.Event()

    def produce() -> None:
        for i in range(6):
            source.on_next(i)
        finished.set()

    producer = threading.Thread(target=produce)
    producer.start()
    assert gate.holding.wait(WAIT)
    assert not finished.wait(0.05 * TIMING_FACTOR)  # full: the producer waits
    gate.release()
    assert finished.wait(WAIT)
    producer.join()
    source.on_completed()
    assert gate.done.wait(WAIT)
    assert gate.items == list(range(6))


def test_block_never_waits_on_the_loops_own_thread(loop: asyncio.AbstractEventLoop) -> None:
    source: Subject[int] = Subject()
    gate = Gate(loop, hold_at=0)
    gate.attach(source.pipe(ops.on_loop(loop, size=1, overflow="block")))
    source.on_next(0)
    assert gate.holding.wait(WAIT)

    def on_the_loop() -> None:
        for i in range(1, 4):
            source.on_next(i)  # the loop's thread: waiting would deadlock

    loop.call_soon_threadsafe(on_the_loop)
    gate.release()
    assert gate.done.wait(WAIT)
    assert isinstance(gate.errors[0], BufferOverflow)


def test_dispose_stops_delivery_and_frees_a_waiting_producer(
    loop: asyncio.AbstractEventLoop,
) -> None:
    source: Subject[int] = Subject()
    gate = Gate(loop, hold_at=0)
    sub = gate.attach(source.pipe(ops.on_loop(loop, size=1, overflow="block")))
    source.on_next(0)
    assert gate.holding.wait(WAIT)
    source.on_next(1)  # fills the queue
    waiting = threading.Thread(target=source.on_next, args=(2,))
    waiting.start()
    sub.dispose()
    waiting.join(WAIT)
    assert not waiting.is_alive()
    gate.release()
    assert not source.observers  # let go of the source
    assert 1 not in gate.items and 2 not in gate.items


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="overflow"):
        ops.on_loop(overflow="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="size"):
        ops.on_loop(size=-1)


def test_without_a_loop_subscribing_outside_one_says_how() -> None:
    with pytest.raises(RuntimeError, match="pass loop="):
        Subject[int]().pipe(ops.on_loop()).subscribe(print)


# ---------------------------------------------------------------- aiterate


def test_aiterate_error_policy_raises_buffer_overflow_after_the_queued_items() -> None:
    async def main() -> list[int]:
        source: Subject[int] = Subject()
        it = rxalpaca.aiterate(source, maxsize=2, overflow="error")
        first = asyncio.ensure_future(anext(it))
        await asyncio.sleep(0)  # the iterator subscribed and waits
        for i in range(5):  # the loop is busy here: 2 fit, the third overflows
            source.on_next(i)
        got = [await first]
        with pytest.raises(BufferOverflow):
            async for item in it:
                got.append(item)
        return got

    assert asyncio.run(main()) == [0, 1]


def test_aiterate_drop_oldest_keeps_the_freshest() -> None:
    drops: list[int] = []

    async def main() -> list[int]:
        source: Subject[int] = Subject()
        it = rxalpaca.aiterate(source, maxsize=3, on_overflow=drops.append)
        first = asyncio.ensure_future(anext(it))
        await asyncio.sleep(0)
        for i in range(100):  # the loop is busy here: only the last three stay
            source.on_next(i)
        source.on_completed()
        return [await first] + [item async for item in it]

    assert asyncio.run(main()) == [97, 98, 99]
    assert drops[-1] == 97
