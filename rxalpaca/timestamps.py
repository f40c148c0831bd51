"""Exchange timestamps: exact integer nanoseconds from RFC 3339 text or MessagePack ext -1.

Records keep a timestamp as it came (``msgspec.Raw``) and turn it into nanoseconds
when first read; these are the parsers and formatters behind that (§4.1). Stdlib and
msgspec only.

Example::

    >>> parse_time_ns("2021-02-22T15:51:44.208123456Z")
    1614009104208123456
    >>> format_rfc3339_ns(1614009104208123456)
    '2021-02-22T15:51:44.208123456Z'
"""

from __future__ import annotations

import datetime as _dt
import os as _os
import struct as _struct
from collections.abc import Callable
from typing import Any

import msgspec
from msgspec import Raw

__all__ = ["format_rfc3339_ns", "parse_time_ns", "raw_time_from_ns"]

_EPOCH_ORDINAL = _dt.date(1970, 1, 1).toordinal()
_NS = 1_000_000_000
_U64 = _struct.Struct(">Q")
_U32 = _struct.Struct(">I")
_I64 = _struct.Struct(">q")


def _parse_rfc3339_ns(text: str) -> int:
    """``YYYY-MM-DD[Tt ]HH:MM:SS[.f+](Z|z|±HH:MM|±HHMM)`` to integer nanoseconds since the epoch.

    The grammar msgspec's aware ``datetime`` decoder accepts (``strict_timestamps=True``
    proves timestamps with it, so what it lets through must parse here): a real calendar
    date (years 0001-9999), hours 00-23, minutes and seconds 00-59, zone hours 00-23.
    Fractional digits past the ninth are below a nanosecond and are dropped.
    """
    n = len(text)
    if (
        n < 20
        or not text.isascii()
        or text[4] != "-"
        or text[7] != "-"
        or text[10] not in "Tt "
        or text[13] != ":"
        or text[16] != ":"
        or not (
            text[0:4] + text[5:7] + text[8:10] + text[11:13] + text[14:16] + text[17:19]
        ).isdigit()
    ):
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    hour, minute, second = int(text[11:13]), int(text[14:16]), int(text[17:19])
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"time of day out of range in {text!r}")
    try:
        date = _dt.date(int(text[0:4]), int(text[5:7]), int(text[8:10]))
    except ValueError:
        raise ValueError(f"no such date in {text!r}") from None
    end = 19
    frac_ns = 0
    if text[19] == ".":
        end = 20
        while end < n and "0" <= text[end] <= "9":
            end += 1
        if end == 20:
            raise ValueError(f"bad fractional seconds in {text!r}")
        frac_ns = int(text[20 : min(end, 29)].ljust(9, "0"))
    zone = text[end:]
    if zone in ("Z", "z"):
        offset = 0
    else:
        if len(zone) == 6 and zone[3] == ":":  # ±HH:MM
            hh, mm = zone[1:3], zone[4:6]
        elif len(zone) == 5:  # ±HHMM (not RFC 3339, but msgspec takes it)
            hh, mm = zone[1:3], zone[3:5]
        else:
            raise ValueError(f"bad zone in RFC 3339 time {text!r}")
        if zone[0] not in "+-" or not (hh + mm).isdigit() or int(hh) > 23 or int(mm) > 59:
            raise ValueError(f"bad zone in RFC 3339 time {text!r}")
        offset = (int(hh) * 3600 + int(mm) * 60) * (1 if zone[0] == "+" else -1)
    days = date.toordinal() - _EPOCH_ORDINAL
    return (days * 86400 + hour * 3600 + minute * 60 + second - offset) * _NS + frac_ns


def _parse_msgpack_ts_ns(data: bytes) -> int:
    """MessagePack timestamp extension (type -1) payload, any of its three widths, to ns."""
    n = len(data)
    if n == 4:
        seconds: int = _U32.unpack(data)[0]
        return seconds * _NS
    if n == 8:
        value: int = _U64.unpack(data)[0]
        nanos = value >> 34
        wide_seconds = value & 0x3_FFFF_FFFF
    elif n == 12:
        nanos = _U32.unpack(data[:4])[0]
        wide_seconds = _I64.unpack(data[4:])[0]
    else:
        raise ValueError(f"bad MessagePack timestamp length {n}")
    if nanos >= _NS:
        raise ValueError(f"MessagePack timestamp nanoseconds out of range ({nanos})")
    return wide_seconds * _NS + nanos


