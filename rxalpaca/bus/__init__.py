"""Fan one Alpaca connection out to many processes and machines over NATS.

A :class:`Gateway` holds the one Alpaca connection per feed and publishes every
record on a per-(feed, channel, symbol) subject; a :class:`BusClient` has the
:class:`~rxalpaca.client.StreamClient` API and declares its demand to the gateway
as a lease. ``docs/scale-out.md`` has the whole design. Needs the ``nats`` extra
(``pip install 'rxalpaca[nats]'``).
"""

from __future__ import annotations

from ._loop import NatsOptions
from .client import BusClient
from .gateway import Gateway, GatewayMetrics, Retention
from .subjects import DEFAULT_PREFIX, Subjects, token, untoken

__all__ = [
    "DEFAULT_PREFIX",
    "BusClient",
    "Gateway",
    "GatewayMetrics",
    "NatsOptions",
    "Retention",
    "Subjects",
    "token",
    "untoken",
]
