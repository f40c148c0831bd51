"""``client.gaps``: a lost connection that comes back publishes the hole it left."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from rxalpaca import ConnectionState, StreamClient
from rxalpaca.models import Gap
from rxalpaca.testing import AlpacaStreamServer

from .conftest import Collector
from .test_client_semantics import quote, states, wait_state

pytestmark = pytest.mark.timeout(60)


def test_a_dropped_connection_publishes_one_gap_with_its_bounds(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
) -> None:
    client = make_client(alpaca_server)
    seen, cond = states(client)
    gaps: list[Gap] = []
    got_gap = threading.Event()

    def on_gap(g: Gap) -> None:
        gaps.append(g)
        got_gap.set()

    client.gaps.subscribe(on_gap)
    got = collector()
    client.quotes("AAPL", "MSFT").subscribe(got)
    alpaca_server.wait_for_subscriptions({"quotes": {"AAPL", "MSFT"}})
    alpaca_server.publish([quote("AAPL")])
    got.wait_for(1)
    last_before = got.items[-1].received_ns
    alpaca_server.drop()
    assert got_gap.wait(10), "no gap after the connection was dropped"
    wait_state(seen, cond, lambda s: s.count(ConnectionState.AUTHENTICATED) >= 2)
    [gap] = gaps
    assert gap.feed == "iex" and gap.reason == "reconnect"
    assert gap.channels == ("quotes",) and gap.symbols == ("AAPL", "MSFT")
    assert gap.last_before_ns == last_before
    assert gap.first_after_ns is not None and gap.first_after_ns > last_before
    # Data after the hole is later than its end.
    alpaca_server.wait_for_subscriptions({"quotes": {"AAPL", "MSFT"}})
    alpaca_server.publish([quote("MSFT")])
    got.wait_for(2)
    assert got.items[-1].received_ns >= gap.first_after_ns


def test_no_gap_without_subscriptions_and_gaps_complete_on_close(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
) -> None:
    client = make_client(alpaca_server)
    seen, cond = states(client)
    gaps: list[Gap] = []
    done = threading.Event()
    client.gaps.subscribe(gaps.append, on_completed=done.set)
    client.connect()
    wait_state(seen, cond, lambda s: ConnectionState.AUTHENTICATED in s)
    alpaca_server.drop()
    wait_state(seen, cond, lambda s: s.count(ConnectionState.AUTHENTICATED) >= 2)
    client.close()
    assert done.is_set()
    assert gaps == []  # nothing was subscribed: no data could be missing
