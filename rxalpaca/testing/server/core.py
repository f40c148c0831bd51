"""The server's engine: its loop thread, the upgrade, and each connection's life.

:class:`ServerCore` owns one asyncio loop in a daemon thread and every piece of
state behind it; script methods reach that state only through :meth:`_call`,
which runs a function in the loop and waits for its result, so no lock guards it.
The one lock, the condition behind ``wait_for``, only carries a version counter
that the loop bumps whenever something a test may wait for changes.
:class:`~.stream_server.AlpacaStreamServer` adds the public script methods
(through :class:`~.feeds.FeedScripts` and :class:`~.faults.FaultScripts`).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http
import itertools
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from rxalpaca.feeds import Family, endpoint_for_path

from ..market import Market, MarketConfig
from ..wire import Encoding, TimestampWidth, WidthCycle
from .config import Account, ServerConfig
from .connection import Connection
from .directory import Directory, Slot
from .history import BarHistory, answer, is_rest_path
from .records import ConnectionInfo
from .session import BaseSession, Credentials, Session
from .trading import TradingSession, is_trading_path

if TYPE_CHECKING:  # feeds builds on this module
    from .feeds import MarketHandle

__all__ = ["ConnSelector", "ServerCore"]

_T = TypeVar("_T")

#: Which connections a script method acts on: one (its snapshot or id), or every one.
ConnSelector = ConnectionInfo | int | None


def width_of(option: TimestampWidth | Literal["cycle"]) -> TimestampWidth | WidthCycle:
    """The encoder's width argument for the ``timestamp_width`` option (S31)."""
    return WidthCycle() if option == "cycle" else option


