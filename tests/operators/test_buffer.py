"""bounded_buffer: a queue of at most ``size`` items between the producer and a consumer thread.

Drop and error policies are checked in virtual time: all items of one tick arrive
before the drain that the tick's first item scheduled, so a tick is a burst that
meets a busy consumer. ``block`` needs a real second thread, so its tests use real
threads synchronised with events; every wait has a timeout, so a bug fails the test
instead of hanging it.
"""

from __future__ import annotations

import gc
import threading
import weakref
from typing import Any

import pytest
import reactivex.operators
from reactivex import Observable
from reactivex.disposable import Disposable
from reactivex.scheduler import NewThreadScheduler, ThreadPoolScheduler
from reactivex.subject import Subject
from reactivex.testing import ReactiveTest, TestScheduler
from reactivex.testing.recorded import Recorded

from rxalpaca import ops
from rxalpaca.errors import RxAlpacaError
from rxalpaca.operators import BufferOverflow
from tests.conftest import TIMING_FACTOR

on_next, on_error = ReactiveTest.on_next, ReactiveTest.on_error
on_completed, subscribe = ReactiveTest.on_completed, ReactiveTest.subscribe

WAIT = 5.0  # seconds: the most any event wait may take before the test fails


def burst(scheduler: TestScheduler) -> Any:
    """``a`` alone at 210 (it keeps the consumer "busy"), then b..e in one tick at 220."""
    return scheduler.create_hot_observable(
        on_next(210, "a"),
        on_next(220, "b"),
        on_next(220, "c"),
        on_next(220, "d"),
        on_next(220, "e"),
        on_completed(230),
    )


def error_of(messages: list[Recorded[Any]]) -> Exception:
    [err] = [m.value.exception for m in messages if m.value.kind == "E"]
    assert isinstance(err, Exception)
    return err


# ------------------------------------------------------------------ virtual time


def test_drop_oldest_keeps_the_newest_and_counts_the_evicted() -> None:
    scheduler = TestScheduler()
    xs = burst(scheduler)
    counts: list[int] = []
    res = scheduler.start(
        lambda: xs.pipe(
            ops.bounded_buffer(2, "drop_oldest", scheduler=scheduler, on_overflow=counts.append)
        )
    )
    assert res.messages == [
        on_next(210, "a"),
        on_next(220, "d"),
        on_next(220, "e"),
        on_completed(230),
    ]
    assert counts == [1, 2]  # b, then c
    assert xs.subscriptions == [subscribe(200, 230)]


def test_drop_newest_keeps_the_first_and_counts_the_refused() -> None:
    scheduler = TestScheduler()
    xs = burst(scheduler)
    counts: list[int] = []
    res = scheduler.start(
        lambda: xs.pipe(
            ops.bounded_buffer(2, "drop_newest", scheduler=scheduler, on_overflow=counts.append)
        )
    )
    assert res.messages == [
        on_next(210, "a"),
        on_next(220, "b"),
        on_next(220, "c"),
        on_completed(230),
    ]
    assert counts == [1, 2]  # d, then e


def test_error_policy_delivers_the_queue_then_buffer_overflow_and_lets_go_of_the_source() -> None:
    scheduler = TestScheduler()
    xs = burst(scheduler)
    counts: list[int] = []
    res = scheduler.start(
        lambda: xs.pipe(
            ops.bounded_buffer(2, "error", scheduler=scheduler, on_overflow=counts.append)
        )
    )
    assert [(m.time, m.value.kind, m.value.value) for m in res.messages[:3]] == [
        (210, "N", "a"),
        (220, "N", "b"),
        (220, "N", "c"),
    ]
    assert [(m.time, m.value.kind) for m in res.messages[3:]] == [(220, "E")]
    err = error_of(res.messages)
    assert isinstance(err, BufferOverflow) and isinstance(err, RxAlpacaError)
    assert err.size == 2 and "overflow='error'" in str(err)
    assert xs.subscriptions == [subscribe(200, 220)]  # unsubscribed at the overflow
    assert counts == []  # nothing was dropped: the stream ended


@pytest.mark.parametrize("overflow", ["drop_oldest", "drop_newest", "block", "error"])
def test_terminal_events_wait_for_the_queued_items(overflow: Any) -> None:
    scheduler = TestScheduler()
    boom = ValueError("boom")
    xs = scheduler.create_hot_observable(
        on_next(210, 1), on_next(210, 2), on_next(210, 3), on_error(210, boom)
    )
    res = scheduler.start(lambda: xs.pipe(ops.bounded_buffer(3, overflow, scheduler=scheduler)))
    assert res.messages == [on_next(210, 1), on_next(210, 2), on_next(210, 3), on_error(210, boom)]


