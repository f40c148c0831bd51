"""The synthetic market and the server's plain wire encoder."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from typing import Any

import msgpack
import orjson
import pytest

from rxalpaca.feeds import Family
from rxalpaca.testing import AlpacaStreamServer, Market, MarketConfig
from rxalpaca.testing.market import family_of_symbol
from rxalpaca.testing.wire import (
    Encoding,
    decode_client_message,
    encode_frame,
    msgpack_timestamp,
    rfc3339,
    to_nanos,
)

from .conftest import PeerFactory

STOCK_KEYS = {
    "t": ["T", "S", "i", "x", "p", "s", "c", "z", "t"],
    "q": ["T", "S", "bx", "bp", "bs", "ax", "ap", "as", "c", "z", "t"],
    "b": ["T", "S", "o", "h", "l", "c", "v", "t", "n", "vw"],
    "d": ["T", "S", "o", "h", "l", "c", "v", "t", "n", "vw"],
    "u": ["T", "S", "o", "h", "l", "c", "v", "t", "n", "vw"],
    "s": ["T", "S", "sc", "sm", "rc", "rm", "t", "z"],
    "l": ["T", "S", "u", "d", "i", "t", "z"],
    "c": ["T", "S", "x", "oi", "op", "os", "oc", "ci", "cp", "cs", "cc", "z", "t"],
    "x": ["T", "S", "i", "x", "p", "s", "a", "z", "t"],
    "i": ["T", "S", "p", "z", "t"],
}
EXCHANGES = set("ABCDEHIJKLMNPQSTUVWXYZ")


def test_market_is_deterministic() -> None:
    a = Market(["AAPL", "MSFT"], seed=42, start_ns=0).records(500)
    b = Market(["AAPL", "MSFT"], seed=42, start_ns=0).records(500)
    c = Market(["AAPL", "MSFT"], seed=43, start_ns=0).records(500)
    assert a == b
    assert a != c


def test_stock_market_shapes_and_monotonic_timestamps() -> None:
    m = Market(
        ["AAPL", "MSFT", "TSLA"],
        seed=1,
        step_ns=200_000_000,
        mix={"q": 40, "t": 30, "s": 5, "l": 5, "i": 5, "c": 5, "x": 5},
    )
    recs = m.records(10000)
    kinds = {r["T"] for r in recs}
    assert kinds == set(STOCK_KEYS)  # bars come from the clock every minute
    last: dict[tuple[str, str], int] = {}
    for r in recs:
        assert list(r) == STOCK_KEYS[r["T"]], r
        key = (r["T"], r["S"])
        if r["T"] == "d":
            assert r["t"] >= last.get(key, 0)
        elif r["T"] != "u":
            assert r["t"] > last.get(key, 0), r
        last[key] = r["t"]
        if r["T"] == "q":
            assert r["bp"] < r["ap"] and r["bx"] in EXCHANGES and r["ax"] in EXCHANGES
            assert isinstance(r["bs"], int) and r["bs"] >= 1
        if r["T"] == "t":
            assert r["z"] in "ABC" and isinstance(r["s"], int) and isinstance(r["c"], list)
        if r["T"] == "b":
            assert r["l"] <= min(r["o"], r["c"]) <= max(r["o"], r["c"]) <= r["h"]
            assert r["t"] % 60_000_000_000 == 0


def test_crypto_market() -> None:
    m = Market(["BTC/USD", "ETH/USD"], seed=2, step_ns=100_000_000)
    assert m.family is Family.CRYPTO
    recs = m.records(3000)
    assert {r["T"] for r in recs} >= {"t", "q", "o", "b", "d"}
    trades = [r for r in recs if r["T"] == "t"]
    assert all(r["i"] > 2**53 and isinstance(r["s"], float) for r in trades)
    assert all(r["tks"] in "BS" for r in trades)
    book = m.order_book_snapshot("BTC/USD")
    assert book["r"] is True and list(book) == ["T", "S", "t", "b", "a", "r"]
    assert max(x["p"] for x in book["b"]) < min(x["p"] for x in book["a"])
    incr = [r for r in recs if r["T"] == "o"]
    assert all("r" not in r for r in incr)


def test_option_and_news_markets() -> None:
    opt = Market(["AAPL240315C00172500"], seed=3)
    assert opt.family is Family.OPTIONS
    recs = opt.records(200)
    assert {r["T"] for r in recs} == {"t", "q"}
    assert all(isinstance(r["c"], str) for r in recs)
    news = Market(["AAPL", "MSFT"], family=Family.NEWS, seed=4)
    arts = news.records(20)
    assert all(r["T"] == "n" and isinstance(r["symbols"], list) for r in arts)
    assert [a["id"] for a in arts] == sorted({a["id"] for a in arts})
    assert news.news(symbols=[])["symbols"] == []


def test_family_of_symbol() -> None:
    assert family_of_symbol("AAPL") is Family.STOCKS
    assert family_of_symbol("BRK.B") is Family.STOCKS
    assert family_of_symbol("BTC/USD") is Family.CRYPTO
    assert family_of_symbol("SPXW240327P04925000") is Family.OPTIONS
    assert MarketConfig(symbols=["ETH/USD"]).resolved_family() is Family.CRYPTO
    assert MarketConfig(symbols=["AAPL"], family=Family.TEST).resolved_family() is Family.TEST


def test_rfc3339_and_nanos() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00Z"
    assert rfc3339(1_614_009_104_208_000_000) == "2021-02-22T15:51:44.208Z"
    assert rfc3339(1_614_009_104_208_123_000) == "2021-02-22T15:51:44.208123Z"
    assert rfc3339(1_614_009_104_208_123_456) == "2021-02-22T15:51:44.208123456Z"
    assert rfc3339(1_614_009_104_000_000_010) == "2021-02-22T15:51:44.00000001Z"
    assert to_nanos(datetime(2021, 2, 22, 15, 51, 44, 208123, tzinfo=UTC)) == (
        1_614_009_104_208_123_000
    )
    assert to_nanos(datetime(1970, 1, 1, 0, 0, 1)) == 1_000_000_000  # naive → UTC


@pytest.mark.parametrize(
    ("ns", "width", "size"),
    [
        (1_700_000_000 * 10**9, "auto", 6),
        (1_700_000_000 * 10**9 + 5, "auto", 10),
        (1_700_000_000 * 10**9, 4, 6),
        (1_700_000_000 * 10**9 + 5, 4, 10),
        (1_700_000_000 * 10**9, 8, 10),
        (1_700_000_000 * 10**9, 12, 15),
        (-5, "auto", 15),
        (2**35 * 10**9, 8, 15),
    ],
)
def test_msgpack_timestamp_widths(ns: int, width: Any, size: int) -> None:
    """All three ext -1 forms, decoded by msgpack itself to the same instant."""
    data = msgpack_timestamp(ns, width)
    assert len(data) == size
    assert msgpack.unpackb(data, timestamp=2) == ns


def test_encode_frame_both_encodings() -> None:
    rec = {
        "S": "AAPL",
        "T": "q",
        "bp": 1.0,
        "ap": 1.5,
        "t": 1_000_000_001,
        "c": ["R"],
        "nested": {"x": 2.0},
    }
    js = encode_frame([rec], Encoding.JSON)
    assert js == (
        b'[{"T":"q","S":"AAPL","bp":1,"ap":1.5,"t":"1970-01-01T00:00:01.000000001Z",'
        b'"c":["R"],"nested":{"x":2}}]'
    )
    mp = msgpack.unpackb(encode_frame([rec], Encoding.MSGPACK), timestamp=2)
    assert mp == [{**rec, "T": "q"}]
    assert next(iter(mp[0])) == "T"
    assert encode_frame([], Encoding.JSON) == b"[]"
    assert msgpack.unpackb(encode_frame([rec] * 20, Encoding.MSGPACK, 12), timestamp=2) == (
        [rec] * 20
    )


def test_decode_client_message() -> None:
    obj = {"action": "auth", "key": "k", "secret": "s"}
    assert decode_client_message(orjson.dumps(obj).decode(), Encoding.JSON) == obj
    assert decode_client_message(msgpack.packb(obj), Encoding.MSGPACK) == obj
    assert decode_client_message(orjson.dumps(obj), Encoding.MSGPACK) == obj  # lenient
    with pytest.raises(ValueError, match="neither"):
        decode_client_message(orjson.dumps(obj), Encoding.MSGPACK, lenient=False)
    with pytest.raises(ValueError, match="neither"):
        decode_client_message(b"\xc1", Encoding.JSON)


@pytest.mark.timeout(20)
def test_market_rate_is_honoured(server: AlpacaStreamServer, connect: PeerFactory) -> None:
    """A market at 400 msg/s delivers about that many per second (loose bounds)."""
    peer = connect(server.url("iex"))
    peer.login()
    peer.subscribe(trades=["*"], quotes=["*"])
    start = time.monotonic()
    handle = server.start_market(
        symbols=["AAPL", "MSFT"], rate=400, batch=1, seed=5, mix={"q": 1, "t": 1}
    )
    n = 0
    while n < 200:
        n += len(peer.recv())
    elapsed = time.monotonic() - start
    server.stop_market(handle)
    assert 0.3 < elapsed < 3.0, elapsed


@pytest.mark.timeout(60)
def test_market_high_rate_preencoded(server: AlpacaStreamServer, connect: PeerFactory) -> None:
    """With a total, frames are pre-encoded: the server streams 50k messages in large
    batches well above 20k msg/s on loopback."""
    peer = connect(server.url("iex"), msgpack_mode=True)
    peer.login()
    peer.subscribe(trades=["*"], quotes=["*"])
    handle = server.start_market(
        MarketConfig(
            symbols=["AAPL", "MSFT", "SPY"],
            rate=None,
            batch=500,
            total=50_000,
            seed=9,
            mix={"q": 6, "t": 4},
            encodings=["msgpack"],
        )
    )
    start = time.monotonic()
    n = 0
    while n < 50_000:
        n += len(peer.recv())
    elapsed = time.monotonic() - start
    assert n == 50_000 and handle.done.wait(5)
    # The rate is a figure, not a pass mark (speed is measured in benchmarks, and this
    # failed at 15,000 msg/s on a loaded 2-core machine): printed for the log.
    print(f"\nmarket, pre-encoded: {50_000 / elapsed:,.0f} msg/s", file=sys.stderr)


def test_server_with_initial_market(connect: PeerFactory) -> None:
    """``AlpacaStreamServer(market=MarketConfig(...))`` streams from the start (the demo)."""
    with AlpacaStreamServer(
        market=MarketConfig(symbols=["BTC/USD"], rate=2000), test_stream=False
    ) as srv:
        peer = connect(srv.url("crypto/us"))
        peer.login()
        peer.subscribe(quotes=["BTC/USD"])
        msgs = peer.recv()
        assert msgs[0]["T"] == "q" and msgs[0]["S"] == "BTC/USD"
        peer.close()


def test_market_pauses_without_subscribers(
    server: AlpacaStreamServer, connect: PeerFactory
) -> None:
    """Nothing is generated while nobody of the market's family is subscribed."""
    peer = connect(server.url("iex"))
    peer.login()
    handle = server.start_market(symbols=["AAPL"], rate=10_000)
    time.sleep(0.05)  # asserting an absence needs a (short) wait
    assert handle.sent == 0
    peer.subscribe(quotes=["AAPL"])
    assert peer.recv()[0]["S"] == "AAPL"
    assert handle.sent > 0
    server.stop_market()
