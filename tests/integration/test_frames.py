"""The socket as a *hot*, shared Observable of raw frames (issue #9.8), over real sockets."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

import pytest

from rxalpaca import Frame, StreamClient
from rxalpaca.errors import ConnectionLostError, FrameError
from rxalpaca.frames import Opcode
from rxalpaca.testing import DEFAULT_KEY, DEFAULT_SECRET, AlpacaStreamServer
from rxalpaca.transport import WebSocketTransport

from .conftest import Collector
from .test_client_semantics import quote

pytestmark = pytest.mark.timeout(30)


def transport(server: AlpacaStreamServer, encoding: str = "json") -> WebSocketTransport:
    headers = {"Content-Type": "application/msgpack"} if encoding == "msgpack" else {}
    return WebSocketTransport(server.url("iex"), headers=headers, ping_interval=None)


def greeting(c: Collector) -> bool:
    return any(isinstance(f, Frame) and b"connected" in f.payload for f in c.items)


def test_a_second_subscriber_shares_the_socket_instead_of_closing_the_first(
    alpaca_server: AlpacaStreamServer, collector: Callable[[], Collector]
) -> None:
    t = transport(alpaca_server)
    first, second = collector(), collector()
    sub1 = t.frames().subscribe(first)
    first.wait_for(1)  # the greeting
    sub2 = t.frames().subscribe(second)
    auth = {"action": "auth", "key": DEFAULT_KEY, "secret": DEFAULT_SECRET}
    t.send(json.dumps(auth), Opcode.TEXT)
    second.wait_for(1)  # the auth reply reaches both
    first.wait_for(2)
    assert t.connections_opened == 1
    assert len(alpaca_server.connections()) == 1
    assert first.errors == [] and second.errors == []
    assert b"authenticated" in first.items[1].payload
    assert first.items[1].payload == second.items[0].payload
    sub1.dispose()  # one of two leaves: the socket stays for the other
    alpaca_server.send_raw('[{"T":"success","msg":"still here"}]')
    second.wait_for(2)
    assert not alpaca_server.connections()[0].closed
    sub2.dispose()  # the last one leaves: ref count zero closes the socket
    alpaca_server.wait_for_closed(alpaca_server.connections()[0])
    assert second.errors == [] and len(first.items) == 2


def test_every_subscriber_sees_the_end_of_the_socket_and_a_new_subscriber_reconnects(
    alpaca_server: AlpacaStreamServer, collector: Callable[[], Collector]
) -> None:
    t = transport(alpaca_server)
    a, b = collector(), collector()
    t.frames().subscribe(a)
    t.frames().subscribe(b)
    conn = alpaca_server.wait_for_connection()
    alpaca_server.drop(conn)
    assert a.errored.wait(5) and b.errored.wait(5)
    assert isinstance(a.errors[0], ConnectionLostError)
    assert isinstance(b.errors[0], ConnectionLostError)
    c = collector()
    sub = t.frames().subscribe(c)
    c.wait_for(1)
    assert t.connections_opened == 2
    sub.dispose()


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_client_frames_records_every_frame_across_reconnects(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
    encoding: str,
) -> None:
    client = make_client(alpaca_server, encoding=encoding)
    raw = collector()
    client.frames.subscribe(raw)
    got = collector()
    client.quotes("AAPL").subscribe(got)
    first = alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}})
    alpaca_server.publish([quote("AAPL", 1)])
    got.wait_for(1)
    alpaca_server.drop(first)
    alpaca_server.wait_for_closed(first)
    alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}})
    alpaca_server.publish([quote("AAPL", 2)])
    got.wait_for(2)
    frames = raw.wait_for(client.metrics.frames_received)
    # Greeting, auth reply, ack and a quote on each of two sockets, in order.
    assert len(frames) == client.metrics.frames_received >= 8
    assert all(isinstance(f, Frame) for f in frames)
    binary = encoding == "msgpack"
    assert {f.opcode for f in frames} == {Opcode.BINARY if binary else Opcode.TEXT}
    assert [f.received_ns for f in frames] == sorted(f.received_ns for f in frames)
    assert raw.errors == []  # a lost socket is not an error of the frames stream
    client.close()
    assert raw.completed.is_set()


def test_a_raising_frames_observer_is_reported_and_harms_nobody(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
) -> None:
    client = make_client(alpaca_server)
    problems = collector()
    client.errors.subscribe(problems)
    calls = threading.Event()

    def bad(_f: Frame | FrameError) -> None:
        calls.set()
        raise RuntimeError("recorder bug")

    client.frames.subscribe(bad)
    got = collector()
    client.quotes("AAPL").subscribe(got)
    alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}})
    alpaca_server.publish([quote("AAPL")])
    got.wait_for(1)
    assert calls.is_set()
    assert problems.items and isinstance(problems.items[0].__cause__, RuntimeError)
    assert client.metrics.handler_errors >= 3  # greeting, auth, ack, quote …
