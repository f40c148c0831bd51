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
import struct as _struct

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


def _field_ns(record: object, attribute: str, wire: str, raw: Raw) -> int:
    """``parse_time_ns(raw)``, its error naming the record's field."""
    try:
        return parse_time_ns(raw)
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


def _datetime_from_ns(ns: int) -> _dt.datetime:
    seconds, frac = divmod(ns, _NS)
    return _dt.datetime.fromtimestamp(seconds, _dt.UTC).replace(microsecond=frac // 1000)
