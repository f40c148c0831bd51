"""Fixtures for the bus: a real nats-server, a gateway on the embedded Alpaca server, clients.

Tests share one nats-server per session and keep apart by subject prefix (each test
gets its own), which is exactly how two deployments would share one NATS.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rxalpaca import ConnectionState
from rxalpaca.bus import BusClient, Gateway
from rxalpaca.testing import DEFAULT_KEY, DEFAULT_SECRET, AlpacaStreamServer
from rxalpaca.testing.nats_server import NatsServer
from tests.conftest import TIMING_FACTOR
from tests.integration.conftest import FAST_RETRY, Collector

__all__ = ["Bus", "Collector", "States", "collector"]


@pytest.fixture
def collector() -> Callable[[], Collector]:
    return Collector


_prefixes = itertools.count()


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    with NatsServer() as server:
        yield server


@pytest.fixture
def prefix() -> str:
    return f"t{next(_prefixes)}"


class Bus:
    """A gateway and its clients for one test; everything closed at teardown."""

    def __init__(self, nats: NatsServer, alpaca: AlpacaStreamServer, prefix: str) -> None:
        self.nats = nats
        self.alpaca = alpaca
        self.prefix = prefix
        self.gateways: list[Gateway] = []
        self.clients: list[BusClient[Any, Any, Any, Any, Any]] = []

    def gateway(self, feed: str = "iex", **kw: Any) -> Gateway:
        kw.setdefault("key", DEFAULT_KEY)
        kw.setdefault("secret", DEFAULT_SECRET)
        kw.setdefault("retry", FAST_RETRY)
        kw.setdefault("ping_interval", None)
        kw.setdefault("heartbeat", 0.2)
        gw = Gateway(self.nats.url, feed, url=self.alpaca.base_url, prefix=self.prefix, **kw)
        self.gateways.append(gw)
        return gw.start()

    def client(self, feed: str = "iex", **kw: Any) -> BusClient[Any, Any, Any, Any, Any]:
        kw.setdefault("lease", 2.0)
        c: BusClient[Any, Any, Any, Any, Any] = BusClient(
            self.nats.url, feed, prefix=self.prefix, **kw
        )
        self.clients.append(c)
        return c

    def close(self) -> None:
        for c in self.clients:
            c.close()
        for g in self.gateways:
            g.close()


@pytest.fixture
def bus(nats_server: NatsServer, alpaca_server: AlpacaStreamServer, prefix: str) -> Iterator[Bus]:
    b = Bus(nats_server, alpaca_server, prefix)
    yield b
    b.close()


class States:
    """Every state a client went through, with a way to wait for a pattern."""

    def __init__(self, client: BusClient[Any, Any, Any, Any, Any]) -> None:
        self.seen: list[ConnectionState] = []
        self._cond = threading.Condition()
        client.state.subscribe(self._on)

    def _on(self, s: ConnectionState) -> None:
        with self._cond:
            self.seen.append(s)
            self._cond.notify_all()

    def wait(self, pred: Callable[[list[ConnectionState]], bool], timeout: float = 10.0) -> None:
        with self._cond:
            ok = self._cond.wait_for(lambda: pred(self.seen), timeout * TIMING_FACTOR)
        assert ok, f"states so far: {self.seen}"

    def count(self, s: ConnectionState) -> int:
        with self._cond:
            return self.seen.count(s)
