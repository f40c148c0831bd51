"""``tests.relay.DarkRelay``: bytes flow, going dark silences both ways without an EOF,
restoring resumes, closes propagate, ``close()`` frees everything."""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from rxalpaca import StreamClient
from rxalpaca.testing import DEFAULT_KEY, DEFAULT_SECRET, AlpacaStreamServer
from tests.conftest import TIMING_FACTOR
from tests.relay import DarkRelay

TF = TIMING_FACTOR
pytestmark = pytest.mark.timeout(60)
#: How long "nothing arrives" is watched for: no event marks a byte that must not come.
QUIET = 0.3 * TF


@pytest.fixture
def target() -> Iterator[socket.socket]:
    """A plain listening socket: the test accepts the relay's upstream connections."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(5 * TF)
        yield listener


@pytest.fixture
def relay(target: socket.socket) -> Iterator[DarkRelay]:
    with DarkRelay("127.0.0.1", target.getsockname()[1]) as r:
        yield r


def dial(relay: DarkRelay) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", relay.port), timeout=5 * TF)
    s.settimeout(5 * TF)
    return s


def pair(relay: DarkRelay, target: socket.socket) -> tuple[socket.socket, socket.socket]:
    """(client end, server end) of one relayed connection."""
    client = dial(relay)
    server, _ = target.accept()
    server.settimeout(5 * TF)
    return client, server


def recv_exactly(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        assert chunk, f"EOF after {data!r}"
        data += chunk
    return data


def silent(s: socket.socket, seconds: float = 0.0) -> bool:
    """Nothing to read -- no byte and no EOF -- within ``seconds``."""
    readable, _, _ = select.select([s], [], [], seconds)
    return not readable


def test_bytes_flow_both_ways(relay: DarkRelay, target: socket.socket) -> None:
    client, server = pair(relay, target)
    with client, server:
        client.sendall(b"ping")
        assert recv_exactly(server, 4) == b"ping"
        server.sendall(b"pong!")
        assert recv_exactly(client, 5) == b"pong!"
        relay.wait_for(lambda r: r.forwarded == 9)
        assert (relay.connections, relay.active, relay.discarded) == (1, 1, 0)


def test_dark_relay_forwards_nothing_and_closes_nothing(
    relay: DarkRelay, target: socket.socket
) -> None:
    client, server = pair(relay, target)
    with client, server:
        relay.go_dark()
        assert relay.dark
        client.sendall(b"lost upstream")
        server.sendall(b"lost downstream")
        # Read and thrown away by the relay: once counted, they can never arrive.
        relay.wait_for(lambda r: r.discarded == 28)
        assert silent(server) and silent(client)  # no byte, and no EOF either
        assert relay.active == 1 and relay.forwarded == 0
        relay.restore()
        client.sendall(b"back")
        assert recv_exactly(server, 4) == b"back"  # only what came after restore()
        server.sendall(b"too")
        assert recv_exactly(client, 3) == b"too"
        assert relay.discarded == 28


def test_a_peer_sending_into_the_dark_never_blocks(relay: DarkRelay, target: socket.socket) -> None:
    """Discard mode: the relay keeps reading, so a sender's buffers never fill (as over a
    dead path, where the kernel takes data long before a write would block)."""
    client, server = pair(relay, target)
    with client, server:
        relay.go_dark()
        blob = bytes(8 * 1024 * 1024)  # far more than loopback socket buffers hold
        client.sendall(blob)  # would time out (5 s) if nobody read
        relay.wait_for(lambda r: r.discarded == len(blob), timeout=10 * TF)
        assert silent(server)


def test_hold_mode_delivers_everything_in_order_on_restore(
    relay: DarkRelay, target: socket.socket
) -> None:
    client, server = pair(relay, target)
    with client, server:
        relay.go_dark(discard=False)
        client.sendall(b"one,")
        server.sendall(b"uno,")
        assert silent(server, QUIET) and silent(client)
        client.sendall(b"two")
        relay.restore()
        assert recv_exactly(server, 7) == b"one,two"
        assert recv_exactly(client, 4) == b"uno,"
        relay.wait_for(lambda r: r.forwarded == 11)  # counted just after sending
        assert relay.discarded == 0


def test_connections_made_while_dark_are_dark_and_reach_the_target_on_restore(
    relay: DarkRelay, target: socket.socket
) -> None:
    relay.go_dark()
    with dial(relay) as client:
        client.sendall(b"hello?")
        relay.wait_for(lambda r: r.connections == 1 and r.discarded == 6)
        # Not dialled upstream while dark: the target hears of no connection.
        assert silent(target, QUIET)
        assert silent(client)  # and the client sees no EOF
        relay.restore()
        server, _ = target.accept()
        with server:
            server.settimeout(5 * TF)
            client.sendall(b"now")
            assert recv_exactly(server, 3) == b"now"


@pytest.mark.parametrize("discard", [True, False], ids=["discard", "hold"])
def test_a_close_by_one_end_reaches_the_other(
    relay: DarkRelay, target: socket.socket, discard: bool
) -> None:
    """Discard mode reads, so it sees the close and passes it on even while dark; hold
    mode reads nothing while dark, so the close passes once restored."""
    client, server = pair(relay, target)
    relay.go_dark(discard=discard)
    client.close()
    if not discard:
        assert silent(server, QUIET)
        relay.restore()
    assert server.recv(1) == b""  # EOF
    assert relay.active == 1  # a FIN is a half-close: the way back stays open ...
    server.close()
    relay.wait_for(lambda r: r.active == 0)  # ... until the server closes too


def test_a_half_close_is_relayed(relay: DarkRelay, target: socket.socket) -> None:
    client, server = pair(relay, target)
    with client, server:
        client.shutdown(socket.SHUT_WR)
        assert server.recv(1) == b""
        server.sendall(b"still open")  # the other direction still works
        assert recv_exactly(client, 10) == b"still open"
        server.close()
        assert client.recv(1) == b""
        relay.wait_for(lambda r: r.active == 0)


def test_close_frees_everything(target: socket.socket) -> None:
    before = {t for t in threading.enumerate() if t.name.startswith("dark-relay")}
    relay = DarkRelay("127.0.0.1", target.getsockname()[1])
    pairs = [pair(relay, target) for _ in range(3)]
    relay.go_dark()
    relay.wait_for(lambda r: r.active == 3)
    relay.close()
    relay.close()  # idempotent
    assert relay.active == 0 and relay.connections == 3
    for client, server in pairs:
        with client, server:
            assert client.recv(1) == b"" and server.recv(1) == b""  # both ends closed
    after = {t for t in threading.enumerate() if t.name.startswith("dark-relay")}
    assert after <= before, after - before
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", relay.port), timeout=5 * TF).close()


def test_an_unreachable_target_closes_the_client_connection() -> None:
    with socket.create_server(("127.0.0.1", 0)) as gone:
        port = gone.getsockname()[1]
    with DarkRelay("127.0.0.1", port) as relay, dial(relay) as client:
        assert client.recv(1) == b""
        relay.wait_for(lambda r: r.active == 0 and r.connections == 1)


def test_a_stream_client_through_the_relay() -> None:
    """The relay carries a real session; dark, a published quote does not arrive."""
    got: list[Any] = []
    cond = threading.Condition()

    def on_quote(q: Any) -> None:
        with cond:
            got.append(q)
            cond.notify_all()

    quote = {"T": "q", "S": "AAPL", "bx": "V", "bp": 1.0, "bs": 1, "ax": "V", "ap": 1.1,
             "as": 1, "c": ["R"], "z": "C", "t": 1_700_000_000_000_000_000}  # fmt: skip
    with (
        AlpacaStreamServer(test_stream=False) as server,
        DarkRelay("127.0.0.1", server.port) as relay,
    ):
        client = StreamClient("iex", url=relay.base_url, key=DEFAULT_KEY,
                              secret=DEFAULT_SECRET, ping_interval=None)  # fmt: skip
        try:
            client.quotes("AAPL").subscribe(on_quote)
            server.wait_for_subscriptions({"quotes": {"AAPL"}}, timeout=5 * TF)
            server.publish([quote])
            with cond:
                assert cond.wait_for(lambda: len(got) == 1, 5 * TF)
            forwarded = relay.forwarded
            relay.go_dark()
            server.publish([{**quote, "bp": 2.0}])
            relay.wait_for(lambda r: r.discarded > 0)  # the frame reached the relay
            with cond:
                assert len(got) == 1
            assert relay.forwarded == forwarded
            assert [c.closed for c in server.connections()] == [False]
        finally:
            client.close()
