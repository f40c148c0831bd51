"""The test server's own plain encoder and decoder (``alpaca-stream-protocol.md`` §4, §6).

Deliberately independent of :mod:`rxalpaca.codec`: a bug there must not be able
to pass its own test. JSON goes through ``orjson``, MessagePack through
``msgpack``; MessagePack timestamps are written by hand as extension type -1 so
that all three widths (4, 8 and 12 bytes) can be produced on demand (S31).

Records are plain dicts with the wire's short keys. Timestamp fields (``t``,
``r`` when not a bool, ``created_at``, ``updated_at``, ``ft``) may hold an
``int`` of nanoseconds since the epoch, an aware ``datetime`` or, to send
something odd on purpose, a ``str`` that is written as is.

Example::

    >>> encode_frame([{"T": "t", "S": "AAPL", "p": 1.0, "t": 0}], Encoding.JSON)
    b'[{"T":"t","S":"AAPL","p":1,"t":"1970-01-01T00:00:00Z"}]'
"""

from __future__ import annotations

import itertools
import struct
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

import msgpack
import orjson

__all__ = [
    "TIMESTAMP_KEYS",
    "Encoding",
    "TimestampWidth",
    "WidthCycle",
    "decode_client_message",
    "encode_frame",
    "encode_item",
    "join_items",
    "msgpack_timestamp",
    "rfc3339",
    "to_nanos",
]

#: Keys whose value is a timestamp in some message type (§4).
TIMESTAMP_KEYS: frozenset[str] = frozenset({"t", "r", "created_at", "updated_at", "ft"})

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NS = 1_000_000_000
_MAX_SAFE_INT = 2**53


class Encoding(StrEnum):
    """The encoding negotiated by the upgrade's ``Content-Type`` (§1.3, S2)."""

    JSON = "json"
    MSGPACK = "msgpack"


#: ``"auto"`` picks the smallest MessagePack timestamp form that fits (4 bytes when
#: the nanoseconds are 0, else 8, 12 beyond 2514); 4/8/12 force a width (4 falls back
#: to 8 when nanoseconds are not 0, 8 to 12 when the seconds do not fit 34 bits).
TimestampWidth = Literal["auto", 4, 8, 12]


class WidthCycle:
    """Rotates the MessagePack timestamp width 4 → 8 → 12 per timestamp written (S31)."""

    def __init__(self) -> None:
        self._it: Iterator[Literal[4, 8, 12]] = itertools.cycle((4, 8, 12))

    def next(self) -> Literal[4, 8, 12]:
        """The width for the next timestamp."""
        return next(self._it)


def to_nanos(value: int | datetime) -> int:
    """Nanoseconds since the epoch of an ``int`` (returned unchanged) or aware ``datetime``."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return ((value - _EPOCH) // _MICRO) * 1000
    return value


_MICRO = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - _EPOCH


_last_second: tuple[int, str] = (-1, "")


def rfc3339(ns: int) -> str:
    """RFC 3339 UTC text with the fraction's trailing zeros trimmed (0-9 digits, §4.1)."""
    global _last_second  # noqa: PLW0603 - a one-entry cache; races only cost a recompute
    sec, frac = divmod(ns, _NS)
    cached_sec, base = _last_second
    if cached_sec != sec:
        tm = time.gmtime(sec)
        base = (
            f"{tm.tm_year:04d}-{tm.tm_mon:02d}-{tm.tm_mday:02d}"
            f"T{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}"
        )
        _last_second = (sec, base)
    if frac:
        return f"{base}.{frac:09d}".rstrip("0") + "Z"
    return base + "Z"


def msgpack_timestamp(ns: int, width: TimestampWidth = "auto") -> bytes:
    """The MessagePack encoding of extension type -1 for ``ns`` in the requested width."""
    sec, nsec = divmod(ns, _NS)
    if width == "auto":
        if nsec == 0 and 0 <= sec < 2**32:
            width = 4
        elif 0 <= sec < 2**34:
            width = 8
        else:
            width = 12
    if width == 4 and (nsec != 0 or not 0 <= sec < 2**32):
        width = 8
    if width == 8 and not 0 <= sec < 2**34:
        width = 12
    if width == 4:
        return b"\xd6\xff" + struct.pack(">I", sec)
    if width == 8:
        return b"\xd7\xff" + struct.pack(">Q", (nsec << 34) | sec)
    return b"\xc7\x0c\xff" + struct.pack(">Iq", nsec, sec)


def _is_timestamp(key: str, value: object) -> bool:
    if key not in TIMESTAMP_KEYS:
        return False
    if isinstance(value, bool):  # order books' ``r`` is a bool (§4.13)
        return False
    return isinstance(value, int | datetime)


