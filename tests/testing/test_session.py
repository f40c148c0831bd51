"""The server's sans-I/O session: bytes in, frames and close/abort actions out.

No socket and no loop: every test feeds a :class:`Session` what a client would send
and reads back what the server would write (h11 / python-websockets style). The
frames are decoded with orjson / msgpack directly, never with ``rxalpaca.codec``.
"""

from __future__ import annotations

import base64
from typing import Any

import msgpack
import orjson
import pytest

from rxalpaca.feeds import ENDPOINTS
from rxalpaca.testing import Account, ServerConfig
from rxalpaca.testing.server.directory import Directory
from rxalpaca.testing.server.outbox import Out
from rxalpaca.testing.server.session import Credentials, Session
from rxalpaca.testing.wire import Encoding

KEY, SECRET = "test-key", "test-secret"
ENCODINGS = [Encoding.JSON, Encoding.MSGPACK]


def pack(obj: Any, enc: Encoding) -> bytes | str:
    """What a client sends in ``enc``: JSON text, or MessagePack bytes."""
    return orjson.dumps(obj).decode() if enc is Encoding.JSON else msgpack.packb(obj)


def decode(payload: bytes, enc: Encoding) -> Any:
    return orjson.loads(payload) if enc is Encoding.JSON else msgpack.unpackb(payload)


def drain(s: Session) -> list[Out]:
    out = []
    while (frame := s.next_frame()) is not None:
        out.append(frame)
    return out


def messages(s: Session) -> list[Any]:
    """Every message queued so far, frames flattened; a close as ``("close", code, reason)``."""
    found: list[Any] = []
    for out in drain(s):
        if out.close:
            found.append(("close", out.code, out.reason))
        else:
            found.extend(decode(out.payload, s.encoding))
    return found


def make(
    enc: Encoding = Encoding.JSON,
    feed: str = "iex",
    directory: Directory | None = None,
    cid: int = 1,
    **options: Any,
) -> Session:
    return Session(
        cid,
        ENDPOINTS[feed],
        enc,
        directory=directory if directory is not None else Directory(),
        config=ServerConfig().replace(**options),
    )


def authed(enc: Encoding = Encoding.JSON, feed: str = "iex", **options: Any) -> Session:
    s = make(enc, feed, **options)
    s.start()
    creds = s.receive(pack({"action": "auth", "key": KEY, "secret": SECRET}, enc))
    assert creds == Credentials(KEY, SECRET)
    s.authenticate(creds)
    assert messages(s) == [
        {"T": "success", "msg": "connected"},
        {"T": "success", "msg": "authenticated"},
    ]
    return s


def codes(found: list[Any]) -> list[Any]:
    return [m["code"] if isinstance(m, dict) and m.get("T") == "error" else m for m in found]


# ---------------------------------------------------------------- handshake and auth


def test_the_module_docstring_example_holds() -> None:
    s = Session(1, ENDPOINTS["iex"], Encoding.JSON, directory=Directory())
    s.start()
    assert s.next_frame().payload == b'[{"T":"success","msg":"connected"}]'  # type: ignore[union-attr]
    creds = s.receive(b'{"action":"auth","key":"test-key","secret":"test-secret"}')
    assert creds is not None
    s.authenticate(creds)
    assert s.next_frame().payload == b'[{"T":"success","msg":"authenticated"}]'  # type: ignore[union-attr]
    assert s.next_frame() is None


@pytest.mark.parametrize("enc", ENCODINGS)
def test_greeting_frame_kind_follows_the_encoding(enc: Encoding) -> None:
    s = make(enc)
    s.start()
    (out,) = drain(s)
    assert out.text is (enc is Encoding.JSON)  # S2: JSON text frames, MessagePack binary
    assert decode(out.payload, enc) == [{"T": "success", "msg": "connected"}]


