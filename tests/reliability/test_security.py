"""Security: secrets stay secret, TLS is verified, inbound sizes are capped, loopback only.

* the API secret never shows in log records (any logger, any level, tracebacks
  included), reprs, exceptions, ``health()`` or metrics — checked here explicitly for
  the risky paths (auth failure, header auth, handler errors, bad frames, server
  errors), and for every test of the suite by the ``_secret_guard`` plugin;
* ``wss://`` verifies certificates: a server whose certificate comes from a CA we do
  not trust is refused with a clear, non-retried ``ConfigurationError``; trusting the
  CA with ``ca_file=`` makes it work; a trusted certificate for another host name is
  still refused;
* ``max_message_bytes`` caps inbound messages: an oversized message (whole or in
  continuation frames) becomes a ``FrameError``, reassembly memory stays bounded, and
  the stream continues;
* the test server binds loopback only unless told otherwise.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import re
import socket
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import reactivex

from rxalpaca import ConnectionState, StreamClient, ops
from rxalpaca.errors import (
    AuthFailed,
    ConfigurationError,
    ConnectionLostError,
    FrameError,
    HandlerError,
)
from rxalpaca.frames import Frame, Opcode
from rxalpaca.testing import DEFAULT_KEY, DEFAULT_SECRET, AlpacaStreamServer
from rxalpaca.testing.wire import Encoding, encode_frame
from tests._secret_guard import SecretGuardHandler, assert_no_secret, find_secrets, register_secret

from ._fuzz_helpers import timing_factor
from .tls_helpers import CertSet, TlsProxy, have_openssl, make_certs

TF = timing_factor()
NS = 1_700_000_000_000_000_000
pytestmark = pytest.mark.timeout(60)


def quote(sym: str, i: int = 0) -> dict[str, Any]:
    return {"T": "q", "S": sym, "bx": "V", "bp": 1.0 + i, "bs": 1, "ax": "V", "ap": 1.1 + i,
            "as": 1, "c": ["R"], "z": "C", "t": NS + i}  # fmt: skip


class Box:
    """Collects items/errors from any thread; ``wait`` blocks on a predicate."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.errors: list[BaseException] = []
        self.cond = threading.Condition()

    def on_next(self, x: Any) -> None:
        with self.cond:
            self.items.append(x)
            self.cond.notify_all()

    def on_error(self, e: BaseException) -> None:
        with self.cond:
            self.errors.append(e)
            self.cond.notify_all()

    def wait(self, pred: Callable[[Box], bool], timeout: float = 5.0) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: pred(self), timeout * TF), (self.items, self.errors)


@pytest.fixture
def guard() -> Iterator[SecretGuardHandler]:
    """This module's own capture (works with or without the plugin registered)."""
    handler = SecretGuardHandler()
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    ws_logger = logging.getLogger("websockets")
    ws_old = ws_logger.level
    ws_logger.setLevel(logging.INFO)  # the server's library dumps received frames at DEBUG
    yield handler
    root.removeHandler(handler)
    root.setLevel(old)
    ws_logger.setLevel(ws_old)


@pytest.fixture
def clients() -> Iterator[list[StreamClient]]:
    made: list[StreamClient] = []
    yield made
    for c in made:
        c.close()


def _client(made: list[StreamClient], url: str, **kw: Any) -> StreamClient:
    kw.setdefault("key", DEFAULT_KEY)
    kw.setdefault("secret", DEFAULT_SECRET)
    kw.setdefault("ping_interval", None)
    c = StreamClient("iex", url=url, **kw)
    made.append(c)
    return c


# ---------------------------------------------------------------- secrets


def test_guard_catches_and_masks_a_leak() -> None:
    """Self-test: a secret in a message, in an exception's args or traceback is caught."""
    secret = register_secret("s3cr3t-for-the-guard-self-test")
    guard = SecretGuardHandler()
    log = logging.getLogger("rxalpaca-guard-selftest")
    log.propagate = False  # this leak is on purpose: keep it away from the real guard
    log.setLevel(logging.DEBUG)
    log.addHandler(guard)
    try:
        log.debug("plain %s", secret)
        try:
            raise RuntimeError("boom") from ValueError(secret)
        except RuntimeError:
            log.exception("failed")
        log.info("harmless")
    finally:
        log.removeHandler(guard)
    assert guard.records == 3
    assert len(guard.findings) == 2
    assert not any(find_secrets(f) for f in guard.findings), "findings must be masked"
    with pytest.raises(pytest.fail.Exception) as failed:
        guard.check()
    assert secret not in str(failed.value)
    with pytest.raises(pytest.fail.Exception):
        assert_no_secret({"nested": [RuntimeError(secret)]})
    assert_no_secret({"nested": [RuntimeError("harmless")]})


