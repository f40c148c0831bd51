"""rxalpaca.models: timestamp parsing and formatting, record properties, repr, immutability."""

from __future__ import annotations

import datetime as dt
import gc
import random
import re
import struct

import msgspec
import pytest
from msgspec import Raw

from rxalpaca import timestamps
from rxalpaca.models import (
    Bar,
    CryptoTrade,
    MarketRecord,
    News,
    OrderBookLevel,
    Quote,
    SubscriptionMessage,
    SuccessMessage,
    Trade,
    Unknown,
    format_rfc3339_ns,
    parse_time_ns,
    raw_time_from_ns,
)

BASE_S = 1614009104  # 2021-02-22T15:51:44Z
BASE_NS = BASE_S * 1_000_000_000


# ---------------------------------------------------------------- parse_time_ns


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("2021-02-22T15:51:44Z", BASE_NS),
        ("2021-02-22T15:51:44.2Z", BASE_NS + 200_000_000),
        ("2021-02-22T15:51:44.208Z", BASE_NS + 208_000_000),
        ("2021-02-22T15:51:44.208123Z", BASE_NS + 208_123_000),
        ("2021-02-22T15:51:44.335689322Z", BASE_NS + 335_689_322),
        ("2021-02-22T15:51:44.000000001Z", BASE_NS + 1),
        ("2021-02-22T15:51:44.83540958Z", BASE_NS + 835_409_580),
        ("2021-02-22T15:51:44+00:00", BASE_NS),
        ("2021-02-22T15:51:44.5+00:00", BASE_NS + 500_000_000),
        ("2021-02-22T16:51:44+01:00", BASE_NS),
        ("2021-02-22T10:51:44.000000007-05:00", BASE_NS + 7),
        ("2021-02-22t15:51:44z", BASE_NS),
        ("2021-02-22 15:51:44Z", BASE_NS),
        # Not what the server writes, but msgspec's datetime (strict_timestamps) takes them,
        # so they must parse: digits past the ninth dropped, an offset without its colon.
        ("2021-02-22T15:51:44.1234567890Z", BASE_NS + 123_456_789),
        ("2021-02-22T15:51:44.000000001999999Z", BASE_NS + 1),
        ("2021-02-22T15:51:44+0000", BASE_NS),
        ("2021-02-22T10:51:44.5-0500", BASE_NS + 500_000_000),
        ("1970-01-01T00:00:00Z", 0),
        ("2262-04-11T23:47:16.854775807Z", 2**63 - 1),
    ],
)
def test_parse_rfc3339_every_form(text: str, ns: int) -> None:
    assert parse_time_ns(text) == ns
    assert parse_time_ns(Raw(f'"{text}"'.encode())) == ns  # a JSON Raw keeps its quotes
    assert parse_time_ns(f'"{text}"'.encode()) == ns


@pytest.mark.parametrize("digits", range(10))
def test_parse_every_fraction_width(digits: int) -> None:
    frac = "987654321"[:digits]
    text = "2021-02-22T15:51:44" + (f".{frac}" if digits else "") + "Z"
    assert parse_time_ns(text) == BASE_NS + int(frac.ljust(9, "0") or 0)


def _ext4(seconds: int) -> bytes:
    return b"\xd6\xff" + struct.pack(">I", seconds)


def _ext8(seconds: int, nanos: int) -> bytes:
    return b"\xd7\xff" + struct.pack(">Q", (nanos << 34) | seconds)


def _ext12(seconds: int, nanos: int) -> bytes:
    return b"\xc7\x0c\xff" + struct.pack(">Iq", nanos, seconds)


@pytest.mark.parametrize(
    ("raw", "ns"),
    [
        (_ext4(BASE_S), BASE_NS),
        (_ext4(0), 0),
        (_ext4(2**32 - 1), (2**32 - 1) * 10**9),
        (_ext8(BASE_S, 335_689_322), BASE_NS + 335_689_322),
        (_ext8(BASE_S, 999_999_999), BASE_NS + 999_999_999),
        (_ext8(2**34 - 1, 1), (2**34 - 1) * 10**9 + 1),
        (_ext12(BASE_S, 1), BASE_NS + 1),
        (_ext12(-1, 999_999_999), -1),
        (_ext12(2**40, 5), 2**40 * 10**9 + 5),
    ],
)
def test_parse_msgpack_extension_every_width(raw: bytes, ns: int) -> None:
    assert parse_time_ns(Raw(raw)) == ns
    assert parse_time_ns(raw) == ns


