"""The transport's read loop (recv → feed → dispatch) against a hand-written peer.

The peer writes exact bytes (what no well-behaved server library would send) and
records the frames the client sends back, unmasked, so a test can see the close code.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import queue
import re
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from rxalpaca.errors import ConnectionLostError, FrameError
from rxalpaca.frames import Frame, Opcode
from rxalpaca.transport import WebSocketTransport
from tests.conftest import TIMING_FACTOR

from .conftest import Collector

pytestmark = pytest.mark.timeout(30)

_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
WAIT = 5.0 * TIMING_FACTOR


def frame(payload: bytes, opcode: int = Opcode.TEXT, *, fin: bool = True, first: int = 0) -> bytes:
    """A server frame (unmasked); ``first`` is OR-ed into the first byte (RSV bits)."""
    b1 = (0x80 if fin else 0) | first | opcode
    n = len(payload)
    if n < 126:
        head = bytes([b1, n])
    elif n < 1 << 16:
        head = bytes([b1, 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([b1, 127]) + n.to_bytes(8, "big")
    return head + payload


class RawPeer:
    """One WebSocket connection on 127.0.0.1, written by hand.

    It answers the upgrade and sends ``greeting`` in the same ``sendall`` as the 101
    response, then records every frame the client sends as ``(opcode, payload)``.
    """

    def __init__(self, greeting: bytes = b"") -> None:
        self.greeting = greeting
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"ws://127.0.0.1:{self.listener.getsockname()[1]}"
        self.received: queue.SimpleQueue[tuple[int, bytes]] = queue.SimpleQueue()
        self.conn: socket.socket | None = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name="raw-peer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.listener.settimeout(WAIT)
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        self.conn = conn
        with contextlib.suppress(OSError):
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            match = re.search(rb"Sec-WebSocket-Key: *(\S+)", request, re.IGNORECASE)
            assert match is not None
            accept = base64.b64encode(hashlib.sha1(match.group(1) + _WS_GUID).digest())
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
                + self.greeting
            )  # fmt: skip
            self.ready.set()
            reader = conn.makefile("rb")
            while head := reader.read(2):
                n = head[1] & 0x7F
                if n == 126:
                    n = int.from_bytes(reader.read(2), "big")
                elif n == 127:
                    n = int.from_bytes(reader.read(8), "big")
                mask = reader.read(4)  # client frames are always masked (RFC 6455 §5.3)
                data = reader.read(n)
                self.received.put(
                    (head[0] & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(data)))
                )

    def send(self, data: bytes) -> None:
        assert self.ready.wait(WAIT) and self.conn is not None
        self.conn.sendall(data)

    def next_from_client(self, opcode: int) -> bytes:
        """The payload of the next frame with ``opcode`` the client sent."""
        while True:
            op, payload = self.received.get(timeout=WAIT)
            if op == opcode:
                return payload

    def close(self) -> None:
        self.listener.close()
        if self.conn is not None:
            with contextlib.suppress(OSError):
                self.conn.shutdown(socket.SHUT_RDWR)
            self.conn.close()
        self.thread.join(WAIT)


@pytest.fixture
def connect(
    collector: Callable[[], Collector],
) -> Iterator[Callable[..., tuple[RawPeer, Collector]]]:
    opened: list[tuple[RawPeer, WebSocketTransport]] = []

    def make(greeting: bytes = b"", **options: object) -> tuple[RawPeer, Collector]:
        peer = RawPeer(greeting)
        transport = WebSocketTransport(peer.url, ping_interval=None, **options)  # type: ignore[arg-type]
        opened.append((peer, transport))
        c = collector()
        transport.frames().subscribe(c)
        return peer, c

    yield make
    for peer, transport in opened:
        transport.close(final=True)
        peer.close()


def wait_error(c: Collector) -> BaseException:
    assert c.errored.wait(WAIT), f"no error; items {c.items}"
    return c.errors[0]


def test_frames_sent_with_the_101_response_are_not_lost(
    connect: Callable[..., tuple[RawPeer, Collector]],
) -> None:
    """websocket-client reads the handshake a byte at a time, so the frames that came in
    the same packet are still in the socket for our parser."""
    _, c = connect(frame(b"[1]") + frame(b"\x91\x02", Opcode.BINARY))
    items = c.wait_for(2)
    assert [(f.payload, f.opcode) for f in items] == [
        (b"[1]", Opcode.TEXT),
        (b"\x91\x02", Opcode.BINARY),
    ]
    assert c.errors == []


def test_a_ping_between_fragments_is_answered_and_the_fragments_come_in_order(
    connect: Callable[..., tuple[RawPeer, Collector]],
) -> None:
    peer, c = connect()
    peer.send(
        frame(b"[1,", fin=False) + frame(b"abc", Opcode.PING) + frame(b"2]", Opcode.CONTINUATION)
    )
    assert peer.next_from_client(Opcode.PONG) == b"abc"
    items = c.wait_for(2)
    assert [(f.payload, f.opcode, f.fin) for f in items] == [
        (b"[1,", Opcode.TEXT, False),
        (b"2]", Opcode.CONTINUATION, True),
    ]


def test_an_oversized_frame_trickling_in_is_skipped_and_the_connection_goes_on(
    connect: Callable[..., tuple[RawPeer, Collector]],
) -> None:
    peer, c = connect(max_frame_bytes=1024)
    data = frame(b"x" * 200_000, Opcode.BINARY)
    peer.send(data[:10])
    [error] = c.wait_for(1)  # reported at the header, before the payload arrives
    assert isinstance(error, FrameError) and "a frame of 200000 bytes" in error.reason
    for i in range(10, len(data), 4096):
        peer.send(data[i : i + 4096])
    peer.send(frame(b"[after]"))
    items = c.wait_for(2)
    assert isinstance(items[1], Frame) and items[1].payload == b"[after]"
    assert c.errors == [] and len(items) == 2


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (frame(b"[]", first=0x40), "reserved bits set in frame header 0xc1"),
        (frame(b"[]", 0x3), "reserved opcode 0x3"),
        (frame(b"[]", Opcode.CONTINUATION), "continuation frame outside a message"),
        (frame(b"", Opcode.PING, fin=False), "fragmented control frame"),
        (bytes([0x81, 0x82, 9, 9, 9, 9, 0, 0]), "masked frame from the server"),
    ],
    ids=["rsv1", "reserved-opcode", "stray-continuation", "fragmented-ping", "masked"],
)
def test_a_framing_error_closes_with_1002_and_nothing_after_it_is_delivered(
    connect: Callable[..., tuple[RawPeer, Collector]], bad: bytes, why: str
) -> None:
    """RFC 6455 §7.1.7: fail the connection, with 1002 (protocol error) as its close code."""
    peer, c = connect()
    peer.send(frame(b"[before]") + bad + frame(b"[after]"))
    error = wait_error(c)
    assert isinstance(error, ConnectionLostError)
    assert why in str(error) and "closed with 1002" in str(error)
    assert peer.next_from_client(Opcode.CLOSE)[:2] == (1002).to_bytes(2, "big")
    assert [f.payload for f in c.items] == [b"[before]"]


def test_a_close_frame_is_answered_and_ends_the_socket_with_its_code_and_reason(
    connect: Callable[..., tuple[RawPeer, Collector]],
) -> None:
    peer, c = connect()
    peer.send(frame((1001).to_bytes(2, "big") + b"restarting", Opcode.CLOSE) + frame(b"[late]"))
    error = wait_error(c)
    assert isinstance(error, ConnectionLostError)
    assert "code 1001" in str(error) and "restarting" in str(error)
    assert peer.next_from_client(Opcode.CLOSE)[:2] == (1000).to_bytes(2, "big")
    assert c.items == []
