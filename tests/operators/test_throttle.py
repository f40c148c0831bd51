"""throttle: leading item at once, the latest at the end of the window, per key."""

from __future__ import annotations

from datetime import timedelta

import pytest
from reactivex.testing import ReactiveTest, TestScheduler

from rxalpaca import ops

on_next, on_error, on_completed = (
    ReactiveTest.on_next,
    ReactiveTest.on_error,
    ReactiveTest.on_completed,
)
subscribe = ReactiveTest.subscribe


def test_leading_and_trailing_edge() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(
        on_next(210, "a"),
        on_next(212, "b"),
        on_next(214, "c"),
        on_next(250, "d"),
        on_completed(300),
    )
    res = scheduler.start(lambda: xs.pipe(ops.throttle(10, scheduler=scheduler)))
    assert res.messages == [
        on_next(210, "a"),
        on_next(220, "c"),
        on_next(250, "d"),
        on_completed(300),
    ]
    assert xs.subscriptions == [subscribe(200, 300)]


def test_per_key_windows() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(
        on_next(210, ("A", 1)),
        on_next(211, ("B", 1)),
        on_next(212, ("A", 2)),
        on_next(213, ("A", 3)),
        on_next(214, ("B", 2)),
    )
    res = scheduler.start(
        lambda: xs.pipe(ops.throttle(10, key=lambda x: x[0], scheduler=scheduler))
    )
    assert res.messages == [
        on_next(210, ("A", 1)),
        on_next(211, ("B", 1)),
        on_next(220, ("A", 3)),
        on_next(221, ("B", 2)),
    ]


def test_latest_is_flushed_on_completion() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(on_next(210, 1), on_next(211, 2), on_completed(212))
    res = scheduler.start(lambda: xs.pipe(ops.throttle(100, scheduler=scheduler)))
    assert res.messages == [on_next(210, 1), on_next(212, 2), on_completed(212)]


def test_steady_stream_emits_once_per_interval() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(*[on_next(201 + i, i) for i in range(100)])
    res = scheduler.start(lambda: xs.pipe(ops.throttle(10, scheduler=scheduler)), disposed=400)
    times = [m.time for m in res.messages]
    assert times == list(range(201, 302, 10))
    assert res.messages[-1].value.value == 99  # the very last item still arrives


def test_error_propagates_and_dispose_stops_timers() -> None:
    scheduler = TestScheduler()
    err = RuntimeError("x")
    xs = scheduler.create_hot_observable(on_next(210, 1), on_next(211, 2), on_error(212, err))
    res = scheduler.start(lambda: xs.pipe(ops.throttle(10, scheduler=scheduler)))
    assert res.messages == [on_next(210, 1), on_error(212, err)]


def test_a_raising_key_ends_the_stream_and_lets_go_of_the_source() -> None:
    # RxPY wraps user callbacks: the exception goes to on_error, not up the producer's
    # thread (on a client's stream, the socket thread) leaving the operator half-alive.
    scheduler = TestScheduler()
    bad = KeyError("no symbol")

    def key(x: tuple[str, int]) -> str:
        if x[0] == "?":
            raise bad
        return x[0]

    xs = scheduler.create_hot_observable(
        on_next(210, ("A", 1)),
        on_next(212, ("A", 2)),  # pending in A's window: dropped with the stream
        on_next(215, ("?", 0)),
        on_next(216, ("B", 1)),
        on_completed(300),
    )
    res = scheduler.start(lambda: xs.pipe(ops.throttle(10, key=key, scheduler=scheduler)))
    assert res.messages == [on_next(210, ("A", 1)), on_error(215, bad)]
    assert xs.subscriptions == [subscribe(200, 215)]


def test_a_non_positive_interval_is_refused() -> None:
    for interval in (0, -1.0, timedelta(0)):
        with pytest.raises(ValueError, match="interval must be positive"):
            ops.throttle(interval)