@pytest.mark.parametrize("header_auth", [False, True], ids=["auth-message", "header-auth"])
@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_secret_never_in_logs_reprs_exceptions_or_metrics(
    guard: SecretGuardHandler,
    clients: list[StreamClient],
    header_auth: bool,
    encoding: str,
) -> None:
    with AlpacaStreamServer(test_stream=False) as server:
        client = _client(clients, server.base_url, header_auth=header_auth, encoding=encoding)
        errors = Box()
        client.errors.subscribe(errors.on_next)
        good = Box()

        def raising(q: Any) -> None:
            raise RuntimeError(f"observer failed on {q!r}")

        client.quotes("AAPL").subscribe(good.on_next)
        client.quotes("AAPL").subscribe(raising)
        server.wait_for_subscriptions({"quotes": {"AAPL"}}, timeout=5 * TF)
        server.publish([quote("AAPL")])
        server.send_raw(b"\xc1 not a frame", text=encoding == "json")
        server.send_error(400)
        server.publish([quote("AAPL", 1)])
        good.wait(lambda b: len(b.items) == 2)
        errors.wait(lambda b: len(b.items) >= 4)  # 2 handler errors, 1 frame error, 1 error
        kinds = {type(e) for e in errors.items}
        assert {HandlerError, FrameError} <= kinds
        assert client.current_state is ConnectionState.AUTHENTICATED
        assert_no_secret(
            client, client.health(), client.metrics.snapshot(), errors.items,
            client._upstream.session, client._upstream.transport, client.subscriptions(),
        )  # fmt: skip
        conn = server.connections()[0]
        if header_auth:  # the secret did travel, in the upgrade headers only
            assert conn.headers.get("APCA-API-SECRET-KEY") == DEFAULT_SECRET
        client.close()
        assert_no_secret(client, client.health())
        assert client.metrics.frames_balance() and client.metrics.messages_balance()
    assert guard.records > 0
    guard.check()


@pytest.mark.parametrize("header_auth", [False, True], ids=["auth-message", "header-auth"])
def test_wrong_secret_fails_without_revealing_it(
    guard: SecretGuardHandler, clients: list[StreamClient], header_auth: bool
) -> None:
    wrong = register_secret(f"wrong-secret-{header_auth}-do-not-log")
    with AlpacaStreamServer(test_stream=False) as server:
        client = _client(clients, server.base_url, secret=wrong, header_auth=header_auth)
        box = Box()
        client.errors.subscribe(box.on_next)
        client.quotes("AAPL").subscribe(box.on_next, box.on_error)
        box.wait(lambda b: bool(b.errors), timeout=10)
        [fatal] = box.errors
        assert isinstance(fatal, AuthFailed), repr(fatal)
        assert client.current_state is ConnectionState.FAILED
        assert_no_secret(fatal, box.items, client, client.health(), client.metrics.snapshot(),
                         client._upstream.session, client._upstream.transport)  # fmt: skip
        assert client.metrics.frames_balance() and client.metrics.messages_balance()
    guard.check()


