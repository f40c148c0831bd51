"""rxalpaca.codec: every message of alpaca-stream-protocol.md §4 in JSON and MessagePack.

The MessagePack fixtures are built with the ``msgpack`` library (not with msgspec, which the
codec uses), timestamps as extension type -1 forced into each of its three widths.
"""

from __future__ import annotations

import datetime as dt
import doctest
import struct
from types import MappingProxyType
from typing import Any

import msgpack
import msgspec
import orjson
import pytest

import rxalpaca.codec
from rxalpaca.codec import FAMILY_RECORDS, Codec, Decoded
from rxalpaca.errors import FrameError
from rxalpaca.feeds import Channel, Family
from rxalpaca.models import (
    Bar,
    CancelError,
    Correction,
    CryptoBar,
    CryptoDailyBar,
    CryptoQuote,
    CryptoTrade,
    CryptoUpdatedBar,
    DailyBar,
    ErrorMessage,
    Imbalance,
    Luld,
    MarketRecord,
    News,
    OptionQuote,
    OptionTrade,
    OrderBook,
    OrderBookLevel,
    Quote,
    SubscriptionMessage,
    SuccessMessage,
    Trade,
    TradingStatus,
    Unknown,
    UpdatedBar,
)

RECEIVED = 1_700_000_000_123_456_789

# ---------------------------------------------------------------- fixture builders


def ns_of(text: str) -> int:
    """RFC 3339 ``...Z`` to ns, written independently of rxalpaca.models."""
    whole, _, frac = text.rstrip("Z").partition(".")
    seconds = int(dt.datetime.fromisoformat(whole).replace(tzinfo=dt.UTC).timestamp())
    return seconds * 1_000_000_000 + int((frac or "0").ljust(9, "0"))


_PLACEHOLDER = 42  # msgpack.ExtType refuses negative (reserved) codes; swapped for -1 below


def ts_ext(ns: int, width: int) -> msgpack.ExtType:
    """A MessagePack timestamp (ext -1) forced into a 4-, 8- or 12-byte payload.

    Packed as ext type 42; :func:`packb` rewrites the type byte to 0xff (-1).
    """
    seconds, nanos = divmod(ns, 1_000_000_000)
    if width == 4:
        assert nanos == 0 and 0 <= seconds < 2**32
        return msgpack.ExtType(_PLACEHOLDER, struct.pack(">I", seconds))
    if width == 8:
        assert 0 <= seconds < 2**34
        return msgpack.ExtType(_PLACEHOLDER, struct.pack(">Q", (nanos << 34) | seconds))
    assert width == 12
    return msgpack.ExtType(_PLACEHOLDER, struct.pack(">Iq", nanos, seconds))


_EXT_HEADERS = {4: b"\xd6", 8: b"\xd7", 12: b"\xc7\x0c"}


def packb(obj: Any) -> bytes:
    """``msgpack.packb`` with every ext 42 turned into ext -1 (the timestamp type)."""
    exts: list[msgpack.ExtType] = []

    def walk(value: Any) -> None:
        if isinstance(value, msgpack.ExtType) and value.code == _PLACEHOLDER:
            exts.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(obj)
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    for ext in exts:
        head = _EXT_HEADERS[len(ext.data)]
        data = data.replace(head + b"\x2a" + ext.data, head + b"\xff" + ext.data)
    return data


TIME_KEYS = {"t", "created_at", "updated_at"}


def to_msgpack(messages: list[Any], width: int = 12) -> bytes:
    """Pack JSON-shaped messages; timestamp strings become ext -1 of ``width`` bytes."""

    def convert(msg: Any) -> Any:
        if not isinstance(msg, dict):
            return msg
        out = {}
        for key, value in msg.items():
            if key in TIME_KEYS and isinstance(value, str):
                ns = ns_of(value)
                w = width if (width != 4 or ns % 1_000_000_000 == 0) else 12
                out[key] = ts_ext(ns, w)
            else:
                out[key] = value
        return out

    return packb([convert(m) for m in messages])


def frame(messages: list[Any], encoding: str, width: int = 12) -> bytes:
    if encoding == "json":
        return orjson.dumps(messages)
    return to_msgpack(messages, width)


ENCODINGS = [
    pytest.param(("json", 0), id="json"),
    pytest.param(("msgpack", 4), id="msgpack-ext4"),
    pytest.param(("msgpack", 8), id="msgpack-ext8"),
    pytest.param(("msgpack", 12), id="msgpack-ext12"),
]

