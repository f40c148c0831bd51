"""Handshake, encoding and authentication: S1-S17 of alpaca-stream-protocol.md §12."""

from __future__ import annotations

import base64
import time

import msgpack
import orjson
import pytest
import websocket
from websockets.sync.client import connect as ws_connect

from rxalpaca.errors import error_for_code
from rxalpaca.feeds import ENDPOINTS
from rxalpaca.testing import (
    DEFAULT_KEY,
    DEFAULT_SECRET,
    DEFAULT_TOKEN,
    Account,
    AlpacaStreamServer,
)
from rxalpaca.testing.server import ConnectionInfo

from .conftest import MSGPACK_HEADER, PeerFactory

pytestmark = pytest.mark.timeout(20)

GREETING = [{"T": "success", "msg": "connected"}]
AUTHENTICATED = [{"T": "success", "msg": "authenticated"}]


def test_server_basics(server: AlpacaStreamServer) -> None:
    assert server.host == "127.0.0.1"
    assert server.port > 0
    assert server.base_url == f"ws://127.0.0.1:{server.port}"
    assert server.url("iex") == f"ws://127.0.0.1:{server.port}/v2/iex"
    assert server.url("crypto/us").endswith("/v1beta3/crypto/us")


@pytest.mark.parametrize("feed", sorted(ENDPOINTS))
def test_s1_every_endpoint_is_served(
    server: AlpacaStreamServer, connect: PeerFactory, feed: str
) -> None:
    """S1: every documented path greets and authenticates."""
    peer = connect(server.url(feed), msgpack_mode=ENDPOINTS[feed].msgpack_only)
    peer.login()
    info = server.wait_for_authenticated()
    assert info.feed == feed and info.path == ENDPOINTS[feed].path


@pytest.mark.parametrize("path", ["/v2/boats", "/v2/overnight", "/nope", "/v2", "/v2/iex/x"])
def test_s1_unknown_path_is_404(server: AlpacaStreamServer, path: str) -> None:
    """S1: any other path → HTTP 404, no WebSocket."""
    with pytest.raises(websocket.WebSocketBadStatusException) as exc:
        websocket.create_connection(server.base_url + path, timeout=2)
    assert exc.value.status_code == 404
    assert server.connections() == []


def test_s2_json_uses_text_frames(server: AlpacaStreamServer, connect: PeerFactory) -> None:
    """S2: no Content-Type → JSON in text frames."""
    peer = connect(server.url("iex"))
    opcode, data = peer.recv_frame()
    assert opcode == websocket.ABNF.OPCODE_TEXT
    assert orjson.loads(data) == GREETING
    assert server.wait_for_connection().encoding == "json"


def test_s2_msgpack_uses_binary_frames(server: AlpacaStreamServer, connect: PeerFactory) -> None:
    """S2: Content-Type application/msgpack → MessagePack in binary frames, both ways."""
    peer = connect(server.url("iex"), msgpack_mode=True)
    opcode, data = peer.recv_frame()
    assert opcode == websocket.ABNF.OPCODE_BINARY
    assert msgpack.unpackb(data) == GREETING
    peer.send({"action": "auth", "key": DEFAULT_KEY, "secret": DEFAULT_SECRET})
    opcode, data = peer.recv_frame()
    assert opcode == websocket.ABNF.OPCODE_BINARY and msgpack.unpackb(data) == AUTHENTICATED
    assert server.wait_for_authenticated().encoding == "msgpack"


def test_s2_lenient_decoding_accepts_the_other_encoding(
    server: AlpacaStreamServer, connect: PeerFactory
) -> None:
    """S2 (optional leniency): a JSON auth on a MessagePack connection is understood."""
    peer = connect(server.url("iex"), msgpack_mode=True)
    peer.recv()
    peer.ws.send(orjson.dumps({"action": "auth", "key": DEFAULT_KEY, "secret": DEFAULT_SECRET}))
    assert peer.recv() == AUTHENTICATED


def test_s2a_close_code_is_configurable(
    alpaca_server_factory: type[AlpacaStreamServer], connect: PeerFactory
) -> None:
    """S2a: protocol-driven closes use 1000 by default, or the configured code."""
    srv = alpaca_server_factory(auth_timeout=0.2, close_code=4001, test_stream=False)
    peer = connect(srv.url("iex"))
    peer.recv()
    peer.expect_error(404)
    assert peer.expect_closed() == 4001