#: MessagePack extension heads: lead byte -> (offset of the type byte, payload size); size 0:
#: ext 8/16/32, whose big-endian payload size sits between the lead and the type byte.
_EXT_HEADS: dict[int, tuple[int, int]] = {
    0xD6: (1, 4),  # fixext 4
    0xD7: (1, 8),  # fixext 8
    0xC7: (2, 0),  # ext 8
    0xC8: (3, 0),  # ext 16
    0xC9: (5, 0),  # ext 32
}


def _msgpack_ext_ns(data: bytes) -> int:
    """A MessagePack extension value that must be a timestamp (type -1) to ns.

    ``fixext 4``/``fixext 8``/``ext 8`` (with 12 bytes) are the canonical forms; any ext
    container holding a 4-, 8- or 12-byte payload is accepted, as msgspec does.
    """
    type_at, size = _EXT_HEADS[data[0]]
    if not size:
        size = int.from_bytes(data[1:type_at], "big")
    if len(data) != type_at + 1 + size:
        raise ValueError(f"malformed MessagePack extension {data[:16]!r}")
    if data[type_at] != 0xFF:
        code = int.from_bytes(data[type_at : type_at + 1], "big", signed=True)
        raise ValueError(f"MessagePack extension type {code} is not a timestamp (type -1)")
    return _parse_msgpack_ts_ns(data[type_at + 1 :])


def _json_string(data: bytes) -> str:
    """The text of a JSON string value (with its quotes)."""
    if len(data) < 2 or data[-1] != 0x22:
        raise ValueError(f"not a JSON string: {data[:40]!r}")
    if b"\\" in data:  # escapes: let a JSON decoder resolve them
        try:
            return msgspec.json.decode(data, type=str)
        except msgspec.DecodeError:
            raise ValueError(f"not a JSON string: {data[:40]!r}") from None
    try:
        return data[1:-1].decode("ascii")
    except UnicodeDecodeError:
        raise ValueError(f"not an RFC 3339 time (not ASCII): {data[:40]!r}") from None


def parse_time_ns(raw: Raw | bytes | str | int | _dt.datetime) -> int:
    """Exact nanoseconds since the epoch from any timestamp form the protocol uses (§4.1).

    Accepts the raw wire value of a JSON string (with its quotes), a MessagePack
    timestamp extension (``d6 ff``, ``d7 ff``, ``c7 0c ff`` + payload), a MessagePack
    string, a bare RFC 3339 ``str``, an ``int`` (already nanoseconds) or an aware
    ``datetime``.

    Raises:
        ValueError: anything else, or an impossible time (a 30th of February, 24:00, a
            MessagePack timestamp with more than 999,999,999 nanoseconds).
    """
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str):
        return _parse_rfc3339_ns(raw)
    if isinstance(raw, _dt.datetime):
        delta = raw - _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
        return (delta.days * 86400 + delta.seconds) * _NS + delta.microseconds * 1000
    data = bytes(raw)
    if not data:
        raise ValueError("empty timestamp")
    lead = data[0]
    if lead == 0x22:  # '"' — a JSON string
        return _parse_rfc3339_ns(_json_string(data))
    if lead in _EXT_HEADS:
        return _msgpack_ext_ns(data)
    if 0xA0 <= lead <= 0xBF or lead in (0xD9, 0xDA, 0xDB):  # a MessagePack str
        try:
            text = msgspec.msgpack.decode(data, type=str)
        except msgspec.DecodeError:
            raise ValueError(f"not a MessagePack string: {data[:40]!r}") from None
        return _parse_rfc3339_ns(text)
    raise ValueError(f"unrecognised timestamp encoding {data[:16]!r}")


# ---------------------------------------------------------------- the read path
#
# ``timestamp_ns`` runs once per record a user reads, so it is the hot path: a JSON time is
# split into its whole-seconds prefix ``"YYYY-MM-DDTHH:MM:SS.`` (looked up in a bounded
# cache of prefixes already proved by the full parser) and its fraction digits (checked and
# converted by ``int``); a MessagePack ``fixext 8`` timestamp is unpacked inline. Anything
# else — a zone offset, no fraction, escapes, other widths, a malformed time — takes the full
# parser, which raises. Benchmarks: docs/benchmarks.md, "Reading timestamps".