# (family, wire message from the protocol doc, class, expected attributes)
CASES: list[tuple[Family, str, type[Any], dict[str, Any]]] = [
    (
        Family.STOCKS,
        '{"T":"t","S":"AAPL","i":96921,"x":"D","p":126.55,"s":1,"c":["@","I"],"z":"C",'
        '"t":"2021-02-22T15:51:44.208Z"}',
        Trade,
        dict(
            symbol="AAPL",
            id=96921,
            exchange="D",
            price=126.55,
            size=1,
            conditions=("@", "I"),
            tape="C",
        ),
    ),
    (
        Family.STOCKS,
        '{"T":"q","S":"AMD","bx":"U","bp":87.66,"bs":1,"ax":"Q","ap":87.68,"as":4,"c":["R"],'
        '"z":"C","t":"2021-02-22T15:51:45.335689322Z"}',
        Quote,
        dict(
            symbol="AMD",
            bid_exchange="U",
            bid_price=87.66,
            bid_size=1,
            ask_exchange="Q",
            ask_price=87.68,
            ask_size=4,
            conditions=("R",),
            tape="C",
        ),
    ),
    (
        Family.STOCKS,
        '{"T":"b","S":"SPY","o":388.985,"h":389.13,"l":388.975,"c":389.12,"v":49378,"n":461,'
        '"vw":389.062639,"t":"2021-02-22T19:15:00Z"}',
        Bar,
        dict(
            symbol="SPY",
            open=388.985,
            high=389.13,
            low=388.975,
            close=389.12,
            volume=49378,
            trade_count=461,
            vwap=389.062639,
        ),
    ),
    (
        Family.STOCKS,
        '{"T":"d","S":"SPY","o":388.985,"h":389.13,"l":388.975,"c":389.12,"v":749378,"n":5120,'
        '"vw":388.91,"t":"2021-02-22T05:00:00Z"}',
        DailyBar,
        dict(symbol="SPY", volume=749378, trade_count=5120, vwap=388.91),
    ),
    (
        Family.STOCKS,
        '{"T":"u","S":"AAPL","o":100,"h":101.2,"l":98.67,"c":101.3,"v":2570,"n":1235,'
        '"vw":100.123457,"t":"2021-03-05T16:00:00Z"}',
        UpdatedBar,
        dict(symbol="AAPL", open=100.0, high=101.2, low=98.67, close=101.3, volume=2570),
    ),
    (
        Family.STOCKS,
        '{"T":"s","S":"AAPL","sc":"H","sm":"Trading Halt","rc":"T12",'
        '"rm":"Trading Halted; For information requested by NASDAQ","t":"2021-02-22T19:15:00Z",'
        '"z":"C"}',
        TradingStatus,
        dict(
            symbol="AAPL",
            status_code="H",
            status_message="Trading Halt",
            reason_code="T12",
            reason_message="Trading Halted; For information requested by NASDAQ",
            tape="C",
        ),
    ),
    (
        Family.STOCKS,
        '{"T":"l","S":"IONM","u":3.24,"d":2.65,"i":"B","t":"2023-04-06T13:34:45.565004401Z",'
        '"z":"C"}',
        Luld,
        dict(symbol="IONM", limit_up_price=3.24, limit_down_price=2.65, indicator="B", tape="C"),
    ),
    (
        Family.STOCKS,
        '{"T":"c","S":"EEM","x":"M","oi":52983525033527,"op":39.1582,"os":440000,'
        '"oc":[" ","7"],"ci":52983525034326,"cp":39.1809,"cs":440000,"cc":[" ","7"],"z":"B",'
        '"t":"2023-04-06T14:25:06.542305024Z"}',
        Correction,
        dict(
            symbol="EEM",
            exchange="M",
            original_id=52983525033527,
            original_price=39.1582,
            original_size=440000,
            original_conditions=(" ", "7"),
            corrected_id=52983525034326,
            corrected_price=39.1809,
            corrected_size=440000,
            corrected_conditions=(" ", "7"),
            tape="B",
        ),
    ),
    (
        Family.STOCKS,
        '{"T":"x","S":"GOOGL","i":465,"x":"D","p":105.31,"s":300,"a":"C","z":"C",'
        '"t":"2023-04-06T13:15:42.83540958Z"}',
        CancelError,
        dict(symbol="GOOGL", id=465, exchange="D", price=105.31, size=300, action="C", tape="C"),
    ),
    (
        Family.STOCKS,
        '{"T":"i","S":"INAQU","p":9.12,"z":"C","t":"2024-12-13T19:58:09.242138635Z"}',
        Imbalance,
        dict(symbol="INAQU", price=9.12, tape="C", paired_shares=None, side=None),
    ),
    (
        Family.TEST,
        '{"T":"b","S":"FAKEPACA","o":134,"h":136,"l":133.5,"c":135,"v":10,"n":3,"vw":134.5,'
        '"t":"2021-02-22T19:15:00Z"}',
        Bar,
        dict(symbol="FAKEPACA", open=134.0, high=136.0, close=135.0, volume=10),
    ),
    (
        Family.CRYPTO,
        '{"T":"t","S":"AVAX/USD","p":47.299,"s":29.205707815,'
        '"t":"2024-03-12T10:27:48.858228144Z","i":3447222699101865076,"tks":"S"}',
        CryptoTrade,
        dict(
            symbol="AVAX/USD",
            price=47.299,
            size=29.205707815,
            id=3447222699101865076,
            taker_side="S",
        ),
    ),
    (
        Family.CRYPTO,
        '{"T":"q","S":"BAT/USD","bp":0.35718,"bs":13445.46,"ap":0.3581,"as":13561.902,'
        '"t":"2024-03-12T10:29:43.111588173Z"}',
        CryptoQuote,
        dict(
            symbol="BAT/USD",
            bid_price=0.35718,
            bid_size=13445.46,
            ask_price=0.3581,
            ask_size=13561.902,
        ),
    ),
    (
        Family.CRYPTO,
        '{"T":"b","S":"BTC/USD","o":26675.04,"h":26695.36,"l":26668.79,"c":26688.7,'
        '"v":3.227759152,"t":"2023-03-17T12:28:00Z","n":93,"vw":26679.5912436798}',
        CryptoBar,
        dict(
            symbol="BTC/USD",
            open=26675.04,
            volume=3.227759152,
            trade_count=93,
            vwap=26679.5912436798,
        ),
    ),
    (
        Family.CRYPTO,
        '{"T":"d","S":"BTC/USD","o":26675.04,"h":26695.36,"l":26668.79,"c":26688.7,"v":3,'
        '"t":"2023-03-17T00:00:00Z","n":93,"vw":26679.5}',
        CryptoDailyBar,
        dict(symbol="BTC/USD", volume=3.0),
    ),
    (
        Family.CRYPTO,
        '{"T":"u","S":"BTC/USD","o":1,"h":2,"l":0.5,"c":1.5,"v":0,"t":"2023-03-17T12:27:00Z",'
        '"n":0,"vw":0}',
        CryptoUpdatedBar,
        dict(symbol="BTC/USD", open=1.0, volume=0.0, trade_count=0),
    ),
    (
        Family.CRYPTO,
        '{"T":"o","S":"BTC/USD","t":"2024-03-12T10:38:50.79613221Z",'
        '"b":[{"p":71859.53,"s":0.27994},{"p":71849.4,"s":0.553986}],'
        '"a":[{"p":71939.7,"s":0.83953}],"r":true}',
        OrderBook,
        dict(
            symbol="BTC/USD",
            reset=True,
            bids=(OrderBookLevel(71859.53, 0.27994), OrderBookLevel(71849.4, 0.553986)),
            asks=(OrderBookLevel(71939.7, 0.83953),),
        ),
    ),
    (
        Family.CRYPTO,
        '{"T":"o","S":"MKR/USD","t":"2024-03-12T10:39:39.445492807Z","b":[],'
        '"a":[{"p":2614.587,"s":12.5308}]}',
        OrderBook,
        dict(symbol="MKR/USD", reset=False, bids=(), asks=(OrderBookLevel(2614.587, 12.5308),)),
    ),
    (
        Family.CRYPTO,
        '{"T":"o","S":"CRV/USD","t":"2024-03-12T10:39:40.501160019Z","b":[{"p":0.7904,"s":0}],'
        '"a":[]}',
        OrderBook,
        dict(symbol="CRV/USD", bids=(OrderBookLevel(0.7904, 0.0),), asks=()),
    ),
    (
        Family.OPTIONS,
        '{"T":"t","S":"AAPL240315C00172500","t":"2024-03-11T13:35:35.13312256Z","p":2.84,"s":1,'
        '"x":"N","c":"S"}',
        OptionTrade,
        dict(symbol="AAPL240315C00172500", price=2.84, size=1, exchange="N", condition="S"),
    ),
    (
        Family.OPTIONS,
        '{"T":"q","S":"SPXW240327P04925000","t":"2024-03-12T11:59:38.897261568Z","bx":"C",'
        '"bp":9.46,"bs":53,"ax":"C","ap":9.66,"as":38,"c":"A"}',
        OptionQuote,
        dict(
            symbol="SPXW240327P04925000",
            bid_exchange="C",
            bid_price=9.46,
            bid_size=53,
            ask_exchange="C",
            ask_price=9.66,
            ask_size=38,
            condition="A",
        ),
    ),
]

