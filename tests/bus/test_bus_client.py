"""BusClient and Gateway in one process, on a real nats-server and the embedded Alpaca server."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any

import nats
import pytest

from rxalpaca import ConnectionState, StreamClient, errors
from rxalpaca.bus import BusClient, Gateway, Retention, Subjects
from rxalpaca.models import Gap
from rxalpaca.testing import DEFAULT_KEY, DEFAULT_SECRET, Account, AlpacaStreamServer
from rxalpaca.testing.nats_server import NatsServer
from tests.conftest import TIMING_FACTOR
from tests.integration.conftest import Collector
from tests.integration.test_client_semantics import quote

from .conftest import Bus, States

S = ConnectionState
pytestmark = pytest.mark.timeout(90)
T = "2024-01-02T15:00:00.123456789Z"


def trade(sym: str, i: int) -> dict[str, Any]:
    return {"T": "t", "S": sym, "i": i, "x": "V", "p": 1.5, "s": 1, "c": ["@"], "z": "C", "t": T}


def fields(record: Any) -> tuple[Any, ...]:
    """A record's value, minus when it reached this process."""
    return tuple(getattr(record, f) for f in record.__struct_fields__ if f != "received_ns")


def publish_raw(nats_url: str, subject: str, payload: bytes) -> None:
    """Put anything on the bus, as a stranger would."""
    import asyncio

    async def go() -> None:
        nc = await nats.connect(nats_url)
        await nc.publish(subject, payload)
        await nc.flush()
        await nc.close()

    asyncio.run(go())


def test_a_bus_client_gets_the_same_records_as_a_direct_client(
    bus: Bus,
    alpaca_server_factory: Callable[..., AlpacaStreamServer],
    collector: Callable[[], Collector],
) -> None:
    # The direct client uses its own server (Alpaca allows one connection per key);
    # both servers get the same corpus.
    direct_server = alpaca_server_factory()
    direct = StreamClient(
        "iex", url=direct_server.base_url, key=DEFAULT_KEY, secret=DEFAULT_SECRET,
        ping_interval=None,
    )  # fmt: skip
    bus.gateway()
    client = bus.client()
    symbols = ["AAPL", "BRK.B", "MSFT"]
    via_bus, via_socket = collector(), collector()
    client.trades(*symbols).subscribe(via_bus)
    client.quotes(*symbols).subscribe(via_bus)
    direct.trades(*symbols).subscribe(via_socket)
    direct.quotes(*symbols).subscribe(via_socket)
    want = {"trades": set(symbols), "quotes": set(symbols)}
    bus.alpaca.wait_for_subscriptions(want)
    direct_server.wait_for_subscriptions(want)
    corpus = [m for i in range(50) for s in [*symbols, "NVDA"] for m in (trade(s, i), quote(s, i))]
    for i in range(0, len(corpus), 7):  # frames of several messages, mixed symbols
        bus.alpaca.publish(corpus[i : i + 7])
        direct_server.publish(corpus[i : i + 7])
    expected = 50 * 3 * 2
    via_socket.wait_for(expected)
    via_bus.wait_for(expected, timeout=10 * TIMING_FACTOR)
    direct.close()

    def per_symbol(records: list[Any]) -> dict[tuple[str, str], list[tuple[Any, ...]]]:
        out: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
        for r in records:
            out.setdefault((type(r).__name__, r.symbol), []).append(fields(r))
        return out

    # Per (type, symbol) in order; NVDA, never asked for, never arrives.
    assert per_symbol(via_bus.items) == per_symbol(via_socket.items)
    assert len(via_bus.items) == expected and via_bus.errors == []
    assert {type(r) for r in via_bus.items} == {type(r) for r in via_socket.items}


