"""The records the server hands out: what it sent, and snapshots of a connection."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..wire import Encoding

__all__ = ["ConnectionInfo", "SentRecord"]


class SentRecord(NamedTuple):
    """One data message the server sent on a connection.

    ``seq`` counts messages per (``T``, symbol) on that connection, from 1.
    """

    T: str
    symbol: str
    seq: int
    record: Mapping[str, Any]


@dataclass(frozen=True)
class ConnectionInfo:
    """A snapshot of one connection, taken in the server's loop.

    Attributes:
        id: server-assigned number, from 1, in accept order.
        path: the request path; ``feed`` its feed name (``"iex"`` …).
        encoding: ``"json"`` or ``"msgpack"`` (S2); ``compressed``: permessage-deflate in use.
        headers: the upgrade request's headers.
        key: the credentials' identity once authenticated (the key id, or
            ``"token:<token>"``); ``authenticated``: auth succeeded.
        subscriptions: channel → symbols for every subscribable channel of the endpoint.
        received: the client's messages, decoded (undecodable ones raw); the last
            ``received_log_size`` of them.
        sent_data: the last data messages sent (bounded log), ``sent_data_count`` all of them.
        closed: the socket is gone; ``close_reason`` says why.
        logs_dropped: a closed connection older than the server's ``closed_logs`` most
            recent ones: ``received`` and ``sent_data`` were released (the counts stay).
    """

    id: int
    path: str
    feed: str
    encoding: Encoding
    compressed: bool
    headers: dict[str, str]
    key: str | None
    authenticated: bool
    subscriptions: dict[str, set[str]]
    received: list[Any]
    sent_data: list[SentRecord]
    sent_data_count: int
    muted: bool
    closed: bool
    close_reason: str
    logs_dropped: bool = False
