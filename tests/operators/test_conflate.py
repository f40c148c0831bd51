"""conflate: the producer never waits; a busy consumer sees the latest per key."""

from __future__ import annotations

import threading

from reactivex.scheduler import NewThreadScheduler
from reactivex.subject import Subject
from reactivex.testing import ReactiveTest, TestScheduler

from rxalpaca import ops

on_next, on_completed = ReactiveTest.on_next, ReactiveTest.on_completed


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
