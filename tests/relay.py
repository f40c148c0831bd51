"""A TCP relay for tests that can make the network path go dark (``DarkRelay``).

The relay listens on ``127.0.0.1:<ephemeral port>`` and forwards each accepted
connection to ``target_host:target_port``, one thread per connection (a selector
over both sockets, so every socket is only ever touched by one thread; that matters
for ``ssl.SSLSocket``, which :class:`~reliability.tls_helpers.TlsProxy` relays with
the same machinery).

``go_dark()`` models a dead network path under a half-open TCP connection: no byte
flows in either direction, and neither socket is closed, so neither end sees an EOF
or a reset -- only silence. Two flavours:

* ``go_dark()`` (``discard=True``): what arrives is read and thrown away, so the
  senders' buffers never fill -- a peer keeps "sending" into the void, as over a
  real dead path, where the kernel accepts data long before anything blocks.
  Those bytes are lost for good: a connection that survives the dark spell carries
  a broken byte stream after ``restore()`` (a WebSocket on it sees a bad frame).
* ``go_dark(discard=False)``: nothing is read, bytes wait in the kernel's buffers
  and ``restore()`` delivers them in order -- the stream survives intact, as TCP
  does when a path heals before either end gives up.

Connections accepted while dark are dark too (the path is dead for everyone); their
upstream connection is only dialled once the relay is restored, so the target never
hears of a connection whose first bytes would be lost. A close by either end *is*
propagated while dark in discard mode (the relay reads, so it sees the EOF):
otherwise the server would keep the session -- and its connection slot (protocol
S14) -- until a timeout, and a reconnecting client would be refused. In hold mode
nothing is read, so an EOF is seen (and propagated) only after ``restore()``.

Example::

    with AlpacaStreamServer() as server, DarkRelay("127.0.0.1", server.port) as relay:
        client = StreamClient("iex", url=relay.base_url, ...)
        ...
        relay.go_dark()        # the client now hears nothing, and nothing it sends arrives
        relay.wait_for(lambda r: r.connections == 2, timeout=10)  # it redialled
        relay.restore()
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable

__all__ = ["DarkRelay"]

_CHUNK = 65536


class _Link:
    """One relayed connection: the accepted socket, its upstream, and their thread."""

    def __init__(self, relay: DarkRelay, down: socket.socket) -> None:
        self.relay = relay
        self.down = down
        self.up: socket.socket | None = None
        self.wake_r, self.wake_w = socket.socketpair()
        self.closed = False
        # Held while bytes are read and forwarded, so go_dark() can wait out a move
        # that began before it: bytes arriving after go_dark() returns never pass.
        self.moving = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="dark-relay-link", daemon=True)

    def wake(self) -> None:
        with contextlib.suppress(OSError):
            self.wake_w.send(b"\0")

    def barrier(self) -> None:
        """Wait for a move in progress (bounded: a peer that never reads could block one)."""
        if self.moving.acquire(timeout=2):
            self.moving.release()
        self.wake()

    def close(self) -> None:
        """Close both sockets (from any thread); the link's thread then ends."""
        self.closed = True
        for s in (self.down, self.up):
            if s is not None:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)  # unblocks a sendall in the link's thread
        self.wake()

    def _run(self) -> None:
        relay = self.relay
        try:
            if relay._wrap is not None:
                try:
                    self.down = relay._wrap(self.down)
                except (OSError, ValueError):
                    return  # the hook counted what it needed to
            self._pump()
        except (OSError, ValueError):
            pass  # a socket closed under us by close(): the link just ends
        finally:
            for s in (self.down, self.up, self.wake_r, self.wake_w):
                if s is not None:
                    with contextlib.suppress(OSError):
                        s.close()
            relay._link_ended(self)

    def _pump(self) -> None:
        relay = self.relay
        sel = selectors.DefaultSelector()
        sel.register(self.wake_r, selectors.EVENT_READ)
        # Directions still open, by source socket; a plain-TCP EOF is propagated as a
        # half-close (shutdown SHUT_WR), so each direction ends on its own.
        reading: set[socket.socket] = set()
        try:
            while not self.closed:
                dark, discard = relay._dark, relay._discard
                if self.up is None and not dark:
                    self.up = socket.create_connection(relay.target, timeout=5)
                    self.up.settimeout(None)
                    reading = {self.down, self.up}
                elif self.up is None:
                    reading = {self.down}  # dark before dialling: only the client side
                wanted = set() if dark and not discard else reading
                registered = {k.fileobj for k in sel.get_map().values()} - {self.wake_r}
                for s in registered - wanted:
                    sel.unregister(s)
                for s in wanted - registered:
                    sel.register(s, selectors.EVENT_READ)
                ready = [key.fileobj for key, _ in sel.select()]
                if self.wake_r in ready:
                    with contextlib.suppress(OSError):
                        self.wake_r.recv(_CHUNK)
                for src in ready:
                    if src is self.wake_r or src not in reading:
                        continue
                    assert isinstance(src, socket.socket)
                    with self.moving:
                        if not self._move(src, reading):
                            return
        finally:
            sel.close()

    def _move(self, src: socket.socket, reading: set[socket.socket]) -> bool:
        """Forward (or discard) what ``src`` has; ``False`` ends the link."""
        relay = self.relay
        dark, discard = relay._dark, relay._discard
        if dark and not discard:
            return True  # hold: leave it in the kernel; the loop stops selecting src
        dst = self.up if src is self.down else self.down
        data = src.recv(_CHUNK)
        # An SSL socket may hold decrypted bytes the selector cannot see.
        while isinstance(src, ssl.SSLSocket) and data and src.pending():
            data += src.recv(src.pending())
        if not data:  # EOF from src
            reading.discard(src)
            if dst is None:
                return False
            if isinstance(src, ssl.SSLSocket) or isinstance(dst, ssl.SSLSocket):
                return False  # TLS has no half-close we can relay: end both
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
            return bool(reading)
        if dark or dst is None:
            relay._count("discarded", len(data))
            return True
        dst.sendall(data)
        relay._count("forwarded", len(data))
        return True


