"""Subscriptions: S18-S28 of alpaca-stream-protocol.md §12."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
import websocket

from rxalpaca.errors import error_for_code
from rxalpaca.testing import Account, AlpacaStreamServer

from .conftest import PeerFactory

pytestmark = pytest.mark.timeout(20)

STOCK_ORDER = [
    "T",
    "trades",
    "quotes",
    "bars",
    "updatedBars",
    "dailyBars",
    "statuses",
    "lulds",
    "imbalances",
    "corrections",
    "cancelErrors",
]


def _stock_peer(server: AlpacaStreamServer, connect: PeerFactory, **kw: Any) -> Any:
    peer = connect(server.url("iex"), **kw)
    peer.login()
    return peer


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[1,2",
        b"[]",
        b"42",
        b'"auth"',
        b'{"key":"x"}',
        b'{"action":"dance"}',
        b'{"action":5}',
    ],
)
def test_s18_parse_failures_are_400(
    server: AlpacaStreamServer, connect: PeerFactory, raw: bytes
) -> None:
    """S18: unparseable, not a map, missing/unknown action → 400; socket open; state kept."""
    peer = _stock_peer(server, connect)
    peer.subscribe(trades=["AAPL"])
    peer.ws.send(raw.decode())
    assert peer.expect_error(400)["msg"] == "invalid syntax" == error_for_code(400).msg
    ack = peer.subscribe(quotes=["MSFT"])
    assert ack["trades"] == ["AAPL"]


def test_s18_invalid_msgpack_is_400(server: AlpacaStreamServer, connect: PeerFactory) -> None:
    """S18: garbage in a binary frame on a MessagePack connection → 400."""
    peer = _stock_peer(server, connect, msgpack_mode=True)
    peer.ws.send_binary(b"\xc1\xc1\xc1")
    peer.expect_error(400)
    peer.ws.send_binary(msgpack.packb([1, 2]))
    peer.expect_error(400)


def test_s19_null_empty_and_missing_mean_no_change(
    server: AlpacaStreamServer, connect: PeerFactory
) -> None:
    """S19: a missing key, [] and null are all 'no change'; a non-list value → 400."""
    peer = _stock_peer(server, connect)
    peer.subscribe(trades=["AAPL"], quotes=["MSFT"])
    ack = peer.subscribe(trades=None, quotes=[], bars=["SPY"])
    assert ack["trades"] == ["AAPL"] and ack["quotes"] == ["MSFT"] and ack["bars"] == ["SPY"]
    peer.send({"action": "subscribe", "trades": "AAPL"})
    peer.expect_error(400)
    peer.send({"action": "subscribe", "trades": {"AAPL": 1}})
    peer.expect_error(400)


def test_s19_msgpack_nil_lists_like_the_go_sdk(
    server: AlpacaStreamServer, connect: PeerFactory
) -> None:
    """S19/S20: the Go SDK sends every key it knows, nil for unchanged ones, even foreign."""
    peer = _stock_peer(server, connect, msgpack_mode=True)
    ack = peer.subscribe(
        trades=["AAPL"], quotes=None, bars=None, news=None, orderbooks=None, pricing=None
    )
    assert ack["trades"] == ["AAPL"]


def test_s20_foreign_channel_410_whole_request_rejected(
    server: AlpacaStreamServer, connect: PeerFactory
) -> None:
    """S20: a non-empty list for a channel the endpoint lacks → 410; nothing changes."""
    peer = _stock_peer(server, connect)
    peer.send({"action": "subscribe", "trades": ["AAPL"], "orderbooks": ["BTC/USD"]})
    assert peer.expect_error(410)["msg"] == "invalid subscribe action for this feed"
    ack = peer.subscribe(quotes=["MSFT"])
    assert ack["trades"] == []
    news = connect(server.url("news"))
    news.login()
    news.send({"action": "subscribe", "trades": ["AAPL"]})
    news.expect_error(410)
    news.send({"action": "subscribe", "news": ["AAPL"], "trades": [], "quotes": None})
    assert news.recv_one() == {"T": "subscription", "news": ["AAPL"]}


def test_s20_options_bars_410(server: AlpacaStreamServer, connect: PeerFactory) -> None:
    """S20: bars on options → 410."""
    peer = connect(server.url("indicative"), msgpack_mode=True)
    peer.login()
    peer.send({"action": "subscribe", "bars": ["AAPL240315C00172500"]})
    peer.expect_error(410)


@pytest.mark.parametrize(
    ("feed", "good", "bad"),
    [
        ("iex", ["AAPL", "BRK.B", "*", "SPY", "A1"], ["aapl", "BTC/USD", "", "A B", "AAPL!"]),
        ("crypto/us", ["BTC/USD", "ETH/USDT", "*"], ["BTCUSD", "btc/usd", "BTC/", "/USD"]),
        (
            "opra",
            ["AAPL240315C00172500", "SPXW240327P04925000", "*"],
            ["AAPL", "AAPL240315X00172500", "AAPL24031C00172500", "TOOLONG240315C00172500"],
        ),
    ],
)
def test_s21_symbol_grammar(
    server: AlpacaStreamServer, connect: PeerFactory, feed: str, good: list[str], bad: list[str]
) -> None:
    """S21: per-endpoint grammar; invalid → 400 and the whole request is rejected."""
    mp = feed == "opra"
    peer = connect(server.url(feed), msgpack_mode=mp)
    peer.login()
    ack = peer.subscribe(trades=good)
    assert ack["trades"] == good
    for sym in bad:
        peer.send({"action": "subscribe", "trades": ["ZZZ" if feed == "iex" else good[0], sym]})
        peer.expect_error(400)
    peer.send({"action": "unsubscribe", "trades": [bad[0]]})
    peer.expect_error(400)
    assert peer.subscribe(trades=[])["trades"] == good


def test_s21_non_string_symbol_is_400(server: AlpacaStreamServer, connect: PeerFactory) -> None:
    peer = _stock_peer(server, connect)
    peer.send({"action": "subscribe", "trades": [1]})
    peer.expect_error(400)


def test_s22_star_option_quotes_413(server: AlpacaStreamServer, connect: PeerFactory) -> None:
    """S22: quotes:["*"] on options → 413; trades:["*"] is fine."""
    peer = connect(server.url("indicative"), msgpack_mode=True)
    peer.login()
    peer.send({"action": "subscribe", "trades": ["*"], "quotes": ["*"]})
    assert peer.expect_error(413)["msg"] == "star subscription is not allowed for option quotes"
    ack = peer.subscribe(trades=["*"])
    assert ack == {"T": "subscription", "trades": ["*"], "quotes": []}


def test_s23_symbol_limit_free_plan(
    alpaca_server_factory: type[AlpacaStreamServer], connect: PeerFactory
) -> None:
    """S23: free plan: 30 distinct symbols across trades+quotes; 405 leaves state as it was."""
    srv = alpaca_server_factory(accounts={"f": Account("s", plan="free")}, test_stream=False)
    peer = connect(srv.url("iex"))
    peer.login("f", "s")
    first = [f"S{i}" for i in range(20)]
    peer.subscribe(trades=first, quotes=first[:10])
    peer.subscribe(quotes=[f"S{i}" for i in range(20, 30)])  # 30 distinct
    peer.send({"action": "subscribe", "trades": ["S99"], "bars": ["X"]})
    assert peer.expect_error(405)["msg"] == "symbol limit exceeded"
    info = srv.wait_for_authenticated()
    assert info.subscriptions["bars"] == set()
    assert len(info.subscriptions["trades"] | info.subscriptions["quotes"]) == 30
    ack = peer.subscribe(bars=[f"B{i}" for i in range(100)])  # bars are not counted
    assert len(ack["bars"]) == 100


def test_s23_crypto_orderbook_limit_and_custom_counting(
    alpaca_server_factory: type[AlpacaStreamServer], connect: PeerFactory
) -> None:
    """S23: crypto free plan: 10 order-book symbols; the counted channels are configurable."""
    srv = alpaca_server_factory(
        accounts={"f": Account("s", plan="free", symbol_limit=2)},
        symbol_limit_channels=("trades", "quotes", "bars"),
        test_stream=False,
    )
    peer = connect(srv.url("crypto/us"))
    peer.login("f", "s")
    pairs = [f"C{i}/USD" for i in range(11)]
    peer.send({"action": "subscribe", "orderbooks": pairs})
    peer.expect_error(405)
    peer.subscribe(trades=["BTC/USD"], bars=["ETH/USD"])
    peer.send({"action": "subscribe", "quotes": ["SOL/USD"]})
    peer.expect_error(405)


def test_s23_unlimited_plan_has_no_cap(server: AlpacaStreamServer, connect: PeerFactory) -> None:
    peer = _stock_peer(server, connect)
    ack = peer.subscribe(trades=[f"S{i}" for i in range(2000)])
    assert len(ack["trades"]) == 2000


def test_s24_ack_full_state_in_order(server: AlpacaStreamServer, connect: PeerFactory) -> None:
    """S24: one ack, alone, full state, every list in the documented key order; set
    semantics with '*' as a literal member and first-subscribed order."""
    peer = _stock_peer(server, connect)
    peer.send(
        {
            "action": "subscribe",
            "trades": ["AAPL"],
            "quotes": ["AMD", "CLDR", "AMD"],
            "bars": ["*"],
            "dailyBars": ["VOO"],
            "statuses": ["*"],
        }
    )
    _opcode, data = peer.recv_frame()
    assert data == (
        b'[{"T":"subscription","trades":["AAPL"],"quotes":["AMD","CLDR"],"bars":["*"],'
        b'"updatedBars":[],"dailyBars":["VOO"],"statuses":["*"],"lulds":[],"imbalances":[],'
        b'"corrections":["AAPL"],"cancelErrors":["AAPL"]}]'
    )
    peer.send({"action": "unsubscribe", "bars": ["*"], "quotes": ["AMD"]})
    ack = peer.recv_one()
    assert list(ack) == STOCK_ORDER
    assert ack["bars"] == [] and ack["quotes"] == ["CLDR"]
    ack = peer.subscribe(quotes=["AMD", "*"])
    assert ack["quotes"] == ["CLDR", "AMD", "*"]


def test_s24_imbalances_configurable(
    alpaca_server_factory: type[AlpacaStreamServer], connect: PeerFactory
) -> None:
    """S24: imbalances_in_ack=False gives the docs' older stock ack."""
    srv = alpaca_server_factory(imbalances_in_ack=False, test_stream=False)
    peer = connect(srv.url("sip"))
    peer.login()
    ack = peer.subscribe(trades=["AAPL"])
    assert "imbalances" not in ack
    assert list(ack) == [k for k in STOCK_ORDER if k != "imbalances"]


