"""``conflate``: hand items to another thread, keeping only the latest per key while it is busy."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable, SingleAssignmentDisposable

from ..metrics import Metrics, count_discarded
from ._buffer import _default_scheduler  # one shared pool for both hand-over operators

_T = TypeVar("_T")

_NOT_DONE = object()


class _State:
    __slots__ = ("done", "draining", "dropped", "pending", "stopped")

    def __init__(self) -> None:
        # Insertion-ordered: keys drain in the order they first became pending.
        self.pending: dict[Hashable, Any] = {}
        self.draining = False
        self.stopped = False
        self.done: object = _NOT_DONE  # an Exception, True (completed) or _NOT_DONE
        self.dropped = 0


def conflate_(
    key: Callable[[Any], Hashable] | None = None,
    scheduler: abc.SchedulerBase | None = None,
    on_conflated: Callable[[int], None] | None = None,
    metrics: Metrics | None = None,
) -> Callable[[Observable[_T]], Observable[_T]]:
    def conflate(source: Observable[_T]) -> Observable[_T]:
        def subscribe(
            observer: abc.ObserverBase[_T],
            scheduler_: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            sched = scheduler or _default_scheduler()
            lock = threading.Lock()
            st = _State()

            def drain(_s: abc.SchedulerBase, _st: Any = None) -> None:
                # Runs on the consumer's thread; the producer only ever takes the lock
                # for a dict assignment, so a slow observer never slows the socket.
                while True:
                    with lock:
                        if st.stopped:
                            return
                        if not st.pending:
                            st.draining = False
                            done = st.done
                            if done is not _NOT_DONE:
                                st.stopped = True
                            break
                        items = list(st.pending.values())
                        st.pending.clear()
                    for item in items:
                        observer.on_next(item)
                if isinstance(done, Exception):
                    observer.on_error(done)
                elif done is not _NOT_DONE:
                    observer.on_completed()

            def kick_locked() -> None:
                if not st.draining:
                    st.draining = True
                    sched.schedule(drain)

            def on_next(value: _T) -> None:
                if key is None:
                    k: Hashable = None
                else:
                    try:
                        k = key(value)
                    except Exception as error:  # a user's callback: it becomes on_error
                        fail(error)
                        return
                dropped = 0
                with lock:
                    if st.stopped or st.done is not _NOT_DONE:
                        return
                    if k in st.pending:
                        st.dropped += 1
                        dropped = st.dropped
                        count_discarded("conflated", metrics)
                    st.pending[k] = value
                    kick_locked()
                if dropped and on_conflated is not None:
                    try:
                        # Outside the lock: the callback may dispose, or push into the source.
                        on_conflated(dropped)
                    except Exception as error:
                        fail(error)

            def fail(error: Exception) -> None:
                # The error goes after what is pending, on the consumer's thread (never
                # beside an on_next in progress there); the source is let go at once.
                on_done(error)
                upstream.dispose()

            def on_done(done: object) -> None:
                with lock:
                    if st.stopped or st.done is not _NOT_DONE:
                        return
                    st.done = done
                    kick_locked()

            def dispose() -> None:
                with lock:
                    st.stopped = True
                    st.pending.clear()

            upstream = SingleAssignmentDisposable()
            upstream.disposable = source.subscribe(
                on_next, on_done, lambda: on_done(True), scheduler=scheduler_
            )
            return CompositeDisposable(upstream, Disposable(dispose))

        return Observable(subscribe)

    return conflate
