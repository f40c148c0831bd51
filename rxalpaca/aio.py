"""Bridges out of Rx: ``async for`` for asyncio code, a blocking iterator for scripts.

Neither needs the caller to run an event loop for rxalpaca (the socket has its own
thread), so both work in Jupyter, whose kernel already runs a loop::

    async for quote in rxalpaca.aiterate(client.quotes("AAPL").pipe(ops.take(3))):
        print(quote.bid_price)

    for trade in rxalpaca.iterate(client.trades("AAPL"), timeout=5.0):
        print(trade.price)

``aiterate`` is ``iterate``'s ``async`` twin. It used to be called ``aiter``, which
shadowed the builtin ``aiter`` after ``from rxalpaca import *``; ``rxalpaca.aiter``
still works, and warns (``DeprecationWarning``) each time it is called.
"""

from __future__ import annotations

import asyncio
import queue
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from reactivex import Observable

from .operators._buffer import OverflowPolicy
from .operators._loop import ERROR, NEXT, Handover

__all__ = ["aiterate", "iterate"]

_T = TypeVar("_T")
_NEXT, _ERROR, _DONE = 0, 1, 2  # iterate()'s queue entries


async def aiterate(
    source: Observable[_T],
    maxsize: int = 0,
    overflow: OverflowPolicy = "drop_oldest",
    on_overflow: Callable[[int], None] | None = None,
) -> AsyncIterator[_T]:
    """Iterate ``source`` with ``async for`` on the running asyncio loop.

    Items cross from the socket thread through a hand-over counted on the socket
    thread's side (``ops.on_loop``'s), so a loop that falls behind cannot pile up
    work without bound. Leaving the loop (``break``, an exception, cancellation)
    disposes the subscription.

    Args:
        source: any Observable (e.g. ``client.quotes("AAPL")``).
        maxsize: bound the hand-over (0: unbounded).
        overflow: what a full hand-over does: ``"drop_oldest"`` (default: the newest
            market data matters most), ``"drop_newest"``, ``"block"`` (the socket
            thread waits) or ``"error"`` (the loop raises
            :class:`~rxalpaca.errors.BufferOverflow`).
        on_overflow: called on the producer's thread with the running count of drops.
    """
    hand: Handover[_T] = Handover(asyncio.get_running_loop(), maxsize, overflow, on_overflow)
    sub = source.subscribe(hand.on_next, hand.on_error, hand.on_completed)
    try:
        while True:
            kind, value = await hand.get()
            if kind == NEXT:
                yield value
            elif kind == ERROR:
                raise value
            else:
                return
    finally:
        hand.close()
        sub.dispose()


def iterate(source: Observable[_T], timeout: float | None = None) -> Iterator[_T]:
    """Iterate ``source`` in a plain (blocking) ``for`` loop.

    Args:
        source: any Observable.
        timeout: seconds to wait for each item; ``TimeoutError`` when none came.
            ``None`` waits for ever.

    Subscribes at the first ``next()`` (a generator starts when it is first
    iterated), and blocks the calling thread while it waits. That is fine in a
    script or a Jupyter cell (a cell blocks its kernel while it runs anyway), but in
    a coroutine of an asyncio program it freezes the whole loop: there, use
    ``async for item in aiterate(source)``.

    Raises:
        TimeoutError: no item within ``timeout``.
        Exception: whatever error ended ``source``.
    """
    q: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
    sub = source.subscribe(
        on_next=lambda v: q.put((_NEXT, v)),
        on_error=lambda e: q.put((_ERROR, e)),
        on_completed=lambda: q.put((_DONE, None)),
    )
    try:
        while True:
            try:
                kind, value = q.get(timeout=timeout)
            except queue.Empty:
                raise TimeoutError(f"no item within {timeout} s") from None
            if kind == _NEXT:
                yield value
            elif kind == _ERROR:
                raise value
            else:
                return
    finally:
        sub.dispose()


def _deprecated_aiter(source: Observable[_T], maxsize: int = 0) -> AsyncIterator[_T]:
    """Deprecated: the old name of :func:`aiterate` (it shadowed the builtin ``aiter``)."""
    warnings.warn(
        "rxalpaca.aiter is deprecated because it shadows the builtin aiter; "
        "use rxalpaca.aiterate (same arguments)",
        DeprecationWarning,
        stacklevel=2,
    )
    return aiterate(source, maxsize)


if TYPE_CHECKING:
    from typing_extensions import deprecated

    # Type checkers see the old name, and flag its uses (PEP 702).
    @deprecated("rxalpaca.aiter shadows the builtin aiter; use rxalpaca.aiterate")
    def aiter(source: Observable[_T], maxsize: int = 0) -> AsyncIterator[_T]: ...

else:

    def __getattr__(name: str) -> Any:
        # Served lazily rather than defined, so ``from rxalpaca.aio import *`` cannot
        # bind the name and hide the builtin (PEP 562).
        if name == "aiter":
            return _deprecated_aiter
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
