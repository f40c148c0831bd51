"""The SubscriptionBook: who wants what, what the server has, and what to send next.

Sans-I/O: no sockets, threads or Rx. It keeps

* ``wanted``: reference counts per (channel, symbol) — the first acquire makes the
  pair wanted on the server, the last release makes it unwanted;
* ``acked``: the server's subscription state from its last acknowledgement, the
  source of truth (§3.3);
* at most **one request in flight** — the server answers each request with exactly
  one ack or error, in order (S26), so the next ack or error always belongs to it.

While a request is in flight every other change accumulates; the next request
carries all of it. A loop subscribing 1,000 symbols one by one therefore reaches
the server as two messages: the first symbol, then the other 999.

A combined subscribe that the server refuses as a whole for something one symbol
can cause — ``400`` (a symbol it finds malformed), ``405`` (the plan's symbol
limit), ``413`` (``*`` on option quotes) — does not sink its batch: the book splits
it in halves and tries each alone (bisection), until every refusal names a single
(channel, symbol). So only the refused symbols fail, and the good ones subscribe;
with a limit of 30, forty symbols asked at once end as thirty subscribed and ten
refused. While halves are pending no other subscribe is mixed into them.

Threading: every public method takes the book's own lock, so subscribe/dispose
may come from any thread — including an observer running on the socket thread,
since no lock is held while observers run.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from .feeds import IMPLICIT_CHANNELS
from .models import SubscriptionMessage

__all__ = ["AckCheck", "Rejection", "Request", "SubscriptionBook"]

_Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Request:
    """A subscribe or unsubscribe message to send: ``{"action": action, **channels}``."""

    action: str  # "subscribe" | "unsubscribe"
    channels: dict[str, tuple[str, ...]]

    def message(self) -> dict[str, object]:
        """The action as a plain dict, ready for the codec."""
        return {"action": self.action, **{ch: list(s) for ch, s in self.channels.items()}}

    def pairs(self) -> set[_Key]:
        """Every (channel, symbol) this request names."""
        return {(ch, s) for ch, syms in self.channels.items() for s in syms}


@dataclass(frozen=True, slots=True)
class AckCheck:
    """The result of comparing an ack with what the in-flight request asked for."""

    missing: frozenset[_Key] = frozenset()  # asked to add, absent from the ack
    unexpected: frozenset[_Key] = frozenset()  # asked to remove, still present

    @property
    def ok(self) -> bool:
        """The ack holds exactly what was asked."""
        return not self.missing and not self.unexpected


@dataclass(frozen=True, slots=True)
class Rejection:
    """The in-flight subscribe was refused; these pairs were dropped from ``wanted``.

    ``split`` is true when the refused request named several pairs and will be
    retried in halves instead (``pairs`` is then empty: nobody is refused yet).
    """

    pairs: frozenset[_Key]
    split: bool = False


@dataclass
class SubscriptionBook:
    """Reference-counted subscriptions and the requests that keep the server in step.

    Args:
        channels: the channels the server tracks on this endpoint (from ``feeds``);
            implicit channels (corrections, cancelErrors) are never requested.
    """

    channels: frozenset[str]
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _counts: dict[_Key, int] = field(default_factory=dict)
    _acked: set[_Key] = field(default_factory=set)
    # Holders of refused pairs: their releases must not touch a later user's count.
    _rejected: dict[_Key, int] = field(default_factory=dict)
    _in_flight: Request | None = None
    _ready: bool = False  # authenticated: requests may be sent
    # Halves of refused combined subscribes, each to be tried alone (first first).
    _probes: list[frozenset[_Key]] = field(default_factory=list)
    requests_sent: int = 0
    #: Combined subscribes split in halves after a refusal (see the module docstring).
    splits: int = 0

    # ---- users (any thread)

    def acquire(self, channel: str, symbols: Iterable[str]) -> None:
        """One more user of each (channel, symbol)."""
        with self._lock:
            for sym in symbols:
                key = (channel, sym)
                self._counts[key] = self._counts.get(key, 0) + 1

    def release(self, channel: str, symbols: Iterable[str]) -> None:
        """One user fewer; the last release makes the pair unwanted on the server."""
        with self._lock:
            for sym in symbols:
                key = (channel, sym)
                orphans = self._rejected.get(key, 0)
                if orphans:
                    if orphans > 1:
                        self._rejected[key] = orphans - 1
                    else:
                        del self._rejected[key]
                    continue
                n = self._counts.get(key, 0) - 1
                if n > 0:
                    self._counts[key] = n
                else:
                    self._counts.pop(key, None)

    def count(self, channel: str, symbol: str) -> int:
        """How many users hold (channel, symbol)."""
        with self._lock:
            return self._counts.get((channel, symbol), 0)

    @property
    def live(self) -> int:
        """Number of distinct (channel, symbol) pairs wanted."""
        with self._lock:
            return len(self._counts)

    def wanted(self) -> set[_Key]:
        """A copy of every wanted (channel, symbol)."""
        with self._lock:
            return set(self._counts)

    def acked(self) -> set[_Key]:
        """A copy of the server's state from its last ack."""
        with self._lock:
            return set(self._acked)

    # ---- the connection (socket thread)

    def connected(self) -> None:
        """A new session authenticated: it starts with no subscriptions (§2.5)."""
        with self._lock:
            self._acked.clear()
            self._in_flight = None
            self._probes.clear()  # a fresh session: the full set is tried again
            self._ready = True

    def disconnected(self) -> None:
        """The session is gone; nothing is in flight any more."""
        with self._lock:
            self._ready = False
            self._in_flight = None
            self._probes.clear()
            self._acked.clear()

    def take_request(self) -> Request | None:
        """The next request to send, or ``None`` (not ready, one in flight, or in step).

        The returned request is in flight until :meth:`on_ack` or :meth:`on_error`.
        Subscribes go before unsubscribes so a symbol moving between users is never
        briefly absent.
        """
        with self._lock:
            if not self._ready or self._in_flight is not None:
                return None
            while self._probes:
                # A half of a refused batch goes alone, minus what changed meanwhile.
                probe = {k for k in self._probes.pop(0) if k in self._counts} - self._acked
                if probe:
                    req = Request("subscribe", _group(probe))
                    self._in_flight = req
                    self.requests_sent += 1
                    return req
            wanted = set(self._counts)
            add = wanted - self._acked
            remove = self._acked - wanted
            if add:
                req = Request("subscribe", _group(add))
            elif remove:
                req = Request("unsubscribe", _group(remove))
            else:
                return None
            self._in_flight = req
            self.requests_sent += 1
            return req

    @property
    def in_flight(self) -> Request | None:
        """The request awaiting its reply, if any."""
        with self._lock:
            return self._in_flight

    def on_ack(self, ack: SubscriptionMessage) -> AckCheck:
        """The server's full state arrived: adopt it and check it against the request."""
        state: set[_Key] = set()
        for ch, syms in ack.channels().items():
            if ch in IMPLICIT_CHANNELS or ch not in self.channels:
                continue
            state.update((ch, s) for s in syms)
        with self._lock:
            req, self._in_flight = self._in_flight, None
            self._acked = state
            if req is None:
                return AckCheck()
            pairs = req.pairs()
            if req.action == "subscribe":
                return AckCheck(missing=frozenset(pairs - state))
            return AckCheck(unexpected=frozenset(pairs & state))

    def on_error(self, *, split: bool = False) -> Rejection:
        """The in-flight request was refused; the server's state is unchanged (§3.3).

        Args:
            split: the refusal may be due to some of the symbols only (400, 405, 413):
                a subscribe naming several pairs is retried in two halves instead of
                being refused whole.

        The refused subscribe pairs are dropped from ``wanted`` (their users get the
        error); a refused unsubscribe is forgotten so it is not retried forever.
        """
        with self._lock:
            req, self._in_flight = self._in_flight, None
            if req is None:
                return Rejection(frozenset())
            pairs = req.pairs()
            if req.action == "subscribe" and split and len(pairs) > 1:
                ordered = sorted(pairs)
                half = len(ordered) // 2
                self._probes[:0] = [frozenset(ordered[:half]), frozenset(ordered[half:])]
                self.splits += 1
                return Rejection(frozenset(), split=True)
            if req.action == "subscribe":
                for key in pairs:
                    holders = self._counts.pop(key, 0)
                    if holders:
                        self._rejected[key] = self._rejected.get(key, 0) + holders
                return Rejection(frozenset(pairs))
            self._acked -= pairs
            return Rejection(frozenset())

    # ---- an upstream without acks of its own (a bus: the gateway's lease reply)

    def adopt(self, pairs: Iterable[_Key]) -> None:
        """The upstream now holds exactly ``pairs`` (no request was in flight)."""
        state = {k for k in pairs if k[0] in self.channels}
        with self._lock:
            self._acked = state

    def refuse(self, pairs: Iterable[_Key]) -> frozenset[_Key]:
        """The upstream refused ``pairs``: drop them from ``wanted`` (their users get
        the error; their later releases are absorbed). Returns the pairs that were held."""
        held: set[_Key] = set()
        with self._lock:
            for key in pairs:
                holders = self._counts.pop(key, 0)
                if holders:
                    held.add(key)
                    self._rejected[key] = self._rejected.get(key, 0) + holders
                self._acked.discard(key)
        return frozenset(held)


def _group(pairs: set[_Key]) -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    for ch, sym in sorted(pairs):
        out.setdefault(ch, []).append(sym)
    return {ch: tuple(syms) for ch, syms in out.items()}
