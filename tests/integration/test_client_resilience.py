"""Unattended runs: faults a bot running all day meets, and what the client does about them.

Each test drives a real client against the embedded server on 127.0.0.1 (issue #9).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from rxalpaca import ConnectionState, StreamClient, errors
from rxalpaca.testing import DEFAULT_KEY, DEFAULT_SECRET, Account, AlpacaStreamServer
from tests.relay import DarkRelay

from .conftest import FAST_RETRY, Collector
from .test_client_semantics import quote, states, wait_state

S = ConnectionState
E = TypeVar("E", bound=Exception)
NS = 1_700_000_000_000_000_000
pytestmark = pytest.mark.timeout(60)


class ErrorLog:
    """Everything published on ``client.errors``, with a way to wait for a kind."""

    def __init__(self, client: StreamClient) -> None:
        self.items: list[Exception] = []
        self._cond = threading.Condition()
        client.errors.subscribe(self._on)

    def _on(self, e: Exception) -> None:
        with self._cond:
            self.items.append(e)
            self._cond.notify_all()

    def wait_for(self, kind: type[E], timeout: float = 10.0) -> E:
        with self._cond:
            ok = self._cond.wait_for(lambda: any(isinstance(e, kind) for e in self.items), timeout)
        assert ok, f"no {kind.__name__} on errors: {self.items}"
        return next(e for e in self.items if isinstance(e, kind))

    def of(self, kind: type[Exception]) -> list[Exception]:
        with self._cond:
            return [e for e in self.items if isinstance(e, kind)]


# ---------------------------------------------------------------- stray server messages


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_an_ack_before_authentication_reconnects_instead_of_failing(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
    encoding: str,
) -> None:
    client = make_client(alpaca_server, encoding=encoding)
    seen, cond = states(client)
    log = ErrorLog(client)
    alpaca_server.slow_auth(1.0)
    got = collector()
    client.quotes("AAPL").subscribe(got)
    wait_state(seen, cond, lambda s: S.AUTHENTICATING in s)
    first = alpaca_server.wait_for_connection()
    alpaca_server.send_records([{"T": "subscription", "trades": ["AAPL"], "quotes": []}], first)
    err = log.wait_for(errors.RemoteProtocolError)
    assert err.retryable and "ack" in str(err) and "authenticating" in str(err)
    alpaca_server.slow_auth(0)
    alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}})
    alpaca_server.publish([quote("AAPL", 1)])
    assert [q.bid_price for q in got.wait_for(1)] == [2.0]
    assert S.FAILED not in seen and client.current_state is S.AUTHENTICATED
    assert got.errors == [] and not got.completed.is_set()
    assert client.metrics.connects >= 2


def test_a_second_greeting_after_authentication_reconnects(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
) -> None:
    client = make_client(alpaca_server)
    seen, cond = states(client)
    log = ErrorLog(client)
    got = collector()
    client.quotes("AAPL").subscribe(got)
    first = alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}})
    alpaca_server.send_records([{"T": "success", "msg": "connected"}], first)
    log.wait_for(errors.RemoteProtocolError)
    alpaca_server.wait_for_closed(first)
    alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}})
    wait_state(seen, cond, lambda s: s.count(S.AUTHENTICATED) >= 2)
    alpaca_server.publish([quote("AAPL", 3)])
    assert [q.bid_price for q in got.wait_for(1)] == [4.0]
    assert S.FAILED not in seen and got.errors == []


# ---------------------------------------------------------------- batch rejections


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_forty_symbols_in_a_loop_with_a_limit_of_thirty(
    alpaca_server_factory: Callable[..., AlpacaStreamServer],
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
    encoding: str,
) -> None:
    """One request over the plan's limit must not refuse symbols that fit (§6, S23)."""
    server = alpaca_server_factory(accounts={"free": Account("s", plan="free", symbol_limit=30)})
    client = make_client(server, key="free", secret="s", encoding=encoding)
    symbols = [f"S{i:02d}" for i in range(40)]
    got = {s: collector() for s in symbols}
    for s in symbols:  # within the linger: they leave as one or two requests
        client.quotes(s).subscribe(got[s])

    def settled(subs: dict[str, set[str]]) -> bool:
        return len(subs.get("quotes", set())) == 30

    conn = server.wait_for_subscriptions(settled, timeout=10)
    for s in symbols:
        if s not in conn.subscriptions["quotes"]:
            assert got[s].errored.wait(5), s
    refused = [s for s in symbols if got[s].errors]
    receiving = sorted(conn.subscriptions["quotes"])
    assert len(refused) == 10 and len(receiving) == 30
    assert set(refused).isdisjoint(receiving)
    for s in refused:
        err = got[s].errors[0]
        assert isinstance(err, errors.SubscriptionRejected)
        assert err.symbols == (s,) and isinstance(err.cause, errors.SymbolLimitExceeded)
    server.publish([quote(s) for s in receiving])
    for s in receiving:
        assert len(got[s].wait_for(1)) == 1 and got[s].errors == []
    assert client.subscriptions()["quotes"] == set(receiving)
    assert client.current_state is S.AUTHENTICATED


