"""``client.gaps``: a lost connection that comes back publishes the hole it left."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import rxalpaca
from rxalpaca import ConnectionState, StreamClient
from rxalpaca.models import Gap
from rxalpaca.testing import AlpacaStreamServer
from tests.conftest import TIMING_FACTOR

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


def test_a_drop_in_a_paced_stream_leaves_one_gap_holding_exactly_the_lost_messages(
    tmp_path: Path,
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
) -> None:
    """What the server sent on the dropped socket and the client never got lies in the
    gap, and nothing else is missing; the recording of the session replays the gap."""
    client = make_client(alpaca_server)
    recorder = client.record(tmp_path / "paced.rxa")
    gaps: list[Gap] = []
    got_gap = threading.Event()

    def on_gap(g: Gap) -> None:
        gaps.append(g)
        got_gap.set()

    client.gaps.subscribe(on_gap)
    got = collector()
    client.quotes("AAPL").subscribe(got)
    alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}})
    alpaca_server.start_market(symbols=["AAPL"], rate=1000, mix={"q": 1.0})
    got.wait_for(100, 10 * TIMING_FACTOR)
    first = alpaca_server.wait_for_authenticated(1)
    alpaca_server.drop()  # mid-stream: frames in flight are lost with the socket
    assert got_gap.wait(10 * TIMING_FACTOR), "no gap after the drop"
    second = alpaca_server.wait_for_connection(2)
    n = len(got.items)
    got.wait_for(n + 100, 10 * TIMING_FACTOR)  # data flows again
    alpaca_server.stop_market()
    [gap] = gaps
    assert gap.last_before_ns is not None and gap.first_after_ns is not None
    before = [q for q in got.items if q.received_ns <= gap.last_before_ns]
    after = [q for q in got.items if q.received_ns >= gap.first_after_ns]
    assert len(before) + len(after) == len(got.items)  # nothing arrived inside the hole

    # A quote's identity: its market timestamp (the synthetic clock never repeats) and
    # prices (prices alone do repeat in a random walk).
    def key(q: Any) -> tuple[int, float, float]:
        return (q.timestamp_ns, q.bid_price, q.ask_price)

    def sent(conn: int) -> list[tuple[int, float, float]]:
        info = alpaca_server.connection(conn)
        assert len(info.sent_data) == info.sent_data_count  # the whole log is kept
        return [
            (r.record["t"], r.record["bp"], r.record["ap"]) for r in info.sent_data if r.T == "q"
        ]

    sent_first, sent_second = sent(first.id), sent(second.id)
    # Before the gap: a prefix of what the dropped socket carried; the rest of it —
    # exactly the messages the client never got — is inside the gap.
    assert [key(q) for q in before] == sent_first[: len(before)]
    lost = sent_first[len(before) :]
    assert set(lost).isdisjoint({key(q) for q in after})
    # After the gap: everything the new socket carried, from its first message on.
    assert [key(q) for q in after] == sent_second[: len(after)]
    # The gap is recorded: a replay of the session publishes it.
    recorder.close()
    replayed: list[Gap] = []
    r = rxalpaca.replay(tmp_path / "paced.rxa")
    r.gaps.subscribe(replayed.append)
    r.run()
    assert replayed == [gap]