@pytest.mark.parametrize("enc", ENCODINGS)
def test_auth_success_marks_the_session_and_takes_a_slot(enc: Encoding) -> None:
    d = Directory()
    s = make(enc, directory=d)
    s.start()
    s.authenticate(s.receive(pack({"action": "auth", "key": KEY, "secret": SECRET}, enc)))  # type: ignore[arg-type]
    assert s.authenticated and s.identity == KEY and s.slot == (KEY, "/v2/iex")
    assert d.holders[(KEY, "/v2/iex")] == {1}
    assert codes(messages(s))[-1] == {"T": "success", "msg": "authenticated"}


@pytest.mark.parametrize("enc", ENCODINGS)
def test_wrong_secret_is_402_and_the_socket_stays(enc: Encoding) -> None:
    s = make(enc)
    s.authenticate(Credentials(KEY, "nope"))
    assert codes(messages(s)) == [402]
    assert not s.ending and not s.authenticated


def test_close_on_auth_failure_closes_with_the_close_code() -> None:
    s = make(close_on_auth_failure=True, close_code=4000)
    s.authenticate(Credentials(KEY, "nope"))
    assert codes(messages(s)) == [402, ("close", 4000, "auth failed")]
    s.send_error(500)  # nothing more is queued once a close is pending
    assert messages(s) == []


@pytest.mark.parametrize("enc", ENCODINGS)
def test_second_auth_is_403_and_subscribe_before_auth_is_401(enc: Encoding) -> None:
    s = make(enc)
    assert s.receive(pack({"action": "subscribe", "trades": ["AAPL"]}, enc)) is None
    assert codes(messages(s)) == [401]  # S17
    s.authenticate(Credentials(KEY, SECRET))
    drain(s)
    assert s.receive(pack({"action": "auth", "key": KEY, "secret": SECRET}, enc)) is None
    assert codes(messages(s)) == [403]  # S12


@pytest.mark.parametrize("enc", ENCODINGS)
def test_undecodable_and_unknown_messages_are_400_and_logged(enc: Encoding) -> None:
    s = make(enc, lenient_decoding=False)
    s.receive(b"\xc1{[" if enc is Encoding.MSGPACK else "{nope")
    s.receive(pack([1, 2], enc))
    s.receive(pack({"action": "dance"}, enc))
    s.receive(pack({"action": "auth", "key": 1, "secret": SECRET}, enc))
    assert codes(messages(s)) == [400, 400, 400, 400]  # S18
    assert len(s.received) == 4 and s.received[1] == [1, 2]


def test_connection_limit_is_shared_through_the_directory() -> None:
    d = Directory()
    first, second = make(directory=d, cid=1), make(directory=d, cid=2)
    first.authenticate(Credentials(KEY, SECRET))
    second.authenticate(Credentials(KEY, SECRET))
    assert codes(messages(second)) == [406]  # S14
    d.release(first.slot, 1, ghost=True)  # type: ignore[arg-type]
    second.authenticate(Credentials(KEY, SECRET))
    assert codes(messages(second)) == [406]  # S15: the ghost still holds the slot
    d.release_ghost((KEY, "/v2/iex"))
    second.authenticate(Credentials(KEY, SECRET))
    assert second.authenticated


def test_free_plan_on_sip_is_409_and_closes() -> None:
    d = Directory({"free": Account("s", plan="free")})
    s = make(feed="sip", directory=d)
    s.authenticate(Credentials("free", "s"))
    assert codes(messages(s)) == [409, ("close", 1000, "insufficient subscription")]


def test_fail_next_auth_answers_with_the_queued_code_once() -> None:
    d = Directory()
    d.fail_next.append(406)
    s = make(directory=d)
    s.authenticate(Credentials(KEY, SECRET))
    s.authenticate(Credentials(KEY, SECRET))
    assert codes(messages(s)) == [406, {"T": "success", "msg": "authenticated"}]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}, Credentials(KEY, SECRET)),
        ({"apca-api-key-id": KEY}, Credentials(KEY, "")),
        ({"Authorization": "Bearer tok "}, Credentials("oauth", "tok")),
        (
            {"Authorization": "Basic " + base64.b64encode(b"k:s").decode()},
            Credentials("k", "s"),
        ),
        ({"Authorization": "Basic %%%"}, Credentials("", "")),
        ({"Authorization": "Digest x"}, None),
        ({}, None),
    ],
)
def test_header_credentials(headers: dict[str, str], expected: Credentials | None) -> None:
    s = Session(1, ENDPOINTS["iex"], Encoding.JSON, directory=Directory(), headers=headers)
    assert s.header_credentials() == expected  # S10


