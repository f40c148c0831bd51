"""Data delivery and wire format: S29-S33 of alpaca-stream-protocol.md §12."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import msgpack
import orjson
import pytest
import websocket

from rxalpaca.testing import AlpacaStreamServer, MarketConfig

from .conftest import PeerFactory

pytestmark = pytest.mark.timeout(20)

T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z


def trade(sym: str, i: int, **kw: Any) -> dict[str, Any]:
    return {
        "T": "t",
        "S": sym,
        "i": i,
        "x": "V",
        "p": 100.0 + i,
        "s": 10 + i,
        "c": ["@"],
        "z": "C",
        "t": T0 + i,
        **kw,
    }


def quote(sym: str, i: int) -> dict[str, Any]:
    return {
        "T": "q",
        "S": sym,
        "bx": "V",
        "bp": 99.5,
        "bs": 1,
        "ax": "V",
        "ap": 100.5,
        "as": 2,
        "c": ["R"],
        "z": "C",
        "t": T0 + i,
    }


def login(server: AlpacaStreamServer, connect: PeerFactory, feed: str = "iex", **kw: Any) -> Any:
    peer = connect(server.url(feed), **kw)
    peer.login()
    return peer


def no_more(peer: Any, wait: float = 0.1) -> None:
    peer.ws.settimeout(wait)
    with pytest.raises(websocket.WebSocketTimeoutException):
        peer.recv()
    peer.ws.settimeout(3)


def test_s29_delivery_filtered_by_subscriptions(
    server: AlpacaStreamServer, connect: PeerFactory
) -> None:
    """S29: only subscribed (channel, symbol) pairs; c/x follow trades; '*' matches all."""
    peer = login(server, connect)
    peer.subscribe(trades=["AAPL"], bars=["*"])
    records = [
        trade("AAPL", 1),
        quote("AAPL", 2),
        trade("MSFT", 3),
        {
            "T": "c",
            "S": "AAPL",
            "x": "V",
            "oi": 1,
            "op": 1.0,
            "os": 1,
            "oc": [],
            "ci": 2,
            "cp": 1.1,
            "cs": 1,
            "cc": [],
            "z": "C",
            "t": T0 + 4,
        },
        {
            "T": "x",
            "S": "AAPL",
            "i": 1,
            "x": "V",
            "p": 1.0,
            "s": 1,
            "a": "C",
            "z": "C",
            "t": T0 + 5,
        },
        {
            "T": "x",
            "S": "MSFT",
            "i": 1,
            "x": "V",
            "p": 1.0,
            "s": 1,
            "a": "C",
            "z": "C",
            "t": T0 + 6,
        },
        {
            "T": "b",
            "S": "ZZZ",
            "o": 1.0,
            "h": 1.0,
            "l": 1.0,
            "c": 1.0,
            "v": 1,
            "n": 1,
            "vw": 1.0,
            "t": T0,
        },
        {"T": "s", "S": "AAPL", "sc": "H", "sm": "", "rc": "", "rm": "", "t": T0, "z": "C"},
    ]
    assert server.publish(records) == 4
    got = [peer.recv_one() for _ in range(4)]
    assert [(m["T"], m["S"]) for m in got] == [
        ("t", "AAPL"),
        ("c", "AAPL"),
        ("x", "AAPL"),
        ("b", "ZZZ"),
    ]
    no_more(peer)


def test_s29_news_routing(server: AlpacaStreamServer, connect: PeerFactory) -> None:
    """S29: news goes out when any of its symbols is subscribed or '*' is; articles
    without symbols only to '*'."""
    by_sym = login(server, connect, "news")
    by_sym.subscribe(news=["AAPL"])
    server.set_options(connection_limit=None)
    star = login(server, connect, "news")
    star.subscribe(news=["*"])
    server.wait_for_subscriptions({"news": ["*"]})
    art = {
        "T": "n",
        "id": 1,
        "headline": "h",
        "summary": "",
        "author": "a",
        "created_at": T0,
        "updated_at": T0,
        "url": "",
        "content": "",
        "source": "benzinga",
    }
    server.publish(
        [
            {**art, "id": 1, "symbols": ["MSFT", "AAPL"]},
            {**art, "id": 2, "symbols": []},
            {**art, "id": 3, "symbols": ["TSLA"]},
        ]
    )
    assert by_sym.recv_one()["id"] == 1
    no_more(by_sym)
    assert [star.recv_one()["id"] for _ in range(3)] == [1, 2, 3]


def test_s29_publish_to_one_connection_or_feed(
    server: AlpacaStreamServer, connect: PeerFactory
) -> None:
    """S29/S33: publish(conn=…) and publish(feed=…) restrict the targets."""
    server.set_options(connection_limit=None)
    a = login(server, connect)
    b = login(server, connect, "sip")
    a.subscribe(trades=["*"])
    b.subscribe(trades=["*"])
    infos = server.wait_for(lambda cs: all(c.subscriptions["trades"] for c in cs))
    server.publish([trade("AAPL", 1)], conn=infos[1])
    assert b.recv_one()["i"] == 1
    server.publish([trade("AAPL", 2)], feed="iex")
    assert a.recv_one()["i"] == 2
    no_more(b)


def test_s30_batching(alpaca_server_factory: Any, connect: PeerFactory) -> None:
    """S30: frames hold up to batch_size messages, mixing types and symbols, per-symbol
    order preserved; the ack stays alone."""
    srv = alpaca_server_factory(batch_size=50, test_stream=False)
    peer = login(srv, connect)
    ack_frame = peer.subscribe(trades=["*"], quotes=["*"])
    assert ack_frame["T"] == "subscription"
    recs: list[dict[str, Any]] = []
    for i in range(120):
        recs.append(trade("AAPL" if i % 2 else "MSFT", i))
        recs.append(quote("SPY", i))
    srv.publish(recs)
    frames = [peer.recv() for _ in range(5)]
    assert [len(f) for f in frames] == [50, 50, 50, 50, 40]
    flat = [m for f in frames for m in f]
    assert {m["T"] for m in frames[0]} == {"t", "q"}
    assert [m["t"] for m in flat] == [orjson.loads(orjson.dumps(m))["t"] for m in flat]
    for sym in ("AAPL", "MSFT"):
        ids = [m["i"] for m in flat if m["S"] == sym]
        assert ids == sorted(ids) and len(ids) == 60
    srv.publish(recs[:10], batch=3)
    assert [len(peer.recv()) for _ in range(4)] == [3, 3, 3, 1]


def test_s31_t_first_and_json_format(server: AlpacaStreamServer, connect: PeerFactory) -> None:
    """S31: T is the first key; RFC 3339 with 0/3/6/9 trimmed digits; integral prices
    without '.0'."""
    peer = login(server, connect)
    peer.subscribe(trades=["*"])
    stamps = [T0, T0 + 123_000_000, T0 + 123_456_000, T0 + 123_456_789]
    # keys deliberately out of order, one timestamp as a datetime
    server.publish(
        [{"S": "AAPL", "p": 136.0, "T": "t", "s": 3, "t": ts} for ts in stamps]
        + [{"T": "t", "S": "AAPL", "p": 1.25, "t": datetime(2024, 1, 2, tzinfo=UTC)}]
    )
    raw = [peer.recv_frame()[1] for _ in range(5)]
    assert raw[0] == b'[{"T":"t","S":"AAPL","p":136,"s":3,"t":"2023-11-14T22:13:20Z"}]'
    texts = [orjson.loads(r)[0]["t"] for r in raw]
    assert texts[1:4] == [
        "2023-11-14T22:13:20.123Z",
        "2023-11-14T22:13:20.123456Z",
        "2023-11-14T22:13:20.123456789Z",
    ]
    assert texts[4] == "2024-01-02T00:00:00Z"
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z", t) for t in texts)
    assert b'"p":1.25' in raw[4]


_MARKERS = {4: b"\xd6\xff", 8: b"\xd7\xff", 12: b"\xc7\x0c\xff"}


def _ext_widths(data: bytes) -> list[int]:
    """Widths of the ext -1 value of each "t" key in a frame (read from the raw bytes)."""
    widths: list[int] = []
    pos = data.find(b"\xa1t")
    while pos >= 0:
        for width, marker in _MARKERS.items():
            if data.startswith(marker, pos + 2):
                widths.append(width)
        pos = data.find(b"\xa1t", pos + 2)
    return widths


@pytest.mark.parametrize("width", [4, 8, 12])
def test_s31_msgpack_timestamp_widths(
    alpaca_server_factory: Any, connect: PeerFactory, width: int
) -> None:
    """S31: ext -1 timestamps in each forced width (4 falls back to 8 for sub-seconds)."""
    srv = alpaca_server_factory(timestamp_width=width, test_stream=False)
    peer = login(srv, connect, msgpack_mode=True)
    peer.subscribe(trades=["*"])
    srv.publish([trade("AAPL", 0), trade("AAPL", 1)])
    frames = [peer.recv_frame()[1] for _ in range(2)]
    assert _ext_widths(frames[0]) == [width]
    assert _ext_widths(frames[1]) == [8 if width == 4 else width]
    decoded = [msgpack.unpackb(f, timestamp=2)[0]["t"] for f in frames]
    assert decoded == [T0, T0 + 1]


def test_s31_msgpack_cycle_and_auto_widths(
    alpaca_server_factory: Any, connect: PeerFactory
) -> None:
    """S31: 'cycle' rotates 4/8/12 across timestamps; 'auto' picks the smallest form."""
    srv = alpaca_server_factory(timestamp_width="cycle", test_stream=False)
    peer = login(srv, connect, msgpack_mode=True)
    peer.subscribe(trades=["*"])
    srv.publish(
        [trade("AAPL", 0, t=T0), trade("AAPL", 1, t=T0 + 5_000_000_000), trade("AAPL", 2, t=T0 + 7)]
    )
    widths = [w for _ in range(3) for w in _ext_widths(peer.recv_frame()[1])]
    assert widths == [4, 8, 12]
    srv.set_options(timestamp_width="auto")
    srv.publish([trade("AAPL", 0, t=T0), trade("AAPL", 1, t=T0 + 1)])
    assert [w for _ in range(2) for w in _ext_widths(peer.recv_frame()[1])] == [4, 8]


def test_s31_msgpack_key_order_and_types(server: AlpacaStreamServer, connect: PeerFactory) -> None:
    """S31: maps with string keys, T first; prices float64, sizes ints."""
    peer = login(server, connect, msgpack_mode=True)
    peer.subscribe(trades=["*"])
    server.publish([{"S": "AAPL", "T": "t", "p": 136.0, "s": 3, "t": T0}])
    data = peer.recv_frame()[1]
    pairs = msgpack.unpackb(data, object_pairs_hook=list, timestamp=2)[0]
    assert [k for k, _ in pairs] == ["T", "S", "p", "s", "t"]
    assert b"\xa1p\xcb" in data  # "p" followed by a float64
    assert dict(pairs)["s"] == 3 and isinstance(dict(pairs)["s"], int)


def test_s32_option_and_crypto_shapes(server: AlpacaStreamServer, connect: PeerFactory) -> None:
    """S32: options' c is one string; crypto ids above 2^53 survive (both encodings)."""
    opt = login(server, connect, "indicative", msgpack_mode=True)
    opt.subscribe(trades=["*"])
    server.publish(
        [{"T": "t", "S": "AAPL240315C00172500", "t": T0, "p": 2.84, "s": 1, "x": "N", "c": "S"}],
        feed="indicative",
    )
    assert opt.recv_one()["c"] == "S"
    big = 3447222699101865076
    for mp in (False, True):
        server.set_options(connection_limit=None)
        cr = login(server, connect, "crypto/us", msgpack_mode=mp)
        cr.subscribe(trades=["AVAX/USD"])
        info = server.wait_for_subscriptions({"trades": ["AVAX/USD"]})
        server.publish(
            [
                {
                    "T": "t",
                    "S": "AVAX/USD",
                    "p": 47.299,
                    "s": 29.205707815,
                    "t": T0,
                    "i": big,
                    "tks": "S",
                }
            ],
            conn=info,
        )
        msg = cr.recv_one()
        assert msg["i"] == big and msg["s"] == 29.205707815
        cr.close()
        server.wait_for_closed(info)


