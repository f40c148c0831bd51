"""The socket as a hot Observable of frames (websocket-client underneath).

``WebSocketTransport.frames()`` returns an Observable; each subscription opens a
new socket on a new thread — the *socket thread* — which reads frames and pushes
them downstream as :class:`~rxalpaca.frames.Frame` items the moment they arrive
(no buffering, no back-pressure: that is what makes it hot). A retry operator
resubscribing therefore means a fresh connection. Disposing closes the socket.

Threading (who owns what):

* the socket thread owns reading: it answers pings, runs the whole downstream
  pipeline for each frame, and reports the end of the socket as
  ``on_error(ConnectionLostError)`` (never ``on_completed``: a server going away
  is something to recover from, not the end of the data);
* ``send`` may be called from any thread: websocket-client's
  ``enable_multithread`` lock serialises writers;
* ``_current`` (the live socket) is swapped under ``_lock``; the old one is
  closed after the lock is released.

websocket-client's options, measured (``docs/benchmarks.md``): its pure-Python
UTF-8 validation of text frames costs several times everything else, so it is
off (``skip_utf8_validation=True``) — the decoder validates UTF-8 in C anyway.
Its frame reader asks the kernel for 2 bytes of header, then the length, then
the payload: three system calls per frame. We give it a buffered ``recv`` that
reads up to 256 KiB at a time.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import websocket
from reactivex import Observable, abc
from reactivex.disposable import Disposable

from .errors import ConfigurationError, ConnectionLostError, FrameError
from .frames import Frame, Opcode

__all__ = ["WebSocketTransport"]

logger = logging.getLogger(__name__)

_READ_CHUNK = 256 * 1024


class _BufferedRecv:
    """Serve websocket-client's small reads from one large ``recv``.

    Owned by the socket thread.
    """

    __slots__ = ("_buf", "_pos", "_raw")

    def __init__(self, raw: Callable[[int], bytes]) -> None:
        self._raw = raw
        self._buf = b""
        self._pos = 0

    def __call__(self, bufsize: int) -> bytes:
        pos = self._pos
        buf = self._buf
        if pos >= len(buf):
            buf = self._raw(_READ_CHUNK)
            if not buf:
                return buf
            self._buf = buf
            pos = 0
        end = pos + bufsize
        self._pos = end
        if pos == 0 and end >= len(buf):
            return buf
        return buf[pos:end]


class _FrameTooLarge(Exception):
    """A frame header announced more bytes than the transport accepts."""

    def __init__(self, length: int) -> None:
        super().__init__(length)
        self.length = length


def _cap_frame_length(frame_buffer: Any, limit: int) -> None:
    """Make websocket-client refuse a frame *before* reading its payload into memory.

    websocket-client reads a frame's whole payload in one ``recv_strict(length)``; a
    header announcing 1 GiB would be honoured. We check the length as soon as it is
    parsed. Owned by the socket thread.
    """
    read_length = frame_buffer.recv_length

    def recv_length_capped() -> None:
        read_length()
        if frame_buffer.length is not None and frame_buffer.length > limit:
            raise _FrameTooLarge(frame_buffer.length)

    frame_buffer.recv_length = recv_length_capped


def _discard_payload(frame_buffer: Any, length: int) -> None:
    """Skip an oversized frame's payload in bounded chunks, then reset the reader."""
    if frame_buffer.has_mask():
        frame_buffer.recv_strict(4)
    remaining = length
    while remaining > 0:
        chunk = frame_buffer.recv(min(remaining, _READ_CHUNK))
        if not chunk:
            raise ConnectionLostError("connection closed inside an oversized frame")
        remaining -= len(chunk)
    frame_buffer.clear()


