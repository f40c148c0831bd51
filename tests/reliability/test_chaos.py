"""Chaos: a seeded run of hundreds of faults against a client streaming 50 symbols x 3 channels.

Knobs (environment):

* ``RXALPACA_CHAOS_SECONDS``: run for this long (no cap on the number of faults). Unset
  (CI), the run stops after ``CI_FAULTS`` faults or ``CI_SECONDS`` seconds, whichever
  comes first; at least ``MIN_FAULTS`` must have been injected.
* ``RXALPACA_CHAOS_SEED``: the seed of the fault schedule (default ``20261127``).

How delivery is matched exactly
-------------------------------
Every published message carries a unique id ``uid = connection_id * 10**7 + n`` and is
published *to one connection* (``server.publish(..., conn=cid)``), so each message the
client receives says on which server connection it travelled. The server logs what it
really sent on each connection (``ConnectionInfo.sent_data``, in wire order). For the
50 core symbols x 3 channels, which one observer per channel holds all run long:

* nothing is received twice, nothing is received that the server did not send on that
  connection, and per connection the received messages keep the server's order (so
  per symbol too, and never an older connection's message after a newer one's);
* on each connection, every message up to the last one received was received, except
  the ones whose frame the test deliberately corrupted (each one must show up as one
  ``FrameError`` on ``client.errors``, waited for, so the count is exact);
* after the last one received, a connection may only be missing messages if it was
  dropped abruptly (queued data is lost with the socket) or, for a ``407``, only those
  published after the ``407`` was queued (the client leaves on reading it). A connection
  closed with a close frame, a ``500``+close, or still open must have delivered all.

Missing resubscriptions cannot hide behind "the server never sent it": at every sync
point the newest connection's subscription set must equal the union of the live
subscriptions (core + churn) and a probe message must come through.
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections import Counter, defaultdict
from typing import Any

import pytest

from rxalpaca import ConnectionState, StreamClient
from rxalpaca.errors import (
    ConnectionLimitExceeded,
    ConnectionLostError,
    FrameError,
    InternalServerError,
    ReplyTimeout,
    SlowClient,
)
from rxalpaca.testing import AlpacaStreamServer, ConnectionInfo, Fault

from .conftest import (
    TIMING_FACTOR,
    CountingObserver,
    EventLog,
    Recorder,
    assert_books_balance,
    new_client,
    record_for,
    wire_uid,
)

CHANNELS = ("trades", "quotes", "bars")
CORE = [f"S{i:02d}" for i in range(50)]
CHURN = [f"C{i:02d}" for i in range(20)]
CORE_SET = frozenset(CORE)
CORE_PAIRS = {(ch, s) for ch in CHANNELS for s in CORE}
UID_BASE = 10**7

CI_FAULTS = 300
CI_SECONDS = 50.0
MIN_FAULTS = 200
SEED = int(os.environ.get("RXALPACA_CHAOS_SEED", "20261127"))
_ENV_SECONDS = os.environ.get("RXALPACA_CHAOS_SECONDS")

#: Fault kind -> weight. Corruptions are injected at sync points only (so the lost
#: frame is a known data frame and its FrameError can be awaited); the rest any time,
#: including in the middle of a reconnect.
WEIGHTS = {
    "drop": 3.0,
    "close": 2.0,
    "error_500": 1.5,
    "error_407": 1.5,
    "auth_406": 1.0,
    "slow_auth": 1.0,
    "mute": 1.5,
    "split": 2.0,
    "corrupt": 1.5,
    "bad_frame": 0.8,
}
LOSSY = {"drop", "error_407"}
CLOSE_CODES = (1000, 1001, 1011, 1012, 1013, 4000, 4999)
#: What may legitimately appear on ``client.errors`` during the run.
EXPECTED_ERRORS = (
    ConnectionLostError,
    FrameError,
    SlowClient,
    InternalServerError,
    ConnectionLimitExceeded,
)


class ChaosRun:
    def __init__(self, server: AlpacaStreamServer, client: StreamClient, seed: int) -> None:
        self.server = server
        self.client = client
        self.rng = random.Random(seed)
        self.log = EventLog()
        self.recorders: dict[str, Recorder] = {}
        self.core_subs: list[Any] = []
        self.churn: list[tuple[str, str, Any, CountingObserver]] = []
        self.churn_observers: list[CountingObserver] = []
        self.n = 0  # uid counter
        self.pub_count: Counter[int] = Counter()  # messages queued per connection
        self.faults: Counter[str] = Counter()
        self.conn_faults: dict[int, list[str]] = defaultdict(list)
        self.cut_407: dict[int, int] = {}
        self.corrupted: set[int] = set()
        self.frame_errors: list[FrameError] = []
        self.errors: list[BaseException] = []
        self.muted: set[int] = set()
        self.slow_auth_on = False
        self.syncs = 0
        self.churn_ops = 0
        self.timeout = 10.0 * TIMING_FACTOR
        client.errors.subscribe(self._on_client_error)

    # ---- client side

    def _on_client_error(self, err: Exception) -> None:
        with self.log.cond:
            self.errors.append(err)
            if isinstance(err, FrameError):
                self.frame_errors.append(err)
            self.log.cond.notify_all()

    def start(self) -> None:
        streams = {
            "trades": self.client.trades,
            "quotes": self.client.quotes,
            "bars": self.client.bars,
        }
        for ch in CHANNELS:
            rec = self.recorders[ch] = Recorder(ch, self.log)
            self.core_subs.append(streams[ch](*CORE).subscribe(rec))

    def expected_pairs(self) -> set[tuple[str, str]]:
        return CORE_PAIRS | {(ch, s) for ch, s, _, _ in self.churn}

    def churn_step(self) -> None:
        self.churn_ops += 1
        if self.churn and self.rng.random() < 0.5:
            _, _, sub, _ = self.churn.pop(self.rng.randrange(len(self.churn)))
            sub.dispose()
            return
        ch = self.rng.choice(CHANNELS)
        sym = self.rng.choice(CHURN if self.rng.random() < 0.7 else CORE)
        obs = CountingObserver()
        stream = {
            "trades": self.client.trades,
            "quotes": self.client.quotes,
            "bars": self.client.bars,
        }[ch]
        self.churn.append((ch, sym, stream(sym).subscribe(obs), obs))
        self.churn_observers.append(obs)

    # ---- server side

    def open_conns(self) -> list[ConnectionInfo]:
        return self.server.connections(include_closed=False)

    def current(self) -> ConnectionInfo | None:
        conns = self.open_conns()
        return conns[-1] if conns else None

    def next_uid(self, cid: int) -> int:
        self.n += 1
        assert self.n < UID_BASE
        return cid * UID_BASE + self.n

    def publish(self, cid: int, pairs: list[tuple[str, str]], batch: int) -> list[int]:
        uids = [self.next_uid(cid) for _ in pairs]
        recs = [record_for(ch, s, u) for (ch, s), u in zip(pairs, uids, strict=True)]
        self.pub_count[cid] += self.server.publish(recs, conn=cid, batch=batch)
        return uids

    def publish_round(self) -> None:
        for c in self.open_conns():
            if not c.authenticated:
                continue
            pool = sorted(self.expected_pairs()) + [(ch, s) for ch in CHANNELS for s in CHURN[:5]]
            k = self.rng.randint(10, 60) if self.rng.random() < 0.9 else len(pool)
            pairs = self.rng.sample(pool, k=min(len(pool), k))
            self.publish(c.id, pairs, batch=self.rng.choice((1, 1, 3, 10)))

    def sync(self) -> ConnectionInfo:
        """Wait until the newest connection holds exactly the live subscriptions and a
        probe published on it reaches the observer (so every earlier frame was read)."""
        deadline = time.monotonic() + 3 * self.timeout
        for cid in list(self.muted):
            self.server.mute(cid, on=False)
            self.muted.discard(cid)
        while True:
            expected = self.expected_pairs()
            want = {ch: {s for c, s in expected if c == ch} for ch in CHANNELS}

            def ready(cs: list[ConnectionInfo], want: dict[str, set[str]] = want) -> bool:
                live = [c for c in cs if not c.closed]
                return (
                    bool(live)
                    and live[-1].authenticated
                    and all(live[-1].subscriptions.get(ch, set()) == want[ch] for ch in CHANNELS)
                )

            remaining = deadline - time.monotonic()
            assert remaining > 0, (
                f"no steady state: client {self.client.current_state}, "
                f"expected {len(expected)} pairs, server {self.open_conns()!r:.2000}"
            )
            snap = self.server.wait_for(ready, timeout=remaining)
            conn = [c for c in snap if not c.closed][-1]
            probe = self.publish(conn.id, [("trades", self.rng.choice(CORE))], batch=1)[0]
            if self.log.wait_uid(probe, min(2.0 * TIMING_FACTOR, max(0.1, remaining))):
                self.syncs += 1
                assert self.client.current_state is ConnectionState.AUTHENTICATED
                return conn
            # The connection went away under the probe (a 407 being acted on): go round.

    def corrupt(self, kind: str) -> None:
        conn = self.sync()
        before = len(self.frame_errors)
        if kind == "corrupt":
            self.server.corrupt_next_frame(conn.id)
        else:
            fault = self.rng.choice((Fault.INVALID, Fault.TRUNCATED))
            self.server.send_fault(fault, conn.id)
        uid = self.publish(conn.id, [("quotes", self.rng.choice(CORE))], batch=1)[0]
        if kind == "corrupt":
            self.corrupted.add(uid)
        with self.log.cond:
            ok = self.log.cond.wait_for(lambda: len(self.frame_errors) > before, self.timeout)
        assert ok, f"no FrameError for the {kind} frame on connection {conn.id}"
        if kind == "bad_frame":
            # The canned fault comes before our message, which must still arrive.
            assert self.log.wait_uid(uid, self.timeout)
        self.conn_faults[conn.id].append(kind)

    def inject(self, kind: str) -> None:
        self.faults[kind] += 1
        if kind in ("corrupt", "bad_frame"):
            self.corrupt(kind)
            return
        if kind == "auth_406":
            self.server.fail_next_auth(406)
            return
        if kind == "slow_auth":
            self.slow_auth_on = not self.slow_auth_on
            self.server.slow_auth(self.rng.uniform(0.02, 0.2) if self.slow_auth_on else 0)
            return
        conn = self.current()
        if conn is None:
            # Between connections (backing off): nothing to hit; not counted.
            self.faults[kind] -= 1
            return
        cid = conn.id
        self.conn_faults[cid].append(kind)
        if kind == "drop":
            self.server.drop(cid)
        elif kind == "close":
            self.server.close(cid, code=self.rng.choice(CLOSE_CODES))
        elif kind == "error_500":
            self.server.inject_internal_error(cid)
        elif kind == "error_407":
            self.cut_407.setdefault(cid, self.pub_count[cid])
            self.server.send_error(407, cid)
        elif kind == "mute":
            on = cid not in self.muted
            self.server.mute(cid, on=on)
            (self.muted.add if on else self.muted.discard)(cid)
        elif kind == "split":
            self.server.split_next_frame(self.rng.randint(2, 6), cid)
        else:  # pragma: no cover
            raise AssertionError(kind)

    def run(self, seconds: float, max_faults: int | None) -> float:
        kinds = list(WEIGHTS)
        weights = [WEIGHTS[k] for k in kinds]
        t0 = time.monotonic()
        self.sync()
        since_sync = 0
        while time.monotonic() - t0 < seconds and (
            max_faults is None or sum(self.faults.values()) < max_faults
        ):
            if self.rng.random() < 0.3:
                self.churn_step()
            self.publish_round()
            self.inject(self.rng.choices(kinds, weights)[0])
            since_sync += 1
            if since_sync >= 20:
                self.sync()
                since_sync = 0
            time.sleep(self.rng.uniform(0.0, 0.01))  # pacing, not synchronisation
        elapsed = time.monotonic() - t0
        # Heal, settle, and send one message on every core pair.
        if self.slow_auth_on:
            self.server.slow_auth(0)
            self.slow_auth_on = False
        conn = self.sync()
        last = self.publish(conn.id, sorted(CORE_PAIRS), batch=10)
        for uid in last:
            assert self.log.wait_uid(uid, self.timeout), f"final message {uid} not delivered"
        self.sync()
        return elapsed


def check_delivery(run: ChaosRun, conns: list[ConnectionInfo]) -> dict[str, int]:
    """The exact per-connection accounting described in the module docstring."""
    items = list(run.log.items)
    uids = [u for _, _, u in items]
    assert len(uids) == len(set(uids)), "a message was delivered twice"
    received_by_conn: dict[int, list[int]] = defaultdict(list)
    key_of: dict[int, tuple[str, str]] = {}
    for ch, sym, uid in items:
        received_by_conn[uid // UID_BASE].append(uid)
        key_of[uid] = (ch, sym)
    # Per symbol: never an older connection's message after a newer one's, and in order.
    last_per_key: dict[tuple[str, str], int] = {}
    for ch, sym, uid in items:
        prev = last_per_key.get((ch, sym))
        assert prev is None or uid > prev, f"{ch}/{sym}: {uid} after {prev}"
        last_per_key[(ch, sym)] = uid

    final_id = conns[-1].id if conns else -1
    totals = Counter[str]()
    for c in conns:
        assert c.sent_data_count == len(c.sent_data), "server sent log truncated"
        totals["connections"] += 1
        sent_all = [wire_uid(r.record) for r in c.sent_data]
        pos = {u: i for i, u in enumerate(sent_all)}
        core = [
            (i, u)
            for i, (u, r) in enumerate(zip(sent_all, c.sent_data, strict=True))
            if r.symbol in CORE_SET
        ]
        got = received_by_conn.pop(c.id, [])
        for u in got:
            assert u in pos, f"message {u} received but never sent on connection {c.id}"
            rec = c.sent_data[pos[u]]
            assert key_of[u][1] == rec.symbol
        positions = [pos[u] for u in got]
        assert positions == sorted(positions), f"connection {c.id}: out of order"
        got_set = set(got)
        last_pos = positions[-1] if positions else -1
        faults = run.conn_faults.get(c.id, [])
        cut = run.cut_407.get(c.id)
        totals["sent"] += len(core)
        totals["received"] += len(got)
        for i, u in core:
            if u in got_set:
                continue
            if u in run.corrupted:
                totals["lost_corrupted"] += 1
                continue
            assert i > last_pos, f"connection {c.id}: message {u} lost in the middle"
            if "drop" in faults:
                totals["lost_with_dropped_socket"] += 1
            elif cut is not None and i >= cut:
                totals["lost_after_407"] += 1
            else:
                raise AssertionError(
                    f"connection {c.id} ({'final' if c.id == final_id else c.close_reason}, "
                    f"faults {faults}): message {u} at {i} of {len(sent_all)} not delivered "
                    f"(last received at {last_pos}, 407 cut {cut})"
                )
        for u in run.corrupted & got_set:
            raise AssertionError(f"corrupted message {u} was delivered")
    assert not received_by_conn, f"messages from unknown connections: {list(received_by_conn)}"
    return dict(totals)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_chaos(alpaca_server_factory: Any) -> None:
    seconds = float(_ENV_SECONDS) if _ENV_SECONDS else CI_SECONDS
    max_faults = None if _ENV_SECONDS else CI_FAULTS
    server: AlpacaStreamServer = alpaca_server_factory(
        sent_log_size=10_000_000, closed_logs=None, test_stream=False
    )
    client = new_client(server)
    try:
        run = ChaosRun(server, client, SEED)
        run.start()
        elapsed = run.run(seconds, max_faults)

        conns = server.connections()
        final = conns[-1]
        # The client ends authenticated, on the newest connection, holding exactly the
        # union of live subscriptions.
        assert client.current_state is ConnectionState.AUTHENTICATED
        expected = run.expected_pairs()
        got = {(ch, s) for ch in CHANNELS for s in final.subscriptions.get(ch, set())}
        assert not final.closed and final.authenticated
        assert got == expected
        assert client._book.wanted() == expected

        # No exception ever reached user code.
        for rec in run.recorders.values():
            assert rec.errors == [] and rec.completed == 0, (rec.channel, rec.errors)
        for obs in run.churn_observers:
            assert obs.errors == [] and obs.completed == 0, obs.errors
        unexpected = [e for e in run.errors if not isinstance(e, EXPECTED_ERRORS)]
        assert not unexpected, unexpected

        # Corrupted and canned bad frames are each exactly one FrameError.
        bad = run.faults["corrupt"] + run.faults["bad_frame"]
        assert len(run.frame_errors) == bad
        assert client.metrics.frames_failed == bad

        totals = check_delivery(run, conns)
        assert_books_balance(client)

        n_faults = sum(run.faults.values())
        assert n_faults >= MIN_FAULTS, run.faults
        m = client.metrics
        summary = {
            "seed": SEED,
            "seconds": round(elapsed, 1),
            "faults": n_faults,
            "by_kind": dict(sorted(run.faults.items())),
            "connections": len(conns),
            "reconnects": m.reconnects,
            "syncs": run.syncs,
            "churn_ops": run.churn_ops,
            "frames_received": m.frames_received,
            "frames_failed": m.frames_failed,
            "messages_decoded": m.messages_decoded,
            "messages_delivered": m.messages_delivered,
            "messages_unrouted": m.messages_unrouted,
            "client_errors": dict(Counter(type(e).__name__ for e in run.errors)),
            **totals,
        }
        print(f"\nchaos summary: {summary}", file=sys.stderr)
    finally:
        client.close()


# ---------------------------------------------------------------- control frames lost
# The chaos run corrupts data frames only (so the loss is countable). A corrupted
# *control* frame is a different matter: without a reply deadline the client would
# wait for it forever. With one, it drops the socket and the reconnect replays.

REPLY_TIMEOUT = 1.0  # shorter than the 5 s default so the tests stay quick
RECOVERY_S = 6.0  # the deadline plus a reconnect, with room for a busy machine


def _errors_of(client: Any) -> list[Exception]:
    seen: list[Exception] = []
    client.errors.subscribe(seen.append)
    return seen


def _assert_one_reply_timeout(client: Any, errors: list[Exception], about: str) -> None:
    """Exactly one deadline fired, counted in metrics and published on ``errors``."""
    assert client.metrics.reply_timeouts == 1
    timeouts = [e for e in errors if isinstance(e, ReplyTimeout)]
    assert len(timeouts) == 1 and about in str(timeouts[0])


@pytest.mark.timeout(60)
def test_lost_subscription_ack_does_not_wedge_later_changes(
    alpaca_server_factory: Any,
) -> None:
    server: AlpacaStreamServer = alpaca_server_factory(test_stream=False)
    client = new_client(server, reply_timeout=REPLY_TIMEOUT)
    errors = _errors_of(client)
    try:
        client.trades("A").subscribe(lambda _: None)
        conn = server.wait_for_subscriptions({"trades": {"A"}}, timeout=5 * TIMING_FACTOR)
        server.corrupt_next_frame(conn.id)  # the next frame is the ack of B
        client.trades("B").subscribe(lambda _: None)
        server.wait_for_subscriptions({"trades": {"A", "B"}}, timeout=5 * TIMING_FACTOR)
        client.trades("C").subscribe(lambda _: None)
        final = server.wait_for_subscriptions(
            {"trades": {"A", "B", "C"}}, timeout=RECOVERY_S * TIMING_FACTOR
        )
        # Recovered by dropping the wedged socket: a new connection holds everything.
        assert final.id != conn.id
        _assert_one_reply_timeout(client, errors, "subscribe")
    finally:
        client.close()


@pytest.mark.timeout(60)
def test_lost_auth_reply_is_recovered(alpaca_server_factory: Any) -> None:
    server: AlpacaStreamServer = alpaca_server_factory(test_stream=False)
    server.slow_auth(0.3)  # time to target the connection between greeting and reply
    client = new_client(server, reply_timeout=REPLY_TIMEOUT)
    errors = _errors_of(client)
    try:
        client.trades("A").subscribe(lambda _: None)
        conn = server.wait_for_connection(1, timeout=5 * TIMING_FACTOR)
        server.corrupt_next_frame(conn.id)  # the next frame is "authenticated"
        final = server.wait_for_subscriptions({"trades": {"A"}}, timeout=RECOVERY_S * TIMING_FACTOR)
        assert final.id != conn.id
        assert client.current_state is ConnectionState.AUTHENTICATED
        _assert_one_reply_timeout(client, errors, "authenticated")
    finally:
        client.close()


@pytest.mark.timeout(60)
def test_a_slow_reply_within_the_deadline_is_not_a_timeout(
    alpaca_server_factory: Any,
) -> None:
    """The deadline must not fire on a server that is merely slow."""
    server: AlpacaStreamServer = alpaca_server_factory(test_stream=False)
    server.slow_auth(0.5)
    client = new_client(server, reply_timeout=REPLY_TIMEOUT * 3 * TIMING_FACTOR)
    try:
        client.trades("A").subscribe(lambda _: None)
        conn = server.wait_for_subscriptions({"trades": {"A"}}, timeout=10 * TIMING_FACTOR)
        assert len(server.connections()) == 1 and conn.authenticated
        assert client.metrics.reply_timeouts == 0
    finally:
        client.close()
