"""Subscriptions, reconnects, failures and isolation — the client's promises, over real sockets."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from reactivex.abc import DisposableBase

from rxalpaca import ConnectionState, StreamClient, errors
from rxalpaca.client import Lifecycle, UnknownMessage
from rxalpaca.testing import DEFAULT_KEY, DEFAULT_SECRET, Account, AlpacaStreamServer, Fault
from tests.relay import DarkRelay

from .conftest import Collector

NS = 1_700_000_000_000_000_000
S = ConnectionState
pytestmark = pytest.mark.timeout(30)


def quote(sym: str, i: int = 0) -> dict[str, Any]:
    return {
        "T": "q",
        "S": sym,
        "bx": "V",
        "bp": 1.0 + i,
        "bs": 1,
        "ax": "V",
        "ap": 1.1 + i,
        "as": 1,
        "c": ["R"],
        "z": "C",
        "t": NS + i,
    }


def subscribe_messages(server: AlpacaStreamServer) -> list[dict[str, Any]]:
    return [
        m
        for c in server.connections()
        for m in c.received
        if isinstance(m, dict) and m.get("action") in ("subscribe", "unsubscribe")
    ]


def states(client: StreamClient) -> tuple[list[ConnectionState], threading.Condition]:
    seen: list[ConnectionState] = []
    cond = threading.Condition()

    def on(s: ConnectionState) -> None:
        with cond:
            seen.append(s)
            cond.notify_all()

    client.state.subscribe(on)
    return seen, cond


def wait_state(
    seen: list[ConnectionState],
    cond: threading.Condition,
    pred: Callable[[list[ConnectionState]], bool],
    timeout: float = 5.0,
) -> None:
    with cond:
        assert cond.wait_for(lambda: pred(seen), timeout), seen


def test_state_emits_current_at_once(
    alpaca_server: AlpacaStreamServer, make_client: Callable[..., StreamClient]
) -> None:
    client = make_client(alpaca_server)
    seen, _ = states(client)
    assert seen == [S.IDLE]


def test_refcounted_per_channel_symbol(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
) -> None:
    client = make_client(alpaca_server)
    a, b = collector(), collector()
    sub_a = client.quotes("AAPL").subscribe(a)
    sub_b = client.quotes("AAPL").subscribe(b)
    alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}})
    alpaca_server.publish([quote("AAPL")])
    a.wait_for(1)
    b.wait_for(1)
    sub_a.dispose()
    alpaca_server.publish([quote("AAPL", 1)])
    b.wait_for(2)
    assert len(a.items) == 1  # disposed: removed from the router
    assert [m["action"] for m in subscribe_messages(alpaca_server)] == ["subscribe"]
    sub_b.dispose()
    alpaca_server.wait_for_subscriptions({"quotes": set()})
    assert [m["action"] for m in subscribe_messages(alpaca_server)] == ["subscribe", "unsubscribe"]
    assert client.metrics.live_subscriptions == 0


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_a_thousand_subscriptions_in_a_loop_are_a_handful_of_messages(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
    encoding: str,
) -> None:
    """One request in flight at a time, and every change made meanwhile coalesces into
    the next one: the messages a loop sends are at most 1 + the round trips completed
    during it. On an idle machine that is a handful; on a busy one (a slow loop) more,
    which made a fixed bound flaky. So the relay holds the server's replies back while
    the loop runs: no round trip completes, and the bound is exact -- 2 messages (the
    first request, after its linger, and all the rest), never one per symbol."""
    with DarkRelay("127.0.0.1", alpaca_server.port) as relay:
        client = make_client(relay, encoding=encoding)  # anything with a base_url
        client.connect()
        alpaca_server.wait_for_authenticated()
        symbols = [f"SYM{i}" for i in range(1000)]
        last = collector()
        relay.go_dark(discard=False)  # held, not lost: restore() delivers everything
        subs = [client.trades(s).subscribe(lambda _: None) for s in symbols[:-1]]
        subs.append(client.trades(symbols[-1]).subscribe(last))
        relay.restore()
        alpaca_server.wait_for_subscriptions({"trades": set(symbols)})
        requests = subscribe_messages(alpaca_server)
        assert 1 <= len(requests) <= 2, [len(m["trades"]) for m in requests]
        sent = [s for m in requests for s in m["trades"]]
        assert sorted(sent) == sorted(symbols)  # each symbol asked for exactly once
        # Acked: the server answered the last request before this trade, on one socket.
        alpaca_server.publish([{"T": "t", "S": "SYM999", "i": 1, "x": "V", "p": 1.0, "s": 1,
                                "c": ["@"], "z": "C", "t": NS}])  # fmt: skip
        last.wait_for(1)
        assert client.subscriptions() == {"trades": set(symbols)}

        relay.go_dark(discard=False)
        for sub in subs:
            sub.dispose()
        relay.restore()
        alpaca_server.wait_for_subscriptions({"trades": set()})
        unsubscribes = subscribe_messages(alpaca_server)[len(requests) :]
        assert 1 <= len(unsubscribes) <= 2, [len(m["trades"]) for m in unsubscribes]
        assert sorted(s for m in unsubscribes for s in m["trades"]) == sorted(symbols)
        assert {m["action"] for m in unsubscribes} == {"unsubscribe"}


def test_subscriptions_made_before_connect_and_during_auth_are_kept(
    alpaca_server: AlpacaStreamServer, make_client: Callable[..., StreamClient]
) -> None:
    alpaca_server.slow_auth(0.3)
    client = make_client(alpaca_server)
    seen, cond = states(client)
    client.trades("BEFORE").subscribe(lambda _: None)  # opens the connection
    wait_state(seen, cond, lambda s: S.AUTHENTICATING in s)
    client.quotes("DURING").subscribe(lambda _: None)  # while auth is pending
    alpaca_server.wait_for_subscriptions({"trades": {"BEFORE"}, "quotes": {"DURING"}})


def test_transient_drop_restores_everything_and_completes_nobody(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
) -> None:
    client = make_client(alpaca_server)
    seen, cond = states(client)
    q = collector()
    client.quotes("AAPL", "MSFT").subscribe(q)
    client.bars("*").subscribe(lambda _: None)
    first = alpaca_server.wait_for_subscriptions({"quotes": {"AAPL", "MSFT"}, "bars": {"*"}})
    alpaca_server.drop(first)
    second = alpaca_server.wait_for_subscriptions(
        lambda subs: subs.get("quotes") == {"AAPL", "MSFT"} and subs.get("bars") == {"*"} and True,
        timeout=5,
    )
    assert second.id != first.id
    wait_state(seen, cond, lambda s: s.count(S.AUTHENTICATED) == 2)
    i = seen.index(S.RECONNECTING)
    assert seen[i : i + 4] == [S.RECONNECTING, S.CONNECTING, S.AUTHENTICATING, S.AUTHENTICATED]
    alpaca_server.publish([quote("MSFT", 5)])
    assert q.wait_for(1)[0].bid_price == 6.0
    assert not q.completed.is_set() and not q.errors
    assert client.metrics.reconnects == 1


def test_dispose_during_reconnect_is_honoured(
    alpaca_server: AlpacaStreamServer, make_client: Callable[..., StreamClient]
) -> None:
    client = make_client(alpaca_server)
    keep = client.quotes("KEEP").subscribe(lambda _: None)
    gone = client.quotes("GONE").subscribe(lambda _: None)
    first = alpaca_server.wait_for_subscriptions({"quotes": {"KEEP", "GONE"}})
    alpaca_server.slow_auth(0.3)
    alpaca_server.drop(first)
    gone.dispose()  # while reconnecting
    client.quotes("NEW").subscribe(lambda _: None)
    alpaca_server.wait_for_subscriptions(
        lambda subs: subs.get("quotes") == {"KEEP", "NEW"}, timeout=5
    )
    keep.dispose()


def test_bad_credentials_fail_every_observer_with_auth_failed(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
) -> None:
    client = make_client(alpaca_server, secret="wrong")
    seen, cond = states(client)
    q = collector()
    client.quotes("AAPL").subscribe(q)
    assert q.errored.wait(5)
    assert isinstance(q.errors[0], errors.AuthFailed)
    wait_state(seen, cond, lambda s: s[-1] is S.FAILED)
    late = collector()
    client.trades("X").subscribe(late)
    assert isinstance(late.errors[0], errors.AuthFailed)
    assert len(alpaca_server.connections()) == 1  # fatal: no reconnect storm


def test_insufficient_subscription_is_fatal(
    alpaca_server_factory: Callable[..., AlpacaStreamServer],
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
) -> None:
    server = alpaca_server_factory(accounts={"free": Account("s", plan="free")})
    client = make_client(server, "sip", key="free", secret="s")
    q = collector()
    client.quotes("AAPL").subscribe(q)
    assert q.errored.wait(5)
    assert isinstance(q.errors[0], errors.InsufficientSubscription)
    assert client.current_state is S.FAILED


def test_symbol_limit_reaches_only_the_refused_symbols(
    alpaca_server_factory: Callable[..., AlpacaStreamServer],
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
) -> None:
    server = alpaca_server_factory(accounts={"free": Account("s", plan="free")})
    client = make_client(server, key="free", secret="s")
    first = [f"A{i}" for i in range(30)]
    ok = collector()
    client.quotes(*first).subscribe(ok)
    server.wait_for_subscriptions({"quotes": set(first)})
    refused = collector()
    client.quotes("ONEMORE").subscribe(refused)
    assert refused.errored.wait(5)
    err = refused.errors[0]
    assert isinstance(err, errors.SubscriptionRejected)
    assert err.symbols == ("ONEMORE",) and isinstance(err.cause, errors.SymbolLimitExceeded)
    server.publish([quote("A0")])
    ok.wait_for(1)
    assert not ok.errors and client.current_state is S.AUTHENTICATED
    assert client._book.count("quotes", "ONEMORE") == 0


def test_observer_exception_is_logged_counted_published_and_harmless(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
    log_lines: list[str],
) -> None:
    client = make_client(alpaca_server)
    problems = collector()
    client.errors.subscribe(problems)
    good = collector()

    def bad(_q: Any) -> None:
        raise ValueError("strategy bug")

    client.quotes("AAPL").subscribe(bad)
    client.quotes("AAPL").subscribe(good)
    alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}})
    alpaca_server.publish([quote("AAPL", 0), quote("AAPL", 1)])
    good.wait_for(2)
    [first, _] = problems.wait_for(2)
    assert isinstance(first, errors.HandlerError)
    assert isinstance(first.__cause__, ValueError)
    assert client.metrics.handler_errors == 2
    assert any("strategy bug" in line and "Traceback" in line for line in log_lines)
    assert client.current_state is S.AUTHENTICATED


def test_subscribe_and_dispose_from_inside_an_observer(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
) -> None:
    client = make_client(alpaca_server)
    follow = collector()
    holder: dict[str, DisposableBase] = {}

    def on_quote(q: Any) -> None:  # runs on the socket thread
        if "t" not in holder:
            holder["t"] = client.trades(q.symbol).subscribe(follow)
            holder["self"].dispose()

    holder["self"] = client.quotes("AAPL").subscribe(on_quote)
    alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}})
    alpaca_server.publish([quote("AAPL")])
    alpaca_server.wait_for_subscriptions({"quotes": set(), "trades": {"AAPL"}})
    alpaca_server.publish(
        [{"T": "t", "S": "AAPL", "i": 1, "x": "V", "p": 2.0, "s": 1, "c": [], "z": "C", "t": NS}]
    )
    assert follow.wait_for(1)[0].price == 2.0


def test_corrupt_and_unknown_frames_are_error_values_and_the_stream_goes_on(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
) -> None:
    client = make_client(alpaca_server, encoding="json")
    problems = collector()
    client.errors.subscribe(problems)
    q = collector()
    client.quotes("AAPL").subscribe(q)
    conn = alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}})
    alpaca_server.send_fault(Fault.INVALID, conn)
    alpaca_server.send_fault(Fault.UNKNOWN_TYPE, conn)
    alpaca_server.send_fault(Fault.MISSING_FIELDS, conn)
    alpaca_server.corrupt_next_frame(conn)
    alpaca_server.publish([quote("AAPL", 0)])
    alpaca_server.split_next_frame(3, conn)
    alpaca_server.publish([quote("AAPL", 1)])
    assert [x.bid_price for x in q.wait_for(1)] in ([2.0], [1.0, 2.0])
    kinds = {type(p) for p in problems.wait_for(3)}
    assert errors.FrameError in kinds and UnknownMessage in kinds
    m = client.metrics
    assert m.frames_failed >= 1 and m.decode_failures >= 2 and m.unknown_messages == 1
    assert m.frames_balance() and m.messages_balance()
    assert client.current_state is S.AUTHENTICATED


def test_retryable_server_errors_reconnect(
    alpaca_server: AlpacaStreamServer, make_client: Callable[..., StreamClient]
) -> None:
    client = make_client(alpaca_server)
    client.quotes("AAPL").subscribe(lambda _: None)
    first = alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}})
    alpaca_server.inject_internal_error(first)
    # The first connection matches until the server has closed it: wait for the closure
    # first, or a busy machine returns the old connection and the reconnect is not seen.
    alpaca_server.wait_for_closed(first)
    second = alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}}, timeout=5)
    assert second.id != first.id and client.metrics.reconnects >= 1


def test_connection_limit_backs_off_then_gets_in(
    alpaca_server: AlpacaStreamServer, make_client: Callable[..., StreamClient]
) -> None:
    # Another process, or a plan with more slots: the second client keeps the first.
    holder = make_client(alpaca_server)
    holder.quotes("A").subscribe(lambda _: None)
    alpaca_server.wait_for_subscriptions({"quotes": {"A"}})
    second = make_client(alpaca_server, replace_previous=False)
    refused: list[errors.ConnectionLimitExceeded] = []
    got_406 = threading.Event()

    def on_error(p: Exception) -> None:
        if isinstance(p, errors.ConnectionLimitExceeded):
            refused.append(p)
            got_406.set()

    second.errors.subscribe(on_error)
    second.quotes("B").subscribe(lambda _: None)
    assert got_406.wait(5)  # 406 in reply to its auth: it backs off and retries
    assert "a notebook cell run twice" in str(refused[0])  # the likely causes, named
    assert holder.lifecycle is Lifecycle.OPENED
    assert second.current_state is not S.FAILED
    holder.close()  # the slot frees; a later retry gets in
    alpaca_server.wait_for_subscriptions({"quotes": {"B"}}, timeout=10)
    assert second.metrics.reconnects >= 1


def test_a_second_client_with_the_same_key_and_url_closes_the_first(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A notebook cell run twice: the first client is unreachable, still connected.
    first = make_client(alpaca_server)
    old = collector()
    first.quotes("AAPL").subscribe(old)
    held = alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}})
    second = make_client(alpaca_server)
    new = collector()
    with caplog.at_level(logging.WARNING, logger="rxalpaca"):
        second.quotes("AAPL").subscribe(new)
    assert first.lifecycle is Lifecycle.CLOSED and old.completed.is_set()
    assert "closing the previous iex client" in caplog.text
    alpaca_server.wait_for_closed(held)
    # The second gets in (at most one 406 while the server frees the old slot).
    conn = alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}}, timeout=10)
    assert conn.id != held.id
    quote = {"T": "q", "S": "AAPL", "bp": 1.0, "bs": 1, "ap": 1.01, "as": 1, "bx": "V"}
    alpaca_server.publish([{**quote, "ax": "V", "t": 1, "c": ["R"], "z": "C"}], conn)
    assert new.wait_for(1)[0].bid_price == 1.0
    # A different URL (another feed, another server) is another slot: left alone.
    other = make_client(alpaca_server, "test")
    other.quotes("FAKEPACA").subscribe(lambda _: None)
    alpaca_server.wait_for_subscriptions({"quotes": {"FAKEPACA"}})
    assert second.lifecycle is Lifecycle.OPENED


def test_header_auth(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
) -> None:
    client = make_client(alpaca_server, header_auth=True)
    client.quotes("AAPL").subscribe(lambda _: None)
    conn = alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}})
    assert not any(m.get("action") == "auth" for m in conn.received if isinstance(m, dict))


def test_close_is_prompt_idempotent_and_completes_observers(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
) -> None:
    client = make_client(alpaca_server)
    seen, _ = states(client)
    q = collector()
    client.quotes("AAPL").subscribe(q)
    alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}})
    t0 = time.monotonic()
    client.close()
    assert time.monotonic() - t0 < 1.0
    client.close()
    assert q.completed.is_set()
    assert seen[-1] is S.CLOSED
    late = collector()
    client.quotes("X").subscribe(late)
    assert isinstance(late.errors[0], errors.ClientClosedError)


def test_silence_watchdog_reconnects_a_mute_connection(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
) -> None:
    client = make_client(alpaca_server, silence_timeout=0.5)
    q = collector()
    client.quotes("AAPL").subscribe(q)
    first = alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}})
    alpaca_server.publish([quote("AAPL")])
    q.wait_for(1)
    alpaca_server.mute(first)
    alpaca_server.wait_for_closed(first, timeout=5)
    alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}}, timeout=5)
    assert client.metrics.reconnects >= 1


def test_secret_never_appears(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    log_lines: list[str],
) -> None:
    secret = "S3CR3T-do-not-leak"
    alpaca_server.accounts["leaky"] = Account(secret)
    client = make_client(alpaca_server, key="leaky", secret=secret)
    problems: list[Exception] = []
    client.errors.subscribe(problems.append)
    client.quotes("AAPL").subscribe(lambda _: (_ for _ in ()).throw(RuntimeError("x")))
    conn = alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}})
    alpaca_server.publish([quote("AAPL")])
    alpaca_server.drop(conn)
    alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}}, timeout=5)
    bad = make_client(alpaca_server, key="leaky", secret=secret + "x")
    bad.quotes("B").subscribe(lambda _: None, lambda _e: None)
    texts = [
        *log_lines,
        repr(client),
        str(client.health()),
        repr(client._upstream.session),
        repr(client._upstream.transport),
        *(repr(p) + str(p) for p in problems),
    ]
    assert texts and not any(secret in t for t in texts)


def test_client_needs_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APCA_API_KEY_ID", raising=False)
    monkeypatch.delenv("APCA_API_SECRET_KEY", raising=False)
    with pytest.raises(errors.ConfigurationError, match="credentials"):
        StreamClient("iex")
    monkeypatch.setenv("APCA_API_KEY_ID", DEFAULT_KEY)
    monkeypatch.setenv("APCA_API_SECRET_KEY", DEFAULT_SECRET)
    assert StreamClient("iex").url == "wss://stream.data.alpaca.markets/v2/iex"


@pytest.mark.parametrize("bad", [0, -1.0])
def test_reply_timeout_must_be_positive(bad: float) -> None:
    with pytest.raises(errors.ConfigurationError, match="reply_timeout"):
        StreamClient("iex", key=DEFAULT_KEY, secret=DEFAULT_SECRET, reply_timeout=bad)
    assert StreamClient("iex", key=DEFAULT_KEY, secret=DEFAULT_SECRET, reply_timeout=None)


def test_unknown_channel_for_the_feed_is_a_clear_error(
    alpaca_server: AlpacaStreamServer, make_client: Callable[..., StreamClient]
) -> None:
    client = make_client(alpaca_server)
    with pytest.raises(errors.ConfigurationError, match="orderbooks"):
        client.orderbooks("BTC/USD")