def test_demand_follows_subscriptions_and_close_releases_at_once(bus: Bus) -> None:
    bus.gateway()
    a, b = bus.client(lease=30.0), bus.client(lease=30.0)
    sub_a = a.quotes("AAPL", "MSFT").subscribe(lambda _: None)
    sub_b = b.quotes("MSFT", "TSLA").subscribe(lambda _: None)
    bus.alpaca.wait_for_subscriptions({"quotes": {"AAPL", "MSFT", "TSLA"}})
    sub_a.dispose()  # MSFT stays: b still holds it
    bus.alpaca.wait_for_subscriptions({"quotes": {"MSFT", "TSLA"}})
    assert b.subscriptions() == {"quotes": {"MSFT", "TSLA"}}
    b.close()  # an empty lease: released now, not in 30 s
    assert sub_b is not None
    bus.alpaca.wait_for_subscriptions({"quotes": set()}, timeout=5 * TIMING_FACTOR)


def test_a_lease_that_is_not_renewed_expires(bus: Bus) -> None:
    gw = bus.gateway()
    client = bus.client(lease=1.0)
    client.quotes("AAPL").subscribe(lambda _: None)
    bus.alpaca.wait_for_subscriptions({"quotes": {"AAPL"}})
    # A crash, as the gateway sees it: the heartbeat stops and no goodbye is sent.
    lt = client._lt
    assert lt is not None

    async def crash() -> None:
        for task in client._tasks:
            task.cancel()
        await client._nc.close()

    lt.call(crash(), timeout=10)
    bus.alpaca.wait_for_subscriptions({"quotes": set()}, timeout=10 * TIMING_FACTOR)
    assert gw.bus_metrics.leases_expired == 1


def test_a_symbol_limit_refusal_reaches_only_the_consumer_that_asked(
    nats_server: NatsServer,
    alpaca_server_factory: Callable[..., AlpacaStreamServer],
    prefix: str,
    collector: Callable[[], Collector],
) -> None:
    server = alpaca_server_factory(accounts={"free": Account("s", plan="free", symbol_limit=3)})
    b = Bus(nats_server, server, prefix)
    try:
        b.gateway(key="free", secret="s")
        first, second = b.client(), b.client()
        got_first = collector()
        first.quotes("AAPL", "MSFT").subscribe(got_first)
        server.wait_for_subscriptions({"quotes": {"AAPL", "MSFT"}})
        extra = {s: collector() for s in ("NVDA", "TSLA", "AMD")}
        for s, c in extra.items():
            second.quotes(s).subscribe(c)
        server.wait_for_subscriptions(lambda subs: len(subs.get("quotes", ())) == 3)
        refused = [s for s, c in extra.items() if c.errored.wait(5 * TIMING_FACTOR)]
        assert len(refused) == 2, {s: c.errors for s, c in extra.items()}
        for s in refused:
            err = extra[s].errors[0]
            assert isinstance(err, errors.SubscriptionRejected)
            assert err.symbols == (s,) and isinstance(err.cause, errors.SymbolLimitExceeded)
        held = next(s for s in extra if s not in refused)
        server.publish([quote("AAPL"), quote(held)])
        got_first.wait_for(1)
        extra[held].wait_for(1)
        assert got_first.errors == [] and extra[held].errors == []
    finally:
        b.close()


def test_upstream_drop_gives_one_gap_per_consumer_and_both_resume(
    bus: Bus, collector: Callable[[], Collector]
) -> None:
    bus.gateway()
    clients = [bus.client(), bus.client()]
    gaps: list[list[Gap]] = [[], []]
    got = [collector(), collector()]
    gap_seen = [threading.Event(), threading.Event()]

    def on_gap(i: int, g: Gap) -> None:
        gaps[i].append(g)
        gap_seen[i].set()

    for i, c in enumerate(clients):
        c.gaps.subscribe(functools.partial(on_gap, i))
        c.quotes("AAPL").subscribe(got[i])
    bus.alpaca.wait_for_subscriptions({"quotes": {"AAPL"}})
    states = [States(c) for c in clients]
    for s in states:
        s.wait(lambda seen: S.AUTHENTICATED in seen)
    bus.alpaca.publish([quote("AAPL", 1)])
    for g in got:
        g.wait_for(1)
    bus.alpaca.drop()
    for i in range(2):
        assert gap_seen[i].wait(10 * TIMING_FACTOR), f"consumer {i} saw no gap"
        states[i].wait(lambda seen: S.RECONNECTING in seen and seen[-1] is S.AUTHENTICATED)
    bus.alpaca.wait_for_subscriptions({"quotes": {"AAPL"}})
    bus.alpaca.publish([quote("AAPL", 2)])
    for g in got:
        g.wait_for(2)
    for i in range(2):
        [gap] = gaps[i]
        assert gap.reason == "reconnect" and gap.symbols == ("AAPL",)
        assert gap.last_before_ns is not None and gap.first_after_ns is not None
        assert gap.last_before_ns < gap.first_after_ns <= got[i].items[-1].received_ns