class ServerCore:
    """Loop thread, listening socket, connections and their retention."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        accounts: Mapping[str, Account] | None,
        tokens: Mapping[str, Account] | None,
        config: ServerConfig,
        market: MarketConfig | None,
    ) -> None:
        self.host = host
        self._requested_port = port
        self._config = config
        self._width = width_of(config.delivery.timestamp_width)
        self._directory = Directory(accounts, tokens)
        self._initial_market = market

        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Server | None = None
        self._port = 0
        #: Open connections, and the closed ones that still keep their logs.
        self._conns: dict[int, Connection] = {}
        #: Ids of closed connections in ``_conns``, oldest first.
        self._closed_ids: deque[int] = deque()
        #: Older closed connections: summaries without logs, oldest first.
        self._retired: dict[int, ConnectionInfo] = {}
        self._ids = itertools.count(1)
        self._auth_delay = 0.0
        self._markets: list[MarketHandle] = []
        self._bg: set[asyncio.Task[Any]] = set()
        self._cond = threading.Condition()
        self._version = 0
        self._running = False
        self._book_market: Market | None = None
        #: Every bar sent or made (the REST endpoints' data), the REST requests
        #: answered (path and query: never a header) and injected REST failures.
        self._history = BarHistory()
        self._rest_log: deque[str] = deque(maxlen=1000)
        self._rest_failures: deque[int] = deque()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        """Start the loop thread and listen; returns ``self``. Idempotent."""
        if self._running:
            return self
        loop = asyncio.new_event_loop()
        self._loop = loop
        thread = threading.Thread(
            target=self._run_loop, args=(loop,), name="AlpacaStreamServer", daemon=True
        )
        self._thread = thread
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._startup(), loop).result(10)
        except BaseException:
            self._stop_loop()
            raise
        self._running = True
        self._started()
        return self

    def _started(self) -> None:
        """Hook: the server listens and script methods work."""

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        loop.run_forever()

    def stop(self) -> None:
        """Close every connection and stop listening; returns in well under a second."""
        if not self._running or self._loop is None:
            return
        self._running = False
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(2)
        self._stop_loop()

    def _stop_loop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(2)
        if not loop.is_running():
            loop.close()
        self._loop = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _startup(self) -> None:
        d = self._config.delivery
        self._server = await serve(
            self._handler,
            self.host,
            self._requested_port,
            process_request=self._process_request,
            compression="deflate",
            ping_interval=d.ping_interval,
            ping_timeout=None,
            close_timeout=d.close_timeout,
            max_size=None,
            write_limit=d.write_limit,
        )
        sock = next(iter(self._server.sockets))
        self._port = sock.getsockname()[1]

    async def _shutdown(self) -> None:
        for handle in self._markets:
            if handle._task is not None:
                handle._task.cancel()
        for task in list(self._bg):
            task.cancel()
        conns = [c for c in self._conns.values() if not c.session.closed]
        closes = [asyncio.ensure_future(c.ws.close(1001)) for c in conns]
        if closes:
            await asyncio.wait(closes, timeout=0.2)
        for c in conns:
            if c.ws.transport is not None:
                c.ws.transport.abort()
        if self._server is not None:
            self._server.close(close_connections=False)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 0.3)
        current = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.wait(pending, timeout=0.2)

    # ------------------------------------------------------------------ thread plumbing

    def _call(self, fn: Callable[[], _T], timeout: float = 5.0) -> _T:
        """Run ``fn`` in the loop and return its result (or raise its exception)."""
        loop = self._loop
        if loop is None or not self._running:
            raise RuntimeError("the server is not running; call start() or use `with`")

        async def run() -> _T:
            return fn()

        fut: Future[_T] = asyncio.run_coroutine_threadsafe(run(), loop)
        return fut.result(timeout)

    def _changed(self) -> None:
        """Wake every ``wait_for``: something observable changed."""
        with self._cond:
            self._version += 1
            self._cond.notify_all()

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)
        return task

    def _select(self, conn: ConnSelector, *, authenticated: bool = False) -> list[Connection]:
        """The open connections ``conn`` names (all of them for ``None``)."""
        if conn is None:
            found = [c for c in self._conns.values() if not c.session.closed]
        else:
            c = self._conns.get(conn.id if isinstance(conn, ConnectionInfo) else conn)
            found = [c] if c is not None and not c.session.closed else []
        if authenticated:
            found = [c for c in found if c.session.authenticated]
        return found

    def _each(self, conn: ConnSelector, act: Callable[[BaseSession], object]) -> None:
        """Apply ``act`` to the session of each selected connection, then pump it."""
        for c in self._select(conn):
            act(c.session)
            c.pump()

    # ------------------------------------------------------------------ HTTP upgrade

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if is_rest_path(request.path):
            return self._answer_rest(request)
        ep = endpoint_for_path(request.path)
        if ep is None and not (
            self._config.streams.trading_stream and is_trading_path(request.path)
        ):
            return connection.respond(404, "Not Found\n")  # S1
        who = request.headers.get("APCA-API-KEY-ID") or str(connection.remote_address[0])
        if not self._directory.admit_upgrade(who, time.monotonic(), self._config.auth.rate_limit):
            return connection.respond(429, "Too Many Requests\n")  # S6
        return None

    def _answer_rest(self, request: Request) -> Response:
        """A historical REST request (:mod:`.history`): plain HTTP on the same port.

        ``websockets`` hands every request to ``process_request`` before it looks for
        an upgrade, so a JSON response here is a complete HTTP/1.1 exchange (then the
        connection closes); it runs in the loop, which owns the history it reads."""
        self._rest_log.append(request.path)
        if self._rest_failures:
            status = self._rest_failures.popleft()
            body: dict[str, Any] = {"message": f"injected failure {status}"}
        else:
            status, body = answer(self._history, self._directory, request.path, request.headers)
        payload = orjson.dumps(body)
        headers = Headers(
            [
                ("Date", email.utils.formatdate(usegmt=True)),
                ("Connection", "close"),
                ("Content-Length", str(len(payload))),
                ("Content-Type", "application/json; charset=UTF-8"),
            ]
        )
        phrase = http.HTTPStatus(status).phrase
        self._changed()
        return Response(status, phrase, headers, payload)

    # ------------------------------------------------------------------ connections

    async def _handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        ctype = ws.request.headers.get("Content-Type", "") or ""
        enc = Encoding.MSGPACK if "msgpack" in ctype.lower() else Encoding.JSON  # S2
        ep = endpoint_for_path(ws.request.path)
        common: dict[str, Any] = {
            "directory": self._directory,
            "config": self._config,
            "width": self._width,
            "headers": dict(ws.request.headers.raw_items()),
            "compressed": bool(getattr(ws.protocol, "extensions", [])),
        }
        cid = next(self._ids)
        session: BaseSession
        if ep is None:
            session = TradingSession(cid, enc, **common)
        else:
            session = Session(cid, ep, enc, order_books=self._snapshot_market, **common)
        c = Connection(session, ws, self._changed)
        self._conns[cid] = c
        c.start_writer()
        self._changed()
        try:
            if isinstance(session, Session):
                await self._serve_market_data(c, session)
            else:
                async for message in ws:
                    session.receive(message)
                    c.pump()
                    self._changed()
        except ConnectionClosed:
            pass
        finally:
            self._cleanup(c)

    async def _serve_market_data(self, c: Connection, s: Session) -> None:
        s.start()
        c.pump()
        if not s.ending:
            c.tasks.append(asyncio.ensure_future(self._auth_timer(c, s)))
            creds = s.header_credentials()
            if creds is not None:
                await self._authenticate(c, s, creds)
        async for message in c.ws:
            creds = s.receive(message)
            c.pump()
            self._changed()
            if creds is not None:
                await self._authenticate(c, s, creds)

    async def _authenticate(self, c: Connection, s: Session, creds: Credentials) -> None:
        if self._auth_delay > 0:  # slow_auth(): the reply, not the reading, waits
            await asyncio.sleep(self._auth_delay)
        s.authenticate(creds)
        c.pump()
        self._changed()

    async def _auth_timer(self, c: Connection, s: Session) -> None:
        await asyncio.sleep(self._config.auth.auth_timeout)
        s.auth_timed_out()  # S13
        c.pump()

    def _cleanup(self, c: Connection) -> None:
        c.lost()
        s = c.session
        if s.slot is not None:
            ghost_seconds = self._config.auth.ghost_session_seconds
            ghost = not c.clean_close and bool(ghost_seconds)  # S15
            self._directory.release(s.slot, s.id, ghost=ghost)
            if ghost:
                loop = asyncio.get_running_loop()
                loop.call_later(ghost_seconds or 0.0, self._release_ghost, s.slot)
            s.slot = None
        self._closed_ids.append(s.id)
        self._trim_closed()
        self._changed()

    def _trim_closed(self) -> None:
        """Bound what closed connections retain (``closed_logs``, ``closed_connections``):
        a long run with reconnects must not keep every connection's logs forever."""
        logs = self._config.logs
        if logs.closed_logs is not None:
            while len(self._closed_ids) > max(0, logs.closed_logs):
                c = self._conns.pop(self._closed_ids.popleft(), None)
                if c is not None:
                    self._retired[c.id] = replace(
                        c.info(), received=[], sent_data=[], logs_dropped=True
                    )
        if logs.closed_connections is not None:
            limit = max(0, logs.closed_connections)
            while len(self._retired) + len(self._closed_ids) > limit:
                if self._retired:
                    del self._retired[next(iter(self._retired))]
                else:
                    self._conns.pop(self._closed_ids.popleft(), None)

    def _release_ghost(self, slot: Slot) -> None:
        self._directory.release_ghost(slot)
        self._changed()

    def _snapshot_market(self) -> Market:
        """The market whose order books answer an ``orderbooks`` subscribe (S27): the
        symbols of the latest crypto market started, else BTC/USD."""
        m = self._book_market
        if m is None:
            syms: Sequence[str] = ("BTC/USD",)
            for h in self._markets:
                if h.config.resolved_family() is Family.CRYPTO:
                    syms = h.config.symbols
            m = Market(syms, family=Family.CRYPTO, seed=11)
            self._book_market = m
        return m
