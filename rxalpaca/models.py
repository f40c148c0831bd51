"""Typed, immutable records for every message of Alpaca's market-data stream.

One class per message type of ``alpaca-stream-protocol.md`` §4 (stocks, crypto,
options, news) and §3/§5 (the control messages). Attribute names are readable
(``price``, ``bid_size``, ``exchange``); the wire's short keys (``p``, ``bs``, ``x``)
are mapped by :mod:`msgspec` renames, so a frame decodes straight from bytes into
records without an intermediate dict.

Timestamps keep the exchange's nanoseconds: the wire value is kept as it came
(``raw_time``: an RFC 3339 string in JSON, extension type -1 in MessagePack) and
``timestamp_ns`` turns it into exact integer nanoseconds on demand, so decoding
stays as fast as possible and precision is never lost. ``timestamp`` is a
``datetime`` view (microseconds, as ``datetime`` allows). A malformed wire timestamp
raises ``ValueError``, naming the field, when it is read — unless the codec was built with
``strict_timestamps=True``, which turns such a message into a ``FrameError`` instead.

Every market record also carries ``received_ns`` (``time.time_ns()`` when its
frame arrived), so ``rec.received_ns - rec.timestamp_ns`` is the feed's lag.

Records are ``msgspec.Struct`` instances: frozen, slotted, not tracked by the
garbage collector.

Example::

    >>> from rxalpaca.codec import Codec
    >>> codec = Codec("stocks", "json")
    >>> [trade] = codec.decode(b'[{"T":"t","S":"AAPL","i":1,"x":"V","p":126.55,"s":1,'
    ...     b'"c":["@"],"z":"C","t":"2021-02-22T15:51:44.208123456Z"}]')
    >>> trade.symbol, trade.price, trade.timestamp_ns
    ('AAPL', 126.55, 1614009104208123456)
"""

from __future__ import annotations

import datetime as _dt
import struct as _struct
from typing import Any, ClassVar

import msgspec
from msgspec import Raw, field

__all__ = [
    "Bar",
    "CancelError",
    "Correction",
    "CryptoBar",
    "CryptoDailyBar",
    "CryptoQuote",
    "CryptoTrade",
    "CryptoUpdatedBar",
    "DailyBar",
    "ErrorMessage",
    "Imbalance",
    "Luld",
    "MarketRecord",
    "News",
    "OptionQuote",
    "OptionTrade",
    "OrderBook",
    "OrderBookLevel",
    "Quote",
    "Record",
    "SubscriptionMessage",
    "SuccessMessage",
    "Trade",
    "TradingStatus",
    "Unknown",
    "UpdatedBar",
    "format_rfc3339_ns",
    "parse_time_ns",
    "raw_time_from_ns",
]

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


class Record(msgspec.Struct, frozen=True, kw_only=True, gc=False, tag_field="T"):
    """Base of every decoded message. ``CHANNEL`` is the subscription channel it arrives on."""

    CHANNEL: ClassVar[str] = ""

    def __repr__(self) -> str:
        parts = []
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if isinstance(value, Raw):
                try:
                    value = format_rfc3339_ns(parse_time_ns(value))
                except ValueError:
                    value = bytes(value)
            parts.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


class MarketRecord(Record, frozen=True, kw_only=True, gc=False):
    """A market-data record about one symbol, stamped with its exchange time."""

    symbol: str = field(name="S")
    raw_time: Raw = field(name="t")
    #: ``time.time_ns()`` when the frame carrying this record arrived (0 if never received).
    received_ns: int = 0

    @property
    def timestamp_ns(self) -> int:
        """Exchange time in exact integer nanoseconds since the epoch (UTC).

        Raises:
            ValueError: the wire timestamp ``t`` is malformed (the error names the field).
                Parsed on demand, so this is where a bad ``t`` shows, unless the codec was
                built with ``strict_timestamps=True`` (then the message is a ``FrameError``
                instead and never delivered).
        """
        return _field_ns(self, "raw_time", "t", self.raw_time)

    @property
    def timestamp(self) -> _dt.datetime:
        """Exchange time as an aware ``datetime`` (microsecond precision)."""
        return _datetime_from_ns(self.timestamp_ns)

    @property
    def lag_ns(self) -> int:
        """``received_ns - timestamp_ns``: how late this record reached us."""
        return self.received_ns - self.timestamp_ns