def test_malformed_bus_messages_reach_errors_and_the_stream_goes_on(
    bus: Bus, collector: Callable[[], Collector]
) -> None:
    bus.gateway()
    client = bus.client()
    seen: list[Exception] = []
    two = threading.Event()

    def on_error(e: Exception) -> None:
        seen.append(e)
        if len(seen) >= 2:
            two.set()

    client.errors.subscribe(on_error)
    got = collector()
    client.quotes("AAPL").subscribe(got)
    bus.alpaca.wait_for_subscriptions({"quotes": {"AAPL"}})
    subjects = Subjects("iex", bus.prefix)
    publish_raw(bus.nats.url, subjects.data("quotes", "AAPL"), b"\xc1 not a frame")
    publish_raw(bus.nats.url, subjects.state, b'{"v": 1, "gateway": 7}')
    assert two.wait(5 * TIMING_FACTOR), seen
    assert any(isinstance(e, errors.FrameError) for e in seen)
    assert any(isinstance(e, errors.BusMessageError) and e.subject == subjects.state for e in seen)
    bus.alpaca.publish([quote("AAPL", 3)])
    [q] = got.wait_for(1)
    assert q.bid_price == 4.0 and got.errors == []


def test_state_follows_the_gateway_and_the_bus(
    nats_server: NatsServer, alpaca_server: AlpacaStreamServer, prefix: str
) -> None:
    b = Bus(nats_server, alpaca_server, prefix)
    client = b.client()
    states = States(client)
    client.quotes("AAPL").subscribe(lambda _: None)
    states.wait(lambda seen: S.CONNECTING in seen)  # no gateway yet
    assert S.AUTHENTICATED not in states.seen
    gw = b.gateway()
    states.wait(lambda seen: seen[-1] is S.AUTHENTICATED)
    alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}})  # the lease found it
    gaps: list[Gap] = []
    client.gaps.subscribe(gaps.append)
    gw.close()  # the gateway goes away: three heartbeats later, we know
    states.wait(lambda seen: seen[-1] is S.RECONNECTING)
    b.gateway()  # a new one: our demand reaches it without our doing anything
    states.wait(lambda seen: seen[-1] is S.AUTHENTICATED and seen.count(S.AUTHENTICATED) == 2)
    alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}})
    assert [g.reason for g in gaps] == ["gateway"]
    client.close()
    assert states.seen[-1] is S.CLOSED
    b.close()


def test_the_api_is_the_stream_clients(bus: Bus) -> None:
    def public(cls: type) -> set[str]:
        return {n for n in dir(cls) if not n.startswith("_")}

    # The raw socket, its address, recording its frames, and hearing its subscribe requests.
    socket_only = {"frames", "url", "encoding", "record", "add_request_listener"}
    assert public(StreamClient) - socket_only <= public(BusClient)
    with pytest.raises(errors.ConfigurationError, match="unknown BusClient option 'leese'"):
        BusClient(bus.nats.url, "iex", leese=3)  # type: ignore[call-overload]
    with pytest.raises(errors.ConfigurationError, match="feed"):
        BusClient(bus.nats.url, "nope")
    with pytest.raises(errors.ConfigurationError, match="durable"):
        BusClient(bus.nats.url, "iex", durable="a.b")
    client = bus.client()
    with pytest.raises(errors.ConfigurationError):
        client.quotes("not a symbol!")


