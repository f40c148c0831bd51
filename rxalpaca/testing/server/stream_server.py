"""``AlpacaStreamServer``: a real Alpaca-protocol WebSocket server on loopback.

It implements the server behaviours S1-S40 of ``alpaca-stream-protocol.md`` §12 on
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
offers an option to do the other thing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Unpack

from rxalpaca.feeds import endpoint

from ..market import MarketConfig
from .config import (
    Account,
    AuthConfig,
    DeliveryConfig,
    LogConfig,
    ProtocolConfig,
    ServerConfig,
    ServerOptions,
    StreamsConfig,
)
from .core import ConnSelector, width_of
from .faults import FaultScripts
from .feeds import FeedScripts
from .records import ConnectionInfo
from .trading import TRADING_ENDPOINT, TradingSession

__all__ = ["AlpacaStreamServer"]


class AlpacaStreamServer(FeedScripts, FaultScripts):
    """An Alpaca market-data stream server on 127.0.0.1 (S1-S40 of the protocol doc, §12).

    Args:
        host: interface to bind (default loopback only); ``port``: 0 picks a free port.
        accounts: key id → :class:`Account`; default ``{DEFAULT_KEY: Account(DEFAULT_SECRET)}``.
            Kept live in :attr:`accounts` (add credentials while the server runs).
        tokens: OAuth/Broker token → :class:`Account` (S9/S10); default ``{DEFAULT_TOKEN: …}``.
        market: start this synthetic market with the server (see :meth:`start_market`).
        config: every option at once; ``auth``, ``protocol``, ``delivery``, ``logs``,
            ``streams`` replace one of its records (see :mod:`.config`).
        **options: any single option by its field name (``connection_limit=2``,
            ``batch_size=10``, ``closed_logs=None`` …), applied last. The records
            document each: :class:`AuthConfig` (auth_timeout, close_on_auth_failure,
            connection_limit, close_on_connection_limit, ghost_session_seconds,
            close_on_insufficient_subscription, rate_limit), :class:`ProtocolConfig`
            (msgpack_required_timing, close_code, close_on_internal_error,
            lenient_decoding, imbalances_in_ack, symbol_limit_channels, lag_messages),
            :class:`DeliveryConfig` (batch_size, timestamp_width, max_buffer_messages,
            max_buffer_bytes, ping_interval, write_limit, close_timeout),
            :class:`LogConfig` (sent_log_size, received_log_size, closed_logs,
            closed_connections), :class:`StreamsConfig` (test_stream,
            test_stream_speed, trading_stream, trading_binary_frames).

    Raises:
        TypeError: an option that does not exist (the message lists the valid ones).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        accounts: Mapping[str, Account] | None = None,
        tokens: Mapping[str, Account] | None = None,
        market: MarketConfig | None = None,
        config: ServerConfig | None = None,
        auth: AuthConfig | None = None,
        protocol: ProtocolConfig | None = None,
        delivery: DeliveryConfig | None = None,
        logs: LogConfig | None = None,
        streams: StreamsConfig | None = None,
        **options: Unpack[ServerOptions],
    ) -> None:
        base = config if config is not None else ServerConfig()
        cfg = ServerConfig(
            auth=auth or base.auth,
            protocol=protocol or base.protocol,
            delivery=delivery or base.delivery,
            logs=logs or base.logs,
            streams=streams or base.streams,
        )
        super().__init__(
            host=host,
            port=port,
            accounts=accounts,
            tokens=tokens,
            config=cfg.replace(**options),
            market=market,
        )

    # ------------------------------------------------------------------ options

    @property
    def config(self) -> ServerConfig:
        """The options in force (change them with :meth:`set_options`)."""
        return self._config

    @property
    def accounts(self) -> dict[str, Account]:
        """Key id → account, live: entries added while the server runs are honoured."""
        return self._directory.accounts

    @property
    def tokens(self) -> dict[str, Account]:
        """OAuth/Broker token → account, live like :attr:`accounts`."""
        return self._directory.tokens

    def set_options(self, **options: Unpack[ServerOptions]) -> None:
        """Change options at run time (e.g. ``connection_limit=2``); open connections
        follow the new values from their next message. ``ping_interval``,
        ``write_limit`` and ``close_timeout`` are fixed once the server listens.

        Raises:
            AttributeError: an option that does not exist (nothing is changed).
        """
        try:
            new = self._config.replace(**options)
        except TypeError as exc:  # AttributeError, as when options were attributes
            raise AttributeError(str(exc)) from None

        def run() -> None:
            self._config = new
            if "timestamp_width" in options:
                self._width = width_of(new.delivery.timestamp_width)
            for c in self._conns.values():
                c.session.config = new
                c.session.width = self._width

        self._call(run)

    def release_ghosts(self) -> None:
        """Free every slot held by a ghost session now (S15)."""
        self._call(self._directory.ghosts.clear)

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

    @property
    def trading_url(self) -> str:
        """URL of the account stream (``trade_updates``, S40): ``ws://host:port/stream``."""
        return self.base_url + TRADING_ENDPOINT.path

    # ------------------------------------------------------------------ inspection and waits

    def connections(self, *, include_closed: bool = True) -> list[ConnectionInfo]:
        """Snapshots of the connections accepted so far, in accept order.

        Closed connections beyond ``closed_connections`` are no longer listed, and
        those beyond the ``closed_logs`` most recent have empty logs.
        """

        def snap() -> list[ConnectionInfo]:
            live = [
                c.info() for c in self._conns.values() if include_closed or not c.session.closed
            ]
            if not include_closed or not self._retired:
                return live
            return sorted([*self._retired.values(), *live], key=lambda i: i.id)

        return self._call(snap)

    def connection(self, conn: ConnectionInfo | int) -> ConnectionInfo:
        """A fresh snapshot of one connection.

        Raises:
            KeyError: no such connection, or one closed so long ago it was forgotten.
        """
        cid = _cid(conn)

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

    # ------------------------------------------------------------------ trading stream (S40)

    def publish_trade_update(self, data: Mapping[str, Any], conn: ConnSelector = None) -> int:
        """S40: send ``{"stream":"trade_updates","data":data}`` to every authenticated
        account-stream connection listening to ``trade_updates``; returns how many."""
        payload = dict(data)

        def run() -> int:
            n = 0
            for c in self._select(conn, authenticated=True):
                if isinstance(c.session, TradingSession) and c.session.publish(payload):
                    c.pump()
                    n += 1
            return n

        return self._call(run)


def _cid(conn: ConnectionInfo | int) -> int:
    return conn.id if isinstance(conn, ConnectionInfo) else conn