# ---------------------------------------------------------------- stocks (§4.2-§4.9)


class Trade(MarketRecord, frozen=True, kw_only=True, gc=False, tag="t"):
    """Stock trade (``T: "t"``, channel ``trades``)."""

    CHANNEL: ClassVar[str] = "trades"
    price: float = field(name="p")
    size: int = field(name="s")
    id: int = field(name="i", default=0)
    exchange: str = field(name="x", default="")
    conditions: tuple[str, ...] = field(name="c", default=())
    tape: str = field(name="z", default="")


class Quote(MarketRecord, frozen=True, kw_only=True, gc=False, tag="q"):
    """Stock quote (``T: "q"``, channel ``quotes``). Sizes are in round lots (§4.3)."""

    CHANNEL: ClassVar[str] = "quotes"
    bid_price: float = field(name="bp")
    bid_size: int = field(name="bs")
    ask_price: float = field(name="ap")
    ask_size: int = field(name="as")
    bid_exchange: str = field(name="bx", default="")
    ask_exchange: str = field(name="ax", default="")
    conditions: tuple[str, ...] = field(name="c", default=())
    tape: str = field(name="z", default="")


class _StockBarFields(MarketRecord, frozen=True, kw_only=True, gc=False):
    open: float = field(name="o")
    high: float = field(name="h")
    low: float = field(name="l")
    close: float = field(name="c")
    volume: int = field(name="v")
    trade_count: int = field(name="n", default=0)
    vwap: float = field(name="vw", default=0.0)


class Bar(_StockBarFields, frozen=True, kw_only=True, gc=False, tag="b"):
    """Minute bar (``T: "b"``, channel ``bars``); ``timestamp`` is the minute's start."""

    CHANNEL: ClassVar[str] = "bars"


class DailyBar(_StockBarFields, frozen=True, kw_only=True, gc=False, tag="d"):
    """Running daily bar (``T: "d"``, channel ``dailyBars``)."""

    CHANNEL: ClassVar[str] = "dailyBars"


class UpdatedBar(_StockBarFields, frozen=True, kw_only=True, gc=False, tag="u"):
    """Corrected minute bar after late trades (``T: "u"``, channel ``updatedBars``)."""

    CHANNEL: ClassVar[str] = "updatedBars"


class TradingStatus(MarketRecord, frozen=True, kw_only=True, gc=False, tag="s"):
    """Trading status (``T: "s"``, channel ``statuses``): halts, resumptions (§4.5)."""

    CHANNEL: ClassVar[str] = "statuses"
    status_code: str = field(name="sc")
    status_message: str = field(name="sm", default="")
    reason_code: str = field(name="rc", default="")
    reason_message: str = field(name="rm", default="")
    tape: str = field(name="z", default="")


class Luld(MarketRecord, frozen=True, kw_only=True, gc=False, tag="l"):
    """Limit up / limit down bands (``T: "l"``, channel ``lulds``)."""

    CHANNEL: ClassVar[str] = "lulds"
    limit_up_price: float = field(name="u")
    limit_down_price: float = field(name="d")
    indicator: str = field(name="i", default="")
    tape: str = field(name="z", default="")


class Correction(MarketRecord, frozen=True, kw_only=True, gc=False, tag="c"):
    """Trade correction (``T: "c"``, implicit with ``trades``): both versions of the trade."""

    CHANNEL: ClassVar[str] = "corrections"
    exchange: str = field(name="x", default="")
    original_id: int = field(name="oi")
    original_price: float = field(name="op")
    original_size: int = field(name="os")
    original_conditions: tuple[str, ...] = field(name="oc", default=())
    corrected_id: int = field(name="ci")
    corrected_price: float = field(name="cp")
    corrected_size: int = field(name="cs")
    corrected_conditions: tuple[str, ...] = field(name="cc", default=())
    tape: str = field(name="z", default="")