def test_parse_msgpack_string_int_and_datetime() -> None:
    text = "2021-02-22T15:51:44.208Z"
    packed = msgspec.msgpack.encode(text)
    assert parse_time_ns(Raw(packed)) == BASE_NS + 208_000_000
    assert parse_time_ns(12345) == 12345
    aware = dt.datetime(2021, 2, 22, 15, 51, 44, 208123, tzinfo=dt.UTC)
    assert parse_time_ns(aware) == BASE_NS + 208_123_000


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "yesterday",
        "2021-02-22T15:51:44",  # no zone
        "2021-02-22T15:51:44.Z",
        "2021-02-22T15:51:44+00",
        "2021-02-22T15:51:44+00:0",
        "2021-02-22T15:51:44+000:0",
        "2021-02-22T15:51:44+24:00",  # zone out of range
        "2021-02-22T15:51:44+01:60",
        "2021-02-22T24:00:00Z",  # time of day out of range
        "2021-02-22T23:60:00Z",
        "2021-02-22T23:59:60Z",  # leap second (msgspec and datetime refuse it too)
        "2021-02-29T00:00:00Z",  # not a leap year
        "2021-04-31T00:00:00Z",
        "0000-01-01T00:00:00Z",
        "2021-02-22T15x51x44Z",  # separators
        "2021-02-22T1 :51:44Z",  # int() would take " 1"
        "2021-02-22T+1:51:44Z",  # ... and "+1"
        "+021-02-22T15:51:44Z",
        "2021-02-22T15:51:44Z ",
        "2021-02-22T15:51:44.5Zjunk",
        "2021-02-22T15:51:44.00\u00e40001Z",  # not ASCII
        "2021-02-22T15:51:4\u0661Z",  # a non-ASCII digit
        b"",
        b'"',
        b'"2021-02-22T15:51:44Z',  # unterminated JSON string
        b'"2021-02-22T15:51:44.00\xe40001Z"',  # a flipped byte: not ASCII
        b"12",  # a JSON number
        b"null",
        b"\xd6\xff\x00",  # truncated extension
        b"\xd6\x05\x00\x00\x00\x01",  # extension type 5, not -1
        b"\xd7\xff" + struct.pack(">Q", (1_000_000_000 << 34) | BASE_S),  # nanos out of range
        b"\xc7\x0c\xff" + struct.pack(">Iq", 1_000_000_000, BASE_S),
        b"\xc7\x05\xff\x00\x00\x00\x00\x01",  # a 5-byte payload
        b"\xd8\xff" + bytes(16),  # fixext 16
        b"\xa4nope",  # a MessagePack string that is not a time
        b"\xd9\x05abc",  # truncated MessagePack string
        b"\x05",
    ],
)
def test_parse_rejects_garbage_with_value_error(bad: str | bytes) -> None:
    with pytest.raises(ValueError):
        parse_time_ns(bad)


@pytest.mark.parametrize(
    "raw",
    [
        b"\xc7\x04\xff" + struct.pack(">I", BASE_S),  # ext 8 holding the 4-byte form
        b"\xc7\x08\xff" + struct.pack(">Q", BASE_S),  # ... and the 8-byte form
        b"\xc8\x00\x0c\xff" + struct.pack(">Iq", 0, BASE_S),  # ext 16, 12 bytes
        b"\xc9\x00\x00\x00\x0c\xff" + struct.pack(">Iq", 0, BASE_S),  # ext 32, 12 bytes
        b'"2021-02-22T15:51:44\\u005a"',  # a JSON escape ("Z")
        msgspec.msgpack.encode("2021-02-22T15:51:44Z"),
    ],
)
def test_parse_takes_the_other_encodings_msgspec_takes(raw: bytes) -> None:
    """Non-canonical but unambiguous forms that strict_timestamps (msgspec) lets through."""
    assert parse_time_ns(raw) == BASE_NS
    module = msgspec.json if raw[:1] == b'"' else msgspec.msgpack
    assert module.decode(raw, type=dt.datetime) == dt.datetime.fromtimestamp(BASE_S, dt.UTC)


# ---------------------------------------------------------------- formatting


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (BASE_NS, "2021-02-22T15:51:44Z"),
        (BASE_NS + 208_000_000, "2021-02-22T15:51:44.208Z"),
        (BASE_NS + 335_689_322, "2021-02-22T15:51:44.335689322Z"),
        (BASE_NS + 1, "2021-02-22T15:51:44.000000001Z"),
        (0, "1970-01-01T00:00:00Z"),
    ],
)
def test_format_trims_trailing_zeros(ns: int, text: str) -> None:
    assert format_rfc3339_ns(ns) == text


