"""Deterministic, realistic batched stock frames for the benchmarks.

Standalone on purpose (it does not use ``rxalpaca.testing``): the same seed gives the same
bytes on every machine, so runs compare. The mix follows a busy SIP stream: mostly quotes,
then trades, a few minute bars; prices random-walk per symbol; timestamps grow by a few
microseconds with all nine fractional digits (trailing zeros trimmed, as the server writes
them, ``alpaca-stream-protocol.md`` §4.1). Frames hold 1-20 messages (§6: the server batches
more when the client is slower).

Example::

    >>> from frames import Workload
    >>> w = Workload.build(symbols=100, frames=10, batch=(1, 20), seed=1)
    >>> len(w.json_frames), w.messages == sum(len(b) for b in w.batches)
    (10, True)
"""

from __future__ import annotations

import datetime as dt
import random
import string
from dataclasses import dataclass
from typing import Any

import msgpack
import orjson

__all__ = ["Workload", "rfc3339", "symbols"]

#: Share of each message type in the stream (quotes dominate a real SIP feed).
MIX: tuple[tuple[str, float], ...] = (("q", 0.70), ("t", 0.25), ("b", 0.05))
START_NS = 1_709_652_600 * 1_000_000_000  # 2024-03-05T15:30:00Z, a weekday mid-session
EXCHANGES = "ABCDHIJKLMNPQUVXYZ"
CONDITIONS = (("@",), ("@", "I"), ("@", "F", "T"), (" ",), ("@", "4", "I"))


def symbols(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct ticker-like symbols (1-5 capitals), the same for the same seed."""
    rng = random.Random(seed)
    out: dict[str, None] = {}
    while len(out) < n:
        out["".join(rng.choices(string.ascii_uppercase, k=rng.randint(1, 5)))] = None
    return list(out)


def rfc3339(ns: int) -> str:
    """RFC 3339 UTC with trimmed fractional digits, written independently of rxalpaca."""
    seconds, frac = divmod(ns, 1_000_000_000)
    base = dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac:09d}".rstrip("0").rstrip(".") + "Z"


def _message(rng: random.Random, kind: str, symbol: str, price: float, ns: int) -> dict[str, Any]:
    """One message; ``t`` is integer ns here and becomes the wire form per encoding."""
    if kind == "q":
        spread = round(rng.uniform(0.01, 0.05), 2)
        return {
            "T": "q",
            "S": symbol,
            "bx": rng.choice(EXCHANGES),
            "bp": round(price - spread / 2, 2),
            "bs": rng.randint(1, 20),
            "ax": rng.choice(EXCHANGES),
            "ap": round(price + spread / 2, 2),
            "as": rng.randint(1, 20),
            "c": ["R"],
            "z": rng.choice("ABC"),
            "t": ns,
        }
    if kind == "t":
        return {
            "T": "t",
            "S": symbol,
            "i": rng.randint(1, 2**48),
            "x": rng.choice(EXCHANGES),
            "p": round(price, 2),
            "s": rng.choice((1, 1, 5, 10, 100, 100, 200, 500)),
            "c": list(rng.choice(CONDITIONS)),
            "z": rng.choice("ABC"),
            "t": ns,
        }
    low, high = round(price * 0.999, 2), round(price * 1.001, 2)
    return {
        "T": "b",
        "S": symbol,
        "o": round(rng.uniform(low, high), 2),
        "h": high,
        "l": low,
        "c": round(rng.uniform(low, high), 2),
        "v": rng.randint(100, 500_000),
        "n": rng.randint(1, 5_000),
        "vw": round(price, 4),
        "t": ns - ns % 60_000_000_000,  # a bar's time is its minute's start
    }


def _wire(message: dict[str, Any], encoding: str) -> dict[str, Any]:
    ns = message["t"]
    t = rfc3339(ns) if encoding == "json" else msgpack.Timestamp.from_unix_nano(ns)
    return {**message, "t": t}


@dataclass(frozen=True)
class Workload:
    """The same batches of messages as JSON frames and as MessagePack frames."""

    name: str
    batches: list[list[dict[str, Any]]]
    json_frames: list[bytes]
    msgpack_frames: list[bytes]

    @property
    def frames(self) -> int:
        return len(self.batches)

    @property
    def messages(self) -> int:
        return sum(len(b) for b in self.batches)

    @classmethod
    def build(
        cls,
        *,
        symbols: int,
        frames: int,
        batch: tuple[int, int],
        seed: int = 1,
        name: str = "",
    ) -> Workload:
        """``frames`` frames of ``batch[0]..batch[1]`` messages over ``symbols`` symbols."""
        rng = random.Random(seed)
        names = _symbols_cached(symbols, seed)
        prices = {s: rng.uniform(5, 900) for s in names}
        kinds = [k for k, _ in MIX]
        weights = [w for _, w in MIX]
        ns = START_NS
        batches: list[list[dict[str, Any]]] = []
        for _ in range(frames):
            size = rng.randint(*batch)
            messages = []
            for _ in range(size):
                ns += rng.randint(1_000, 400_000) + rng.randint(0, 999)  # all nine digits
                symbol = rng.choice(names)
                prices[symbol] = max(0.01, prices[symbol] * (1 + rng.gauss(0, 0.0005)))
                kind = rng.choices(kinds, weights)[0]
                messages.append(_message(rng, kind, symbol, prices[symbol], ns))
            batches.append(messages)
        json_frames = [orjson.dumps([_wire(m, "json") for m in b]) for b in batches]
        msgpack_frames = [
            msgpack.packb([_wire(m, "msgpack") for m in b], use_bin_type=True) for b in batches
        ]
        label = name or f"{symbols}sym-{batch[0]}to{batch[1]}"
        return cls(label, batches, json_frames, msgpack_frames)


_SYMBOLS: dict[tuple[int, int], list[str]] = {}


def _symbols_cached(n: int, seed: int) -> list[str]:
    key = (n, seed)
    if key not in _SYMBOLS:
        _SYMBOLS[key] = symbols(n, seed)
    return _SYMBOLS[key]
