"""pytest fixtures for :class:`~rxalpaca.testing.AlpacaStreamServer`.

Load with ``pytest_plugins = ["rxalpaca.testing.pytest_plugin"]`` in a root conftest.

* ``alpaca_server`` — a started server with default options, stopped after the test.
* ``alpaca_server_factory`` — ``alpaca_server_factory(**options)`` starts a server
  with the given constructor options; every server it made is stopped after the test.

Example::

    def test_greeting(alpaca_server):
        ws = websocket.create_connection(alpaca_server.url("iex"))
        assert ws.recv() == '[{"T":"success","msg":"connected"}]'
        ws.close()
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .server import AlpacaStreamServer

__all__ = ["alpaca_server", "alpaca_server_factory"]

ServerFactory = Callable[..., AlpacaStreamServer]


@pytest.fixture
def alpaca_server_factory() -> Iterator[ServerFactory]:
    """Start servers with custom options; all of them are stopped after the test."""
    servers: list[AlpacaStreamServer] = []

    def make(**options: Any) -> AlpacaStreamServer:
        server = AlpacaStreamServer(**options).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def alpaca_server() -> Iterator[AlpacaStreamServer]:
    """A started server with default options (test stream on, default account)."""
    with AlpacaStreamServer() as server:
        yield server
