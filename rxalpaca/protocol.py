"""The connection state machine, as pure logic (no sockets, threads, clocks or Rx).

The shell (``rxalpaca.client``) feeds it events — the socket opened, a control
message arrived, the socket was lost, the user closed — and gets back the next
state plus a list of *effects* to carry out: messages to send, errors to raise or
publish. Transitions are a table (:data:`TRANSITIONS`): an event that is not in
the table for the current state changes nothing, and, as in h11, who caused it
decides what happens. A move the shell asks for (connect, lost, close, fail) that
the table forbids is our bug and raises :class:`~rxalpaca.errors.ProtocolViolation`.
A control message from the server that its state does not allow (an ack before
authentication, a second greeting) is the server's fault and transient: it yields
``Reconnect(RemoteProtocolError)``, so the shell logs and publishes it, drops the
socket and starts a fresh session.

Section numbers refer to ``alpaca-stream-protocol.md``.

State diagram (generated from the table by :func:`state_diagram`)::

    IDLE ──connect──► CONNECTING ──greeting──► AUTHENTICATING ──authenticated──► AUTHENTICATED
      ▲                  │  ▲                        │                               │
      │                  │  └──────── connect ───────┼──── RECONNECTING ◄─── lost ────┘
      close ─► CLOSED    └──── fatal error ─► FAILED ┘
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from .errors import (
    AlreadyAuthenticated,
    ProtocolViolation,
    RemoteProtocolError,
    ReplyTimeout,
    RxAlpacaError,
    StreamError,
    error_for_code,
)
from .models import ErrorMessage, SubscriptionMessage, SuccessMessage

__all__ = [
    "TRANSITIONS",
    "ConnectionState",
    "Effect",
    "Event",
    "Fail",
    "PublishError",
    "Reconnect",
    "Send",
    "Session",
    "SubscriptionAck",
    "SubscriptionFailed",
    "state_diagram",
]


class ConnectionState(StrEnum):
    """Where a client's connection is. ``CLOSED`` and ``FAILED`` are terminal."""

    IDLE = "idle"  # created, never connected
    CONNECTING = "connecting"  # opening the socket, waiting for the greeting (§2.2)
    AUTHENTICATING = "authenticating"  # greeting seen, auth sent, waiting for the reply (§2.3)
    AUTHENTICATED = "authenticated"  # ready: subscriptions flow (§3)
    RECONNECTING = "reconnecting"  # lost a connection, backing off before the next one (§2.5)
    CLOSED = "closed"  # the user closed the client (terminal)
    FAILED = "failed"  # a fatal error ended it (terminal)

    @property
    def terminal(self) -> bool:
        """No event leaves a terminal state."""
        return self in (ConnectionState.CLOSED, ConnectionState.FAILED)


class Event(StrEnum):
    """Events the shell feeds into the :class:`Session`."""

    CONNECT = "connect"  # the shell starts opening a socket
    GREETING = "greeting"  # [{"T":"success","msg":"connected"}]
    AUTHENTICATED = "authenticated"  # [{"T":"success","msg":"authenticated"}]
    ACK = "ack"  # {"T":"subscription",...}
    SERVER_ERROR = "server_error"  # {"T":"error",...}
    LOST = "lost"  # the socket closed or failed
    CLOSE = "close"  # the user closed the client
    FAIL = "fail"  # a fatal error


_S = ConnectionState
_E = Event

#: state → event → next state. Anything missing is a protocol violation.
TRANSITIONS: Final[dict[ConnectionState, dict[Event, ConnectionState]]] = {
    _S.IDLE: {_E.CONNECT: _S.CONNECTING, _E.CLOSE: _S.CLOSED, _E.FAIL: _S.FAILED},
    _S.CONNECTING: {
        _E.GREETING: _S.AUTHENTICATING,
        # Header auth (§2.3b): "authenticated" may follow the greeting unprompted;
        # a server may also skip ahead, so accept it here too.
        _E.AUTHENTICATED: _S.AUTHENTICATED,
        _E.SERVER_ERROR: _S.CONNECTING,
        _E.LOST: _S.RECONNECTING,
        _E.CLOSE: _S.CLOSED,
        _E.FAIL: _S.FAILED,
    },
    _S.AUTHENTICATING: {
        _E.AUTHENTICATED: _S.AUTHENTICATED,
        _E.SERVER_ERROR: _S.AUTHENTICATING,
        _E.LOST: _S.RECONNECTING,
        _E.CLOSE: _S.CLOSED,
        _E.FAIL: _S.FAILED,
    },
    _S.AUTHENTICATED: {
        _E.ACK: _S.AUTHENTICATED,
        _E.SERVER_ERROR: _S.AUTHENTICATED,
        _E.LOST: _S.RECONNECTING,
        _E.CLOSE: _S.CLOSED,
        _E.FAIL: _S.FAILED,
    },
    _S.RECONNECTING: {
        _E.CONNECT: _S.CONNECTING,
        _E.LOST: _S.RECONNECTING,
        _E.CLOSE: _S.CLOSED,
        _E.FAIL: _S.FAILED,
    },
    _S.CLOSED: {_E.CLOSE: _S.CLOSED, _E.LOST: _S.CLOSED},
    _S.FAILED: {_E.CLOSE: _S.FAILED, _E.LOST: _S.FAILED, _E.FAIL: _S.FAILED},
}


