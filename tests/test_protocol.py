"""The connection state machine: every transition, every code (bytes-free, thread-free)."""

from __future__ import annotations

import pytest

from rxalpaca import errors
from rxalpaca.models import ErrorMessage, SubscriptionMessage, SuccessMessage
from rxalpaca.protocol import (
    TRANSITIONS,
    ConnectionState,
    Event,
    Fail,
    PublishError,
    Reconnect,
    Send,
    Session,
    SubscriptionAck,
    SubscriptionFailed,
    state_diagram,
)

S = ConnectionState
CONNECTED = SuccessMessage(msg="connected")
AUTHENTICATED = SuccessMessage(msg="authenticated")
ACK = SubscriptionMessage(trades=("AAPL",))


def session(**kw: object) -> Session:
    return Session("key", "very-secret", **kw)  # type: ignore[arg-type]


def authenticated() -> Session:
    s = session()
    s.connect()
    s.receive(CONNECTED)
    s.receive(AUTHENTICATED)
    return s


def test_happy_path_sends_auth_after_greeting() -> None:
    s = session()
    assert s.state is S.IDLE
    assert s.connect() == []
    # mypy keeps the narrowing to IDLE from two lines up across connect().
    assert s.state is S.CONNECTING  # type: ignore[comparison-overlap]
    effects = s.receive(CONNECTED)
    assert s.state is S.AUTHENTICATING
    assert effects == [Send({"action": "auth", "key": "key", "secret": "very-secret"})]
    assert s.receive(AUTHENTICATED) == []
    assert s.state is S.AUTHENTICATED
    assert list(s.history) == [S.CONNECTING, S.AUTHENTICATING, S.AUTHENTICATED]


def test_header_auth_sends_nothing_and_accepts_unprompted_authenticated() -> None:
    s = session(header_auth=True)
    s.connect()
    assert s.receive(CONNECTED) == []
    assert s.receive(AUTHENTICATED) == []
    assert s.state is S.AUTHENTICATED


def test_ack_is_handed_to_the_book() -> None:
    s = authenticated()
    ack = SubscriptionMessage(trades=("AAPL",))
    assert s.receive(ack) == [SubscriptionAck(ack)]
    assert s.state is S.AUTHENTICATED


@pytest.mark.parametrize("code", [401, 402, 408, 409, 410, 411, 412])
def test_fatal_codes_fail(code: int) -> None:
    s = authenticated() if code == 410 else session()
    if code != 410:
        s.connect()
        s.receive(CONNECTED)
    [effect] = s.receive(ErrorMessage(code=code, msg="x"))
    assert isinstance(effect, Fail)
    assert effect.error.code == code  # type: ignore[attr-defined]
    assert effect.error.fatal


@pytest.mark.parametrize("code", [404, 406, 407, 500])
def test_retryable_codes_reconnect(code: int) -> None:
    s = session()
    s.connect()
    s.receive(CONNECTED)
    [effect] = s.receive(ErrorMessage(code=code, msg="x"))
    assert isinstance(effect, Reconnect)
    assert effect.error.retryable and not effect.error.fatal


def test_406_backs_off_longer() -> None:
    assert errors.ConnectionLimitExceeded.backoff_factor > errors.SlowClient.backoff_factor


@pytest.mark.parametrize("code", [400, 405, 413])
def test_subscription_errors_after_auth_fail_the_request_only(code: int) -> None:
    s = authenticated()
    [effect] = s.receive(ErrorMessage(code=code, msg="x"))
    assert isinstance(effect, SubscriptionFailed)
    assert effect.error.code == code
    assert s.state is S.AUTHENTICATED


def test_400_before_auth_starts_over() -> None:
    s = session()
    s.connect()
    s.receive(CONNECTED)
    [effect] = s.receive(ErrorMessage(code=400, msg="invalid syntax"))
    assert isinstance(effect, Reconnect)


def test_403_is_published_and_changes_nothing() -> None:
    s = authenticated()
    [effect] = s.receive(ErrorMessage(code=403, msg="already authenticated"))
    assert isinstance(effect, PublishError)
    assert s.state is S.AUTHENTICATED


def test_unknown_code_is_retryable_stream_error() -> None:
    err = errors.error_for_code(599, "weird")
    assert type(err) is errors.StreamError
    assert err.server_code == 599 and err.msg == "weird"


def test_lost_then_reconnect_path() -> None:
    s = authenticated()
    s.lost()
    assert s.state is S.RECONNECTING
    s.connect()
    s.receive(CONNECTED)
    s.receive(AUTHENTICATED)
    assert list(s.history)[-4:] == [
        S.RECONNECTING,
        S.CONNECTING,
        S.AUTHENTICATING,
        S.AUTHENTICATED,
    ]


def test_illegal_local_move_raises_and_changes_nothing() -> None:
    s = session()
    with pytest.raises(errors.ProtocolViolation) as info:
        s.lost()  # our own move: never connected, so nothing to lose
    assert info.value.state == "idle" and info.value.event == "lost"
    assert s.state is S.IDLE
    assert list(s.history) == []