def test_auth_timeout_is_404_then_close_unless_authenticated() -> None:
    s = make()
    s.auth_timed_out()
    assert codes(messages(s)) == [404, ("close", 1000, "auth timeout")]  # S13
    s = make()
    s.authenticate(Credentials(KEY, SECRET))
    drain(s)
    s.auth_timed_out()
    assert messages(s) == []


@pytest.mark.parametrize("timing", ["greeting", "first_message"])
def test_json_on_a_msgpack_only_endpoint_is_412(timing: str) -> None:
    s = make(Encoding.JSON, feed="indicative", msgpack_required_timing=timing)
    s.start()
    if timing == "first_message":
        assert messages(s) == [{"T": "success", "msg": "connected"}]
        assert s.receive(pack({"action": "auth", "key": KEY, "secret": SECRET}, s.encoding)) is None
        assert codes(messages(s)) == [412, ("close", 1000, "msgpack required")]
    else:
        assert codes(messages(s))[1:] == [412, ("close", 1000, "msgpack required")]  # S3


# ---------------------------------------------------------------- subscriptions


@pytest.mark.parametrize("enc", ENCODINGS)
def test_subscribe_updates_state_and_acks_every_list(enc: Encoding) -> None:
    s = authed(enc)
    s.receive(pack({"action": "subscribe", "trades": ["AAPL"], "quotes": ["MSFT", "AAPL"]}, enc))
    (ack,) = messages(s)
    assert ack["T"] == "subscription" and ack["trades"] == ["AAPL"]
    assert ack["quotes"] == ["MSFT", "AAPL"] and ack["corrections"] == ["AAPL"]  # S25
    assert s.subs["trades"] == {"AAPL": None}
    s.receive(pack({"action": "unsubscribe", "quotes": ["MSFT"], "bars": None}, enc))
    assert messages(s)[0]["quotes"] == ["AAPL"]


@pytest.mark.parametrize(
    ("msg", "code"),
    [
        ({"trades": ["AAPL"], "orderbooks": ["AAPL"]}, 410),  # S20: not this endpoint's
        ({"trades": ["aapl"]}, 400),  # S21: symbol grammar
        ({"trades": "AAPL"}, 400),  # a list, or null
    ],
)
def test_bad_subscribe_is_an_error_and_changes_nothing(msg: dict[str, Any], code: int) -> None:
    s = authed()
    s.receive(pack({"action": "subscribe", **msg}, s.encoding))
    assert codes(messages(s)) == [code]
    assert not any(s.subs.values())


def test_free_plan_symbol_cap_is_405() -> None:
    s = make(directory=Directory({"k": Account("s", plan="free", symbol_limit=2)}))
    s.authenticate(Credentials("k", "s"))
    drain(s)
    s.receive(pack({"action": "subscribe", "trades": ["A", "B"], "quotes": ["C"]}, s.encoding))
    assert codes(messages(s)) == [405]  # S23


def test_orderbook_subscribe_sends_snapshots_after_the_ack() -> None:
    s = authed(Encoding.MSGPACK, feed="crypto/us")
    s.receive(pack({"action": "subscribe", "orderbooks": ["BTC/USD"]}, s.encoding))
    ack, snap = messages(s)
    assert ack["orderbooks"] == ["BTC/USD"]
    assert snap["T"] == "o" and snap["S"] == "BTC/USD" and snap["r"] is True  # S27
    assert s.sent_count == 1


