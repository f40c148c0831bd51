"""The server's options as a few frozen records, and the accounts it knows.

Every constructor option of :class:`~rxalpaca.testing.AlpacaStreamServer` belongs to
one record, grouped by what it governs:

* :class:`AuthConfig` — who gets in and how long a slot is held (S6, S11-S16).
* :class:`ProtocolConfig` — choices the protocol leaves open when answering a
  client (close codes, 412 timing, lenient decoding, ack contents; S2-S3, S23-S28, S39).
* :class:`DeliveryConfig` — how data leaves: frames, timestamps, the per-connection
  buffer bound (S30, S31, S35, S37) and the socket's write/close timings.
* :class:`LogConfig` — what the server remembers of each connection.
* :class:`StreamsConfig` — the built-in streams: FAKEPACA on ``/v2/test`` (S33) and
  the account stream ``/stream`` (S40).

:class:`ServerConfig` bundles the five. The flat keyword arguments the server has
always taken (``connection_limit=2``, ``batch_size=10`` …) are the records' field
names: :meth:`ServerConfig.replace` routes each to its record, so
``AlpacaStreamServer(connection_limit=2)`` and
``AlpacaStreamServer(auth=AuthConfig(connection_limit=2))`` are the same server.

Example::

    >>> cfg = ServerConfig().replace(connection_limit=2, batch_size=10)
    >>> cfg.auth.connection_limit, cfg.delivery.batch_size
    (2, 10)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, TypedDict

from ..wire import TimestampWidth

__all__ = [
    "DEFAULT_KEY",
    "DEFAULT_SECRET",
    "DEFAULT_TOKEN",
    "Account",
    "AuthConfig",
    "DeliveryConfig",
    "LogConfig",
    "ProtocolConfig",
    "ServerConfig",
    "ServerOptions",
    "StreamsConfig",
]

DEFAULT_KEY = "test-key"
DEFAULT_SECRET = "test-secret"
#: OAuth / Broker access token accepted by the default server (``key: "oauth"`` or
#: ``"access_token"``, or ``Authorization: Bearer``).
DEFAULT_TOKEN = "test-token"

#: Feeds the free plan does not include (S16).
_PAID_FEEDS = frozenset({"sip", "opra"})


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


@dataclass(frozen=True)
class AuthConfig:
    """Who gets in, and what happens to those who do not.

    Attributes:
        auth_timeout: seconds to authenticate before ``404 auth timeout`` and close (S13).
        close_on_auth_failure: close after ``402`` (S11; default keep the socket open).
        connection_limit: sessions per (credentials, endpoint), ``None`` = unlimited (S14).
        close_on_connection_limit: close after ``406`` (default keep open).
        ghost_session_seconds: keep the slot of a connection lost without a close
            handshake (client vanished, or ``drop()``) this long (S15; off).
        close_on_insufficient_subscription: close after ``409`` (S16; default yes).
        rate_limit: ``(n, window_s)``: HTTP 429 for the n+1-th upgrade of one key (or
            address) within the window (S6; off).
    """

    auth_timeout: float = 10.0
    close_on_auth_failure: bool = False
    connection_limit: int | None = 1
    close_on_connection_limit: bool = False
    ghost_session_seconds: float | None = None
    close_on_insufficient_subscription: bool = True
    rate_limit: tuple[int, float] | None = None


@dataclass(frozen=True)
class ProtocolConfig:
    """How a session answers, where ``alpaca-stream-protocol.md`` leaves a choice open.

    Attributes:
        msgpack_required_timing: send ``412`` right after the greeting or on the
            client's first message (S3).
        close_code: WebSocket close code for protocol-driven closes (S2a).
        close_on_internal_error: close after an injected ``500`` (S39).
        lenient_decoding: also accept client messages in the other encoding (S2).
        imbalances_in_ack: list ``imbalances`` in stock acks (S24).
        symbol_limit_channels: channels counted by the symbol cap (S23).
        lag_messages: after an unsubscribe, keep delivering up to this many messages of
            the removed symbols (S28; 0 = off).
    """

    msgpack_required_timing: Literal["greeting", "first_message"] = "greeting"
    close_code: int = 1000
    close_on_internal_error: bool = True
    lenient_decoding: bool = True
    imbalances_in_ack: bool = True
    symbol_limit_channels: Sequence[str] = ("trades", "quotes")
    lag_messages: int = 0

    def __post_init__(self) -> None:
        # Accept any sequence (a list from a caller) but keep the record hashable.
        object.__setattr__(self, "symbol_limit_channels", tuple(self.symbol_limit_channels))


@dataclass(frozen=True)
class DeliveryConfig:
    """How data leaves the server.

    Attributes:
        batch_size: data messages per frame for ``publish`` (S30; at least 1).
        timestamp_width: MessagePack timestamp width, ``"auto"``, 4, 8, 12 or
            ``"cycle"`` (rotate 4/8/12; S31).
        max_buffer_messages / max_buffer_bytes: per-connection outbound buffer; on
            overflow ``407 slow client`` (best effort) and the socket is dropped (S37).
        ping_interval: send server pings every N s (S35; off). Pings are always answered.
        write_limit: bytes the transport may buffer before a send waits (websockets'
            high-water mark).
        close_timeout: seconds to wait for the client's close frame.
    """

    batch_size: int = 1
    timestamp_width: TimestampWidth | Literal["cycle"] = "auto"
    max_buffer_messages: int | None = 100_000
    max_buffer_bytes: int | None = 64 * 1024 * 1024
    ping_interval: float | None = None
    write_limit: int = 2**15
    close_timeout: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "batch_size", max(1, self.batch_size))


@dataclass(frozen=True)
class LogConfig:
    """What the server remembers of each connection (bounded, for long runs).

    Attributes:
        sent_log_size: how many data messages each connection's ``sent_data`` keeps
            (0: only count them, the cheapest for benchmarks).
        received_log_size: how many client messages each connection's ``received`` keeps.
        closed_logs: how many of the most recently closed connections keep their logs
            (``received``, ``sent_data``); older ones keep their summary only
            (``logs_dropped``). ``None`` keeps every log, for a test that audits every
            connection of a run. Retained memory is then bounded by (open connections
            + ``closed_logs``) x the log sizes, however many reconnects a run has.
        closed_connections: how many closed connections ``connections()`` still
            lists, oldest forgotten first (``None``: all of them).
    """

    sent_log_size: int = 100_000
    received_log_size: int = 100_000
    closed_logs: int | None = 2
    closed_connections: int | None = 1000


@dataclass(frozen=True)
class StreamsConfig:
    """The streams the server produces by itself.

    Attributes:
        test_stream: run the FAKEPACA generator for ``/v2/test`` (S33);
            ``test_stream_speed`` scales its cadence (quote every 5 s / speed …).
        trading_stream: also serve the account stream ``/stream`` (S40,
            ``trade_updates``); ``trading_binary_frames``: its JSON goes in binary
            frames, as on the paper endpoint.
    """

    test_stream: bool = True
    test_stream_speed: float = 1.0
    trading_stream: bool = True
    trading_binary_frames: bool = True


_GROUPS = ("auth", "protocol", "delivery", "logs", "streams")


@dataclass(frozen=True)
class ServerConfig:
    """Every option of a server: one record per concern (see the module docstring)."""

    auth: AuthConfig = field(default_factory=AuthConfig)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    logs: LogConfig = field(default_factory=LogConfig)
    streams: StreamsConfig = field(default_factory=StreamsConfig)

    def replace(self, **options: Any) -> ServerConfig:
        """A copy with flat options (``connection_limit=2`` …) set in their records.

        Raises:
            TypeError: an option no record has (the message names the valid ones).
        """
        changes: dict[str, dict[str, Any]] = {}
        for name, value in options.items():
            group = OPTION_GROUP.get(name)
            if group is None:
                raise TypeError(
                    f"{name!r} is not a server option; the options are {', '.join(OPTION_GROUP)}"
                )
            changes.setdefault(group, {})[name] = value
        records = {g: replace(getattr(self, g), **kw) for g, kw in changes.items()}
        return replace(self, **records)


def _option_groups() -> dict[str, str]:
    groups: dict[str, str] = {}
    defaults = ServerConfig()
    for group in _GROUPS:
        for f in fields(getattr(defaults, group)):
            groups[f.name] = group
    return groups


#: Flat option name → the :class:`ServerConfig` field (record) it lives in.
OPTION_GROUP: Mapping[str, str] = _option_groups()


class ServerOptions(TypedDict, total=False):
    """The flat keyword options of ``AlpacaStreamServer(...)`` and ``set_options(...)``."""

    auth_timeout: float
    close_on_auth_failure: bool
    connection_limit: int | None
    close_on_connection_limit: bool
    ghost_session_seconds: float | None
    close_on_insufficient_subscription: bool
    rate_limit: tuple[int, float] | None
    msgpack_required_timing: Literal["greeting", "first_message"]
    close_code: int
    close_on_internal_error: bool
    lenient_decoding: bool
    imbalances_in_ack: bool
    symbol_limit_channels: Sequence[str]
    lag_messages: int
    batch_size: int
    timestamp_width: TimestampWidth | Literal["cycle"]
    max_buffer_messages: int | None
    max_buffer_bytes: int | None
    ping_interval: float | None
    write_limit: int
    close_timeout: float
    sent_log_size: int
    received_log_size: int
    closed_logs: int | None
    closed_connections: int | None
    test_stream: bool
    test_stream_speed: float
    trading_stream: bool
    trading_binary_frames: bool
