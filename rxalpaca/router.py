"""The Router: the routing table from (channel, symbol) to the observers of it.

Sans-I/O, like the codec and the subscription book: it owns no thread, socket or Rx
object. It calls one method of its observers, ``on_next`` (:class:`Sink`), so anything
with that method can subscribe — a reactivex ``Observer`` in the client (through
``ops.route``), a plain object in a test or a bus gateway.

Routing is two dictionary lookups per message — channel, then symbol — plus one for the
channel's ``"*"`` observers, whatever the number of subscriptions (design.md: never a
chain of filters per subscriber).

Threading: :meth:`Router.dispatch` runs on the socket thread and takes no lock.
:meth:`~Router.add` and :meth:`~Router.remove` may run on any thread; they serialise on
the router's lock and publish a *new* entry (copy-on-write), so a dispatch in progress
keeps delivering to the observers it already read.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol, TypeAlias, TypeVar

from .metrics import Metrics

__all__ = ["HandlerErrorCallback", "Routable", "Router", "Sink"]


class Sink(Protocol):
    """What the router needs of an observer: ``on_next`` (an Rx ``Observer`` is one)."""

    def on_next(self, value: Any, /) -> None: ...


class Routable(Protocol):
    """What the router reads of an item: the channel its class arrives on.

    Data records name theirs (``"trades"``, ``"news"`` …) and have a ``symbol`` (news: a
    ``symbols`` list); control messages, ``Unknown`` and ``FrameError`` have ``""`` and
    are handed back by :meth:`Router.dispatch` instead of delivered.
    """

    CHANNEL: ClassVar[str]


#: ``(exception, record, observer)``, called when an observer raises.
HandlerErrorCallback: TypeAlias = Callable[[BaseException, object, Any], None]

_R = TypeVar("_R", bound=Routable)

#: A routing-table entry: the one observer of a (channel, symbol) itself — the common
#: case, and one object fewer per entry for dispatch to touch (a cache miss per message
#: with thousands of subscriptions, docs/benchmarks.md) — or a tuple of two or more.
_Entry: TypeAlias = "Sink | tuple[Sink, ...]"

_EMPTY: tuple[Sink, ...] = ()


def _as_tuple(entry: _Entry | None) -> tuple[Sink, ...]:
    if entry is None:
        return _EMPTY
    return entry if type(entry) is tuple else (entry,)  # type: ignore[return-value]


def _as_entry(observers: tuple[Sink, ...]) -> _Entry:
    return observers[0] if len(observers) == 1 else observers


class Router:
    """The routing table: channel → symbol → observers.

    Example::

        >>> from rxalpaca.router import Router
        >>> class Printer:
        ...     def on_next(self, record): print(record.symbol, record.price)
        >>> router = Router()
        >>> router.add("trades", "AAPL", Printer())

    Args:
        metrics: where delivered / unrouted / failed messages are counted.
        on_handler_error: called *inside the except block* (so ``logger.exception``
            there has the stack trace) as ``(exception, record, observer)`` when an
            observer raises. The other observers still get the record; if the callback
            raises in turn, that is suppressed (the socket thread must go on).
    """

    def __init__(
        self,
        metrics: Metrics | None = None,
        on_handler_error: HandlerErrorCallback | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._table: dict[str, dict[str, _Entry]] = {}
        # channel → its "*" observers, mirrored out of _table so dispatch needs one lookup
        # for them per message (and none when a channel has no wildcard).
        self._stars: dict[str, tuple[Sink, ...]] = {}
        self.metrics = metrics if metrics is not None else Metrics()
        self._on_handler_error = on_handler_error

    # ---- registry (any thread)

    def add(self, channel: str, symbol: str, observer: Sink) -> None:
        """Deliver ``channel`` records of ``symbol`` (or ``"*"``: all symbols) to ``observer``."""
        with self._lock:
            by_symbol = self._table.get(channel)
            if by_symbol is None:
                by_symbol = self._table[channel] = {}
            observers = (*_as_tuple(by_symbol.get(symbol)), observer)
            by_symbol[symbol] = _as_entry(observers)
            if symbol == "*":
                self._stars[channel] = observers

    def remove(self, channel: str, symbol: str, observer: Sink) -> bool:
        """Stop delivering to ``observer``; True if it was registered."""
        with self._lock:
            by_symbol = self._table.get(channel)
            if by_symbol is None:
                return False
            current = _as_tuple(by_symbol.get(symbol))
            for i, o in enumerate(current):
                if o is observer:
                    rest = current[:i] + current[i + 1 :]
                    if rest:
                        by_symbol[symbol] = _as_entry(rest)
                    else:
                        del by_symbol[symbol]  # no empty entries left behind
                    if symbol == "*":
                        if rest:
                            self._stars[channel] = rest
                        else:
                            self._stars.pop(channel, None)
                    return True
            return False

    # The two views below hand back the very objects registered, typed ``Any``: the
    # router needs only ``on_next`` of them, its owner (the client) registered Rx
    # observers and calls their ``on_error`` too.

    def observers(self, channel: str, symbol: str) -> tuple[Any, ...]:
        """The observers of (channel, symbol) right now."""
        return _as_tuple(self._table.get(channel, {}).get(symbol))

    def entries(self) -> int:
        """Number of (channel, symbol) entries (for leak checks)."""
        with self._lock:
            return sum(len(v) for v in self._table.values())

    def observer_count(self) -> int:
        """Number of registered (entry, observer) pairs (for leak checks)."""
        with self._lock:
            return sum(len(_as_tuple(e)) for v in self._table.values() for e in v.values())

    def snapshot(self) -> dict[tuple[str, str], tuple[Any, ...]]:
        """A copy of the table."""
        with self._lock:
            return {(c, s): _as_tuple(e) for c, v in self._table.items() for s, e in v.items()}

    # ---- hot path (socket thread)

    def dispatch(self, items: Sequence[_R]) -> list[_R]:
        """Deliver data records; return everything else (control, Unknown, FrameError)."""
        table = self._table
        stars = self._stars
        rest: list[_R] = []
        delivered = unrouted = failed = 0
        for rec in items:
            channel = rec.CHANNEL
            if not channel:
                rest.append(rec)
                continue
            by_symbol = table.get(channel)
            if by_symbol is None:
                unrouted += 1
                continue
            if channel == "news":
                outcome = self._news(rec, by_symbol)
            else:
                direct = by_symbol.get(rec.symbol)  # type: ignore[attr-defined]
                star = stars.get(channel)
                if star is None:
                    if direct is None:
                        unrouted += 1
                        continue
                    if type(direct) is not tuple:
                        # The common case, inlined: one observer, no wildcard.
                        try:
                            direct.on_next(rec)  # type: ignore[union-attr]  # not a tuple
                            delivered += 1
                        except Exception as exc:
                            self._handler_failed(exc, rec, direct)
                            failed += 1
                        continue
                    outcome = self._deliver(rec, direct)
                elif direct is None:
                    outcome = self._deliver(rec, star)
                elif type(direct) is tuple:
                    outcome = self._deliver(rec, direct + star)
                else:
                    outcome = self._deliver(rec, (direct, *star))  # type: ignore[arg-type]
            if outcome > 0:
                delivered += 1
            elif outcome == 0:
                unrouted += 1
            else:
                failed += 1
        m = self.metrics
        m.messages_decoded += delivered + unrouted + failed
        m.messages_delivered += delivered
        m.messages_unrouted += unrouted
        m.messages_failed += failed
        return rest

    def _deliver(self, rec: object, observers: tuple[Sink, ...]) -> int:
        """1: at least one observer took it; -1: every observer raised."""
        ok = False
        for o in observers:
            try:
                o.on_next(rec)
                ok = True
            except Exception as exc:
                self._handler_failed(exc, rec, o)
        return 1 if ok else -1

    def _news(self, rec: Any, by_symbol: dict[str, _Entry]) -> int:
        # News is routed by its symbols list; an observer on several of them gets the
        # article once. Articles with no symbols go to "*" only (§4.17).
        seen: dict[int, Sink] = {}
        for sym in (*rec.symbols, "*"):
            for o in _as_tuple(by_symbol.get(sym)):
                seen.setdefault(id(o), o)
        if not seen:
            return 0
        return self._deliver(rec, tuple(seen.values()))

    def _handler_failed(self, exc: BaseException, rec: object, observer: object) -> None:
        self.metrics.count_handler_error()
        if self._on_handler_error is not None:
            with contextlib.suppress(Exception):
                self._on_handler_error(exc, rec, observer)