def test_a_refused_star_on_option_quotes_leaves_the_other_contracts_subscribed(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
) -> None:
    """413 answers a whole request; only the ``*`` in it is at fault (S22)."""
    client = make_client(alpaca_server, "indicative", encoding="msgpack")
    good = ["AAPL240315C00172500", "SPY240315P00400000"]
    got = {s: collector() for s in [good[0], "*", good[1]]}
    for s, c in got.items():
        client.quotes(s).subscribe(c)
    alpaca_server.wait_for_subscriptions({"quotes": set(good)})
    assert got["*"].errored.wait(5)
    err = got["*"].errors[0]
    assert isinstance(err, errors.SubscriptionRejected) and err.symbols == ("*",)
    assert isinstance(err.cause, errors.StarNotAllowed)
    # Data follows the ack on the same socket (S26): once it arrives, the client has
    # processed the ack too, and its view of the server can be compared.
    alpaca_server.publish([_option_quote(s) for s in good])
    for s in good:
        assert len(got[s].wait_for(1)) == 1 and got[s].errors == []
    assert client.subscriptions()["quotes"] == set(good)


def _option_quote(sym: str) -> dict[str, Any]:
    return {
        "T": "q",
        "S": sym,
        "t": NS,
        "bx": "C",
        "bp": 1.0,
        "bs": 1,
        "ax": "C",
        "ap": 1.1,
        "as": 1,
        "c": "A",
    }


# ---------------------------------------------------------------- the data clock


def _churn_until(
    client: StreamClient, server: AlpacaStreamServer, stop: threading.Event, seconds: float
) -> int:
    """Change subscriptions every 0.4 s (each change acked) until ``stop`` or time is up."""
    changes = 0
    deadline = time.monotonic() + seconds
    sub = None
    while not stop.wait(0.4) and time.monotonic() < deadline:
        if sub is None:
            sub = client.quotes("MSFT").subscribe(lambda _q: None)
        else:
            sub.dispose()
            sub = None
        changes += 1
    if sub is not None:
        sub.dispose()
    return changes


def test_acks_do_not_hide_a_mute_server_from_the_silence_timeout(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
) -> None:
    """§6 "connected but mute": acks keep coming, market data does not."""
    client = make_client(alpaca_server, silence_timeout=1.0)
    seen, cond = states(client)
    got = collector()
    client.quotes("AAPL").subscribe(got)
    first = alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}})
    alpaca_server.publish([quote("AAPL")])
    got.wait_for(1)
    alpaca_server.mute(first)
    lost = threading.Event()
    client.state.subscribe(lambda s: lost.set() if s is S.RECONNECTING else None)
    changes = _churn_until(client, alpaca_server, lost, seconds=8.0)
    assert lost.is_set(), f"no reconnect after {changes} acked changes on a mute server"
    assert changes >= 2  # the acks really did keep coming meanwhile
    wait_state(seen, cond, lambda s: s.count(S.AUTHENTICATED) >= 2)
    assert client.metrics.reconnects >= 1


def test_health_tells_the_data_clock_from_the_frame_clock(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
) -> None:
    client = make_client(alpaca_server)
    got = collector()
    client.quotes("AAPL").subscribe(got)
    first = alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}})
    alpaca_server.publish([quote("AAPL")])
    got.wait_for(1)
    alpaca_server.mute(first)
    muted_at = time.monotonic()
    for _ in range(3):  # acked changes: control frames, not data
        sub = client.quotes("MSFT").subscribe(lambda _q: None)
        alpaca_server.wait_for_subscriptions({"quotes": {"AAPL", "MSFT"}})
        sub.dispose()
        alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}})
    h = client.health()
    quiet = time.monotonic() - muted_at
    assert h["last_data_age_s"] is not None and h["last_data_age_s"] >= quiet - 0.05
    assert h["last_message_age_s"] == pytest.approx(h["last_data_age_s"], abs=0.05)
    assert h["last_frame_age_s"] is not None and h["last_frame_age_s"] < h["last_data_age_s"]
    assert h["link_stale"] is None  # pings are off in these tests