def test_stray_server_message_reconnects_and_changes_nothing() -> None:
    """The server's protocol errors are transient (h11: remote, not local)."""
    s = session()
    s.connect()
    before = list(s.history)
    [effect] = s.receive(ACK)  # an ack before the greeting and auth
    assert isinstance(effect, Reconnect)
    assert isinstance(effect.error, errors.RemoteProtocolError)
    assert effect.error.retryable and not effect.error.fatal
    assert effect.error.state == "connecting" and effect.error.event == "ack"
    assert s.state is S.CONNECTING
    assert list(s.history) == before


@pytest.mark.parametrize("message", ["greeting", "authenticated"])
def test_repeated_handshake_message_after_authenticated_reconnects(message: str) -> None:
    s = authenticated()
    [effect] = s.receive(CONNECTED if message == "greeting" else AUTHENTICATED)
    assert isinstance(effect, Reconnect)
    assert isinstance(effect.error, errors.RemoteProtocolError)
    assert s.state is S.AUTHENTICATED


@pytest.mark.parametrize("terminal", [S.CLOSED, S.FAILED])
def test_terminal_states_admit_no_connect(terminal: ConnectionState) -> None:
    s = session()
    s.close() if terminal is S.CLOSED else s.fail()
    assert s.state.terminal
    with pytest.raises(errors.ProtocolViolation):
        s.connect()


@pytest.mark.parametrize(
    ("state", "event"),
    [(st, ev) for st in ConnectionState for ev in Event],
)
def test_transition_table_is_total_or_raises(state: ConnectionState, event: Event) -> None:
    """Every (state, event) either moves as the table says or raises, leaving state alone."""
    s = session()
    s.state = state
    moves = TRANSITIONS[state]
    if event in moves:
        s._move(event)
        assert s.state is moves[event]
    else:
        with pytest.raises(errors.ProtocolViolation):
            s._move(event)
        assert s.state is state


def test_secret_is_not_in_reprs() -> None:
    s = session()
    s.connect()
    [send] = s.receive(CONNECTED)
    assert "very-secret" not in repr(s)
    assert "very-secret" not in repr(send)
    assert "very-secret" not in str([send])


def test_state_diagram_names_every_state() -> None:
    text = state_diagram()
    for st in ConnectionState:
        assert st.value in text


@pytest.mark.parametrize(
    "cls",
    [
        c
        for c in vars(errors).values()
        if isinstance(c, type) and issubclass(c, errors.StreamError) and c is not errors.StreamError
    ],
)
def test_every_code_maps_to_its_class(cls: type[errors.StreamError]) -> None:
    err = errors.error_for_code(cls.code)
    assert type(err) is cls
    assert err.msg == cls.default_msg
    assert not (err.fatal and err.retryable)


def test_history_is_bounded() -> None:
    s = authenticated()
    for _ in range(1000):
        s.lost()
        s.connect()
    assert len(s.history) == s.history.maxlen


# ---- reply deadlines: the core says when, the shell waits (python-websockets' model)


def timed(reply_timeout: float = 5.0) -> Session:
    return Session("key", "very-secret", reply_timeout=reply_timeout)


def test_no_deadline_without_a_reply_timeout() -> None:
    s = session()
    s.connect(100.0)
    assert s.next_deadline() is None
    assert s.tick(10_000.0) == []


def test_the_auth_reply_is_due_after_connecting() -> None:
    s = timed(5.0)
    s.connect(100.0)
    assert s.next_deadline() == 105.0
    assert s.tick(104.9) == []
    [effect] = s.tick(105.0)
    assert isinstance(effect, Reconnect) and isinstance(effect.error, errors.ReplyTimeout)
    assert "not authenticated" in str(effect.error)
    assert s.next_deadline() is None and s.tick(200.0) == []  # fires once
    assert s.state is S.CONNECTING  # the shell drops the socket; the table is untouched


def test_authentication_in_time_clears_the_deadline() -> None:
    s = timed(5.0)
    s.connect(100.0)
    s.receive(CONNECTED)
    s.receive(AUTHENTICATED)
    assert s.next_deadline() is None
    assert s.tick(1_000.0) == []


def test_an_ack_is_due_after_each_request_and_answered_by_the_next_reply() -> None:
    s = timed(2.0)
    s.connect(0.0)
    s.receive(CONNECTED)
    s.receive(AUTHENTICATED)
    s.request_sent(10.0, "unsubscribe")
    assert s.next_deadline() == 12.0
    s.receive(ACK)
    assert s.next_deadline() is None and s.tick(50.0) == []
    s.request_sent(20.0)
    s.receive(ErrorMessage(code=405, msg="symbol limit exceeded"))  # an error answers it too
    assert s.next_deadline() is None
    s.request_sent(30.0, "unsubscribe")
    [effect] = s.tick(32.5)
    assert isinstance(effect.error, errors.ReplyTimeout)  # type: ignore[union-attr]
    assert "no reply to unsubscribe in 2.0 s" in str(effect.error)  # type: ignore[union-attr]


def test_a_lost_connection_forgets_its_deadlines() -> None:
    s = timed(1.0)
    s.connect(0.0)
    s.lost()
    assert s.next_deadline() is None and s.tick(100.0) == []
