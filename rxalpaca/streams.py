"""``Streams``: the streams API — typed observables per (channel, symbols) over ref-counted demand.

This is the part of a client that users subscribe to, kept apart from the upstream
it drives, so one facade can serve two upstreams: Alpaca's socket
(:class:`~rxalpaca.client.StreamClient`) and, later, a message bus. It owns

* the :class:`~rxalpaca.router.Router` — (channel, symbol) → observers, O(1) per
  message whatever the number of subscriptions;
* the :class:`~rxalpaca.book.SubscriptionBook` — reference counts per (channel,
  symbol): the first subscriber makes a pair wanted upstream, the last dispose
  unwanted;
* the :class:`ErrorOutlet` — ``errors``: everything that went wrong without stopping
  the stream, logged at a bounded rate.

An upstream plugs in through three hooks a subclass implements: ``_refusal()`` (the
error a new subscriber gets once the client is closed or failed, else ``None``),
``_open()`` (the first subscription opens the connection) and ``_demand_changed()``
(the book changed: bring the upstream in step, soon).

Threading: ``subscribe`` and ``dispose`` run on any thread, including inside an
observer on the socket thread. The router (copy-on-write entries under its own lock;
dispatch takes none), the book (its own lock) and the outlet (its own lock) are
each safe alone, and no lock is held while observers run.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any, Generic

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import Disposable
from reactivex.subject import Subject
from typing_extensions import TypeVar

from . import models
from ._logging import RateLimitedLog, error_fields
from .book import SubscriptionBook
from .errors import ConfigurationError, HandlerError, StreamError, SubscriptionRejected
from .feeds import IMPLICIT_CHANNELS, Channel, Endpoint
from .metrics import Metrics
from .router import Router
from .symbols import normalise_symbols

__all__ = ["BarT", "DailyBarT", "ErrorOutlet", "QuoteT", "Streams", "TradeT", "UpdatedBarT"]

logger = logging.getLogger("rxalpaca")
_T = TypeVar("_T")


class ErrorOutlet:
    """``client.errors``: publish problems that did not stop the stream (any thread).

    Every one is counted (``metrics.errors_published``) and published; log lines go
    through a rate limiter, so a fault that repeats on every message logs once in
    full and then a count per interval. ``_lock`` serialises publishing (a Subject's
    observers must not be called concurrently).
    """

    def __init__(self, metrics: Metrics, log: RateLimitedLog) -> None:
        self.metrics = metrics
        self.log = log
        self.subject: Subject[Exception] = Subject()
        self._lock = threading.Lock()

    def publish(self, error: Exception) -> None:
        """Send ``error`` to every ``errors`` observer."""
        self.metrics.count_error_published()
        with self._lock:
            try:
                self.subject.on_next(error)
            except Exception:
                logger.exception("an errors observer raised")

    def handler_error(self, exc: BaseException, record: object, observer: object) -> None:
        """A user's observer raised while handling ``record`` (called in its except block)."""
        # An observer that raises on every message must not write a traceback per
        # message: the first in full, then a count per interval.
        self.log.log(
            ("handler", observer, type(exc)),
            logging.ERROR,
            "observer %s raised %s while handling %s",
            _describe(observer),
            type(exc).__name__,
            type(record).__name__,
            exc_info=True,
            extra=error_fields(exc),
        )
        err = HandlerError(type(record).__name__, record)
        err.__cause__ = exc
        self.publish(err)

    def guarded(self, source: Observable[_T], ended: Callable[[], bool]) -> Observable[_T]:
        """``source`` with its observers' exceptions reported here instead of raised.

        A subscriber arriving once ``ended()`` is true is completed at once.
        """

        def subscribe(
            observer: abc.ObserverBase[_T], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            if ended():
                observer.on_completed()
                return Disposable()

            def on_next(value: _T) -> None:
                try:
                    observer.on_next(value)
                except Exception as exc:
                    self.metrics.count_handler_error()
                    self.handler_error(exc, value, observer)

            return source.subscribe(on_next, observer.on_error, observer.on_completed)

        return Observable(subscribe)

    def complete(self) -> None:
        """The client closed: complete every ``errors`` observer."""
        with self._lock:
            self.subject.on_completed()


# The record types of a feed family (see ``StreamClient``'s overloads): what the
# editor shows for ``client.trades(...)`` on a stock, crypto or options feed.
# Defaults (PEP 696): a plain ``StreamClient`` annotation means "any feed".
TradeT = TypeVar("TradeT", default=Any)
QuoteT = TypeVar("QuoteT", default=Any)
BarT = TypeVar("BarT", default=Any)
DailyBarT = TypeVar("DailyBarT", default=Any)
UpdatedBarT = TypeVar("UpdatedBarT", default=Any)


class Streams(Generic[TradeT, QuoteT, BarT, DailyBarT, UpdatedBarT]):
    """Typed observables per (channel, symbols), ref-counted against an upstream.

    Generic in the record types of the feed family, so ``trades`` is an
    ``Observable[Trade]`` on a stock feed and ``Observable[CryptoTrade]`` on crypto.

    Args:
        endpoint: the feed's endpoint (its channels and symbol grammar).
        metrics: where subscriptions and deliveries are counted.
        errors: the outlet that observer exceptions are reported to.
    """

    def __init__(self, endpoint: Endpoint, metrics: Metrics, errors: ErrorOutlet) -> None:
        self.endpoint = endpoint
        self.metrics = metrics
        self._outlet = errors
        self._router = Router(metrics, errors.handler_error)
        self._book = SubscriptionBook(frozenset(endpoint.channels))

    # ---- the upstream's hooks

    def _refusal(self) -> Exception | None:
        """The error for a new subscriber, once nothing more can come; else ``None``."""
        raise NotImplementedError

    def _open(self) -> None:
        """A subscription exists: make sure the upstream is open."""
        raise NotImplementedError

    def _demand_changed(self) -> None:
        """The book changed: bring the upstream in step, soon (any thread)."""
        raise NotImplementedError

    # ---- typed streams

    def trades(self, *symbols: str | Iterable[str]) -> Observable[TradeT]:
        """Trades of ``symbols`` (``"*"``: every symbol; a list counts as its symbols)."""
        return self._stream(Channel.TRADES, symbols)

    def quotes(self, *symbols: str | Iterable[str]) -> Observable[QuoteT]:
        """Quotes of ``symbols``."""
        return self._stream(Channel.QUOTES, symbols)

    def bars(self, *symbols: str | Iterable[str]) -> Observable[BarT]:
        """Minute bars of ``symbols``."""
        return self._stream(Channel.BARS, symbols)

    def daily_bars(self, *symbols: str | Iterable[str]) -> Observable[DailyBarT]:
        """Running daily bars."""
        return self._stream(Channel.DAILY_BARS, symbols)

    def updated_bars(self, *symbols: str | Iterable[str]) -> Observable[UpdatedBarT]:
        """Minute bars corrected after late trades."""
        return self._stream(Channel.UPDATED_BARS, symbols)

    def statuses(self, *symbols: str | Iterable[str]) -> Observable[models.TradingStatus]:
        """Trading statuses (halts, resumptions)."""
        return self._stream(Channel.STATUSES, symbols)

    def lulds(self, *symbols: str | Iterable[str]) -> Observable[models.Luld]:
        """Limit up / limit down bands."""
        return self._stream(Channel.LULDS, symbols)

    def imbalances(self, *symbols: str | Iterable[str]) -> Observable[models.Imbalance]:
        """Order imbalances."""
        return self._stream(Channel.IMBALANCES, symbols)

    def corrections(self, *symbols: str | Iterable[str]) -> Observable[models.Correction]:
        """Trade corrections (the server sends them with ``trades``)."""
        return self._stream(Channel.CORRECTIONS, symbols)

    def cancel_errors(self, *symbols: str | Iterable[str]) -> Observable[models.CancelError]:
        """Trade cancels and errors (the server sends them with ``trades``)."""
        return self._stream(Channel.CANCEL_ERRORS, symbols)

    def orderbooks(self, *symbols: str | Iterable[str]) -> Observable[models.OrderBook]:
        """Crypto order-book snapshots (``reset``) and updates."""
        return self._stream(Channel.ORDERBOOKS, symbols)

    def news(self, *symbols: str | Iterable[str]) -> Observable[models.News]:
        """News articles mentioning ``symbols`` (``"*"``: all, including untagged ones)."""
        return self._stream(Channel.NEWS, symbols)

    def subscriptions(self) -> dict[str, set[str]]:
        """What the upstream has acknowledged, per channel."""
        out: dict[str, set[str]] = {}
        for ch, sym in self._book.acked():
            out.setdefault(ch, set()).add(sym)
        return out

    # ---- demand

    def _stream(
        self, channel: Channel, symbols: tuple[str | Iterable[str], ...]
    ) -> Observable[Any]:
        if channel not in self.endpoint.channels:
            raise ConfigurationError(
                f"{self.endpoint.feed} has no {channel.value!r} channel; it has "
                f"{', '.join(c.value for c in self.endpoint.subscribable)}"
            )
        # Validated here, at the quotes(...) call, so a typo is one clear sentence now
        # rather than a 400 rejecting the whole request later (§3.1, S21).
        syms = normalise_symbols(symbols, self.endpoint.family)
        # corrections/cancelErrors ride on trades (§3.1): hold trades upstream.
        held = (Channel.TRADES if channel in IMPLICIT_CHANNELS else channel).value
        router, book, metrics = self._router, self._book, self.metrics

        def subscribe(
            observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            _refuse_async_observer(observer, channel, syms)
            refused = self._refusal()
            if refused is not None:
                observer.on_error(refused)
                return Disposable()
            for s in syms:
                router.add(channel.value, s, observer)
            book.acquire(held, syms)
            metrics.live_subscriptions = book.live
            released = False

            def dispose() -> None:
                nonlocal released
                if released:
                    return
                released = True
                for s in syms:
                    router.remove(channel.value, s, observer)
                book.release(held, syms)
                metrics.live_subscriptions = book.live
                self._demand_changed()

            refused = self._refusal()  # it may have ended while we registered
            if refused is not None:
                dispose()
                observer.on_error(refused)
                return Disposable()
            self._open()
            self._demand_changed()
            return Disposable(dispose)

        return reactivex.create(subscribe)

    def _observers(self) -> list[abc.ObserverBase[Any]]:
        """Every subscribed observer, once each."""
        seen: dict[int, abc.ObserverBase[Any]] = {}
        for observers in self._router.snapshot().values():
            for o in observers:
                seen.setdefault(id(o), o)
        return list(seen.values())

    def _end_observers(self, error: Exception | None) -> None:
        """Complete every observer (``error is None``) or fail it with ``error``."""
        for observer in self._observers():
            with contextlib.suppress(Exception):
                if error is None:
                    observer.on_completed()
                else:
                    observer.on_error(error)

    def _refuse_pairs(self, pairs: Iterable[tuple[str, str]], error: StreamError) -> None:
        """The upstream refused these (channel, symbol) pairs: fail their observers only."""
        by_observer: dict[int, tuple[abc.ObserverBase[Any], list[tuple[str, str]]]] = {}
        for ch, sym in pairs:
            channels = [ch] + ([c.value for c in IMPLICIT_CHANNELS] if ch == "trades" else [])
            for c in channels:
                for o in self._router.observers(c, sym):
                    by_observer.setdefault(id(o), (o, []))[1].append((c, sym))
        for o, refused in by_observer.values():
            exc = SubscriptionRejected(refused[0][0], tuple(s for _, s in refused), error)
            exc.__cause__ = error
            with contextlib.suppress(Exception):
                o.on_error(exc)


# ---------------------------------------------------------------- observers' names


def _user_callbacks(observer: object) -> tuple[object, ...]:
    """The user's callbacks behind an observer handed to a subscribe function.

    ``Observable.subscribe`` wraps callbacks — and an observer object's bound methods —
    in an ``AutoDetachObserver`` that keeps them as ``_on_next`` / ``_on_error`` /
    ``_on_completed``; anything else is its own callback.
    """
    inner = tuple(getattr(observer, a, None) for a in ("_on_next", "_on_error", "_on_completed"))
    if any(cb is not None for cb in inner):
        return inner
    return tuple(getattr(observer, a, None) for a in ("on_next", "on_error", "on_completed"))


def _is_async(callback: object) -> bool:
    return inspect.iscoroutinefunction(callback) or inspect.iscoroutinefunction(
        getattr(callback, "__call__", None)  # noqa: B004 - an object with async __call__
    )


def _name(callback: object) -> str:
    while isinstance(callback, functools.partial):
        callback = callback.func
    return str(getattr(callback, "__qualname__", None) or type(callback).__qualname__)


def _describe(observer: object) -> str:
    """The user's name for an observer (its on_next's), for log lines."""
    return _name(_user_callbacks(observer)[0] or observer)


def _refuse_async_observer(observer: object, channel: Channel, syms: tuple[str, ...]) -> None:
    """Refuse an ``async def`` observer before anything is subscribed.

    Observers are called synchronously on the socket thread: calling an ``async def``
    only makes a coroutine, which nobody awaits, so the function would never run.
    """
    callbacks = _user_callbacks(observer)
    bad = next((cb for cb in callbacks if cb is not None and _is_async(cb)), None)
    if bad is None:
        return
    # Stopped first, so Observable.subscribe raises this at the caller rather than
    # handing it to the user's on_error (which may be the async function itself).
    dispose = getattr(observer, "dispose", None)
    if callable(dispose):
        dispose()
    name = _name(bad)
    method = _METHOD_OF.get(channel, channel.value)
    args = ", ".join(repr(s) for s in syms[:3]) + (", ..." if len(syms) > 3 else "")
    raise ConfigurationError(
        f"{name} is an async function, and observers are called synchronously, so it "
        f"would never run; iterate instead: "
        f"async for item in rxalpaca.aiterate(client.{method}({args})): ..."
    )


_METHOD_OF = {
    Channel.DAILY_BARS: "daily_bars",
    Channel.UPDATED_BARS: "updated_bars",
    Channel.CANCEL_ERRORS: "cancel_errors",
}
