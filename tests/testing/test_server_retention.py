"""What the server retains over a long run with reconnects is bounded (issue #9, item 13).

Every connection logs the client's messages (``received``) and the data it was sent
(``sent_data``). Those logs used to be kept for every connection ever accepted, closed
ones included (226 MB after 100 s at 3,000 msg/s with reconnects). Now only the
``closed_logs`` most recently closed connections keep their logs, older ones keep a
summary (counts, subscriptions, close reason), and at most ``closed_connections``
closed connections are listed at all.
"""

from __future__ import annotations

from typing import Any

import pytest

from rxalpaca.testing import AlpacaStreamServer

from .conftest import PeerFactory

T0 = 1_700_000_000_000_000_000


def trade(sym: str, i: int) -> dict[str, Any]:
    return {"T": "t", "S": sym, "i": i, "x": "V", "p": 100.5, "s": 10, "c": ["@"], "z": "C",
            "t": T0 + i}  # fmt: skip


def churn(server: AlpacaStreamServer, connect: PeerFactory, n: int, per_conn: int) -> None:
    """``n`` connections, one after another (JSON and MessagePack in turn): log in,
    subscribe, get ``per_conn`` trades, close."""
    for k in range(n):
        peer = connect(server.url("iex"), msgpack_mode=k % 2 == 1)
        peer.login()
        peer.subscribe(trades=["AAPL"])
        info = server.wait_for_subscriptions({"trades": {"AAPL"}})
        server.publish([trade("AAPL", k * per_conn + i) for i in range(per_conn)], conn=info,
                       batch=per_conn)  # fmt: skip
        assert [m["i"] for m in peer.recv()] == [k * per_conn + i for i in range(per_conn)]
        peer.close()
        server.wait_for_closed(info)


def logged(server: AlpacaStreamServer) -> int:
    """Log entries the server still holds, over every connection it lists."""
    return sum(len(c.sent_data) + len(c.received) for c in server.connections())


def test_closed_connections_keep_their_logs_for_a_few_only(connect: PeerFactory) -> None:
    """Default options: 20 reconnects keep the logs of the last 2 closed connections."""
    with AlpacaStreamServer(test_stream=False) as server:
        churn(server, connect, 20, per_conn=50)
        conns = server.connections()
        assert [c.id for c in conns] == list(range(1, 21))  # all still listed ...
        kept = [c for c in conns if not c.logs_dropped]
        assert [c.id for c in kept] == [19, 20]  # ... the newest 2 with their logs
        for c in kept:
            assert len(c.sent_data) == c.sent_data_count == 50
            assert [m["action"] for m in c.received] == ["auth", "subscribe"]
        for c in conns[:18]:  # the older ones: a summary, the counts kept
            assert c.closed and c.sent_data == [] and c.received == []
            assert c.sent_data_count == 50 and c.subscriptions["trades"] == {"AAPL"}
        assert logged(server) == 2 * (50 + 2)
        assert server.connection(1).logs_dropped
        # What holds the memory: live connection objects only for the newest closed ones.
        assert len(server._conns) == 2


def test_retention_bounds_are_configurable(connect: PeerFactory) -> None:
    with AlpacaStreamServer(test_stream=False, closed_logs=2, closed_connections=5,
                            sent_log_size=10, received_log_size=1) as server:  # fmt: skip
        churn(server, connect, 12, per_conn=30)
        live = connect(server.url("iex"))
        live.login()
        live.subscribe(trades=["AAPL"])
        info = server.wait_for_subscriptions({"trades": {"AAPL"}})
        server.publish([trade("AAPL", i) for i in range(30)], conn=info, batch=30)
        assert len(live.recv()) == 30
        conns = server.connections()
        assert [c.id for c in conns] == [8, 9, 10, 11, 12, 13]  # 5 closed + the open one
        assert [c.id for c in conns if not c.logs_dropped] == [11, 12, 13]
        for c in conns:
            assert c.sent_data_count == 30
            assert len(c.sent_data) == (0 if c.logs_dropped else 10)  # the newest 10
            assert len(c.received) == (0 if c.logs_dropped else 1)
        assert [r.record["i"] for r in conns[-1].sent_data] == list(range(20, 30))
        assert server.connections(include_closed=False) == [server.connection(13)]
        assert logged(server) == 3 * (10 + 1)
        assert len(server._conns) == 3 and len(server._retired) == 3
        # A forgotten connection is not found; a retired one still is.
        assert server.connection(8).logs_dropped
        with pytest.raises(KeyError):
            server.connection(1)


def test_closed_logs_none_keeps_every_log(connect: PeerFactory) -> None:
    """For a test that audits every connection of a run (the chaos suite does)."""
    with AlpacaStreamServer(test_stream=False, closed_logs=None) as server:
        churn(server, connect, 12, per_conn=5)
        conns = server.connections()
        assert len(conns) == 12 and not any(c.logs_dropped for c in conns)
        assert all(len(c.sent_data) == 5 for c in conns)