def test_s33_scripted_feed_and_sent_log(server: AlpacaStreamServer, connect: PeerFactory) -> None:
    """S33: a test pushes given messages; the server logs what it sent per connection."""
    peer = login(server, connect)
    peer.subscribe(trades=["AAPL", "MSFT"])
    server.publish([trade("AAPL", 1), trade("MSFT", 2), trade("AAPL", 3)])
    got = [peer.recv_one()["i"] for _ in range(3)]
    assert got == [1, 2, 3]
    info = server.wait_for_authenticated()
    assert [(s.T, s.symbol, s.seq) for s in info.sent_data] == [
        ("t", "AAPL", 1),
        ("t", "MSFT", 1),
        ("t", "AAPL", 2),
    ]
    assert info.sent_data[2].record["i"] == 3 and info.sent_data_count == 3


def test_s33_send_records_and_raw(server: AlpacaStreamServer, connect: PeerFactory) -> None:
    """S33: send_records (unfiltered, one frame) and send_raw (bytes exactly)."""
    peer = login(server, connect)
    server.send_records([trade("ZZZ", 1), quote("YYY", 2)])
    assert [m["S"] for m in peer.recv()] == ["ZZZ", "YYY"]
    server.send_raw('[{"T":"x"}]')
    assert peer.recv_frame() == (websocket.ABNF.OPCODE_TEXT, b'[{"T":"x"}]')
    server.send_raw(b"\x91\x80")
    assert peer.recv_frame() == (websocket.ABNF.OPCODE_BINARY, b"\x91\x80")