def test_dispose_drops_the_queue_and_unsubscribes_at_once() -> None:
    scheduler = TestScheduler()
    xs = burst(scheduler)
    # The dispose at 220 runs after b..e are queued and before the drain they scheduled.
    res = scheduler.start(
        lambda: xs.pipe(ops.bounded_buffer(10, "drop_oldest", scheduler=scheduler)),
        disposed=220,
    )
    assert res.messages == [on_next(210, "a")]
    assert xs.subscriptions == [subscribe(200, 220)]


def test_a_raising_on_overflow_ends_the_stream_after_the_queue() -> None:
    scheduler = TestScheduler()
    xs = burst(scheduler)
    bad = RuntimeError("metrics backend down")

    def on_overflow(_n: int) -> None:
        raise bad

    res = scheduler.start(
        lambda: xs.pipe(
            ops.bounded_buffer(2, "drop_newest", scheduler=scheduler, on_overflow=on_overflow)
        )
    )
    assert res.messages == [
        on_next(210, "a"),
        on_next(220, "b"),
        on_next(220, "c"),
        on_error(220, bad),
    ]
    assert xs.subscriptions == [subscribe(200, 220)]


def test_state_and_counts_belong_to_each_subscription() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(
        on_next(10, 1), on_next(10, 2), on_next(10, 3), on_completed(20)
    )
    counts: list[int] = []
    buffered = xs.pipe(
        ops.bounded_buffer(1, "drop_oldest", scheduler=scheduler, on_overflow=counts.append)
    )
    first = scheduler.create_observer()
    second = scheduler.create_observer()
    scheduler.schedule_absolute(100, lambda *_: buffered.subscribe(first))
    scheduler.schedule_absolute(200, lambda *_: buffered.subscribe(second))
    scheduler.start()
    assert first.messages == [on_next(110, 3), on_completed(120)]
    assert second.messages == [on_next(210, 3), on_completed(220)]
    assert counts == [1, 2, 1, 2]  # two separate counts, not one running total


@pytest.mark.timeout(10)
def test_block_in_virtual_time_cannot_wait_for_its_own_thread_and_says_so() -> None:
    scheduler = TestScheduler()
    xs = burst(scheduler)
    res = scheduler.start(lambda: xs.pipe(ops.bounded_buffer(2, "block", scheduler=scheduler)))
    assert [m.value.value for m in res.messages if m.value.kind == "N"] == ["a", "b", "c"]
    err = error_of(res.messages)
    assert isinstance(err, BufferOverflow) and "consumer's own thread" in str(err)
    assert xs.subscriptions == [subscribe(200, 220)]


@pytest.mark.parametrize(
    ("size", "overflow"),
    [(0, "block"), (-1, "drop_oldest"), (True, "error"), (1.5, "error"), (4, "latest")],
)
def test_bad_arguments_are_refused_at_once(size: Any, overflow: Any) -> None:
    with pytest.raises(ValueError, match=r"^(size|overflow) must be"):
        ops.bounded_buffer(size, overflow)


# ------------------------------------------------------------------ real threads


class Consumer:
    """A consumer that records what it got, on which thread, and can be held at an item."""

    def __init__(self, hold_at: int | None = None) -> None:
        self.hold_at = hold_at
        self.holding = threading.Event()  # set once the consumer is held at ``hold_at``
        self.gate = threading.Event()  # set to let it go on
        self.done = threading.Event()
        self.got: list[int] = []
        self.threads: set[int] = set()
        self.error: Exception | None = None

    def on_next(self, value: int) -> None:
        self.threads.add(threading.get_ident())
        if value == self.hold_at:
            self.holding.set()
            assert self.gate.wait(WAIT), "never released"
        self.got.append(value)

    def on_error(self, error: Exception) -> None:
        self.error = error
        self.done.set()

    def on_completed(self) -> None:
        self.done.set()


class Producer:
    """Pushes ``values`` into ``src`` from its own thread (a stand-in for the socket thread)."""

    def __init__(self, src: Subject[int], values: range) -> None:
        self.pushed: list[int] = []  # the values whose on_next has returned
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._run, args=(src, values), daemon=True)
        self.thread.start()

    def _run(self, src: Subject[int], values: range) -> None:
        for v in values:
            src.on_next(v)
            with self.cond:
                self.pushed.append(v)
                self.cond.notify_all()

    def wait_pushed(self, n: int, timeout: float = WAIT) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.pushed) >= n, timeout)

    def finished(self, timeout: float = WAIT) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()


