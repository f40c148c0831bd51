"""The bus from the command line: ``bus-demo``, ``gateway`` and ``stream --nats``."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
from typing import Any

import pytest

from rxalpaca.bus import BusClient
from rxalpaca.testing import DEFAULT_KEY, DEFAULT_SECRET, AlpacaStreamServer
from rxalpaca.testing.nats_server import NatsServer
from tests._subprocess import child_env, python_command
from tests.conftest import TIMING_FACTOR
from tests.integration.test_client_semantics import quote

pytestmark = pytest.mark.timeout(120)


def test_bus_demo_runs_two_consumers_on_one_connection() -> None:
    out = subprocess.run(
        python_command("-m", "rxalpaca", "bus-demo", "--duration", "3"),
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
        env=child_env(),
    ).stdout
    seen: dict[str, set[str]] = {"consumer 1": set(), "consumer 2": set()}
    for line in out.splitlines():
        m = re.match(r"\[(consumer \d)\] Quote\(symbol='(\w+)'", line)
        if m:
            seen[m.group(1)].add(m.group(2))
    # Overlapping halves of the market, each consumer only its own.
    assert seen["consumer 1"] and seen["consumer 1"] <= {"AAPL", "MSFT", "NVDA", "AMZN", "GOOGL"}
    assert seen["consumer 2"] and seen["consumer 2"] <= {"NVDA", "AMZN", "GOOGL", "META", "TSLA"}
    assert "one Alpaca connection" in out


def test_the_gateway_command_serves_a_bus_client(
    alpaca_server: AlpacaStreamServer, nats_server: NatsServer
) -> None:
    env = {"APCA_API_KEY_ID": DEFAULT_KEY, "APCA_API_SECRET_KEY": DEFAULT_SECRET}
    command = ["gateway", "--nats", nats_server.url, "--url", alpaca_server.base_url]
    gw = subprocess.Popen(
        python_command("-m", "rxalpaca", *command, "--prefix", "cli"),
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(_base_env(), **env),
    )
    try:
        assert gw.stdout is not None
        assert "serving iex on cli.iex" in gw.stdout.readline()
        got = threading.Event()
        seen: list[Any] = []

        def on(q: Any) -> None:
            seen.append(q)
            got.set()

        with BusClient(nats_server.url, "iex", prefix="cli") as client:
            client.quotes("AAPL").subscribe(on)
            alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}}, timeout=10 * TIMING_FACTOR)
            alpaca_server.publish([quote("AAPL", 5)])
            assert got.wait(10 * TIMING_FACTOR)
        assert seen[0].bid_price == 6.0
        gw.send_signal(signal.SIGINT)  # Ctrl-C: a clean stop (and the child's coverage saved)
        out, _ = gw.communicate(timeout=20 * TIMING_FACTOR)
        assert gw.returncode == 0, out
    finally:
        if gw.poll() is None:
            gw.kill()
            gw.wait(10)
        if gw.stdout is not None:
            gw.stdout.close()


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("APCA_")}
