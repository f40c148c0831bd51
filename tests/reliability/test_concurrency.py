"""Concurrency: 100 threads x 100 random subscribe/dispose operations over 200 symbols,
plus operations made from inside observers on the socket thread, while data flows.

Subscriptions go into one shared pool (a test-side lock guards only the list, never a
client call), so a subscription is often disposed by another thread than the one that
made it. Afterwards: no thread is stuck (joined with a timeout; stacks are dumped if
not), nothing raised, no observer saw a terminal event, and the server's subscription
set equals exactly the union of the live subscriptions — then, once everything is
disposed, nothing is left on the server, in the router or in the book.
"""

from __future__ import annotations

import faulthandler
import random
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from rxalpaca import StreamClient
from rxalpaca.errors import ConnectionLostError
from rxalpaca.testing import AlpacaStreamServer

from .conftest import (
    TIMING_FACTOR,
    CountingObserver,
    assert_books_balance,
    record_for,
    wait_server_pairs,
)

CHANNELS = ("trades", "quotes", "bars")
SYMBOLS = [f"S{i:03d}" for i in range(200)]
THREADS = 100
OPS_PER_THREAD = 100
MIN_SOCKET_OPS = 300
SEED = 4242


class Pool:
    """Live subscriptions: (channel, symbols, disposable, observer)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.live: list[tuple[str, tuple[str, ...], Any, CountingObserver]] = []
        self.observers: list[CountingObserver] = []
        self.failures: list[BaseException] = []
        self.ops = 0
        self.socket_ops = 0
        self.cond = threading.Condition()

    def op(self, client: StreamClient, rng: random.Random) -> None:
        with self.lock:
            n_live = len(self.live)
            victim = None
            if n_live and rng.random() < 0.45:
                victim = self.live.pop(rng.randrange(n_live))
        if victim is not None:
            victim[2].dispose()
            return
        ch = rng.choice(CHANNELS)
        syms = tuple(rng.sample(SYMBOLS, rng.choice((1, 1, 1, 2, 3))))
        obs = CountingObserver()
        stream = {"trades": client.trades, "quotes": client.quotes, "bars": client.bars}[ch]
        sub = stream(*syms).subscribe(obs)
        with self.lock:
            self.live.append((ch, syms, sub, obs))
            self.observers.append(obs)

    def pairs(self) -> set[tuple[str, str]]:
        with self.lock:
            return {(ch, s) for ch, syms, _, _ in self.live for s in syms}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("drops", [0, 5], ids=["steady", "with-drops"])
def test_hundred_threads_subscribe_and_dispose(
    alpaca_server_factory: Callable[..., AlpacaStreamServer],
    make_client: Callable[..., StreamClient],
    drops: int,
) -> None:
    server = alpaca_server_factory(test_stream=False)
    # The subject is thread safety, not the server's speed: with a hundred threads and
    # the server's loop sharing one GIL on a loaded machine (coverage on, both cores
    # busy), an ack can take longer than the default 5 s, and the ReplyTimeout
    # reconnect that follows would be counted below as an error the drops did not cause.
    client = make_client(server, reply_timeout=60 * TIMING_FACTOR)
    errors: list[Exception] = []
    client.errors.subscribe(errors.append)
    pool = Pool()
    socket_rng = random.Random(SEED)
    socket_threads: set[str] = set()

    class Trigger(CountingObserver):
        """On the socket thread: every trigger message performs one pool operation.

        ``quiesce()`` stops them for good and waits out one in progress: disposing the
        subscription cannot stop an ``on_next`` already running (or already dispatched),
        and an operation finishing after the test's snapshot of the pool would make the
        snapshot stale while client and server agree.
        """

        stopped = False
        active = 0

        def on_next(self, _value: Any) -> None:
            super().on_next(_value)
            socket_threads.add(threading.current_thread().name)
            with pool.cond:
                if self.stopped:
                    return
                self.active += 1
            try:
                pool.op(client, socket_rng)
            except BaseException as exc:
                pool.failures.append(exc)
                raise
            finally:
                with pool.cond:
                    self.active -= 1
                    pool.cond.notify_all()
            with pool.cond:
                pool.socket_ops += 1
                pool.cond.notify_all()

        def quiesce(self) -> None:
            with pool.cond:
                self.stopped = True
                assert pool.cond.wait_for(lambda: self.active == 0, 30 * TIMING_FACTOR)

    trigger = Trigger()
    trig_sub = client.trades("TRIG").subscribe(trigger)
    server.wait_for_subscriptions({"trades": {"TRIG"}}, timeout=5 * TIMING_FACTOR)

    barrier = threading.Barrier(THREADS + 1)
    stop = threading.Event()

    def worker(i: int) -> None:
        rng = random.Random(SEED + 1 + i)
        try:
            barrier.wait(30 * TIMING_FACTOR)
            for _ in range(OPS_PER_THREAD):
                pool.op(client, rng)
                with pool.lock:
                    pool.ops += 1
        except BaseException as exc:
            pool.failures.append(exc)

    uid = 0
    dropped = 0
    all_dropped = threading.Event()
    if drops == 0:
        all_dropped.set()

    def publisher() -> None:
        nonlocal uid, dropped
        rng = random.Random(SEED - 1)
        rounds = 0
        while not stop.is_set():
            rounds += 1
            if dropped < drops and rounds % 10 == 0:
                live = server.connections(include_closed=False)
                if live:  # (between connections there is nothing to drop)
                    server.drop(live[-1].id)  # abruptly: the churn goes on
                    dropped += 1
                    if dropped == drops:
                        all_dropped.set()
            recs = []
            for _ in range(8):
                uid += 1
                recs.append(record_for(rng.choice(CHANNELS), rng.choice(SYMBOLS), uid))
            uid += 1
            recs.append(record_for("trades", "TRIG", uid))
            try:
                server.publish(recs)  # every authenticated connection
            except Exception as exc:  # pragma: no cover - reported below
                pool.failures.append(exc)
                return
            time.sleep(0.002)  # pacing

    threads = [
        threading.Thread(target=worker, args=(i,), name=f"worker-{i}", daemon=True)
        for i in range(THREADS)
    ]
    pub = threading.Thread(target=publisher, name="publisher", daemon=True)
    for t in threads:
        t.start()
    pub.start()
    t0 = time.monotonic()
    barrier.wait(30 * TIMING_FACTOR)
    deadline = t0 + 120 * TIMING_FACTOR
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    stuck = [t.name for t in threads if t.is_alive()]
    if stuck:
        faulthandler.dump_traceback(file=sys.stderr)
        stop.set()
        pytest.fail(f"deadlock? threads still running after the timeout: {stuck[:10]}")
    elapsed = time.monotonic() - t0
    # Make sure enough operations ran on the socket thread (they also ran meanwhile).
    with pool.cond:
        ok = pool.cond.wait_for(lambda: pool.socket_ops >= MIN_SOCKET_OPS, 30 * TIMING_FACTOR)
    assert all_dropped.wait(30 * TIMING_FACTOR), f"only {dropped} of {drops} drops"
    stop.set()
    pub.join(10)
    assert ok, f"only {pool.socket_ops} operations on the socket thread"
    assert not pool.failures, pool.failures[:5]
    assert pool.ops == THREADS * OPS_PER_THREAD
    assert all(name.endswith("-socket") for name in socket_threads), socket_threads
    assert dropped == drops

    # Quiesce: the trigger no longer operates; the server must hold exactly the union.
    trigger.quiesce()
    trig_sub.dispose()
    expected = pool.pairs()
    wait_server_pairs(server, expected, CHANNELS, timeout=10 * TIMING_FACTOR)
    assert client._book.wanted() == expected
    with pool.lock:
        registered = sum(len(syms) for _, syms, _, _ in pool.live)
    assert client._router.observer_count() == registered
    assert client._router.entries() == len(expected)

    for obs in [*pool.observers, trigger]:
        assert obs.errors == [] and obs.completed == 0, obs.errors
    assert [e for e in errors if not isinstance(e, ConnectionLostError)] == []
    assert len(errors) == drops  # one ConnectionLostError per drop, nothing else
    delivered = sum(o.n for o in pool.observers)

    # Dispose everything: nothing left anywhere.
    with pool.lock:
        live, pool.live = pool.live, []
    for _, _, sub, _ in live:
        sub.dispose()
    wait_server_pairs(server, set(), CHANNELS, timeout=10 * TIMING_FACTOR)
    assert client._router.entries() == 0 and client._router.observer_count() == 0
    assert client._book.live == 0 and client._book.wanted() == set()
    assert_books_balance(client)
    print(
        f"\nconcurrency ({drops} drops): {pool.ops} thread ops + {pool.socket_ops} "
        f"socket-thread ops in {elapsed:.1f} s; {len(expected)} pairs live at the end; "
        f"{delivered} values delivered to churn observers; "
        f"{client._book.requests_sent} requests sent",
        file=sys.stderr,
    )


@pytest.mark.timeout(60)
@pytest.mark.parametrize("resume_at", ["authenticating", "authenticated"])
def test_a_request_taken_before_a_drop_never_reaches_the_next_session(
    alpaca_server_factory: Callable[..., AlpacaStreamServer],
    make_client: Callable[..., StreamClient],
    resume_at: str,
) -> None:
    """The supervisor takes a request from the book, then loses the CPU before writing
    it; meanwhile the socket drops, the client reconnects and authenticates. The stale
    request must not go out on the new socket ahead of the new session's replay: the
    server would answer it first, and its ack would be taken for the replay's
    (a false ``SubscriptionMismatch``, two requests in flight where the book counts one)
    — or, written before the new session's auth reply, it is refused with 401, which
    ends the client for good. The pause is made deterministic with a send tap that
    blocks the supervisor's write until the next session reaches ``resume_at``.
    """
    server = alpaca_server_factory(test_stream=False)
    client = make_client(server)
    errors: list[Exception] = []
    client.errors.subscribe(errors.append)
    authenticated = threading.Semaphore(0)
    resumed = threading.Semaphore(0)

    def on_state(state: Any) -> None:
        if state.value == "authenticated":
            authenticated.release()
        if state.value == resume_at:
            resumed.release()

    client.state.subscribe(on_state)
    subs = [client.trades("AAA").subscribe(lambda _r: None)]
    server.wait_for_subscriptions({"trades": {"AAA"}}, timeout=5 * TIMING_FACTOR)
    assert authenticated.acquire(timeout=5 * TIMING_FACTOR)
    assert resumed.acquire(timeout=5 * TIMING_FACTOR)

    in_send = threading.Event()
    release = threading.Event()

    def tap(message: dict[str, Any]) -> None:
        # Block only the supervisor's write of the next subscribe (not the replay).
        if message.get("action") == "subscribe" and threading.current_thread().name.endswith(
            "-supervisor"
        ):
            in_send.set()
            # Bounded: with the defect fixed, the reconnect waits for this write.
            release.wait(3 * TIMING_FACTOR)

    upstream = client._upstream
    upstream.send_taps = (*upstream.send_taps, tap)
    subs.append(client.trades("BBB").subscribe(lambda _r: None))
    assert in_send.wait(5 * TIMING_FACTOR), "the supervisor never sent the request"
    first = server.connections(include_closed=False)[-1].id
    server.drop(first)
    # Without the fix the next session gets this far while the stale write is paused;
    # with it, the reconnect waits until the write is done (the tap's wait runs out).
    resumed.acquire(timeout=2 * TIMING_FACTOR)
    release.set()
    assert authenticated.acquire(timeout=10 * TIMING_FACTOR), f"never reconnected: {errors}"
    info = server.wait_for_subscriptions({"trades": {"AAA", "BBB"}}, timeout=10 * TIMING_FACTOR)
    assert info.id != first
    requests = [m for m in info.received if isinstance(m, dict) and m.get("action") != "auth"]
    assert requests == [{"action": "subscribe", "trades": ["AAA", "BBB"]}], requests
    assert [e for e in errors if not isinstance(e, ConnectionLostError)] == []
    for sub in subs:
        sub.dispose()
