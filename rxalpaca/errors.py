"""The exception tree of rxalpaca: every error the package raises or publishes.

Every error the server can report (``alpaca-stream-protocol.md`` §5) has its own
class, and each class says whether it ends the connection for good (``fatal``),
whether reconnecting may help (``retryable``) and how much longer than usual to
wait before trying again (``backoff_factor``; 406 waits longer because the old
session may hold the slot for a while, §2.5). All of them are importable from
``rxalpaca`` as well; ``tests/test_errors.py`` checks that this drawing is the
class tree.

::

    RxAlpacaError
    ├── ConfigurationError            bad arguments (unknown feed, bad symbol, async observer …)
    ├── ClientClosedError             the client was closed; nothing more will come
    ├── ProtocolViolation             an illegal move we asked of the state machine (our bug)
    ├── ConnectionLostError           the socket went away (network error, close frame) — retryable
    │   ├── ReplyTimeout              the auth reply or a subscription ack did not come in time
    │   ├── KeepaliveTimeout          a ping went unanswered: the link is dead (half-open)
    │   ├── SilenceTimeout            no market data for silence_timeout while subscribed
    │   ├── RemoteProtocolError       the server sent a control message its state does not allow
    │   └── BusDisconnected           a bus client lost NATS or its gateway (retried by NATS)
    ├── StreamError                   the server sent {"T":"error","code":N}
    │   ├── InvalidSyntax             400
    │   ├── NotAuthenticated          401  fatal
    │   ├── AuthFailed                402  fatal
    │   ├── AlreadyAuthenticated      403  harmless
    │   ├── AuthTimeout               404  retryable
    │   ├── SymbolLimitExceeded       405  reaches the rejected symbols' observers only
    │   ├── ConnectionLimitExceeded   406  retryable, longer back-off
    │   ├── SlowClient                407  retryable
    │   ├── V2NotEnabled              408  fatal (obsolete)
    │   ├── InsufficientSubscription  409  fatal
    │   ├── InvalidSubscribeAction    410  fatal
    │   ├── InsufficientScope         411  fatal
    │   ├── MsgpackRequired           412  fatal
    │   ├── StarNotAllowed            413  reaches the rejected symbols' observers only
    │   └── InternalServerError       500  retryable
    ├── SubscriptionRejected          wraps a 405/413/400 for the observers of the rejected symbols
    ├── SubscriptionMismatch          the server's ack differs from what we asked (the ack wins)
    ├── FrameError                    a frame (or a message in it) could not be decoded
    ├── UnknownMessage                a message type this version does not know (kept whole)
    ├── HandlerError                  a user's observer raised; the original is ``__cause__``
    ├── BusMessageError               a message on the bus could not be used (skipped)
    ├── BufferOverflow                a full ``bounded_buffer`` that may neither wait nor drop
    ├── RecordingError                not a readable recording (not one, wrong version, corrupt)
    │   └── RecordingTruncated        a recording cut off mid-record: read up to its last whole one
    └── BackfillError                 fetching a gap's bars over REST failed (on ``errors``)

``ConfigurationError`` is raised by the call that got the bad argument, and
``ProtocolViolation`` by the state machine (a bug of ours). A stream ends
(``on_error``) with ``ClientClosedError``, a fatal error, ``SubscriptionRejected``
(the refused symbols' streams only) or ``BufferOverflow``. What the server or the
socket causes, and ``HandlerError``, is published on ``client.errors``; nothing
transient is ever raised into a market stream.

Errors the server causes are kept apart from errors we cause, as in h11: a stray
message from the server (``RemoteProtocolError``) is a transient fault — logged,
published, the socket dropped and the session rebuilt — while an illegal move of our
own (``ProtocolViolation``) is a bug and is raised.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, Protocol

__all__ = [
    "AlreadyAuthenticated",
    "AuthFailed",
    "AuthTimeout",
    "BackfillError",
    "BufferOverflow",
    "BusDisconnected",
    "BusMessageError",
    "ClientClosedError",
    "ConfigurationError",
    "ConnectionLimitExceeded",
    "ConnectionLostError",
    "FrameError",
    "HandlerError",
    "InsufficientScope",
    "InsufficientSubscription",
    "InternalServerError",
    "InvalidSubscribeAction",
    "InvalidSyntax",
    "KeepaliveTimeout",
    "MsgpackRequired",
    "NotAuthenticated",
    "ProtocolViolation",
    "RecordingError",
    "RecordingTruncated",
    "RemoteProtocolError",
    "ReplyTimeout",
    "RxAlpacaError",
    "SilenceTimeout",
    "SlowClient",
    "StarNotAllowed",
    "StreamError",
    "SubscriptionMismatch",
    "SubscriptionRejected",
    "SymbolLimitExceeded",
    "UnknownMessage",
    "V2NotEnabled",
    "error_for_code",
]


class RxAlpacaError(Exception):
    """Base class of every error rxalpaca raises or publishes."""

    #: Ends the connection for good: no reconnect can fix it.
    fatal: ClassVar[bool] = False
    #: Reconnecting (after a back-off) may succeed.
    retryable: ClassVar[bool] = False
    #: Multiplies the retry policy's delay (406 waits longer).
    backoff_factor: ClassVar[float] = 1.0
    #: A refusal of a subscribe that one symbol of it can cause (400, 405, 413): a
    #: combined request is retried in halves so only the culprits are refused.
    per_symbol: ClassVar[bool] = False


class ConfigurationError(RxAlpacaError, ValueError):
    """A bad argument, raised at once by the call that got it.

    The constructor (an unknown feed), ``quotes(...)`` and the like (a malformed
    symbol) and ``subscribe`` (an ``async def`` observer) raise it before anything
    is sent. It is a ``ValueError`` too.
    """

    fatal = True


class ClientClosedError(RxAlpacaError):
    """The client is closed; subscribe on a new one."""

    fatal = True


class ProtocolViolation(RxAlpacaError):
    """We asked the connection state machine for a move its state does not allow (a bug).

    The state machine's state is unchanged when this is raised.
    """

    def __init__(self, state: str, event: str) -> None:
        super().__init__(f"event {event!r} is not allowed in state {state!r}")
        self.state = state
        self.event = event


class ConnectionLostError(RxAlpacaError):
    """The socket closed or failed. Transient: the client reconnects."""

    retryable = True


class ReplyTimeout(ConnectionLostError):
    """The server did not answer in time (the auth reply, a subscription ack).

    A lost or corrupted control frame would otherwise leave the client waiting
    forever; the client drops the socket instead, and the reconnect replays every
    live subscription on a fresh session.
    """


class SilenceTimeout(ConnectionLostError):
    """No market data arrived for ``silence_timeout`` while subscribed (opt-in).

    A server can keep a session up and acknowledge requests while sending nothing
    (§6): the client drops the socket and reconnects, replaying every subscription.
    """


class KeepaliveTimeout(ConnectionLostError):
    """A ping went unanswered, and nothing else arrived, within the pong deadline.

    The TCP connection may still look open (a half-open link: a NAT or proxy dropped
    it, a cable was pulled), but nothing crosses it; the client drops the socket and
    reconnects instead of waiting forever (§2.4, §6 "Keep-alive").
    """


class RemoteProtocolError(ConnectionLostError):
    """The server sent a control message its session state does not allow.

    For example a subscription ack before authentication, or a second greeting. A
    confused or restarting server is a transient fault: the client logs it, publishes
    it on ``errors``, drops the socket and reconnects (replaying every subscription).
    Errors of our own making stay :class:`ProtocolViolation`.
    """

    def __init__(self, state: str, event: str) -> None:
        super().__init__(f"server sent {event!r} in state {state!r}")
        self.state = state
        self.event = event


class StreamError(RxAlpacaError):
    """An error message sent by the server: ``{"T":"error","code":N,"msg":"..."}`` (§5)."""

    code: ClassVar[int] = 0
    #: The documented message text for this code.
    default_msg: ClassVar[str] = ""

    def __init__(self, msg: str | None = None, code: int | None = None) -> None:
        self.msg = msg if msg is not None else self.default_msg
        self.server_code = code if code is not None else self.code
        super().__init__(f"[{self.server_code}] {self.msg}")


class InvalidSyntax(StreamError):
    """400: the message did not follow the spec (or a symbol had an invalid format)."""

    code = 400
    default_msg = "invalid syntax"
    per_symbol = True


class NotAuthenticated(StreamError):
    """401: subscribe before authentication. Our bug if it ever happens, so fatal."""

    code = 401
    default_msg = "not authenticated"
    fatal = True


class AuthFailed(StreamError):
    """402: wrong credentials."""

    code = 402
    default_msg = "auth failed"
    fatal = True


class AlreadyAuthenticated(StreamError):
    """403: auth sent again after success; nothing changed."""

    code = 403
    default_msg = "already authenticated"


class AuthTimeout(StreamError):
    """404: no successful auth within 10 s of connecting; the server closes."""

    code = 404
    default_msg = "auth timeout"
    retryable = True


class SymbolLimitExceeded(StreamError):
    """405: the subscribe would exceed the plan's symbol limit; nothing changed."""

    code = 405
    default_msg = "symbol limit exceeded"
    per_symbol = True