def test_alpaca_keys_never_travel_on_the_bus(bus: Bus) -> None:
    import asyncio

    payloads: list[bytes] = []
    ready, done = threading.Event(), threading.Event()

    def spy() -> None:
        async def go() -> None:
            nc = await nats.connect(bus.nats.url)
            await nc.subscribe(">", cb=_collect)
            await nc.flush()
            ready.set()
            while not done.is_set():
                await asyncio.sleep(0.02)
            await nc.close()

        async def _collect(msg: Any) -> None:
            payloads.append(msg.subject.encode() + b" " + msg.data)

        asyncio.run(go())

    t = threading.Thread(target=spy)
    t.start()
    ready.wait(10)
    gw = bus.gateway()
    client = bus.client()
    got = threading.Event()
    client.quotes("AAPL").subscribe(lambda _: got.set())
    bus.alpaca.wait_for_subscriptions({"quotes": {"AAPL"}})
    bus.alpaca.publish([quote("AAPL")])
    assert got.wait(5 * TIMING_FACTOR)
    done.set()
    t.join(10)
    assert payloads  # the spy really saw the traffic
    for p in payloads:
        assert DEFAULT_SECRET.encode() not in p and DEFAULT_KEY.encode() not in p
    assert DEFAULT_SECRET not in repr(gw) + repr(client) + str(gw.health())


def test_a_durable_client_resumes_where_it_stopped(
    nats_server: NatsServer, alpaca_server: AlpacaStreamServer, prefix: str
) -> None:
    b = Bus(nats_server, alpaca_server, prefix)
    try:
        b.gateway(retention=Retention(max_age=60, max_bytes=1 << 20, storage="memory"))
        seen: list[int] = []
        cond = threading.Condition()

        def on(q: Any) -> None:
            with cond:
                seen.append(q.bid_size)
                cond.notify_all()

        def wait_for(n: int) -> None:
            with cond:
                assert cond.wait_for(lambda: len(seen) >= n, 10 * TIMING_FACTOR), seen

        first = b.client(durable="desk", lease=30.0)
        first.quotes("AAPL").subscribe(on)
        alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}})
        states = States(first)
        states.wait(lambda s: s[-1] is S.AUTHENTICATED)
        batch = [dict(quote("AAPL"), bs=i) for i in range(20)]
        alpaca_server.publish(batch[:10])
        wait_for(10)
        first.close()
        # Down: the lease still holds AAPL upstream and the stream keeps capturing.
        alpaca_server.publish(batch[10:15])
        second = b.client(durable="desk", lease=30.0)
        second.quotes("AAPL").subscribe(on)
        wait_for(15)
        alpaca_server.publish(batch[15:])
        wait_for(20)
        with cond:
            assert seen == list(range(20))  # nothing lost, nothing twice, in order
    finally:
        b.close()


def test_nats_credentials_pass_through_and_wrong_ones_fail_clearly(
    alpaca_server: AlpacaStreamServer,
) -> None:
    with NatsServer(args=["--user", "desk", "--pass", "s3cret-pw"]) as locked:
        b = Bus(locked, alpaca_server, "locked")
        try:
            gw = Gateway(
                locked.url, "iex", url=alpaca_server.base_url, key=DEFAULT_KEY,
                secret=DEFAULT_SECRET, prefix="locked",
                nats_options={"user": "desk", "password": "s3cret-pw"},
            ).start()  # fmt: skip
            b.gateways.append(gw)
            good = b.client(nats_options={"user": "desk", "password": "s3cret-pw"})
            got = threading.Event()
            good.quotes("AAPL").subscribe(lambda _: got.set())
            alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}})
            alpaca_server.publish([quote("AAPL")])
            assert got.wait(10 * TIMING_FACTOR)
            bad = b.client(nats_options={"user": "desk", "password": "wrong"})
            failed = threading.Event()
            errs: list[Exception] = []

            def on_error(e: Exception) -> None:
                errs.append(e)
                failed.set()

            bad.quotes("AAPL").subscribe(on_error=on_error)
            assert failed.wait(10 * TIMING_FACTOR)
            assert isinstance(errs[0], errors.BusDisconnected)
            assert "credentials" in str(errs[0]) and "wrong" not in str(errs[0])
            assert bad.current_state is S.FAILED
            assert "s3cret-pw" not in repr(good) + repr(bad) + str(good.health())
        finally:
            b.close()