@pytest.mark.parametrize(
    ("feed", "keys"),
    [
        ("crypto/us", ["T", "trades", "quotes", "orderbooks", "bars", "updatedBars", "dailyBars"]),
        (
            "crypto/eu-1",
            ["T", "trades", "quotes", "orderbooks", "bars", "updatedBars", "dailyBars"],
        ),
        ("indicative", ["T", "trades", "quotes"]),
        ("news", ["T", "news"]),
        ("test", ["T", "trades", "quotes", "bars"]),
        ("boats", STOCK_ORDER),
    ],
)
def test_s24_ack_shapes_per_family(
    server: AlpacaStreamServer, connect: PeerFactory, feed: str, keys: list[str]
) -> None:
    """S24: the ack's lists per endpoint family, in order (MessagePack keeps it too)."""
    peer = connect(server.url(feed), msgpack_mode=True)
    peer.login()
    channel = keys[1]
    sym = {
        "crypto/us": "BTC/USD",
        "crypto/eu-1": "BTC/USD",
        "indicative": "AAPL240315C00172500",
    }.get(feed, "AAPL")
    ack = peer.subscribe(**{channel: [sym]})
    assert list(ack) == keys
    assert ack[channel] == [sym]


def test_s25_corrections_and_cancel_errors_mirror_trades(
    server: AlpacaStreamServer, connect: PeerFactory
) -> None:
    """S25: corrections/cancelErrors always equal trades, '*' included; sending them is
    tolerated and ignored."""
    peer = _stock_peer(server, connect)
    ack = peer.subscribe(trades=["*", "AAPL"])
    assert ack["corrections"] == ack["cancelErrors"] == ["*", "AAPL"]
    ack = peer.subscribe(corrections=["MSFT"])
    assert ack["corrections"] == ["*", "AAPL"]
    peer.send({"action": "unsubscribe", "trades": ["*"]})
    ack = peer.recv_one()
    assert ack["corrections"] == ack["cancelErrors"] == ack["trades"] == ["AAPL"]