#: How long a producer that should be blocked is watched for (a broken ``block`` would
#: push its next item in microseconds).
STUCK = 0.2


@pytest.mark.timeout(20)
def test_drop_oldest_never_makes_the_producer_wait() -> None:
    src: Subject[int] = Subject()
    consumer = Consumer(hold_at=0)
    counts: list[int] = []
    src.pipe(
        ops.bounded_buffer(
            3, "drop_oldest", scheduler=NewThreadScheduler(), on_overflow=counts.append
        )
    ).subscribe(consumer.on_next, consumer.on_error, consumer.on_completed)
    src.on_next(0)
    assert consumer.holding.wait(WAIT)
    for i in range(1, 1000):  # the consumer is held: none of these may wait
        src.on_next(i)
    src.on_completed()
    consumer.gate.set()
    assert consumer.done.wait(WAIT)
    assert consumer.got == [0, 997, 998, 999]
    assert counts[-1] == 999 - 3
    assert threading.get_ident() not in consumer.threads


@pytest.mark.timeout(20)
def test_block_makes_the_producer_wait_for_room_and_loses_nothing() -> None:
    src: Subject[int] = Subject()
    consumer = Consumer(hold_at=0)
    src.pipe(ops.bounded_buffer(2, "block", scheduler=NewThreadScheduler())).subscribe(
        consumer.on_next, consumer.on_error, consumer.on_completed
    )
    producer = Producer(src, range(6))
    assert consumer.holding.wait(WAIT)
    # 0 is with the consumer, 1 and 2 fill the queue: the producer is stuck on 3.
    assert producer.wait_pushed(3)
    assert not producer.wait_pushed(4, STUCK)
    assert producer.pushed == [0, 1, 2]
    consumer.gate.set()
    assert producer.finished()
    src.on_completed()
    assert consumer.done.wait(WAIT)
    assert consumer.got == [0, 1, 2, 3, 4, 5]


@pytest.mark.timeout(40 * TIMING_FACTOR)
def test_block_keeps_order_under_a_flood() -> None:
    src: Subject[int] = Subject()
    consumer = Consumer()
    src.pipe(ops.bounded_buffer(8, "block", scheduler=NewThreadScheduler())).subscribe(
        consumer.on_next, consumer.on_error, consumer.on_completed
    )
    producer = Producer(src, range(20_000))
    # 20,000 hand-overs through 8 slots are thousands of thread switches: on a loaded
    # 2-core machine that took more than 5 s, so this waits up to the test's budget.
    assert producer.finished(timeout=25 * TIMING_FACTOR)
    src.on_completed()
    assert consumer.done.wait(WAIT)
    assert consumer.got == list(range(20_000))  # in order, none lost, none twice
    assert consumer.error is None


@pytest.mark.timeout(20)
def test_dispose_frees_a_blocked_producer_and_stops_the_drain() -> None:
    src: Subject[int] = Subject()
    consumer = Consumer(hold_at=0)
    pool = ThreadPoolScheduler(1)
    sub = src.pipe(ops.bounded_buffer(1, "block", scheduler=pool)).subscribe(
        consumer.on_next, consumer.on_error, consumer.on_completed
    )
    producer = Producer(src, range(4))
    assert consumer.holding.wait(WAIT)
    assert producer.wait_pushed(2)
    assert not producer.wait_pushed(3, STUCK)  # stuck on 2
    sub.dispose()
    assert producer.finished()
    consumer.gate.set()
    pool.executor.shutdown(wait=True)  # the drain has returned
    assert consumer.got == [0]  # the queued 1 was dropped with the subscription
    assert not consumer.done.is_set()


class Item:
    """A queued value we can hold a weak reference to."""

    def __init__(self, n: int) -> None:
        self.n = n


@pytest.mark.timeout(20)
def test_dispose_lets_go_of_the_queued_items() -> None:
    src: Subject[Item] = Subject()
    holding, gate = threading.Event(), threading.Event()

    def held(_item: Item) -> None:
        holding.set()
        assert gate.wait(WAIT)

    pool = ThreadPoolScheduler(1)
    sub = src.pipe(ops.bounded_buffer(10, "block", scheduler=pool)).subscribe(held)
    items = [Item(n) for n in range(5)]
    refs = [weakref.ref(item) for item in items]
    for item in items:
        src.on_next(item)
    assert holding.wait(WAIT)
    sub.dispose()
    del items, item
    gc.collect()
    # 0 is still on the consumer's stack; the four queued ones are gone with the queue.
    assert [r() is None for r in refs[1:]] == [True] * 4
    gate.set()
    pool.executor.shutdown(wait=True)


