"""``retry_with_backoff``: resubscribe after transient errors, exponential back-off, full jitter."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable, SerialDisposable
from reactivex.scheduler import TimeoutScheduler

from ..errors import RxAlpacaError

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How to retry.

    The n-th retry (n = 0, 1, …) waits ``uniform(0, cap)`` seconds ("full jitter"),
    where ``cap = min(max_delay, initial_delay * multiplier**n) * error.backoff_factor``
    (406 has a factor of 10: the old session may hold the slot, §2.5).

    Args:
        initial_delay: the first cap, in seconds.
        max_delay: the largest cap (before the error's factor).
        multiplier: growth per attempt.
        max_attempts: give up after this many retries in a row (``None``: forever).
        jitter: ``False`` waits exactly ``cap`` (deterministic tests).
    """

    initial_delay: float = 0.1
    max_delay: float = 30.0
    multiplier: float = 2.0
    max_attempts: int | None = None
    jitter: bool = True

    def should_retry(self, error: BaseException) -> bool:
        """Retry transient errors only: typed retryable errors and network errors."""
        if isinstance(error, RxAlpacaError):
            return error.retryable
        return isinstance(error, (OSError, TimeoutError, ConnectionError))

    def delay(self, attempt: int, error: BaseException, rand: Callable[[], float]) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        factor = error.backoff_factor if isinstance(error, RxAlpacaError) else 1.0
        cap = min(self.max_delay, self.initial_delay * self.multiplier**attempt) * factor
        return rand() * cap if self.jitter else cap


def _random() -> float:
    """``random.random()``; ``random`` is imported at the first retry, not at start-up."""
    import random  # noqa: PLC0415 - docs/benchmarks.md, "Import time"

    return random.random()


def retry_with_backoff_(
    policy: RetryPolicy | None = None,
    scheduler: abc.SchedulerBase | None = None,
    *,
    reset_on: Callable[[Any], bool] | None = None,
    on_retry: Callable[[BaseException, int, float], None] | None = None,
    rand: Callable[[], float] | None = None,
) -> Callable[[Observable[_T]], Observable[_T]]:
    pol = policy if policy is not None else RetryPolicy()
    draw = rand if rand is not None else _random

    def retry_with_backoff(source: Observable[_T]) -> Observable[_T]:
        def subscribe(
            observer: abc.ObserverBase[_T],
            scheduler_: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            sched = scheduler or scheduler_ or TimeoutScheduler.singleton()
            # Per-subscription state (RxPY's own retry once shared its budget).
            attempt = 0
            lock = threading.Lock()
            disposed = False
            current = SerialDisposable()
            timer = SerialDisposable()

            def on_next(value: _T) -> None:
                nonlocal attempt
                if reset_on is None:
                    attempt = 0
                else:
                    try:
                        healthy = reset_on(value)
                    except Exception as failure:  # a user's callback: it becomes on_error
                        fail(failure)
                        return
                    if healthy:
                        attempt = 0
                observer.on_next(value)

            def on_error(error: Exception) -> None:
                nonlocal attempt
                try:  # the policy (a subclass is user code) and on_retry
                    exhausted = pol.max_attempts is not None and attempt >= pol.max_attempts
                    retry = pol.should_retry(error) and not exhausted
                    if retry:
                        wait = pol.delay(attempt, error, draw)
                        attempt += 1
                        if on_retry is not None:
                            on_retry(error, attempt, wait)
                except Exception as failure:
                    fail(failure)
                    return
                if not retry:
                    observer.on_error(error)
                    return
                with lock:
                    if disposed:
                        return
                    timer.disposable = sched.schedule_relative(wait, lambda _s, _st: connect())

            def fail(failure: Exception) -> None:
                """End the stream with ``failure``: no further try, the source let go."""
                nonlocal disposed
                with lock:
                    if disposed:
                        return
                    disposed = True
                timer.dispose()
                current.dispose()
                observer.on_error(failure)

            def connect() -> None:
                with lock:
                    if disposed:
                        return
                # Subscribing may deliver (even error) synchronously; assign afterwards.
                sub = source.subscribe(
                    on_next, on_error, observer.on_completed, scheduler=scheduler_
                )
                current.disposable = sub

            def dispose() -> None:
                nonlocal disposed
                with lock:
                    disposed = True
                # Dispose outside the lock: it may join a socket thread.
                timer.dispose()
                current.dispose()

            connect()
            return CompositeDisposable(Disposable(dispose))

        return Observable(subscribe)

    return retry_with_backoff
