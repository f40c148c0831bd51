"""Fuzz material shared by the reliability suites: units of frames and what each must yield.

A *unit* is a short run of WebSocket frames with a known expected outcome:

========== ====================================================== ===========================
kind       frames                                                 expected
========== ====================================================== ===========================
good       a valid frame of 1-4 trades/quotes, whole or split      its records, no error
           into continuation frames (pings may sit in between)
truncated  a strict prefix of a valid frame (never valid)          exactly one FrameError
garbage    random bytes not starting like an array                 exactly one FrameError
empty      an empty message                                        exactly one FrameError
salvage    good messages mixed with bad elements (not a map, no    the good records, one
           ``T``, wrong field types) and unknown ``T`` messages    FrameError per bad element,
                                                                   one Unknown per unknown T
stray      a continuation frame with no message started            exactly one FrameError
interrupt  the first fragments of a message, then a good unit      one FrameError + the good
                                                                   unit's records
oversize   a valid frame over the size cap, whole or split         exactly one FrameError
mutated    a valid frame with random bytes flipped/inserted/cut    anything typed; never raises
========== ====================================================== ===========================

Frames are built with the test server's own encoder (:mod:`rxalpaca.testing.wire`,
independent of ``rxalpaca.codec``), bad elements with ``orjson`` / ``msgpack``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgpack
import orjson
from hypothesis import strategies as st

from rxalpaca.frames import Frame, Opcode
from rxalpaca.testing.wire import Encoding, encode_item, join_items

SYMBOLS = ("AAA", "BBB", "CCC")
#: The size cap the pipeline runs with (good frames stay well under it).
MAX_BYTES = 2048
_BASE_NS = 1_700_000_000_000_000_000
_ARRAY_LEADS = frozenset(b"[ \t\r\n") | frozenset(range(0x90, 0xA0)) | {0xDC, 0xDD}

GOOD_KINDS = ("good",)
BAD_KINDS = ("truncated", "garbage", "empty", "salvage", "stray", "interrupt", "oversize")
ALL_KINDS = (*GOOD_KINDS, *BAD_KINDS, "mutated")
#: What a server can send with ``send_raw``/``split_next_frame`` (no stray continuations).
E2E_KINDS = ("good", "truncated", "garbage", "empty", "salvage", "oversize", "mutated")


def timing_factor() -> float:
    """``tests.conftest.TIMING_FACTOR`` however the tests directory was imported."""
    for name in ("tests.conftest", "conftest"):
        try:
            mod = __import__(name, fromlist=["TIMING_FACTOR"])
        except ImportError:
            continue
        factor = getattr(mod, "TIMING_FACTOR", None)
        if isinstance(factor, float | int):
            return float(factor)
    return float(os.environ.get("RXALPACA_TIMING_FACTOR", "1"))


def record_key(rec: Any) -> tuple[str, str, int]:
    """Identity of a good message: (class or T, symbol, timestamp ns) — timestamps are unique."""
    if isinstance(rec, dict):
        return ({"t": "Trade", "q": "Quote"}[rec["T"]], rec["S"], rec["t"])
    return (type(rec).__name__, rec.symbol, rec.timestamp_ns)


@dataclass
class Unit:
    """Frames plus what they must produce (``None``: anything, as long as it is typed)."""

    kind: str
    frames: list[tuple[bytes | str, int, bool]]  # (payload, opcode, fin)
    records: list[dict[str, Any]] | None = field(default_factory=list)
    frame_errors: int | None = 0
    unknowns: int | None = 0
    #: For the end-to-end level: the whole payload and the number of parts to split it in.
    payload: bytes = b""
    parts: int = 1

    @property
    def checked(self) -> bool:
        return self.records is not None


# ---------------------------------------------------------------- building blocks


class _Clock:
    """Unique timestamps per example, so every good message has its own identity."""

    def __init__(self, start: int) -> None:
        self.now = start

    def next(self) -> int:
        self.now += 1_000
        return self.now


@st.composite
def _message(draw: st.DrawFn, clock: _Clock) -> dict[str, Any]:
    kind = draw(st.sampled_from("tq"))
    sym = draw(st.sampled_from(SYMBOLS))
    price = draw(st.integers(1, 10**7)) / 100
    size = draw(st.integers(0, 10**6))
    if kind == "t":
        return {
            "T": "t",
            "S": sym,
            "i": draw(st.integers(0, 2**53)),
            "x": "V",
            "p": price,
            "s": size,
            "c": ["@"],
            "z": "C",
            "t": clock.next(),
        }
    return {
        "T": "q",
        "S": sym,
        "bx": "V",
        "bp": price,
        "bs": size,
        "ax": "V",
        "ap": price + 0.01,
        "as": size,
        "c": ["R"],
        "z": "C",
        "t": clock.next(),
    }


def _frame_bytes(msgs: list[dict[str, Any]], enc: Encoding) -> bytes:
    return join_items([encode_item(m, enc) for m in msgs], enc)


def _opcode(enc: Encoding) -> int:
    return Opcode.TEXT if enc is Encoding.JSON else Opcode.BINARY


@st.composite
def _split(
    draw: st.DrawFn, payload: bytes, enc: Encoding, allow_ping: bool = True, finish: bool = True
) -> list[tuple[bytes | str, int, bool]]:
    """``payload`` as a first frame and continuation frames at random split points."""
    n = len(payload)
    cuts = sorted(draw(st.lists(st.integers(0, n), min_size=1, max_size=5)))
    bounds = [0, *cuts, n]
    pieces = [payload[a:b] for a, b in itertools.pairwise(bounds)]
    frames: list[tuple[bytes | str, int, bool]] = []
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        frames.append((piece, _opcode(enc) if i == 0 else Opcode.CONTINUATION, last and finish))
        if allow_ping and not last and draw(st.booleans()):
            # RFC 6455 §5.4: control frames may sit between the fragments of a message.
            frames.append((b"", draw(st.sampled_from([Opcode.PING, Opcode.PONG])), True))
    if not finish:
        frames = [f for f in frames if f[1] not in (Opcode.PING, Opcode.PONG)]
    return frames


@st.composite
def _frames_of(
    draw: st.DrawFn, payload: bytes, enc: Encoding, whole_str: bool = False
) -> tuple[list[tuple[bytes | str, int, bool]], int]:
    """Whole or fragmented frames of ``payload``; returns (frames, parts for the server)."""
    if draw(st.booleans()):
        body: bytes | str = payload
        if whole_str and enc is Encoding.JSON and draw(st.booleans()):
            body = payload.decode()
        return [(body, _opcode(enc), True)], 1
    frames = draw(_split(payload, enc))
    parts = sum(1 for f in frames if f[1] not in (Opcode.PING, Opcode.PONG))
    return frames, max(2, parts)


def _bad_element(draw: st.DrawFn, enc: Encoding) -> tuple[bytes, str]:
    """One encoded element that cannot be a message: (bytes, "error" | "unknown")."""
    kind = draw(st.sampled_from(["scalar", "list", "no_t", "t_not_str", "bad_field", "unknown"]))
    value: Any
    if kind == "scalar":
        value = draw(
            st.one_of(st.integers(-(2**31), 2**31), st.text(max_size=6), st.none(), st.booleans())
        )
    elif kind == "list":
        value = draw(st.lists(st.integers(0, 9), max_size=3))
    elif kind == "no_t":
        value = {"S": "AAA", "p": 1.5}
    elif kind == "t_not_str":
        value = {"T": draw(st.integers(0, 9)), "S": "AAA"}
    elif kind == "bad_field":
        value = {"T": "q", "S": "AAA", "bp": "not a price", "ap": [1], "t": "never"}
    else:
        value = {"T": draw(st.sampled_from(["zz", "future", "Q2"])), "S": "AAA", "v": 1}
    raw = orjson.dumps(value) if enc is Encoding.JSON else msgpack.packb(value)
    return raw, "unknown" if kind == "unknown" else "error"


def _mutate(draw: st.DrawFn, payload: bytes) -> bytes:
    data = bytearray(payload)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "dup"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "insert":
            data[pos:pos] = bytes(draw(st.lists(st.integers(0, 255), min_size=1, max_size=4)))
        elif op == "delete" and len(data) > 1:
            del data[pos : pos + draw(st.integers(1, 4))]
        elif op == "dup":
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 8))]
    return bytes(data)


# ---------------------------------------------------------------- units


@st.composite
def unit(draw: st.DrawFn, enc: Encoding, clock: _Clock, kinds: tuple[str, ...] = ALL_KINDS) -> Unit:
    kind = draw(st.sampled_from(kinds))
    if kind == "good":
        msgs = draw(st.lists(_message(clock), min_size=1, max_size=4))
        payload = _frame_bytes(msgs, enc)
        frames, parts = draw(_frames_of(payload, enc, whole_str=True))
        return Unit(kind, frames, msgs, 0, 0, payload, parts)
    if kind == "truncated":
        full = _frame_bytes(draw(st.lists(_message(clock), min_size=1, max_size=3)), enc)
        payload = full[: draw(st.integers(1, len(full) - 1))]
        frames, parts = draw(_frames_of(payload, enc))
        return Unit(kind, frames, [], 1, 0, payload, parts)
    if kind == "garbage":
        lead = draw(st.integers(0, 255).filter(lambda b: b not in _ARRAY_LEADS))
        payload = bytes([lead]) + draw(st.binary(max_size=40))
        frames, parts = draw(_frames_of(payload, enc))
        return Unit(kind, frames, [], 1, 0, payload, parts)
    if kind == "empty":
        return Unit(kind, [(b"", _opcode(enc), True)], [], 1, 0, b"", 1)
    if kind == "salvage":
        slots: list[tuple[bytes, str, dict[str, Any] | None]] = []
        for _ in range(draw(st.integers(1, 5))):
            if draw(st.booleans()):
                m = draw(_message(clock))
                slots.append((encode_item(m, enc), "good", m))
            else:
                raw, what = _bad_element(draw, enc)
                slots.append((raw, what, None))
        payload = join_items([s[0] for s in slots], enc)
        frames, parts = draw(_frames_of(payload, enc))
        good = [s[2] for s in slots if s[2] is not None]
        errors = sum(1 for s in slots if s[1] == "error")
        unknowns = sum(1 for s in slots if s[1] == "unknown")
        return Unit(kind, frames, good, errors, unknowns, payload, parts)
    if kind == "stray":
        payload = draw(st.binary(max_size=30))
        return Unit(kind, [(payload, Opcode.CONTINUATION, draw(st.booleans()))], [], 1, 0)
    if kind == "interrupt":
        full = _frame_bytes(draw(st.lists(_message(clock), min_size=1, max_size=3)), enc)
        started = draw(_split(full, enc, allow_ping=False, finish=False))
        then = draw(unit(enc, clock, ("good",)))
        return Unit(kind, started + then.frames, then.records, 1, 0)
    if kind == "oversize":
        one = draw(_message(clock))
        msgs = [one] * (MAX_BYTES // 40 + 2)  # a valid frame, only too big
        payload = _frame_bytes(msgs, enc)
        assert len(payload) > MAX_BYTES
        frames, parts = draw(_frames_of(payload, enc))
        return Unit(kind, frames, [], 1, 0, payload, parts)
    # mutated: anything may come out, as long as nothing raises and it is typed
    full = _frame_bytes(draw(st.lists(_message(clock), min_size=1, max_size=3)), enc)
    payload = _mutate(draw, full)
    frames, parts = draw(_frames_of(payload, enc))
    return Unit(kind, frames, None, None, None, payload, parts)


@st.composite
def units(
    draw: st.DrawFn,
    enc: Encoding,
    kinds: tuple[str, ...] = ALL_KINDS,
    max_size: int = 12,
    start_ns: int = _BASE_NS,
) -> list[Unit]:
    clock = _Clock(start_ns)
    return draw(st.lists(unit(enc, clock, kinds), min_size=1, max_size=max_size))


def frames_for(us: list[Unit], tag_base: int = 1) -> Iterator[Frame]:
    """Frames of ``us`` in order, each stamped with its unit's tag as ``received_ns``."""
    for i, u in enumerate(us):
        for payload, opcode, fin in u.frames:
            yield Frame(payload, opcode, fin, tag_base + i)
