"""The account stream's sans-I/O session (S40): messages in, single-object frames out."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from rxalpaca.testing import DEFAULT_KEY, DEFAULT_SECRET, DEFAULT_TOKEN, ServerConfig
from rxalpaca.testing.server.directory import Directory
from rxalpaca.testing.server.trading import TradingSession, is_trading_path


def make(**options: Any) -> TradingSession:
    return TradingSession(1, directory=Directory(), config=ServerConfig().replace(**options))


def replies(s: TradingSession) -> list[Any]:
    found = []
    while (out := s.next_frame()) is not None:
        found.append(orjson.loads(out.payload))  # one object per frame, not an array (§9)
    return found


@pytest.mark.parametrize(
    "auth",
    [
        {"action": "auth", "key": DEFAULT_KEY, "secret": DEFAULT_SECRET},
        {"action": "authenticate", "data": {"key_id": DEFAULT_KEY, "secret_key": DEFAULT_SECRET}},
        {"action": "authenticate", "data": {"oauth_token": DEFAULT_TOKEN}},
    ],
)
def test_every_auth_spelling_is_authorized(auth: dict[str, Any]) -> None:
    s = make()
    s.receive(orjson.dumps(auth))
    assert replies(s) == [
        {"stream": "authorization", "data": {"status": "authorized", "action": "authenticate"}}
    ]
    assert s.authenticated


def test_listen_needs_auth_and_keeps_known_streams_only() -> None:
    s = make()
    s.receive(orjson.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
    assert replies(s)[0]["data"] == {"status": "unauthorized", "action": "listen"}
    s.receive(orjson.dumps({"action": "auth", "key": DEFAULT_KEY, "secret": DEFAULT_SECRET}))
    s.receive(orjson.dumps({"action": "listen", "data": {"streams": ["trade_updates", "x"]}}))
    assert replies(s)[-1] == {"stream": "listening", "data": {"streams": ["trade_updates"]}}


def test_publish_reaches_listeners_only_and_is_logged() -> None:
    s = make()
    update = {"event": "new", "order": {"symbol": "AAPL"}}
    assert not s.publish(update)
    s.receive(orjson.dumps({"action": "auth", "key": DEFAULT_KEY, "secret": DEFAULT_SECRET}))
    s.receive(orjson.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
    replies(s)
    assert s.publish(update)
    assert replies(s) == [{"stream": "trade_updates", "data": update}]
    assert [(r.T, r.symbol) for r in s.sent] == [("trade_updates", "AAPL")]


@pytest.mark.parametrize("binary", [True, False])
def test_frames_are_binary_unless_configured(binary: bool) -> None:
    s = make(trading_binary_frames=binary)
    s.receive(b"not json")
    out = s.next_frame()
    assert out is not None and out.text is not binary
    assert orjson.loads(out.payload) == {"stream": "error", "data": {"error": "invalid syntax"}}


@pytest.mark.parametrize(
    ("path", "ok"),
    [("/stream", True), ("/stream/", True), ("/stream?x=1", True), ("/v2/iex", False)],
)
def test_trading_path(path: str, ok: bool) -> None:
    assert is_trading_path(path) is ok
