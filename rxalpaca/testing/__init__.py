"""``rxalpaca.testing``: a real Alpaca-protocol server on loopback, for tests and demos.

* :class:`AlpacaStreamServer` — the market-data stream server (S1-S40 of
  ``alpaca-stream-protocol.md`` §12) with scripting and fault injection; its
  options grouped in :class:`ServerConfig` (:class:`AuthConfig`,
  :class:`ProtocolConfig`, :class:`DeliveryConfig`, :class:`LogConfig`,
  :class:`StreamsConfig`). The package :mod:`rxalpaca.testing.server` holds its parts.
* Historical bars over REST on the same port (``server.rest_url``):
  ``/v2/stocks/bars`` and ``/v1beta3/crypto/us/bars``, from the bars the server sent.
* :class:`Market` / :class:`MarketConfig` — a deterministic synthetic market.
* :mod:`rxalpaca.testing.wire` — the server's own plain encoder.
* pytest fixtures ``alpaca_server`` and ``alpaca_server_factory``
  (``pytest_plugins = ["rxalpaca.testing.pytest_plugin"]``).

Example::

    from rxalpaca.testing import AlpacaStreamServer, MarketConfig

    with AlpacaStreamServer(market=MarketConfig(symbols=["AAPL", "MSFT"], rate=2000)) as srv:
        print(srv.url("iex"))   # connect with DEFAULT_KEY / DEFAULT_SECRET
"""

from __future__ import annotations

from .market import Market, MarketConfig
from .server import (
    DEFAULT_KEY,
    DEFAULT_SECRET,
    DEFAULT_TOKEN,
    Account,
    AlpacaStreamServer,
    AuthConfig,
    ConnectionInfo,
    DeliveryConfig,
    Fault,
    LogConfig,
    MarketHandle,
    ProtocolConfig,
    SentRecord,
    ServerConfig,
    StreamsConfig,
)
from .wire import Encoding

__all__ = [
    "DEFAULT_KEY",
    "DEFAULT_SECRET",
    "DEFAULT_TOKEN",
    "Account",
    "AlpacaStreamServer",
    "AuthConfig",
    "ConnectionInfo",
    "DeliveryConfig",
    "Encoding",
    "Fault",
    "LogConfig",
    "Market",
    "MarketConfig",
    "MarketHandle",
    "ProtocolConfig",
    "SentRecord",
    "ServerConfig",
    "StreamsConfig",
]
