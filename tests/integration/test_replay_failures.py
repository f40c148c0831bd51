"""Replays of sessions that ended badly, or carried what the client does not know."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import rxalpaca
from rxalpaca import ConnectionState, StreamClient
from rxalpaca.errors import AuthFailed, UnknownMessage
from rxalpaca.testing import AlpacaStreamServer
from tests.conftest import TIMING_FACTOR

from .test_client_semantics import quote

pytestmark = pytest.mark.timeout(60)
WAIT = 10 * TIMING_FACTOR


def test_a_recorded_auth_failure_fails_the_replay_the_same_way(
    tmp_path: Path,
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
) -> None:
    path = tmp_path / "refused.rxa"
    client = make_client(alpaca_server, secret="wrong-secret")
    live_states: list[ConnectionState] = []
    client.state.subscribe(live_states.append)
    client.record(path)
    client.quotes("AAPL").subscribe(lambda _: None, on_error=lambda _: None)
    client.connect()
    with pytest.raises(AuthFailed):
        client.wait(WAIT)
    client.close()

    r = rxalpaca.replay(path)
    errors: list[Exception] = []
    ended: list[Exception] = []
    states: list[ConnectionState] = []
    r.errors.subscribe(errors.append)
    r.state.subscribe(states.append)
    r.quotes("AAPL").subscribe(lambda _: None, on_error=ended.append)
    r.run()  # a replay does not raise: the observers and errors have the failure
    assert any(isinstance(e, AuthFailed) for e in errors), errors
    assert len(ended) == 1 and isinstance(ended[0], AuthFailed)
    assert states == live_states, (states, live_states)  # FAILED included


def test_an_unknown_message_recorded_is_on_the_replays_errors_and_data_goes_on(
    tmp_path: Path, alpaca_server: AlpacaStreamServer, make_client: Callable[..., StreamClient]
) -> None:
    path = tmp_path / "unknown.rxa"
    client = make_client(alpaca_server, encoding="json")
    got = threading.Event()
    client.record(path)
    client.quotes("AAPL").subscribe(lambda _: got.set())
    client.connect()
    alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}}, timeout=WAIT)
    alpaca_server.send_raw('[{"T":"zz","S":"AAPL"}]')
    alpaca_server.publish([quote("AAPL", 1)])
    assert got.wait(WAIT)
    client.close()

    r = rxalpaca.replay(path)
    errors: list[Exception] = []
    quotes: list[Any] = []
    r.errors.subscribe(errors.append)
    r.quotes("AAPL").subscribe(quotes.append)
    r.run()
    assert [type(e) for e in errors] == [UnknownMessage], errors
    assert [q.bid_price for q in quotes] == [2.0]
    assert r.metrics.unknown_messages == 1
