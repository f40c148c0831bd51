"""``on_loop``: deliver to an asyncio event loop through a bounded, thread-safe hand-over.

The socket thread must never wait for an event loop (a loop busy in someone's
coroutine would stall the socket, and the server drops slow clients with 407), and a
loop that falls behind must not pile up work without bound. So items cross through a
:class:`Handover`: a queue of at most ``size`` items, counted on the *producer's*
side (``loop.call_soon_threadsafe`` alone would queue one callback per item in the
loop, unbounded), with the overflow policies of :func:`bounded_buffer`:
``"drop_oldest"``, ``"drop_newest"``, ``"block"`` and ``"error"``.

On the loop, one task per subscription takes items in order and calls the observer;
a callback that is a coroutine function (``async def``) is awaited before the next
item, so a slow async handler fills the queue and the overflow policy decides, while
the socket thread goes on.

Threading: ``Handover._lock`` (with the condition ``_room`` on it) guards its queue,
terminal event and waiter. Producers (any thread; the socket thread on a client's
stream) append; the consumer task (the loop's thread) pops. The observer is only
called from that task, never under the lock.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import inspect
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from reactivex import Observable, abc
from reactivex.disposable import Disposable

from ..errors import BufferOverflow
from ..metrics import Metrics, count_discarded
from ._buffer import _POLICIES, OverflowPolicy

__all__ = [
    "DONE",
    "ERROR",
    "NEXT",
    "STOPPED",
    "Handover",
    "LoopObservable",
    "deliver_on_loop",
    "is_async_callable",
    "on_loop",
    "user_callbacks",
]

logger = logging.getLogger("rxalpaca")

_T = TypeVar("_T")
NEXT, ERROR, DONE, STOPPED = 0, 1, 2, 3
_NOT_DONE: Any = object()

# Strong references to the consumer tasks: the loop keeps only weak ones.
_TASKS: set[asyncio.Future[None] | concurrent.futures.Future[None]] = set()


def user_callbacks(observer: object) -> tuple[Any, Any, Any]:
    """The user's callbacks behind an observer handed to a subscribe function.

    ``Observable.subscribe`` wraps callbacks — and an observer object's bound methods —
    in an ``AutoDetachObserver`` that keeps them as ``_on_next`` / ``_on_error`` /
    ``_on_completed``; anything else is its own callback.
    """
    inner = tuple(getattr(observer, a, None) for a in ("_on_next", "_on_error", "_on_completed"))
    if any(cb is not None for cb in inner):
        return inner  # type: ignore[return-value]
    return tuple(getattr(observer, a, None) for a in ("on_next", "on_error", "on_completed"))  # type: ignore[return-value]


def is_async_callable(callback: object) -> bool:
    """``callback`` is an ``async def`` (a function, a partial of one, or an async ``__call__``)."""
    while isinstance(callback, functools.partial):
        callback = callback.func
    return inspect.iscoroutinefunction(callback) or inspect.iscoroutinefunction(
        getattr(callback, "__call__", None)  # noqa: B004 - an object with async __call__
    )


def _check(size: int, overflow: str) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError(f"size must be an int >= 0 (0: unbounded), not {size!r}")
    if overflow not in _POLICIES:
        raise ValueError(f"overflow must be one of {', '.join(_POLICIES)}; not {overflow!r}")


class Handover(Generic[_T]):
    """A bounded queue from any thread to one consumer coroutine on ``loop``.

    Args:
        loop: the loop the consumer awaits :meth:`get` on.
        size: at most this many items wait (0: unbounded).
        overflow: what a full queue does to a new item (see :func:`bounded_buffer`).
        on_overflow: called on the producer's thread with the running count of
            dropped items; if it raises, the stream ends with that error.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        size: int = 0,
        overflow: OverflowPolicy = "drop_oldest",
        on_overflow: Callable[[int], None] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        _check(size, overflow)
        self.loop = loop
        self.size = size
        self.overflow = overflow
        self.on_overflow = on_overflow
        self.metrics = metrics
        self.dropped = 0
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # an item left a full queue
        self._queue: deque[_T] = deque()
        self._done: Any = _NOT_DONE  # an Exception, True (completed) or _NOT_DONE
        self._stopped = False  # closed by the consumer's side: drop everything
        self._waiter: asyncio.Future[None] | None = None  # the consumer, parked
        self._consumer: int | None = None  # the loop thread's ident, once it consumed

    # ---- the producer's side (any thread)

    def on_next(self, value: _T) -> None:
        """Queue ``value``, or apply the overflow policy when the queue is full."""
        dropped = 0
        with self._lock:
            if self._stopped or self._done is not _NOT_DONE:
                return
            accept = True
            if self.size and len(self._queue) >= self.size:
                policy = self.overflow
                if policy == "drop_oldest":
                    self._queue.popleft()
                    self.dropped += 1
                    dropped = self.dropped
                elif policy == "drop_newest":
                    self.dropped += 1
                    dropped = self.dropped
                    accept = False
                elif policy == "block" and self._consumer != threading.get_ident():
                    while (
                        len(self._queue) >= self.size
                        and not self._stopped
                        and self._done is _NOT_DONE
                    ):
                        self._room.wait()
                    if self._stopped or self._done is not _NOT_DONE:
                        return  # closed, or ended, while we waited
                else:
                    self._end_locked(
                        BufferOverflow(
                            self.size,
                            "overflow='block' cannot wait on the event loop's own thread"
                            if policy == "block"
                            else "overflow='error'",
                        )
                    )
                    accept = False
            if accept:
                self._queue.append(value)
            waiter = self._take_waiter()
        self._wake(waiter)
        if dropped:
            count_discarded("loop_overflow", self.metrics)
        if dropped and self.on_overflow is not None:
            try:
                self.on_overflow(dropped)
            except Exception as error:  # a user's callback: it ends the stream
                self.on_error(error)

    def on_error(self, error: Exception) -> None:
        """End with ``error``, after the items queued before it."""
        self._end(error)

    def on_completed(self) -> None:
        """Complete, after the items queued before it."""
        self._end(True)

    def _end(self, done: object) -> None:
        with self._lock:
            if self._stopped or self._done is not _NOT_DONE:
                return
            self._end_locked(done)
            waiter = self._take_waiter()
        self._wake(waiter)

    def _end_locked(self, done: object) -> None:
        self._done = done
        self._room.notify_all()  # a waiting producer must not wait for an ended stream

    def _take_waiter(self) -> asyncio.Future[None] | None:
        waiter, self._waiter = self._waiter, None
        return waiter

    def _wake(self, waiter: asyncio.Future[None] | None) -> None:
        if waiter is None:
            return
        # RuntimeError: the loop is closed, so nobody is consuming any more.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(_resolve, waiter)

    # ---- the consumer's side

    async def get(self) -> tuple[int, Any]:
        """The next ``(NEXT, item)``, then ``(ERROR, exc)`` or ``(DONE, None)``; ``(STOPPED, None)``
        once closed. Only ever awaited by one coroutine at a time, on ``loop``."""
        while True:
            with self._lock:
                self._consumer = threading.get_ident()
                if self._stopped:
                    return STOPPED, None
                if self._queue:
                    item = self._queue.popleft()
                    self._room.notify()
                    return NEXT, item
                if self._done is not _NOT_DONE:
                    self._stopped = True
                    done = self._done
                    return (ERROR, done) if isinstance(done, Exception) else (DONE, None)
                waiter = self._waiter = self.loop.create_future()
            await waiter

    def close(self) -> None:
        """Stop: drop what is queued, free a waiting producer and the consumer (any thread)."""
        with self._lock:
            self._stopped = True
            self._queue.clear()
            self._room.notify_all()
            waiter = self._take_waiter()
        self._wake(waiter)

    def __len__(self) -> int:
        with self._lock:
            return len(self._queue)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _loop_or_running(loop: asyncio.AbstractEventLoop | None) -> asyncio.AbstractEventLoop:
    if loop is not None:
        return loop
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "on_loop() without a loop must be subscribed inside a running event loop; "
            "pass loop= to deliver to a loop from another thread"
        ) from None