# ---------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertSet:
    if not have_openssl():
        pytest.skip("the openssl command is needed to make test certificates")
    return make_certs(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_server(certs: CertSet) -> Iterator[tuple[AlpacaStreamServer, TlsProxy]]:
    with (
        AlpacaStreamServer(test_stream=False) as server,
        TlsProxy(server.port, certs.good_cert, certs.good_key) as proxy,
    ):
        yield server, proxy


def _refused(client: StreamClient, proxy: TlsProxy) -> ConfigurationError:
    box = Box()
    client.errors.subscribe(box.on_next)
    client.quotes("AAPL").subscribe(box.on_next, box.on_error)
    box.wait(lambda b: bool(b.errors), timeout=10)
    [err] = box.errors
    assert isinstance(err, ConfigurationError), repr(err)
    assert "certificate verification failed" in str(err)
    assert client.current_state is ConnectionState.FAILED
    assert box.items == [err]  # published on client.errors too
    # Not retried: the terminal state admits no reconnect; give a retry timer the chance
    # to prove otherwise (no event to await for something that must not happen).
    time.sleep(0.3 * TF)
    assert client.metrics.connects == 1 and client.metrics.reconnects == 0
    with proxy.changed:
        assert proxy.accepted == 1 and proxy.handshakes_ok == 0
    assert client.metrics.frames_balance() and client.metrics.messages_balance()
    return err


def test_wss_refuses_a_certificate_from_an_untrusted_ca(
    tls_server: tuple[AlpacaStreamServer, TlsProxy], clients: list[StreamClient]
) -> None:
    server, proxy = tls_server
    client = _client(clients, f"wss://127.0.0.1:{proxy.port}")
    err = _refused(client, proxy)
    assert "CERTIFICATE_VERIFY_FAILED" in str(err) or "certificate" in str(err.__cause__)
    assert server.connections() == []  # nothing reached the Alpaca server


def test_wss_works_when_the_ca_is_trusted(
    tls_server: tuple[AlpacaStreamServer, TlsProxy],
    clients: list[StreamClient],
    certs: CertSet,
) -> None:
    server, proxy = tls_server
    client = _client(clients, f"wss://127.0.0.1:{proxy.port}", ca_file=str(certs.ca))
    box = Box()
    client.quotes("AAPL").subscribe(box.on_next, box.on_error)
    server.wait_for_subscriptions({"quotes": {"AAPL"}}, timeout=5 * TF)
    server.publish([quote("AAPL", 7)])
    box.wait(lambda b: len(b.items) == 1)
    assert box.items[0].bid_price == 8.0
    assert client.current_state is ConnectionState.AUTHENTICATED
    assert proxy.handshakes_ok == 1 and proxy.handshakes_failed == 0
    assert client.metrics.frames_balance() and client.metrics.messages_balance()


def test_wss_refuses_a_trusted_certificate_for_another_host(
    certs: CertSet, clients: list[StreamClient]
) -> None:
    with (
        AlpacaStreamServer(test_stream=False) as server,
        TlsProxy(server.port, certs.wrong_host_cert, certs.wrong_host_key) as proxy,
    ):
        client = _client(clients, f"wss://127.0.0.1:{proxy.port}", ca_file=str(certs.ca))
        _refused(client, proxy)
        assert server.connections() == []


# ---------------------------------------------------------------- size caps


def _big_frame(enc: Encoding, size: int) -> bytes:
    """A *valid* frame of quotes just over ``size`` bytes."""
    one = len(encode_frame([quote("BIG")], enc))
    n = size // max(1, one - 2) + 2
    frame = encode_frame([quote("BIG", i) for i in range(n)], enc)
    assert len(frame) > size
    return frame


@pytest.mark.parametrize("enc", [Encoding.JSON, Encoding.MSGPACK], ids=lambda e: e.value)
def test_oversized_messages_become_frame_errors_and_the_stream_continues(
    clients: list[StreamClient], enc: Encoding
) -> None:
    cap = 64 * 1024
    with AlpacaStreamServer(test_stream=False) as server:
        client = _client(clients, server.base_url, encoding=enc.value, max_message_bytes=cap)
        errors, box = Box(), Box()
        client.errors.subscribe(errors.on_next)
        client.quotes("AAPL", "BIG").subscribe(box.on_next, box.on_error)
        server.wait_for_subscriptions({"quotes": {"AAPL", "BIG"}}, timeout=5 * TF)
        big = _big_frame(enc, 1024 * 1024)  # 16 x the cap
        text = enc is Encoding.JSON
        server.send_raw(big, text=text)  # one frame
        server.split_next_frame(16)
        server.send_raw(big, text=text)  # 16 continuation frames
        server.publish([quote("AAPL", 1)])
        box.wait(lambda b: len(b.items) == 1)
        errors.wait(lambda b: len(b.items) == 2)
        for err in errors.items:
            assert isinstance(err, FrameError) and f"exceeds {cap} bytes" in err.reason
            assert len(err.excerpt) <= FrameError.EXCERPT_LIMIT
        assert [q.symbol for q in box.items] == ["AAPL"]  # nothing of the big ones
        assert client.current_state is ConnectionState.AUTHENTICATED
        assert client.metrics.connects == 1 and client.metrics.reconnects == 0
        assert client.metrics.frames_balance() and client.metrics.messages_balance()


def test_reassembly_memory_stays_bounded() -> None:
    """A 12.5 MiB message in 64 KiB fragments, capped at 256 KiB: peak memory stays small."""
    cap, chunk, n = 256 * 1024, 64 * 1024, 200
    out: list[Any] = []

    def frames() -> Iterator[Frame]:
        yield Frame(b"[" + bytes(chunk - 1), Opcode.TEXT, False, 1)
        for i in range(n - 1):
            yield Frame(bytes(chunk), Opcode.CONTINUATION, i == n - 2, 1)  # fresh bytes each
        yield Frame(b"[]", Opcode.TEXT, True, 2)

    tracemalloc.start()
    try:
        reactivex.from_iterable(frames()).pipe(ops.reassemble(cap)).subscribe(out.append)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [type(x).__name__ for x in out] == ["FrameError", "Frame"]
    assert out[1].payload == b"[]"
    assert peak < cap + 3 * chunk + 512 * 1024, f"peak {peak} bytes for a {cap}-byte cap"


_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3


def _server_frame_header(length: int, opcode: int = Opcode.TEXT) -> bytes:
    head = bytes([0x80 | opcode])
    if length < 126:
        return head + bytes([length])
    if length < 1 << 16:
        return head + bytes([126]) + length.to_bytes(2, "big")
    return head + bytes([127]) + length.to_bytes(8, "big")


class _HugeFrameServer:
    """A hand-written WebSocket peer: greets, authenticates, then announces one text
    frame of ``announced`` bytes and sends only its first MiB (what a hostile or broken
    server could do)."""

    def __init__(self, announced: int) -> None:
        self.announced = announced
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stop = threading.Event()
        self.sent_header = threading.Event()
        self.thread = threading.Thread(target=self._run, name="huge-frame-peer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.listener.settimeout(10)
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn, contextlib.suppress(OSError):  # the client may go first
            conn.settimeout(10)
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            match = re.search(rb"Sec-WebSocket-Key: *(\S+)", request, re.IGNORECASE)
            assert match is not None
            accept = base64.b64encode(hashlib.sha1(match.group(1) + _WS_GUID).digest())
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            for text in (b'[{"T":"success","msg":"connected"}]',
                         b'[{"T":"success","msg":"authenticated"}]'):  # fmt: skip
                conn.sendall(_server_frame_header(len(text)) + text)
                if b"connected" in text:
                    conn.recv(4096)  # the client's auth message
            conn.sendall(_server_frame_header(self.announced) + b"[" + b" " * (1 << 20))
            self.sent_header.set()
            self.stop.wait(30)

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        self.thread.join(5)


def test_a_frame_announcing_more_than_the_cap_is_refused_at_once(
    clients: list[StreamClient],
) -> None:
    peer = _HugeFrameServer(announced=256 * 1024 * 1024)
    try:
        client = _client(clients, f"ws://127.0.0.1:{peer.port}", encoding="json",
                         max_message_bytes=64 * 1024)  # fmt: skip
        box, states = Box(), Box()
        client.errors.subscribe(box.on_next)
        client.state.subscribe(states.on_next)
        client.connect()
        states.wait(lambda b: ConnectionState.AUTHENTICATED in b.items)
        assert peer.sent_header.wait(5 * TF)
        # Refused (a FrameError and the payload skipped, or the connection dropped with
        # 1009) as soon as the header shows the frame is over the cap.
        box.wait(lambda b: bool(b.items), timeout=2)
        assert isinstance(box.items[0], FrameError | ConnectionLostError), box.items
    finally:
        for c in clients:
            c.close()
        peer.close()


# ---------------------------------------------------------------- loopback only


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent for UDP connect
            addr = s.getsockname()[0]
        except OSError:
            return None
    return None if addr.startswith("127.") or addr == "0.0.0.0" else addr


def test_the_test_server_binds_loopback_only() -> None:
    server = AlpacaStreamServer(test_stream=False)
    assert server.host == "127.0.0.1"
    with server:
        listening = [s.getsockname()[0] for s in server._server.sockets]  # type: ignore[union-attr]
        assert listening and all(a == "127.0.0.1" for a in listening), listening
        assert server.base_url.startswith("ws://127.0.0.1:")
        other = _non_loopback_address()
        if other is not None:
            with pytest.raises(OSError), socket.create_connection((other, server.port), 1):
                pass


def test_the_pytest_fixture_server_is_loopback(alpaca_server: AlpacaStreamServer) -> None:
    assert alpaca_server.host == "127.0.0.1"
    addrs = [s.getsockname()[0] for s in alpaca_server._server.sockets]  # type: ignore[union-attr]
    assert addrs == ["127.0.0.1"]
