"""The bus between real processes: a gateway process, consumer processes, real nats-servers.

Each test starts its own ``nats-server`` (or a 3-node cluster) and the embedded
Alpaca server in this process; the gateway (``_gateway.py``) and the consumers
(``_consumer.py``) are separate Python processes that report every state, record,
gap and error as a JSON line on stdout. The tests wait on those lines (and on the
Alpaca server's ``wait_for_*``), never on a clock, and check what each consumer got
against what the Alpaca server says it sent (``connections()[…].sent_data``).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from rxalpaca.testing import AlpacaStreamServer, MarketConfig
from rxalpaca.testing.nats_server import NatsServer
from tests._subprocess import child_env, python_command
from tests.conftest import TIMING_FACTOR

pytestmark = pytest.mark.timeout(90)

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
CHANNEL_OF = {"t": "trades", "q": "quotes"}
LEASE = 2.0
HEARTBEAT = 0.3

Pair = tuple[str, str]
Rec = tuple[int, int]  # (exchange time ns, trade id)
Subs = list[tuple[str, list[str]]]


# ---------------------------------------------------------------------- processes


class Proc:
    """A gateway or consumer process and everything it has printed, with waits on it."""

    def __init__(self, name: str, script: str, config: Mapping[str, Any]) -> None:
        self.name = name
        self.config = dict(config)
        self.marker = ""
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by reap()
        self.popen = subprocess.Popen(
            python_command(str(HERE / script), json.dumps(config)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd=ROOT,
            env=child_env(),
        )
        self.events: list[dict[str, Any]] = []  # everything but records, in order
        self.records: dict[Pair, list[Rec]] = {}
        self.count = 0
        self._seen: set[tuple[str, str, int]] = set()
        self._eof = False
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, name=f"read-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            ev = json.loads(line)
            with self._cond:
                if ev["ev"] == "rec":
                    self.records.setdefault((ev["ch"], ev["S"]), []).append((ev["t"], ev["i"]))
                    self._seen.add((ev["ch"], ev["S"], ev["t"]))
                    self.count += 1
                else:
                    # Where it fell among the records: how many of each pair came before.
                    ev["_at"] = {f"{c} {s}": len(r) for (c, s), r in self.records.items()}
                    self.events.append(ev)
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    # -- waiting

    def wait(self, pred: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
        """Block until ``pred()`` (called under the lock) holds; fail saying ``what``."""
        with self._cond:
            ok = self._cond.wait_for(lambda: pred() or self._eof, timeout * TIMING_FACTOR)
            if ok and pred():
                return
        raise AssertionError(f"{self.name}: no {what} within {timeout} s{self.tail()}")

    def event(
        self, kind: str, after: int = 0, timeout: float = 15.0, **match: Any
    ) -> tuple[int, dict[str, Any]]:
        """The first event of ``kind`` at index ≥ ``after`` whose fields match (waits)."""
        found: list[tuple[int, dict[str, Any]]] = []

        def look() -> bool:
            for i in range(after, len(self.events)):
                ev = self.events[i]
                if ev["ev"] == kind and all(ev.get(k) == v for k, v in match.items()):
                    found.append((i, ev))
                    return True
            return False

        self.wait(look, f"{kind} event {match or ''} after #{after}", timeout)
        return found[0]

    def wait_state(self, state: str, after: int = 0, timeout: float = 15.0) -> int:
        return self.event("state", after, timeout, state=state)[0]

    def has(self, pair: Pair, t: int) -> bool:
        return (pair[0], pair[1], t) in self._seen

    def wait_records(self, expected: Mapping[Pair, Sequence[Rec]], timeout: float = 20.0) -> None:
        """Until the last expected record of every pair has arrived."""
        lasts = [(pair, recs[-1][0]) for pair, recs in expected.items() if recs]
        self.wait(lambda: all(self.has(p, t) for p, t in lasts), "complete delivery", timeout)

    def snapshot(self) -> tuple[dict[Pair, list[Rec]], list[dict[str, Any]]]:
        with self._cond:
            return {p: list(r) for p, r in self.records.items()}, list(self.events)

    def of(self, kind: str, **match: Any) -> list[dict[str, Any]]:
        with self._cond:
            return [
                e
                for e in self.events
                if e["ev"] == kind and all(e.get(k) == v for k, v in match.items())
            ]

    # -- control

    def send(self, command: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(command.encode() + b"\n")
        self.popen.stdin.flush()

    def kill(self) -> None:
        """SIGKILL: a crash."""
        self.popen.kill()
        self.popen.wait()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, and wait for a clean exit (the client closes)."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            self.popen.wait(timeout * TIMING_FACTOR)
        assert self.popen.returncode == 0, (
            f"{self.name} exited {self.popen.returncode}{self.tail()}"
        )

    def tail(self) -> str:
        self._stderr.seek(0)
        err = self._stderr.read().decode(errors="replace")[-3000:]
        events = self.events[-15:]
        return f"\n  last events: {events}\n  stderr: {err}"

    def reap(self, grace: float = 0.0) -> str:
        """Kill it if it still runs after ``grace`` seconds, release its pipes; returns
        what it said last."""
        if self.popen.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(grace)
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        self._reader.join(5)  # at EOF now
        for f in (self.popen.stdin, self.popen.stdout):
            if f is not None:
                f.close()
        said = self.tail()
        self._stderr.close()
        return said


class Procs:
    """Starts the processes of one test; every one of them is stopped at teardown."""

    def __init__(self, alpaca: AlpacaStreamServer, prefix: str) -> None:
        self.alpaca = alpaca
        self.prefix = prefix
        self.all: list[Proc] = []

    def gateway(self, nats: list[str], name: str = "gateway", **config: Any) -> Proc:
        config = {"nats": nats, "prefix": self.prefix, "url": self.alpaca.base_url, **config}
        config.setdefault("heartbeat", HEARTBEAT)
        proc = Proc(name, "_gateway.py", config)
        self.all.append(proc)
        # Not waited for: consumers started meanwhile declare themselves at its hello.
        return proc

    def consumer(self, name: str, nats: list[str], subs: Subs, **config: Any) -> Proc:
        """A consumer process of ``subs``, plus quotes of a symbol of its own (``.marker``).

        Only this consumer wants its marker, so seeing it subscribed upstream proves
        this consumer's lease arrived, and its NATS subscriptions (made before the
        lease is sent) are in place: :func:`upstream` waits for that.
        """
        marker = f"MK{len(self.all)}"
        subs = [*subs, ("quotes", [marker])]
        config = {"nats": nats, "prefix": self.prefix, "subs": subs, **config}
        config.setdefault("lease", LEASE)
        proc = Proc(name, "_consumer.py", config)
        proc.marker = marker
        self.all.append(proc)
        return proc

    def close(self) -> None:
        # SIGTERM first, to all at once: a process that closes cleanly saves its
        # coverage data (tests/_subprocess.py); one that does not is killed.
        for p in self.all:
            if p.popen.poll() is None:
                p.popen.send_signal(signal.SIGTERM)
        for p in self.all:
            said = p.reap(grace=5 * TIMING_FACTOR)
            # Shown by pytest only when the test failed: what every process said.
            print(f"--- {p.name} (exit {p.popen.returncode}){said}")


_prefixes = itertools.count()


@pytest.fixture
def procs(alpaca_server: AlpacaStreamServer) -> Iterator[Procs]:
    p = Procs(alpaca_server, f"pp{os.getpid()}x{next(_prefixes)}")
    yield p
    p.close()


@pytest.fixture
def nats() -> Iterator[NatsServer]:
    with NatsServer() as server:
        yield server
        print("--- nats-server:", bytes(server._log[-3000:]).decode(errors="replace"))


# ---------------------------------------------------------------------- data


def wants(subs: Subs, pair: Pair) -> bool:
    ch, sym = pair
    return any(c == ch and (sym in syms or "*" in syms) for c, syms in subs)


def sent(alpaca: AlpacaStreamServer, since_t: int = 0) -> dict[Pair, list[Rec]]:
    """What the Alpaca server sent (every connection, in order), from exchange time ``since_t``."""
    out: dict[Pair, list[Rec]] = {}
    for conn in alpaca.connections():
        assert not conn.logs_dropped
        for r in conn.sent_data:
            t = int(r.record["t"])
            if t >= since_t:
                out.setdefault((CHANNEL_OF[r.T], r.symbol), []).append((t, r.record.get("i", 0)))
    return out


def share(expected: Mapping[Pair, list[Rec]], subs: Subs) -> dict[Pair, list[Rec]]:
    """The part of ``expected`` a consumer with ``subs`` should get."""
    return {pair: recs for pair, recs in expected.items() if wants(subs, pair)}


def union(*subs: Sequence[tuple[str, list[str]]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for s in subs:
        for ch, syms in s:
            out.setdefault(ch, set()).update(syms)
    return out


def gap_covers(gap: Mapping[str, Any], consumer: Proc) -> bool:
    """The gap names exactly the consumer's channels and symbols (its own, no one else's)."""
    want = union(consumer.config["subs"])
    return set(gap["channels"]) == set(want) and set(gap["symbols"]) == set().union(*want.values())


def upstream(alpaca: AlpacaStreamServer, *consumers: Proc, timeout: float = 20.0) -> Any:
    """Wait until one open upstream connection holds every pair of every consumer."""
    want = union(*(c.config["subs"] for c in consumers))
    return alpaca.wait_for_subscriptions(
        lambda subs: all(syms <= subs.get(ch, set()) for ch, syms in want.items()),
        timeout=timeout * TIMING_FACTOR,
    )


_clock = itertools.count(1_700_000_000_000_000_000, 1000)
_ids = itertools.count(1)


def batch(symbols: Sequence[str], n: int) -> list[dict[str, Any]]:
    """``n`` quotes and ``n`` trades of each symbol, each with its own exchange time."""
    out: list[dict[str, Any]] = []
    for _ in range(n):
        for s in symbols:
            q = {"T": "q", "S": s, "bp": 1.0, "bs": 1, "ap": 1.1, "as": 1, "bx": "V", "ax": "V"}
            out.append({**q, "c": ["R"], "z": "C", "t": next(_clock)})
            t = {"T": "t", "S": s, "i": next(_ids), "x": "V", "p": 1.5, "s": 1, "c": ["@"]}
            out.append({**t, "z": "C", "t": next(_clock)})
    return out


def market(symbols: Sequence[str], rate: float, total: int, seed: int = 0) -> MarketConfig:
    return MarketConfig(
        symbols=symbols, rate=rate, total=total, batch=5, seed=seed, mix={"q": 60, "t": 40}
    )


def hole_removed(got: list[Rec], want: list[Rec]) -> bool:
    """``got`` is ``want`` with at most one contiguous run taken out."""
    if len(got) > len(want):
        return False
    head = 0
    while head < len(got) and got[head] == want[head]:
        head += 1
    tail = len(got) - head
    return got[head:] == want[len(want) - tail :] if tail else True


# ---------------------------------------------------------------------- many consumers


def test_three_consumer_processes_get_exactly_their_records(nats: NatsServer, procs: Procs) -> None:
    alpaca = procs.alpaca
    subs: dict[str, Subs] = {
        "c1": [("quotes", ["AAPL", "MSFT"]), ("trades", ["AAPL"])],
        "c2": [("quotes", ["MSFT", "BRK.B"]), ("trades", ["*"])],
        "c3": [("quotes", ["AAPL", "NVDA", "BRK.B"]), ("trades", ["MSFT", "BRK.B"])],
    }
    procs.gateway([nats.url])
    consumers = {name: procs.consumer(name, [nats.url], s) for name, s in subs.items()}
    upstream(alpaca, *consumers.values())
    # TSLA: nobody's quotes, but everybody-trades (c2's "*").
    handle = alpaca.start_market(market(["AAPL", "MSFT", "BRK.B", "NVDA", "TSLA"], 2000, 3000))
    assert handle.done.wait(30 * TIMING_FACTOR)
    expected = sent(alpaca)
    assert ("quotes", "TSLA") not in expected and ("trades", "TSLA") in expected
    assert len(alpaca.connections()) == 1  # one Alpaca connection served all three
    for name, proc in consumers.items():
        mine = share(expected, subs[name])
        proc.wait_records(mine)
        got, events = proc.snapshot()
        assert got.keys() == mine.keys(), f"{name} misrouted: {got.keys() ^ mine.keys()}"
        for pair, recs in mine.items():
            # Nothing missing or duplicated, and each symbol in the order it was sent.
            assert got[pair] == recs, f"{name} {pair}: {len(got[pair])} vs {len(recs)} sent"
        assert not [e for e in events if e["ev"] in ("gap", "error")], events


# ---------------------------------------------------------------------- demand


def test_the_last_consumer_leaving_releases_upstream_within_the_lease(
    nats: NatsServer, procs: Procs
) -> None:
    alpaca = procs.alpaca
    procs.gateway([nats.url])
    a = procs.consumer("a", [nats.url], [("quotes", ["AAPL"]), ("trades", ["MSFT"])])
    b = procs.consumer("b", [nats.url], [("quotes", ["AAPL"])])
    upstream(alpaca, a, b)
    a.send("dispose")
    a.event("disposed")
    # MSFT trades were a's alone: released; AAPL quotes are b's too: kept.
    alpaca.wait_for_subscriptions(
        {"quotes": {"AAPL", b.marker}, "trades": set()}, timeout=LEASE * TIMING_FACTOR
    )
    b.send("dispose")
    b.event("disposed")
    t0 = time.monotonic()
    alpaca.wait_for_subscriptions({"quotes": set(), "trades": set()}, timeout=LEASE * TIMING_FACTOR)
    assert time.monotonic() - t0 < LEASE * TIMING_FACTOR


def test_a_killed_consumer_is_released_when_its_lease_runs_out(
    nats: NatsServer, procs: Procs
) -> None:
    alpaca = procs.alpaca
    procs.gateway([nats.url])
    victim = procs.consumer("victim", [nats.url], [("quotes", ["AAPL", "MSFT"])])
    other = procs.consumer("other", [nats.url], [("quotes", ["MSFT"])])
    upstream(alpaca, victim, other)
    victim.kill()
    t0 = time.monotonic()
    alpaca.wait_for_subscriptions(
        {"quotes": {"MSFT", other.marker}}, timeout=(LEASE + 3) * TIMING_FACTOR
    )
    # Released by the lease, not earlier: it was refreshed at most a third of it ago.
    assert time.monotonic() - t0 > LEASE / 2
    # The other consumer's share was never touched.
    records = batch(["AAPL", "MSFT"], 3)
    alpaca.publish(records)
    other.wait_records(share(sent(alpaca, records[0]["t"]), [("quotes", ["MSFT"])]))
    assert len(other.of("state", state="authenticated")) == 1 and not other.of("gap")


# ---------------------------------------------------------------------- faults


def test_a_gateway_killed_and_restarted_is_a_gap_then_service_resumes(
    nats: NatsServer, procs: Procs
) -> None:
    alpaca = procs.alpaca
    subs: dict[str, Subs] = {
        "c1": [("quotes", ["AAPL"]), ("trades", ["MSFT"])],
        "c2": [("quotes", ["AAPL", "MSFT"])],
    }
    first = procs.gateway([nats.url])
    consumers = {n: procs.consumer(n, [nats.url], s) for n, s in subs.items()}
    upstream(alpaca, *consumers.values())
    before = batch(["AAPL", "MSFT"], 3)
    alpaca.publish(before)
    for n, c in consumers.items():
        c.wait_records(share(sent(alpaca), subs[n]))
        c.wait_state("authenticated")
    old = alpaca.connections()[0]
    first.kill()
    alpaca.wait_for_closed(old)
    for c in consumers.values():
        c.event("state", state="reconnecting")
    procs.gateway([nats.url], name="gateway-2")
    # The consumers re-declare to the new gateway by themselves: demand is back upstream.
    conn = upstream(alpaca, *consumers.values())
    assert conn.id != old.id
    for c in consumers.values():
        _, gap = c.event("gap", reason="gateway")
        c.wait_state("authenticated", after=c.wait_state("reconnecting"))
        assert gap_covers(gap, c)
        assert gap["last"] <= gap["first"]
        assert c.of("error", type="BusDisconnected")
    after = batch(["AAPL", "MSFT"], 3)
    alpaca.publish(after)
    expected = sent(alpaca, after[0]["t"])
    for n, c in consumers.items():
        mine = share(expected, subs[n])
        c.wait_records(mine)
        got, _ = c.snapshot()
        for pair, recs in mine.items():
            assert got[pair][-len(recs) :] == recs
        assert len(c.of("gap")) == 1


def test_a_gateway_restarted_at_once_still_marks_a_gap(nats: NatsServer, procs: Procs) -> None:
    # The new gateway says hello before the consumers miss three heartbeats of the old.
    alpaca = procs.alpaca
    first = procs.gateway([nats.url], heartbeat=5.0)
    c = procs.consumer("c", [nats.url], [("quotes", ["AAPL"])])
    upstream(alpaca, c)
    alpaca.publish(batch(["AAPL"], 2))
    c.wait_records(share(sent(alpaca), [("quotes", ["AAPL"])]))
    c.wait_state("authenticated")
    first.kill()
    procs.gateway([nats.url], name="gateway-2", heartbeat=5.0)
    _, gap = c.event("gap")
    assert gap["reason"] == "gateway" and gap_covers(gap, c)
    after = batch(["AAPL"], 2)
    alpaca.publish(after)
    c.wait_records(share(sent(alpaca, after[0]["t"]), [("quotes", ["AAPL"])]))
    assert len(c.of("gap")) == 1


def test_nats_down_longer_than_the_lease_both_sides_reconnect(
    nats: NatsServer, procs: Procs
) -> None:
    alpaca = procs.alpaca
    subs: dict[str, Subs] = {
        "c1": [("quotes", ["AAPL"]), ("trades", ["AAPL"])],
        "c2": [("quotes", ["AAPL", "MSFT"])],
    }
    procs.gateway([nats.url])
    consumers = {n: procs.consumer(n, [nats.url], s) for n, s in subs.items()}
    upstream(alpaca, *consumers.values())
    alpaca.publish(batch(["AAPL", "MSFT"], 2))
    for n, c in consumers.items():
        c.wait_records(share(sent(alpaca), subs[n]))
        c.wait_state("authenticated")  # (records can come before the gateway's hello)
    nats.stop()
    for c in consumers.values():
        c.wait_state("reconnecting")
    # Down longer than the leases: the gateway lets them lapse and releases upstream
    # (and the consumers' lease heartbeats fall into the outage, more than once).
    alpaca.wait_for_subscriptions(
        {"quotes": set(), "trades": set()}, timeout=(LEASE + 3) * TIMING_FACTOR
    )
    nats.start()
    # Nobody does anything: the consumers re-declare, and the demand is back upstream.
    upstream(alpaca, *consumers.values())
    for c in consumers.values():
        # Back only when NATS is back *and* the gateway's heartbeat arrives again over it.
        c.wait_state("authenticated", after=c.wait_state("reconnecting"))
        _, gap = c.event("gap", reason="bus")
        assert gap_covers(gap, c)
        assert c.of("error", type="BusDisconnected")
    after = batch(["AAPL", "MSFT"], 3)
    alpaca.publish(after)
    expected = sent(alpaca, after[0]["t"])
    for n, c in consumers.items():
        mine = share(expected, subs[n])
        c.wait_records(mine)
        got, _ = c.snapshot()
        for pair, recs in mine.items():
            assert got[pair][-len(recs) :] == recs
    assert len(alpaca.connections()) == 1  # the upstream never noticed


def test_an_upstream_drop_is_one_gap_per_consumer(nats: NatsServer, procs: Procs) -> None:
    alpaca = procs.alpaca
    subs: dict[str, Subs] = {
        "c1": [("quotes", ["AAPL"])],
        "c2": [("quotes", ["MSFT"]), ("trades", ["AAPL"])],
        "c3": [("quotes", ["AAPL", "NVDA"])],
    }
    procs.gateway([nats.url])
    consumers = {n: procs.consumer(n, [nats.url], s) for n, s in subs.items()}
    upstream(alpaca, *consumers.values())
    alpaca.publish(batch(["AAPL", "MSFT", "NVDA"], 2))
    for n, c in consumers.items():
        c.wait_records(share(sent(alpaca), subs[n]))
        c.wait_state("authenticated")
    old = alpaca.connections()[0]
    alpaca.drop(old)
    alpaca.wait_for_closed(old)
    conn = upstream(alpaca, *consumers.values())
    assert conn.id != old.id
    for c in consumers.values():
        _, gap = c.event("gap")
        assert gap["reason"] == "reconnect"
        # Each consumer hears of its own pairs only.
        assert gap_covers(gap, c)
        c.wait_state("authenticated", after=c.wait_state("reconnecting"))
    after = batch(["AAPL", "MSFT", "NVDA"], 2)
    alpaca.publish(after)
    expected = sent(alpaca, after[0]["t"])
    for n, c in consumers.items():
        c.wait_records(share(expected, subs[n]))
        assert len(c.of("gap")) == 1, c.of("gap")


def test_a_slow_consumer_is_isolated(nats: NatsServer, procs: Procs) -> None:
    """A consumer whose handler cannot keep up loses messages, and says so; nobody else does.

    Each NATS subscription buffers ``pending_limit`` messages; past that nats-py drops
    what arrives. The client says so once per hole on ``errors`` (a ``BusMessageError``)
    and, when data flows again, publishes a ``"slow consumer"`` Gap for that
    subscription's pairs, just before the first record after the hole. What it does
    get is in order and never twice.
    """
    alpaca = procs.alpaca
    subs: Subs = [("quotes", ["AAPL", "MSFT"]), ("trades", ["AAPL"])]
    procs.gateway([nats.url])
    fast = procs.consumer("fast", [nats.url], subs)
    slow = procs.consumer("slow", [nats.url], subs, slow=0.005, pending_limit=20)
    upstream(alpaca, fast, slow)
    handle = alpaca.start_market(market(["AAPL", "MSFT"], 2000, 3000))
    assert handle.done.wait(30 * TIMING_FACTOR)
    expected = share(sent(alpaca), subs)
    total = sum(map(len, expected.values()))
    fast.wait_records(expected)
    slow_count_then = slow.count
    got, events = fast.snapshot()
    assert got == expected and not [e for e in events if e["ev"] in ("gap", "error")]
    # The fast one had everything while the slow one was still far behind (it takes
    # 5 ms a record: 15 s for all of them).
    assert slow_count_then < total / 2
    slow.event("gap", reason="slow consumer")
    slow_got, slow_events = slow.snapshot()
    gaps = [e for e in slow_events if e["ev"] == "gap" and e["reason"] == "slow consumer"]
    errors = [e for e in slow_events if e["ev"] == "error"]
    assert errors and {e["type"] for e in errors} == {"BusMessageError"}
    # Once per hole, not once per dropped message: a hole is said when it opens and
    # gapped when it closes (at most one open per subscription at this moment).
    assert len(gaps) <= len(errors) <= len(gaps) + len(expected)
    for pair, recs in slow_got.items():
        ch, sym = pair
        at = [expected[pair].index(r) for r in recs]  # (ValueError: misrouted)
        assert at == sorted(set(at)), pair  # in order, never twice
        # Where records are missing: before the first, or between two.
        holes = {k for k in range(len(at)) if at[k] > (at[k - 1] + 1 if k else 0)}
        marked = {
            g["_at"].get(f"{ch} {sym}", 0)
            for g in gaps
            if g["channels"] == [ch] and g["symbols"] == [sym]  # one subscription's gap
        }
        # One gap per hole, right where it is (a gap at the very end: the record after
        # it is still on its way).
        assert marked - {len(recs)} == holes, (pair, sorted(marked), sorted(holes))
    assert sum(len(g["symbols"]) for g in gaps) == len(gaps)
    # The upstream never saw the slow consumer: one connection, never closed, no 407.
    (conn,) = alpaca.connections()
    assert not conn.closed


# ---------------------------------------------------------------------- cluster


@pytest.fixture
def cluster() -> Iterator[list[NatsServer]]:
    nodes = NatsServer.cluster(3)
    yield nodes
    for n in nodes:
        n.__exit__(None, None, None)


def test_consumers_fail_over_when_their_cluster_node_stops(
    cluster: list[NatsServer], procs: Procs
) -> None:
    alpaca = procs.alpaca
    n1, n2, n3 = (n.url for n in cluster)
    subs: dict[str, Subs] = {
        "on2a": [("quotes", ["AAPL", "MSFT"])],
        "on2b": [("quotes", ["MSFT"]), ("trades", ["AAPL"])],
        "on3": [("quotes", ["AAPL", "MSFT"]), ("trades", ["AAPL"])],
    }
    procs.gateway([n1])
    consumers = {
        n: procs.consumer(n, [n2, n1, n3] if "2" in n else [n3, n1, n2], s) for n, s in subs.items()
    }
    upstream(alpaca, *consumers.values())
    for n, c in consumers.items():
        _, up = c.event("state", state="authenticated")
        assert up["server"] == (n2 if "2" in n else n3)
    handle = alpaca.start_market(market(["AAPL", "MSFT"], 2000, 4000, seed=3))
    on2 = [consumers["on2a"], consumers["on2b"]]
    for c in on2:
        c.wait(lambda c=c: c.count >= 200, "200 records")  # type: ignore[misc]
    cluster[1].stop()
    for c in on2:
        i = c.wait_state("reconnecting")
        _, back = c.event("state", after=i, state="authenticated")
        assert back["server"] in (n1, n3)
        c.event("gap", reason="bus")
    assert handle.done.wait(30 * TIMING_FACTOR)
    tail = batch(["AAPL", "MSFT"], 2)  # certainly after the fail-over
    alpaca.publish(tail)
    expected = sent(alpaca)
    for n, c in consumers.items():
        mine = share(expected, subs[n])
        c.wait_records(mine)
        got, _ = c.snapshot()
        assert got.keys() == mine.keys()
        for pair, recs in mine.items():
            if c in on2:
                # At most the records in flight through node 2 are missing, in one
                # run; nothing twice, nothing out of order.
                assert hole_removed(got[pair], recs), (n, pair, len(got[pair]), len(recs))
            else:
                assert got[pair] == recs, (n, pair)
        if c not in on2:
            assert not c.of("gap")


# ---------------------------------------------------------------------- catch-up


def test_a_durable_consumer_restarted_under_load_loses_and_repeats_nothing(
    nats: NatsServer, procs: Procs
) -> None:
    alpaca = procs.alpaca
    subs: Subs = [("quotes", ["AAPL", "MSFT"]), ("trades", ["AAPL"])]
    gateway = procs.gateway([nats.url], retention={"max_age": 120.0, "storage": "memory"})
    gateway.event("ready", timeout=30)  # the JetStream stream exists
    # The keeper holds the same demand live, so the upstream keeps flowing while the
    # durable consumer is away (and shows the load it missed).
    keeper = procs.consumer("keeper", [nats.url], subs)
    first = procs.consumer("durable-1", [nats.url], subs, durable="catchup")
    upstream(alpaca, keeper, first)
    first.wait_state("authenticated")
    handle = alpaca.start_market(market(["AAPL", "MSFT"], 1000, 6000, seed=5))
    first.wait(lambda: first.count >= 300, "300 records")
    first.stop()
    away = keeper.count
    stopped = time.monotonic()
    # Away for 2 s of market data, as the keeper saw it arrive.
    keeper.wait(
        lambda: keeper.count >= away + 1500 and time.monotonic() - stopped >= 2.0,
        f"2 s of data while the durable consumer is away (from {away})",
    )
    second = procs.consumer("durable-2", [nats.url], subs, durable="catchup")
    assert handle.done.wait(30 * TIMING_FACTOR)
    expected = share(sent(alpaca), subs)
    keeper.wait_records(expected)
    second.wait_records(expected, timeout=30)
    before, _ = first.snapshot()
    after, _ = second.snapshot()
    assert before and after
    for pair, recs in expected.items():
        joined = before.get(pair, []) + after.get(pair, [])
        assert joined == recs, (pair, len(before.get(pair, [])), len(after.get(pair, [])))
