"""The test server: :class:`AlpacaStreamServer` and its parts.

============================  ==========================================================
module                        owns
============================  ==========================================================
:mod:`.stream_server`         the public class: options, addresses, inspection, waits
:mod:`.core`                  the loop thread, the HTTP upgrade (S1, S6), each
                              connection's life and what closed ones retain
:mod:`.connection`            the I/O shell of one connection: its writer, aborts
:mod:`.session`               one market-data connection's protocol, sans I/O (S2-S31)
:mod:`.trading`               the account stream ``/stream``, sans I/O (S40)
:mod:`.outbox`                the bounded outbound queue and the slow-client rule (S37)
:mod:`.directory`             accounts, tokens, session slots and ghosts (S6, S14, S15)
:mod:`.feeds`                 ``publish``, the synthetic market (:class:`MarketHandle`),
                              FAKEPACA (S29-S33)
:mod:`.faults`                fault injection (S34, S36, S38, S39)
:mod:`.config`                the option records and :class:`Account`
:mod:`.records`               :class:`ConnectionInfo`, :class:`SentRecord`
============================  ==========================================================
"""

from __future__ import annotations

from .config import (
    DEFAULT_KEY,
    DEFAULT_SECRET,
    DEFAULT_TOKEN,
    Account,
    AuthConfig,
    DeliveryConfig,
    LogConfig,
    ProtocolConfig,
    ServerConfig,
    StreamsConfig,
)
from .faults import Fault
from .feeds import MarketHandle
from .records import ConnectionInfo, SentRecord
from .stream_server import AlpacaStreamServer

__all__ = [
    "DEFAULT_KEY",
    "DEFAULT_SECRET",
    "DEFAULT_TOKEN",
    "Account",
    "AlpacaStreamServer",
    "AuthConfig",
    "ConnectionInfo",
    "DeliveryConfig",
    "Fault",
    "LogConfig",
    "MarketHandle",
    "ProtocolConfig",
    "SentRecord",
    "ServerConfig",
    "StreamsConfig",
]
