"""The socket as a hot, shared Observable of frames (websocket-client underneath).

``WebSocketTransport.frames()`` returns a hot Observable with publish/ref-count
semantics: the first subscriber opens a socket on a new thread — the *socket
thread* — which reads frames and pushes them downstream as
:class:`~rxalpaca.frames.Frame` items the moment they arrive (no buffering, no
back-pressure); later subscribers join the same socket; the last one to dispose
closes it. The end of a socket reaches every subscriber as ``on_error``, so a retry
operator resubscribing means a fresh connection. ``monitor()`` sees every frame of
every socket without opening one (recording, custom decoding).

Threading (who owns what):

* the socket thread owns reading: it answers pings, runs the whole downstream
  pipeline for each frame, and reports the end of the socket as
  ``on_error(ConnectionLostError)`` (never ``on_completed``: a server going away
  is something to recover from, not the end of the data);
* the **ping thread** (one per socket, when ``ping_interval`` is set) sends pings
  and aborts the socket as ``KeepaliveTimeout`` when nothing answers within
  ``ping_timeout`` while the socket thread waits in ``recv`` (the read loop
  publishes ``waiting_since``/``last_read`` per system call: single float stores,
  read without a lock);
* ``send`` may be called from any thread: websocket-client's
  ``enable_multithread`` lock serialises writers;
* ``_lock`` guards ``_current`` (the live socket), each connection's
  ``observers``/``emit`` and ``_monitors``; they are replaced whole
  (copy-on-write), so the socket thread reads them without the lock. A socket
  being replaced is closed after the lock is released.

websocket-client's options, measured (``docs/benchmarks.md``): its pure-Python
UTF-8 validation of text frames costs several times everything else, so it is
off (``skip_utf8_validation=True``) — the decoder validates UTF-8 in C anyway.
Its frame reader asks the kernel for 2 bytes of header, then the length, then
the payload: three system calls and several Python layers per frame. We keep
websocket-client for the handshake, TLS and every write; the socket thread reads
its socket directly, up to 64 KiB per ``recv``, and feeds the bytes to
:class:`~rxalpaca.framing.FrameParser` (the sans-I/O RFC 6455 parser), which
returns every frame they complete: ``recv → feed → dispatch``.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import websocket
from reactivex import Observable, abc
from reactivex.disposable import Disposable

from ._logging import error_fields
from .errors import ConfigurationError, ConnectionLostError, FrameError, KeepaliveTimeout
from .frames import Frame, Opcode
from .framing import (
    Close,
    CloseCode,
    Failure,
    FrameEvent,
    FrameParser,
    Ping,
    TooLarge,
    default_max_skip_bytes,
)
from .metrics import StageProfile, active_profile

__all__ = ["WebSocketTransport"]

logger = logging.getLogger(__name__)

#: Bytes asked of the kernel per ``recv``: dozens of frames at a time under load, and a
#: small peak RSS (64 KiB measured 0.5 MB less than 256 KiB at the same cost per frame,
#: docs/benchmarks.md).
_READ_CHUNK = 64 * 1024


_Observer = abc.ObserverBase[Frame | FrameError]


class _Connection:
    """One socket, its reader thread and the observers sharing it."""

    def __init__(self, transport: WebSocketTransport) -> None:
        self.transport = transport
        # Replaced whole under the transport's lock (copy-on-write); the socket thread
        # reads them without a lock.
        self.observers: tuple[_Observer, ...] = ()
        #: Where the socket thread hands each frame: the lone observer's ``on_next``
        #: (no fan-out cost in the common case) or a fan-out (see ``_rewire``).
        self.emit: Callable[[Frame | FrameError], None] = _drop
        # websocket-client is only partly typed; its socket is handled as Any here.
        self.ws: Any = None
        # The reading side's clocks, for the ping thread and link(): single float
        # stores by the socket thread, once per system call, read without a lock.
        #: ``time.monotonic()`` of the last bytes read; 0.0 until the handshake is done.
        self.last_read = 0.0
        #: ``time.monotonic()`` since when the socket thread is blocked in ``recv``
        #: waiting for bytes; ``0.0`` while it is busy (decoding, running observers).
        self.waiting_since = 0.0
        #: ``time.monotonic()`` of the oldest ping with nothing read since; 0.0: none.
        self.ping_outstanding_since = 0.0
        self.closing = threading.Event()
        self.opened = threading.Event()
        # Set by abort() before it breaks the socket; the reader reports it instead of
        # the bare socket error it then sees.
        self.abort_reason: ConnectionLostError | None = None
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
        except Exception as exc:
            self._finish(exc, "connect failed")
            return
        # From here on every byte is the parser's. websocket-client read the status line
        # and headers a byte at a time (websocket/_http.py, read_headers), so a frame
        # that came in the same packet as the 101 is still in the socket, not in a
        # buffer of its own.
        self.last_read = time.monotonic()
        self.opened.set()
        if self.closing.is_set():
            self._shutdown()
            return
        if self.abort_reason is not None:  # aborted while the socket was still opening
            self._finish(self.abort_reason, "aborted")
            self._shutdown()
            return
        pinger = None
        if t.ping_interval:
            pinger = threading.Thread(target=self._keepalive, name=f"{t.name}-ping", daemon=True)
            pinger.start()
        try:
            self._read(ws.sock, FrameParser(t.max_frame_bytes, t.max_skip_bytes))
        except Exception as exc:
            self._finish(exc, "socket ended")
        finally:
            self.closing.set()
            self._shutdown()
            if pinger is not None:
                pinger.join(timeout=1.0)

    def _read(self, sock: socket.socket, parser: FrameParser) -> NoReturn:
        """The socket thread's loop: recv, feed the parser, dispatch what it returns.

        Ends only by raising (the socket closed or failed, a close frame, a
        protocol error). ``sock`` is websocket-client's socket, blocking: a TLS socket
        then retries OpenSSL's want-read internally, so ``recv`` returns bytes, or
        ``b""`` at the end, or raises.
        """
        profile = active_profile()
        if profile is not None:
            self._read_profiled(sock, parser, profile)
        recv = sock.recv
        feed = parser.feed
        wall = time.time_ns
        clock = time.monotonic
        frame_type = Frame
        while True:
            # Two clock reads per system call (not per frame): the keep-alive thread
            # must know whether silence is the network's or our own busy thread's.
            self.waiting_since = clock()
            data = recv(_READ_CHUNK)
            self.waiting_since = 0.0
            self.last_read = clock()
            if not data:
                raise ConnectionLostError("the server closed the TCP connection")
            received_ns = wall()
            for event in feed(data, received_ns):
                if type(event) is frame_type:
                    self.emit(event)
                else:
                    self._control(event, received_ns)
            del data  # don't hold up to 64 KiB idle while blocked in the next recv

    def _read_profiled(
        self, sock: socket.socket, parser: FrameParser, profile: StageProfile
    ) -> NoReturn:
        """:meth:`_read` with the time in ``recv`` and in the frame loop (framing and the
        pipeline it calls) reported to ``profile``; chosen per connection, so the loop
        above has no clock reads of its own while nobody profiles."""
        recv = sock.recv
        feed = parser.feed
        wall = time.time_ns
        clock = time.monotonic
        perf = time.perf_counter_ns
        add = profile.add
        frame_type = Frame
        while True:
            self.waiting_since = clock()
            t0 = perf()
            data = recv(_READ_CHUNK)
            t1 = perf()
            add("socket read", t1 - t0)
            self.waiting_since = 0.0
            self.last_read = clock()
            if not data:
                raise ConnectionLostError("the server closed the TCP connection")
            received_ns = wall()
            try:
                for event in feed(data, received_ns):
                    if type(event) is frame_type:
                        self.emit(event)
                    else:
                        self._control(event, received_ns)
            finally:
                add("frame loop", perf() - t1)
            del data

    def _control(self, event: FrameEvent, received_ns: int) -> None:
        """What the parser returns besides data frames (rare: no fast path needed)."""
        ws = self.ws
        if isinstance(event, Ping):
            ws.pong(event.payload)
        elif isinstance(event, TooLarge):
            # Refused at its header: the message is reported once, at once; the parser
            # skips its payload (and its further fragments) without keeping them.
            self.emit(
                FrameError(
                    f"message exceeds {self.transport.max_frame_bytes} bytes "
                    f"(a frame of {event.length} bytes)",
                    b"",
                    received_ns,
                )
            )
        elif isinstance(event, Close):
            with contextlib.suppress(Exception):
                ws.send_close(CloseCode.NORMAL)
            reason = f": {event.reason!r}" if event.reason else ""
            raise ConnectionLostError(f"server closed the connection (code {event.code}{reason})")
        elif isinstance(event, Failure):
            # The server broke RFC 6455 (1002), or announced a frame too large to be
            # worth skipping (1009): tell it why, and leave.
            with contextlib.suppress(Exception):
                ws.send_close(event.code)
            raise ConnectionLostError(f"{event.reason}; closed with {event.code}")
        # A Pong needs nothing more: the clocks in _read saw bytes arrive.

    def _finish(self, exc: BaseException, what: str) -> None:
        if self.closing.is_set():
            return  # we closed it ourselves: nobody is listening any more
        if self.abort_reason is not None:
            err: Exception = self.abort_reason
        elif isinstance(exc, ConnectionLostError):
            err = exc
        else:
            err = ConnectionLostError(f"{what}: {type(exc).__name__}: {exc}")
            err.__cause__ = exc
        if isinstance(exc, ssl.SSLCertVerificationError) or (
            isinstance(exc, ssl.SSLError) and "CERTIFICATE_VERIFY_FAILED" in str(exc)
        ):
            # A certificate we do not trust will not become trusted by retrying.
            err = ConfigurationError(f"TLS certificate verification failed: {exc}")
            err.__cause__ = exc
        logger.info(
            "connection to %s lost: %s",
            self.transport.url,
            err,
            extra={"endpoint": self.transport.url, **error_fields(err)},
        )
        self.closing.set()
        with self.transport._lock:
            observers, self.observers = self.observers, ()
            self.emit = _drop
        for o in observers:
            o.on_error(err)

    def _keepalive(self) -> None:
        """Ping thread: a ping every ``ping_interval``; a dead link is dropped.

        A half-open TCP connection (a NAT or proxy forgot it, a cable was pulled)
        never reports an error: reads just block. So, like the official SDKs (§2.4),
        we ping, and when neither the pong nor any other byte arrives within
        ``ping_timeout`` of a ping, the socket is aborted as :class:`KeepaliveTimeout`
        (retryable: the client reconnects). The clock only runs while the socket
        thread is blocked in ``recv``: a thread busy in slow observers is not
        reading, which says nothing about the network.
        """
        t = self.transport
        interval, timeout = t.ping_interval, t.ping_timeout
        ws = self.ws
        assert interval is not None
        clock = time.monotonic
        next_ping = clock() + interval
        while True:
            now = clock()
            wake = next_ping
            since = self.ping_outstanding_since
            if since and timeout is not None:
                waiting = self.waiting_since
                # Busy reader: look again in a while rather than spin on a past deadline.
                due = max(since, waiting) + timeout if waiting else now + timeout / 4
                wake = min(wake, due)
            if self.closing.wait(max(wake - now, 0.0)):
                return
            now = clock()
            since = self.ping_outstanding_since
            if since and self.last_read >= since:
                since = self.ping_outstanding_since = 0.0  # answered (or other bytes came)
            if since and timeout is not None:
                waiting = self.waiting_since
                if waiting and now - max(since, waiting) >= timeout:
                    self.abort(
                        KeepaliveTimeout(
                            f"no pong or other data {now - since:.1f} s after a ping "
                            f"(ping_timeout={timeout} s): the link is dead"
                        )
                    )
                    return
            if now >= next_ping:
                try:
                    ws.ping()
                except Exception:
                    return  # the reader notices the broken socket and reports it
                if not self.ping_outstanding_since:
                    self.ping_outstanding_since = now
                next_ping = now + interval

    def link(self) -> tuple[float | None, float | None]:
        """Seconds since bytes last arrived, and since the oldest unanswered ping."""
        last = self.last_read
        now = time.monotonic()
        since = self.ping_outstanding_since
        if last and since and last >= since:
            since = 0.0
        return (now - last if last else None, now - since if since else None)

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

    def abort(self, reason: ConnectionLostError | None = None) -> None:
        """Break the socket so the reader reports it lost, as ``reason`` if given."""
        self.abort_reason = reason
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


def _drop(_frame: Frame | FrameError) -> None:
    """Where frames go while a connection has no observer."""


class WebSocketTransport:
    """Connections to one URL, exposed as a hot, shared Observable of frames.

    :meth:`frames` is *hot* and *shared* (publish/ref-count semantics): the first
    subscriber opens a socket, later subscribers join the same socket and see the
    frames from then on, and the last one to dispose closes it. When the socket
    ends, every subscriber gets ``on_error``; the next subscription opens a new one
    (that is how ``retry_with_backoff`` reconnects). :meth:`monitor` sees the frames
    of every socket without opening one (for recording or custom decoding).

    Args:
        url: ``wss://…`` (or ``ws://`` for a local server).
        headers: extra upgrade headers (``Content-Type``, credentials for header auth).
        sslopt: websocket-client TLS options; the default verifies certificates.
            Pass ``{"ca_certs": "/path/ca.pem"}`` to trust a private CA.
        ping_interval: seconds between client pings (``None``: never). §2.4.
        ping_timeout: drop the socket as :class:`~rxalpaca.errors.KeepaliveTimeout`
            when nothing (no pong, no data) arrived this many seconds after a ping
            (``None``: never; needs ``ping_interval``).
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
        ping_timeout: float | None = 10.0,
        connect_timeout: float = 5.0,
        max_frame_bytes: int | None = None,
        name: str = "rxalpaca",
    ) -> None:
        self.url = url
        self.headers = dict(headers or {})
        self.sslopt = sslopt
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.connect_timeout = connect_timeout
        self.max_frame_bytes = max_frame_bytes
        #: An oversized frame up to this size is read and dropped; a larger one closes
        #: the socket (a reconnect is cheaper than reading gigabytes).
        self.max_skip_bytes = default_max_skip_bytes(max_frame_bytes)
        self.name = name
        # Guards _current, each connection's observers/emit, and _monitors.
        self._lock = threading.Lock()
        self._current: _Connection | None = None
        self._monitors: tuple[_Observer, ...] = ()
        self._connections_opened = 0

    def __repr__(self) -> str:
        # Header values may hold credentials: never show them.
        return f"WebSocketTransport(url={self.url!r}, headers=[{', '.join(self.headers)}])"

    @property
    def connections_opened(self) -> int:
        """How many sockets this transport has opened."""
        return self._connections_opened

    def frames(self) -> Observable[Frame | FrameError]:
        """The frames of the current socket, opened by the first subscriber.

        Hot and shared: a second subscriber joins the open socket (it sees frames
        from then on), and the socket closes when the last subscriber disposes. The
        end of the socket reaches every subscriber as ``on_error``
        (:class:`~rxalpaca.errors.ConnectionLostError`, never ``on_completed``).
        Frames arrive on the socket thread. A frame over ``max_frame_bytes``
        arrives as a ``FrameError`` value instead.
        """

        def subscribe(
            observer: _Observer, scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            old = None
            with self._lock:
                conn = self._current
                fresh = conn is None or conn.closing.is_set()
                if fresh:
                    # None open, or the open one is ending: its observers were told.
                    old, conn = conn, _Connection(self)
                    self._current = conn
                    self._connections_opened += 1
                assert conn is not None
                conn.observers = (*conn.observers, observer)
                self._rewire(conn)
            if old is not None:
                old.close()  # outside the lock: it may join a thread
            if fresh:
                conn.start()

            def dispose() -> None:
                with self._lock:
                    if observer not in conn.observers:
                        return
                    conn.observers = tuple(o for o in conn.observers if o is not observer)
                    last = not conn.observers
                    if last and self._current is conn:
                        self._current = None
                    self._rewire(conn)
                if last:
                    conn.close()  # the last subscriber left: ref count zero

            return Disposable(dispose)

        return Observable(subscribe)

    def monitor(self) -> Observable[Frame | FrameError]:
        """Every frame of every socket of this transport, without opening one.

        For recording or custom decoding beside the client's own pipeline: frames
        arrive on the socket thread, before the pipeline sees them, across
        reconnects; the end of a socket is not an error here. Completes when the
        transport is closed for good (:meth:`close` with ``final=True``). An
        exception raised by a monitor is logged and does not reach the socket.
        """

        def subscribe(
            observer: _Observer, scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            with self._lock:
                self._monitors = (*self._monitors, observer)
                if self._current is not None:
                    self._rewire(self._current)

            def dispose() -> None:
                with self._lock:
                    self._monitors = tuple(m for m in self._monitors if m is not observer)
                    if self._current is not None:
                        self._rewire(self._current)

            return Disposable(dispose)

        return Observable(subscribe)

    def _rewire(self, conn: _Connection) -> None:
        """Point ``conn.emit`` at its observers (called with ``_lock`` held)."""
        observers, monitors = conn.observers, self._monitors
        if not monitors and len(observers) == 1:
            conn.emit = observers[0].on_next  # the common case: no fan-out at all
        elif not monitors and not observers:
            conn.emit = _drop
        else:

            def fan_out(frame: Frame | FrameError) -> None:
                for m in monitors:
                    try:
                        m.on_next(frame)
                    except Exception:
                        logger.exception("a frame monitor raised; the socket goes on")
                for o in observers:
                    o.on_next(frame)

            conn.emit = fan_out

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

    def close(self, *, final: bool = False) -> None:
        """Close the current socket, if any (any thread, prompt).

        Args:
            final: the transport will not be used again: also complete every
                :meth:`monitor` subscriber.
        """
        with self._lock:
            conn, self._current = self._current, None
            monitors = self._monitors if final else ()
            if final:
                self._monitors = ()
        if conn is not None:
            conn.close()
        for m in monitors:
            with contextlib.suppress(Exception):
                m.on_completed()

    def abort(self, reason: ConnectionLostError | None = None) -> None:
        """Drop the current socket as if the network failed: the observer gets
        ``reason`` (or a generic ``ConnectionLostError``) and a retry operator
        reconnects (any thread)."""
        with self._lock:
            conn = self._current
        if conn is not None:
            logger.info(
                "aborting connection to %s: %s",
                self.url,
                reason,
                extra={"endpoint": self.url, **error_fields(reason)},
            )
            conn.abort(reason)

    def link(self) -> tuple[float | None, float | None]:
        """Liveness of the current socket (any thread), for ``health()``.

        Returns ``(seconds since bytes last arrived, seconds since the oldest
        unanswered ping)``; each is ``None`` when unknown (no socket) or none is
        pending.
        """
        with self._lock:
            conn = self._current
        if conn is None:
            return None, None
        return conn.link()

    def threads_alive(self) -> int:
        """Socket threads of this transport still running (for leak checks)."""
        with self._lock:
            conn = self._current
        return int(conn is not None and conn.thread.is_alive())
