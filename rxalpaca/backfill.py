"""``rxalpaca.backfill``: fill a gap in minute bars from Alpaca's historical REST API.

Install ``rxalpaca[backfill]`` (alpaca-py's historical clients). Two ways in:

* :func:`backfill` — the bars a :class:`~rxalpaca.models.Gap` may have lost, once::

      history = AlpacaHistory(key, secret)
      client.gaps.subscribe(lambda gap: handle(backfill(history, gap)))

* :class:`Backfill` — ``Backfill(client, history).bars("AAPL")`` is the client's
  ``bars("AAPL")`` with every hole filled in place: after a gap, the live bars of a
  symbol are held until the missing ones are fetched, then the missing ones
  (:class:`BackfilledBar`, a :class:`~rxalpaca.models.Bar`) and the held ones are
  delivered in time order, and the stream goes on live. ``docs/record-replay.md``
  ("Backfill") says why the same stream rather than a separate one.

A failed fetch (bad keys, a rejected parameter, no network) is a :class:`BackfillError` on the
client's ``errors``; the held live bars are then delivered and the stream goes on
with the hole. Credentials are never logged or shown in a ``repr``.

Threads: the observer is called by the socket thread or the fetch thread, one call
at a time and never under the subscription's lock (see :class:`Backfill`), so it
may dispose, close the client, or wait for the socket thread.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
import orjson
from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable

from .errors import BackfillError, ConfigurationError
from .feeds import Family, endpoint
from .models import Bar, CryptoBar, Gap
from .streams import Streams
from .symbols import normalise_symbols

if TYPE_CHECKING:
    from alpaca.data.historical import CryptoHistoricalDataClient, StockHistoricalDataClient

__all__ = [
    "AlpacaHistory",
    "Backfill",
    "BackfillError",
    "BackfilledBar",
    "BackfilledCryptoBar",
    "BarSource",
    "backfill",
]

_MINUTE = 60_000_000_000


class BackfilledBar(Bar, frozen=True, kw_only=True, gc=False, tag="b"):
    """A stock minute bar fetched over REST to fill a gap (not received live).

    A :class:`~rxalpaca.models.Bar` in every respect, so a strategy runs unchanged;
    ``isinstance(bar, BackfilledBar)`` tells it apart. ``received_ns`` is when the
    REST response arrived.
    """


class BackfilledCryptoBar(CryptoBar, frozen=True, kw_only=True, gc=False, tag="b"):
    """A crypto minute bar fetched over REST to fill a gap (see :class:`BackfilledBar`)."""


class BarSource(Protocol):
    """Where backfilled bars come from: :class:`AlpacaHistory`, or anything alike."""

    def fetch_bars(
        self, feed: str, symbols: Sequence[str], start_ns: int, end_ns: int
    ) -> list[Bar | CryptoBar]:
        """The minute bars of ``symbols`` with ``start_ns <= t < end_ns``, in time order.

        Raises:
            BackfillError: the request failed.
        """
        ...


class AlpacaHistory:
    """Alpaca's historical bars through alpaca-py's ``StockHistoricalDataClient`` and
    ``CryptoHistoricalDataClient`` (pagination, OAuth, retries on 429/504 are theirs).

    Args:
        key, secret: API credentials (default: ``APCA_API_KEY_ID`` /
            ``APCA_API_SECRET_KEY``); crypto bars need none.
        url: another base URL, e.g. ``server.rest_url`` of the embedded server.
        sandbox: the Broker-API sandbox's data host.

    alpaca-py is imported here, not at the first gap: its import (pandas, pydantic)
    takes seconds, which a gap should not wait for.

    Raises:
        ConfigurationError: alpaca-py is not installed (``pip install rxalpaca[backfill]``).
    """

    def __init__(
        self,
        key: str | None = None,
        secret: str | None = None,
        *,
        url: str | None = None,
        sandbox: bool = False,
    ) -> None:
        try:
            from alpaca.data.historical import (  # noqa: PLC0415 - the [backfill] extra
                CryptoHistoricalDataClient,
                StockHistoricalDataClient,
            )
        except ImportError:  # pragma: no cover - the test extra installs it
            raise ConfigurationError(
                "backfill needs alpaca-py: pip install 'rxalpaca[backfill]'"
            ) from None
        key = key if key is not None else os.environ.get("APCA_API_KEY_ID")
        secret = secret if secret is not None else os.environ.get("APCA_API_SECRET_KEY")
        self.url = url
        self._stocks: StockHistoricalDataClient = StockHistoricalDataClient(
            key, secret, raw_data=True, url_override=url, sandbox=sandbox
        )
        self._crypto: CryptoHistoricalDataClient = CryptoHistoricalDataClient(
            key, secret, raw_data=True, url_override=url, sandbox=sandbox
        )

    def __repr__(self) -> str:
        return f"AlpacaHistory(url={self.url!r})"  # never the credentials

    def fetch_bars(
        self, feed: str, symbols: Sequence[str], start_ns: int, end_ns: int
    ) -> list[Bar | CryptoBar]:
        """See :meth:`BarSource.fetch_bars`; ``feed`` is a stream feed name
        (``"iex"``, ``"sip"``, ``"crypto/us"`` …)."""
        # Imported already by __init__ (cheap here): the [backfill] extra's.
        from alpaca.data.enums import CryptoFeed, DataFeed  # noqa: PLC0415
        from alpaca.data.requests import CryptoBarsRequest, StockBarsRequest  # noqa: PLC0415
        from alpaca.data.timeframe import TimeFrame  # noqa: PLC0415

        syms = list(symbols)
        if not syms or end_ns <= start_ns:
            return []
        ep = endpoint(feed)
        start = _datetime(start_ns)
        end = _datetime(end_ns - 1000)  # Alpaca's end is inclusive (and in µs here)
        try:
            if ep.family is Family.CRYPTO:
                location = ep.feed.split("/", 1)[1]
                raw = self._crypto.get_crypto_bars(
                    CryptoBarsRequest(
                        symbol_or_symbols=syms, timeframe=TimeFrame.Minute, start=start, end=end
                    ),
                    feed=CryptoFeed(location),
                )
                kind: type[Bar | CryptoBar] = BackfilledCryptoBar
            elif ep.family is Family.STOCKS:
                raw = self._stocks.get_stock_bars(
                    StockBarsRequest(
                        symbol_or_symbols=syms,
                        timeframe=TimeFrame.Minute,
                        start=start,
                        end=end,
                        feed=DataFeed(ep.feed),
                    )
                )
                kind = BackfilledBar
            else:
                raise BackfillError(f"no historical bars for the {ep.feed} feed")
        except BackfillError:
            raise
        except Exception as exc:
            # Not chained: a request error holds the request, and its headers the secret.
            raise BackfillError(_describe_failure(exc)) from None
        assert isinstance(raw, Mapping)
        return decode_bars(raw, kind, start_ns, end_ns)


def decode_bars(
    raw: Mapping[str, Iterable[Mapping[str, Any]]],
    kind: type[Bar | CryptoBar],
    start_ns: int,
    end_ns: int,
    received_ns: int | None = None,
) -> list[Bar | CryptoBar]:
    """REST bars (``{symbol: [{"t", "o", …}]}``) as records of ``kind`` with
    ``start_ns <= t < end_ns``, in time order (then symbol)."""
    now = received_ns if received_ns is not None else time.time_ns()
    out: list[Bar | CryptoBar] = []
    for sym, bars in raw.items():
        for b in bars:
            payload = orjson.dumps({**b, "T": "b", "S": sym, "received_ns": now})
            try:
                bar = msgspec.json.decode(payload, type=kind)
                t = bar.timestamp_ns
            except (msgspec.ValidationError, ValueError) as exc:
                raise BackfillError(f"a historical bar of {sym} is malformed: {exc}") from None
            if start_ns <= t < end_ns:
                out.append(bar)
    out.sort(key=lambda b: (b.timestamp_ns, b.symbol))
    return out


def backfill(
    source: BarSource,
    gap: Gap,
    *,
    start_ns: int | None = None,
    end_ns: int | None = None,
) -> list[Bar | CryptoBar]:
    """The minute bars ``gap`` may have lost, fetched from ``source``, in time order.

    The gap's bounds are receive times; bars carry their minute's start and arrive
    after it ends, so the window is, unless given: from the minute before the one of
    ``last_before_ns`` (a bar may have been in flight) up to the minute of
    ``first_after_ns``, excluded (its bar arrives live). So the first bar returned
    may be one the client already had: compare timestamps, or pass ``start_ns``
    (the last bar's ``timestamp_ns + 60 s``). :class:`Backfill` does all of this.

    Raises:
        BackfillError: the fetch failed, or the gap has no known start.
    """
    if "bars" not in gap.channels:
        return []
    if start_ns is None:
        if gap.last_before_ns is None:
            raise BackfillError("the gap has no start (nothing came before it): pass start_ns")
        start_ns = _minute(gap.last_before_ns) - _MINUTE
    if end_ns is None:
        end_ns = _minute(gap.first_after_ns if gap.first_after_ns is not None else time.time_ns())
    return source.fetch_bars(gap.feed, gap.symbols, start_ns, end_ns)


# ---------------------------------------------------------------------- automatic


@dataclass
class _Hold:
    """A symbol in a gap: its live bars wait here until the missing ones are fetched."""

    after_t: int  # the missing bars are later than this (the last bar delivered)
    held: list[Bar | CryptoBar] = field(default_factory=list)
    end_t: int | None = None  # set when its fetch is asked for: the window's end
    #: Another gap came while fetching: ``held[split:]`` came after it, so they wait
    #: for a fill of their own (from the last bar delivered to the first of them).
    split: int | None = None


class Backfill:
    """A client's ``bars`` with the holes its gaps left filled from REST, in place.

    Args:
        client: a ``StreamClient`` (or another :class:`~rxalpaca.streams.Streams`).
        source: where the missing bars come from (:class:`AlpacaHistory`).
        wait: seconds to wait after a gap for the symbol's first live bar (whose
            minute ends the window); then the window ends at the last whole minute.

    Attributes:
        filled: bars delivered from REST so far; ``duplicates``: live bars dropped
            because a bar of the same or a later minute was already delivered;
            ``failures``: fetches that failed (each one also on ``errors``).

    Threads: live bars and gaps arrive on the client's socket thread; REST blocks, so
    each subscription fetches on a daemon thread of its own, started when there is
    something to fetch and gone when there is not, which takes every symbol waiting
    at that moment into one multi-symbol request (a reconnect of 500 symbols is a few
    requests, not 500); the ``wait`` timer (one per gap) runs on its own. ``_lock``
    (one per subscription) guards its holds, pending fetches, last bar times and its
    outbox; every decision (what to emit, in which order, which duplicate to drop) is
    taken under it and appended to the outbox. The observer is never called under the
    lock: one thread at a time drains the outbox (whichever appended to an idle one,
    the socket thread or the fetch thread), so the observer sees one event at a time,
    in order, and may close the client, dispose, or wait for the socket thread.
    """

    def __init__(
        self, client: Streams[Any, Any, Any, Any, Any], source: BarSource, *, wait: float = 65.0
    ) -> None:
        self.client = client
        self.source = source
        self.wait = wait
        self.filled = 0
        self.duplicates = 0
        self.failures = 0
        self._count_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Backfill({self.client.endpoint.feed!r}, {self.source!r})"

    def bars(self, *symbols: str | Iterable[str]) -> Observable[Any]:
        """``client.bars(*symbols)`` plus the bars every gap lost (:class:`BackfilledBar`),
        each symbol's bars in time order, the missing ones before live data resumes."""
        syms = normalise_symbols(symbols, self.client.endpoint.family)

        def subscribe(
            observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            filler = _Filler(self, syms, observer)
            gaps = self.client.gaps.subscribe(filler.on_gap)
            live = self.client.bars(*syms).subscribe(
                filler.on_bar, filler.on_error, filler.on_completed
            )
            return CompositeDisposable(gaps, live, Disposable(filler.dispose))

        return Observable(subscribe)

    def _count(self, **deltas: int) -> None:
        with self._count_lock:
            for name, n in deltas.items():
                setattr(self, name, getattr(self, name) + n)


class _Filler:
    """One subscription's state: last bar time per symbol and the holds (see Backfill)."""

    def __init__(
        self, owner: Backfill, symbols: tuple[str, ...], observer: abc.ObserverBase[Any]
    ) -> None:
        self.owner = owner
        self.feed = owner.client.endpoint.feed
        self.symbols = frozenset(symbols)
        self.observer = observer
        self._lock = threading.RLock()
        self._last: dict[str, int] = {}
        self._holds: dict[str, _Hold] = {}
        self._pending: list[str] = []  # held symbols whose window is known, to fetch
        self._fetcher: threading.Thread | None = None
        self._timers: list[threading.Timer] = []
        self._done = False  # ended or disposed: nothing more is decided
        # What the observer is due, in order: ("n", bar) | ("e", error) | ("c", None).
        # Appended under _lock; emptied by the one thread with _draining set, which
        # calls the observer outside the lock. Disposal clears it.
        self._outbox: deque[tuple[str, Any]] = deque()
        self._draining = False
        self._disposed = False

    # -- socket thread

    def on_gap(self, gap: Gap) -> None:
        if "bars" not in gap.channels:
            return
        wild = "*" in gap.symbols
        with self._lock:
            if self._done:
                return
            held: list[tuple[str, _Hold]] = []
            for sym in sorted(self.symbols):
                if not (wild or sym in gap.symbols):
                    continue
                hold = self._holds.get(sym)
                if hold is not None:
                    # Not fetching yet: the window already runs to the first live bar.
                    if hold.end_t is not None and hold.split is None:
                        hold.split = len(hold.held)
                    continue
                after = self._last.get(sym)
                if after is None:
                    if gap.last_before_ns is None:
                        continue  # nothing came before: nothing known to be missing
                    after = _minute(gap.last_before_ns) - 2 * _MINUTE
                held.append((sym, self._hold(sym, after)))
            self._start_timer(held)

    def on_bar(self, bar: Bar | CryptoBar) -> None:
        with self._lock:
            if self._done:
                return
            hold = self._holds.get(bar.symbol)
            if hold is None:
                self._emit_live(bar)
            else:
                hold.held.append(bar)
                if hold.end_t is None:
                    self._fetch(bar.symbol, hold, bar.timestamp_ns)
        self._drain()

    def on_error(self, error: Exception) -> None:
        self._end(("e", error))

    def on_completed(self) -> None:
        self._end(("c", None))

    def _end(self, event: tuple[str, Any]) -> None:
        with self._lock:
            if self._done:
                return
            self._flush_all()
            self._done = True
            self._outbox.append(event)
        self._drain()

    # -- any thread

    def dispose(self) -> None:
        with self._lock:
            self._done = self._disposed = True
            self._cancel_timers()
            self._holds.clear()
            self._pending.clear()
            self._outbox.clear()

    def _drain(self) -> None:
        """Deliver the outbox, outside ``_lock``, if no other thread is doing so.

        Called after every change that may have appended to it. A thread that finds a
        drain under way leaves its events to that thread (behind the ones queued
        before, so the order decided under the lock is the order delivered) and
        returns at once: the socket thread never waits for an observer running on the
        fetch thread, nor the other way round. Re-entered from the observer itself
        (an observer that closes the client completes this stream on its own thread),
        it returns too, and the completion follows the events already due.
        """
        with self._lock:
            if self._draining:
                return
            self._draining = True
        while True:
            with self._lock:
                if self._disposed or not self._outbox:
                    self._draining = False
                    return
                kind, value = self._outbox.popleft()
            try:
                if kind == "n":
                    self.observer.on_next(value)
                elif kind == "e":
                    self.observer.on_error(value)
                else:
                    self.observer.on_completed()
            except Exception as exc:
                # The client's own streams do the same with a raising observer: report
                # it on ``errors`` (counted, logged rate-limited) and go on.
                outlet = self.owner.client._outlet
                outlet.metrics.count_handler_error()
                outlet.handler_error(exc, value, self.observer)

    # -- any thread, under _lock (none of these calls the observer)

    def _hold(self, sym: str, after: int) -> _Hold:
        hold = _Hold(after)
        self._holds[sym] = hold
        return hold

    def _start_timer(self, held: list[tuple[str, _Hold]]) -> None:
        if not held:
            return
        timer = threading.Timer(self.owner.wait, self._timed_out, (held,))
        timer.daemon = True
        timer.name = "rxalpaca-backfill-wait"
        self._timers.append(timer)
        timer.start()

    def _cancel_timers(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    def _timed_out(self, held: list[tuple[str, _Hold]]) -> None:
        """Timer thread: no live bar came for these; fetch up to the last whole minute."""
        with self._lock:
            self._timers = [t for t in self._timers if t is not threading.current_thread()]
            end = _minute(time.time_ns())
            for sym, hold in held:
                if self._holds.get(sym) is hold and hold.end_t is None and not self._done:
                    self._fetch(sym, hold, end)

    def _fetch(self, sym: str, hold: _Hold, end_ns: int) -> None:
        hold.end_t = end_ns
        self._pending.append(sym)
        if self._fetcher is None:
            self._fetcher = threading.Thread(
                target=self._run_fetches, name="rxalpaca-backfill", daemon=True
            )
            self._fetcher.start()

    # -- the fetch thread

    def _run_fetches(self) -> None:
        """Fetch every pending symbol in one request, deliver, and again until none."""
        while True:
            with self._lock:
                syms, self._pending = self._pending, []
                batch = [(s, h) for s in syms if (h := self._holds.get(s)) and h.end_t]
                if not batch or self._done:
                    self._fetcher = None
                    return
            start = min(h.after_t for _, h in batch) + 1
            end = max(h.end_t or 0 for _, h in batch)
            bars: list[Bar | CryptoBar] = []
            try:
                bars = self.owner.source.fetch_bars(self.feed, [s for s, _ in batch], start, end)
            except Exception as exc:  # BackfillError, or from a BarSource of the user's own
                self._failed([s for s, _ in batch], start, end, exc)
            with self._lock:
                for sym, hold in batch:
                    self._deliver(sym, hold, bars)
            self._drain()

    def _failed(self, syms: list[str], start: int, end: int, exc: Exception) -> None:
        cause = str(exc) if isinstance(exc, BackfillError) else _describe_failure(exc)
        what = f"{', '.join(syms)} bars from {_text(start)} to {_text(end)}"
        self.owner._count(failures=1)
        error = BackfillError(f"backfill of {what} failed: {cause}")
        outlet = self.owner.client._outlet
        outlet.log.log(("backfill", self.feed), logging.WARNING, "%s", error)
        outlet.publish(error)

    def _deliver(self, sym: str, hold: _Hold, bars: list[Bar | CryptoBar]) -> None:
        """Under _lock: queue the missing bars of ``sym`` in its own window, then the
        held ones."""
        if self._done or self._holds.get(sym) is not hold:
            return
        del self._holds[sym]
        end = hold.end_t or 0
        filled = 0
        for bar in bars:
            t = bar.timestamp_ns
            if bar.symbol == sym and self._last.get(sym, hold.after_t) < t < end:
                self._emit(bar)
                filled += 1
        self.owner._count(filled=filled)
        split = len(hold.held) if hold.split is None else hold.split
        for bar in hold.held[:split]:
            self._emit_live(bar)
        if hold.split is not None:
            again = self._hold(sym, self._last.get(sym, hold.after_t))
            again.held = hold.held[split:]
            if again.held:
                self._fetch(sym, again, again.held[0].timestamp_ns)
            else:
                self._start_timer([(sym, again)])

    def _emit_live(self, bar: Bar | CryptoBar) -> None:
        last = self._last.get(bar.symbol)
        if last is not None and bar.timestamp_ns <= last:
            self.owner._count(duplicates=1)
            return
        self._emit(bar)

    def _emit(self, bar: Bar | CryptoBar) -> None:
        """Under _lock: ``bar`` is due (delivered by :meth:`_drain`, after the lock)."""
        self._last[bar.symbol] = bar.timestamp_ns
        self._outbox.append(("n", bar))

    def _flush_all(self) -> None:
        """The stream ends: deliver what is held, unfilled."""
        self._cancel_timers()
        holds, self._holds = self._holds, {}
        self._pending.clear()
        for hold in holds.values():
            for bar in hold.held:
                self._emit_live(bar)


# ---------------------------------------------------------------------- helpers


def _minute(ns: int) -> int:
    return ns // _MINUTE * _MINUTE


def _datetime(ns: int) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(ns // 1_000_000_000, _dt.UTC) + _dt.timedelta(
        microseconds=ns % 1_000_000_000 // 1000
    )


def _text(ns: int) -> str:
    return _datetime(ns).isoformat().replace("+00:00", "Z")


def _describe_failure(exc: BaseException) -> str:
    """One line for a failed request: the HTTP status and Alpaca's message, or the
    network error (alpaca-py's ``APIError`` carries the response body, never the
    request headers, so no credential can end up here)."""
    try:
        status = getattr(exc, "status_code", None)
    except Exception:  # pragma: no cover - a property of someone else's exception
        status = None
    if status is None:
        return f"{type(exc).__name__}: {exc}"
    try:
        message = str(orjson.loads(str(exc))["message"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        message = str(exc)
    return f"HTTP {status}: {message}"
