"""NATS not there yet: a consumer or a gateway started before its NATS server.

Containers start in any order, so each side must say, within a bounded time, that it
cannot reach NATS (with the address, never the credentials), keep retrying, and serve
as soon as NATS is up, with nobody doing anything. Real nats-server, started late on a
port chosen up front.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from typing import Any

import pytest

from rxalpaca import ConnectionState, errors
from rxalpaca.bus import BusClient, Gateway, Retention
from rxalpaca.bus._loop import connect_backoff, redact, server_list
from rxalpaca.testing import DEFAULT_KEY, DEFAULT_SECRET, AlpacaStreamServer
from rxalpaca.testing.nats_server import NatsServer
from rxalpaca.testing.nats_server import _free_ports as free_ports
from tests._secret_guard import assert_no_secret, register_secret
from tests._subprocess import child_env, python_command
from tests.conftest import TIMING_FACTOR
from tests.integration.conftest import FAST_RETRY, Collector
from tests.integration.test_client_semantics import quote

from .conftest import States

S = ConnectionState
pytestmark = pytest.mark.timeout(90)

PASSWORD = "late-s3cret-pw"


def free_port() -> int:
    return free_ports(1)[0]


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
        assert "ConnectionRefusedError" in client.health()["nats_error"]
        assert_no_secret(err, client, client.health(), states.seen)
        with nats_on(port):
            gw = gateway(f"nats://127.0.0.1:{port}", alpaca_server, "late").start()
            states.wait(lambda seen: seen[-1] is S.AUTHENTICATED, timeout=15)
            alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}})
            alpaca_server.publish([quote("AAPL", 1)])
            got.wait_for(1, timeout=10 * TIMING_FACTOR)
            assert got.errors == []
            # Waiting for NATS, then for a gateway, then streaming.
            assert states.seen[:3] == [S.IDLE, S.CONNECTING, S.RECONNECTING]
            assert states.seen[-2:] == [S.CONNECTING, S.AUTHENTICATED]
            assert client.health()["nats_error"] is None
            client.close()
            gw.close()
    finally:
        client.close()
        if gw is not None:
            gw.close()


def test_closing_a_client_still_waiting_for_nats_returns_at_once() -> None:
    ports = free_ports(2)  # a cluster: said once both nodes were tried
    client: BusClient[Any, Any, Any, Any, Any] = BusClient(
        [f"nats://127.0.0.1:{p}" for p in ports], "iex", prefix="never", lease=2.0
    )
    states, errs = States(client), Errors(client)
    client.quotes("AAPL").subscribe(lambda _: None)
    err = errs.wait(lambda e: isinstance(e, errors.BusDisconnected))
    assert all(f"nats://127.0.0.1:{p}" in str(err) for p in ports), err
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
        assert f"127.0.0.1:{port}" in gw.health()["gateway"]["nats_error"]
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


class Said(logging.Handler):
    """Sets an event when a record of ``rxalpaca.bus`` contains ``text``."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.WARNING)
        self.text, self.event, self.lines = text, threading.Event(), list[str]()

    def emit(self, record: logging.LogRecord) -> None:
        line = record.getMessage()
        self.lines.append(line)
        if self.text in line:
            self.event.set()


def test_a_gateway_whose_late_nats_cannot_hold_its_stream_says_so_and_keeps_trying(
    alpaca_server: AlpacaStreamServer,
) -> None:
    port = free_port()
    gw = Gateway(
        f"nats://127.0.0.1:{port}", "iex", url=alpaca_server.base_url, key=DEFAULT_KEY,
        secret=DEFAULT_SECRET, retention=Retention(storage="memory"),
    )  # fmt: skip
    said = Said("cannot set up on NATS")
    log = logging.getLogger("rxalpaca.bus")
    log.addHandler(said)
    try:
        gw.start()  # NATS is not there: returns, trying on
        with NatsServer(port, jetstream=False):  # no JetStream: the stream cannot be made
            assert said.event.wait(10 * TIMING_FACTOR), said.lines
            assert "cannot set up on NATS" in gw.health()["gateway"]["nats_error"]
            gw.close()
    finally:
        log.removeHandler(said)
        gw.close()


def test_server_lists_and_messages_never_carry_credentials() -> None:
    servers = ["nats://desk:pw-1@n1:4222", "tls://tok-2@n2:4222", "n3:4222"]
    assert server_list(servers) == "nats://n1:4222, tls://n2:4222, nats://n3:4222"
    kwargs = {"servers": servers, "password": "pw-3", "token": "tok-4"}
    text = redact("pw-1 tok-2 pw-3 tok-4 desk", kwargs)
    assert text == "*** *** *** *** desk"  # the user name is no secret


def test_connect_backoff_doubles_to_two_seconds_with_jitter() -> None:
    for attempt, cap in [(0, 0.1), (1, 0.2), (3, 0.8), (5, 2.0), (40, 2.0)]:
        waits = {connect_backoff(attempt) for _ in range(20)}
        assert all(cap / 2 <= w <= cap for w in waits) and len(waits) > 1


def test_the_gateway_command_started_before_nats_says_so_then_serves(
    alpaca_server: AlpacaStreamServer, collector: Callable[[], Collector]
) -> None:
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith("APCA_")}
    keys = {"APCA_API_KEY_ID": DEFAULT_KEY, "APCA_API_SECRET_KEY": DEFAULT_SECRET}
    url = f"nats://127.0.0.1:{port}"
    command = ["gateway", "--nats", url, "--url", alpaca_server.base_url, "--prefix", "latecli"]
    gw = subprocess.Popen(
        python_command("-m", "rxalpaca", *command),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(base, **keys),
    )
    try:
        assert gw.stdout is not None and gw.stderr is not None
        # Said on stderr (the log) before start() returns; then it says it waits.
        assert f"cannot reach NATS at {url}" in gw.stderr.readline()
        assert "serving iex on latecli.iex.* once NATS answers" in gw.stdout.readline()
        with NatsServer(port, jetstream=False) as nats:
            client: BusClient[Any, Any, Any, Any, Any]
            with BusClient(nats.url, "iex", prefix="latecli", lease=2.0) as client:
                got = collector()
                client.quotes("AAPL").subscribe(got)
                alpaca_server.wait_for_subscriptions(
                    {"quotes": {"AAPL"}}, timeout=15 * TIMING_FACTOR
                )
                alpaca_server.publish([quote("AAPL", 5)])
                got.wait_for(1, timeout=10 * TIMING_FACTOR)
            gw.send_signal(signal.SIGINT)  # Ctrl-C: a clean stop (the child's coverage saved)
            out, err = gw.communicate(timeout=20 * TIMING_FACTOR)
        assert gw.returncode == 0, out + err
        assert "reached NATS" in err, err
    finally:
        if gw.poll() is None:
            gw.kill()
            gw.wait(10)
        for stream in (gw.stdout, gw.stderr):
            if stream is not None:
                stream.close()