# ---------------------------------------------------------------- data out


def trade(symbol: str, i: int) -> dict[str, Any]:
    return {"T": "t", "S": symbol, "i": i, "x": "V", "p": 1.5, "s": 1, "c": ["@"], "z": "C", "t": i}


@pytest.mark.parametrize("enc", ENCODINGS)
def test_deliver_filters_batches_and_encodes_each_record_once(enc: Encoding) -> None:
    a, b = authed(enc), authed(enc)
    a.receive(pack({"action": "subscribe", "trades": ["AAPL"]}, enc))
    b.receive(pack({"action": "subscribe", "trades": ["*"]}, enc))
    drain(a), drain(b)
    recs = [trade("AAPL", 1), trade("MSFT", 2), trade("AAPL", 3)]
    cache: dict[str, list[bytes | None]] = {}
    assert a.deliver(recs, cache, batch=2) == 2
    assert b.deliver(recs, cache, batch=2) == 3
    assert [o.data_count for o in drain(a)] == [2]
    assert [o.data_count for o in drain(b)] == [2, 1]  # S30
    assert all(item is not None for item in cache[enc])
    assert [(r.symbol, r.seq) for r in a.sent] == [("AAPL", 1), ("AAPL", 2)]


def test_muted_sessions_get_no_data() -> None:
    s = authed()
    s.receive(pack({"action": "subscribe", "trades": ["*"]}, s.encoding))
    drain(s)
    s.muted = True  # S36
    assert s.deliver([trade("AAPL", 1)], {}, 1) == 0 and s.next_frame() is None


def test_lag_after_unsubscribe_lets_a_few_messages_through() -> None:
    s = authed(lag_messages=2)
    s.receive(pack({"action": "subscribe", "trades": ["AAPL"]}, s.encoding))
    s.receive(pack({"action": "unsubscribe", "trades": ["AAPL"]}, s.encoding))
    drain(s)
    assert s.deliver([trade("AAPL", i) for i in range(5)], {}, 10) == 2  # S28


# ---------------------------------------------------------------- outbox, faults, the end


def test_an_overflowing_outbox_becomes_a_407_abort() -> None:
    s = authed(Encoding.MSGPACK, max_buffer_messages=3)
    s.receive(pack({"action": "subscribe", "trades": ["*"]}, s.encoding))
    s.deliver([trade("AAPL", i) for i in range(10)], {}, 1)
    abort = s.take_abort()
    assert abort is not None and abort.reason == "slow client" and abort.grace > 0  # S37
    assert decode(abort.last_words, s.encoding) == [
        {"T": "error", "code": 407, "msg": "slow client"}
    ]
    assert s.next_frame() is None and s.take_abort() is None  # the backlog is gone
    assert s.close_reason == "slow client" and s.ending


def test_drop_is_an_abort_without_last_words() -> None:
    s = authed()
    s.close_after_flush(1000, "bye")
    s.drop()  # S38: even with a close pending
    abort = s.take_abort()
    assert abort is not None and abort.reason == "dropped" and abort.last_words == b""


def test_corrupt_and_split_apply_to_the_next_non_empty_frame() -> None:
    s = authed()
    whole = b'[{"T":"success","msg":"x"}]'
    s.corrupt_next = True
    s.enqueue(whole)
    assert s.next_frame().payload == whole[: len(whole) // 2]  # type: ignore[union-attr]
    s.split_next = 3
    s.enqueue(b"")
    s.enqueue(whole)
    empty, split = drain(s)
    assert empty.split == 0 and split.split == 3
    assert b"".join(split.fragments()) == whole and len(split.fragments()) == 3


@pytest.mark.parametrize(("clean", "reason"), [(True, "client closed"), (False, "lost")])
def test_connection_lost_reason(clean: bool, reason: str) -> None:
    s = authed()
    s.connection_lost(clean=clean)
    info = s.info()
    assert info.closed and info.close_reason == reason and info.authenticated
