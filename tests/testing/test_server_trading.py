"""The account stream ``/stream`` (trade_updates): S40 of alpaca-stream-protocol.md §12."""

from __future__ import annotations

import threading
from typing import Any

import msgpack
import orjson
import pytest
import websocket

from rxalpaca.testing import DEFAULT_KEY, DEFAULT_SECRET, DEFAULT_TOKEN, AlpacaStreamServer

from .conftest import PeerFactory

pytestmark = pytest.mark.timeout(20)

FILL = {
    "event": "fill",
    "execution_id": "2f63ea93-0000-4000-8000-000000000001",
    "order": {"id": "o-1", "symbol": "AAPL", "qty": "10", "side": "buy"},
    "timestamp": "2022-04-19T17:45:05.024916716Z",
    "price": "105.8988475",
    "qty": "10",
    "position_qty": "10",
}


def recv_obj(peer: Any) -> dict[str, Any]:
    opcode, data = peer.recv_frame()
    assert opcode == websocket.ABNF.OPCODE_BINARY  # JSON inside binary frames (§9)
    obj = orjson.loads(data)
    assert isinstance(obj, dict)  # a single object, not an array
    return obj


@pytest.mark.parametrize(
    "auth",
    [
        {"action": "auth", "key": DEFAULT_KEY, "secret": DEFAULT_SECRET},
        {"action": "authenticate", "data": {"key_id": DEFAULT_KEY, "secret_key": DEFAULT_SECRET}},
        {"action": "authenticate", "data": {"oauth_token": DEFAULT_TOKEN}},
    ],
    ids=["auth", "authenticate", "oauth_token"],
)
def test_s40_trading_stream_auth_listen_updates(
    server: AlpacaStreamServer, connect: PeerFactory, auth: dict[str, Any]
) -> None:
    """S40: both auth shapes, listen (replacing, unknown names dropped), trade_updates."""
    peer = connect(server.trading_url)
    peer.send({"action": "listen", "data": {"streams": ["trade_updates"]}})
    assert recv_obj(peer) == {
        "stream": "authorization",
        "data": {"status": "unauthorized", "action": "listen"},
    }
    peer.send(auth)
    assert recv_obj(peer) == {
        "stream": "authorization",
        "data": {"status": "authorized", "action": "authenticate"},
    }
    peer.send({"action": "listen", "data": {"streams": ["trade_updates", "nope"]}})
    assert recv_obj(peer) == {"stream": "listening", "data": {"streams": ["trade_updates"]}}
    server.wait_for_subscriptions({"streams": ["trade_updates"]})
    assert server.publish_trade_update(FILL) == 1
    assert recv_obj(peer) == {"stream": "trade_updates", "data": FILL}
    peer.send({"action": "listen", "data": {"streams": []}})
    assert recv_obj(peer) == {"stream": "listening", "data": {"streams": []}}
    server.wait_for_subscriptions({"streams": []})
    assert server.publish_trade_update(FILL) == 0


def test_s40_bad_credentials_and_market_data_isolation(
    server: AlpacaStreamServer, connect: PeerFactory
) -> None:
    """S40: wrong credentials → unauthorized; market data never reaches /stream."""
    peer = connect(server.trading_url)
    peer.send({"action": "authenticate", "data": {"key_id": "x", "secret_key": "y"}})
    assert recv_obj(peer)["data"]["status"] == "unauthorized"
    peer.send({"action": "auth", "key": DEFAULT_KEY, "secret": DEFAULT_SECRET})
    assert recv_obj(peer)["data"]["status"] == "authorized"
    assert server.publish([{"T": "n", "id": 1, "symbols": []}]) == 0
    peer.ws.send("garbage")
    assert recv_obj(peer) == {"stream": "error", "data": {"error": "invalid syntax"}}


def test_s40_msgpack_and_text_frames(alpaca_server_factory: Any, connect: PeerFactory) -> None:
    """S40: MessagePack on request; text frames when configured."""
    srv = alpaca_server_factory(trading_binary_frames=False, test_stream=False)
    peer = connect(srv.trading_url)
    peer.send({"action": "auth", "key": DEFAULT_KEY, "secret": DEFAULT_SECRET})
    opcode, data = peer.recv_frame()
    assert opcode == websocket.ABNF.OPCODE_TEXT and orjson.loads(data)["stream"] == "authorization"
    mp = connect(srv.trading_url, msgpack_mode=True)
    mp.send({"action": "auth", "key": DEFAULT_KEY, "secret": DEFAULT_SECRET})
    opcode, data = mp.recv_frame()
    assert opcode == websocket.ABNF.OPCODE_BINARY
    assert msgpack.unpackb(data)["data"]["status"] == "authorized"


def test_s40_can_be_switched_off(alpaca_server_factory: Any) -> None:
    srv = alpaca_server_factory(trading_stream=False, test_stream=False)
    with pytest.raises(websocket.WebSocketBadStatusException) as exc:
        websocket.create_connection(srv.trading_url, timeout=2)
    assert exc.value.status_code == 404


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_s40_interop_alpaca_py_trading_stream(alpaca_server: AlpacaStreamServer) -> None:
    """alpaca-py's TradingStream authenticates, listens and receives a fill."""
    stream_mod = pytest.importorskip("alpaca.trading.stream")
    stream = stream_mod.TradingStream(
        DEFAULT_KEY, DEFAULT_SECRET, raw_data=True, url_override=alpaca_server.trading_url
    )
    got: list[Any] = []
    arrived = threading.Event()

    async def on_update(msg: Any) -> None:
        got.append(msg)
        arrived.set()

    stream.subscribe_trade_updates(on_update)
    thread = threading.Thread(target=stream.run, daemon=True)
    thread.start()
    try:
        info = alpaca_server.wait_for_subscriptions({"streams": ["trade_updates"]}, timeout=10)
        assert info.received[0] == {
            "action": "authenticate",
            "data": {"key_id": DEFAULT_KEY, "secret_key": DEFAULT_SECRET},
        }
        alpaca_server.publish_trade_update(FILL)
        assert arrived.wait(10)
        assert got == [{"stream": "trade_updates", "data": FILL}]
    finally:
        stream.stop()
        for c in alpaca_server.connections(include_closed=False):
            alpaca_server.send_raw(b"{}", conn=c)  # wake its 5 s receive loop
        thread.join(10)
    assert not thread.is_alive()
