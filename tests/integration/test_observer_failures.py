"""A raising ``errors``/``state``/``gaps`` observer is logged and the others go on;
the typed streams the other suites leave out reach the server."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from rxalpaca import StreamClient
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

    # The raising observers come second: an Rx subject stops at the first observer
    # that raises, so the ones subscribed after it miss that item.
    def on_error(e: Exception) -> None:
        errors.append(e)
        errored.set()

    def on_gap(g: Any) -> None:
        gaps.append(g)
        gapped.set()

    client.errors.subscribe(on_error)
    client.errors.subscribe(_boom)
    client.gaps.subscribe(on_gap)
    client.gaps.subscribe(_boom)
    seen_states: list[Any] = []

    def on_state(state: Any) -> None:
        seen_states.append(state)
        if len(seen_states) > 1:  # the first is the current state, at subscribe
            raise RuntimeError("observer bug")

    client.state.subscribe(on_state)

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
    logged = {r.getMessage() for r in caplog.records}
    assert "an errors observer raised" in logged
    assert "a state observer raised" in logged
    assert "a gaps observer raised" in logged


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
