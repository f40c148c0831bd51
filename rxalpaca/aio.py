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
import contextlib
import queue
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from reactivex import Observable

__all__ = ["aiterate", "iterate"]

_T = TypeVar("_T")
_NEXT, _ERROR, _DONE = 0, 1, 2


async def aiterate(source: Observable[_T], maxsize: int = 0) -> AsyncIterator[_T]:
    """Iterate ``source`` with ``async for`` on the running asyncio loop.

    Items cross from the socket thread with ``loop.call_soon_threadsafe``. Leaving
    the loop (``break``, an exception, cancellation) disposes the subscription.

    Args:
        source: any Observable (e.g. ``client.quotes("AAPL")``).
        maxsize: bound the hand-over queue; when full, the oldest item is dropped
            so the socket thread never waits for the event loop (0: unbounded).
    """
    loop = asyncio.get_running_loop()
    q: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()

    def put(entry: tuple[int, Any]) -> None:
        if maxsize and entry[0] == _NEXT and q.qsize() >= maxsize:
            q.get_nowait()  # drop the oldest: the newest market data matters most
        q.put_nowait(entry)

    def push(kind: int, value: Any = None) -> None:
        # RuntimeError: the loop is closed, so nobody is iterating any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(put, (kind, value))

    sub = source.subscribe(
        on_next=lambda v: push(_NEXT, v),
        on_error=lambda e: push(_ERROR, e),
        on_completed=lambda: push(_DONE),
    )
    try:
        while True:
            kind, value = await q.get()
            if kind == _NEXT:
                yield value
            elif kind == _ERROR:
                raise value
            else:
                return
    finally:
        sub.dispose()


def iterate(source: Observable[_T], timeout: float | None = None) -> Iterator[_T]:
    """Iterate ``source`` in a plain (blocking) ``for`` loop.

    Args:
        source: any Observable.
        timeout: seconds to wait for each item; ``TimeoutError`` when none came.
            ``None`` waits for ever.

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