def test_s3_options_in_json_get_412_then_close(
    server: AlpacaStreamServer, connect: PeerFactory
) -> None:
    """S3: options without MessagePack → greeting, 412 with the exact text, close."""
    peer = connect(server.url("indicative"))
    assert peer.recv() == GREETING
    err = peer.expect_error(412)
    assert err["msg"] == "option messages are only available in MsgPack format"
    assert err["msg"] == error_for_code(412).msg
    assert peer.expect_closed() == 1000


def test_s3_412_on_first_message_when_configured(
    alpaca_server_factory: type[AlpacaStreamServer], connect: PeerFactory
) -> None:
    """S3: timing 'first_message' answers the client's first message with 412, then closes."""
    srv = alpaca_server_factory(msgpack_required_timing="first_message", test_stream=False)
    peer = connect(srv.url("opra"))
    assert peer.recv() == GREETING
    peer.send({"action": "auth", "key": DEFAULT_KEY, "secret": DEFAULT_SECRET})
    peer.expect_error(412)
    assert peer.expect_closed() == 1000


def test_s4_permessage_deflate_negotiated_when_offered(server: AlpacaStreamServer) -> None:
    """S4: a client offering permessage-deflate gets it and the stream works."""
    with ws_connect(server.url("iex"), compression="deflate") as ws:
        assert orjson.loads(ws.recv(timeout=3)) == GREETING
        ws.send(orjson.dumps({"action": "auth", "key": DEFAULT_KEY, "secret": DEFAULT_SECRET}))
        assert orjson.loads(ws.recv(timeout=3)) == AUTHENTICATED
        assert server.wait_for_authenticated().compressed
        assert ws.protocol.extensions  # negotiated on the client side too


def test_s4_works_without_compression(server: AlpacaStreamServer, connect: PeerFactory) -> None:
    """S4: websocket-client offers no compression; the server works without it."""
    peer = connect(server.url("iex"))
    peer.login()
    assert not server.wait_for_authenticated().compressed


@pytest.mark.parametrize("msgpack_mode", [False, True])
def test_s5_client_message_in_continuation_frames(
    server: AlpacaStreamServer, connect: PeerFactory, msgpack_mode: bool
) -> None:
    """S5: a subscribe split into continuation fragments is one logical message."""
    peer = connect(server.url("iex"), msgpack_mode=msgpack_mode)
    peer.login()
    msg = {"action": "subscribe", "trades": [f"S{i}" for i in range(500)]}
    if msgpack_mode:
        payload, opcode = msgpack.packb(msg), websocket.ABNF.OPCODE_BINARY
    else:
        payload, opcode = orjson.dumps(msg), websocket.ABNF.OPCODE_TEXT
    third = len(payload) // 3
    parts = [payload[:third], payload[third : 2 * third], payload[2 * third :]]
    peer.ws.send_frame(websocket.ABNF.create_frame(parts[0], opcode, fin=0))
    peer.ws.send_frame(websocket.ABNF.create_frame(parts[1], websocket.ABNF.OPCODE_CONT, fin=0))
    peer.ws.send_frame(websocket.ABNF.create_frame(parts[2], websocket.ABNF.OPCODE_CONT, fin=1))
    ack = peer.recv_one()
    assert ack["T"] == "subscription" and len(ack["trades"]) == 500


def test_s6_rate_limit_answers_429(
    alpaca_server_factory: type[AlpacaStreamServer], connect: PeerFactory
) -> None:
    """S6: more than N upgrades of one key within the window → HTTP 429."""
    srv = alpaca_server_factory(rate_limit=(2, 60.0), test_stream=False, connection_limit=None)
    hdr = [f"APCA-API-KEY-ID: {DEFAULT_KEY}", f"APCA-API-SECRET-KEY: {DEFAULT_SECRET}"]
    connect(srv.url("iex"), headers=hdr)
    connect(srv.url("iex"), headers=hdr)
    with pytest.raises(websocket.WebSocketBadStatusException) as exc:
        websocket.create_connection(srv.url("iex"), header=hdr, timeout=2)
    assert exc.value.status_code == 429