async def _call(callback: Callable[..., Any], *args: Any) -> None:
    result = callback(*args)
    if inspect.isawaitable(result):
        await result


def deliver_on_loop(
    source: Observable[_T],
    observer: abc.ObserverBase[_T],
    loop: asyncio.AbstractEventLoop | None = None,
    *,
    size: int = 1024,
    overflow: OverflowPolicy = "drop_oldest",
    on_overflow: Callable[[int], None] | None = None,
    on_handler_error: Callable[[BaseException, object, object], None] | None = None,
    scheduler: abc.SchedulerBase | None = None,
    metrics: Metrics | None = None,
) -> abc.DisposableBase:
    """Subscribe ``observer`` to ``source``, calling it on ``loop`` (see :func:`on_loop`).

    ``observer`` may be the one a subscribe function is handed: its user's callbacks
    are found behind reactivex's ``AutoDetachObserver``, so ``async def`` ones are
    awaited. An exception from ``on_next`` goes to ``on_handler_error(exc, item,
    observer)`` (default: logged) and the stream goes on.
    """
    _check(size, overflow)
    target = _loop_or_running(loop)
    hand: Handover[_T] = Handover(target, size, overflow, on_overflow, metrics)
    on_next, on_error, on_completed = user_callbacks(observer)
    finish = getattr(observer, "dispose", None)

    def report(exc: BaseException, item: object) -> None:
        if on_handler_error is not None:
            on_handler_error(exc, item, observer)
        else:
            logger.error(
                "observer %s raised %s while handling %s",
                getattr(on_next, "__qualname__", on_next),
                type(exc).__name__,
                type(item).__name__,
                exc_info=(type(exc), exc, exc.__traceback__),
            )

    async def consume() -> None:
        try:
            while True:
                kind, value = await hand.get()
                if kind == NEXT:
                    if on_next is None:
                        continue
                    try:
                        await _call(on_next, value)
                    except Exception as exc:
                        report(exc, value)
                    continue
                if kind == ERROR and on_error is not None:
                    await _call(on_error, value)
                elif kind == DONE and on_completed is not None:
                    await _call(on_completed)
                if kind != STOPPED and callable(finish):
                    finish()
                return
        finally:
            upstream.dispose()

    upstream: abc.DisposableBase = source.subscribe(
        hand.on_next, hand.on_error, hand.on_completed, scheduler=scheduler
    )
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    task: asyncio.Future[None] | concurrent.futures.Future[None]
    if running is target:
        task = target.create_task(consume())
    else:  # subscribed from another thread: the task starts on the loop's thread
        task = asyncio.run_coroutine_threadsafe(consume(), target)
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)

    def dispose() -> None:
        hand.close()
        upstream.dispose()

    return Disposable(dispose)


