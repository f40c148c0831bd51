"""A raising ``errors``/``state``/``gaps`` observer is logged and the others go on;
the typed streams the other suites leave out reach the server."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from rxalpaca import StreamClient
from rxalpaca.errors import HandlerError
from rxalpaca.testing import AlpacaStreamServer
from tests.conftest import TIMING_FACTOR
from tests.integration.test_client_semantics import quote

WAIT = 10 * TIMING_FACTOR


def _boom(_: object) -> None:
    raise RuntimeError("observer bug")


def test_a_raising_errors_observer_is_logged_and_the_stream_goes_on(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = make_client(alpaca_server)
    errors: list[Exception] = []
    quotes: list[Any] = []
    got = threading.Event()
    gaps: list[Any] = []
    errored = threading.Event()
    gapped = threading.Event()

    # The raising observers come first: a bare Rx subject stops at the first observer
    # that raises, so each one must be isolated for the ones after it to get the item.
    def on_error(e: Exception) -> None:
        errors.append(e)
        errored.set()

    def on_gap(g: Any) -> None:
        gaps.append(g)
        gapped.set()

    client.errors.subscribe(_boom)
    client.errors.subscribe(on_error)
    client.gaps.subscribe(_boom)
    client.gaps.subscribe(on_gap)
    client.state.subscribe(_boom)  # raises on every state, the current one included
    states: list[Any] = []
    client.state.subscribe(states.append)

    def on_quote(q: Any) -> None:
        quotes.append(q)
        got.set()

    client.quotes("AAPL").subscribe(on_quote)
    client.connect()
    alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}}, timeout=WAIT)
    alpaca_server.send_raw(b"\x00not a frame")  # a bad frame: on errors
    assert errored.wait(WAIT), "the second errors observer saw nothing"
    alpaca_server.drop()  # a lost connection: a gap when it is back
    assert gapped.wait(WAIT), "the second gaps observer saw nothing"
    alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}}, timeout=WAIT)
    alpaca_server.publish([quote("AAPL", 1)])
    assert got.wait(WAIT)
    assert quotes[0].bid_price == 2.0
    assert [s.value for s in states][:4] == [
        "idle",
        "connecting",
        "authenticating",
        "authenticated",
    ]
    logged = {r.getMessage() for r in caplog.records}
    assert "an errors observer raised" in logged
    assert "a state observer raised" in logged
    assert "a gaps observer raised" in logged
    # Counted, not republished on errors (an errors observer would loop).
    assert client.metrics.handler_errors >= 3
    assert not [e for e in errors if isinstance(e, HandlerError)]


def test_lulds_and_imbalances_subscribe_upstream(
    alpaca_server: AlpacaStreamServer, make_client: Callable[..., StreamClient]
) -> None:
    client = make_client(alpaca_server)
    client.lulds("AAPL").subscribe(lambda _: None)
    client.imbalances("MSFT").subscribe(lambda _: None)
    client.connect()
    msg = alpaca_server.wait_for_received(
        lambda m: isinstance(m, dict) and m.get("action") == "subscribe" and "lulds" in m,
        timeout=WAIT,
    )
    assert "AAPL" in msg["lulds"]
    alpaca_server.wait_for_subscriptions({"lulds": {"AAPL"}}, timeout=WAIT)
