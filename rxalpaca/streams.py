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

It also owns the client's life, the same for every upstream: :class:`Lifecycle`
(under ``_life_lock``), ``state`` (a BehaviorSubject of :class:`ConnectionState`),
``errors``, ``close()``, a fatal end (``_fail``) and the context manager — and the
ways a program waits on it or hands it a loop: ``wait()`` / ``run()`` (scripts),
``async with``, ``wait_async()`` and ``bind_loop()`` (asyncio). Each typed stream is
a :class:`Stream`, whose ``subscribe`` runs ``async def`` observers on an event loop
through ``ops.on_loop``'s bounded hand-over (or refuses them, saying how).

An upstream plugs in through hooks a subclass implements: ``current_state`` (its
state right now), ``_start()`` (the first subscription, or ``connect()``, opens it),
``_demand_changed()`` (the book changed: bring the upstream in step, soon),
``_stop()`` (``close()``: release it) and ``_failed()`` (a fatal error ended it).

Threading: ``subscribe`` and ``dispose`` run on any thread, including inside an
observer on the socket thread. The router (copy-on-write entries under its own lock;
dispatch takes none), the book (its own lock) and the outlet (its own lock) are
each safe alone, and no lock is held while observers run. The end of the client is
``_ended`` (an Event, set once by ``close()`` or ``_fail``) plus ``_end_callbacks``
(``wait_async`` futures to resolve), both under ``_life_lock``; the callbacks run
after it is released. ``_loop`` (the binding) is one reference, replaced whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Generic, Self

from reactivex import Observable, abc
from reactivex.disposable import Disposable
from reactivex.subject import BehaviorSubject, Subject
from typing_extensions import TypeVar

from . import models
from ._logging import RateLimitedLog, error_fields
from .book import SubscriptionBook
from .errors import (
    ClientClosedError,
    ConfigurationError,
    HandlerError,
    StreamError,
    SubscriptionRejected,
)
from .feeds import IMPLICIT_CHANNELS, Channel, Endpoint
from .metrics import Metrics
from .operators._buffer import OverflowPolicy
from .operators._loop import deliver_on_loop, is_async_callable, user_callbacks
from .protocol import ConnectionState
from .router import Router
from .symbols import normalise_symbols

__all__ = [
    "BarT",
    "DailyBarT",
    "ErrorOutlet",
    "Lifecycle",
    "LoopBinding",
    "QuoteT",
    "Stream",
    "Streams",
    "TradeT",
    "UpdatedBarT",
]