def _json_value(value: Any) -> Any:
    # Integral prices are written without ".0" (§4.1, S31).
    if type(value) is float:
        if value.is_integer() and abs(value) < _MAX_SAFE_INT:
            return int(value)
        return value
    if type(value) is list:
        return [_json_value(v) for v in value]
    if type(value) is dict:
        return {k: _json_value(v) for k, v in value.items()}
    return value


def _json_obj(record: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"T": record["T"]} if "T" in record else {}  # T first (S31)
    for key, raw in record.items():
        value = raw
        tv = type(raw)
        if tv is float:
            if raw.is_integer() and -_MAX_SAFE_INT < raw < _MAX_SAFE_INT:
                value = int(raw)
        elif tv is int:
            if key in TIMESTAMP_KEYS:
                value = rfc3339(raw)
        elif tv is list or tv is dict:
            value = _json_value(raw)
        elif isinstance(raw, datetime) and key in TIMESTAMP_KEYS:
            value = rfc3339(to_nanos(raw))
        out[key] = value
    return out


_KEY_CACHE: dict[str, bytes] = {}


def _packed_key(key: str) -> bytes:
    packed = _KEY_CACHE.get(key)
    if packed is None:
        packed = msgpack.packb(key)
        if len(_KEY_CACHE) < 4096:
            _KEY_CACHE[key] = packed
    return packed


def _map_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x80 | n,))
    if n < 2**16:
        return b"\xde" + struct.pack(">H", n)
    return b"\xdf" + struct.pack(">I", n)


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 2**16:
        return b"\xdc" + struct.pack(">H", n)
    return b"\xdd" + struct.pack(">I", n)


def _msgpack_value(value: Any) -> bytes:
    # Prices are float64 (msgpack's default for Python floats); ints keep their width.
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def _msgpack_obj(record: Mapping[str, Any], width: TimestampWidth | WidthCycle) -> bytes:
    if width == "auto":
        # Fast path: msgpack's own Timestamp already picks the smallest width.
        obj: dict[str, Any] = {"T": record["T"]} if "T" in record else {}
        for key, value in record.items():
            if _is_timestamp(key, value):
                obj[key] = msgpack.Timestamp.from_unix_nano(to_nanos(value))
            elif key != "T":
                obj[key] = value
        return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]
    keys = list(record)
    if "T" in record and keys[0] != "T":
        keys.remove("T")
        keys.insert(0, "T")
    parts = [_map_header(len(keys))]
    for key in keys:
        value = record[key]
        parts.append(_packed_key(key))
        if _is_timestamp(key, value):
            w: TimestampWidth = width.next() if isinstance(width, WidthCycle) else width
            parts.append(msgpack_timestamp(to_nanos(value), w))
        else:
            parts.append(_msgpack_value(value))
    return b"".join(parts)


def encode_item(
    record: Mapping[str, Any],
    encoding: Encoding,
    width: TimestampWidth | WidthCycle = "auto",
) -> bytes:
    """One message (a map) in ``encoding``, ``T`` first; see :func:`join_items`."""
    if encoding is Encoding.JSON:
        return orjson.dumps(_json_obj(record))
    return _msgpack_obj(record, width)


def join_items(items: Sequence[bytes], encoding: Encoding) -> bytes:
    """A frame (an array, §6) from already encoded messages."""
    if encoding is Encoding.JSON:
        return b"[" + b",".join(items) + b"]"
    return _array_header(len(items)) + b"".join(items)


def encode_frame(
    records: Iterable[Mapping[str, Any]],
    encoding: Encoding,
    width: TimestampWidth | WidthCycle = "auto",
) -> bytes:
    """A whole frame: the array of ``records``."""
    return join_items([encode_item(r, encoding, width) for r in records], encoding)


def decode_client_message(payload: bytes | str, encoding: Encoding, lenient: bool = True) -> Any:
    """Decode what a client sent, in the negotiated encoding (S2).

    With ``lenient`` the other encoding is tried when the negotiated one fails.

    Raises:
        ValueError: the payload is neither.
    """
    order: tuple[Encoding, ...] = (
        (Encoding.MSGPACK, Encoding.JSON)
        if encoding is Encoding.MSGPACK
        else (Encoding.JSON, Encoding.MSGPACK)
    )
    if not lenient:
        order = order[:1]
    for enc in order:
        try:
            if enc is Encoding.JSON:
                return orjson.loads(payload)
            raw = payload.encode() if isinstance(payload, str) else payload
            return msgpack.unpackb(raw, raw=False, strict_map_key=False)
        except Exception:  # every decoder failure means "try the next one"
            continue
    raise ValueError("client message is neither JSON nor MessagePack")
