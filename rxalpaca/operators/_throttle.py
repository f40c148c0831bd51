"""``throttle``: at most one item per interval per key, never losing the latest."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from datetime import timedelta
from typing import Any, TypeVar

from reactivex import Observable, abc, typing
from reactivex.disposable import CompositeDisposable, Disposable, SingleAssignmentDisposable
from reactivex.scheduler import TimeoutScheduler

from ..metrics import Metrics, count_discarded

_T = TypeVar("_T")


class _KeyState:
    __slots__ = ("has_pending", "pending", "timer")

    def __init__(self) -> None:
        self.pending: Any = None
        self.has_pending = False
        self.timer: abc.DisposableBase | None = None


def throttle_(
    interval: typing.RelativeTime,
    key: Callable[[Any], Hashable] | None = None,
    scheduler: abc.SchedulerBase | None = None,
    metrics: Metrics | None = None,
) -> Callable[[Observable[_T]], Observable[_T]]:
    seconds = interval.total_seconds() if isinstance(interval, timedelta) else float(interval)
    if seconds <= 0:
        raise ValueError("interval must be positive")

    def throttle(source: Observable[_T]) -> Observable[_T]:
        def subscribe(
            observer: abc.ObserverBase[_T],
            scheduler_: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            sched = scheduler or scheduler_ or TimeoutScheduler.singleton()
            # One lock serialises the source thread and the timer threads, so
            # downstream never sees concurrent on_next calls (Rx grammar).
            lock = threading.RLock()
            windows: dict[Hashable, _KeyState] = {}
            stopped = False

            def open_window(k: Hashable, state: _KeyState) -> None:
                state.timer = sched.schedule_relative(seconds, lambda _s, _st: close_window(k))

            def close_window(k: Hashable) -> None:
                with lock:
                    state = windows.get(k)
                    if state is None or stopped:
                        return
                    if state.has_pending:
                        value, state.pending, state.has_pending = state.pending, None, False
                        observer.on_next(value)  # trailing edge
                        open_window(k, state)
                    else:
                        del windows[k]  # quiet key: nothing kept

            def on_next(value: _T) -> None:
                if key is None:
                    k: Hashable = None
                else:
                    try:
                        k = key(value)
                    except Exception as error:  # a user's callback: it becomes on_error
                        on_error(error)
                        upstream.dispose()
                        return
                with lock:
                    if stopped:
                        return
                    state = windows.get(k)
                    if state is None:
                        state = windows[k] = _KeyState()
                        observer.on_next(value)  # leading edge
                        open_window(k, state)
                    else:
                        if state.has_pending:  # the pending one is replaced, never sent
                            count_discarded("throttled", metrics)
                        state.pending, state.has_pending = value, True

            def stop() -> list[_KeyState]:
                nonlocal stopped
                stopped = True
                states = list(windows.values())
                windows.clear()
                return states

            def on_completed() -> None:
                with lock:
                    if stopped:
                        return
                    states = stop()
                    for st in states:
                        if st.timer is not None:
                            st.timer.dispose()
                        if st.has_pending:
                            observer.on_next(st.pending)  # the latest is never lost
                    observer.on_completed()

            def on_error(error: Exception) -> None:
                with lock:
                    if stopped:
                        return
                    states = stop()
                    for st in states:
                        if st.timer is not None:
                            st.timer.dispose()
                    observer.on_error(error)

            def dispose() -> None:
                with lock:
                    states = stop()
                for st in states:
                    if st.timer is not None:
                        st.timer.dispose()

            upstream = SingleAssignmentDisposable()
            upstream.disposable = source.subscribe(
                on_next, on_error, on_completed, scheduler=scheduler_
            )
            return CompositeDisposable(upstream, Disposable(dispose))

        return Observable(subscribe)

    return throttle