logger = logging.getLogger("rxalpaca")
_SLICE = 0.1  # seconds: how soon wait() on the main thread notices Ctrl-C
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

    def isolated(self, source: Observable[_T], what: str) -> Observable[_T]:
        """``source`` (the errors, state or gaps subject) with each observer's exceptions
        logged (rate-limited, ``"<what> observer raised"``) and counted, not raised.

        A bare Subject stops at the first observer that raises, so the ones subscribed
        after it would miss the item. Not republished on ``errors``: an errors observer
        would loop, and one that closes the client would re-enter ``publish``'s lock.
        """
        message = f"{'an' if what[0] in 'aeiou' else 'a'} {what} observer raised"

        def subscribe(
            observer: abc.ObserverBase[_T], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            def on_next(value: _T) -> None:
                try:
                    observer.on_next(value)
                except Exception as exc:
                    self.metrics.count_handler_error()
                    self.log.log(
                        (what, observer, type(exc)),
                        logging.ERROR,
                        message,
                        exc_info=True,
                        extra=error_fields(exc),
                    )

            return source.subscribe(on_next, observer.on_error, observer.on_completed)

        return Observable(subscribe)

    def complete(self) -> None:
        """The client closed: complete every ``errors`` observer."""
        with self._lock:
            self.subject.on_completed()


@dataclass(frozen=True, slots=True)
class LoopBinding:
    """Where a client's ``async def`` observers run: ``loop``, through a hand-over of
    ``size`` items whose ``overflow`` policy decides when it is full (see ``ops.on_loop``)."""

    loop: asyncio.AbstractEventLoop | None = None  # None: the loop running at subscribe
    size: int = 1024
    overflow: OverflowPolicy = "drop_oldest"
    on_overflow: Callable[[int], None] | None = None


class Stream(Observable[_T]):
    """An Observable of a client's records that knows what to do with ``async def``.

    ``subscribe`` with a coroutine function (or an observer whose methods are ones)
    runs it on the client's bound loop (:meth:`Streams.bind_loop`, ``async with``) or
    else on the loop running where ``subscribe`` is called, each item awaited before
    the next, through a bounded hand-over (``ops.on_loop``). Outside any loop it is
    refused with a :class:`~rxalpaca.errors.ConfigurationError` that shows the ways
    that work. ``pipe`` keeps this, so ``client.quotes(...).pipe(...).subscribe(coro)``
    works too. Plain functions run on the socket thread, as always.
    """

    def __init__(
        self,
        subscribe: Callable[..., abc.DisposableBase],
        owner: Streams[Any, Any, Any, Any, Any],
        what: str,
    ) -> None:
        super().__init__(subscribe)
        self._owner = owner
        self._what = what  # e.g. "quotes('AAPL')", for the refusal's example

    # pipe: at run time only, so type checkers keep Observable's typed overloads (after
    # a pipe they see a plain Observable, whose subscribe takes no coroutine function:
    # end such a pipeline with ops.on_loop() to keep the types).
    if TYPE_CHECKING:

        def subscribe(
            self,
            on_next: abc.ObserverBase[_T] | Callable[[_T], object] | None = None,
            on_error: Callable[[Exception], object] | None = None,
            on_completed: Callable[[], object] | None = None,
            *,
            scheduler: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            """As ``Observable.subscribe``; ``async def`` callbacks run on an event loop."""
            ...

    else:

        def pipe(self, *operators: Callable[[Any], Any]) -> Any:
            """As ``Observable.pipe``; an Observable result is a :class:`Stream` again."""
            result = super().pipe(*operators)
            if isinstance(result, Observable) and not isinstance(result, Stream):
                inner = result
                return Stream(
                    lambda o, s=None: inner.subscribe(o, scheduler=s), self._owner, self._what
                )
            return result

        def subscribe(
            self,
            on_next: Any = None,
            on_error: Any = None,
            on_completed: Any = None,
            *,
            scheduler: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            """As ``Observable.subscribe``; ``async def`` callbacks run on an event loop."""
            if isinstance(on_next, abc.ObserverBase) or callable(getattr(on_next, "on_next", None)):
                callbacks: tuple[Any, ...] = user_callbacks(on_next)
            else:
                callbacks = (on_next, on_error, on_completed)
            if not any(cb is not None and is_async_callable(cb) for cb in callbacks):
                return super().subscribe(on_next, on_error, on_completed, scheduler=scheduler)
            binding = self._owner._loop or LoopBinding()
            loop = binding.loop
            if loop is None:
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:
                    bad = next(cb for cb in callbacks if cb is not None and is_async_callable(cb))
                    raise ConfigurationError(_async_refusal(bad, self._what)) from None
            sink = _Callbacks(*callbacks)
            outlet = self._owner._outlet

            def handler_error(exc: BaseException, record: object, observer: object) -> None:
                outlet.metrics.count_handler_error()
                outlet.handler_error(exc, record, callbacks[0])

            plain: Observable[_T] = Observable(self._subscribe_core)
            return deliver_on_loop(
                plain,
                sink,  # type: ignore[arg-type]
                loop,
                size=binding.size,
                overflow=binding.overflow,
                on_overflow=binding.on_overflow,
                on_handler_error=handler_error,
                scheduler=scheduler,
            )


class _Callbacks:
    """The user's callbacks, as ``deliver_on_loop`` finds them (``_on_next`` …)."""

    def __init__(self, on_next: Any, on_error: Any, on_completed: Any) -> None:
        self._on_next = on_next
        self._on_error = on_error if on_error is not None else _raise
        self._on_completed = on_completed


def _raise(error: Exception) -> None:
    # As reactivex's default on_error: an unhandled error is not silently lost.
    logger.error("a stream ended with an error nobody handles: %r", error)


class Lifecycle(Enum):
    """Where a client is in its life (httpx's ``ClientState``); only ever moves down."""

    UNOPENED = "unopened"  # created: nothing connected until the first subscription
    OPENED = "opened"  # the connection runs, reconnecting after transient failures
    FAILED = "failed"  # a fatal error ended it: new subscribers get that error
    CLOSED = "closed"  # close() was called: new subscribers get ClientClosedError


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
        self._life = Lifecycle.UNOPENED
        self._ended_by: Exception | None = None  # the fatal error, once FAILED
        self._life_lock = threading.Lock()
        self._state = BehaviorSubject(ConnectionState.IDLE)
        self._gaps: Subject[models.Gap] = Subject()
        self._gaps_lock = threading.Lock()  # one gap at a time into the Subject
        # Set once the client ends (close() or a fatal error); wait() blocks on it and
        # wait_async() futures are resolved from it. Guarded by _life_lock with _life.
        self._ended = threading.Event()
        self._end_callbacks: list[Callable[[], None]] = []
        # The asyncio loop that async observers run on (bind_loop / async with), with
        # the hand-over's size and overflow policy; None: the running loop, if any.
        self._loop: LoopBinding | None = None

    # ---- the upstream's hooks

    @property
    def current_state(self) -> ConnectionState:
        """The state right now."""
        raise NotImplementedError

    def _start(self) -> None:
        """The first subscription (or ``connect()``): open the upstream (once)."""
        raise NotImplementedError

    def _demand_changed(self) -> None:
        """The book changed: bring the upstream in step, soon (any thread)."""
        raise NotImplementedError

    def _stop(self) -> None:
        """``close()``: release the upstream; prompt (observers end after it)."""
        raise NotImplementedError

    def _failed(self) -> None:
        """A fatal error ended the client: stop the upstream for good (no lock held)."""

    def _log_fields(self, error: BaseException | None = None) -> dict[str, object]:
        """Structured fields for a log record about this client (``extra=``)."""
        return {"feed": self.endpoint.feed}

    # ---- the life of a client, the same over every upstream

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        """``async with client:`` binds the client to the running loop (unless bound)."""
        if self._loop is None or self._loop.loop is None:
            binding = self._loop or LoopBinding()
            self._loop = LoopBinding(
                asyncio.get_running_loop(), binding.size, binding.overflow, binding.on_overflow
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        # close() joins the socket thread: off the loop, so the loop's observers finish.
        await asyncio.to_thread(self.close)

    def bind_loop(
        self,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        size: int = 1024,
        overflow: OverflowPolicy = "drop_oldest",
        on_overflow: Callable[[int], None] | None = None,
    ) -> Self:
        """Run this client's ``async def`` observers on ``loop``; returns the client.

        Each subscription gets a hand-over of at most ``size`` records from the socket
        thread to the loop, and ``overflow`` decides when a slow handler lets it fill
        (``"drop_oldest"``, ``"drop_newest"``, ``"block"`` — the socket thread waits,
        and a server that stays behind disconnects with 407 — or ``"error"``), so the
        socket thread never waits for the loop unless told to. ``on_overflow`` is
        called with the running count of dropped records. ``loop=None``: the loop
        running where each ``subscribe`` is called.
        """
        self._loop = LoopBinding(loop, size, overflow, on_overflow)
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the client ends: ``close()`` (returns ``True``) or a fatal error (raised).

        For scripts, whose main thread would otherwise reach its end while the socket
        thread streams. Ctrl-C (``KeyboardInterrupt``) closes the client and returns
        ``True``. Returns ``False`` if ``timeout`` seconds passed first.

        Raises:
            StreamError: the fatal error that ended the client (e.g. bad credentials).
        """
        try:
            ended = self._wait_ended(timeout)
        except KeyboardInterrupt:
            logger.info("interrupted: closing")
            self.close()
            return True
        if ended and self._life is Lifecycle.FAILED and self._ended_by is not None:
            raise self._ended_by
        return ended

    def _wait_ended(self, timeout: float | None) -> bool:
        if threading.current_thread() is not threading.main_thread():
            return self._ended.wait(timeout)
        # The main thread waits in slices: a SIGINT that the kernel delivers to another
        # thread (the socket thread, say) only raises KeyboardInterrupt here once the
        # main thread runs bytecode again, which one long wait would postpone for ever.
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = _SLICE if deadline is None else min(_SLICE, deadline - time.monotonic())
            if self._ended.wait(max(left, 0.0)):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def run(self) -> None:
        """Connect and stream until ``close()``, a fatal error (raised) or Ctrl-C.

        ``client.quotes("AAPL").subscribe(print); client.run()`` is a whole script.
        """
        try:
            self.connect()
        except KeyboardInterrupt:
            self.close()
            return
        self.wait()

    async def wait_async(self, timeout: float | None = None) -> bool:
        """``await`` the end of the client, as :meth:`wait` (a fatal error is raised).

        Returns ``False`` if ``timeout`` seconds passed first. Cancelling the awaiting
        task leaves the client running.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def ended() -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(_resolve, done)

        with self._life_lock:
            if not self._ended.is_set():
                self._end_callbacks.append(ended)
            else:
                done.set_result(None)
        try:
            await asyncio.wait_for(asyncio.shield(done), timeout)
        except TimeoutError:
            return False
        finally:
            with self._life_lock, contextlib.suppress(ValueError):
                self._end_callbacks.remove(ended)
        if self._life is Lifecycle.FAILED and self._ended_by is not None:
            raise self._ended_by
        return True

    def _mark_ended(self) -> None:
        """The client ended: release ``wait()`` and ``wait_async()`` (no lock held on entry)."""
        with self._life_lock:
            self._ended.set()
            callbacks, self._end_callbacks = self._end_callbacks, []
        for callback in callbacks:
            callback()

    @property
    def state(self) -> Observable[ConnectionState]:
        """The current :class:`ConnectionState` at once, then every transition.

        An observer that raises is logged (rate-limited) and counted; the others still
        get the state.
        """
        return self._outlet.isolated(self._state, "state")

    @property
    def lifecycle(self) -> Lifecycle:
        """Unopened, opened, failed or closed (see :class:`Lifecycle`)."""
        return self._life

    @property
    def errors(self) -> Observable[Exception]:
        """Problems that did not stop the stream: bad frames, handler errors, server errors.

        An observer that raises is logged (rate-limited) and counted; the others still
        get the error.
        """
        return self._outlet.isolated(self._outlet.subject, "errors")

    @property
    def gaps(self) -> Observable[models.Gap]:
        """A :class:`~rxalpaca.models.Gap` each time a lost connection left a hole (hot).

        ``merge`` it into a strategy's pipeline to learn that data may be missing
        between ``last_before_ns`` and ``first_after_ns``. Completes on ``close()``.
        An observer that raises is logged (rate-limited) and counted; the others still
        get the gap.
        """
        return self._outlet.isolated(self._gaps, "gaps")

    def _publish_gap(self, gap: models.Gap) -> None:
        """Send ``gap`` to every ``gaps`` observer (any thread)."""
        with self._gaps_lock:
            try:
                self._gaps.on_next(gap)
            except Exception:
                logger.exception("a gaps observer raised")

    def health(self) -> dict[str, Any]:
        """A plain dict for dashboards and liveness probes: state, subscriptions, counters,
        the fatal error, and the upstream's own clocks (a socket client's tell a quiet
        market from a dead link; a bus client's say how NATS and the gateway are)."""
        metrics = self.metrics
        state = self.current_state
        return {
            "feed": self.endpoint.feed,
            "state": state.value,
            "connected": state is ConnectionState.AUTHENTICATED,
            **self._liveness(),
            "live_subscriptions": self._book.live,
            "server_subscriptions": self._book.server_live,
            "reconnects": metrics.reconnects,
            "frames_received": metrics.frames_received,
            "messages_delivered": metrics.messages_delivered,
            "decode_failures": metrics.decode_failures,
            "handler_errors": metrics.handler_errors,
            "fatal_error": repr(self._ended_by) if self._ended_by else None,
            "metrics": metrics.snapshot(),
        }

    def _liveness(self) -> dict[str, Any]:
        """The upstream's keys for ``health()`` (its clocks, its links)."""
        return {}

    def connect(self) -> Self:
        """Open the connection now instead of at the first subscription."""
        self._open()
        return self

    def close(self) -> None:
        """Close the connection and complete every observer. Prompt and idempotent.

        After a fatal error the state stays ``failed`` (terminal), so the ``close()``
        at the end of a ``with`` block never hides why the client stopped.
        """
        with self._life_lock:
            if self._life is Lifecycle.CLOSED:
                return
            self._life = Lifecycle.CLOSED
        self._stop()
        self._outlet.log.flush()
        self._end_observers(None)
        self._state.on_completed()
        with self._gaps_lock:
            self._gaps.on_completed()
        self._outlet.complete()
        self._mark_ended()

    def _refusal(self) -> Exception | None:
        """The error for a new subscriber, once nothing more can come; else ``None``."""
        life, error = self._life, self._ended_by
        if life is Lifecycle.FAILED and error is not None:
            return error
        if life is Lifecycle.CLOSED:
            return error or ClientClosedError("the client is closed")
        return None

    def _open(self) -> None:
        with self._life_lock:
            if self._life is not Lifecycle.UNOPENED:
                return
            self._life = Lifecycle.OPENED
        self._start()

    def _fail(self, error: Exception) -> None:
        """The connection ended for good: fail every observer with the typed error."""
        with self._life_lock:
            if self._life is Lifecycle.CLOSED:
                return
            self._life, self._ended_by = Lifecycle.FAILED, error
        logger.error("stream failed for good: %r", error, extra=self._log_fields(error))
        self._failed()
        self._outlet.publish(error)
        self._end_observers(error)
        self._state.on_completed()
        self._mark_ended()

    def _emit_state(self, state: ConnectionState) -> None:
        """Publish a transition (the upstream calls it in order, under its own lock)."""
        try:
            self._state.on_next(state)
        except Exception:
            logger.exception("a state observer raised")

    # ---- typed streams

    def trades(self, *symbols: str | Iterable[str]) -> Stream[TradeT]:
        """Trades of ``symbols`` (``"*"``: every symbol; a list counts as its symbols)."""
        return self._stream(Channel.TRADES, symbols)

    def quotes(self, *symbols: str | Iterable[str]) -> Stream[QuoteT]:
        """Quotes of ``symbols``."""
        return self._stream(Channel.QUOTES, symbols)

    def bars(self, *symbols: str | Iterable[str]) -> Stream[BarT]:
        """Minute bars of ``symbols``."""
        return self._stream(Channel.BARS, symbols)

    def daily_bars(self, *symbols: str | Iterable[str]) -> Stream[DailyBarT]:
        """Running daily bars."""
        return self._stream(Channel.DAILY_BARS, symbols)

    def updated_bars(self, *symbols: str | Iterable[str]) -> Stream[UpdatedBarT]:
        """Minute bars corrected after late trades."""
        return self._stream(Channel.UPDATED_BARS, symbols)

    def statuses(self, *symbols: str | Iterable[str]) -> Stream[models.TradingStatus]:
        """Trading statuses (halts, resumptions)."""
        return self._stream(Channel.STATUSES, symbols)

    def lulds(self, *symbols: str | Iterable[str]) -> Stream[models.Luld]:
        """Limit up / limit down bands."""
        return self._stream(Channel.LULDS, symbols)

    def imbalances(self, *symbols: str | Iterable[str]) -> Stream[models.Imbalance]:
        """Order imbalances."""
        return self._stream(Channel.IMBALANCES, symbols)

    def corrections(self, *symbols: str | Iterable[str]) -> Stream[models.Correction]:
        """Trade corrections (the server sends them with ``trades``)."""
        return self._stream(Channel.CORRECTIONS, symbols)

    def cancel_errors(self, *symbols: str | Iterable[str]) -> Stream[models.CancelError]:
        """Trade cancels and errors (the server sends them with ``trades``)."""
        return self._stream(Channel.CANCEL_ERRORS, symbols)

    def orderbooks(self, *symbols: str | Iterable[str]) -> Stream[models.OrderBook]:
        """Crypto order-book snapshots (``reset``) and updates."""
        return self._stream(Channel.ORDERBOOKS, symbols)

    def news(self, *symbols: str | Iterable[str]) -> Stream[models.News]:
        """News articles mentioning ``symbols`` (``"*"``: all, including untagged ones)."""
        return self._stream(Channel.NEWS, symbols)

    def subscriptions(self) -> dict[str, set[str]]:
        """What the upstream has acknowledged, per channel."""
        return self._book.acked_by_channel()

    # ---- demand

    def _stream(self, channel: Channel, symbols: tuple[str | Iterable[str], ...]) -> Stream[Any]:
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

        return Stream(subscribe, self, _call_text(channel, syms))

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


def _name(callback: object) -> str:
    while isinstance(callback, functools.partial):
        callback = callback.func
    return str(getattr(callback, "__qualname__", None) or type(callback).__qualname__)


def _describe(observer: object) -> str:
    """The user's name for an observer (its on_next's), for log lines."""
    if callable(observer) and not hasattr(observer, "on_next"):
        return _name(observer)
    return _name(user_callbacks(observer)[0] or observer)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _call_text(channel: Channel, syms: tuple[str, ...]) -> str:
    method = _METHOD_OF.get(channel, channel.value)
    args = ", ".join(repr(s) for s in syms[:3]) + (", ..." if len(syms) > 3 else "")
    return f"{method}({args})"


def _async_refusal(callback: object, what: str) -> str:
    return (
        f"{_name(callback)} is an async function, and there is no event loop to run it "
        f"on here; subscribe it inside a running loop (or `async with client:`), bind "
        f"one with client.bind_loop(loop), end the pipeline with ops.on_loop(loop), or "
        f"iterate: async for item in rxalpaca.aiterate(client.{what}): ..."
    )


def _refuse_async_observer(observer: object, channel: Channel, syms: tuple[str, ...]) -> None:
    """Refuse an ``async def`` observer that reached the socket thread's path.

    :class:`Stream` hands ``async def`` callbacks to a loop; one that gets here came
    another way (e.g. an operator applied without ``pipe``). Observers are called
    synchronously on the socket thread: calling an ``async def`` only makes a
    coroutine, which nobody awaits, so the function would never run.
    """
    callbacks = user_callbacks(observer)
    bad = next((cb for cb in callbacks if cb is not None and is_async_callable(cb)), None)
    if bad is None:
        return
    # Stopped first, so Observable.subscribe raises this at the caller rather than
    # handing it to the user's on_error (which may be the async function itself).
    dispose = getattr(observer, "dispose", None)
    if callable(dispose):
        dispose()
    raise ConfigurationError(_async_refusal(bad, _call_text(channel, syms)))


_METHOD_OF = {
    Channel.DAILY_BARS: "daily_bars",
    Channel.UPDATED_BARS: "updated_bars",
    Channel.CANCEL_ERRORS: "cancel_errors",
}