@pytest.mark.parametrize(
    "ns", [0, 1, 999_999_999, BASE_NS, BASE_NS + 123, BASE_NS + 120_000_000, 4102444800 * 10**9]
)
def test_format_parse_round_trip(ns: int) -> None:
    assert parse_time_ns(format_rfc3339_ns(ns)) == ns
    assert parse_time_ns(raw_time_from_ns(ns)) == ns


def _day_ns(day: dt.date) -> int:
    """Nanoseconds since the epoch of a day's midnight UTC (independent of rxalpaca)."""
    return (day.toordinal() - dt.date(1970, 1, 1).toordinal()) * 86_400 * 10**9


#: The first and last instants RFC 3339 can write (four-digit years, §4.1).
MIN_NS = _day_ns(dt.date(1, 1, 1))
MAX_NS = _day_ns(dt.date(9999, 12, 31)) + 86_400 * 10**9 - 1
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{0,8}[1-9])?Z")
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (MIN_NS, "0001-01-01T00:00:00Z"),
        (_day_ns(dt.date(9, 3, 1)) + 1, "0009-03-01T00:00:00.000000001Z"),
        (_day_ns(dt.date(999, 12, 31)), "0999-12-31T00:00:00Z"),
        (MAX_NS, "9999-12-31T23:59:59.999999999Z"),
    ],
)
def test_format_writes_four_digit_years(ns: int, text: str) -> None:
    assert format_rfc3339_ns(ns) == text


def test_format_round_trips_in_every_year_1_to_9999() -> None:
    """Each year's first instant, and a random one: four-digit years, and the parser (and
    ``datetime.fromisoformat``, independently) read back the same instant."""
    rng = random.Random(9)
    for year in range(1, 10_000):
        start = _day_ns(dt.date(year, 1, 1))
        for ns in (start, start + rng.randrange(365 * 86_400 * 10**9)):
            text = format_rfc3339_ns(ns)
            assert _RFC3339.fullmatch(text), text
            assert parse_time_ns(text) == ns
            assert parse_time_ns(raw_time_from_ns(ns)) == ns
            whole, _, frac = text[:-1].partition(".")  # read back independently too
            since = dt.datetime.fromisoformat(whole).replace(tzinfo=dt.UTC) - EPOCH
            assert since // dt.timedelta(seconds=1) * 10**9 + int(frac.ljust(9, "0")) == ns


@pytest.mark.parametrize("ns", [MIN_NS - 1, MAX_NS + 1, -(2**70), 2**80])
def test_format_refuses_instants_rfc3339_cannot_write(ns: int) -> None:
    with pytest.raises(ValueError, match="years 1-9999"):
        format_rfc3339_ns(ns)


# ---------------------------------------------------------------- records


def _trade(ns: int = BASE_NS + 208_123_456, received_ns: int = 0) -> Trade:
    return Trade(
        symbol="AAPL",
        raw_time=raw_time_from_ns(ns),
        received_ns=received_ns,
        price=126.55,
        size=1,
        id=96921,
        exchange="D",
        conditions=("@", "I"),
        tape="C",
    )


@pytest.fixture
def python_read_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Records read their times with the pure-Python getters (as without the C module)."""
    monkeypatch.setattr(MarketRecord, "timestamp_ns", property(timestamps._record_time_ns))
    monkeypatch.setattr(MarketRecord, "timestamp", property(timestamps._record_datetime))


@pytest.fixture(params=["c", "python"])
def read_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each timestamp test on both read paths: the C module's (if built) and pure Python's."""
    if request.param == "python":
        request.getfixturevalue("python_read_path")
    elif not timestamps.SPEEDUPS:
        pytest.skip("the C read path (rxalpaca._speedups) is not built here")
    return str(request.param)


def test_timestamp_properties(read_path: str) -> None:
    trade = _trade(received_ns=BASE_NS + 300_000_000)
    assert trade.timestamp_ns == BASE_NS + 208_123_456
    assert trade.timestamp == dt.datetime(2021, 2, 22, 15, 51, 44, 208123, tzinfo=dt.UTC)
    assert trade.lag_ns == 300_000_000 - 208_123_456


def test_timestamp_view_truncates_to_microseconds_only(read_path: str) -> None:
    trade = _trade(ns=BASE_NS + 999_999_999)
    assert trade.timestamp.microsecond == 999_999  # never rounds up into the next second
    assert trade.timestamp_ns % 1000 == 999


