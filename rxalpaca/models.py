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
from typing import TYPE_CHECKING, Any, ClassVar

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
    "Gap",
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

from .timestamps import (
    _datetime_from_ns,
    _field_ns,
    format_rfc3339_ns,
    parse_time_ns,
    raw_time_from_ns,
    record_datetime,
    record_time_ns,
)

_TIMESTAMP_NS_DOC = """Exchange time in exact integer nanoseconds since the epoch (UTC).

Raises:
    ValueError: the wire timestamp ``t`` is malformed (the error names the field). Parsed
        on demand, so this is where a bad ``t`` shows, unless the codec was built with
        ``strict_timestamps=True`` (then the message is a ``FrameError`` instead and never
        delivered).
"""


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

    if TYPE_CHECKING:

        @property
        def timestamp_ns(self) -> int:
            """Exchange time in exact integer nanoseconds since the epoch (UTC)."""
            ...

    else:
        # A function as the getter, no Python frame of our own: the C read path when built,
        # else one Python call per read; the hot path (docs/benchmarks.md, "Reading
        # timestamps").
        timestamp_ns = property(record_time_ns, doc=_TIMESTAMP_NS_DOC)

    if TYPE_CHECKING:

        @property
        def timestamp(self) -> _dt.datetime:
            """Exchange time as an aware ``datetime`` (microsecond precision)."""
            ...

    else:
        timestamp = property(
            record_datetime, doc="Exchange time as an aware ``datetime`` (microsecond precision)."
        )

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


class Gap(msgspec.Struct, frozen=True, kw_only=True):
    """A hole in the data: messages may have been sent that this client never got.

    Emitted on ``client.gaps`` when a connection is lost and comes back (on a bus
    client also when the bus or the gateway's upstream is lost), so a strategy can
    tell a quiet market from missing data. The hole lies between ``last_before_ns``
    (``received_ns`` of the last market record before it; ``None``: none had come)
    and ``first_after_ns`` (when data could flow again: the new session's start).

    Attributes:
        feed: the feed the hole is in.
        channels: the channels that were subscribed across it (``()``: none).
        symbols: the symbols that were subscribed across it.
        last_before_ns: receive time of the last market record before the hole.
        first_after_ns: the time the stream was back (new session authenticated).
        reason: what opened it, e.g. ``"reconnect"``, ``"bus"``, ``"upstream"``.
    """

    feed: str
    channels: tuple[str, ...] = ()
    symbols: tuple[str, ...] = ()
    last_before_ns: int | None = None
    first_after_ns: int | None = None
    reason: str = "reconnect"
