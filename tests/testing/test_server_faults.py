"""Fault injection, liveness and flow control: S34-S39 of alpaca-stream-protocol.md §12."""

from __future__ import annotations

import time
from typing import Any

import msgpack
import orjson
import pytest
import websocket

from rxalpaca.testing import DEFAULT_KEY, DEFAULT_SECRET, AlpacaStreamServer, Fault

from .conftest import PeerFactory, decode

pytestmark = pytest.mark.timeout(30)

T0 = 1_700_000_000_000_000_000


def login(server: AlpacaStreamServer, connect: PeerFactory, feed: str = "iex", **kw: Any) -> Any:
    peer = connect(server.url(feed), **kw)
    peer.login()
    return peer


def trade(i: int) -> dict[str, Any]:
    return {
        "T": "t",
        "S": "AAPL",
        "i": i,
        "x": "V",
        "p": 100.25,
        "s": 10,
        "c": ["@", "I"],
        "z": "C",
        "t": T0 + i,
    }


def undecodable(opcode: int, data: bytes) -> bool:
    try:
        decode(opcode, data)
    except Exception:
        return True
    return False


@pytest.mark.parametrize("mp", [False, True])
def test_s34_canned_faults(server: AlpacaStreamServer, connect: PeerFactory, mp: bool) -> None:
    """S34: truncated/invalid frames, unknown T, missing and extra fields, null lists,
    a control message inside a data batch, a bare object."""
    peer = login(server, connect, msgpack_mode=mp)
    server.send_fault(Fault.TRUNCATED)
    assert undecodable(*peer.recv_frame())
    server.send_fault(Fault.INVALID)
    assert undecodable(*peer.recv_frame())
    server.send_fault("unknown_type")
    assert peer.recv_one()["T"] == "zz"
    server.send_fault(Fault.MISSING_FIELDS)
    assert peer.recv_one() == {"T": "t", "S": "AAPL"}
    server.send_fault(Fault.EXTRA_FIELDS)
    msg = peer.recv_one()
    assert msg["zz"] == 1 and msg["p"] == 100.5
    server.send_fault(Fault.NULL_LISTS)
    ack = peer.recv_one()
    assert ack["T"] == "subscription" and ack["trades"] is None
    server.send_fault(Fault.CONTROL_IN_BATCH)
    assert [m["T"] for m in peer.recv()] == ["t", "success", "t"]
    server.send_fault(Fault.NOT_AN_ARRAY)
    opcode, data = peer.recv_frame()
    assert opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY)
    obj = orjson.loads(data) if not mp else msgpack.unpackb(data, timestamp=2)
    assert isinstance(obj, dict) and obj["T"] == "t"


def test_s34_split_next_frame(server: AlpacaStreamServer, connect: PeerFactory) -> None:
    """S34: the next frame goes out as continuation fragments that reassemble."""
    peer = login(server, connect)
    peer.subscribe(trades=["AAPL"])
    server.split_next_frame(3)
    server.publish([trade(1)])
    frames = []
    while True:
        frame = peer.ws.recv_frame()
        frames.append(frame)
        if frame.fin:
            break
    # websockets closes a fragmented message with an empty final continuation frame
    assert len([f for f in frames if f.data]) == 3
    assert frames[0].opcode == websocket.ABNF.OPCODE_TEXT
    assert all(f.opcode == websocket.ABNF.OPCODE_CONT for f in frames[1:])
    assert orjson.loads(b"".join(f.data for f in frames))[0]["i"] == 1
    server.send_fault(Fault.SPLIT)
    assert peer.recv_one()["T"] == "t"  # websocket-client reassembles


def _read_message(peer: Any) -> list[Any]:
    frames = []
    while True:
        frame = peer.ws.recv_frame()
        frames.append(frame)
        if frame.fin:
            return frames


def test_s34_split_fault_splits_its_own_frame(
    server: AlpacaStreamServer, connect: PeerFactory
) -> None:
    """Fault.SPLIT fragments the trade it sends, never a frame queued before it."""
    peer = login(server, connect)
    peer.subscribe(trades=["AAPL"])
    server.publish([trade(1)])
    server.send_fault(Fault.SPLIT)
    first = _read_message(peer)
    assert len(first) == 1 and orjson.loads(first[0].data)[0]["i"] == 1
    second = _read_message(peer)
    assert len([f for f in second if f.data]) == 3