#: ``'"YYYY-MM-DDTHH:MM:SS.'`` (the 21 leading bytes of a JSON UTC time with a fraction) ->
#: that second in ns. Filled only by ``_read_ns_slow`` after the full parser accepted the
#: time, so a prefix here is a proved date and time of day. Bounded: cleared when full
#: (exchange times move forward, so the working set is the last few seconds). Shared by
#: every thread; dict get/set/clear are atomic under the GIL and a race only costs a re-parse.
_SECONDS: dict[bytes, int] = {}
_SECONDS_MAX = 4096
#: Nanoseconds per unit of a fraction with k digits (k = 1..9); 10+ digits are not here
#: (IndexError) and take the full parser, which drops the digits below a nanosecond.
_FRACTION_SCALE = tuple(10 ** (9 - k) for k in range(10))
_SECONDS_MASK = (1 << 34) - 1


#: JSON times by their size with quotes, 24-32 bytes (1-9 fraction digits): split in one C call,
#: straight from the record's buffer (no copy), into the cache key, the digits and the last
#: two bytes as an integer (``_TAIL`` is 'Z"').
_JSON_PARTS: tuple[Callable[[Raw], tuple[bytes, bytes, int]] | None, ...] = tuple(
    _struct.Struct(f">21s{size - 23}sH").unpack_from if 23 < size < 33 else None
    for size in range(33)
)
_TAIL = 0x5A22  # b'Z"' as a big-endian unsigned short
_WHOLE_SECOND = _struct.Struct("21s1s").unpack_from  # '"YYYY-MM-DDTHH:MM:SSZ' + '"' (bars)
_HEAD_U64 = _struct.Struct(">HQ").unpack_from  # MessagePack lead + type bytes, then payload
_HEAD_U32 = _struct.Struct(">HI").unpack_from


def _read_ns(
    raw: Raw,
    _get: Callable[[bytes], int | None] = _SECONDS.get,
    _scale: tuple[int, ...] = _FRACTION_SCALE,
    _parts: tuple[Callable[[Raw], tuple[bytes, bytes, int]] | None, ...] = _JSON_PARTS,
    _raw_type: type[Raw] = Raw,
) -> int:
    """``parse_time_ns(raw)`` for a record's raw time, fast for the forms servers send.

    Exactly ``parse_time_ns``'s result or its ``ValueError`` (tests/test_models.py checks the
    two agree on valid and malformed times alike). ``MarketRecord.timestamp_ns`` is the same
    code inlined (``_record_time_ns``), one Python call less per read.
    """
    if type(raw) is not _raw_type:  # a record built by hand with some other value
        return parse_time_ns(raw)
    size = len(raw)
    if 23 < size < 33:  # '"' + 19 + '.' + 1-9 digits + 'Z"'
        prefix, fraction, tail = _parts[size](raw)  # type: ignore[misc]
        base = _get(prefix)
        if base is not None and tail == _TAIL and fraction.isdigit():  # ASCII 0-9 only
            return base + int(fraction) * _scale[size - 23]
    elif size == 22:  # a whole second (bars)
        prefix, tail = _WHOLE_SECOND(raw)
        base = _get(prefix)
        if base is not None and tail == b'"':
            return base
    elif size == 10:  # MessagePack timestamp 64
        head, value = _HEAD_U64(raw)
        if head == 0xD7FF and value >> 34 < _NS:
            return (value & _SECONDS_MASK) * _NS + (value >> 34)  # type: ignore[no-any-return]
    elif size == 6:  # MessagePack timestamp 32 (whole seconds: bars)
        head, seconds = _HEAD_U32(raw)
        if head == 0xD6FF:
            return seconds * _NS  # type: ignore[no-any-return]
    return _read_ns_slow(raw)


def _record_time_ns(
    record: Any,
    _get: Callable[[bytes], int | None] = _SECONDS.get,
    _scale: tuple[int, ...] = _FRACTION_SCALE,
    _parts: tuple[Callable[[Raw], tuple[bytes, bytes, int]] | None, ...] = _JSON_PARTS,
) -> int:
    """``record.timestamp_ns``: the commonest forms of ``_read_ns`` inlined; the rest (and
    the error, naming the field) through ``_field_ns``.

    No ``type(raw) is Raw`` test: a value that is not a buffer (a hand-built record's
    ``int``, ``str`` or ``datetime``) fails ``len`` or ``unpack_from`` with ``TypeError``
    and takes the full parser (a ``try`` costs nothing when nothing raises); any buffer
    (``Raw``, ``bytes``) is read as ``parse_time_ns`` would read it.
    """
    raw = record.raw_time
    try:
        size = len(raw)
        if 23 < size < 33:
            prefix, fraction, tail = _parts[size](raw)  # type: ignore[misc]
            base = _get(prefix)
            if base is not None and tail == 0x5A22 and fraction.isdigit():  # 'Z"', 0-9 only
                return base + int(fraction) * _scale[size - 23]
        elif size == 10:
            head, value = _HEAD_U64(raw)
            if head == 0xD7FF and value >> 34 < _NS:
                return (value & _SECONDS_MASK) * _NS + (value >> 34)  # type: ignore[no-any-return]
    except TypeError:
        pass
    return _field_ns(record, "raw_time", "t", raw)


