"""A deterministic synthetic market: plain wire dicts for every message type of §4.

Seeded (``random.Random(seed)``): the same configuration yields the same messages.
Mid prices follow a random walk per symbol with realistic spreads, sizes, exchange
codes (§4.18), conditions and tapes. A virtual clock advances strictly with every
message, so timestamps are strictly increasing per symbol (bars carry the start of
their interval, as on the wire: a minute bar per symbol each time the clock crosses
a minute, daily bars with the day's start).

Example::

    >>> m = Market(["AAPL", "MSFT"], seed=1)
    >>> [r["T"] for r in m.records(3)]  # doctest: +SKIP
    ['q', 'q', 't']
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rxalpaca.feeds import Family

__all__ = [
    "DEFAULT_CRYPTO_SYMBOLS",
    "DEFAULT_MIX",
    "DEFAULT_OPTION_SYMBOLS",
    "DEFAULT_STOCK_SYMBOLS",
    "Market",
    "MarketConfig",
    "family_of_symbol",
]

DEFAULT_STOCK_SYMBOLS: tuple[str, ...] = ("AAPL", "MSFT", "AMZN", "NVDA", "SPY", "TSLA")
DEFAULT_CRYPTO_SYMBOLS: tuple[str, ...] = ("BTC/USD", "ETH/USD", "SOL/USD")
DEFAULT_OPTION_SYMBOLS: tuple[str, ...] = ("AAPL240315C00172500", "SPXW240327P04925000")

#: Relative frequency of each ``T`` per family (bars come from the clock, not from here).
DEFAULT_MIX: dict[Family, dict[str, float]] = {
    Family.STOCKS: {"q": 60, "t": 35, "s": 0.5, "l": 1, "i": 0.5, "c": 1, "x": 1, "n": 0},
    Family.TEST: {"q": 60, "t": 40},
    Family.CRYPTO: {"q": 50, "t": 30, "o": 20},
    Family.OPTIONS: {"q": 70, "t": 30},
    Family.NEWS: {"n": 1},
}

_STOCK_EXCHANGES = "ABCDHIJKLMNPQSTUVWXYZ"
_OPTION_EXCHANGES = "ABCDEHIJMNOPQSTWXZ"
_TRADE_CONDITIONS: tuple[tuple[str, ...], ...] = (("@",), ("@", "I"), ("@", "F", "T"), (" ",))
_TRADE_SIZES = (1, 5, 10, 50, 100, 200, 300, 1000)
_NS = 1_000_000_000
_MINUTE = 60 * _NS
_DAY = 86_400 * _NS


def family_of_symbol(symbol: str) -> Family:
    """Guess the family from a symbol's shape: ``BTC/USD`` crypto, OCC options, else stocks."""
    if "/" in symbol:
        return Family.CRYPTO
    if len(symbol) >= 16 and symbol[-9] in "CP" and symbol[-8:].isdigit():
        return Family.OPTIONS
    return Family.STOCKS


@dataclass
class MarketConfig:
    """How a server streams its synthetic market (see ``AlpacaStreamServer.start_market``).

    Attributes:
        symbols: symbols to simulate; their shape picks the family unless ``family`` is set.
        rate: messages per second (1 … 500 000); ``None`` sends as fast as clients read.
        batch: data messages per frame (S30).
        seed: seed of the random generator.
        family: the schema (stocks/crypto/options/news); connections on endpoints of
            that family receive the market (``Family.TEST`` feeds ``/v2/test``).
        mix: relative frequency per ``T`` code (defaults to :data:`DEFAULT_MIX`).
        total: stop after this many messages; they are generated and encoded before
            streaming starts, so the server costs nothing while a benchmark runs.
        step_ns: average virtual time between messages (default ``1e9 / rate``).
        start_ns: the virtual clock's start (default: now).
        encodings: with a ``total``, the encodings to prepare (``"json"``,
            ``"msgpack"``; default both). Other connections get nothing.

    Live generation (no ``total``) costs roughly 10-15 µs per message, so it tops out
    at a few tens of thousands of messages per second; for higher rates give a
    ``total`` so that streaming only joins pre-encoded bytes.
    """

    symbols: Sequence[str] = DEFAULT_STOCK_SYMBOLS
    rate: float | None = 1000.0
    batch: int = 1
    seed: int = 0
    family: Family | None = None
    mix: Mapping[str, float] | None = None
    total: int | None = None
    step_ns: int | None = None
    start_ns: int | None = None
    encodings: Sequence[str] | None = None

    def resolved_family(self) -> Family:
        """``family`` or the family of the first symbol."""
        if self.family is not None:
            return self.family
        return family_of_symbol(self.symbols[0]) if self.symbols else Family.STOCKS


