"""NATS not there yet: a consumer or a gateway started before its NATS server.

Containers start in any order, so each side must say, within a bounded time, that it
cannot reach NATS (with the address, never the credentials), keep retrying, and serve
as soon as NATS is up, with nobody doing anything. Real nats-server, started late on a
port chosen up front.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest

from rxalpaca import ConnectionState, errors
from rxalpaca.bus import BusClient, Gateway
from rxalpaca.testing import DEFAULT_KEY, DEFAULT_SECRET, AlpacaStreamServer
from rxalpaca.testing.nats_server import NatsServer
from tests._secret_guard import assert_no_secret, register_secret
from tests.conftest import TIMING_FACTOR
from tests.integration.conftest import FAST_RETRY, Collector
from tests.integration.test_client_semantics import quote

from .conftest import States

S = ConnectionState
pytestmark = pytest.mark.timeout(90)

PASSWORD = "late-s3cret-pw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


class Errors:
    """Every error on a client's ``errors``, with a way to wait for one."""

    def __init__(self, client: BusClient[Any, Any, Any, Any, Any]) -> None:
        self.seen: list[Exception] = []
        self._cond = threading.Condition()
        client.errors.subscribe(self._on)

    def _on(self, e: Exception) -> None:
        with self._cond:
            self.seen.append(e)
            self._cond.notify_all()

    def wait(self, pred: Callable[[Exception], bool], timeout: float = 10.0) -> Exception:
        found: list[Exception] = []

        def match() -> bool:
            found[:] = [e for e in self.seen if pred(e)]
            return bool(found)

        with self._cond:
            ok = self._cond.wait_for(match, timeout * TIMING_FACTOR)
        assert ok, f"errors so far: {self.seen}"
        return found[0]


def gateway(url: str, alpaca: AlpacaStreamServer, prefix: str) -> Gateway:
    return Gateway(
        url, "iex", url=alpaca.base_url, key=DEFAULT_KEY, secret=DEFAULT_SECRET, prefix=prefix,
        retry=FAST_RETRY, ping_interval=None, heartbeat=0.2,
        nats_options={"user": "desk", "password": PASSWORD},
    )  # fmt: skip


def nats_on(port: int) -> NatsServer:
    return NatsServer(port, jetstream=False, args=["--user", "desk", "--pass", PASSWORD])


def test_a_client_started_before_nats_says_so_then_streams_when_nats_comes_up(
    alpaca_server: AlpacaStreamServer, collector: Callable[[], Collector]
) -> None:
    register_secret(PASSWORD)
    port = free_port()
    # The credentials in the URL: they must show nowhere (errors, state, logs, repr).
    client: BusClient[Any, Any, Any, Any, Any] = BusClient(
        f"nats://desk:{PASSWORD}@127.0.0.1:{port}", "iex", prefix="late", lease=2.0
    )
    gw: Gateway | None = None
    try:
        states, errs = States(client), Errors(client)
        got = collector()
        client.quotes("AAPL").subscribe(got)
        err = errs.wait(lambda e: isinstance(e, errors.BusDisconnected))
        assert f"127.0.0.1:{port}" in str(err) and "cannot reach NATS" in str(err)
        states.wait(lambda seen: S.RECONNECTING in seen)
        assert client.health()["nats_connected"] is False
        assert_no_secret(err, client, client.health(), states.seen)
        with nats_on(port):
            gw = gateway(f"nats://127.0.0.1:{port}", alpaca_server, "late").start()
            states.wait(lambda seen: seen[-1] is S.AUTHENTICATED, timeout=15)
            alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}})
            alpaca_server.publish([quote("AAPL", 1)])
            got.wait_for(1, timeout=10 * TIMING_FACTOR)
            assert got.errors == []
            client.close()
            gw.close()
    finally:
        client.close()
        if gw is not None:
            gw.close()


def test_closing_a_client_still_waiting_for_nats_returns_at_once() -> None:
    client: BusClient[Any, Any, Any, Any, Any] = BusClient(
        f"nats://127.0.0.1:{free_port()}", "iex", prefix="never", lease=2.0
    )
    states, errs = States(client), Errors(client)
    client.quotes("AAPL").subscribe(lambda _: None)
    errs.wait(lambda e: isinstance(e, errors.BusDisconnected))
    closer = threading.Thread(target=client.close)
    closer.start()
    closer.join(5 * TIMING_FACTOR)
    assert not closer.is_alive(), "close() hangs while NATS is unreachable"
    assert states.seen[-1] is S.CLOSED
    assert [t for t in threading.enumerate() if t.name == "rxalpaca-bus"] == []


def test_a_gateway_started_before_nats_says_so_then_serves_when_nats_comes_up(
    alpaca_server: AlpacaStreamServer,
    collector: Callable[[], Collector],
    caplog: pytest.LogCaptureFixture,
) -> None:
    register_secret(PASSWORD)
    port = free_port()
    caplog.set_level(logging.WARNING, logger="rxalpaca.bus")
    gw = gateway(f"nats://desk:{PASSWORD}@127.0.0.1:{port}", alpaca_server, "lategw")
    client: BusClient[Any, Any, Any, Any, Any] | None = None
    try:
        done = threading.Event()

        def start() -> None:
            gw.start()
            done.set()

        threading.Thread(target=start, daemon=True).start()
        # start() returns once it has said so (it does not wait for NATS).
        assert done.wait(10 * TIMING_FACTOR), "Gateway.start() waits for NATS"
        said = [r.getMessage() for r in caplog.records if "cannot reach NATS" in r.getMessage()]
        assert said and f"127.0.0.1:{port}" in said[0], caplog.text
        assert gw.health()["gateway"]["nats_connected"] is False
        assert_no_secret(gw, gw.health())
        with nats_on(port):
            client = BusClient(
                f"nats://127.0.0.1:{port}", "iex", prefix="lategw", lease=2.0,
                nats_options={"user": "desk", "password": PASSWORD},
            )  # fmt: skip
            states = States(client)
            got = collector()
            client.quotes("AAPL").subscribe(got)
            states.wait(lambda seen: seen[-1] is S.AUTHENTICATED, timeout=15)
            alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}})
            alpaca_server.publish([quote("AAPL", 1)])
            got.wait_for(1, timeout=10 * TIMING_FACTOR)
            assert gw.health()["gateway"]["nats_connected"] is True
            client.close()
            gw.close()
    finally:
        if client is not None:
            client.close()
        gw.close()


def test_a_gateway_given_wrong_nats_credentials_fails_start_clearly(
    alpaca_server: AlpacaStreamServer,
) -> None:
    with nats_on(0) as nats:
        gw = Gateway(
            nats.url, "iex", url=alpaca_server.base_url, key=DEFAULT_KEY, secret=DEFAULT_SECRET,
            nats_options={"user": "desk", "password": register_secret("wrong-pw-xyz")},
        )  # fmt: skip
        with pytest.raises(errors.ConfigurationError, match="credentials") as caught:
            gw.start()
        assert_no_secret(caught.value)
