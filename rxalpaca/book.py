"""The SubscriptionBook: who wants what, what the server has, and what to send next.

Sans-I/O: no sockets, threads or Rx. It keeps

* ``wanted``: reference counts per (channel, symbol), kept per channel — the first
  acquire makes the pair wanted on the server, the last release makes it unwanted;
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
since no lock is held while observers run. Work under the lock is proportional to
the symbols of the call (acquire, release), to the channels (``live``), or — once per
request or ack, never per message — to the subscriptions (``take_request``, ``on_ack``).
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable, Mapping
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

    The state is kept per channel — ``{channel: {symbol: ...}}``, an empty channel
    dropped — rather than per ``(channel, symbol)`` tuple: with 1,000 symbols on
    three channels that is 3,000 tuples fewer (about 0.5 MB, docs/benchmarks.md). The
    acked sets hold the book's own symbol strings (those the users passed), not a
    second copy from the ack. The methods that hand out pairs (``wanted()``,
    ``acked()``, ``AckCheck``, ``Rejection``) build them on demand.
    """

    channels: frozenset[str]
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # channel -> symbol -> users; a channel with no symbol left is dropped.
    _counts: dict[str, dict[str, int]] = field(default_factory=dict)
    # channel -> the symbols the server holds (its last ack); no empty sets.
    _acked: dict[str, set[str]] = field(default_factory=dict)
    # Holders of refused pairs: their releases must not touch a later user's count.
    _rejected: dict[str, dict[str, int]] = field(default_factory=dict)
    _in_flight: Request | None = None
    _ready: bool = False  # authenticated: requests may be sent
    # Halves of refused combined subscribes, each to be tried alone (first first). Only
    # while a refusal is being bisected, so kept as plain pairs.
    _probes: list[frozenset[_Key]] = field(default_factory=list)
    requests_sent: int = 0
    #: Combined subscribes split in halves after a refusal (see the module docstring).
    splits: int = 0

    # ---- users (any thread)

    def acquire(self, channel: str, symbols: Iterable[str]) -> None:
        """One more user of each (channel, symbol)."""
        with self._lock:
            counts = self._counts.get(channel)
            if counts is None:
                counts = self._counts[channel] = {}
            for sym in symbols:
                counts[sym] = counts.get(sym, 0) + 1
            if not counts:  # no symbols at all
                del self._counts[channel]

    def release(self, channel: str, symbols: Iterable[str]) -> None:
        """One user fewer; the last release makes the pair unwanted on the server."""
        with self._lock:
            counts = self._counts.get(channel, {})
            orphaned = self._rejected.get(channel, {})
            for sym in symbols:
                orphans = orphaned.get(sym, 0)
                if orphans:
                    if orphans > 1:
                        orphaned[sym] = orphans - 1
                    else:
                        del orphaned[sym]
                    continue
                n = counts.get(sym, 0) - 1
                if n > 0:
                    counts[sym] = n
                else:
                    counts.pop(sym, None)
            if not counts:
                self._counts.pop(channel, None)
            if not orphaned:
                self._rejected.pop(channel, None)

    def count(self, channel: str, symbol: str) -> int:
        """How many users hold (channel, symbol)."""
        with self._lock:
            return self._counts.get(channel, {}).get(symbol, 0)

    @property
    def live(self) -> int:
        """Number of distinct (channel, symbol) pairs wanted (a sum over channels)."""
        with self._lock:
            return sum(map(len, self._counts.values()))

    @property
    def server_live(self) -> int:
        """Number of (channel, symbol) pairs the server holds (its last ack)."""
        with self._lock:
            return sum(map(len, self._acked.values()))

    def wanted(self) -> set[_Key]:
        """A copy of every wanted (channel, symbol)."""
        with self._lock:
            return {(ch, s) for ch, counts in self._counts.items() for s in counts}

    def acked(self) -> set[_Key]:
        """A copy of the server's state from its last ack."""
        with self._lock:
            return {(ch, s) for ch, syms in self._acked.items() for s in syms}

    def acked_by_channel(self) -> dict[str, set[str]]:
        """A copy of the server's state from its last ack, per channel (no empty sets)."""
        with self._lock:
            return {ch: set(syms) for ch, syms in self._acked.items()}

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
                probe = {
                    (ch, s)
                    for ch, s in self._probes.pop(0)
                    if s in self._counts.get(ch, _NONE) and s not in self._acked.get(ch, _NONE)
                }
                if probe:
                    return self._take(Request("subscribe", _group(probe)))
            add = _difference(self._counts, self._acked)
            if add:
                return self._take(Request("subscribe", add))
            remove = _difference(self._acked, self._counts)
            if remove:
                return self._take(Request("unsubscribe", remove))
            return None

    def _take(self, req: Request) -> Request:
        # Under self._lock (take_request).
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
        acked = ack.channels()
        with self._lock:
            # Under the lock: the state is built from the book's own symbol strings.
            state: dict[str, set[str]] = {}
            for ch, syms in acked.items():
                if syms and ch not in IMPLICIT_CHANNELS and ch in self.channels:
                    state[ch] = _own(syms, self._counts.get(ch, _NONE))
            req, self._in_flight = self._in_flight, None
            self._acked = state
            if req is None:
                return AckCheck()
            subscribe = req.action == "subscribe"
            # missing: asked to add, absent; unexpected: asked to remove, still present.
            odd = frozenset(
                (ch, s)
                for ch, syms in req.channels.items()
                for s in syms
                if (s in state.get(ch, _NONE)) is not subscribe
            )
            return AckCheck(missing=odd) if subscribe else AckCheck(unexpected=odd)

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
                for ch, sym in pairs:
                    self._reject(ch, sym)
                return Rejection(frozenset(pairs))
            for ch, syms in req.channels.items():
                self._unack(ch, syms)
            return Rejection(frozenset())

    # ---- an upstream without acks of its own (a bus: the gateway's lease reply)

    def adopt(self, pairs: Iterable[_Key]) -> None:
        """The upstream now holds exactly ``pairs`` (no request was in flight)."""
        state: dict[str, set[str]] = {}
        for ch, sym in pairs:
            if ch in self.channels:
                state.setdefault(ch, set()).add(sym)
        with self._lock:
            self._acked = state

    def refuse(self, pairs: Iterable[_Key]) -> frozenset[_Key]:
        """The upstream refused ``pairs``: drop them from ``wanted`` (their users get
        the error; their later releases are absorbed). Returns the pairs that were held."""
        held: set[_Key] = set()
        with self._lock:
            for ch, sym in pairs:
                if self._reject(ch, sym):
                    held.add((ch, sym))
                self._unack(ch, (sym,))
        return frozenset(held)

    def _reject(self, channel: str, symbol: str) -> bool:
        """Under self._lock: drop (channel, symbol) from wanted, its holders now orphans."""
        counts = self._counts.get(channel)
        holders = counts.pop(symbol, 0) if counts is not None else 0
        if not holders:
            return False
        if not counts:
            del self._counts[channel]
        orphaned = self._rejected.setdefault(channel, {})
        orphaned[symbol] = orphaned.get(symbol, 0) + holders
        return True

    def _unack(self, channel: str, symbols: Iterable[str]) -> None:
        """Under self._lock: the server no longer holds ``symbols`` of ``channel``."""
        syms = self._acked.get(channel)
        if syms is not None:
            syms.difference_update(symbols)
            if not syms:
                del self._acked[channel]


_NONE: frozenset[str] = frozenset()


def _own(acked: frozenset[str], counts: Collection[str]) -> set[str]:
    """``acked`` as a set of the book's own strings where it holds them (``counts``'
    keys, the strings users passed): the ack's copies of them are then let go."""
    mine = {s for s in counts if s in acked}
    if len(mine) < len(acked):
        mine |= acked  # the rest (not wanted, or not by us): adds only what is absent
    return mine


def _difference(
    these: Mapping[str, Collection[str]], those: Mapping[str, Collection[str]]
) -> dict[str, tuple[str, ...]]:
    """Per channel, what ``these`` has and ``those`` has not: sorted, for a Request."""
    out: dict[str, tuple[str, ...]] = {}
    for ch in sorted(these):
        other = those.get(ch, _NONE)
        syms = [s for s in these[ch] if s not in other]
        if syms:
            out[ch] = tuple(sorted(syms))
    return out


def _group(pairs: set[_Key]) -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    for ch, sym in sorted(pairs):
        out.setdefault(ch, []).append(sym)
    return {ch: tuple(syms) for ch, syms in out.items()}
