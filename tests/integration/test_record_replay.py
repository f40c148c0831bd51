"""Record a live session from the embedded server, replay it: observers see what they saw."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import rxalpaca
from rxalpaca import ConnectionLostError, ConnectionState, StreamClient
from rxalpaca.recording import Kind, open_recording
from rxalpaca.testing import DEFAULT_SECRET, AlpacaStreamServer
from tests.conftest import TIMING_FACTOR

from .conftest import Collector
from .test_client_semantics import quote, states, wait_state

pytestmark = pytest.mark.timeout(60)
WAIT = 10 * TIMING_FACTOR


def trade(sym: str, i: int) -> dict[str, Any]:
    return {
        "T": "t",
        "S": sym,
        "i": i,
        "x": "V",
        "p": 10.0 + i,
        "s": 1,
        "c": ["@"],
        "z": "C",
        "t": 1_700_000_000_000_000_000 + i,
    }


class Errors:
    """client.errors, waitable."""

    def __init__(self) -> None:
        self.items: list[Exception] = []
        self.cond = threading.Condition()

    def __call__(self, e: Exception) -> None:
        with self.cond:
            self.items.append(e)
            self.cond.notify_all()

    def wait_for(self, pred: Callable[[list[Exception]], bool]) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: pred(self.items), WAIT), self.items


def same_error(a: Exception, b: Exception) -> bool:
    if isinstance(a, ConnectionLostError):  # the socket's words are not recorded, the fact is
        return isinstance(b, ConnectionLostError)
    return type(a) is type(b) and str(a) == str(b)


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_a_replay_delivers_exactly_what_the_live_observers_saw(
    tmp_path: Path,
    encoding: str,
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
) -> None:
    path = tmp_path / "day.rxa"
    client = make_client(alpaca_server, encoding=encoding)
    seen, cond = states(client)
    recorder = client.record(path)
    quotes, trades, errors = Collector(), Collector(), Errors()
    client.errors.subscribe(errors)
    client.quotes("AAPL").subscribe(quotes)
    client.trades("MSFT", "AAPL").subscribe(trades)
    alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}, "trades": {"MSFT", "AAPL"}})
    alpaca_server.publish([quote("AAPL", 0), trade("MSFT", 1), quote("MSFT", 2)])
    quotes.wait_for(1, WAIT)
    trades.wait_for(1, WAIT)
    alpaca_server.split_next_frame(3)  # a fragmented message
    alpaca_server.publish([quote("AAPL", 3), trade("AAPL", 4)])
    quotes.wait_for(2, WAIT)
    alpaca_server.send_raw(b"\x00not a frame")  # a bad frame
    errors.wait_for(lambda es: len(es) >= 1)
    alpaca_server.corrupt_next_frame()  # an undecodable one
    alpaca_server.publish([quote("AAPL", 5)])
    errors.wait_for(lambda es: len(es) >= 2)
    alpaca_server.drop()  # a lost connection, and the reconnect
    wait_state(seen, cond, lambda s: s.count(ConnectionState.AUTHENTICATED) >= 2, WAIT)
    alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}, "trades": {"MSFT", "AAPL"}})
    alpaca_server.publish([quote("AAPL", 6), trade("MSFT", 7)])
    quotes.wait_for(3, WAIT)
    trades.wait_for(3, WAIT)
    client.close()
    assert recorder.dropped == 0
    live_gaps = 1  # the drop: published live and recorded

    r = rxalpaca.replay(path)
    r_quotes, r_trades, r_errors = Collector(), Collector(), Errors()
    r_states: list[ConnectionState] = []
    r_gaps: list[Any] = []
    r.state.subscribe(r_states.append)
    r.gaps.subscribe(r_gaps.append)
    r.errors.subscribe(r_errors)
    r.quotes("AAPL").subscribe(r_quotes)
    r.trades("MSFT", "AAPL").subscribe(r_trades)
    r.run()
    assert r_quotes.items == quotes.items and r_quotes.completed.is_set()
    assert r_trades.items == trades.items
    assert len(r_errors.items) == len(errors.items), (r_errors.items, errors.items)
    assert all(same_error(a, b) for a, b in zip(errors.items, r_errors.items, strict=True))
    assert len(r_gaps) == live_gaps
    assert r_states.count(ConnectionState.AUTHENTICATED) == 2
    assert r.metrics.messages_delivered == client.metrics.messages_delivered


def test_a_recording_has_the_header_the_sent_frames_and_no_secret(
    tmp_path: Path,
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
) -> None:
    path = tmp_path / "s.rxa"
    client = make_client(alpaca_server, encoding="json")
    got = Collector()
    client.quotes("AAPL").subscribe(got)
    alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}})
    # The server has the subscription; the client has its ack once a later frame came.
    alpaca_server.publish([quote("AAPL", 0)])
    got.wait_for(1, WAIT)
    recorder = client.record(path)
    alpaca_server.publish([quote("AAPL", 1)])
    got.wait_for(2, WAIT)
    recorder.close()
    assert DEFAULT_SECRET.encode() not in path.read_bytes()
    reader = open_recording(path)
    h = reader.header
    assert (h.feed, h.encoding, h.subscriptions) == ("iex", "json", {"quotes": ["AAPL"]})
    assert h.library == rxalpaca.__version__
    kinds = [e.kind for e in reader]
    assert kinds[0] is Kind.STATE and Kind.RECEIVED in kinds
    assert reader.stopped is None


def test_sent_frames_are_recorded_with_the_auth_secret_redacted(
    tmp_path: Path,
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
) -> None:
    path = tmp_path / "s.rxa"
    client = make_client(alpaca_server, encoding="json")
    recorder = client.record(path)
    client.quotes("AAPL").subscribe(Collector())
    alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}})
    recorder.close()
    sent = [
        p.encode() if isinstance(p := e.value.payload, str) else p
        for e in open_recording(path)
        if e.kind is Kind.SENT
    ]
    assert DEFAULT_SECRET.encode() not in path.read_bytes()
    assert b'"action":"auth"' in sent[0] and b'"secret":"***"' in sent[0]
    assert any(b'"subscribe"' in p and b"AAPL" in p for p in sent[1:])


def test_recording_a_closed_client_is_one_clear_error(
    tmp_path: Path,
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
) -> None:
    client = make_client(alpaca_server)
    client.close()
    with pytest.raises(rxalpaca.ClientClosedError, match="nothing more to record"):
        client.record(tmp_path / "late.rxa")
    assert not (tmp_path / "late.rxa").exists()