class ConnectionLimitExceeded(StreamError):
    """406: another session holds the connection slot. Retry, waiting longer.

    Its text names the likely causes, since the server's ("connection limit
    exceeded") does not say whose connection it is; ``msg`` keeps the server's text.
    """

    code = 406
    default_msg = "connection limit exceeded"
    retryable = True
    backoff_factor = 10.0
    #: What usually holds the slot (the plan allows one connection per endpoint).
    hint: ClassVar[str] = (
        "another connection with these keys is open to this endpoint: a second process, "
        "a notebook cell run twice, or another SDK (e.g. alpaca-py); close it — the "
        "client keeps retrying and gets in once the slot is free"
    )

    def __init__(self, msg: str | None = None, code: int | None = None) -> None:
        super().__init__(msg, code)
        self.args = (f"[{self.server_code}] {self.msg}: {self.hint}",)


class SlowClient(StreamError):
    """407: we did not read fast enough; the server closes."""

    code = 407
    default_msg = "slow client"
    retryable = True


class V2NotEnabled(StreamError):
    """408: the account lacks data v2 access (obsolete)."""

    code = 408
    default_msg = "v2 not enabled"
    fatal = True


class InsufficientSubscription(StreamError):
    """409: the feed is not in the account's plan."""

    code = 409
    default_msg = "insufficient subscription"
    fatal = True


