"""The I/O shell around one session: a ``websockets`` connection and its writer.

Everything runs in the server's loop thread. Whoever feeds the session (the
reader, a script method, a market) calls :meth:`Connection.pump` afterwards, as
python-websockets' connections do after each call into their protocol: it wakes
the writer and carries out an :class:`~.outbox.Abort`. The writer drains the
session's outbox one frame at a time, so a client that stops reading stalls only
its own connection, until the outbox bound gives up on it (S37).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from .outbox import Abort
from .records import ConnectionInfo
from .session import ROOM_HIGH, BaseSession

__all__ = ["Connection"]

#: The writer reopens the room for the market below this many queued frames.
ROOM_LOW = 16


class Connection:
    """One accepted WebSocket and the session it drives.

    Attributes:
        session: the protocol state (a market-data or an account-stream session).
        room: set while the outbox is short; a market sending as fast as clients
            read waits on it (back-pressure instead of the S37 bound).
        tasks: the writer and timers, cancelled when the connection ends.
    """

    def __init__(
        self, session: BaseSession, ws: ServerConnection, on_change: Callable[[], None]
    ) -> None:
        self.session = session
        self.ws = ws
        self._on_change = on_change
        self._wakeup = asyncio.Event()
        self.room = asyncio.Event()
        self.room.set()
        self.tasks: list[asyncio.Task[Any]] = []

    @property
    def id(self) -> int:
        """The session's id."""
        return self.session.id

    def info(self) -> ConnectionInfo:
        """A snapshot of the session."""
        return self.session.info()

    def start_writer(self) -> None:
        """Start draining the outbox."""
        self.tasks.append(asyncio.ensure_future(self._write_loop()))

    def pump(self) -> None:
        """Act on what the session just queued: wake the writer, or abort."""
        s = self.session
        abort = s.take_abort()
        if abort is not None:
            self._abort(abort)
        if s.outbox:
            if len(s.outbox) >= ROOM_HIGH:
                self.room.clear()
            self._wakeup.set()

    def _abort(self, abort: Abort) -> None:
        if not abort.last_words:
            self.abort_now(abort.reason)
            return
        transport = self.ws.transport
        # Best effort: only if the transport can take it without waiting.
        limit = self.session.config.delivery.write_limit
        if transport is not None and transport.get_write_buffer_size() < limit:
            # ... and give up on it just before the abort.
            send = self.ws.send(abort.last_words, text=self.session.text)
            self.tasks.append(asyncio.ensure_future(asyncio.wait_for(send, abort.grace * 0.8)))
        asyncio.get_running_loop().call_later(abort.grace, self.abort_now, abort.reason)

    def abort_now(self, reason: str) -> None:
        """Abort the TCP connection: no close frame (S38)."""
        s = self.session
        if s.closed:
            return
        s.close_reason = s.close_reason or reason
        s.closed = s.ending = True
        if self.ws.transport is not None:
            self.ws.transport.abort()
        self._on_change()

    def lost(self) -> None:
        """The reader ended: mark the session closed and stop the writer and timers."""
        self.session.connection_lost(clean=self.clean_close)
        self.room.set()
        for t in self.tasks:
            if t is not asyncio.current_task():
                t.cancel()

    @property
    def clean_close(self) -> bool:
        """Whether the client's close frame arrived (else the connection was lost, S15)."""
        return self.ws.protocol.close_rcvd is not None

    async def _write_loop(self) -> None:
        s, ws = self.session, self.ws
        try:
            while True:
                out = s.next_frame()
                while out is None:
                    self.room.set()
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    out = s.next_frame()
                if len(s.outbox) < ROOM_LOW:
                    self.room.set()
                if out.close:
                    await ws.close(out.code, out.reason)
                    s.closed = True
                    self._on_change()
                    return
                if out.split and out.payload:
                    await ws.send(out.fragments(), text=out.text)
                else:
                    await ws.send(out.payload, text=out.text)
        except (ConnectionClosed, asyncio.CancelledError):
            pass
        except Exception:  # a broken transport ends the connection, never the server
            if ws.transport is not None:
                ws.transport.abort()
