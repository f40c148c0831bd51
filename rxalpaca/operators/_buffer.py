"""``bounded_buffer``: hand items to another thread through a queue of at most ``size`` items.

What happens when the queue is full is the caller's explicit choice (``overflow``):

* ``"drop_oldest"`` evicts the oldest queued item: the consumer stays as fresh as it
  can be while it is slow. The socket thread never waits.
* ``"drop_newest"`` drops the incoming item: the consumer sees an unbroken prefix of
  each burst. The socket thread never waits.
* ``"block"`` makes the producer wait for room. On a client's stream the producer is
  the socket thread, so waiting stops the socket from being read: the server's
  outbound buffer fills and it drops a client that stays behind with ``407 slow
  client``. Use it where losing an item is worse than a reconnect.
* ``"error"`` ends the stream with :class:`BufferOverflow` (after the queued items) and
  unsubscribes from the source.

Threading: one lock (``lock``, with the condition ``room`` built on it) guards the
whole per-subscription :class:`_State`. The producer's thread (the socket thread)
appends and evicts; the consumer's thread (the one running ``drain`` on
``scheduler``) pops; any thread may dispose. The observer is only ever called from
``drain``, one call at a time and never under the lock, so it may dispose, or push
into the source, from inside ``on_next``.

``block`` cannot wait for its own consumer: when the producer *is* the consumer's
thread (an observer that feeds its own source, or a scheduler that runs the consumer
on the caller's thread — virtual time, current-thread, immediate) a full queue ends
the stream with :class:`BufferOverflow` instead of deadlocking. We end the stream
rather than fall back to dropping because ``block`` is chosen to lose nothing: a
silent drop would break that promise, where the error says exactly what went wrong.
Cycles the buffer cannot see (the producer itself runs on the consumer's thread pool,
every worker of which is waiting for room) still deadlock: with ``block``, give the
consumer a scheduler whose threads never produce into the buffer.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Literal, TypeVar, get_args

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable, SingleAssignmentDisposable
from reactivex.scheduler import (
    ImmediateScheduler,
    ThreadPoolScheduler,
    TrampolineScheduler,
    VirtualTimeScheduler,
)

from ..errors import BufferOverflow
from ..metrics import Metrics, count_discarded

_T = TypeVar("_T")

OverflowPolicy = Literal["drop_oldest", "drop_newest", "block", "error"]
_POLICIES: tuple[str, ...] = get_args(OverflowPolicy)
_NOT_DONE = object()

# Schedulers that run scheduled work on the calling thread (now, or once the caller
# returns to the scheduler's loop): a producer on that thread can never wait for room.
_SAME_THREAD_SCHEDULERS = (ImmediateScheduler, TrampolineScheduler, VirtualTimeScheduler)

# The pool ``bounded_buffer`` and ``conflate`` hand items over on by default: one, shared,
# made on first use. Here rather than in ``_conflate``, which the client never loads
# unless asked (streams and ``on_loop`` need this module; docs/benchmarks.md "Memory").
_DEFAULT_SCHEDULER: list[abc.SchedulerBase] = []


def _default_scheduler() -> abc.SchedulerBase:
    if not _DEFAULT_SCHEDULER:
        _DEFAULT_SCHEDULER.append(ThreadPoolScheduler(4))
    return _DEFAULT_SCHEDULER[0]


class _State:
    __slots__ = ("consumer", "done", "draining", "dropped", "queue", "stopped")

    def __init__(self) -> None:
        self.queue: deque[Any] = deque()
        self.draining = False  # a drain is scheduled or running
        self.consumer: int | None = None  # ident of the thread inside observer.on_next
        self.stopped = False  # disposed, or the terminal event was handed over
        self.done: object = _NOT_DONE  # an Exception, True (completed) or _NOT_DONE
        self.dropped = 0


def bounded_buffer_(
    size: int,
    overflow: OverflowPolicy = "drop_oldest",
    scheduler: abc.SchedulerBase | None = None,
    on_overflow: Callable[[int], None] | None = None,
    metrics: Metrics | None = None,
) -> Callable[[Observable[_T]], Observable[_T]]:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, not {size!r}")
    if overflow not in _POLICIES:
        raise ValueError(f"overflow must be one of {', '.join(_POLICIES)}; not {overflow!r}")
    block = overflow == "block"

    def bounded_buffer(source: Observable[_T]) -> Observable[_T]:
        def subscribe(
            observer: abc.ObserverBase[_T],
            scheduler_: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            sched = scheduler or _default_scheduler()
            can_wait = not isinstance(sched, _SAME_THREAD_SCHEDULERS)
            lock = threading.Lock()
            room = threading.Condition(lock)  # notified when an item leaves a full queue
            st = _State()
            upstream = SingleAssignmentDisposable()

            def drain(_s: abc.SchedulerBase, _state: Any = None) -> None:
                # The consumer's thread: one item per lock hold, so a blocked producer
                # gets room as soon as there is some and disposal stops us at once.
                me = threading.get_ident()
                while True:
                    with lock:
                        if st.stopped:
                            return
                        if not st.queue:
                            st.draining = False
                            st.consumer = None
                            done = st.done
                            if done is not _NOT_DONE:
                                st.stopped = True
                            break
                        item = st.queue.popleft()
                        st.consumer = me
                        if block:
                            room.notify()
                    try:
                        observer.on_next(item)
                    except Exception:
                        # Stop taking items and free a waiting producer; the error goes
                        # to the scheduler, as with reactivex's observe_on.
                        release()
                        upstream.dispose()
                        raise
                if isinstance(done, Exception):
                    observer.on_error(done)
                elif done is not _NOT_DONE:
                    observer.on_completed()

            def end_locked(done: object) -> bool:
                """Record the terminal event (delivered after the queue); True to kick a drain."""
                st.done = done
                room.notify_all()  # a waiting producer must not wait for an ended stream
                if st.draining:
                    return False
                st.draining = True
                return True

            def on_next(value: _T) -> None:
                # The producer's thread (the socket thread on a client's stream).
                kick = False
                dropped = 0
                failure: BufferOverflow | None = None
                with lock:
                    if st.stopped or st.done is not _NOT_DONE:
                        return
                    accept = True
                    if len(st.queue) >= size:
                        if overflow == "drop_oldest":
                            st.queue.popleft()
                            st.dropped += 1
                            dropped = st.dropped
                        elif overflow == "drop_newest":
                            st.dropped += 1
                            dropped = st.dropped
                            accept = False
                        elif block and can_wait and st.consumer != threading.get_ident():
                            while len(st.queue) >= size and not (
                                st.stopped or st.done is not _NOT_DONE
                            ):
                                room.wait()
                            if st.stopped or st.done is not _NOT_DONE:
                                return  # disposed, or ended, while we waited
                        else:
                            failure = BufferOverflow(
                                size,
                                "overflow='block' cannot wait on the consumer's own thread"
                                if block
                                else "overflow='error'",
                            )
                            kick = end_locked(failure)
                            accept = False
                    if accept:
                        st.queue.append(value)
                        if not st.draining:
                            st.draining = kick = True
                if failure is not None:
                    upstream.dispose()
                if kick:
                    start_drain()
                if dropped:
                    count_discarded("buffer_overflow", metrics)
                if dropped and on_overflow is not None:
                    try:
                        on_overflow(dropped)
                    except Exception as error:  # a user's callback: it becomes on_error
                        on_done(error)
                        upstream.dispose()

            def start_drain() -> None:
                try:
                    sched.schedule(drain)
                except Exception:
                    # No consumer will ever run (a shut-down pool): end here rather
                    # than leave a producer waiting for room that never comes.
                    release()
                    upstream.dispose()
                    raise

            def on_done(done: object) -> None:
                with lock:
                    if st.stopped or st.done is not _NOT_DONE:
                        return
                    kick = end_locked(done)
                if kick:
                    start_drain()

            def release() -> None:
                with lock:
                    st.stopped = True
                    st.queue.clear()
                    room.notify_all()

            upstream.disposable = source.subscribe(
                on_next, on_done, lambda: on_done(True), scheduler=scheduler_
            )
            # Release a waiting producer before disposing the source: disposing a socket
            # may wait for the socket thread, which may be the producer waiting for room.
            return CompositeDisposable(Disposable(release), upstream)

        return Observable(subscribe)

    return bounded_buffer