def test_s6_rate_limit_off_by_default(server: AlpacaStreamServer, connect: PeerFactory) -> None:
    """S6: without rate_limit, quick reconnects are fine."""
    for _ in range(5):
        connect(server.url("iex")).recv()


def test_s7_greeting_is_first_and_alone(server: AlpacaStreamServer, connect: PeerFactory) -> None:
    """S7: the very first frame is exactly [{"T":"success","msg":"connected"}]."""
    peer = connect(server.url("iex"))
    _opcode, data = peer.recv_frame()
    assert data == b'[{"T":"success","msg":"connected"}]'


def test_s8_auth_before_reading_greeting(server: AlpacaStreamServer, connect: PeerFactory) -> None:
    """S8: auth sent right away (the JS SDK's habit) works; replies keep their order."""
    peer = connect(server.url("iex"))
    peer.send({"action": "auth", "key": DEFAULT_KEY, "secret": DEFAULT_SECRET})
    assert peer.recv() == GREETING
    assert peer.recv() == AUTHENTICATED


@pytest.mark.parametrize("key", ["oauth", "access_token"])
def test_s9_auth_by_message(server: AlpacaStreamServer, connect: PeerFactory, key: str) -> None:
    """S9: key/secret, and the oauth/access_token forms with a configured token."""
    peer = connect(server.url("iex"))
    peer.login()
    peer2 = connect(server.url("sip"))
    peer2.recv()
    peer2.send({"action": "auth", "key": key, "secret": DEFAULT_TOKEN})
    assert peer2.recv() == AUTHENTICATED
    infos = server.wait_for(lambda cs: sum(c.authenticated for c in cs) == 2)
    assert infos[0].key == DEFAULT_KEY
    assert infos[1].key == f"token:{DEFAULT_TOKEN}"


@pytest.mark.parametrize(
    "headers",
    [
        [f"APCA-API-KEY-ID: {DEFAULT_KEY}", f"APCA-API-SECRET-KEY: {DEFAULT_SECRET}"],
        [f"Authorization: Bearer {DEFAULT_TOKEN}"],
        [
            "Authorization: Basic "
            + base64.b64encode(f"{DEFAULT_KEY}:{DEFAULT_SECRET}".encode()).decode()
        ],
    ],
    ids=["apca", "bearer", "basic"],
)
def test_s10_auth_by_headers(
    server: AlpacaStreamServer, connect: PeerFactory, headers: list[str]
) -> None:
    """S10: header credentials → connected, then authenticated unprompted."""
    peer = connect(server.url("news"), headers=headers)
    assert peer.recv() == GREETING
    assert peer.recv() == AUTHENTICATED
    peer.subscribe(news=["*"])


def test_s10_bad_header_credentials_get_402(
    server: AlpacaStreamServer, connect: PeerFactory
) -> None:
    """S10/S11: wrong header credentials → 101, greeting, then 402."""
    peer = connect(server.url("iex"), headers=["APCA-API-KEY-ID: x", "APCA-API-SECRET-KEY: y"])
    assert peer.recv() == GREETING
    peer.expect_error(402)


def test_s11_wrong_credentials_402_socket_stays_open(
    server: AlpacaStreamServer, connect: PeerFactory
) -> None:
    """S11: 402 'auth failed'; by default the socket stays open and a retry can succeed."""
    peer = connect(server.url("iex"))
    peer.recv()
    peer.send({"action": "auth", "key": DEFAULT_KEY, "secret": "wrong"})
    assert peer.expect_error(402)["msg"] == "auth failed"
    peer.send({"action": "auth", "key": "unknown", "secret": DEFAULT_SECRET})
    peer.expect_error(402)
    peer.send({"action": "auth", "key": DEFAULT_KEY, "secret": DEFAULT_SECRET})
    assert peer.recv() == AUTHENTICATED


def test_s11_close_after_402_when_configured(
    alpaca_server_factory: type[AlpacaStreamServer], connect: PeerFactory
) -> None:
    """S11: close_on_auth_failure closes right after 402."""
    srv = alpaca_server_factory(close_on_auth_failure=True, test_stream=False)
    peer = connect(srv.url("iex"))
    peer.recv()
    peer.send({"action": "auth", "key": "bad", "secret": "bad"})
    peer.expect_error(402)
    assert peer.expect_closed() == 1000