class _Connection:
    """One socket and its reader thread."""

    def __init__(
        self, transport: WebSocketTransport, observer: abc.ObserverBase[Frame | FrameError]
    ) -> None:
        self.transport = transport
        self.observer = observer
        # websocket-client is only partly typed; its socket is handled as Any here.
        self.ws: Any = None
        self.closing = threading.Event()
        self.opened = threading.Event()
        self.thread = threading.Thread(
            target=self._run, name=f"{transport.name}-socket", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        t = self.transport
        ws: Any = websocket.WebSocket(
            skip_utf8_validation=True, enable_multithread=True, sslopt=t.sslopt
        )
        self.ws = ws
        try:
            ws.connect(
                t.url, header=[f"{k}: {v}" for k, v in t.headers.items()], timeout=t.connect_timeout
            )
            ws.settimeout(None)  # reads block; close() unblocks them with shutdown()
            ws.frame_buffer.recv = _BufferedRecv(ws.frame_buffer.recv)
            if t.max_frame_bytes is not None:
                _cap_frame_length(ws.frame_buffer, t.max_frame_bytes)
        except Exception as exc:
            self._finish(exc, "connect failed")
            return
        self.opened.set()
        if self.closing.is_set():
            self._shutdown()
            return
        pinger = None
        if t.ping_interval:
            pinger = threading.Thread(target=self._ping_loop, name=f"{t.name}-ping", daemon=True)
            pinger.start()
        on_next = self.observer.on_next
        recv_frame = ws.recv_frame
        clock = time.time_ns
        # True while the rest of an oversized message's fragments are being skipped.
        skipping = False
        try:
            while True:
                try:
                    frame = recv_frame()
                except _FrameTooLarge as big:
                    # Refused at its header: report the message once, at once, then skip
                    # its payload in bounded chunks — or, when skipping would mean reading
                    # an absurd amount, leave with 1009 (RFC 6455 "message too big").
                    fin = bool(ws.frame_buffer.header[0])
                    if not skipping:
                        on_next(
                            FrameError(
                                f"message exceeds {t.max_frame_bytes} bytes "
                                f"(a frame of {big.length} bytes)",
                                b"",
                                clock(),
                            )
                        )
                    if big.length > t.max_skip_bytes:
                        with contextlib.suppress(Exception):
                            ws.send_close(1009)
                        raise ConnectionLostError(
                            f"frame of {big.length} bytes announced; closed with 1009"
                        ) from None
                    _discard_payload(ws.frame_buffer, big.length)
                    skipping = not fin
                    continue
                op = frame.opcode
                if skipping and op == Opcode.CONTINUATION:
                    skipping = not frame.fin
                    continue
                if op == Opcode.PING:
                    ws.pong(frame.data)
                    continue
                if op == Opcode.PONG:
                    continue
                if op == Opcode.CLOSE:
                    code = int.from_bytes(frame.data[:2], "big") if len(frame.data) >= 2 else 1005
                    with contextlib.suppress(Exception):
                        ws.send_close(1000)
                    raise ConnectionLostError(f"server closed the connection (code {code})")
                on_next(Frame(frame.data, op, bool(frame.fin), clock()))
        except Exception as exc:
            self._finish(exc, "socket ended")
        finally:
            self.closing.set()
            self._shutdown()
            if pinger is not None:
                pinger.join(timeout=1.0)

    def _finish(self, exc: BaseException, what: str) -> None:
        if self.closing.is_set():
            return  # we closed it ourselves: nobody is listening any more
        if isinstance(exc, ConnectionLostError):
            err: Exception = exc
        else:
            err = ConnectionLostError(f"{what}: {type(exc).__name__}: {exc}")
            err.__cause__ = exc
        if isinstance(exc, ssl.SSLCertVerificationError) or (
            isinstance(exc, ssl.SSLError) and "CERTIFICATE_VERIFY_FAILED" in str(exc)
        ):
            # A certificate we do not trust will not become trusted by retrying.
            err = ConfigurationError(f"TLS certificate verification failed: {exc}")
            err.__cause__ = exc
        logger.info("connection to %s lost: %s", self.transport.url, err)
        self.closing.set()
        self.observer.on_error(err)

    def _ping_loop(self) -> None:
        interval = self.transport.ping_interval
        assert interval is not None
        while not self.closing.wait(interval):
            ws = self.ws
            if ws is None:
                return
            try:
                ws.ping()
            except Exception:
                return  # the reader notices the broken socket and reports it

    def send(self, payload: bytes | str, opcode: int) -> None:
        ws = self.ws
        if ws is None or not self.opened.is_set() or self.closing.is_set():
            raise ConnectionLostError("not connected")
        try:
            ws.send(payload, opcode)
        except Exception as exc:
            raise ConnectionLostError(f"send failed: {exc}") from exc

    def _shutdown(self) -> None:
        ws = self.ws
        if ws is None:
            return
        sock = ws.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(Exception):
            ws.shutdown()

    def abort(self) -> None:
        """Break the socket so the reader reports it lost (used by the silence watchdog)."""
        self._shutdown()

    def close(self, timeout: float = 1.0) -> None:
        """Close from any thread; returns promptly (well under ``timeout``)."""
        if self.closing.is_set() and not self.thread.is_alive():
            return
        self.closing.set()
        ws = self.ws
        if ws is not None and self.opened.is_set():
            with contextlib.suppress(Exception):
                # A close frame tells the server we left on purpose; don't wait for its reply.
                ws.send_close(1000)
        self._shutdown()
        if threading.current_thread() is not self.thread and self.thread.is_alive():
            self.thread.join(timeout)


class WebSocketTransport:
    """Connections to one URL, each exposed as an Observable of frames.

    Args:
        url: ``wss://…`` (or ``ws://`` for a local server).
        headers: extra upgrade headers (``Content-Type``, credentials for header auth).
        sslopt: websocket-client TLS options; the default verifies certificates.
            Pass ``{"ca_certs": "/path/ca.pem"}`` to trust a private CA.
        ping_interval: seconds between client pings (``None``: never). §2.4.
        connect_timeout: seconds for TCP + TLS + upgrade.
        max_frame_bytes: refuse a frame announcing more bytes than this before
            reading it (it becomes a ``FrameError`` value; the connection goes on).
        name: prefix of thread names.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        sslopt: dict[str, Any] | None = None,
        ping_interval: float | None = 10.0,
        connect_timeout: float = 5.0,
        max_frame_bytes: int | None = None,
        name: str = "rxalpaca",
    ) -> None:
        self.url = url
        self.headers = dict(headers or {})
        self.sslopt = sslopt
        self.ping_interval = ping_interval
        self.connect_timeout = connect_timeout
        self.max_frame_bytes = max_frame_bytes
        #: An oversized frame up to this size is read and dropped; a larger one closes
        #: the socket (a reconnect is cheaper than reading gigabytes).
        self.max_skip_bytes = max(16 * (max_frame_bytes or 0), 16 * 1024 * 1024)
        self.name = name
        self._lock = threading.Lock()
        self._current: _Connection | None = None
        self._connections_opened = 0

    def __repr__(self) -> str:
        # Header values may hold credentials: never show them.
        return f"WebSocketTransport(url={self.url!r}, headers=[{', '.join(self.headers)}])"

    @property
    def connections_opened(self) -> int:
        """How many sockets this transport has opened."""
        return self._connections_opened

    def frames(self) -> Observable[Frame | FrameError]:
        """A new socket per subscription, pushing frames on its own thread.

        A frame over ``max_frame_bytes`` arrives as a ``FrameError`` value instead.
        """

        def subscribe(
            observer: abc.ObserverBase[Frame | FrameError],
            scheduler: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            conn = _Connection(self, observer)
            with self._lock:
                old, self._current = self._current, conn
                self._connections_opened += 1
            if old is not None:
                old.close()  # outside the lock: it may join a thread
            conn.start()

            def dispose() -> None:
                with self._lock:
                    if self._current is conn:
                        self._current = None
                conn.close()

            return Disposable(dispose)

        return Observable(subscribe)

    def send(self, payload: bytes | str, opcode: int = Opcode.TEXT) -> None:
        """Send one message on the current socket (any thread).

        Raises:
            ConnectionLostError: no socket is open, or the send failed.
        """
        with self._lock:
            conn = self._current
        if conn is None:
            raise ConnectionLostError("not connected")
        conn.send(payload, opcode)

    def close(self) -> None:
        """Close the current socket, if any (any thread, prompt)."""
        with self._lock:
            conn, self._current = self._current, None
        if conn is not None:
            conn.close()

    def abort(self, reason: Exception | None = None) -> None:
        """Drop the current socket as if the network failed: the observer gets an error
        and a retry operator reconnects (any thread)."""
        with self._lock:
            conn = self._current
        if conn is not None:
            logger.info("aborting connection to %s: %s", self.url, reason)
            conn.abort()

    def threads_alive(self) -> int:
        """Socket threads of this transport still running (for leak checks)."""
        with self._lock:
            conn = self._current
        return int(conn is not None and conn.thread.is_alive())