class CancelError(MarketRecord, frozen=True, kw_only=True, gc=False, tag="x"):
    """Trade cancel or error (``T: "x"``, implicit with ``trades``); ``action`` is C or E."""

    CHANNEL: ClassVar[str] = "cancelErrors"
    id: int = field(name="i")
    exchange: str = field(name="x", default="")
    price: float = field(name="p")
    size: int = field(name="s")
    action: str = field(name="a")
    tape: str = field(name="z", default="")


class Imbalance(MarketRecord, frozen=True, kw_only=True, gc=False, tag="i"):
    """Order imbalance (``T: "i"``, channel ``imbalances``). Extra keys are optional (§4.9)."""

    CHANNEL: ClassVar[str] = "imbalances"
    price: float = field(name="p")
    tape: str = field(name="z", default="")
    paired_shares: int | None = field(name="ps", default=None)
    imbalance_shares: int | None = field(name="is", default=None)
    side: str | None = None
    auction_type: str | None = field(name="at", default=None)


# ---------------------------------------------------------------- crypto (§4.10-§4.13)


class CryptoTrade(MarketRecord, frozen=True, kw_only=True, gc=False, tag="t"):
    """Crypto trade: fractional size, 64-bit id, taker side ``B``/``S``."""

    CHANNEL: ClassVar[str] = "trades"
    price: float = field(name="p")
    size: float = field(name="s")
    id: int = field(name="i", default=0)
    taker_side: str = field(name="tks", default="")
    exchange: str = field(name="x", default="")


class CryptoQuote(MarketRecord, frozen=True, kw_only=True, gc=False, tag="q"):
    """Crypto quote: fractional sizes."""

    CHANNEL: ClassVar[str] = "quotes"
    bid_price: float = field(name="bp")
    bid_size: float = field(name="bs")
    ask_price: float = field(name="ap")
    ask_size: float = field(name="as")
    exchange: str = field(name="x", default="")


class _CryptoBarFields(MarketRecord, frozen=True, kw_only=True, gc=False):
    open: float = field(name="o")
    high: float = field(name="h")
    low: float = field(name="l")
    close: float = field(name="c")
    volume: float = field(name="v")
    trade_count: int = field(name="n", default=0)
    vwap: float = field(name="vw", default=0.0)
    exchange: str = field(name="x", default="")


class CryptoBar(_CryptoBarFields, frozen=True, kw_only=True, gc=False, tag="b"):
    """Crypto minute bar (fractional volume; quote mid-prices when no trades)."""

    CHANNEL: ClassVar[str] = "bars"


class CryptoDailyBar(_CryptoBarFields, frozen=True, kw_only=True, gc=False, tag="d"):
    """Crypto running daily bar."""

    CHANNEL: ClassVar[str] = "dailyBars"


class CryptoUpdatedBar(_CryptoBarFields, frozen=True, kw_only=True, gc=False, tag="u"):
    """Crypto corrected minute bar."""

    CHANNEL: ClassVar[str] = "updatedBars"


class OrderBookLevel(msgspec.Struct, frozen=True, gc=False):
    """One price level; ``size == 0`` removes the level (§4.13)."""

    price: float = field(name="p")
    size: float = field(name="s")


class OrderBook(MarketRecord, frozen=True, kw_only=True, gc=False, tag="o"):
    """Crypto order book update (``T: "o"``); ``reset`` means a full snapshot."""

    CHANNEL: ClassVar[str] = "orderbooks"
    bids: tuple[OrderBookLevel, ...] = field(name="b", default=())
    asks: tuple[OrderBookLevel, ...] = field(name="a", default=())
    reset: bool = field(name="r", default=False)
    exchange: str = field(name="x", default="")


# ---------------------------------------------------------------- options (§4.15-§4.16)


class OptionTrade(MarketRecord, frozen=True, kw_only=True, gc=False, tag="t"):
    """Option trade; ``condition`` is a single string on options (§4.15)."""

    CHANNEL: ClassVar[str] = "trades"
    price: float = field(name="p")
    size: int = field(name="s")
    exchange: str = field(name="x", default="")
    condition: str = field(name="c", default="")