def test_repr_is_readable() -> None:
    text = repr(_trade())
    assert text.startswith("Trade(symbol='AAPL', raw_time='2021-02-22T15:51:44.208123456Z'")
    assert "price=126.55" in text and "conditions=('@', 'I')" in text
    assert "<msgspec.Raw" not in text


def test_repr_of_unparseable_raw_shows_bytes() -> None:
    trade = Trade(symbol="X", raw_time=Raw(b"12"), price=1.0, size=1)
    assert "raw_time=b'12'" in repr(trade)


@pytest.mark.parametrize(
    "raw", [b'"yesterday"', b"12", b'"2021-02-22T15:51:44.00\xe40001Z"', b"\xa4nope"]
)
def test_a_malformed_time_raises_value_error_naming_the_field(raw: bytes, read_path: str) -> None:
    """Parsed when read: the error says which record, attribute and wire field."""
    trade = Trade(symbol="X", raw_time=Raw(raw), price=1.0, size=1)
    for read in (
        lambda: trade.timestamp_ns,
        lambda: trade.timestamp,
        lambda: trade.lag_ns,
    ):
        with pytest.raises(ValueError, match=r"^Trade\.raw_time \(wire field 't'\) is not a valid"):
            read()
    news = News(id=1, raw_created_at=Raw(raw), raw_updated_at=Raw(raw))
    with pytest.raises(ValueError, match=r"^News\.raw_created_at \(wire field 'created_at'\)"):
        _ = news.created_at_ns
    with pytest.raises(ValueError, match=r"^News\.raw_updated_at \(wire field 'updated_at'\)"):
        _ = news.updated_at


def test_records_are_frozen() -> None:
    trade = _trade()
    with pytest.raises(AttributeError):
        trade.price = 1.0  # type: ignore[misc]
    with pytest.raises(AttributeError):
        trade.received_ns = 5  # type: ignore[misc]
    ack = SubscriptionMessage(trades=("A",))
    with pytest.raises(AttributeError):
        ack.trades = ()  # type: ignore[misc]
    with pytest.raises(AttributeError):
        OrderBookLevel(1.0, 2.0).size = 3.0  # type: ignore[misc]


def test_records_are_not_tracked_by_the_garbage_collector() -> None:
    assert not gc.is_tracked(_trade())


def test_records_compare_by_value() -> None:
    # Not hashable: msgspec.Raw (the raw timestamp) has no hash.
    assert _trade() == _trade()
    assert _trade() != _trade(ns=BASE_NS)


def test_channels() -> None:
    assert Trade.CHANNEL == "trades"
    assert Quote.CHANNEL == "quotes"
    assert Bar.CHANNEL == "bars"
    assert CryptoTrade.CHANNEL == "trades"
    assert News.CHANNEL == "news"
    assert SuccessMessage.CHANNEL == Unknown.CHANNEL == ""
    assert issubclass(Quote, MarketRecord)


def test_subscription_channels_treat_null_as_empty() -> None:
    ack = SubscriptionMessage(trades=("AAPL",), quotes=None)
    channels = ack.channels()
    assert channels["trades"] == {"AAPL"}
    assert channels["quotes"] == frozenset()


def test_news_times() -> None:
    news = News(
        id=1,
        raw_created_at=raw_time_from_ns(BASE_NS),
        raw_updated_at=raw_time_from_ns(BASE_NS + 1_000_000_000),
    )
    assert news.created_at_ns == news.timestamp_ns == BASE_NS
    assert news.updated_at_ns == BASE_NS + 1_000_000_000
    assert news.updated_at == dt.datetime(2021, 2, 22, 15, 51, 45, tzinfo=dt.UTC)
    assert news.symbols == ()
    bare = News(id=2, raw_created_at=raw_time_from_ns(BASE_NS))
    assert bare.updated_at is None and bare.updated_at_ns is None
    for null in (b"null", b"\xc0"):
        assert News(id=3, raw_created_at=Raw(b"0"), raw_updated_at=Raw(null)).updated_at is None


def test_news_decodes_without_updated_at_and_with_null() -> None:
    dec = msgspec.json.Decoder(News)
    base = b'{"T":"n","id":1,"created_at":"2022-01-05T22:00:37Z"'
    assert dec.decode(base + b"}").updated_at is None
    assert dec.decode(base + b',"updated_at":null}').updated_at is None
    later = dec.decode(base + b',"updated_at":"2022-01-05T22:00:38Z"}')
    assert later.updated_at == dt.datetime(2022, 1, 5, 22, 0, 38, tzinfo=dt.UTC)