def test_s34_split_next_frame_skips_an_empty_frame(
    server: AlpacaStreamServer, connect: PeerFactory
) -> None:
    """An empty frame cannot be split: it goes out whole and the next frame is split."""
    peer = login(server, connect)
    peer.subscribe(trades=["AAPL"])
    server.split_next_frame(2)
    server.send_raw(b"", text=True)
    server.publish([trade(1)])
    empty = _read_message(peer)
    assert len(empty) == 1 and empty[0].data == b""
    split = _read_message(peer)
    assert len([f for f in split if f.data]) == 2
    assert orjson.loads(b"".join(f.data for f in split))[0]["i"] == 1


def test_s34_corrupt_next_frame(server: AlpacaStreamServer, connect: PeerFactory) -> None:
    """S34: the next frame is truncated; the one after is fine."""
    peer = login(server, connect, msgpack_mode=True)
    peer.subscribe(trades=["AAPL"])
    server.corrupt_next_frame()
    server.publish([trade(1)])
    server.publish([trade(2)])
    assert undecodable(*peer.recv_frame())
    assert peer.recv_one()["i"] == 2


def test_s35_ping_answered_with_pong(server: AlpacaStreamServer, connect: PeerFactory) -> None:
    """S35: every ping gets a pong with the same payload."""
    peer = login(server, connect)
    peer.ws.ping("hello")
    opcode, data = peer.ws.recv_data(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_PONG and data == b"hello"


def test_s35_server_pings(alpaca_server_factory: Any, connect: PeerFactory) -> None:
    """S35 (optional): the server pings every ping_interval seconds."""
    srv = alpaca_server_factory(ping_interval=0.1, test_stream=False)
    peer = connect(srv.url("iex"))
    assert peer.recv()[0]["msg"] == "connected"
    opcode, _ = peer.ws.recv_data(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_PING


def test_s36_mute(server: AlpacaStreamServer, connect: PeerFactory) -> None:
    """S36: a muted connection gets no data but still answers pings; unmute resumes."""
    peer = login(server, connect)
    peer.subscribe(trades=["AAPL"])
    info = server.wait_for_authenticated()
    server.mute(info)
    assert server.connection(info).muted
    server.publish([trade(1)])
    peer.ws.ping("p")
    opcode, data = peer.ws.recv_data(control_frame=True)
    assert (opcode, data) == (websocket.ABNF.OPCODE_PONG, b"p")  # no data came first
    server.mute(info, on=False)
    server.publish([trade(2)])
    assert peer.recv_one()["i"] == 2


def test_s37_slow_client_is_disconnected(alpaca_server_factory: Any, connect: PeerFactory) -> None:
    """S37: a client that stops reading overflows its bounded buffer and is dropped."""
    srv = alpaca_server_factory(max_buffer_messages=2000, test_stream=False)
    peer = login(srv, connect, rcvbuf=4096)
    peer.subscribe(trades=["*"])
    info = srv.wait_for_authenticated()
    batch = [trade(i) for i in range(500)]
    deadline = time.monotonic() + 20
    while not srv.connection(info).closed:
        assert time.monotonic() < deadline, "slow client never disconnected"
        srv.publish(batch)
    closed = srv.wait_for_closed(info)
    assert closed.close_reason == "slow client"
    assert peer.expect_closed() in (None, 1000, 1006)


def test_s37_overflow_sends_407_when_it_can(
    alpaca_server_factory: Any, connect: PeerFactory
) -> None:
    """S37: when the socket can still take it, the 407 'slow client' reaches the client
    before the connection is dropped; queued data is discarded."""
    srv = alpaca_server_factory(max_buffer_messages=100, test_stream=False)
    peer = login(srv, connect)
    peer.subscribe(trades=["*"])
    info = srv.wait_for_authenticated()
    srv.publish([trade(i) for i in range(500)])  # overflows at once
    err = peer.expect_error(407)
    assert err["msg"] == "slow client"
    assert peer.expect_closed() is None  # dropped, no close frame
    assert srv.wait_for_closed(info).close_reason == "slow client"


def test_s37_buffer_bound_in_bytes(alpaca_server_factory: Any, connect: PeerFactory) -> None:
    """S37: the bound can be in bytes too."""
    srv = alpaca_server_factory(
        max_buffer_messages=None, max_buffer_bytes=200_000, test_stream=False, batch_size=100
    )
    peer = login(srv, connect, rcvbuf=4096)
    peer.subscribe(trades=["*"])
    info = srv.wait_for_authenticated()
    batch = [trade(i) for i in range(1000)]
    deadline = time.monotonic() + 20
    while not srv.connection(info).closed:
        assert time.monotonic() < deadline
        srv.publish(batch)
    assert srv.wait_for_closed(info).close_reason == "slow client"


def test_s37_reading_client_is_not_dropped(
    alpaca_server_factory: Any, connect: PeerFactory
) -> None:
    """S37: a client that keeps up is never disconnected."""
    srv = alpaca_server_factory(max_buffer_messages=1000, test_stream=False)
    peer = login(srv, connect)
    peer.subscribe(trades=["*"])
    for _ in range(10):
        srv.publish([trade(i) for i in range(200)])
        for _ in range(200):
            peer.recv_one()
    assert not srv.wait_for_authenticated().closed


def test_s38_drop_without_close_frame(server: AlpacaStreamServer, connect: PeerFactory) -> None:
    """S38: drop() aborts the TCP connection; reconnecting replays nothing."""
    peer = login(server, connect)
    peer.subscribe(trades=["AAPL"])
    info = server.wait_for_authenticated()
    server.drop(info)
    assert peer.expect_closed() is None
    assert server.wait_for_closed(info).close_reason == "dropped"
    again = connect(server.url("iex"))
    again.login()
    ack = again.subscribe(quotes=["MSFT"])
    assert ack["trades"] == []


def test_s38_close_with_code(server: AlpacaStreamServer, connect: PeerFactory) -> None:
    """S38: close(code) sends a close frame with that code, after what is queued."""
    peer = login(server, connect)
    peer.subscribe(trades=["AAPL"])
    server.publish([trade(1)])
    server.close(code=4002, reason="bye")
    assert peer.recv_one()["i"] == 1
    assert peer.expect_closed() == 4002


def test_s39_internal_error_then_close(server: AlpacaStreamServer, connect: PeerFactory) -> None:
    """S39: 500 'internal error' on demand, then close (default) or not."""
    peer = login(server, connect)
    server.inject_internal_error(close=False)
    assert peer.expect_error(500)["msg"] == "internal error"
    peer.subscribe(trades=["AAPL"])
    server.inject_internal_error()
    peer.expect_error(500)
    assert peer.expect_closed() == 1000


def test_send_error_any_code(server: AlpacaStreamServer, connect: PeerFactory) -> None:
    """send_error uses the documented text, or a given one."""
    peer = login(server, connect)
    server.send_error(407)
    assert peer.expect_error(407)["msg"] == "slow client"
    server.send_error(499, msg="strange")
    assert peer.expect_error(499)["msg"] == "strange"


def test_fail_next_auth_and_slow_auth(server: AlpacaStreamServer, connect: PeerFactory) -> None:
    """fail_next_auth answers the next auth with a code once; slow_auth delays replies
    but keeps them in order (S26)."""
    server.fail_next_auth(406)
    peer = connect(server.url("iex"))
    peer.recv()
    peer.send({"action": "auth", "key": DEFAULT_KEY, "secret": DEFAULT_SECRET})
    peer.expect_error(406)
    server.slow_auth(0.2)
    start = time.monotonic()
    peer.send({"action": "auth", "key": DEFAULT_KEY, "secret": DEFAULT_SECRET})
    peer.send({"action": "subscribe", "trades": ["AAPL"]})
    assert peer.recv_one() == {"T": "success", "msg": "authenticated"}
    assert time.monotonic() - start >= 0.15
    assert peer.recv_one()["trades"] == ["AAPL"]
    server.slow_auth(0)