def test_s12_already_authenticated(server: AlpacaStreamServer, connect: PeerFactory) -> None:
    """S12: a second auth → 403; the session and subscriptions are unchanged."""
    peer = connect(server.url("iex"))
    peer.login()
    peer.subscribe(trades=["AAPL"])
    peer.send({"action": "auth", "key": DEFAULT_KEY, "secret": DEFAULT_SECRET})
    assert peer.expect_error(403)["msg"] == "already authenticated"
    ack = peer.subscribe(quotes=["MSFT"])
    assert ack["trades"] == ["AAPL"] and ack["quotes"] == ["MSFT"]


def test_s13_auth_timeout(
    alpaca_server_factory: type[AlpacaStreamServer], connect: PeerFactory
) -> None:
    """S13: no auth within the (configured) timeout → 404 'auth timeout', then close."""
    srv = alpaca_server_factory(auth_timeout=0.2, test_stream=False)
    peer = connect(srv.url("iex"))
    start = time.monotonic()
    assert peer.recv() == GREETING
    assert peer.expect_error(404)["msg"] == "auth timeout"
    assert time.monotonic() - start >= 0.15
    assert peer.expect_closed() == 1000
    info = srv.wait_for_closed(1)
    assert info.close_reason == "auth timeout"


def test_s13_timer_keeps_running_after_402(
    alpaca_server_factory: type[AlpacaStreamServer], connect: PeerFactory
) -> None:
    """S11/S13: a failed auth does not restart or stop the auth timer."""
    srv = alpaca_server_factory(auth_timeout=0.3, test_stream=False)
    peer = connect(srv.url("iex"))
    peer.recv()
    peer.send({"action": "auth", "key": "bad", "secret": "bad"})
    peer.expect_error(402)
    peer.expect_error(404)


def test_s13_no_timeout_once_authenticated(
    alpaca_server_factory: type[AlpacaStreamServer], connect: PeerFactory
) -> None:
    """S13: an authenticated session outlives the auth timeout."""
    srv = alpaca_server_factory(auth_timeout=0.1, test_stream=False)
    peer = connect(srv.url("iex"))
    peer.login()
    peer.ws.settimeout(0.3)
    with pytest.raises(websocket.WebSocketTimeoutException):
        peer.recv()
    peer.ws.settimeout(3)
    peer.subscribe(trades=["AAPL"])


def test_s14_connection_limit_406_then_retry(
    server: AlpacaStreamServer, connect: PeerFactory
) -> None:
    """S14: a second session on the same endpoint gets 406, stays open, and can
    authenticate once the first one is gone. The first session is never kicked."""
    first = connect(server.url("iex"))
    first.login()
    second = connect(server.url("iex"))
    second.recv()
    second.send({"action": "auth", "key": DEFAULT_KEY, "secret": DEFAULT_SECRET})
    assert second.expect_error(406)["msg"] == "connection limit exceeded"
    first.subscribe(trades=["AAPL"])  # still alive
    # Another endpoint is counted separately.
    other = connect(server.url("sip"))
    other.login()
    first.close()
    server.wait_for_closed(1)
    second.send({"action": "auth", "key": DEFAULT_KEY, "secret": DEFAULT_SECRET})
    assert second.recv() == AUTHENTICATED


def test_s14_close_after_406_when_configured(
    alpaca_server_factory: type[AlpacaStreamServer], connect: PeerFactory
) -> None:
    """S14: close_on_connection_limit closes the refused session; a higher limit admits two."""
    srv = alpaca_server_factory(close_on_connection_limit=True, test_stream=False)
    connect(srv.url("iex")).login()
    second = connect(srv.url("iex"))
    second.recv()
    second.send({"action": "auth", "key": DEFAULT_KEY, "secret": DEFAULT_SECRET})
    second.expect_error(406)
    assert second.expect_closed() == 1000
    srv.set_options(connection_limit=2)
    connect(srv.url("iex")).login()