class InvalidSubscribeAction(StreamError):
    """410: a channel the endpoint does not have."""

    code = 410
    default_msg = "invalid subscribe action for this feed"
    fatal = True


class InsufficientScope(StreamError):
    """411: the token lacks the market-data scope."""

    code = 411
    default_msg = "insufficient scope"
    fatal = True


class MsgpackRequired(StreamError):
    """412: options endpoints speak MessagePack only."""

    code = 412
    default_msg = "option messages are only available in MsgPack format"
    fatal = True


class StarNotAllowed(StreamError):
    """413: ``quotes: ["*"]`` on options."""

    code = 413
    default_msg = "star subscription is not allowed for option quotes"
    per_symbol = True


class InternalServerError(StreamError):
    """500: server-side failure; reconnect."""

    code = 500
    default_msg = "internal error"
    retryable = True


class SubscriptionRejected(RxAlpacaError):
    """The server refused to subscribe these symbols; ``__cause__`` is the server's error."""

    def __init__(self, channel: str, symbols: tuple[str, ...], cause: StreamError) -> None:
        super().__init__(f"{channel} {', '.join(symbols)} rejected: {cause}")
        self.channel = channel
        self.symbols = symbols
        self.cause = cause


class SubscriptionMismatch(RxAlpacaError):
    """The server's ack does not hold what we asked for (§3.3: the ack is the truth).

    Published on ``client.errors``; the client's view follows the ack.

    Attributes:
        missing: ``(channel, symbol)`` pairs we asked for that the ack lacks, sorted.
        unexpected: ``(channel, symbol)`` pairs the ack holds that we did not ask for, sorted.
    """

    def __init__(
        self, missing: Iterable[tuple[str, str]], unexpected: Iterable[tuple[str, str]]
    ) -> None:
        self.missing = sorted(missing)
        self.unexpected = sorted(unexpected)
        super().__init__(f"ack mismatch: missing {self.missing}, unexpected {self.unexpected}")


class FrameError(RxAlpacaError):
    """A frame or one message in it could not be decoded.

    Attributes:
        reason: what was wrong, in words.
        excerpt: the start of the offending raw bytes (truncated, never the whole frame).
        received_ns: when the frame arrived (``time.time_ns()``).
    """

    EXCERPT_LIMIT: ClassVar[int] = 200
    #: Not a market record: the router's one attribute lookup sends it to ``client.errors``.
    CHANNEL: ClassVar[str] = ""

    def __init__(self, reason: str, raw: bytes | str = b"", received_ns: int = 0) -> None:
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "replace")
        self.reason = reason
        self.excerpt = bytes(raw[: self.EXCERPT_LIMIT])
        self.truncated = len(raw) > self.EXCERPT_LIMIT
        self.received_ns = received_ns
        more = "…" if self.truncated else ""
        super().__init__(f"{reason}: {self.excerpt!r}{more}")