NEWS = (
    '{"T":"n","id":24918784,"headline":"Corsair Reports Purchase Of Majority Ownership In '
    'iDisplay, No Terms Disclosed","summary":"Corsair Gaming, Inc. ... acquired a 51% stake in '
    'iDisplay","author":"Benzinga Newsdesk","created_at":"2022-01-05T22:00:37Z",'
    '"updated_at":"2022-01-05T22:00:38Z","url":"https://www.benzinga.com/m-a/22/01/24918784/'
    'corsair-reports-purchase-of-majority-ownership-in-idisplay-no-terms-disclosed",'
    '"content":"<p>Corsair Gaming, Inc. ...</p>","symbols":["CRSR"],"source":"benzinga"}'
)


def _case_id(case: tuple[Family, str, type[Any], dict[str, Any]]) -> str:
    family, text, _, _ = case
    return f"{family.value}-{orjson.loads(text)['T']}-{text[text.index('S') + 4 :][:8]}"


# ---------------------------------------------------------------- every data message


@pytest.mark.parametrize("enc", ENCODINGS)
@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_every_data_message(
    case: tuple[Family, str, type[Any], dict[str, Any]], enc: tuple[str, int]
) -> None:
    family, text, cls, expected = case
    encoding, width = enc
    message = orjson.loads(text)
    codec = Codec(family, encoding)  # type: ignore[arg-type]
    [record] = codec.decode(frame([message], encoding, width), RECEIVED)
    assert type(record) is cls
    assert isinstance(record, MarketRecord)
    for name, value in expected.items():
        got = getattr(record, name)
        assert got == value, name
        assert type(got) is type(value), name  # ints where floats are expected become floats
    assert record.timestamp_ns == ns_of(message["t"])
    assert record.received_ns == RECEIVED
    assert record.lag_ns == RECEIVED - ns_of(message["t"])
    assert record.CHANNEL


@pytest.mark.parametrize("enc", ENCODINGS)
def test_news(enc: tuple[str, int]) -> None:
    encoding, width = enc
    message = orjson.loads(NEWS)
    [news] = Codec("news", encoding).decode(  # type: ignore[arg-type]
        frame([message], encoding, width), RECEIVED
    )
    assert isinstance(news, News)
    assert news.id == 24918784
    assert news.headline.startswith("Corsair Reports")
    assert news.symbols == ("CRSR",)
    assert news.source == "benzinga"
    assert news.content == "<p>Corsair Gaming, Inc. ...</p>"
    assert news.created_at_ns == ns_of("2022-01-05T22:00:37Z")
    assert news.timestamp_ns == news.created_at_ns
    assert news.created_at == dt.datetime(2022, 1, 5, 22, 0, 37, tzinfo=dt.UTC)
    assert news.updated_at == dt.datetime(2022, 1, 5, 22, 0, 38, tzinfo=dt.UTC)
    assert news.received_ns == RECEIVED


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_news_with_empty_symbols_and_no_updated_at(encoding: str) -> None:
    message = {
        "T": "n",
        "id": 1,
        "headline": "h",
        "created_at": "2022-01-05T22:00:37.5Z",
        "symbols": [],
        "images": [{"size": "large", "url": "x"}],
    }
    [news] = Codec("news", encoding).decode(frame([message], encoding))  # type: ignore[arg-type]
    assert isinstance(news, News)
    assert news.symbols == ()
    assert news.updated_at is None
    assert news.summary == news.content == news.url == ""
    assert news.created_at_ns == ns_of("2022-01-05T22:00:37.5Z")


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_batched_frame_keeps_wire_order(encoding: str) -> None:
    messages = [orjson.loads(text) for fam, text, _, _ in CASES if fam is Family.STOCKS]
    out = Codec("iex", encoding).decode(frame(messages, encoding), RECEIVED)  # type: ignore[arg-type]
    assert [type(r) for r in out] == [cls for fam, _, cls, _ in CASES if fam is Family.STOCKS]
    assert all(isinstance(r, MarketRecord) and r.received_ns == RECEIVED for r in out)


# ---------------------------------------------------------------- numbers and timestamps


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_crypto_trade_id_beyond_2_53_is_exact(encoding: str) -> None:
    message = orjson.loads(CASES[11][1])
    [trade] = Codec("crypto", encoding).decode(frame([message], encoding))  # type: ignore[arg-type]
    assert trade.id == 3447222699101865076  # type: ignore[union-attr]
    assert float(trade.id) != trade.id  # type: ignore[union-attr]  # a double would round it


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
@pytest.mark.parametrize("trade_id", [2**53 + 1, 2**63 - 1, 2**64 - 1])
def test_64_bit_ids_are_exact(encoding: str, trade_id: int) -> None:
    message = {"T": "t", "S": "A", "i": trade_id, "p": 1, "s": 1, "t": "2021-02-22T15:51:44Z"}
    [trade] = Codec("stocks", encoding).decode(frame([message], encoding))  # type: ignore[arg-type]
    assert trade.id == trade_id  # type: ignore[union-attr]