def _read_ns_slow(raw: Raw) -> int:
    """The full parser; and a JSON UTC time teaches ``_SECONDS`` its second."""
    ns = parse_time_ns(raw)  # raises ValueError on a malformed time
    data = bytes(raw)
    if (
        data[:1] == b'"'
        and data[-2:] == b'Z"'
        and ((len(data) > 23 and data[20] == 0x2E) or len(data) == 22)  # ".f…Z" or "Z"
        and data.isascii()
        and b"\\" not in data
    ):
        if len(_SECONDS) >= _SECONDS_MAX:
            _SECONDS.clear()
        _SECONDS[data[:21]] = _parse_rfc3339_ns(data[1:20].decode("ascii") + "Z")
    return ns


def _field_ns(record: object, attribute: str, wire: str, raw: Raw) -> int:
    """``parse_time_ns(raw)``, its error naming the record's field."""
    try:
        return _read_ns(raw)
    except ValueError as exc:
        raise ValueError(
            f"{type(record).__name__}.{attribute} (wire field {wire!r}) is not a valid "
            f"timestamp: {exc}"
        ) from None


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


def format_rfc3339_ns(ns: int) -> str:
    """Nanoseconds since the epoch as RFC 3339 UTC with trimmed fractional digits (§4.1).

    Raises:
        ValueError: the instant is outside years 0001-9999 (RFC 3339 has four-digit years).
    """
    seconds, frac = divmod(ns, _NS)
    try:
        t = _EPOCH + _dt.timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"{ns} ns is outside years 1-9999, which RFC 3339 can write") from None
    # Formatted by hand: strftime("%Y") writes year 1 as "1" on glibc, not "0001".
    base = f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
    if frac:
        return f"{base}.{frac:09d}".rstrip("0") + "Z"
    return base + "Z"


def raw_time_from_ns(ns: int) -> Raw:
    """A ``raw_time`` value for building a record by hand (tests, replays)."""
    return Raw(b'"' + format_rfc3339_ns(ns).encode() + b'"')


_TIMEDELTA = _dt.timedelta


def _datetime_from_ns(ns: int) -> _dt.datetime:
    # Floor to the microsecond; one timedelta added to the epoch is the cheapest exact way
    # (docs/benchmarks.md, "Reading timestamps").
    return _EPOCH + _TIMEDELTA(0, 0, ns // 1000)


def _record_datetime(record: Any) -> _dt.datetime:
    """``record.timestamp``: ``record.timestamp_ns`` floored to the microsecond, UTC."""
    return _datetime_from_ns(record.timestamp_ns)


# ---------------------------------------------------------------- the C read path
#
# rxalpaca/_speedups.c parses the forms Alpaca sends (JSON 'Z' times with 0-9 fraction
# digits, MessagePack timestamp 32/64) in place, validated, and hands everything else to the
# two Python functions above, so the values and errors are the same either way
# (tests/test_speedups.py). Built when a C compiler was present at install; otherwise, or
# with RXALPACA_NO_SPEEDUPS=1 in the environment, the records read in pure Python.

#: The getters behind ``MarketRecord.timestamp_ns`` and ``.timestamp``.
record_time_ns: Callable[[Any], int] = _record_time_ns
record_datetime: Callable[[Any], _dt.datetime] = _record_datetime
#: Whether the C read path is in use (docs/client.md tells users to look here).
SPEEDUPS = False

if not _os.environ.get("RXALPACA_NO_SPEEDUPS"):
    try:
        from . import _speedups
    except ImportError:  # not built: no C compiler at install time
        pass
    else:
        _speedups.install(_record_time_ns, _record_datetime)
        record_time_ns = _speedups.record_time_ns
        record_datetime = _speedups.record_datetime
        SPEEDUPS = True