def test_s15_ghost_session_holds_the_slot(
    alpaca_server_factory: type[AlpacaStreamServer], connect: PeerFactory
) -> None:
    """S15: a client that vanishes without a close frame keeps its slot for a while."""
    srv = alpaca_server_factory(ghost_session_seconds=0.4, test_stream=False)
    first = connect(srv.url("iex"))
    first.login()
    first.ws.shutdown()  # no close frame
    srv.wait_for_closed(1)
    second = connect(srv.url("iex"))
    second.recv()
    second.send({"action": "auth", "key": DEFAULT_KEY, "secret": DEFAULT_SECRET})
    second.expect_error(406)
    # Retry like the Go SDK does (re-auth on the same socket) until the ghost is gone.
    deadline = time.monotonic() + 5
    while True:
        time.sleep(0.1)
        second.send({"action": "auth", "key": DEFAULT_KEY, "secret": DEFAULT_SECRET})
        reply = second.recv_one()
        if reply == AUTHENTICATED[0]:
            break
        assert reply["code"] == 406 and time.monotonic() < deadline


def test_s15_clean_close_frees_slot_at_once(
    alpaca_server_factory: type[AlpacaStreamServer], connect: PeerFactory
) -> None:
    """S15: with a close handshake there is no ghost."""
    srv = alpaca_server_factory(ghost_session_seconds=30, test_stream=False)
    first = connect(srv.url("iex"))
    first.login()
    first.close()
    srv.wait_for_closed(1)
    connect(srv.url("iex")).login()


def test_s16_free_plan_insufficient_subscription(
    alpaca_server_factory: type[AlpacaStreamServer], connect: PeerFactory
) -> None:
    """S16: a free account on sip/opra → 409 and close; iex is fine."""
    srv = alpaca_server_factory(accounts={"free": Account("s", plan="free")}, test_stream=False)
    ok = connect(srv.url("iex"))
    ok.login("free", "s")
    for feed, mp in (("sip", False), ("opra", True)):
        peer = connect(srv.url(feed), msgpack_mode=mp)
        peer.recv()
        peer.send({"action": "auth", "key": "free", "secret": "s"})
        assert peer.expect_error(409)["msg"] == "insufficient subscription"
        assert peer.expect_closed() == 1000


def test_s16_feed_list_and_keep_open(
    alpaca_server_factory: type[AlpacaStreamServer], connect: PeerFactory
) -> None:
    """S16: an explicit feed list; close_on_insufficient_subscription=False keeps the socket."""
    srv = alpaca_server_factory(
        accounts={"k": Account("s", feeds=frozenset({"news"}))},
        close_on_insufficient_subscription=False,
        test_stream=False,
    )
    peer = connect(srv.url("iex"))
    peer.recv()
    peer.send({"action": "auth", "key": "k", "secret": "s"})
    peer.expect_error(409)
    peer.send({"action": "subscribe", "trades": ["AAPL"]})
    peer.expect_error(401)


def test_s17_subscribe_before_auth(server: AlpacaStreamServer, connect: PeerFactory) -> None:
    """S17: subscribe/unsubscribe before auth → 401, state unchanged, socket open."""
    peer = connect(server.url("iex"))
    peer.recv()
    peer.send({"action": "subscribe", "trades": ["AAPL"]})
    assert peer.expect_error(401)["msg"] == "not authenticated"
    peer.send({"action": "unsubscribe", "trades": ["AAPL"]})
    peer.expect_error(401)
    peer.send({"action": "auth", "key": DEFAULT_KEY, "secret": DEFAULT_SECRET})
    assert peer.recv() == AUTHENTICATED
    ack = peer.subscribe(quotes=["MSFT"])
    assert ack["trades"] == []


def test_connection_info_records_what_the_client_sent(
    server: AlpacaStreamServer, connect: PeerFactory
) -> None:
    peer = connect(server.url("iex"), headers=["User-Agent: test-agent/1"])
    peer.login()
    info: ConnectionInfo = server.wait_for_authenticated()
    assert info.received == [{"action": "auth", "key": DEFAULT_KEY, "secret": DEFAULT_SECRET}]
    assert info.headers["User-Agent"] == "test-agent/1"
    assert MSGPACK_HEADER not in info.headers.values()


def test_stop_is_fast_with_connected_clients(connect: PeerFactory) -> None:
    """stop() returns well under a second even with clients connected (and not reading)."""
    srv = AlpacaStreamServer(test_stream=False).start()
    peers = [connect(srv.url("iex")) for _ in range(3)]
    peers[0].login()
    srv.wait_for_connection(3)
    start = time.monotonic()
    srv.stop()
    assert time.monotonic() - start < 0.8
    srv.stop()  # idempotent