# ---------------------------------------------------------------- half-open links


def _relayed_client(relay: DarkRelay, **kw: Any) -> StreamClient:
    kw.setdefault("retry", FAST_RETRY)
    return StreamClient("iex", url=relay.base_url, key=DEFAULT_KEY, secret=DEFAULT_SECRET, **kw)


def test_keepalive_is_on_by_default() -> None:
    client = StreamClient("iex", key="k", secret="s")
    assert client._upstream.transport.ping_interval == 10.0
    assert client._upstream.transport.ping_timeout == 10.0  # alpaca-py: 180 s; Go and JS: 5 s
    client.close()


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_a_link_that_goes_dark_is_dropped_and_the_client_reconnects(
    alpaca_server: AlpacaStreamServer, collector: Callable[[], Collector], encoding: str
) -> None:
    """A relay stops forwarding without closing: the client must notice by itself."""
    with DarkRelay("127.0.0.1", alpaca_server.port) as relay:
        client = _relayed_client(relay, encoding=encoding, ping_interval=0.2, ping_timeout=1.0)
        try:
            log = ErrorLog(client)
            got = collector()
            client.quotes("AAPL").subscribe(got)
            first = alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}})
            alpaca_server.publish([quote("AAPL", 1)])
            got.wait_for(1)
            relay.go_dark()
            err = log.wait_for(errors.KeepaliveTimeout, timeout=15)
            assert err.retryable and "ping" in str(err)
            assert client.current_state is not S.AUTHENTICATED
            relay.restore()
            alpaca_server.wait_for_closed(first)
            second = alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}}, timeout=15)
            assert second.id != first.id
            alpaca_server.publish([quote("AAPL", 2)])
            assert [q.bid_price for q in got.wait_for(2)] == [2.0, 3.0]
            assert got.errors == [] and client.metrics.reconnects >= 1
            assert client.health()["link_stale"] is False
        finally:
            client.close()


def test_health_says_the_link_is_stale_before_it_is_dropped(
    alpaca_server: AlpacaStreamServer, collector: Callable[[], Collector]
) -> None:
    with DarkRelay("127.0.0.1", alpaca_server.port) as relay:
        client = _relayed_client(relay, ping_interval=0.1, ping_timeout=6.0)
        try:
            got = collector()
            client.quotes("AAPL").subscribe(got)
            alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}})
            assert client.health()["link_stale"] is False
            relay.go_dark()
            deadline = time.monotonic() + 10
            while not client.health()["link_stale"] and time.monotonic() < deadline:
                time.sleep(0.05)  # polling a dashboard API: there is no event to await
            h = client.health()
            assert h["link_stale"] is True and h["ping_unanswered_s"] > 3.0
            assert h["last_frame_age_s"] > 3.0
            assert h["state"] == "authenticated"  # not dropped yet: 6 s allowed
        finally:
            client.close()


def test_an_observer_that_keeps_the_socket_thread_busy_is_not_a_dead_link(
    alpaca_server: AlpacaStreamServer, make_client: Callable[..., StreamClient]
) -> None:
    client = make_client(alpaca_server, ping_interval=0.1, ping_timeout=0.5)
    log = ErrorLog(client)
    done = threading.Event()
    never = threading.Event()

    def slow(_q: Any) -> None:
        never.wait(2.0)  # 2 s in an observer, 4x the pong deadline: the subject here
        done.set()

    client.quotes("AAPL").subscribe(slow)
    alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}})
    alpaca_server.publish([quote("AAPL")])
    assert done.wait(10)
    alpaca_server.send_raw('[{"T":"success","msg":"still here"}]')
    alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}})
    assert log.of(errors.KeepaliveTimeout) == []
    assert client.metrics.connects == 1 and client.current_state is S.AUTHENTICATED


def test_close_after_a_fatal_error_keeps_failed(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
) -> None:
    """docs/client.md: ``failed`` is terminal; a ``with`` block's close() must not hide it."""
    client = make_client(alpaca_server, secret="wrong")
    got = collector()
    client.quotes("AAPL").subscribe(got)
    assert got.errored.wait(5) and isinstance(got.errors[0], errors.AuthFailed)
    client.close()
    assert client.current_state is S.FAILED
    assert "AuthFailed" in client.health()["fatal_error"]