class _UnknownRecord(Protocol):
    """What :class:`UnknownMessage` reads of a :class:`~rxalpaca.models.Unknown`.

    Structural, so this module imports nothing of ours (``models`` raises from here).
    """

    @property
    def type(self) -> str: ...
    @property
    def raw(self) -> dict[str, Any]: ...


class BusDisconnected(ConnectionLostError):
    """A bus client lost its NATS connection, or its gateway stopped answering.

    Published on ``errors`` (and a :class:`~rxalpaca.models.Gap` follows once data
    flows again); nats-py reconnects and the demand is re-declared by itself.
    """

    retryable = True


class BusMessageError(RxAlpacaError):
    """A message on the bus could not be used: malformed, or from a newer format.

    Published on ``errors`` and skipped; the stream goes on. ``subject`` names where
    it came from and ``excerpt`` holds its first bytes.
    """

    def __init__(self, subject: str, reason: str, payload: bytes = b"") -> None:
        super().__init__(f"unusable bus message on {subject!r}: {reason}")
        self.subject = subject
        self.reason = reason
        self.excerpt = payload[:64]


class UnknownMessage(RxAlpacaError):
    """The server sent a message type this version does not know (kept in ``message``).

    Published on ``client.errors``, never raised into a stream: newer servers may add
    message types, and the rest of the frame is still delivered (§4.1).

    Attributes:
        message: the :class:`~rxalpaca.models.Unknown` record, its ``raw`` dict whole.
    """

    def __init__(self, message: _UnknownRecord) -> None:
        super().__init__(f"unknown message type {message.type!r}")
        self.message = message


class HandlerError(RxAlpacaError):
    """A user's observer raised while handling ``value``; the original is ``__cause__``."""

    def __init__(self, where: str, value: object) -> None:
        super().__init__(f"observer raised in {where}")
        self.where = where
        self.value = value


class BufferOverflow(RxAlpacaError):
    """A :func:`~rxalpaca.operators.bounded_buffer` was full and could neither wait nor drop.

    Raised (as ``on_error``, after the items already queued) with ``overflow="error"``,
    and with ``overflow="block"`` when the producer is the consumer's own thread.

    Attributes:
        size: the buffer's capacity, in items.
    """

    def __init__(self, size: int, reason: str) -> None:
        super().__init__(f"bounded buffer full ({size} items): {reason}")
        self.size = size


class RecordingError(RxAlpacaError):
    """A recording (``rxalpaca.recording``) cannot be read: not a recording, a format
    version this library does not know, or corrupt data (a bad zstd block, a record
    whose checksum does not match).

    Raised by the reader, and the end (``on_error``) of a replay, after every record
    before the bad one was delivered: nothing after it is guessed at.

    Attributes:
        path: the file.
        offset: where the problem is: a byte offset in the file for the header, else
            in the decompressed record stream (``None`` when unknown).
        records: whole records read before it.
    """

    def __init__(
        self, path: str, reason: str, *, offset: int | None = None, records: int = 0
    ) -> None:
        where = "" if offset is None else f" at offset {offset}"
        super().__init__(f"{path}: {reason}{where} (after {records} whole records)")
        self.path = path
        self.reason = reason
        self.offset = offset
        self.records = records


class RecordingTruncated(RecordingError):
    """A recording ends mid-record (the writer was killed): every whole record before
    the cut was read. Not raised: the reader's ``stopped`` and a replay's ``errors``
    carry it."""


class BackfillError(RxAlpacaError):
    """Fetching the bars of a gap from the historical REST API failed
    (``rxalpaca.backfill``): bad keys, a rejected parameter, a server error, no network.
    Published on the client's ``errors``; the hole stays and the stream goes on."""


_BY_CODE: dict[int, type[StreamError]] = {
    cls.code: cls
    for cls in (
        InvalidSyntax,
        NotAuthenticated,
        AuthFailed,
        AlreadyAuthenticated,
        AuthTimeout,
        SymbolLimitExceeded,
        ConnectionLimitExceeded,
        SlowClient,
        V2NotEnabled,
        InsufficientSubscription,
        InvalidSubscribeAction,
        InsufficientScope,
        MsgpackRequired,
        StarNotAllowed,
        InternalServerError,
    )
}


def error_for_code(code: int, msg: str | None = None) -> StreamError:
    """The typed exception for a server error code; unknown codes give a retryable StreamError."""
    cls = _BY_CODE.get(code)
    if cls is None:
        err = StreamError(msg if msg is not None else "unknown error", code)
        return err
    return cls(msg, code)