# ---------------------------------------------------------------- the fast read path

_GOOD_SECOND = b'"2021-02-22T15:51:44'


@pytest.mark.parametrize(
    "raw",
    [
        _GOOD_SECOND + b'.208123456Z"',
        _GOOD_SECOND + b'.2Z"',
        _GOOD_SECOND + b'Z"',
        _GOOD_SECOND + b'.2081234567891Z"',  # past the ns: dropped
        _GOOD_SECOND + b'.208+01:00"',
        b'"2021-02-22t15:51:44.5z"',
        _GOOD_SECOND + b'.5\\u005a"',  # an escaped Z
        b"\xd7\xff" + struct.pack(">Q", (123 << 34) | BASE_S),
        b"\xd6\xff" + struct.pack(">I", BASE_S),
        b"\xc7\x0c\xff" + struct.pack(">Iq", 5, BASE_S),
        # malformed, each right after a good read of the same second was cached:
        _GOOD_SECOND + b'.20812345xZ"',
        _GOOD_SECOND + b'.Z"',
        _GOOD_SECOND + b'. 20812345Z"',
        _GOOD_SECOND + b'.2_08Z"',
        _GOOD_SECOND + b".208123456Z",  # unterminated
        _GOOD_SECOND + b'.208123456"',  # no zone
        _GOOD_SECOND + b'.208123456Zx"',
        _GOOD_SECOND + b"Zx",
        b'"2021-02-30T15:51:44.5Z"',
        b'"2021-02-22T24:00:00.5Z"',
        b"\xd7\xff" + struct.pack(">Q", (1_000_000_000 << 34) | BASE_S),
        b"\xd7\xfe" + struct.pack(">Q", BASE_S),
        b"\xd6\xfe" + struct.pack(">I", BASE_S),
    ],
)
def test_timestamp_ns_agrees_with_the_full_parser(raw: bytes, read_path: str) -> None:
    """The cached-seconds read gives parse_time_ns's ns, or raises where it raises."""
    warm = Trade(symbol="X", raw_time=Raw(_GOOD_SECOND + b'.1Z"'), price=1.0, size=1)
    assert warm.timestamp_ns == BASE_NS + 100_000_000  # the second is now cached
    Trade(symbol="X", raw_time=Raw(_GOOD_SECOND + b'Z"'), price=1.0, size=1).timestamp_ns  # noqa: B018
    trade = Trade(symbol="X", raw_time=Raw(raw), price=1.0, size=1)
    try:
        expected = parse_time_ns(Raw(raw))
    except ValueError:
        with pytest.raises(ValueError, match=r"^Trade\.raw_time \(wire field 't'\)"):
            _ = trade.timestamp_ns
        return
    assert trade.timestamp_ns == expected
    assert trade.timestamp == dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(
        microseconds=expected // 1000
    )


def test_timestamp_ns_of_a_record_built_with_another_type(read_path: str) -> None:
    """A record built by hand with an int (ns) or a str still reads (as parse_time_ns does)."""
    assert Trade(symbol="X", raw_time=BASE_NS, price=1.0, size=1).timestamp_ns == BASE_NS  # type: ignore[arg-type]
    text = "2021-02-22T15:51:44.5Z"
    assert Trade(symbol="X", raw_time=text, price=1.0, size=1).timestamp_ns == BASE_NS + 5 * 10**8  # type: ignore[arg-type]
    # A str of a JSON time's length (24-32) or of a MessagePack timestamp 64's (10) fails
    # unpack_from with TypeError and takes the full parser; any buffer reads as a Raw would.
    long_text = "2021-02-22T15:51:44.208123456Z"
    for raw in (long_text, "1614009104", b'"' + long_text.encode() + b'"'):
        record = Trade(symbol="X", raw_time=raw, price=1.0, size=1)  # type: ignore[arg-type]
        if raw == "1614009104":
            with pytest.raises(ValueError, match=r"Trade\.raw_time"):
                _ = record.timestamp_ns
        else:
            assert record.timestamp_ns == parse_time_ns(raw)


def test_the_seconds_cache_stays_bounded(python_read_path: None) -> None:
    """The pure-Python read path's cache (the C path needs none)."""

    for s in range(timestamps._SECONDS_MAX + 10):
        raw = raw_time_from_ns((BASE_S + s) * 1_000_000_000 + 1)
        assert Trade(symbol="X", raw_time=raw, price=1.0, size=1).timestamp_ns % 10**9 == 1
    assert 0 < len(timestamps._SECONDS) <= timestamps._SECONDS_MAX