@pytest.mark.parametrize("digits", range(10))
def test_json_timestamps_with_0_to_9_fractional_digits(digits: int) -> None:
    frac = "123456789"[:digits]
    text = "2021-02-22T15:51:44" + (f".{frac}" if digits else "") + "Z"
    message = {"T": "t", "S": "A", "p": 1, "s": 1, "t": text}
    [trade] = Codec("stocks").decode(orjson.dumps([message]))
    expected = 1614009104 * 1_000_000_000 + int(frac.ljust(9, "0") or "0")
    assert trade.timestamp_ns == expected  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("ns", "width"),
    [
        (1614009104 * 10**9, 4),
        (0, 4),
        (2**32 - 1, 4),
        (1614009104_335689322, 8),
        (1614009104_000000001, 8),
        (1614009104_999999999, 8),
        ((2**34 - 1) * 10**9 + 999_999_999, 8),
        (1614009104_335689322, 12),
        (2**40 * 10**9 + 7, 12),
        (-1_000_000_000 + 5, 12),  # before 1970: negative seconds need the 12-byte form
    ],
)
def test_msgpack_timestamp_widths_exact(ns: int, width: int) -> None:
    if width == 4:
        ns = (ns // 10**9) * 10**9
    message = {"T": "q", "S": "A", "bp": 1, "bs": 1, "ap": 2, "as": 1, "t": ts_ext(ns, width)}
    payload = packb([message])
    assert b"\xff" + ts_ext(ns, width).data in payload
    [quote] = Codec("stocks", "msgpack").decode(payload, RECEIVED)
    assert quote.timestamp_ns == ns  # type: ignore[union-attr]
    # msgpack's own Timestamp picks the width by itself; the result must agree.
    auto = {**message, "t": msgpack.Timestamp.from_unix_nano(ns)}
    [again] = Codec("stocks", "msgpack").decode(msgpack.packb([auto]))
    assert again.timestamp_ns == ns  # type: ignore[union-attr]


def test_msgpack_timestamp_as_string_is_accepted() -> None:
    message = {"T": "t", "S": "A", "p": 1, "s": 1, "t": "2021-02-22T15:51:44.208Z"}
    [trade] = Codec("stocks", "msgpack").decode(msgpack.packb([message]))
    assert trade.timestamp_ns == ns_of("2021-02-22T15:51:44.208Z")  # type: ignore[union-attr]


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_integer_prices_become_floats(encoding: str) -> None:
    message = {
        "T": "q",
        "S": "A",
        "bp": 87,
        "bs": 1,
        "ap": 88,
        "as": 4,
        "t": "2021-02-22T15:51:44Z",
    }
    [quote] = Codec("stocks", encoding).decode(frame([message], encoding))  # type: ignore[arg-type]
    assert isinstance(quote, Quote)
    assert quote.bid_price == 87.0 and type(quote.bid_price) is float


# ---------------------------------------------------------------- control messages


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
@pytest.mark.parametrize("family", list(Family))
def test_control_messages_in_every_family(encoding: str, family: Family) -> None:
    codec = Codec(family, encoding)  # type: ignore[arg-type]
    [ok] = codec.decode(frame([{"T": "success", "msg": "connected"}], encoding), RECEIVED)
    assert ok == SuccessMessage(msg="connected")
    [err] = codec.decode(
        frame([{"T": "error", "code": 406, "msg": "connection limit exceeded"}], encoding)
    )
    assert err == ErrorMessage(code=406, msg="connection limit exceeded")
    [ack] = codec.decode(frame([{"T": "subscription", "trades": ["AAPL"]}], encoding))
    assert isinstance(ack, SubscriptionMessage)
    assert ack.trades == ("AAPL",)


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_stock_ack_with_every_list_null_lists_and_unknown_lists(encoding: str) -> None:
    ack = {
        "T": "subscription",
        "trades": ["AAPL"],
        "quotes": ["AMD", "CLDR"],
        "bars": ["*"],
        "updatedBars": [],
        "dailyBars": ["VOO"],
        "statuses": ["*"],
        "lulds": None,
        "imbalances": None,
        "corrections": ["AAPL"],
        "cancelErrors": ["AAPL"],
        "futureChannel": ["X"],
    }
    [msg] = Codec("sip", encoding).decode(frame([ack], encoding))  # type: ignore[arg-type]
    assert isinstance(msg, SubscriptionMessage)
    assert msg.quotes == ("AMD", "CLDR")
    assert msg.bars == ("*",)
    assert msg.updatedBars == ()
    assert msg.lulds is None and msg.imbalances is None
    assert msg.news is None  # missing
    channels = msg.channels()
    assert channels["lulds"] == frozenset() and channels["news"] == frozenset()
    assert channels["corrections"] == {"AAPL"}


@pytest.mark.parametrize(
    ("family", "ack"),
    [
        (
            "crypto",
            '{"T":"subscription","trades":[],"quotes":[],"orderbooks":[],'
            '"bars":["BTC/USD"],"updatedBars":[],"dailyBars":[]}',
        ),
        ("news", '{"T":"subscription","news":["*"]}'),
        ("test", '{"T":"subscription","trades":[],"quotes":["FAKEPACA"],"bars":["FAKEPACA"]}'),
        ("options", '{"T":"subscription","trades":["AAPL240315C00172500"],"quotes":[]}'),
    ],
)
def test_documented_acks(family: str, ack: str) -> None:
    for encoding in ("json", "msgpack"):
        [msg] = Codec(family, encoding).decode(frame([orjson.loads(ack)], encoding))
        assert isinstance(msg, SubscriptionMessage)
        for key, value in orjson.loads(ack).items():
            if key != "T":
                assert getattr(msg, key) == tuple(value)


# ---------------------------------------------------------------- tolerance and salvage


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_extra_unknown_fields_are_ignored(encoding: str) -> None:
    message = {
        "T": "t",
        "S": "AAPL",
        "i": 1,
        "x": "V",
        "p": 1.5,
        "s": 2,
        "c": [],
        "z": "C",
        "t": "2021-02-22T15:51:44Z",
        "r": "2021-02-22T15:51:44.1Z",
        "u": "x",
        "nested": {"deep": [1, 2, {"x": None}]},
    }
    [trade] = Codec("stocks", encoding).decode(frame([message], encoding))  # type: ignore[arg-type]
    assert isinstance(trade, Trade) and trade.price == 1.5


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_imbalance_optional_keys(encoding: str) -> None:
    message = {
        "T": "i",
        "S": "X",
        "p": 9.12,
        "z": "C",
        "t": "2024-12-13T19:58:09Z",
        "ps": 100,
        "is": 50,
        "side": "B",
        "at": "O",
    }
    [imb] = Codec("stocks", encoding).decode(frame([message], encoding))  # type: ignore[arg-type]
    assert isinstance(imb, Imbalance)
    assert (imb.paired_shares, imb.imbalance_shares, imb.side, imb.auction_type) == (
        100,
        50,
        "B",
        "O",
    )


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_unknown_type_becomes_unknown_not_error(encoding: str) -> None:
    pricing = {"T": "p", "S": "BTC-PERP", "t": "2022-05-27T10:18:00Z", "ip": 50702.8}
    trade = orjson.loads(CASES[11][1])
    out = Codec("crypto", encoding).decode(  # type: ignore[arg-type]
        frame([trade, pricing, trade], encoding), RECEIVED
    )
    assert [type(x) for x in out] == [CryptoTrade, Unknown, CryptoTrade]
    unknown = out[1]
    assert isinstance(unknown, Unknown)
    assert unknown.type == "p"
    assert unknown.raw["S"] == "BTC-PERP" and unknown.raw["ip"] == 50702.8
    assert unknown.received_ns == RECEIVED
    assert all(x.received_ns == RECEIVED for x in out)  # type: ignore[union-attr]


def test_a_t_code_of_another_family_is_unknown() -> None:
    book = orjson.loads(CASES[16][1])
    [item] = Codec("stocks").decode(orjson.dumps([book]))
    assert isinstance(item, Unknown) and item.type == "o"
    [item] = Codec("news").decode(orjson.dumps([orjson.loads(CASES[0][1])]))
    assert isinstance(item, Unknown) and item.type == "t"


BAD_MESSAGES: list[tuple[Any, str]] = [
    ({"T": "t", "S": "AAPL", "s": 1, "t": "2021-02-22T15:51:44Z"}, "bad 't' message"),  # no p
    (
        {"T": "q", "S": "A", "bp": "x", "bs": 1, "ap": 1, "as": 1, "t": "2021-02-22T15:51:44Z"},
        "bad 'q' message",
    ),
    ({"S": "AAPL", "p": 1}, "no T"),
    ({"T": 7, "S": "AAPL"}, "T is not a string"),
    ([1, 2], "not a map"),
    ("text", "not a map"),
    (None, "not a map"),
]


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_mixed_frame_salvages_good_messages_one_error_per_bad(encoding: str) -> None:
    good = [orjson.loads(text) for fam, text, _, _ in CASES if fam is Family.STOCKS]
    messages: list[Any] = []
    for i, (bad, _) in enumerate(BAD_MESSAGES):
        messages += [good[i % len(good)], bad]
    messages.append(good[-1])
    out = Codec("stocks", encoding).decode(frame(messages, encoding), RECEIVED)  # type: ignore[arg-type]
    assert len(out) == len(messages)
    for item, message, index in zip(out, messages, range(len(messages)), strict=True):
        if index % 2 == 1 and index < 2 * len(BAD_MESSAGES):
            assert isinstance(item, FrameError), message
            assert BAD_MESSAGES[index // 2][1] in item.reason
            assert item.received_ns == RECEIVED
            assert item.excerpt  # the offending message, not the whole frame
        else:
            assert isinstance(item, MarketRecord)
            assert item.received_ns == RECEIVED


def test_bad_message_error_excerpt_is_that_message_truncated() -> None:
    bad = {"T": "t", "S": "A" * 1000}
    [err] = Codec("stocks").decode(orjson.dumps([bad]))
    assert isinstance(err, FrameError)
    assert err.excerpt == orjson.dumps(bad)[: FrameError.EXCERPT_LIMIT]
    assert err.truncated


@pytest.mark.parametrize(
    ("encoding", "payload", "reason"),
    [
        ("json", b"not json", "not a JSON frame"),
        ("json", b"", "not a JSON frame"),
        ("json", b"\xff\xfe", "not a JSON frame"),
        ("json", '{"T":"success","msg":"connected"}', "not an array"),
        ("json", b"42", "not an array"),
        ("json", b'[{"T":"t"}', "not a JSON frame"),
        ("json", b"[" * 100_000, "not a JSON frame"),
        ("json", "[\ud800]", "not a JSON frame"),
        ("msgpack", b"", "not a MessagePack frame"),
        ("msgpack", b"\xc1", "not a MessagePack frame"),
        ("msgpack", msgpack.packb({"T": "success", "msg": "connected"}), "not an array"),
        ("msgpack", msgpack.packb([{"T": "success"}])[:-3], "not a MessagePack frame"),
        ("msgpack", b"\x91" * 100_000, "not a MessagePack frame"),
        ("msgpack", "not json either", "not a JSON frame"),
        ("msgpack", b'{"stream":"trade_updates"}', "JSON frame is not an array"),
    ],
)
def test_undecodable_frame_gives_exactly_one_error(
    encoding: str, payload: bytes | str, reason: str
) -> None:
    out = Codec("stocks", encoding).decode(payload, RECEIVED)  # type: ignore[arg-type]
    assert len(out) == 1
    [err] = out
    assert isinstance(err, FrameError)
    assert reason in err.reason
    assert err.received_ns == RECEIVED
    assert len(err.excerpt) <= FrameError.EXCERPT_LIMIT


def test_empty_frame_array_is_empty() -> None:
    assert Codec("stocks").decode(b"[]") == []
    assert Codec("stocks", "msgpack").decode(b"\x90") == []


def test_empty_map_in_msgpack_array_is_skipped() -> None:
    ok = {"T": "success", "msg": "authenticated"}
    out = Codec("stocks", "msgpack").decode(msgpack.packb([{}, ok, {}]))
    assert out == [SuccessMessage(msg="authenticated")]


def test_empty_object_in_json_array_is_an_error() -> None:
    [err] = Codec("stocks").decode(b"[{}]")
    assert isinstance(err, FrameError) and "no T" in err.reason


# ---------------------------------------------------------------- payload kinds and stamping


def test_json_codec_accepts_str_bytes_bytearray_memoryview() -> None:
    text = "[" + CASES[1][1] + "]"
    codec = Codec("stocks")
    expected = codec.decode(text.encode())
    for payload in (text, text.encode(), bytearray(text.encode()), memoryview(text.encode())):
        assert codec.decode(payload) == expected
    assert isinstance(expected[0], Quote)


def test_reused_bytearray_does_not_change_decoded_timestamps() -> None:
    buffer = bytearray(("[" + CASES[1][1] + "]").encode())
    [quote] = Codec("stocks").decode(buffer)
    before = quote.timestamp_ns  # type: ignore[union-attr]
    buffer[:] = b"X" * len(buffer)
    assert quote.timestamp_ns == before  # type: ignore[union-attr]


@pytest.mark.parametrize("payload", ["[{}]", b' [{"T":"success","msg":"connected"}]'])
def test_msgpack_codec_accepts_json(payload: str | bytes) -> None:
    codec = Codec("stocks", "msgpack")
    text = '[{"T":"success","msg":"connected"}]'
    assert codec.decode(text) == [SuccessMessage(msg="connected")]
    assert codec.decode(text.encode()) == [SuccessMessage(msg="connected")]
    out = codec.decode(payload)
    assert len(out) == 1


def test_received_ns_zero_leaves_records_unstamped() -> None:
    [trade] = Codec("stocks").decode("[" + CASES[0][1] + "]")
    assert trade.received_ns == 0  # type: ignore[union-attr]


def test_stamping_a_frame_mixing_control_and_data() -> None:
    frame_ = "[" + ",".join([CASES[0][1], '{"T":"success","msg":"x"}', CASES[1][1]]) + "]"
    out = Codec("stocks").decode(frame_, RECEIVED)
    assert [type(x) for x in out] == [Trade, SuccessMessage, Quote]
    assert out[0].received_ns == out[2].received_ns == RECEIVED  # type: ignore[union-attr]


# ---------------------------------------------------------------- encoding


def test_opcode_and_repr() -> None:
    assert Codec("stocks").opcode == 1
    assert Codec("stocks", "msgpack").opcode == 2
    assert repr(Codec("opra", "msgpack")) == "Codec('options', 'msgpack')"


def test_family_from_enum_value_or_feed_name() -> None:
    assert Codec(Family.CRYPTO).family is Family.CRYPTO
    assert Codec("crypto").family is Family.CRYPTO
    assert Codec("crypto/eu-1").family is Family.CRYPTO
    assert Codec("iex").family is Family.STOCKS
    assert Codec("v2/test").family is Family.TEST
    with pytest.raises(ValueError, match="unknown family"):
        Codec("nasdaq")
    with pytest.raises(ValueError, match="encoding"):
        Codec("iex", "xml")  # type: ignore[arg-type]


def _loads(codec: Codec, wire: bytes | str) -> Any:
    if codec.encoding == "json":
        assert isinstance(wire, str)
        return orjson.loads(wire)
    assert isinstance(wire, bytes)
    return msgpack.unpackb(wire)


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_encoders_round_trip(encoding: str) -> None:
    codec = Codec("iex", encoding)  # type: ignore[arg-type]
    assert _loads(codec, codec.encode_auth("K", 'S\u00e9cret"')) == {
        "action": "auth",
        "key": "K",
        "secret": 'S\u00e9cret"',
    }
    sub = codec.encode_subscribe(
        {
            "trades": ["AAPL", "MSFT", "AAPL"],
            "quotes": [],
            Channel.BARS: ("*",),
            "dailyBars": {"B", "A"},
            "lulds": iter(["X"]),
            "statuses": "SPY",
        }
    )
    assert _loads(codec, sub) == {
        "action": "subscribe",
        "trades": ["AAPL", "MSFT"],
        "bars": ["*"],
        "dailyBars": ["A", "B"],
        "lulds": ["X"],
        "statuses": ["SPY"],
    }
    unsub = codec.encode_unsubscribe({"quotes": ["AMD"], "trades": ()})
    assert _loads(codec, unsub) == {"action": "unsubscribe", "quotes": ["AMD"]}
    message = {"action": "subscribe", "news": ["*"], "big": 2**63 + 1, "f": 1.5, "n": None}
    assert _loads(codec, codec.encode(message)) == message
    key_order = list(_loads(codec, codec.encode_subscribe({"trades": ["A"]})))
    assert key_order[0] == "action"


def test_json_encoding_is_compact_text() -> None:
    wire = Codec("iex").encode_subscribe({"trades": ["AAPL"]})
    assert wire == '{"action":"subscribe","trades":["AAPL"]}'


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_codec_decodes_what_it_encodes(encoding: str) -> None:
    codec = Codec("stocks", encoding)  # type: ignore[arg-type]
    wire = codec.encode([{"T": "error", "code": 400, "msg": "invalid syntax"}])
    assert codec.decode(wire) == [ErrorMessage(code=400, msg="invalid syntax")]


def test_family_unions_cover_the_protocol_table() -> None:
    tags = {f: {c.__struct_config__.tag for c in classes} for f, classes in FAMILY_RECORDS.items()}
    control = {"success", "error", "subscription"}
    assert tags[Family.STOCKS] == {"t", "q", "b", "d", "u", "s", "l", "c", "x", "i"} | control
    assert tags[Family.TEST] == tags[Family.STOCKS]
    assert tags[Family.CRYPTO] == {"t", "q", "b", "d", "u", "o"} | control
    assert tags[Family.OPTIONS] == {"t", "q"} | control
    assert tags[Family.NEWS] == {"n"} | control


def test_decoded_alias_is_exported() -> None:
    assert "Decoded" in rxalpaca.codec.__all__
    assert Decoded is not None


def test_docstring_examples() -> None:
    result = doctest.testmod(rxalpaca.codec, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_codec_imports_only_layer_0_and_its_libraries() -> None:
    import ast
    import sys
    from pathlib import Path

    tree = ast.parse(Path(rxalpaca.codec.__file__).read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(("." * node.level) + (node.module or "").split(".")[0])
    allowed = {".errors", ".feeds", ".models", "msgspec", "orjson", "__future__"}
    assert imported - allowed <= set(sys.stdlib_module_names)


def _all_decoded(items: list[Decoded]) -> list[str]:  # pragma: no cover - typing aid
    return [type(i).__name__ for i in items]


# ---------------------------------------------------------------- against the test server's encoder


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
@pytest.mark.parametrize(
    ("family", "symbols"),
    [
        (Family.STOCKS, ["AAPL", "MSFT"]),
        (Family.TEST, ["FAKEPACA"]),
        (Family.CRYPTO, ["BTC/USD", "ETH/USD"]),
        (Family.OPTIONS, ["AAPL240315C00172500"]),
        (Family.NEWS, ["AAPL"]),
    ],
)
def test_decodes_everything_the_test_server_sends(
    family: Family, symbols: list[str], encoding: str
) -> None:
    """rxalpaca.testing encodes with its own plain path (orjson/msgpack by hand, S31)."""
    market_mod = pytest.importorskip("rxalpaca.testing.market")
    wire = pytest.importorskip("rxalpaca.testing.wire")
    market = market_mod.Market(symbols, family=family, seed=3)
    records = market.records(500)
    payload = wire.encode_frame(records, wire.Encoding(encoding))
    out = Codec(family, encoding).decode(payload, RECEIVED)  # type: ignore[arg-type]
    assert len(out) == len(records)
    for message, item in zip(records, out, strict=True):
        assert not isinstance(item, FrameError | Unknown), (message, item)
        assert item.__struct_config__.tag == message["T"]
        if isinstance(item, MarketRecord):
            assert item.symbol == message["S"]
            assert item.timestamp_ns == wire.to_nanos(message["t"])
        if isinstance(item, News):
            assert item.created_at_ns == wire.to_nanos(message["created_at"])
            assert item.symbols == tuple(message["symbols"])


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_strict_timestamps_turn_a_malformed_time_into_a_frame_error(encoding: str) -> None:
    good = {
        "T": "q",
        "S": "A",
        "bp": 1,
        "bs": 1,
        "ap": 1,
        "as": 1,
        "t": "2021-02-22T15:51:45.335689322Z",
    }
    bad = {**good, "S": "B", "t": "2021-02-22T15:5a:45.3Z"}
    lax = Codec("stocks", encoding)  # type: ignore[arg-type]
    strict = Codec("stocks", encoding, strict_timestamps=True)  # type: ignore[arg-type]
    frame = strict.encode([good, bad])
    quote, error = strict.decode(frame, 5)
    assert isinstance(quote, Quote) and quote.timestamp_ns == 1614009105335689322
    assert isinstance(error, FrameError) and error.received_ns == 5
    assert "$.t" in error.reason  # the FrameError names the field
    lazy = lax.decode(frame)[1]  # the default defers parsing: it fails only when read
    with pytest.raises(ValueError, match=r"Quote\.raw_time \(wire field 't'\)"):
        _ = lazy.timestamp_ns  # type: ignore[union-attr]
    assert strict.decode(strict.encode([good]))[0] == lax.decode(lax.encode([good]))[0]


_GOOD_QUOTE: dict[str, Any] = {"T": "q", "S": "A", "bp": 1, "bs": 1, "ap": 1, "as": 1}


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
@pytest.mark.parametrize(
    ("time", "readable"),
    [
        ("2021-02-22T15:51:44.335689322Z", True),
        ("2021-02-22T15:51:44.1234567890Z", True),  # a 10th digit: dropped, as msgspec does
        ("2021-02-22T16:51:44+0100", True),  # no colon in the offset
        ("2021-02-22t15:51:44z", True),
        ("2021-02-22T15:51:44", False),  # no zone: msgspec's naive datetime, refused here
        ("2021-02-22T24:00:00Z", False),
        ("2021-02-30T00:00:00Z", False),
        ("2021-02-22T15x51x44Z", False),
        (None, False),  # null
        (12, False),  # a number
    ],
)
def test_strict_timestamps_deliver_exactly_what_reads(
    encoding: str, time: object, readable: bool
) -> None:
    """strict_timestamps and ``timestamp_ns`` agree on every form: no delivered time fails."""
    lax = Codec("stocks", encoding)  # type: ignore[arg-type]
    strict = Codec("stocks", encoding, strict_timestamps=True)  # type: ignore[arg-type]
    frame = lax.encode([{**_GOOD_QUOTE, "t": time}])
    [lazy] = lax.decode(frame)
    [checked] = strict.decode(frame)
    assert isinstance(lazy, Quote)
    if readable:
        assert checked == lazy and isinstance(checked.timestamp_ns, int)
    else:
        assert isinstance(checked, FrameError)
        with pytest.raises(ValueError, match="wire field 't'"):
            _ = lazy.timestamp_ns


def test_strict_timestamps_ignore_keys_the_records_do_not_hold() -> None:
    """Unknown keys are ignored (§4.1), even when named like another family's times."""
    stocks = Codec("stocks", strict_timestamps=True)
    quote = {**_GOOD_QUOTE, "t": "2021-02-22T15:51:44Z", "created_at": "x", "updated_at": 1}
    assert isinstance(stocks.decode(orjson.dumps([quote]))[0], Quote)
    news = Codec("news", strict_timestamps=True)
    article = {"T": "n", "id": 1, "created_at": "2022-01-05T22:00:37Z", "t": "x"}
    assert isinstance(news.decode(orjson.dumps([article]))[0], News)


def test_strict_timestamps_check_json_frames_on_a_msgpack_codec() -> None:
    strict = Codec("stocks", "msgpack", strict_timestamps=True)
    good = {**_GOOD_QUOTE, "t": "2021-02-22T15:51:45.335689322Z"}
    frame = orjson.dumps([good, {**good, "S": "B", "t": "yesterday"}])
    quote, error = strict.decode(frame, 5)
    assert isinstance(quote, Quote) and quote.timestamp_ns == 1614009105335689322
    assert isinstance(error, FrameError) and b"yesterday" in error.excerpt
    assert len(Codec("stocks", "msgpack").decode(frame)) == 2  # lax: delivered, raises on read


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_strict_timestamps_check_news_times(encoding: str) -> None:
    strict = Codec("news", encoding, strict_timestamps=True)  # type: ignore[arg-type]
    news = {"T": "n", "id": 1, "created_at": "2022-01-05T22:00:37Z", "symbols": []}
    frame = strict.encode(
        [
            news,
            {**news, "id": 2, "updated_at": None},
            {**news, "id": 3, "updated_at": "2022-01-05T22:00:38Z"},
            {**news, "id": 4, "created_at": None},
            {**news, "id": 5, "updated_at": "later"},
        ]
    )
    out = strict.decode(frame)
    assert [getattr(x, "id", None) for x in out] == [1, 2, 3, None, None]
    assert all(isinstance(x, FrameError) for x in out[3:])
    lazy = Codec("news", encoding).decode(frame)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"News\.raw_created_at \(wire field 'created_at'\)"):
        _ = lazy[3].created_at_ns  # type: ignore[union-attr]
    with pytest.raises(ValueError, match=r"News\.raw_updated_at \(wire field 'updated_at'\)"):
        _ = lazy[4].updated_at_ns  # type: ignore[union-attr]


# ---------------------------------------------------------------- null lists (issue #9, item 6)


def _list_fields(cls: type[Any]) -> list[tuple[str, str]]:
    """(attribute, wire key) of every list-typed field of a record class."""
    import typing

    return [
        (f.name, f.encode_name)
        for f in msgspec.structs.fields(cls)
        if typing.get_origin(f.type) is tuple
    ]


#: One example message of every record class that has list fields (the protocol's own).
_LIST_EXAMPLES: list[tuple[Family, dict[str, Any], type[Any]]] = [
    (fam, orjson.loads(text), cls) for fam, text, cls, _ in CASES if _list_fields(cls)
]
_LIST_EXAMPLES.append((Family.NEWS, orjson.loads(NEWS), News))
#: (family, message, class, wire key): every list field of every record, set to null below.
_NULL_CASES = list(
    {
        (cls, key): (fam, orjson.dumps(msg).decode(), cls, key)
        for fam, msg, cls in reversed(_LIST_EXAMPLES)  # the first example of a class wins
        for _, key in _list_fields(cls)
    }.values()
)


def test_null_list_cases_cover_every_list_field_of_every_record() -> None:
    """A new list field in models.py must get a case here (and null-as-empty for free)."""
    every = {
        (cls, key)
        for classes in FAMILY_RECORDS.values()
        for cls in classes
        for _, key in _list_fields(cls)
    }
    assert every == {(cls, key) for _, _, cls, key in _NULL_CASES}
    # The protocol's list fields (§4): trades/quotes c, corrections oc/cc, books b/a, news.
    assert {(cls.__name__, key) for cls, key in every} == {
        ("Trade", "c"),
        ("Quote", "c"),
        ("Correction", "oc"),
        ("Correction", "cc"),
        ("OrderBook", "b"),
        ("OrderBook", "a"),
        ("News", "symbols"),
    }


@pytest.mark.parametrize("strict", [False, True], ids=["lazy", "strict"])
@pytest.mark.parametrize("encoding", ["json", "msgpack"])
@pytest.mark.parametrize(
    "case",
    _NULL_CASES,
    ids=[f"{fam.value}-{cls.__name__}-{key}" for fam, _, cls, key in _NULL_CASES],
)
def test_a_null_list_is_an_empty_list(
    case: tuple[Family, str, type[Any], str], encoding: str, strict: bool
) -> None:
    """null (MessagePack nil) means empty (§3.3, S34), as the Go SDK writes and reads it."""
    family, text, cls, key = case
    codec = Codec(family, encoding, strict_timestamps=strict)  # type: ignore[arg-type]
    message = orjson.loads(text)
    attribute = next(a for a, k in _list_fields(cls) if k == key)
    null, empty = {**message, key: None}, {**message, key: []}
    got = codec.decode(frame([message, null, empty], encoding), RECEIVED)
    assert [type(x) for x in got] == [cls, cls, cls], got
    original, from_null, from_empty = got
    assert isinstance(original, MarketRecord | News) and isinstance(from_null, MarketRecord | News)
    assert getattr(from_null, attribute) == () and type(getattr(from_null, attribute)) is tuple
    assert from_null == from_empty  # the same record, field by field
    assert original == msgspec.structs.replace(
        from_null, **{attribute: getattr(original, attribute)}
    )
    assert from_null.received_ns == RECEIVED


@pytest.mark.parametrize("strict", [False, True], ids=["lazy", "strict"])
@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_every_list_of_a_message_null_at_once(encoding: str, strict: bool) -> None:
    codec = Codec("stocks", encoding, strict_timestamps=strict)  # type: ignore[arg-type]
    correction = orjson.loads(next(t for _, t, cls, _ in CASES if cls is Correction))
    out = codec.decode(frame([{**correction, "oc": None, "cc": None}], encoding))
    assert [(x.original_conditions, x.corrected_conditions) for x in out] == [((), ())]  # type: ignore[union-attr]
    crypto = Codec("crypto", encoding, strict_timestamps=strict)  # type: ignore[arg-type]
    book = {"T": "o", "S": "BTC/USD", "t": "2024-03-12T10:39:39.445492807Z", "b": None, "a": None}
    [ob] = crypto.decode(frame([book], encoding))
    assert isinstance(ob, OrderBook) and ob.bids == ob.asks == ()


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_null_list_does_not_excuse_other_faults(encoding: str) -> None:
    """Null still fails where a list is not what the record holds, and with a real fault."""
    codec = Codec("stocks", encoding)  # type: ignore[arg-type]
    trade = orjson.loads(CASES[0][1])
    bar = orjson.loads(next(t for _, t, cls, _ in CASES if cls is Bar))
    out = codec.decode(
        frame([{**trade, "c": None, "p": "x"}, {**bar, "c": None}, {**trade, "c": None}], encoding)
    )
    assert [type(x) for x in out] == [FrameError, FrameError, Trade]
    assert "$.p" in out[0].reason and "$.c" in out[1].reason  # type: ignore[union-attr]
    # Options carry one condition string (§4.15): a null there is not a list, still an error.
    option = orjson.loads(next(t for _, t, cls, _ in CASES if cls is OptionTrade))
    [err] = Codec("options", encoding).decode(frame([{**option, "c": None}], encoding))  # type: ignore[arg-type]
    assert isinstance(err, FrameError) and "$.c" in err.reason


def test_null_list_json_frame_on_a_msgpack_codec() -> None:
    trade = orjson.loads(CASES[0][1])
    out = Codec("stocks", "msgpack").decode(orjson.dumps([{**trade, "c": None}]))
    assert [x.conditions for x in out] == [()]  # type: ignore[union-attr]


def test_json_control_messages_encode_sets_mappings_and_records_and_refuse_the_rest() -> None:
    """Control messages built from sets (sorted, so the bytes are stable), read-only
    mappings and records encode as JSON; anything else is a clear TypeError."""
    codec = Codec("iex")
    text = codec.encode({"action": "subscribe", "trades": {"MSFT", "AAPL"}})
    assert orjson.loads(text) == {"action": "subscribe", "trades": ["AAPL", "MSFT"]}
    assert orjson.loads(codec.encode({"m": MappingProxyType({"a": 1})})) == {"m": {"a": 1}}

    class Point(msgspec.Struct):
        x: int

    assert orjson.loads(codec.encode({"p": Point(3)})) == {"p": {"x": 3}}
    with pytest.raises(TypeError, match="JSON serializable: object"):
        codec.encode({"x": object()})