# ---------------------------------------------------------------- effects


@dataclass(frozen=True, slots=True)
class Send:
    """Send this action to the server (the shell encodes it in the negotiated encoding)."""

    message: dict[str, Any]

    def __repr__(self) -> str:
        # Never show an auth secret (house rule: the secret appears in no repr).
        if self.message.get("action") == "auth":
            return "Send({'action': 'auth', 'key': ..., 'secret': '***'})"
        return f"Send({self.message!r})"


@dataclass(frozen=True, slots=True)
class Reconnect:
    """Drop this socket and connect again after a back-off (the error says how long)."""

    error: RxAlpacaError


@dataclass(frozen=True, slots=True)
class Fail:
    """Stop for good: end every observer with this error."""

    error: RxAlpacaError


@dataclass(frozen=True, slots=True)
class PublishError:
    """Publish on ``client.errors``; the stream goes on."""

    error: RxAlpacaError


@dataclass(frozen=True, slots=True)
class SubscriptionAck:
    """The server's full subscription state: hand it to the SubscriptionBook."""

    ack: SubscriptionMessage


@dataclass(frozen=True, slots=True)
class SubscriptionFailed:
    """The outstanding subscription request was refused (400, 405, 413 …)."""

    error: StreamError


Effect = Send | Reconnect | Fail | PublishError | SubscriptionAck | SubscriptionFailed