@dataclass
class _SymbolState:
    mid: float
    tick: float
    trade_id: int
    last_trade: tuple[int, float, int] = (0, 0.0, 0)
    minute: int = -1
    day_open: float = 0.0
    day_high: float = 0.0
    day_low: float = 0.0
    day_volume: float = 0.0
    day_trades: int = 0
    bar: list[float] = field(default_factory=list)  # open, high, low, close, volume, n, pv
    bids: dict[float, float] = field(default_factory=dict)
    asks: dict[float, float] = field(default_factory=dict)


class Market:
    """Generates wire records (plain dicts, ``T`` first) for a set of symbols.

    Args:
        symbols: the simulated symbols.
        family: schema of the records; guessed from the first symbol when ``None``.
        seed: seed of ``random.Random``.
        mix: relative frequency per ``T``.
        step_ns: average virtual nanoseconds between two messages.
        start_ns: start of the virtual clock (default: now).
    """

    def __init__(
        self,
        symbols: Sequence[str] = DEFAULT_STOCK_SYMBOLS,
        *,
        family: Family | None = None,
        seed: int = 0,
        mix: Mapping[str, float] | None = None,
        step_ns: int = 1_000_000,
        start_ns: int | None = None,
    ) -> None:
        if not symbols:
            raise ValueError("a market needs at least one symbol")
        self.symbols: tuple[str, ...] = tuple(symbols)
        self.family = family if family is not None else family_of_symbol(self.symbols[0])
        self.rng = random.Random(seed)
        self._random = self.rng.random
        weights = dict(mix if mix is not None else DEFAULT_MIX[self.family])
        self._kinds = [k for k, w in weights.items() if w > 0]
        self._cum: list[float] = []
        acc = 0.0
        for k in self._kinds:
            acc += weights[k]
            self._cum.append(acc)
        self.step_ns = max(1, int(step_ns))
        self.now_ns = start_ns if start_ns is not None else time.time_ns()
        self._news_id = 40_000_000
        self._state: dict[str, _SymbolState] = {}
        for sym in self.symbols:
            self._state[sym] = self._new_state(sym)
        self._pending: list[dict[str, Any]] = []

    # -- state -------------------------------------------------------------------------

    def _new_state(self, symbol: str) -> _SymbolState:
        rng = self.rng
        if self.family is Family.CRYPTO:
            mid = rng.choice((0.35, 2.1, 47.3, 180.0, 3100.0, 67000.0)) * rng.uniform(0.9, 1.1)
            tick = max(mid * 1e-5, 1e-5)
            trade_id = rng.randrange(2**53, 2**62)  # crypto ids exceed 2^53 (S32)
        elif self.family is Family.OPTIONS:
            mid = round(rng.uniform(0.5, 30.0), 2)
            tick = 0.01
            trade_id = 0
        else:
            mid = round(rng.uniform(10.0, 600.0), 2)
            tick = 0.01
            trade_id = rng.randrange(1, 100_000)
        st = _SymbolState(mid=mid, tick=tick, trade_id=trade_id)
        st.day_open = st.day_high = st.day_low = mid
        return st

    def _advance(self) -> int:
        # Strictly increasing virtual clock: every timestamp differs from the last.
        self.now_ns += 1 + int(-math.log(1.0 - self._random()) * self.step_ns)
        return self.now_ns

    def _walk(self, st: _SymbolState) -> float:
        st.mid = max(st.tick * 10, st.mid + self.rng.gauss(0.0, st.tick * 3))
        return st.mid

    def _round(self, st: _SymbolState, price: float) -> float:
        if st.tick >= 0.01:
            return round(price, 2)
        return float(f"{price:.6g}")

    # -- public ------------------------------------------------------------------------

    def records(self, n: int) -> list[dict[str, Any]]:
        """The next ``n`` records."""
        return [self.next_record() for _ in range(n)]

    def next_record(self) -> dict[str, Any]:
        """The next record; bars are inserted whenever the clock crosses a minute."""
        if self._pending:
            return self._pending.pop(0)
        ts = self._advance()
        sym = self.symbols[int(self._random() * len(self.symbols))]
        st = self._state[sym]
        minute = ts // _MINUTE
        if self.family in (Family.STOCKS, Family.TEST, Family.CRYPTO) and minute != st.minute:
            if st.minute >= 0 and st.bar:
                self._pending.extend(self._close_bar(sym, st))
            st.minute = minute
            st.bar = []
        r = self._random() * self._cum[-1]
        kind = self._kinds[-1]
        for k, c in zip(self._kinds, self._cum, strict=True):
            if r < c:
                kind = k
                break
        rec = self._make(kind, sym, st, ts)
        if self._pending:
            self._pending.append(rec)
            return self._pending.pop(0)
        return rec

    def record(self, kind: str, symbol: str, ts: int | None = None) -> dict[str, Any]:
        """One record of type ``kind`` (a ``T`` code) for ``symbol`` at ``ts`` (default: the
        next virtual time). ``symbol`` need not be one of the market's symbols."""
        st = self._state.get(symbol)
        if st is None:
            st = self._state[symbol] = self._new_state(symbol)
        return self._make(kind, symbol, st, ts if ts is not None else self._advance())

    def mid(self, symbol: str) -> float:
        """The current mid price of ``symbol``."""
        return self._state[symbol].mid

    def _close_bar(self, sym: str, st: _SymbolState) -> list[dict[str, Any]]:
        o, h, lo, c, v, n, pv = st.bar
        bar_t = st.minute * _MINUTE
        crypto = self.family is Family.CRYPTO
        vol: float | int = v if crypto else int(v)
        vw = self._round(st, pv / v) if v else c
        b = {
            "T": "b",
            "S": sym,
            "o": o,
            "h": h,
            "l": lo,
            "c": c,
            "v": vol,
            "t": bar_t,
            "n": int(n),
            "vw": vw,
        }
        out = [b]
        if self.family is not Family.TEST:
            day_t = (bar_t // _DAY) * _DAY
            dvol: float | int = st.day_volume if crypto else int(st.day_volume)
            out.append(
                {
                    "T": "d",
                    "S": sym,
                    "o": st.day_open,
                    "h": st.day_high,
                    "l": st.day_low,
                    "c": c,
                    "v": dvol,
                    "t": day_t,
                    "n": st.day_trades,
                    "vw": vw,
                }
            )
            if self.rng.random() < 0.1:
                out.append({**b, "T": "u", "v": vol + (1 if not crypto else 0.5), "n": int(n) + 1})
        return out

    def _add_trade(self, st: _SymbolState, price: float, size: float) -> None:
        if not st.bar:
            st.bar = [price, price, price, price, 0.0, 0, 0.0]
        bar = st.bar
        bar[1] = max(bar[1], price)
        bar[2] = min(bar[2], price)
        bar[3] = price
        bar[4] += size
        bar[5] += 1
        bar[6] += price * size
        st.day_high = max(st.day_high, price)
        st.day_low = min(st.day_low, price)
        st.day_volume += size
        st.day_trades += 1

    def _make(self, kind: str, sym: str, st: _SymbolState, ts: int) -> dict[str, Any]:
        rng = self.rng
        fam = self.family
        mid = self._walk(st)
        if kind == "n":
            return self.news(ts)
        if fam is Family.CRYPTO:
            return self._crypto(kind, sym, st, ts, mid)
        if fam is Family.OPTIONS:
            return self._option(kind, sym, st, ts, mid)
        rnd = self._random
        half = st.tick * (1 + int(rnd() * 3))
        z = "C" if sym[0] < "M" else ("A" if rnd() < 0.5 else "B")
        nex = len(_STOCK_EXCHANGES)
        if kind == "q":
            return {
                "T": "q",
                "S": sym,
                "bx": _STOCK_EXCHANGES[int(rnd() * nex)],
                "bp": round(mid - half, 2),
                "bs": 1 + int(rnd() * 20),
                "ax": _STOCK_EXCHANGES[int(rnd() * nex)],
                "ap": round(mid + half, 2),
                "as": 1 + int(rnd() * 20),
                "c": ["R"],
                "z": z,
                "t": ts,
            }
        if kind in ("t", "c", "x") and (kind == "t" or st.last_trade[0] == 0):
            st.trade_id += 1
            price = round(mid + (-half, half, 0.0)[int(rnd() * 3)], 2)
            size = _TRADE_SIZES[int(rnd() * len(_TRADE_SIZES))]
            st.last_trade = (st.trade_id, price, size)
            self._add_trade(st, price, size)
            return {
                "T": "t",
                "S": sym,
                "i": st.trade_id,
                "x": _STOCK_EXCHANGES[int(rnd() * nex)],
                "p": price,
                "s": size,
                "c": list(_TRADE_CONDITIONS[int(rnd() * len(_TRADE_CONDITIONS))]),
                "z": z,
                "t": ts,
            }
        if kind == "c":
            oi, op, os_ = st.last_trade
            st.trade_id += 1
            return {
                "T": "c",
                "S": sym,
                "x": rng.choice(_STOCK_EXCHANGES),
                "oi": oi,
                "op": op,
                "os": os_,
                "oc": [" ", "7"],
                "ci": st.trade_id,
                "cp": self._round(st, op + st.tick),
                "cs": os_,
                "cc": [" ", "7"],
                "z": z,
                "t": ts,
            }
        if kind == "x":
            i, p, s = st.last_trade
            return {
                "T": "x",
                "S": sym,
                "i": i,
                "x": rng.choice(_STOCK_EXCHANGES),
                "p": p,
                "s": s,
                "a": rng.choice("CE"),
                "z": z,
                "t": ts,
            }
        if kind == "s":
            halted = rng.random() < 0.5
            return {
                "T": "s",
                "S": sym,
                "sc": "H" if halted else "T",
                "sm": "Trading Halt" if halted else "Trading Resumption",
                "rc": "T12" if halted else "",
                "rm": "" if not halted else "Trading Halted; For information requested by NASDAQ",
                "t": ts,
                "z": z,
            }
        if kind == "l":
            return {
                "T": "l",
                "S": sym,
                "u": self._round(st, mid * 1.05),
                "d": self._round(st, mid * 0.95),
                "i": "B",
                "t": ts,
                "z": z,
            }
        if kind == "i":
            return {"T": "i", "S": sym, "p": self._round(st, mid), "z": z, "t": ts}
        raise ValueError(f"unknown kind {kind!r} for {fam}")

    def _crypto(self, kind: str, sym: str, st: _SymbolState, ts: int, mid: float) -> dict[str, Any]:
        rng = self.rng
        half = st.tick * rng.randint(1, 20)
        if kind == "q":
            return {
                "T": "q",
                "S": sym,
                "bp": self._round(st, mid - half),
                "bs": round(rng.uniform(0.001, 50), 9),
                "ap": self._round(st, mid + half),
                "as": round(rng.uniform(0.001, 50), 9),
                "t": ts,
            }
        if kind == "t":
            st.trade_id += 1
            price = self._round(st, mid)
            size = round(rng.uniform(0.0001, 5), 9)
            self._add_trade(st, price, size)
            return {
                "T": "t",
                "S": sym,
                "p": price,
                "s": size,
                "t": ts,
                "i": st.trade_id,
                "tks": rng.choice("BS"),
            }
        if kind == "o":
            if not st.bids:
                self._fill_book(st)
            # Keep the book uncrossed as the mid walks: crossed levels are removed (s=0).
            gone_b, gone_a = self._prune(st)
            bids: list[dict[str, float]] = [{"p": p, "s": 0.0} for p in gone_b]
            asks: list[dict[str, float]] = [{"p": p, "s": 0.0} for p in gone_a]
            side = "b" if rng.random() < 0.5 else "a"
            book = st.bids if side == "b" else st.asks
            if book and rng.random() < 0.3:
                price = rng.choice(list(book))
                del book[price]
                level = {"p": price, "s": 0.0}
            else:
                off = st.tick * rng.randint(2, 30)
                price = self._round(st, mid - off if side == "b" else mid + off)
                size = round(rng.uniform(0.001, 10), 6)
                book[price] = size
                level = {"p": price, "s": size}
            (bids if side == "b" else asks).append(level)
            return {"T": "o", "S": sym, "t": ts, "b": bids, "a": asks}
        raise ValueError(f"unknown kind {kind!r} for crypto")

    @staticmethod
    def _prune(st: _SymbolState) -> tuple[list[float], list[float]]:
        gone_b = [p for p in st.bids if p >= st.mid]
        gone_a = [p for p in st.asks if p <= st.mid]
        for p in gone_b:
            del st.bids[p]
        for p in gone_a:
            del st.asks[p]
        return gone_b, gone_a

    def _fill_book(self, st: _SymbolState) -> None:
        for i in range(1, 6):
            st.bids[self._round(st, st.mid - st.tick * i * 3)] = round(self.rng.uniform(0.01, 5), 6)
            st.asks[self._round(st, st.mid + st.tick * i * 3)] = round(self.rng.uniform(0.01, 5), 6)

    def order_book_snapshot(self, symbol: str, ts: int | None = None) -> dict[str, Any]:
        """A full book (``r: true``, S27) for ``symbol``, known to the market or not."""
        st = self._state.get(symbol)
        if st is None:
            st = (
                self._new_state(symbol)
                if self.family is Family.CRYPTO
                else _SymbolState(mid=100.0, tick=0.01, trade_id=0)
            )
            self._state[symbol] = st
        self._prune(st)
        if not st.bids or not st.asks:
            self._fill_book(st)
        when = ts if ts is not None else self._advance()
        return {
            "T": "o",
            "S": symbol,
            "t": when,
            "b": [{"p": p, "s": s} for p, s in sorted(st.bids.items(), reverse=True)],
            "a": [{"p": p, "s": s} for p, s in sorted(st.asks.items())],
            "r": True,
        }

    def _option(self, kind: str, sym: str, st: _SymbolState, ts: int, mid: float) -> dict[str, Any]:
        rng = self.rng
        if kind == "q":
            half = st.tick * rng.randint(1, 10)
            return {
                "T": "q",
                "S": sym,
                "t": ts,
                "bx": rng.choice(_OPTION_EXCHANGES),
                "bp": self._round(st, max(0.01, mid - half)),
                "bs": rng.randint(1, 100),
                "ax": rng.choice(_OPTION_EXCHANGES),
                "ap": self._round(st, mid + half),
                "as": rng.randint(1, 100),
                "c": rng.choice("AB "),
            }
        if kind == "t":
            return {
                "T": "t",
                "S": sym,
                "t": ts,
                "p": self._round(st, mid),
                "s": rng.randint(1, 20),
                "x": rng.choice(_OPTION_EXCHANGES),
                "c": rng.choice("SIa"),
            }
        raise ValueError(f"unknown kind {kind!r} for options")

    def news(self, ts: int | None = None, symbols: Sequence[str] | None = None) -> dict[str, Any]:
        """A news article (§4.17) about ``symbols`` (default: one or two market symbols)."""
        when = ts if ts is not None else self._advance()
        self._news_id += 1
        if symbols is None:
            symbols = self.rng.sample(
                self.symbols, k=min(len(self.symbols), self.rng.randint(0, 2))
            )
        syms = list(symbols)
        return {
            "T": "n",
            "id": self._news_id,
            "headline": f"{'/'.join(syms) or 'Market'} update #{self._news_id}",
            "summary": "Synthetic article.",
            "author": "rxalpaca.testing",
            "created_at": when,
            "updated_at": when,
            "url": f"https://example.invalid/news/{self._news_id}",
            "content": "<p>Synthetic content.</p>",
            "symbols": syms,
            "source": "benzinga",
        }