def test_s26_replies_in_request_order(server: AlpacaStreamServer, connect: PeerFactory) -> None:
    """S26: one reply per request, in request order, acks before data for added symbols."""
    peer = _stock_peer(server, connect)
    peer.send({"action": "subscribe", "trades": ["AAPL"]})
    peer.send({"action": "subscribe", "orderbooks": ["X"]})
    peer.send({"action": "subscribe", "quotes": ["MSFT"]})
    peer.send({"action": "bogus"})
    peer.send({"action": "unsubscribe", "trades": ["AAPL"]})
    replies = [peer.recv_one() for _ in range(5)]
    assert [r["T"] for r in replies] == [
        "subscription",
        "error",
        "subscription",
        "error",
        "subscription",
    ]
    assert [r.get("code") for r in replies] == [None, 410, None, 400, None]
    assert replies[2]["quotes"] == ["MSFT"] and replies[4]["trades"] == []


def test_s26_ack_before_data(server: AlpacaStreamServer, connect: PeerFactory) -> None:
    """S26: data for a symbol is never sent before the ack that added it."""
    peer = _stock_peer(server, connect)
    server.start_market(symbols=["AAPL"], rate=20000, batch=5)
    peer.send({"action": "subscribe", "quotes": ["AAPL"]})
    first = peer.recv()
    assert first[0]["T"] == "subscription" and len(first) == 1
    assert peer.recv()[0]["S"] == "AAPL"