@dataclass
class Session:
    """The state machine of one client across all its connections.

    Args:
        key: API key id (or ``"oauth"`` / ``"access_token"``, §2.3).
        secret: API secret or token. Kept out of ``repr``.
        header_auth: credentials travel in the upgrade's headers; no auth message (§2.3b).
    """

    key: str
    secret: str = field(repr=False)
    header_auth: bool = False
    #: Seconds the server has to answer — the greeting and auth reply after
    #: connecting, the ack of each subscription request — or ``None`` (never late).
    reply_timeout: float | None = None
    state: ConnectionState = ConnectionState.IDLE
    #: The most recent states (bounded: a client reconnecting all day must not grow).
    history: deque[ConnectionState] = field(default_factory=lambda: deque(maxlen=64), repr=False)
    # Reply deadlines on the shell's clock (no clock here: the shell passes ``now``).
    _auth_due: float | None = field(default=None, repr=False)
    _ack_due: float | None = field(default=None, repr=False)
    _awaited: str = field(default="subscribe", repr=False)  # the action _ack_due awaits

    def _move(self, event: Event) -> ConnectionState:
        try:
            nxt = TRANSITIONS[self.state][event]
        except KeyError:
            raise ProtocolViolation(self.state.value, event.value) from None
        self.state = nxt
        self.history.append(nxt)
        return nxt

    # ---- events from the shell

    def connect(self, now: float = 0.0) -> list[Effect]:
        """The shell is opening a new socket (at ``now``: the auth reply is due later)."""
        self._move(Event.CONNECT)
        self._ack_due = None
        self._auth_due = None if self.reply_timeout is None else now + self.reply_timeout
        return []

    def lost(self) -> list[Effect]:
        """The socket is gone; the shell will back off and connect again."""
        self._move(Event.LOST)
        self._auth_due = self._ack_due = None
        return []

    def close(self) -> list[Effect]:
        """The user closed the client."""
        self._move(Event.CLOSE)
        self._auth_due = self._ack_due = None
        return []

    def fail(self) -> list[Effect]:
        """A fatal error ended the client."""
        self._move(Event.FAIL)
        self._auth_due = self._ack_due = None
        return []

    # ---- deadlines (the python-websockets model: the core says when; the shell waits)

    def request_sent(self, now: float, action: str = "subscribe") -> None:
        """A subscription request (``action``) left at ``now``; its ack or error is due.

        One request is in flight at a time (S26), so the next ack or error answers it
        and clears the deadline; a late ack can never satisfy a newer request's.
        """
        if self.reply_timeout is not None:
            self._ack_due = now + self.reply_timeout
            self._awaited = action

    def next_deadline(self) -> float | None:
        """When :meth:`tick` next has something to do, or ``None``."""
        dues = [d for d in (self._auth_due, self._ack_due) if d is not None]
        return min(dues) if dues else None

    def tick(self, now: float) -> list[Effect]:
        """Time passed: a reply overdue at ``now`` yields ``Reconnect(ReplyTimeout)``.

        A lost or corrupted control frame would otherwise leave the client waiting
        forever; dropping the socket and starting a fresh session replays everything.
        Each deadline fires at most once.
        """
        if self._auth_due is not None and now >= self._auth_due:
            self._auth_due = None
            if self.state in (ConnectionState.CONNECTING, ConnectionState.AUTHENTICATING):
                what = f"not authenticated {self.reply_timeout} s after connecting"
                return [Reconnect(ReplyTimeout(what))]
        if self._ack_due is not None and now >= self._ack_due:
            self._ack_due = None
            if self.state is ConnectionState.AUTHENTICATED:
                what = f"no reply to {self._awaited} in {self.reply_timeout} s"
                return [Reconnect(ReplyTimeout(what))]
        return []

    def receive(self, message: SuccessMessage | ErrorMessage | SubscriptionMessage) -> list[Effect]:
        """A control message arrived. Returns what to do about it.

        A message the current state does not allow leaves the state unchanged and
        returns ``[Reconnect(RemoteProtocolError)]``: the server broke the protocol,
        which is a transient fault, not a reason to give up.
        """
        try:
            return self._receive(message)
        except ProtocolViolation as illegal:
            return [Reconnect(RemoteProtocolError(illegal.state, illegal.event))]

    def _receive(
        self, message: SuccessMessage | ErrorMessage | SubscriptionMessage
    ) -> list[Effect]:
        if isinstance(message, SuccessMessage):
            if message.msg == "connected":
                return self._on_greeting()
            if message.msg == "authenticated":
                self._move(Event.AUTHENTICATED)
                self._auth_due = None
                return []
            return []  # unknown success text: nothing to do
        if isinstance(message, SubscriptionMessage):
            self._move(Event.ACK)
            self._ack_due = None
            return [SubscriptionAck(message)]
        return self._on_error(error_for_code(message.code, message.msg or None))

    def _on_greeting(self) -> list[Effect]:
        if self.state is ConnectionState.AUTHENTICATED:
            # A greeting after authentication can only be a confused server; report it.
            raise ProtocolViolation(self.state.value, Event.GREETING.value)
        self._move(Event.GREETING)
        if self.header_auth:
            return []  # the server follows with "authenticated" on its own (S10)
        return [Send({"action": "auth", "key": self.key, "secret": self.secret})]

    def _on_error(self, error: StreamError) -> list[Effect]:
        self._move(Event.SERVER_ERROR)
        if isinstance(error, AlreadyAuthenticated):
            return [PublishError(error)]  # harmless (§2.3): state unchanged
        if error.fatal:
            return [Fail(error)]
        if error.retryable:
            return [Reconnect(error)]
        if self.state is ConnectionState.AUTHENTICATED:
            # 400/405/413 after auth answer the outstanding subscription request (§3.3).
            self._ack_due = None
            return [SubscriptionFailed(error)]
        # A non-fatal, non-retryable error before auth (e.g. 400): the session
        # cannot go on as it is; start over.
        return [Reconnect(error)]


def state_diagram() -> str:
    """The transition table as Mermaid ``stateDiagram-v2`` text (for the docs)."""
    lines = ["stateDiagram-v2", "    [*] --> idle"]
    for state, moves in TRANSITIONS.items():
        for event, nxt in moves.items():
            if nxt is not state:
                lines.append(f"    {state.value} --> {nxt.value}: {event.value}")
    lines.append("    closed --> [*]")
    lines.append("    failed --> [*]")
    return "\n".join(lines)
