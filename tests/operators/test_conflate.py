"""conflate: the producer never waits; a busy consumer sees the latest per key."""

from __future__ import annotations

import threading
from typing import Any

from reactivex.scheduler import NewThreadScheduler
from reactivex.subject import Subject
from reactivex.testing import ReactiveTest, TestScheduler

from rxalpaca import ops

on_next, on_error = ReactiveTest.on_next, ReactiveTest.on_error
on_completed, subscribe = ReactiveTest.on_completed, ReactiveTest.subscribe


def test_in_virtual_time_items_pile_up_until_the_drain_runs() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(
        on_next(210, ("A", 1)),
        on_next(210, ("A", 2)),
        on_next(210, ("B", 1)),
        on_completed(220),
    )
    res = scheduler.start(lambda: xs.pipe(ops.conflate(key=lambda x: x[0], scheduler=scheduler)))
    values = [m.value.value for m in res.messages if m.value.kind == "N"]
    assert values == [("A", 2), ("B", 1)]
    assert res.messages[-1].value.kind == "C"


def test_slow_consumer_gets_latest_per_key_on_its_own_thread() -> None:
    src: Subject[tuple[str, int]] = Subject()
    gate = threading.Event()
    started = threading.Event()
    done = threading.Event()
    got: list[tuple[str, int]] = []
    threads: set[str] = set()

    def slow(v: tuple[str, int]) -> None:
        threads.add(threading.current_thread().name)
        started.set()
        gate.wait(5)
        got.append(v)

    replaced: list[int] = []
    src.pipe(
        ops.conflate(
            key=lambda x: x[0], scheduler=NewThreadScheduler(), on_conflated=replaced.append
        )
    ).subscribe(slow, on_completed=done.set)
    src.on_next(("A", 0))
    assert started.wait(5)
    for i in range(1, 1000):  # the consumer is blocked: these must not block us
        src.on_next(("A", i))
        src.on_next(("B", i))
    gate.set()
    src.on_completed()
    assert done.wait(5)
    assert got == [("A", 0), ("A", 999), ("B", 999)]
    assert threading.main_thread().name not in threads
    assert replaced and replaced[-1] == 2 * 999 - 2


def test_a_raising_key_ends_the_stream_and_lets_go_of_the_source() -> None:
    # The error comes after what was pending, on the consumer's scheduler (as
    # bounded_buffer's on_overflow does), and the source is disposed at once.
    scheduler = TestScheduler()
    bad = KeyError("no symbol")

    def key(x: tuple[str, int]) -> str:
        if x[0] == "?":
            raise bad
        return x[0]

    xs = scheduler.create_hot_observable(
        on_next(210, ("A", 1)),
        on_next(220, ("B", 1)),
        on_next(220, ("?", 0)),
        on_next(230, ("A", 2)),
        on_completed(300),
    )
    res = scheduler.start(lambda: xs.pipe(ops.conflate(key=key, scheduler=scheduler)))
    assert res.messages == [on_next(210, ("A", 1)), on_next(220, ("B", 1)), on_error(220, bad)]
    assert xs.subscriptions == [subscribe(200, 220)]


def test_a_raising_on_conflated_ends_the_stream_and_lets_go_of_the_source() -> None:
    scheduler = TestScheduler()
    bad = RuntimeError("metrics backend down")

    def on_conflated(_n: int) -> None:
        raise bad

    xs = scheduler.create_hot_observable(
        on_next(210, ("A", 1)),
        on_next(210, ("A", 2)),  # replaces A1 before the drain runs: on_conflated(1)
        on_next(230, ("A", 3)),
        on_completed(300),
    )
    res = scheduler.start(
        lambda: xs.pipe(
            ops.conflate(key=lambda x: x[0], scheduler=scheduler, on_conflated=on_conflated)
        )
    )
    assert res.messages == [on_next(210, ("A", 2)), on_error(210, bad)]
    assert xs.subscriptions == [subscribe(200, 210)]


def test_on_conflated_may_dispose_the_stream_it_counts() -> None:
    # on_conflated used to run under the operator's lock: disposing from it deadlocked.
    src: Subject[tuple[str, int]] = Subject()
    scheduler = TestScheduler()
    got: list[tuple[str, int]] = []
    subscription: list[Any] = []

    def on_conflated(_n: int) -> None:
        subscription[0].dispose()

    subscription.append(
        src.pipe(
            ops.conflate(key=lambda x: x[0], scheduler=scheduler, on_conflated=on_conflated)
        ).subscribe(got.append)
    )
    src.on_next(("A", 1))
    done = threading.Event()

    def push() -> None:
        src.on_next(("A", 2))
        done.set()

    worker = threading.Thread(target=push, daemon=True)
    worker.start()
    assert done.wait(5), "on_conflated deadlocked disposing its own stream"
    scheduler.start()
    assert got == []  # disposed before the drain ran
