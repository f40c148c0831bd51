"""retry_with_backoff in virtual time: delays, error awareness, per-subscription budget."""

from __future__ import annotations

from typing import Any

import pytest
from reactivex.testing import ReactiveTest, TestScheduler

from rxalpaca import errors, ops

on_next, on_error, on_completed = (
    ReactiveTest.on_next,
    ReactiveTest.on_error,
    ReactiveTest.on_completed,
)
subscribe = ReactiveTest.subscribe

NO_JITTER = ops.RetryPolicy(initial_delay=10.0, max_delay=40.0, multiplier=2.0, jitter=False)


def test_retries_transient_errors_with_exponential_delays() -> None:
    scheduler = TestScheduler()
    err = errors.ConnectionLostError("drop")
    xs = scheduler.create_cold_observable(on_next(5, "a"), on_error(10, err))
    retries: list[tuple[int, float]] = []
    res = scheduler.start(
        lambda: xs.pipe(
            ops.retry_with_backoff(
                NO_JITTER,
                scheduler,
                reset_on=lambda v: False,
                on_retry=lambda e, n, d: retries.append((n, d)),
            )
        ),
        disposed=300,
    )
    # errors at 210, 230, 260; waits 10, 20, then 40 — the next try (300) is after disposal
    assert xs.subscriptions == [subscribe(200, 210), subscribe(220, 230), subscribe(250, 260)]
    assert retries[:3] == [(1, 10.0), (2, 20.0), (3, 40.0)]
    assert [m.time for m in res.messages] == [205, 225, 255]


def test_item_resets_the_attempt_count() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_next(5, "ok"), on_error(10, errors.SlowClient()))
    delays: list[float] = []
    scheduler.start(
        lambda: xs.pipe(
            ops.retry_with_backoff(NO_JITTER, scheduler, on_retry=lambda e, n, d: delays.append(d))
        ),
        disposed=300,
    )
    assert set(delays) == {10.0}


@pytest.mark.parametrize("code", [401, 402, 409, 410, 412])
def test_fatal_codes_stop_with_their_typed_error(code: int) -> None:
    scheduler = TestScheduler()
    err = errors.error_for_code(code)
    xs = scheduler.create_cold_observable(on_error(10, err))
    res = scheduler.start(lambda: xs.pipe(ops.retry_with_backoff(NO_JITTER, scheduler)))
    assert res.messages == [on_error(210, err)]
    assert xs.subscriptions == [subscribe(200, 210)]


@pytest.mark.parametrize(
    "exc",
    [
        errors.SlowClient(),
        errors.InternalServerError(),
        errors.AuthTimeout(),
        ConnectionResetError(),
        OSError(),
    ],
)
def test_transient_errors_retry(exc: Exception) -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_error(10, exc))
    scheduler.start(lambda: xs.pipe(ops.retry_with_backoff(NO_JITTER, scheduler)), disposed=250)
    assert len(xs.subscriptions) >= 2


def test_406_waits_ten_times_longer() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_error(10, errors.ConnectionLimitExceeded()))
    delays: list[float] = []
    scheduler.start(
        lambda: xs.pipe(
            ops.retry_with_backoff(
                ops.RetryPolicy(initial_delay=1.0, jitter=False),
                scheduler,
                on_retry=lambda e, n, d: delays.append(d),
            )
        ),
        disposed=250,
    )
    assert delays[0] == 10.0


def test_programming_errors_are_not_retried() -> None:
    scheduler = TestScheduler()
    err = TypeError("bug")
    xs = scheduler.create_cold_observable(on_error(10, err))
    res = scheduler.start(lambda: xs.pipe(ops.retry_with_backoff(NO_JITTER, scheduler)))
    assert res.messages == [on_error(210, err)]


def test_max_attempts_then_error() -> None:
    scheduler = TestScheduler()
    err = errors.ConnectionLostError("x")
    xs = scheduler.create_cold_observable(on_error(1, err))
    pol = ops.RetryPolicy(initial_delay=1.0, jitter=False, max_attempts=2)
    res = scheduler.start(lambda: xs.pipe(ops.retry_with_backoff(pol, scheduler)))
    assert len(xs.subscriptions) == 3
    assert res.messages[-1].value.kind == "E"


def test_budget_is_per_subscription() -> None:
    scheduler = TestScheduler()
    err = errors.ConnectionLostError("x")
    xs = scheduler.create_cold_observable(on_error(1, err))
    pol = ops.RetryPolicy(initial_delay=1.0, jitter=False, max_attempts=1)
    op = ops.retry_with_backoff(pol, scheduler)
    results: list[Any] = []
    xs.pipe(op).subscribe(on_error=results.append, scheduler=scheduler)
    xs.pipe(op).subscribe(on_error=results.append, scheduler=scheduler)
    scheduler.start()
    assert len(results) == 2
    assert len(xs.subscriptions) == 4  # each subscription: first try + one retry


def test_full_jitter_stays_within_the_cap() -> None:
    pol = ops.RetryPolicy(initial_delay=1.0, max_delay=8.0)
    for attempt in range(10):
        cap = min(8.0, 2.0**attempt)
        assert pol.delay(attempt, OSError(), lambda: 0.999) <= cap
        assert pol.delay(attempt, OSError(), lambda: 0.0) == 0.0


def test_dispose_cancels_the_pending_retry() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_error(10, errors.ConnectionLostError("x")))
    scheduler.start(lambda: xs.pipe(ops.retry_with_backoff(NO_JITTER, scheduler)), disposed=215)
    assert xs.subscriptions == [subscribe(200, 210)]


def test_a_raising_reset_on_ends_the_stream_and_lets_go_of_the_source() -> None:
    scheduler = TestScheduler()
    bad = ValueError("bad item")

    def reset_on(v: str) -> bool:
        if v == "?":
            raise bad
        return True

    xs = scheduler.create_cold_observable(
        on_next(5, "a"), on_next(10, "?"), on_next(15, "b"), on_completed(50)
    )
    res = scheduler.start(
        lambda: xs.pipe(ops.retry_with_backoff(NO_JITTER, scheduler, reset_on=reset_on))
    )
    assert res.messages == [on_next(205, "a"), on_error(210, bad)]
    assert xs.subscriptions == [subscribe(200, 210)]


def test_a_raising_on_retry_ends_the_stream_without_retrying() -> None:
    scheduler = TestScheduler()
    bad = RuntimeError("logging backend down")

    def on_retry(_e: BaseException, _n: int, _d: float) -> None:
        raise bad

    xs = scheduler.create_cold_observable(
        on_next(5, "a"), on_error(10, errors.ConnectionLostError("x"))
    )
    res = scheduler.start(
        lambda: xs.pipe(ops.retry_with_backoff(NO_JITTER, scheduler, on_retry=on_retry))
    )
    assert res.messages == [on_next(205, "a"), on_error(210, bad)]
    assert xs.subscriptions == [subscribe(200, 210)]  # and no second try


def test_a_raising_policy_ends_the_stream_without_retrying() -> None:
    # A RetryPolicy subclass is user code too.
    class Broken(ops.RetryPolicy):
        def should_retry(self, error: BaseException) -> bool:
            raise bad

    scheduler = TestScheduler()
    bad = AttributeError("no backoff_factor")
    xs = scheduler.create_cold_observable(on_error(10, errors.ConnectionLostError("x")))
    res = scheduler.start(lambda: xs.pipe(ops.retry_with_backoff(Broken(), scheduler)))
    assert res.messages == [on_error(210, bad)]
    assert xs.subscriptions == [subscribe(200, 210)]
