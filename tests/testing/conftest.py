"""Local fixtures for the server's tests: a raw WebSocket peer (websocket-client).

The peer decodes the server's frames with orjson/msgpack directly, never with
``rxalpaca.codec``.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import msgpack
import orjson
import pytest
import websocket

from rxalpaca.testing import DEFAULT_KEY, DEFAULT_SECRET, AlpacaStreamServer

MSGPACK_HEADER = "Content-Type: application/msgpack"


class Peer:
    """A raw client: sends dicts, receives decoded frames (lists of dicts)."""

    def __init__(
        self,
        url: str,
        *,
        msgpack_mode: bool = False,
        headers: Sequence[str] = (),
        timeout: float = 3.0,
        rcvbuf: int | None = None,
    ) -> None:
        hdr = list(headers)
        if msgpack_mode:
            hdr.append(MSGPACK_HEADER)
        sockopt: list[tuple[int, int, int]] = []
        if rcvbuf is not None:
            sockopt.append((socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf))
        self.msgpack = msgpack_mode
        self.ws = websocket.create_connection(
            url, header=hdr, timeout=timeout, sockopt=tuple(sockopt), enable_multithread=True
        )

    def send(self, obj: Any) -> None:
        if self.msgpack:
            self.ws.send_binary(msgpack.packb(obj))
        else:
            self.ws.send(orjson.dumps(obj).decode())

    def recv_frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next data frame (reassembled)."""
        opcode, data = self.ws.recv_data()
        return opcode, data

    def recv(self) -> list[dict[str, Any]]:
        opcode, data = self.recv_frame()
        return decode(opcode, data)

    def recv_one(self) -> dict[str, Any]:
        msgs = self.recv()
        assert len(msgs) == 1, msgs
        return msgs[0]

    def expect_error(self, code: int) -> dict[str, Any]:
        msg = self.recv_one()
        assert msg["T"] == "error" and msg["code"] == code, msg
        return msg

    def login(self, key: str = DEFAULT_KEY, secret: str = DEFAULT_SECRET) -> None:
        assert self.recv() == [{"T": "success", "msg": "connected"}]
        self.send({"action": "auth", "key": key, "secret": secret})
        assert self.recv() == [{"T": "success", "msg": "authenticated"}]

    def subscribe(self, **channels: list[str]) -> dict[str, Any]:
        self.send({"action": "subscribe", **channels})
        ack = self.recv_one()
        assert ack["T"] == "subscription", ack
        return ack

    def expect_closed(self) -> int | None:
        """Read until the server closes; returns the close code (None if dropped)."""
        try:
            while True:
                opcode, data = self.ws.recv_data(control_frame=True)
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    return int.from_bytes(data[:2], "big") if len(data) >= 2 else None
                if not data and opcode == 0:
                    return None
        except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
            return None

    def close(self) -> None:
        try:
            self.ws.close(timeout=0.5)
        except Exception:
            self.ws.shutdown()
        finally:
            self.ws.shutdown()


def decode(opcode: int, data: bytes | str) -> list[dict[str, Any]]:
    """Decode a server frame by its opcode: text → JSON, binary → MessagePack (ts as ns)."""
    if opcode == websocket.ABNF.OPCODE_TEXT:
        out = orjson.loads(data)
    else:
        out = msgpack.unpackb(data, raw=False, timestamp=2)
    assert isinstance(out, list), out
    return out


PeerFactory = Callable[..., Peer]


@pytest.fixture
def server() -> Iterator[AlpacaStreamServer]:
    """A server with a short auth timeout and a fast test stream off."""
    with AlpacaStreamServer(auth_timeout=5.0, test_stream=False) as srv:
        yield srv


@pytest.fixture
def connect() -> Iterator[PeerFactory]:
    """``connect(url, msgpack_mode=False, headers=(), …)`` → a Peer closed after the test."""
    peers: list[Peer] = []

    def make(url: str, **kw: Any) -> Peer:
        p = Peer(url, **kw)
        peers.append(p)
        return p

    yield make
    for p in peers:
        p.close()