class LoopObservable(Observable[_T]):
    """What ``on_loop`` returns: an Observable whose ``subscribe`` takes ``async def`` too.

    The same at run time; for type checkers, its callbacks may return anything (a
    coroutine, above all), where ``Observable.subscribe`` wants ``None``.
    """

    if TYPE_CHECKING:

        def subscribe(
            self,
            on_next: abc.ObserverBase[_T] | Callable[[_T], object] | None = None,
            on_error: Callable[[Exception], object] | None = None,
            on_completed: Callable[[], object] | None = None,
            *,
            scheduler: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            """As ``Observable.subscribe``; ``async def`` callbacks are awaited."""
            ...


def on_loop(
    loop: asyncio.AbstractEventLoop | None = None,
    size: int = 1024,
    overflow: OverflowPolicy = "drop_oldest",
    on_overflow: Callable[[int], None] | None = None,
    metrics: Metrics | None = None,
) -> Callable[[Observable[_T]], LoopObservable[_T]]:
    """Deliver on an asyncio ``loop``; ``async def`` observers are awaited, in order.

    The last operator of a pipeline whose observer lives in asyncio code::

        client.trades("AAPL").pipe(
            ops.filter(lambda t: t.size >= 100),
            ops.on_loop(loop, size=1000, overflow="drop_oldest"),
        ).subscribe(async_handler)

    Items cross from the socket thread through a queue of at most ``size`` items
    counted on the socket thread's side, so neither a busy loop nor a slow async
    handler can block the socket or grow memory: ``overflow`` decides, as in
    :func:`bounded_buffer` (``"block"`` makes the socket thread wait; it never waits
    on the loop's own thread, where a full queue ends the stream with
    :class:`~rxalpaca.errors.BufferOverflow`). A handler that raises is logged and
    the stream goes on. Disposing (any thread) stops delivery at once.

    Args:
        loop: the event loop; default: the loop running where ``subscribe`` is called.
        size: the hand-over's capacity in items (0: unbounded).
        overflow: ``"drop_oldest"`` (default), ``"drop_newest"``, ``"block"`` or ``"error"``.
        on_overflow: called on the producer's thread with the running count of dropped items.
        metrics: count dropped items in these metrics' ``messages_discarded``
            (``loop_overflow``); default: the client whose pipeline feeds the hand-over
            on its thread (see :func:`~rxalpaca.metrics.count_discarded`).

    Raises:
        ValueError: a bad ``size`` or ``overflow``.
    """
    _check(size, overflow)

    def operator(source: Observable[_T]) -> LoopObservable[_T]:
        def subscribe(
            observer: abc.ObserverBase[_T], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            return deliver_on_loop(
                source,
                observer,
                loop,
                size=size,
                overflow=overflow,
                on_overflow=on_overflow,
                scheduler=scheduler,
                metrics=metrics,
            )

        return LoopObservable(subscribe)

    return operator