class OptionQuote(MarketRecord, frozen=True, kw_only=True, gc=False, tag="q"):
    """Option quote; ``condition`` is a single string."""

    CHANNEL: ClassVar[str] = "quotes"
    bid_price: float = field(name="bp")
    bid_size: int = field(name="bs")
    ask_price: float = field(name="ap")
    ask_size: int = field(name="as")
    bid_exchange: str = field(name="bx", default="")
    ask_exchange: str = field(name="ax", default="")
    condition: str = field(name="c", default="")


# ---------------------------------------------------------------- news (§4.17)


class News(Record, frozen=True, kw_only=True, gc=False, tag="n"):
    """A news article (``T: "n"``). Routed by ``symbols`` (may be empty)."""

    CHANNEL: ClassVar[str] = "news"
    id: int
    headline: str = ""
    summary: str = ""
    author: str = ""
    raw_created_at: Raw = field(name="created_at")
    #: Empty (``not raw_updated_at``) when the server sent none. msgspec cannot decode
    #: ``Raw | None`` (a union with ``Raw`` accepts only null), hence an empty ``Raw``.
    raw_updated_at: Raw = field(name="updated_at", default=Raw())
    url: str = ""
    content: str = ""
    symbols: tuple[str, ...] = ()
    source: str = ""
    received_ns: int = 0

    @property
    def created_at_ns(self) -> int:
        """Creation time, exact nanoseconds since the epoch (``ValueError`` if malformed)."""
        return _field_ns(self, "raw_created_at", "created_at", self.raw_created_at)

    @property
    def created_at(self) -> _dt.datetime:
        """Creation time as an aware ``datetime``."""
        return _datetime_from_ns(self.created_at_ns)

    @property
    def updated_at_ns(self) -> int | None:
        """Last update time, exact nanoseconds since the epoch, if the server sent one."""
        raw = self.raw_updated_at
        if not raw or bytes(raw) in (b"null", b"\xc0"):  # absent, JSON null, MessagePack nil
            return None
        return _field_ns(self, "raw_updated_at", "updated_at", raw)

    @property
    def updated_at(self) -> _dt.datetime | None:
        """Last update time as an aware ``datetime``, if the server sent one."""
        ns = self.updated_at_ns
        return None if ns is None else _datetime_from_ns(ns)

    @property
    def timestamp_ns(self) -> int:
        """Same as ``created_at_ns`` so news sorts with market records."""
        return self.created_at_ns


# ---------------------------------------------------------------- control (§2, §3.3, §5)


class SuccessMessage(Record, frozen=True, kw_only=True, gc=False, tag="success"):
    """``{"T":"success","msg":"connected"|"authenticated"}``."""

    msg: str


class ErrorMessage(Record, frozen=True, kw_only=True, gc=False, tag="error"):
    """``{"T":"error","code":N,"msg":"..."}``; see :func:`rxalpaca.errors.error_for_code`."""

    code: int
    msg: str = ""


class SubscriptionMessage(Record, frozen=True, kw_only=True, gc=False, tag="subscription"):
    """The server's full subscription state after each change (§3.3).

    A missing or null list means empty; ``channels()`` gives the lists present.
    """

    trades: tuple[str, ...] | None = None
    quotes: tuple[str, ...] | None = None
    bars: tuple[str, ...] | None = None
    updatedBars: tuple[str, ...] | None = None  # noqa: N815 - wire names, kept verbatim
    dailyBars: tuple[str, ...] | None = None  # noqa: N815
    statuses: tuple[str, ...] | None = None
    lulds: tuple[str, ...] | None = None
    imbalances: tuple[str, ...] | None = None
    corrections: tuple[str, ...] | None = None
    cancelErrors: tuple[str, ...] | None = None  # noqa: N815
    orderbooks: tuple[str, ...] | None = None
    news: tuple[str, ...] | None = None

    def channels(self) -> dict[str, frozenset[str]]:
        """Every channel present in the ack (null lists included, as empty sets)."""
        out: dict[str, frozenset[str]] = {}
        for name in self.__struct_fields__:
            value = getattr(self, name)
            out[name] = frozenset(value or ())
        return out


class Unknown(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A message whose ``T`` this version does not know; ``raw`` keeps it whole (§4.1)."""

    type: str
    raw: dict[str, Any]
    received_ns: int = 0
    CHANNEL: ClassVar[str] = ""