class DarkRelay:
    """A TCP relay on ``127.0.0.1:<port>`` to ``target`` that can go silent on demand.

    It listens as soon as it is constructed; ``close()`` (or leaving the ``with``
    block) stops it and closes every relayed connection.

    Attributes:
        port: the port it listens on; ``base_url``: ``ws://127.0.0.1:<port>``.
        target: ``(target_host, target_port)``.
        connections: connections accepted so far (ever).
        active: connections currently relayed (accepted and not yet ended).
        forwarded / discarded: bytes relayed / thrown away while dark.
        changed: a ``threading.Condition`` notified whenever a counter changes.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        wrap: Callable[[socket.socket], socket.socket] | None = None,
    ) -> None:
        """``wrap`` (for TLS proxies) runs in a new connection's own thread before
        anything is relayed; it returns the socket to use (say an ``SSLSocket`` after
        its handshake) or raises ``OSError`` to drop the connection."""
        self.target = (target_host, target_port)
        self._wrap = wrap
        self._dark = False
        self._discard = True
        self.connections = 0
        self.active = 0
        self.forwarded = 0
        self.discarded = 0
        self.changed = threading.Condition()
        self._links: set[_Link] = set()
        self._closed = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._accept_loop, name="dark-relay", daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        """``ws://127.0.0.1:<port>``: a client's ``url=`` for a server behind the relay."""
        return f"ws://127.0.0.1:{self.port}"

    @property
    def dark(self) -> bool:
        """Whether the relay is dark now."""
        return self._dark

    def go_dark(self, *, discard: bool = True) -> None:
        """Stop forwarding in both directions, closing nothing (see the module doc).

        ``discard=True``: incoming bytes are read and dropped (lost for good);
        ``discard=False``: nothing is read, and ``restore()`` delivers it all.
        Takes effect before this returns for bytes that arrive afterwards.
        """
        with self.changed:
            self._discard = discard
            self._dark = True
            links = list(self._links)
        for link in links:
            link.barrier()

    def restore(self) -> None:
        """Forward again: new bytes (and, after ``go_dark(discard=False)``, held ones)."""
        with self.changed:
            self._dark = False
            links = list(self._links)
            self.changed.notify_all()
        for link in links:
            link.barrier()

    def wait_for(self, predicate: Callable[[DarkRelay], bool], timeout: float = 5.0) -> None:
        """Block until ``predicate(self)`` holds (checked whenever a counter changes).

        Raises:
            TimeoutError: not within ``timeout`` seconds.
        """
        with self.changed:
            if not self.changed.wait_for(lambda: predicate(self), timeout):
                raise TimeoutError(
                    f"relay condition not met within {timeout} s: connections="
                    f"{self.connections} active={self.active} forwarded={self.forwarded} "
                    f"discarded={self.discarded} dark={self._dark}"
                )

    def close(self) -> None:
        """Stop listening, close every relayed connection (both ends) and join the
        threads. Idempotent."""
        with self.changed:
            if self._closed:
                return
            self._closed = True
            links = list(self._links)
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")
        self._thread.join(5)
        for link in links:
            link.close()
        deadline = time.monotonic() + 5
        for link in links:
            link.thread.join(max(0.0, deadline - time.monotonic()))
        for s in (self._listener, self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                s.close()

    def __enter__(self) -> DarkRelay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _count(self, attr: str, n: int = 1) -> None:
        with self.changed:
            setattr(self, attr, getattr(self, attr) + n)
            self.changed.notify_all()

    def _accept_loop(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._listener, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        try:
            while not self._closed:
                for key, _ in sel.select():
                    if key.fileobj is self._wake_r or self._closed:
                        return
                    try:
                        down, _addr = self._listener.accept()
                    except OSError:
                        continue
                    link = _Link(self, down)
                    with self.changed:
                        if self._closed:
                            down.close()
                            return
                        self._links.add(link)
                        self.connections += 1
                        self.active += 1
                        self.changed.notify_all()
                    link.thread.start()
        finally:
            sel.close()

    def _link_ended(self, link: _Link) -> None:
        with self.changed:
            if link in self._links:
                self._links.discard(link)
                self.active -= 1
            self.changed.notify_all()