def test_a_gateway_replaced_at_once_still_marks_one_gap(
    bus: Bus, collector: Callable[[], Collector]
) -> None:
    first = bus.gateway(heartbeat=5.0)  # slow heartbeat: the successor is seen first
    client = bus.client()
    states = States(client)
    gaps: list[Gap] = []
    client.gaps.subscribe(gaps.append)
    got = collector()
    client.quotes("AAPL").subscribe(got)
    states.wait(lambda seen: seen[-1] is S.AUTHENTICATED)
    bus.alpaca.wait_for_subscriptions({"quotes": {"AAPL"}})
    first.close()
    bus.gateway(heartbeat=5.0)
    states.wait(lambda seen: seen.count(S.AUTHENTICATED) == 2 and seen[-1] is S.AUTHENTICATED)
    bus.alpaca.wait_for_subscriptions({"quotes": {"AAPL"}})
    bus.alpaca.publish([quote("AAPL", 1)])
    got.wait_for(1)
    assert [g.reason for g in gaps] == ["gateway"]


def test_closing_while_nats_is_down_ends_the_client(
    alpaca_server: AlpacaStreamServer,
) -> None:
    import gc

    with NatsServer() as own:
        b = Bus(own, alpaca_server, "down")
        try:
            b.gateway()
            client = b.client()
            states = States(client)
            client.quotes("AAPL").subscribe(lambda _: None)
            states.wait(lambda seen: seen[-1] is S.AUTHENTICATED)
            own.stop()
            states.wait(lambda seen: seen[-1] is S.RECONNECTING)
            client.close()
            assert states.seen[-1] is S.CLOSED
            bus_threads = [t for t in threading.enumerate() if t.name == "rxalpaca-bus"]
            assert bus_threads == []  # the bus thread ended with the client
            gc.collect()  # an unclosed socket would warn here (warnings are errors)
        finally:
            b.close()


def test_malformed_leases_gaps_and_refusals_are_counted_or_on_errors(
    bus: Bus, collector: Callable[[], Collector]
) -> None:
    gw = bus.gateway()
    client = bus.client()
    seen: list[Exception] = []
    cond = threading.Condition()

    def on_error(e: Exception) -> None:
        with cond:
            seen.append(e)
            cond.notify_all()

    client.errors.subscribe(on_error)
    got = collector()
    client.quotes("AAPL").subscribe(got)
    bus.alpaca.wait_for_subscriptions({"quotes": {"AAPL"}})
    subjects = Subjects("iex", bus.prefix)
    publish_raw(bus.nats.url, subjects.demand, b"not a lease")
    publish_raw(bus.nats.url, subjects.gap, b'{"v": 1, "reason": 7}')
    publish_raw(bus.nats.url, subjects.refused(client.client_id), b"[]")
    bad = {subjects.gap, subjects.refused(client.client_id)}
    with cond:
        assert cond.wait_for(
            lambda: bad <= {e.subject for e in seen if isinstance(e, errors.BusMessageError)},
            5 * TIMING_FACTOR,
        ), seen
    deadline = time.monotonic() + 5 * TIMING_FACTOR
    while gw.bus_metrics.bad_demands < 1:  # counted on the gateway's bus thread
        assert time.monotonic() < deadline, vars(gw.bus_metrics)
        time.sleep(0.05)
    # Neither side stopped: data still flows.
    bus.alpaca.publish([quote("AAPL", 3)])
    [q] = got.wait_for(1)
    assert q.bid_price == 4.0