def test_s27_orderbook_snapshot_after_ack(server: AlpacaStreamServer, connect: PeerFactory) -> None:
    """S27: after the ack, one r:true book per newly subscribed pair, then increments."""
    peer = connect(server.url("crypto/us"), msgpack_mode=True)
    peer.login()
    peer.subscribe(orderbooks=["BTC/USD", "ETH/USD"])
    books = [peer.recv_one(), peer.recv_one()]
    assert [b["S"] for b in books] == ["BTC/USD", "ETH/USD"]
    for b in books:
        assert next(iter(b)) == "T" and b["T"] == "o" and b["r"] is True
        assert b["b"] and b["a"] and max(x["p"] for x in b["b"]) < min(x["p"] for x in b["a"])
    ack = peer.subscribe(orderbooks=["BTC/USD"])  # not new: no snapshot
    assert ack["orderbooks"] == ["BTC/USD", "ETH/USD"]
    server.publish([{"T": "o", "S": "BTC/USD", "t": 1, "b": [{"p": 1.0, "s": 0.0}], "a": []}])
    inc = peer.recv_one()
    assert inc["T"] == "o" and "r" not in inc


def test_s28_lag_mode_keeps_delivering_after_unsubscribe(
    alpaca_server_factory: type[AlpacaStreamServer], connect: PeerFactory
) -> None:
    """S28: with lag_messages=N, up to N messages of removed symbols follow the ack."""
    srv = alpaca_server_factory(lag_messages=2, test_stream=False)
    peer = connect(srv.url("iex"))
    peer.login()
    peer.subscribe(trades=["AAPL"], quotes=["MSFT"])
    peer.send({"action": "unsubscribe", "trades": ["AAPL"]})
    assert peer.recv_one()["trades"] == []
    srv.publish(
        [{"T": "t", "S": "AAPL", "p": float(i), "t": i + 1} for i in range(5)]
        + [{"T": "q", "S": "MSFT", "bp": 1.0, "t": 9}]
    )
    got = [peer.recv_one() for _ in range(3)]
    assert [(m["T"], m["S"]) for m in got] == [("t", "AAPL"), ("t", "AAPL"), ("q", "MSFT")]


def test_s28_no_lag_by_default(server: AlpacaStreamServer, connect: PeerFactory) -> None:
    peer = _stock_peer(server, connect)
    peer.subscribe(trades=["AAPL"], quotes=["MSFT"])
    peer.send({"action": "unsubscribe", "trades": ["AAPL"]})
    peer.recv_one()
    server.publish(
        [{"T": "t", "S": "AAPL", "p": 1.0, "t": 1}, {"T": "q", "S": "MSFT", "bp": 1.0, "t": 2}]
    )
    assert peer.recv_one()["S"] == "MSFT"


def test_wait_for_subscriptions(server: AlpacaStreamServer, connect: PeerFactory) -> None:
    peer = _stock_peer(server, connect)
    peer.send({"action": "subscribe", "trades": ["AAPL"], "bars": ["*"]})
    info = server.wait_for_subscriptions({"trades": ["AAPL"], "bars": {"*"}})
    assert info.subscriptions["quotes"] == set()
    info2 = server.wait_for_subscriptions(lambda s: "AAPL" in s["trades"], conn=info)
    assert info2.id == info.id
    with pytest.raises(TimeoutError):
        server.wait_for_subscriptions({"trades": ["MSFT"]}, timeout=0.2)
    assert peer.recv_one()["T"] == "subscription"
    peer.ws.settimeout(0.05)
    with pytest.raises(websocket.WebSocketTimeoutException):
        peer.recv()
