"""``AlpacaStreamServer``: a real Alpaca-protocol WebSocket server on loopback.

It implements the server behaviours S1-S39 of ``alpaca-stream-protocol.md`` §12 on
top of the ``websockets`` library (``websockets.asyncio.server``), running its own
asyncio loop in one background daemon thread. Every script method is thread-safe:
it is marshalled into the server's loop and may be called from the test's thread.

Example::

    >>> from rxalpaca.testing import AlpacaStreamServer
    >>> with AlpacaStreamServer() as server:          # doctest: +SKIP
    ...     url = server.url("iex")                    # ws://127.0.0.1:<port>/v2/iex
    ...     # connect a client, authenticate with DEFAULT_KEY / DEFAULT_SECRET ...
    ...     info = server.wait_for_subscriptions({"trades": {"AAPL"}})
    ...     server.publish([{"T": "t", "S": "AAPL", "i": 1, "x": "V", "p": 1.5, "s": 10,
    ...                      "c": ["@"], "z": "C", "t": 1_700_000_000_123_456_789}])

Where the protocol document leaves a choice open (close codes, whether a socket
survives 402/406/409, when 412 is sent …) the server follows its §12 default and
offers a constructor option to do the other thing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import re
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Literal, NamedTuple, TypeVar

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from rxalpaca.errors import error_for_code
from rxalpaca.feeds import (
    ENDPOINTS,
    IMPLICIT_CHANNELS,
    Channel,
    Endpoint,
    Family,
    endpoint,
    endpoint_for_path,
)

from .market import Market, MarketConfig
from .wire import (
    Encoding,
    TimestampWidth,
    WidthCycle,
    decode_client_message,
    encode_item,
    join_items,
)

__all__ = [
    "DEFAULT_KEY",
    "DEFAULT_SECRET",
    "DEFAULT_TOKEN",
    "Account",
    "AlpacaStreamServer",
    "ConnectionInfo",
    "Fault",
    "MarketHandle",
    "SentRecord",
]

DEFAULT_KEY = "test-key"
DEFAULT_SECRET = "test-secret"
#: OAuth / Broker access token accepted by the default server (``key: "oauth"`` or
#: ``"access_token"``, or ``Authorization: Bearer``).
DEFAULT_TOKEN = "test-token"

_T = TypeVar("_T")

#: Feeds the free plan does not include (S16).
_PAID_FEEDS = frozenset({"sip", "opra"})

#: Channel of each data ``T`` per family (S29). ``c``/``x`` follow ``trades`` (S25).
_CHANNEL_OF: dict[Family, dict[str, str]] = {
    Family.STOCKS: {
        "t": "trades",
        "q": "quotes",
        "b": "bars",
        "d": "dailyBars",
        "u": "updatedBars",
        "s": "statuses",
        "l": "lulds",
        "i": "imbalances",
        "c": "trades",
        "x": "trades",
    },
    Family.TEST: {"t": "trades", "q": "quotes", "b": "bars", "c": "trades", "x": "trades"},
    Family.CRYPTO: {
        "t": "trades",
        "q": "quotes",
        "b": "bars",
        "d": "dailyBars",
        "u": "updatedBars",
        "o": "orderbooks",
    },
    Family.OPTIONS: {"t": "trades", "q": "quotes"},
    Family.NEWS: {"n": "news"},
}

_STOCK_SYMBOL = re.compile(r"[A-Z0-9]+(?:[.\-][A-Z0-9]+)*")
_CRYPTO_SYMBOL = re.compile(r"[A-Z0-9]{1,15}/[A-Z0-9]{1,15}")
_OPTION_SYMBOL = re.compile(r"[A-Z0-9]{1,6}\d{6}[CP]\d{8}")


def _valid_symbol(family: Family, symbol: object) -> bool:
    """The per-endpoint symbol grammar of S21 (``*`` always allowed)."""
    if not isinstance(symbol, str) or len(symbol) > 40:
        return False
    if symbol == "*":
        return True
    if family is Family.CRYPTO:
        return _CRYPTO_SYMBOL.fullmatch(symbol) is not None
    if family is Family.OPTIONS:
        return _OPTION_SYMBOL.fullmatch(symbol) is not None
    if family is Family.NEWS:
        return (_STOCK_SYMBOL.fullmatch(symbol) or _CRYPTO_SYMBOL.fullmatch(symbol)) is not None
    return _STOCK_SYMBOL.fullmatch(symbol) is not None


@dataclass(frozen=True)
class Account:
    """Credentials' entitlements (S16, S23).

    Attributes:
        secret: the secret key (unused for tokens).
        plan: ``"free"`` (no ``sip``/``opra``, 30 symbols) or ``"unlimited"``.
        feeds: feeds this account may use; ``None`` means the plan's default.
        symbol_limit: cap on distinct symbols across the limited channels;
            ``None`` means the plan's default (free 30, unlimited none).
        orderbook_limit: cap on crypto order-book symbols; ``None``: free 10, unlimited none.
    """

    secret: str = DEFAULT_SECRET
    plan: Literal["free", "unlimited"] = "unlimited"
    feeds: frozenset[str] | None = None
    symbol_limit: int | None = None
    orderbook_limit: int | None = None

    def allows(self, feed: str) -> bool:
        """Whether the account is entitled to ``feed``."""
        if self.feeds is not None:
            return feed in self.feeds
        return self.plan == "unlimited" or feed not in _PAID_FEEDS

    def effective_symbol_limit(self) -> int | None:
        """The symbol cap in force."""
        if self.symbol_limit is not None:
            return self.symbol_limit
        return 30 if self.plan == "free" else None

    def effective_orderbook_limit(self) -> int | None:
        """The order-book symbol cap in force."""
        if self.orderbook_limit is not None:
            return self.orderbook_limit
        return 10 if self.plan == "free" else None


class SentRecord(NamedTuple):
    """One data message the server sent on a connection.

    ``seq`` counts messages per (``T``, symbol) on that connection, from 1.
    """

    T: str
    symbol: str
    seq: int
    record: Mapping[str, Any]


@dataclass(frozen=True)
class ConnectionInfo:
    """A snapshot of one connection, taken in the server's loop.

    Attributes:
        id: server-assigned number, from 1, in accept order.
        path: the request path; ``feed`` its feed name (``"iex"`` …).
        encoding: ``"json"`` or ``"msgpack"`` (S2); ``compressed``: permessage-deflate in use.
        headers: the upgrade request's headers.
        key: the credentials' identity once authenticated (the key id, or
            ``"token:<token>"``); ``authenticated``: auth succeeded.
        subscriptions: channel → symbols for every subscribable channel of the endpoint.
        received: the client's messages, decoded (undecodable ones raw); the last
            ``received_log_size`` of them.
        sent_data: the last data messages sent (bounded log), ``sent_data_count`` all of them.
        closed: the socket is gone; ``close_reason`` says why.
        logs_dropped: a closed connection older than the server's ``closed_logs`` most
            recent ones: ``received`` and ``sent_data`` were released (the counts stay).
    """

    id: int
    path: str
    feed: str
    encoding: Encoding
    compressed: bool
    headers: dict[str, str]
    key: str | None
    authenticated: bool
    subscriptions: dict[str, set[str]]
    received: list[Any]
    sent_data: list[SentRecord]
    sent_data_count: int
    muted: bool
    closed: bool
    close_reason: str
    logs_dropped: bool = False


class Fault(StrEnum):
    """Canned faulty frames for :meth:`AlpacaStreamServer.send_fault` (S34)."""

    TRUNCATED = "truncated"  #: a data frame cut in half
    INVALID = "invalid"  #: bytes that are neither JSON nor MessagePack
    UNKNOWN_TYPE = "unknown_type"  #: a message with an unknown ``T``
    MISSING_FIELDS = "missing_fields"  #: a trade without its required keys
    EXTRA_FIELDS = "extra_fields"  #: a trade with unknown extra keys
    NULL_LISTS = "null_lists"  #: a subscription ack whose lists are null
    CONTROL_IN_BATCH = "control_in_batch"  #: a success message between two trades
    SPLIT = "split"  #: a valid frame sent as continuation fragments
    NOT_AN_ARRAY = "not_an_array"  #: a bare object instead of an array


@dataclass
class MarketHandle:
    """A running synthetic market (see :meth:`AlpacaStreamServer.start_market`).

    ``sent`` counts generated messages; ``done`` is set when a ``total`` was reached.
    """

    config: MarketConfig
    sent: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    _task: asyncio.Task[None] | None = None


_CLOSE = "close"
_PREPARED = "prepared"  # cache marker: only the encodings present were prepared
_ABORT = "abort"


@dataclass
class _Out:
    payload: bytes
    text: bool
    data_count: int = 0
    action: str = ""  # "" = send, _CLOSE / _ABORT = end the connection
    code: int = 1000
    reason: str = ""
    split: int = 0  # send as this many fragments (Fault.SPLIT marks its own frame)


class _Conn:
    """Loop-owned state of one connection."""

    def __init__(
        self,
        cid: int,
        ws: ServerConnection,
        ep: Endpoint,
        enc: Encoding,
        *,
        log_size: int,
        received_size: int,
    ) -> None:
        self.id = cid
        self.ws = ws
        self.endpoint = ep
        self.encoding = enc
        self.text = enc is Encoding.JSON
        self.identity: str | None = None
        self.authenticated = False
        self.subs: dict[str, dict[str, None]] = {str(c): {} for c in ep.subscribable}
        self.received: deque[Any] = deque(maxlen=received_size)
        self.sent: deque[SentRecord] = deque(maxlen=log_size)
        self.sent_count = 0
        self.seq: dict[tuple[str, str], int] = {}
        self.closed = False
        self.close_reason = ""
        self.muted = False
        self.out: deque[_Out] = deque()
        self.out_bytes = 0
        self.out_msgs = 0
        self.wakeup = asyncio.Event()
        self.room = asyncio.Event()
        self.room.set()
        self.split_next = 0
        self.corrupt_next = False
        self.lagging: set[tuple[str, str]] = set()
        self.lag_left = 0
        self.tasks: list[asyncio.Task[Any]] = []
        self.slot: tuple[str, str] | None = None
        self.ending = False
        self.account: Account | None = None
        self.trading = False

    def info(self) -> ConnectionInfo:
        ext = getattr(self.ws.protocol, "extensions", [])
        return ConnectionInfo(
            id=self.id,
            path=self.endpoint.path,
            feed=self.endpoint.feed,
            encoding=self.encoding,
            compressed=bool(ext),
            headers={k: v for k, v in self.ws.request.headers.raw_items()}
            if self.ws.request is not None
            else {},
            key=self.identity,
            authenticated=self.authenticated,
            subscriptions={ch: set(s) for ch, s in self.subs.items()},
            received=list(self.received),
            sent_data=list(self.sent),
            sent_data_count=self.sent_count,
            muted=self.muted,
            closed=self.closed,
            close_reason=self.close_reason,
        )


ConnSelector = ConnectionInfo | int | None


class AlpacaStreamServer:
    """An Alpaca market-data stream server on 127.0.0.1 (S1-S39 of the protocol doc, §12).

    Args:
        host: interface to bind (default loopback only); ``port``: 0 picks a free port.
        accounts: key id → :class:`Account`; default ``{DEFAULT_KEY: Account(DEFAULT_SECRET)}``.
        tokens: OAuth/Broker token → :class:`Account` (S9/S10); default ``{DEFAULT_TOKEN: …}``.
        auth_timeout: seconds to authenticate before ``404 auth timeout`` and close (S13).
        close_on_auth_failure: close after ``402`` (S11; default keep the socket open).
        connection_limit: sessions per (credentials, endpoint), ``None`` = unlimited (S14).
        close_on_connection_limit: close after ``406`` (default keep open).
        ghost_session_seconds: keep the slot of a connection lost without a close
            handshake (client vanished, or :meth:`drop`) this long (S15; off).
        close_on_insufficient_subscription: close after ``409`` (S16; default yes).
        msgpack_required_timing: send ``412`` right after the greeting or on the
            client's first message (S3).
        rate_limit: ``(n, window_s)``: HTTP 429 for the n+1-th upgrade of one key (or
            address) within the window (S6; off).
        batch_size: data messages per frame for :meth:`publish` (S30).
        imbalances_in_ack: list ``imbalances`` in stock acks (S24).
        symbol_limit_channels: channels counted by the symbol cap (S23).
        lag_messages: after an unsubscribe, keep delivering up to this many messages of
            the removed symbols (S28; 0 = off).
        timestamp_width: MessagePack timestamp width, ``"auto"``, 4, 8, 12 or
            ``"cycle"`` (rotate 4/8/12; S31).
        max_buffer_messages / max_buffer_bytes: per-connection outbound buffer; on
            overflow ``407 slow client`` (best effort) and the socket is dropped (S37).
        ping_interval: send server pings every N s (S35; off). Pings are always answered.
        close_code: WebSocket close code for protocol-driven closes (S2a).
        close_on_internal_error: close after an injected ``500`` (S39).
        lenient_decoding: also accept client messages in the other encoding (S2).
        test_stream: run the FAKEPACA generator for ``/v2/test`` (S33);
            ``test_stream_speed`` scales its cadence (quote every 5 s / speed …).
        market: start this synthetic market with the server (see :meth:`start_market`).
        sent_log_size: how many data messages each connection's ``sent_data`` keeps
            (0: only count them, the cheapest for benchmarks).
        received_log_size: how many client messages each connection's ``received`` keeps.
        closed_logs: how many of the most recently closed connections keep their logs
            (``received``, ``sent_data``); older ones keep their summary only
            (``logs_dropped``). ``None`` keeps every log, for a test that audits every
            connection of a run. Retained memory is then bounded by (open connections
            + ``closed_logs``) x the log sizes, however many reconnects a run has.
        closed_connections: how many closed connections :meth:`connections` still
            lists, oldest forgotten first (``None``: all of them).
        write_limit: bytes the transport may buffer before a send waits (websockets'
            high-water mark).
        close_timeout: seconds to wait for the client's close frame.
        trading_stream: also serve the account stream ``/stream`` (S40,
            ``trade_updates``); ``trading_binary_frames``: its JSON goes in binary
            frames, as on the paper endpoint.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        accounts: Mapping[str, Account] | None = None,
        tokens: Mapping[str, Account] | None = None,
        auth_timeout: float = 10.0,
        close_on_auth_failure: bool = False,
        connection_limit: int | None = 1,
        close_on_connection_limit: bool = False,
        ghost_session_seconds: float | None = None,
        close_on_insufficient_subscription: bool = True,
        msgpack_required_timing: Literal["greeting", "first_message"] = "greeting",
        rate_limit: tuple[int, float] | None = None,
        batch_size: int = 1,
        imbalances_in_ack: bool = True,
        symbol_limit_channels: Sequence[str] = ("trades", "quotes"),
        lag_messages: int = 0,
        timestamp_width: TimestampWidth | Literal["cycle"] = "auto",
        max_buffer_messages: int | None = 100_000,
        max_buffer_bytes: int | None = 64 * 1024 * 1024,
        ping_interval: float | None = None,
        close_code: int = 1000,
        close_on_internal_error: bool = True,
        lenient_decoding: bool = True,
        test_stream: bool = True,
        test_stream_speed: float = 1.0,
        market: MarketConfig | None = None,
        sent_log_size: int = 100_000,
        received_log_size: int = 100_000,
        closed_logs: int | None = 2,
        closed_connections: int | None = 1000,
        write_limit: int = 2**15,
        close_timeout: float = 1.0,
        trading_stream: bool = True,
        trading_binary_frames: bool = True,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.accounts: dict[str, Account] = dict(
            accounts if accounts is not None else {DEFAULT_KEY: Account(DEFAULT_SECRET)}
        )
        self.tokens: dict[str, Account] = dict(
            tokens if tokens is not None else {DEFAULT_TOKEN: Account("")}
        )
        self.auth_timeout = auth_timeout
        self.close_on_auth_failure = close_on_auth_failure
        self.connection_limit = connection_limit
        self.close_on_connection_limit = close_on_connection_limit
        self.ghost_session_seconds = ghost_session_seconds
        self.close_on_insufficient_subscription = close_on_insufficient_subscription
        self.msgpack_required_timing = msgpack_required_timing
        self.rate_limit = rate_limit
        self.batch_size = max(1, batch_size)
        self.imbalances_in_ack = imbalances_in_ack
        self.symbol_limit_channels = tuple(symbol_limit_channels)
        self.lag_messages = lag_messages
        self._width: TimestampWidth | WidthCycle = (
            WidthCycle() if timestamp_width == "cycle" else timestamp_width
        )
        self.max_buffer_messages = max_buffer_messages
        self.max_buffer_bytes = max_buffer_bytes
        self.ping_interval = ping_interval
        self.close_code = close_code
        self.close_on_internal_error = close_on_internal_error
        self.lenient_decoding = lenient_decoding
        self.test_stream = test_stream
        self.test_stream_speed = test_stream_speed
        self._initial_market = market
        self.sent_log_size = sent_log_size
        self.received_log_size = received_log_size
        self.closed_logs = closed_logs
        self.closed_connections = closed_connections
        self.write_limit = write_limit
        self.close_timeout = close_timeout
        self.trading_stream = trading_stream
        self.trading_binary_frames = trading_binary_frames

        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Server | None = None
        self._port = 0
        #: Open connections, and the closed ones that still keep their logs.
        self._conns: dict[int, _Conn] = {}
        #: Ids of closed connections in ``_conns``, oldest first.
        self._closed_ids: deque[int] = deque()
        #: Older closed connections: summaries without logs, oldest first.
        self._retired: dict[int, ConnectionInfo] = {}
        self._ids = itertools.count(1)
        self._slots: dict[tuple[str, str], set[int]] = {}
        self._ghosts: dict[tuple[str, str], int] = {}
        self._upgrades: dict[str, deque[float]] = {}
        self._fail_next_auth: deque[int] = deque()
        self._auth_delay = 0.0
        self._markets: list[MarketHandle] = []
        self._bg: set[asyncio.Task[Any]] = set()
        self._cond = threading.Condition()
        self._version = 0
        self._running = False
        self._book_market: Market | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> AlpacaStreamServer:
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
        if self._initial_market is not None:
            self.start_market(self._initial_market)
        return self

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

    def __enter__(self) -> AlpacaStreamServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _startup(self) -> None:
        self._server = await serve(
            self._handler,
            self.host,
            self._requested_port,
            process_request=self._process_request,
            compression="deflate",
            ping_interval=self.ping_interval,
            ping_timeout=None,
            close_timeout=self.close_timeout,
            max_size=None,
            write_limit=self.write_limit,
        )
        sock = next(iter(self._server.sockets))
        self._port = sock.getsockname()[1]
        if self.test_stream:
            self._spawn(self._run_test_stream())

    async def _shutdown(self) -> None:
        for handle in self._markets:
            if handle._task is not None:
                handle._task.cancel()
        for task in list(self._bg):
            task.cancel()
        conns = [c for c in self._conns.values() if not c.closed]
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

    # ------------------------------------------------------------------ addresses

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        return self._port

    @property
    def base_url(self) -> str:
        """``ws://host:port``."""
        return f"ws://{self.host}:{self._port}"

    def url(self, feed: str = "iex") -> str:
        """The URL of ``feed`` on this server, e.g. ``url("iex")`` → ``ws://127.0.0.1:p/v2/iex``."""
        return self.base_url + endpoint(feed).path

    # ------------------------------------------------------------------ thread plumbing

    def _call(self, fn: Callable[[], _T], timeout: float = 5.0) -> _T:
        loop = self._loop
        if loop is None or not self._running:
            raise RuntimeError("the server is not running")

        async def run() -> _T:
            return fn()

        fut: Future[_T] = asyncio.run_coroutine_threadsafe(run(), loop)
        return fut.result(timeout)

    def _call_async(self, coro: Awaitable[_T], timeout: float = 5.0) -> _T:
        loop = self._loop
        if loop is None or not self._running:
            raise RuntimeError("the server is not running")

        async def run() -> _T:
            return await coro

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout)

    def _changed(self) -> None:
        with self._cond:
            self._version += 1
            self._cond.notify_all()

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)
        return task

    def _select(self, conn: ConnSelector, *, authenticated: bool = False) -> list[_Conn]:
        if conn is None:
            found = [c for c in self._conns.values() if not c.closed]
        else:
            cid = conn.id if isinstance(conn, ConnectionInfo) else conn
            c = self._conns.get(cid)
            found = [c] if c is not None and not c.closed else []
        if authenticated:
            found = [c for c in found if c.authenticated]
        return found

    # ------------------------------------------------------------------ inspection and waits

    def connections(self, *, include_closed: bool = True) -> list[ConnectionInfo]:
        """Snapshots of the connections accepted so far, in accept order.

        Closed connections beyond ``closed_connections`` are no longer listed, and
        those beyond the ``closed_logs`` most recent have empty logs.
        """

        def snap() -> list[ConnectionInfo]:
            live = [c.info() for c in self._conns.values() if include_closed or not c.closed]
            if not include_closed or not self._retired:
                return live
            return sorted([*self._retired.values(), *live], key=lambda i: i.id)

        return self._call(snap)

    def connection(self, conn: ConnectionInfo | int) -> ConnectionInfo:
        """A fresh snapshot of one connection.

        Raises:
            KeyError: no such connection, or one closed so long ago it was forgotten.
        """
        cid = conn.id if isinstance(conn, ConnectionInfo) else conn

        def snap() -> ConnectionInfo:
            c = self._conns.get(cid)
            return c.info() if c is not None else self._retired[cid]

        return self._call(snap)

    def wait_for(
        self, predicate: Callable[[list[ConnectionInfo]], bool], timeout: float = 5.0
    ) -> list[ConnectionInfo]:
        """Block until ``predicate(connections())`` holds (event-driven, no polling).

        Raises:
            TimeoutError: not within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                version = self._version
            snap = self.connections()
            if predicate(snap):
                return snap
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"condition not met within {timeout} s: {snap!r}")
            with self._cond:
                if self._version == version:
                    self._cond.wait(remaining)

    def wait_for_connection(self, count: int = 1, timeout: float = 5.0) -> ConnectionInfo:
        """Wait until ``count`` connections have been accepted; returns the ``count``-th."""
        snap = self.wait_for(lambda cs: len(cs) >= count, timeout)
        return snap[count - 1]

    def wait_for_authenticated(self, count: int = 1, timeout: float = 5.0) -> ConnectionInfo:
        """Wait until ``count`` open connections are authenticated; returns the last of them."""
        snap = self.wait_for(
            lambda cs: sum(c.authenticated and not c.closed for c in cs) >= count, timeout
        )
        return [c for c in snap if c.authenticated and not c.closed][count - 1]

    def wait_for_subscriptions(
        self,
        expected: Mapping[str, Iterable[str]] | Callable[[dict[str, set[str]]], bool],
        conn: ConnSelector = None,
        timeout: float = 5.0,
    ) -> ConnectionInfo:
        """Wait until a connection's subscriptions match.

        ``expected`` is either channel → symbols (each listed channel must equal the
        set exactly; unlisted channels are not checked) or a predicate on the
        ``subscriptions`` dict. Returns the matching connection.
        """
        if callable(expected):
            check = expected
        else:
            want = {ch: set(syms) for ch, syms in expected.items()}

            def check(subs: dict[str, set[str]]) -> bool:
                return all(subs.get(ch, set()) == s for ch, s in want.items())

        def pick(cs: list[ConnectionInfo]) -> ConnectionInfo | None:
            for c in cs:
                if c.closed or (conn is not None and c.id != _cid(conn)):
                    continue
                if check(c.subscriptions):
                    return c
            return None

        snap = self.wait_for(lambda cs: pick(cs) is not None, timeout)
        found = pick(snap)
        assert found is not None
        return found

    def wait_for_closed(self, conn: ConnectionInfo | int, timeout: float = 5.0) -> ConnectionInfo:
        """Wait until the server considers ``conn`` closed."""
        cid = _cid(conn)
        snap = self.wait_for(lambda cs: any(c.id == cid and c.closed for c in cs), timeout)
        return next(c for c in snap if c.id == cid)

    def wait_for_received(
        self,
        predicate: Callable[[Any], bool],
        conn: ConnSelector = None,
        timeout: float = 5.0,
    ) -> Any:
        """Wait until a client message satisfying ``predicate`` arrived; returns it."""

        def find(cs: list[ConnectionInfo]) -> Any:
            for c in cs:
                if conn is not None and c.id != _cid(conn):
                    continue
                for m in c.received:
                    if predicate(m):
                        return (m,)
            return None

        snap = self.wait_for(lambda cs: find(cs) is not None, timeout)
        return find(snap)[0]

    # ------------------------------------------------------------------ scripting

    def publish(
        self,
        records: Sequence[Mapping[str, Any]],
        conn: ConnSelector = None,
        *,
        feed: str | None = None,
        batch: int | None = None,
    ) -> int:
        """Send data messages to matching authenticated connections (S29, S30, S33).

        Args:
            records: wire dicts (``T`` first or not; timestamps as ns ``int`` or datetime).
            conn: one connection, or ``None`` for every authenticated one.
            feed: only connections on this feed.
            batch: messages per frame (default: the server's ``batch_size``).

        Returns:
            how many messages were queued in total, over all connections.

        A single call queues everything at once: more than ``max_buffer_messages``
        messages for one connection overflow its buffer (S37) even if the client reads
        fast, so raise the bound for bulk publishes.
        """
        recs = list(records)
        return self._call(lambda: self._publish(recs, conn, feed, batch))

    def _publish(
        self, recs: list[Mapping[str, Any]], conn: ConnSelector, feed: str | None, batch: int | None
    ) -> int:
        targets = [c for c in self._select(conn, authenticated=True) if not c.trading]
        if feed is not None:
            ep = endpoint(feed)
            targets = [c for c in targets if c.endpoint is ep]
        cache: dict[str, list[bytes | None]] = {}
        total = 0
        for c in targets:
            total += self._deliver(c, recs, cache, batch or self.batch_size)
        return total

    def _deliver(
        self,
        c: _Conn,
        recs: Sequence[Mapping[str, Any]],
        cache: dict[str, list[bytes | None]],
        batch: int,
    ) -> int:
        """Filter ``recs`` by ``c``'s subscriptions, encode (cached) and queue in frames."""
        if c.muted or c.closed or c.ending:
            return 0
        items = cache.get(c.encoding)
        if items is None and cache.get(_PREPARED) is not None:
            return 0  # a pre-encoded market without this connection's encoding
        if items is None:
            items = cache[c.encoding] = [None] * len(recs)
        chosen: list[bytes] = []
        n = 0
        for idx, rec in enumerate(recs):
            if not self._wants(c, rec):
                continue
            item = items[idx]
            if item is None:
                item = items[idx] = encode_item(rec, c.encoding, self._width)
            chosen.append(item)
            if self.sent_log_size:
                self._log_sent(c, rec)
            else:
                c.sent_count += 1
            n += 1
            if len(chosen) >= batch:
                self._enqueue(c, join_items(chosen, c.encoding), len(chosen))
                chosen = []
        if chosen:
            self._enqueue(c, join_items(chosen, c.encoding), len(chosen))
        return n

    def _log_sent(self, c: _Conn, rec: Mapping[str, Any]) -> None:
        t = str(rec.get("T", ""))
        sym = rec.get("S")
        symbol = sym if isinstance(sym, str) else ",".join(map(str, rec.get("symbols", ()) or ()))
        key = (t, symbol)
        seq = c.seq.get(key, 0) + 1
        c.seq[key] = seq
        c.sent.append(SentRecord(t, symbol, seq, rec))
        c.sent_count += 1

    def _wants(self, c: _Conn, rec: Mapping[str, Any]) -> bool:
        fam = c.endpoint.family
        ch = _CHANNEL_OF[fam].get(rec.get("T"))  # type: ignore[arg-type]
        if ch is None:
            return True  # unknown T or control inside data: pass through (fault injection)
        subs = c.subs.get(ch)
        if subs is None:
            return False
        if fam is Family.NEWS:
            syms = rec.get("symbols") or ()
            if "*" in subs:
                return True
            return any(s in subs for s in syms)
        sym = rec.get("S")
        if not isinstance(sym, str):
            return True
        if "*" in subs or sym in subs:
            return True
        if c.lag_left > 0 and (ch, sym) in c.lagging:
            c.lag_left -= 1  # S28: already-queued data still trickles out
            return True
        return False

    def send_raw(
        self, frame: bytes | str, conn: ConnSelector = None, *, text: bool | None = None
    ) -> None:
        """Send ``frame`` exactly as given (text frame for ``str``, binary for ``bytes``
        unless ``text`` says otherwise) to one or every open connection."""
        payload = frame.encode() if isinstance(frame, str) else frame
        is_text = isinstance(frame, str) if text is None else text

        def run() -> None:
            for c in self._select(conn):
                self._enqueue(c, payload, 0, text=is_text)

        self._call(run)

    def send_records(self, records: Sequence[Mapping[str, Any]], conn: ConnSelector = None) -> None:
        """Send ``records`` as one frame in each connection's encoding, unfiltered."""
        recs = list(records)

        def run() -> None:
            for c in self._select(conn):
                self._send_frame(c, recs)

        self._call(run)

    def send_error(
        self, code: int, conn: ConnSelector = None, *, close: bool = False, msg: str | None = None
    ) -> None:
        """Send ``[{"T":"error","code":code,"msg":…}]`` (the documented text by default)."""

        def run() -> None:
            for c in self._select(conn):
                self._send_error(c, code, msg)
                if close:
                    self._close_after_flush(c, self.close_code, f"error {code}")

        self._call(run)

    def inject_internal_error(
        self, conn: ConnSelector = None, *, close: bool | None = None
    ) -> None:
        """S39: ``500 internal error``, then close unless ``close=False`` (server default)."""
        self.send_error(500, conn, close=self.close_on_internal_error if close is None else close)

    def send_fault(self, fault: Fault | str, conn: ConnSelector = None) -> None:
        """Send one canned faulty frame (S34), in each connection's encoding."""
        kind = Fault(fault)

        def run() -> None:
            for c in self._select(conn):
                self._fault(c, kind)

        self._call(run)

    def _fault(self, c: _Conn, kind: Fault) -> None:
        trade = {
            "T": "t",
            "S": "AAPL",
            "i": 1,
            "x": "V",
            "p": 100.5,
            "s": 10,
            "c": ["@"],
            "z": "C",
            "t": time.time_ns(),
        }
        enc = c.encoding
        if kind is Fault.TRUNCATED:
            frame = join_items([encode_item(trade, enc, self._width)], enc)
            self._enqueue(c, frame[: len(frame) // 2], 0)
        elif kind is Fault.INVALID:
            self._enqueue(c, b"\xc1 not a frame {[" if not c.text else b"{not json", 0)
        elif kind is Fault.UNKNOWN_TYPE:
            self._send_frame(c, [{"T": "zz", "S": "AAPL", "t": time.time_ns()}])
        elif kind is Fault.MISSING_FIELDS:
            self._send_frame(c, [{"T": "t", "S": "AAPL"}])
        elif kind is Fault.EXTRA_FIELDS:
            self._send_frame(c, [{**trade, "zz": 1, "extra": [1, 2]}])
        elif kind is Fault.NULL_LISTS:
            ack: dict[str, Any] = {"T": "subscription"}
            ack.update({str(ch): None for ch in c.endpoint.ack_channels})
            self._send_frame(c, [ack])
        elif kind is Fault.CONTROL_IN_BATCH:
            self._send_frame(
                c, [trade, {"T": "success", "msg": "authenticated"}, {**trade, "i": 2}]
            )
        elif kind is Fault.SPLIT:
            # Marks this very frame, not whatever frame happens to be written next.
            self._send_frame(c, [trade], split=3)
        elif kind is Fault.NOT_AN_ARRAY:
            self._enqueue(c, encode_item(trade, enc, self._width), 0)

    def split_next_frame(self, n_parts: int = 3, conn: ConnSelector = None) -> None:
        """Send the next non-empty frame written to ``conn`` (whatever is already
        queued comes first) split into ``n_parts`` fragments (S34).

        ``websockets`` ends a fragmented message with an empty final continuation frame,
        so the client sees ``n_parts`` non-empty fragments plus that one.
        """

        def run() -> None:
            for c in self._select(conn):
                c.split_next = max(2, n_parts)

        self._call(run)

    def corrupt_next_frame(self, conn: ConnSelector = None) -> None:
        """Truncate the next frame sent to ``conn`` (its payload becomes undecodable, S34)."""

        def run() -> None:
            for c in self._select(conn):
                c.corrupt_next = True

        self._call(run)

    def mute(self, conn: ConnSelector = None, on: bool = True) -> None:
        """S36: stop (or resume) sending data; pings are still answered."""

        def run() -> None:
            for c in self._select(conn):
                c.muted = on
            self._changed()

        self._call(run)

    def drop(self, conn: ConnSelector = None) -> None:
        """S38: close abruptly — the TCP connection is aborted, no close frame."""

        def run() -> None:
            for c in self._select(conn):
                self._abort(c, "dropped")

        self._call(run)

    def close(self, conn: ConnSelector = None, code: int = 1000, reason: str = "") -> None:
        """S38: close with a close frame (after what is already queued)."""

        def run() -> None:
            for c in self._select(conn):
                self._close_after_flush(c, code, reason or "closed by server")

        self._call(run)

    def fail_next_auth(self, code: int = 406) -> None:
        """Answer the next auth attempt (any connection) with error ``code``."""
        self._call(lambda: self._fail_next_auth.append(code))

    def slow_auth(self, seconds: float) -> None:
        """Delay every auth reply by ``seconds`` (0 to stop)."""

        def run() -> None:
            self._auth_delay = seconds

        self._call(run)

    def set_options(self, **options: Any) -> None:
        """Change constructor options at run time (e.g. ``connection_limit=2``)."""

        def run() -> None:
            for name, value in options.items():
                if name == "timestamp_width":
                    self._width = WidthCycle() if value == "cycle" else value
                elif name.startswith("_") or not hasattr(self, name):
                    raise AttributeError(name)
                else:
                    setattr(self, name, value)

        self._call(run)

    def release_ghosts(self) -> None:
        """Free every slot held by a ghost session now (S15)."""

        def run() -> None:
            self._ghosts.clear()

        self._call(run)

    # ------------------------------------------------------------------ market

    def start_market(self, config: MarketConfig | None = None, **kwargs: Any) -> MarketHandle:
        """Stream a synthetic market to every authenticated connection of its family,
        filtered by each one's subscriptions.

        The market pauses while no connection of its family has a subscription, so
        subscribe first, then start it (nothing is generated for nobody).

        ``start_market(symbols=["AAPL"], rate=5000, batch=10)`` is short for
        ``start_market(MarketConfig(symbols=["AAPL"], rate=5000, batch=10))``. With a
        ``total``, every message is generated and encoded before streaming starts.
        """
        cfg = config if config is not None else MarketConfig(**kwargs)
        handle = MarketHandle(cfg)
        prepared = _prepare_market(cfg, self._width)

        def run() -> None:
            handle._task = self._spawn(self._run_market(handle, prepared))
            self._markets.append(handle)

        self._call(run)
        return handle

    def stop_market(self, handle: MarketHandle | None = None) -> None:
        """Stop one (or every) running market."""

        def run() -> None:
            for h in list(self._markets):
                if handle is None or h is handle:
                    if h._task is not None:
                        h._task.cancel()
                    self._markets.remove(h)

        self._call(run)

    async def _run_market(self, handle: MarketHandle, prep: _PreparedMarket) -> None:
        cfg = handle.config
        family = prep.family
        rate = cfg.rate
        batch = max(1, cfg.batch)
        t0 = time.monotonic()
        try:
            while prep.total is None or handle.sent < prep.total:
                targets = self._market_targets(family)
                if not any(any(subs) for c in targets for subs in c.subs.values()):
                    # Nobody is subscribed: pause (no CPU burnt, nothing wasted) and
                    # resume at the configured rate without a catch-up burst.
                    await asyncio.sleep(0.005)
                    if rate is not None:
                        t0 = time.monotonic() - handle.sent / rate
                    continue
                if rate is not None:
                    due = int((time.monotonic() - t0) * rate) - handle.sent
                    if due <= 0:
                        wait = (handle.sent + 1) / rate - (time.monotonic() - t0)
                        await asyncio.sleep(max(wait, 0.0005))
                        continue
                    n = min(due, max(batch * 64, 4096))
                else:
                    n = batch * 64
                    for c in targets:
                        if not c.room.is_set():
                            await c.room.wait()
                if prep.total is not None:
                    n = min(n, prep.total - handle.sent)
                recs, cache = prep.take(handle.sent, n)
                for c in self._market_targets(family):
                    self._deliver(c, recs, cache, batch)
                handle.sent += n
                await asyncio.sleep(0)
        finally:
            handle.done.set()

    def _market_targets(self, family: Family) -> list[_Conn]:
        return [
            c
            for c in self._conns.values()
            if c.authenticated and not c.closed and c.endpoint.family is family and not c.trading
        ]

    async def _run_test_stream(self) -> None:
        """S33: FAKEPACA on ``/v2/test`` — a quote every 5 s, a trade now and then, a bar
        each minute (all divided by ``test_stream_speed``)."""
        market = Market(["FAKEPACA"], family=Family.TEST, seed=7)
        tick = 0
        bar: list[float] = []
        test_ep = ENDPOINTS["test"]
        while True:
            await asyncio.sleep(5.0 / max(self.test_stream_speed, 1e-6))
            targets = [
                c
                for c in self._conns.values()
                if c.authenticated and not c.closed and c.endpoint is test_ep
            ]
            tick += 1
            now = time.time_ns()
            recs: list[dict[str, Any]] = [market.record("q", "FAKEPACA", now)]
            if market.rng.random() < 0.4:
                recs.append(market.record("t", "FAKEPACA", now + 1))
            mid = market.mid("FAKEPACA")
            bar = (
                [mid, mid, mid, mid]
                if not bar
                else [bar[0], max(bar[1], mid), min(bar[2], mid), mid]
            )
            if tick % 12 == 0:
                o, h, lo, cl = (round(x, 2) for x in bar)
                recs.append(
                    {
                        "T": "b",
                        "S": "FAKEPACA",
                        "o": o,
                        "h": h,
                        "l": lo,
                        "c": cl,
                        "v": market.rng.randint(50, 500),
                        # a bar covers the minute before the one it is sent in (§4.4)
                        "t": (now // 60_000_000_000 - 1) * 60_000_000_000,
                        "n": market.rng.randint(5, 30),
                        "vw": round((h + lo) / 2, 2),
                    }
                )
                bar = []
            cache: dict[str, list[bytes | None]] = {}
            for c in targets:
                self._deliver(c, recs, cache, 1)

    # ------------------------------------------------------------------ HTTP upgrade

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        ep = endpoint_for_path(request.path)
        if ep is None and self.trading_stream and _is_trading_path(request.path):
            ep = _TRADING_ENDPOINT
        if ep is None:
            return connection.respond(404, "Not Found\n")  # S1
        if self.rate_limit is not None:  # S6
            n, window = self.rate_limit
            who = request.headers.get("APCA-API-KEY-ID") or str(connection.remote_address[0])
            now = time.monotonic()
            times = self._upgrades.setdefault(who, deque())
            while times and now - times[0] > window:
                times.popleft()
            if len(times) >= n:
                return connection.respond(429, "Too Many Requests\n")
            times.append(now)
        return None

    # ------------------------------------------------------------------ connection handler

    async def _handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        ep = endpoint_for_path(ws.request.path)
        if ep is None:
            ep = _TRADING_ENDPOINT
        ctype = ws.request.headers.get("Content-Type", "") or ""
        enc = Encoding.MSGPACK if "msgpack" in ctype.lower() else Encoding.JSON  # S2
        c = _Conn(
            next(self._ids),
            ws,
            ep,
            enc,
            log_size=self.sent_log_size,
            received_size=self.received_log_size,
        )
        self._conns[c.id] = c
        if ep is _TRADING_ENDPOINT:
            await self._trading_handler(c)
            return
        c.tasks.append(asyncio.ensure_future(self._writer(c)))
        self._changed()
        try:
            self._send_control(c, {"T": "success", "msg": "connected"})  # S7
            if (
                ep.msgpack_only
                and enc is Encoding.JSON
                and (self.msgpack_required_timing == "greeting")
            ):
                self._send_error(c, 412)  # S3
                self._close_after_flush(c, self.close_code, "msgpack required")
            else:
                c.tasks.append(asyncio.ensure_future(self._auth_timer(c)))
                await self._header_auth(c)
            async for message in ws:
                await self._on_message(c, message)
        except ConnectionClosed:
            pass
        finally:
            await self._cleanup(c)

    async def _cleanup(self, c: _Conn) -> None:
        c.ending = True
        if not c.closed:
            c.closed = True
            if not c.close_reason:
                c.close_reason = "client closed" if c.ws.protocol.close_rcvd is not None else "lost"
        c.room.set()
        for t in c.tasks:
            if t is not asyncio.current_task():
                t.cancel()
        if c.slot is not None:
            slot = c.slot
            self._slots.get(slot, set()).discard(c.id)
            abrupt = c.ws.protocol.close_rcvd is None
            if abrupt and self.ghost_session_seconds:  # S15
                self._ghosts[slot] = self._ghosts.get(slot, 0) + 1
                loop = asyncio.get_running_loop()
                loop.call_later(self.ghost_session_seconds, self._release_ghost, slot)
            c.slot = None
        self._closed_ids.append(c.id)
        self._trim_closed()
        self._changed()

    def _trim_closed(self) -> None:
        """Bound what closed connections retain (``closed_logs``, ``closed_connections``):
        a long run with reconnects must not keep every connection's logs forever."""
        if self.closed_logs is not None:
            while len(self._closed_ids) > max(0, self.closed_logs):
                c = self._conns.pop(self._closed_ids.popleft(), None)
                if c is not None:
                    self._retired[c.id] = replace(
                        c.info(), received=[], sent_data=[], logs_dropped=True
                    )
        if self.closed_connections is not None:
            limit = max(0, self.closed_connections)
            while len(self._retired) + len(self._closed_ids) > limit:
                if self._retired:
                    del self._retired[next(iter(self._retired))]
                else:
                    self._conns.pop(self._closed_ids.popleft(), None)

    def _release_ghost(self, slot: tuple[str, str]) -> None:
        n = self._ghosts.get(slot, 0)
        if n <= 1:
            self._ghosts.pop(slot, None)
        else:
            self._ghosts[slot] = n - 1
        self._changed()

    async def _auth_timer(self, c: _Conn) -> None:
        await asyncio.sleep(self.auth_timeout)
        if not c.authenticated and not c.closed:
            self._send_error(c, 404)  # S13
            self._close_after_flush(c, self.close_code, "auth timeout")

    async def _header_auth(self, c: _Conn) -> None:
        """S10: credentials on the upgrade request."""
        headers = c.ws.request.headers if c.ws.request is not None else None
        if headers is None:
            return
        key = headers.get("APCA-API-KEY-ID")
        secret = headers.get("APCA-API-SECRET-KEY")
        authz = headers.get("Authorization")
        if key is not None:
            await self._authenticate(c, key, secret or "")
        elif authz:
            scheme, _, value = authz.partition(" ")
            if scheme.lower() == "bearer":
                await self._authenticate(c, "oauth", value.strip())
            elif scheme.lower() == "basic":
                try:
                    k, _, s = base64.b64decode(value.strip()).decode().partition(":")
                except Exception:
                    k, s = "", ""
                await self._authenticate(c, k, s)

    async def _on_message(self, c: _Conn, message: str | bytes) -> None:
        try:
            msg = decode_client_message(message, c.encoding, self.lenient_decoding)
        except ValueError:
            c.received.append(message)
            self._changed()
            self._send_error(c, 400)  # S18
            return
        c.received.append(msg)
        self._changed()
        if c.endpoint.msgpack_only and c.encoding is Encoding.JSON:
            # S3, timing "first_message" (with "greeting" we are already closing)
            if not c.ending:
                self._send_error(c, 412)
                self._close_after_flush(c, self.close_code, "msgpack required")
            return
        if not isinstance(msg, dict):
            self._send_error(c, 400)
            return
        action = msg.get("action")
        if action == "auth":
            key, secret = msg.get("key"), msg.get("secret")
            if not isinstance(key, str) or not isinstance(secret, str):
                self._send_error(c, 400)
                return
            await self._authenticate(c, key, secret)
        elif action in ("subscribe", "unsubscribe"):
            if not c.authenticated:
                self._send_error(c, 401)  # S17
                return
            self._subscription_change(c, msg, subscribe=action == "subscribe")
        else:
            self._send_error(c, 400)

    async def _authenticate(self, c: _Conn, key: str, secret: str) -> None:
        if c.authenticated:
            self._send_error(c, 403)  # S12
            return
        if self._auth_delay > 0:
            await asyncio.sleep(self._auth_delay)
            if c.closed or c.authenticated:
                return
        if self._fail_next_auth:
            code = self._fail_next_auth.popleft()
            self._send_error(c, code)
            if code == 402 and self.close_on_auth_failure:
                self._close_after_flush(c, self.close_code, "auth failed")
            return
        account, identity = self._lookup(key, secret)
        if account is None:
            self._send_error(c, 402)  # S11
            if self.close_on_auth_failure:
                self._close_after_flush(c, self.close_code, "auth failed")
            return
        if not account.allows(c.endpoint.feed):
            self._send_error(c, 409)  # S16
            if self.close_on_insufficient_subscription:
                self._close_after_flush(c, self.close_code, "insufficient subscription")
            return
        slot = (identity, c.endpoint.path)
        holders = self._slots.setdefault(slot, set())
        if self.connection_limit is not None and (
            len(holders) + self._ghosts.get(slot, 0) >= self.connection_limit
        ):
            self._send_error(c, 406)  # S14
            if self.close_on_connection_limit:
                self._close_after_flush(c, self.close_code, "connection limit exceeded")
            return
        holders.add(c.id)
        c.slot = slot
        c.identity = identity
        c.authenticated = True
        c.account = account
        self._send_control(c, {"T": "success", "msg": "authenticated"})  # S9
        self._changed()

    def _lookup(self, key: str, secret: str) -> tuple[Account | None, str]:
        """The account of these credentials (``None`` if wrong) and its identity."""
        if key in ("oauth", "access_token"):
            return self.tokens.get(secret), f"token:{secret}"
        account = self.accounts.get(key)
        if account is not None and account.secret != secret:
            account = None
        return account, key

    # ------------------------------------------------------------------ trading stream (S40)

    @property
    def trading_url(self) -> str:
        """URL of the account stream (``trade_updates``, S40): ``ws://host:port/stream``."""
        return self.base_url + _TRADING_ENDPOINT.path

    def publish_trade_update(self, data: Mapping[str, Any], conn: ConnSelector = None) -> int:
        """S40: send ``{"stream":"trade_updates","data":data}`` to every authenticated
        account-stream connection listening to ``trade_updates``; returns how many."""
        payload = dict(data)

        def run() -> int:
            n = 0
            for c in self._select(conn, authenticated=True):
                if c.trading and "trade_updates" in c.subs["streams"]:
                    self._trading_send(c, {"stream": "trade_updates", "data": payload})
                    self._log_sent(
                        c,
                        {
                            "T": "trade_updates",
                            "S": str((payload.get("order") or {}).get("symbol", "")),
                        },
                    )
                    n += 1
            return n

        return self._call(run)

    def _trading_send(self, c: _Conn, obj: Mapping[str, Any]) -> None:
        # Frames are single objects, not arrays (§9); JSON in binary frames by default.
        self._enqueue(
            c,
            encode_item(obj, c.encoding),
            1,
            text=c.encoding is Encoding.JSON and not self.trading_binary_frames,
        )

    async def _trading_handler(self, c: _Conn) -> None:
        c.trading = True
        c.subs = {"streams": {}}
        c.tasks.append(asyncio.ensure_future(self._writer(c)))
        self._changed()
        try:
            async for message in c.ws:
                self._on_trading_message(c, message)
        except ConnectionClosed:
            pass
        finally:
            await self._cleanup(c)

    def _on_trading_message(self, c: _Conn, message: str | bytes) -> None:
        try:
            msg = decode_client_message(message, c.encoding, self.lenient_decoding)
        except ValueError:
            msg = None
        c.received.append(msg if msg is not None else message)
        self._changed()
        if not isinstance(msg, dict):
            self._trading_send(c, {"stream": "error", "data": {"error": "invalid syntax"}})
            return
        action = msg.get("action")
        raw_data = msg.get("data")
        data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
        if action in ("auth", "authenticate"):
            if action == "auth":
                key, secret = msg.get("key"), msg.get("secret")
            elif "oauth_token" in data:
                key, secret = "oauth", data.get("oauth_token")
            else:
                key, secret = data.get("key_id"), data.get("secret_key")
            account = None
            identity = ""
            if isinstance(key, str) and isinstance(secret, str):
                account, identity = self._lookup(key, secret)
            if account is not None:
                c.authenticated = True
                c.identity = identity
                c.account = account
            status = "authorized" if c.authenticated else "unauthorized"
            self._trading_send(
                c, {"stream": "authorization", "data": {"status": status, "action": "authenticate"}}
            )
            self._changed()
        elif action == "listen":
            if not c.authenticated:
                self._trading_send(
                    c,
                    {
                        "stream": "authorization",
                        "data": {"status": "unauthorized", "action": "listen"},
                    },
                )
                return
            asked = data.get("streams")
            names = asked if isinstance(asked, list) else []
            # listen replaces the set; unknown stream names are left out of the reply
            c.subs["streams"] = {n: None for n in names if n in _TRADING_STREAMS}
            self._trading_send(
                c, {"stream": "listening", "data": {"streams": list(c.subs["streams"])}}
            )
            self._changed()
        else:
            self._trading_send(c, {"stream": "error", "data": {"error": "invalid syntax"}})

    def _subscription_change(self, c: _Conn, msg: dict[str, Any], *, subscribe: bool) -> None:
        fam = c.endpoint.family
        changes: dict[str, list[str]] = {}
        foreign = False
        for key, value in msg.items():
            if key == "action":
                continue
            if value is None:
                continue  # S19: null means no change
            if not isinstance(value, list):
                self._send_error(c, 400)
                return
            if not value:
                continue
            if key in IMPLICIT_CHANNELS:
                continue  # corrections / cancelErrors follow trades; tolerate them
            if key not in c.subs:
                foreign = True  # S20
                continue
            changes[key] = value
        if foreign:
            self._send_error(c, 410)
            return
        for syms in changes.values():
            if not all(_valid_symbol(fam, s) for s in syms):
                self._send_error(c, 400)  # S21
                return
        if subscribe and fam is Family.OPTIONS and "*" in changes.get("quotes", ()):
            self._send_error(c, 413)  # S22
            return
        new: dict[str, dict[str, None]] = {ch: dict(s) for ch, s in c.subs.items()}
        for ch, syms in changes.items():
            for s in syms:
                if subscribe:
                    new[ch][s] = None
                else:
                    new[ch].pop(s, None)
        if subscribe and self._over_limit(c, new):
            self._send_error(c, 405)  # S23
            return
        added: dict[str, list[str]] = {
            ch: [s for s in new[ch] if s not in c.subs[ch]] for ch in new
        }
        if not subscribe:
            removed = {(ch, s) for ch in c.subs for s in c.subs[ch] if s not in new[ch]}
            if self.lag_messages > 0 and removed:  # S28
                c.lagging |= removed
                c.lag_left = self.lag_messages
        else:
            c.lagging -= {(ch, s) for ch, syms in added.items() for s in syms}
        c.subs = new
        self._send_control(c, self._ack(c))  # S24
        if subscribe and "orderbooks" in added:  # S27
            self._send_snapshots(c, added["orderbooks"])
        self._changed()

    def _over_limit(self, c: _Conn, new: dict[str, dict[str, None]]) -> bool:
        account = c.account
        if account is None:
            return False
        limit = account.effective_symbol_limit()
        if limit is not None:
            distinct: set[str] = set()
            for ch in self.symbol_limit_channels:
                distinct.update(new.get(ch, {}))
            if len(distinct) > limit:
                return True
        ob_limit = account.effective_orderbook_limit()
        return ob_limit is not None and "orderbooks" in new and len(new["orderbooks"]) > ob_limit

    def _ack(self, c: _Conn) -> dict[str, Any]:
        ack: dict[str, Any] = {"T": "subscription"}
        for ch in c.endpoint.ack_channels:
            if ch is Channel.IMBALANCES and not self.imbalances_in_ack:
                continue
            if ch in IMPLICIT_CHANNELS:
                ack[str(ch)] = list(c.subs["trades"])  # S25
            else:
                ack[str(ch)] = list(c.subs[str(ch)])
        return ack

    def _send_snapshots(self, c: _Conn, symbols: list[str]) -> None:
        market = self._snapshot_market()
        if "*" in symbols:
            symbols = [s for s in symbols if s != "*"] + [
                s for s in market.symbols if s not in symbols
            ]
        for sym in symbols:
            snap = market.order_book_snapshot(sym, time.time_ns())
            item = encode_item(snap, c.encoding, self._width)
            self._log_sent(c, snap)
            self._enqueue(c, join_items([item], c.encoding), 1)

    def _snapshot_market(self) -> Market:
        m = self._book_market
        if m is None:
            syms: Sequence[str] = ("BTC/USD",)
            for h in self._markets:
                if h.config.resolved_family() is Family.CRYPTO:
                    syms = h.config.symbols
            m = Market(syms, family=Family.CRYPTO, seed=11)
            self._book_market = m
        return m

    # ------------------------------------------------------------------ outbound queue

    def _send_control(self, c: _Conn, obj: Mapping[str, Any]) -> None:
        """A control message, alone in its frame (S24, §6)."""
        self._enqueue(c, join_items([encode_item(obj, c.encoding, self._width)], c.encoding), 0)

    def _send_frame(self, c: _Conn, recs: Sequence[Mapping[str, Any]], split: int = 0) -> None:
        items = [encode_item(r, c.encoding, self._width) for r in recs]
        self._enqueue(c, join_items(items, c.encoding), 0, split=split)

    def _send_error(self, c: _Conn, code: int, msg: str | None = None) -> None:
        text = msg if msg is not None else error_for_code(code).msg
        self._send_control(c, {"T": "error", "code": code, "msg": text})

    def _enqueue(
        self, c: _Conn, payload: bytes, data_count: int, *, text: bool | None = None, split: int = 0
    ) -> None:
        if c.closed or c.ending:
            return
        c.out.append(_Out(payload, c.text if text is None else text, data_count, split=split))
        c.out_bytes += len(payload)
        c.out_msgs += max(data_count, 1)
        if len(c.out) >= 32:
            c.room.clear()
        c.wakeup.set()
        if (self.max_buffer_messages is not None and c.out_msgs > self.max_buffer_messages) or (
            self.max_buffer_bytes is not None and c.out_bytes > self.max_buffer_bytes
        ):
            self._slow_client(c)  # S37

    def _slow_client(self, c: _Conn) -> None:
        c.out.clear()
        c.out_bytes = c.out_msgs = 0
        err = join_items(
            [encode_item({"T": "error", "code": 407, "msg": error_for_code(407).msg}, c.encoding)],
            c.encoding,
        )
        transport = c.ws.transport
        # Best effort: only if the transport can take it without waiting.
        if transport is not None and transport.get_write_buffer_size() < self.write_limit:
            with contextlib.suppress(Exception):
                self._spawn(asyncio.wait_for(c.ws.send(err, text=c.text), 0.05))
        c.close_reason = "slow client"
        c.ending = True
        loop = asyncio.get_running_loop()
        loop.call_later(0.06, self._abort, c, "slow client")

    def _close_after_flush(self, c: _Conn, code: int, reason: str) -> None:
        if c.closed or c.ending:
            return
        c.out.append(_Out(b"", False, action=_CLOSE, code=code, reason=reason))
        c.ending = True
        c.wakeup.set()

    def _abort(self, c: _Conn, reason: str) -> None:
        if c.closed:
            return
        c.close_reason = c.close_reason or reason
        c.closed = True
        c.ending = True
        if c.ws.transport is not None:
            c.ws.transport.abort()  # S38: no close frame
        self._changed()

    async def _writer(self, c: _Conn) -> None:
        ws = c.ws
        try:
            while True:
                while not c.out:
                    c.room.set()
                    c.wakeup.clear()
                    await c.wakeup.wait()
                item = c.out.popleft()
                c.out_bytes -= len(item.payload)
                c.out_msgs -= max(item.data_count, 1)
                if len(c.out) < 16:
                    c.room.set()
                if item.action == _CLOSE:
                    c.close_reason = c.close_reason or item.reason
                    await ws.close(item.code, item.reason)
                    c.closed = True
                    self._changed()
                    return
                payload = item.payload
                if c.corrupt_next:
                    c.corrupt_next = False
                    payload = payload[: max(1, len(payload) // 2)]
                n = item.split
                if not n and c.split_next and payload:
                    # An empty frame has nothing to split: the request waits for the next.
                    n, c.split_next = c.split_next, 0
                if n and payload:
                    size = max(1, -(-len(payload) // n))
                    parts = [payload[i : i + size] for i in range(0, len(payload), size)]
                    await ws.send(parts, text=item.text)
                else:
                    await ws.send(payload, text=item.text)
        except (ConnectionClosed, asyncio.CancelledError):
            pass
        except Exception:  # a broken transport ends the connection, never the server
            if ws.transport is not None:
                ws.transport.abort()


#: The account stream (S40) is not a market-data endpoint, so it is not in ``feeds``.
_TRADING_ENDPOINT = Endpoint("trade_updates", "/stream", Family.NEWS, ())
_TRADING_STREAMS = frozenset({"trade_updates"})


def _is_trading_path(path: str) -> bool:
    return (path.split("?", 1)[0].rstrip("/") or "/") == _TRADING_ENDPOINT.path


def _cid(conn: ConnectionInfo | int) -> int:
    return conn.id if isinstance(conn, ConnectionInfo) else conn


class _PreparedMarket:
    """A market's records, generated (and with a ``total`` encoded) ahead of streaming."""

    def __init__(self, cfg: MarketConfig, width: TimestampWidth | WidthCycle) -> None:
        self.family = cfg.resolved_family()
        rate = cfg.rate
        step = cfg.step_ns if cfg.step_ns is not None else int(1e9 / rate) if rate else 2_000
        self.market = Market(
            cfg.symbols,
            family=self.family,
            seed=cfg.seed,
            mix=cfg.mix,
            step_ns=step,
            start_ns=cfg.start_ns,
        )
        self.total = cfg.total
        self.width = width
        self.records: list[dict[str, Any]] = []
        self.items: dict[str, list[bytes | None]] = {}
        if cfg.total is not None:
            self.records = self.market.records(cfg.total)
            wanted = [Encoding(e) for e in cfg.encodings] if cfg.encodings else list(Encoding)
            for enc in wanted:
                self.items[enc] = [encode_item(r, enc, width) for r in self.records]

    def take(
        self, start: int, n: int
    ) -> tuple[list[dict[str, Any]], dict[str, list[bytes | None]]]:
        if self.total is not None:
            end = start + n
            cache: dict[str, list[bytes | None]] = {e: v[start:end] for e, v in self.items.items()}
            cache[_PREPARED] = []
            return self.records[start:end], cache
        return self.market.records(n), {}


def _prepare_market(cfg: MarketConfig, width: TimestampWidth | WidthCycle) -> _PreparedMarket:
    return _PreparedMarket(cfg, width)