def test_s33_fakepaca_generator(alpaca_server_factory: Any, connect: PeerFactory) -> None:
    """S33: /v2/test streams FAKEPACA quotes, trades and bars (cadence scaled)."""
    srv = alpaca_server_factory(test_stream_speed=200)
    peer = login(srv, connect, "test")
    assert peer.subscribe(trades=["FAKEPACA"], quotes=["FAKEPACA"], bars=["FAKEPACA"]) == {
        "T": "subscription",
        "trades": ["FAKEPACA"],
        "quotes": ["FAKEPACA"],
        "bars": ["FAKEPACA"],
    }
    seen: set[str] = set()
    while not {"q", "b"} <= seen:
        for m in peer.recv():
            assert m["S"] == "FAKEPACA"
            seen.add(m["T"])


def test_s33_market_streams_matching_subscriptions(
    server: AlpacaStreamServer, connect: PeerFactory
) -> None:
    """S33: start_market streams to connections of its family, filtered; timestamps
    strictly increase per symbol and channel."""
    peer = login(server, connect, msgpack_mode=True)
    peer.subscribe(quotes=["AAPL"], trades=["MSFT"])
    handle = server.start_market(
        MarketConfig(symbols=["AAPL", "MSFT", "SPY"], rate=50_000, batch=20, seed=3)
    )
    last: dict[tuple[str, str], int] = {}
    n = 0
    while n < 500:
        for m in peer.recv():
            assert (m["T"], m["S"]) in {("q", "AAPL"), ("t", "MSFT"), ("c", "MSFT"), ("x", "MSFT")}
            key = (m["T"], m["S"])
            assert m["t"] > last.get(key, 0)
            last[key] = m["t"]
            n += 1
    server.stop_market(handle)
    assert handle.sent > 0


def test_s33_market_total_is_preencoded(server: AlpacaStreamServer, connect: PeerFactory) -> None:
    """S33: with a total, the market is generated up front and stops after it."""
    peer = login(server, connect)
    peer.subscribe(
        trades=["*"],
        quotes=["*"],
        bars=["*"],
        dailyBars=["*"],
        updatedBars=["*"],
        statuses=["*"],
        lulds=["*"],
        imbalances=["*"],
    )
    server.start_market(
        symbols=["AAPL"], rate=None, batch=100, total=1000, seed=1, step_ns=100_000_000
    )
    count = 0
    while count < 1000:
        count += len(peer.recv())
    assert count == 1000
    no_more(peer)