@pytest.mark.timeout(20)
def test_the_error_policy_lets_go_of_the_source_at_the_overflow() -> None:
    src: Subject[int] = Subject()
    consumer = Consumer(hold_at=0)
    src.pipe(ops.bounded_buffer(1, "error", scheduler=NewThreadScheduler())).subscribe(
        consumer.on_next, consumer.on_error, consumer.on_completed
    )
    src.on_next(0)
    assert consumer.holding.wait(WAIT)
    src.on_next(1)  # queued
    assert src.observers  # still subscribed
    src.on_next(2)  # overflow: unsubscribe now, not once the consumer gets there
    assert not src.observers
    consumer.gate.set()
    assert consumer.done.wait(WAIT)
    assert consumer.got == [0, 1] and isinstance(consumer.error, BufferOverflow)


@pytest.mark.timeout(20)
def test_dispose_frees_the_producer_before_disposing_a_source_that_joins_it() -> None:
    """Like a socket: disposing the source waits for its thread, which may be blocked in us."""
    stop = threading.Event()
    joined: list[bool] = []
    started = threading.Event()

    def socket_like(observer: Any, _scheduler: Any = None) -> Any:
        def run() -> None:
            started.set()
            n = 0
            while not stop.is_set():
                observer.on_next(n)
                n += 1

        thread = threading.Thread(target=run, name="socket", daemon=True)
        thread.start()

        def dispose() -> None:
            stop.set()
            thread.join(2.0)
            joined.append(not thread.is_alive())

        return Disposable(dispose)

    consumer = Consumer(hold_at=0)
    sub = (
        Observable(socket_like)
        .pipe(ops.bounded_buffer(2, "block", scheduler=NewThreadScheduler()))
        .subscribe(consumer.on_next, consumer.on_error, consumer.on_completed)
    )
    assert started.wait(WAIT) and consumer.holding.wait(WAIT)
    sub.dispose()  # the socket thread is blocked in on_next, waiting for room
    consumer.gate.set()
    assert joined == [True]


@pytest.mark.timeout(20)
def test_an_observer_that_raises_frees_a_blocked_producer() -> None:
    src: Subject[int] = Subject()
    consumer = Consumer(hold_at=0)
    pool = ThreadPoolScheduler(1)  # keeps the observer's exception in its future

    def raising(value: int) -> None:
        consumer.on_next(value)
        raise RuntimeError("observer bug")

    src.pipe(ops.bounded_buffer(1, "block", scheduler=pool)).subscribe(
        raising, consumer.on_error, consumer.on_completed
    )
    producer = Producer(src, range(4))
    assert consumer.holding.wait(WAIT)
    assert producer.wait_pushed(2)
    assert not producer.wait_pushed(3, STUCK)  # stuck on 2
    consumer.gate.set()  # the observer raises on 0
    assert producer.finished()
    pool.executor.shutdown(wait=True)
    assert consumer.got == [0]


@pytest.mark.timeout(20)
def test_block_reentered_from_the_consumer_thread_errors_instead_of_deadlocking() -> None:
    src: Subject[int] = Subject()
    got: list[int] = []
    errors: list[Exception] = []
    done = threading.Event()

    def feeds_its_own_source(value: int) -> None:
        got.append(value)
        if value == 0:
            src.on_next(100)  # fills the queue (size 1)
            src.on_next(101)  # would wait for ourselves

    def on_err(error: Exception) -> None:
        errors.append(error)
        done.set()

    src.pipe(ops.bounded_buffer(1, "block", scheduler=NewThreadScheduler())).subscribe(
        feeds_its_own_source, on_err, done.set
    )
    src.on_next(0)
    assert done.wait(WAIT), "deadlocked"
    assert got == [0, 100]
    [err] = errors
    assert isinstance(err, BufferOverflow) and "consumer's own thread" in str(err)


def test_public_names_sit_beside_reactivex_buffer() -> None:
    assert {"bounded_buffer", "BufferOverflow"} <= set(ops.__all__)
    assert ops.buffer is reactivex.operators.buffer
