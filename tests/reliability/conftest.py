"""Shared helpers for the reliability suites (chaos, reconnect, concurrency, leaks).

Everything runs against the real loopback :class:`AlpacaStreamServer`, over real
sockets. Waits are event-driven (``server.wait_for*``, conditions on recorders) and
scaled by ``TIMING_FACTOR`` (``RXALPACA_TIMING_FACTOR=3`` on a slow machine).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from reactivex.abc import ObserverBase

from rxalpaca import RetryPolicy, StreamClient
from rxalpaca.testing import DEFAULT_KEY, DEFAULT_SECRET, AlpacaStreamServer


def _timing_factor() -> float:
    """``tests.conftest.TIMING_FACTOR`` however the tests directory was imported."""
    for name in ("tests.conftest", "conftest"):
        try:
            mod = __import__(name, fromlist=["TIMING_FACTOR"])
        except ImportError:
            continue
        factor = getattr(mod, "TIMING_FACTOR", None)
        if isinstance(factor, float | int):
            return float(factor)
    return float(os.environ.get("RXALPACA_TIMING_FACTOR", "1"))


TIMING_FACTOR = _timing_factor()
NS = 1_700_000_000_000_000_000
#: Reconnects quickly; a 406 (x10 back-off) still waits at most 0.5 s.
FAST_RETRY = RetryPolicy(initial_delay=0.01, max_delay=0.05)

# ---------------------------------------------------------------- wire records
# Each carries a unique integer id in a field the client decodes as an int:
# trades ``i``, quotes ``bs`` (bid size), bars ``v`` (volume).

UID_FIELD = {"t": "i", "q": "bs", "b": "v"}
CHANNEL_OF_T = {"t": "trades", "q": "quotes", "b": "bars"}
T_OF_CHANNEL = {v: k for k, v in CHANNEL_OF_T.items()}


def trade(sym: str, uid: int) -> dict[str, Any]:
    return {
        "T": "t",
        "S": sym,
        "i": uid,
        "x": "V",
        "p": 100.5,
        "s": 10,
        "c": ["@"],
        "z": "C",
        "t": NS + uid,
    }


def quote(sym: str, uid: int) -> dict[str, Any]:
    return {
        "T": "q",
        "S": sym,
        "bx": "V",
        "bp": 1.0,
        "bs": uid,
        "ax": "V",
        "ap": 1.1,
        "as": 1,
        "c": ["R"],
        "z": "C",
        "t": NS + uid,
    }


def bar(sym: str, uid: int) -> dict[str, Any]:
    return {
        "T": "b",
        "S": sym,
        "o": 1.0,
        "h": 2.0,
        "l": 0.5,
        "c": 1.5,
        "v": uid,
        "n": 3,
        "vw": 1.2,
        "t": NS + uid,
    }


MAKERS: dict[str, Callable[[str, int], dict[str, Any]]] = {"t": trade, "q": quote, "b": bar}


def record_for(channel: str, sym: str, uid: int) -> dict[str, Any]:
    return MAKERS[T_OF_CHANNEL[channel]](sym, uid)


def uid_of(rec: Any) -> int:
    """The unique id carried by a decoded Trade / Quote / Bar."""
    name = type(rec).__name__
    if name == "Trade":
        return int(rec.id)
    if name == "Quote":
        return int(rec.bid_size)
    return int(rec.volume)


def wire_uid(rec: Any) -> int:
    """The unique id of a record as the server logged it (a wire dict)."""
    return int(rec[UID_FIELD[rec["T"]]])


# ---------------------------------------------------------------- observers


class Recorder(ObserverBase[Any]):
    """An observer that logs ``(channel, symbol, uid)`` and every terminal event.

    Reliability suites assert that no terminal event ever reaches user code while the
    client is open: a transient fault must never complete or error an observer.
    """

    def __init__(self, channel: str, log: EventLog) -> None:
        self.channel = channel
        self.log = log
        self.errors: list[BaseException] = []
        self.completed = 0

    def on_next(self, value: Any) -> None:
        self.log.add(self.channel, value.symbol, uid_of(value))

    def on_error(self, error: Exception) -> None:
        self.errors.append(error)

    def on_completed(self) -> None:
        self.completed += 1


class EventLog:
    """What observers received, in order, with a condition to wait on."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, int]] = []
        self.seen: set[int] = set()
        self.cond = threading.Condition()

    def add(self, channel: str, symbol: str, uid: int) -> None:
        with self.cond:
            self.items.append((channel, symbol, uid))
            self.seen.add(uid)
            self.cond.notify_all()

    def wait_uid(self, uid: int, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: uid in self.seen, timeout)


class CountingObserver(ObserverBase[Any]):
    """A cheap observer for churn: counts values, records terminal events."""

    __slots__ = ("completed", "errors", "n")

    def __init__(self) -> None:
        self.n = 0
        self.errors: list[BaseException] = []
        self.completed = 0

    def on_next(self, _value: Any) -> None:
        self.n += 1

    def on_error(self, error: Exception) -> None:
        self.errors.append(error)

    def on_completed(self) -> None:
        self.completed += 1


# ---------------------------------------------------------------- fixtures


def new_client(server: AlpacaStreamServer | str, feed: str = "iex", **kw: Any) -> StreamClient:
    """A client of ``server`` (or of a base URL) with test defaults."""
    kw.setdefault("key", DEFAULT_KEY)
    kw.setdefault("secret", DEFAULT_SECRET)
    kw.setdefault("retry", FAST_RETRY)
    kw.setdefault("ping_interval", None)
    url = server if isinstance(server, str) else server.base_url
    return StreamClient(feed, url=url, **kw)


@pytest.fixture
def make_client() -> Iterator[Callable[..., StreamClient]]:
    """``make_client(server, feed="iex", **options)``; every client is closed afterwards."""
    clients: list[StreamClient] = []

    def make(server: AlpacaStreamServer, feed: str = "iex", **kw: Any) -> StreamClient:
        client = new_client(server, feed, **kw)
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.close()


def assert_books_balance(client: StreamClient) -> None:
    """The issue's item 1: frames and messages are accounted for exactly."""
    m = client.metrics
    assert m.frames_balance(), (
        f"frames: received {m.frames_received} != decoded {m.frames_decoded} "
        f"+ failed {m.frames_failed}"
    )
    assert m.messages_balance(), (
        f"messages: decoded {m.messages_decoded} != delivered {m.messages_delivered} "
        f"+ unrouted {m.messages_unrouted} + failed {m.messages_failed}"
    )


def server_subs(server: AlpacaStreamServer, channels: tuple[str, ...]) -> set[tuple[str, str]]:
    """The (channel, symbol) pairs of the newest open authenticated connection."""
    conns = [c for c in server.connections(include_closed=False) if c.authenticated]
    assert conns, "no open authenticated connection"
    subs = conns[-1].subscriptions
    return {(ch, s) for ch in channels for s in subs.get(ch, set())}


def wait_server_pairs(
    server: AlpacaStreamServer,
    expected: set[tuple[str, str]],
    channels: tuple[str, ...],
    timeout: float,
) -> Any:
    """Wait until an open connection's subscriptions are exactly ``expected``."""
    want = {ch: {s for c, s in expected if c == ch} for ch in channels}

    def check(subs: dict[str, set[str]]) -> bool:
        return all(subs.get(ch, set()) == want[ch] for ch in channels)

    return server.wait_for_subscriptions(check, timeout=timeout)


_CHILD_SERVER = """
import json, sys
from rxalpaca.testing import AlpacaStreamServer, MarketConfig
opts = json.loads(sys.argv[1])
market = opts.pop("market", None)
with AlpacaStreamServer(**opts) as server:
    if market:
        server.start_market(MarketConfig(**market))
    print(server.base_url, flush=True)
    sys.stdin.read()  # until the parent closes our stdin
"""


@contextlib.contextmanager
def child_server(**options: Any) -> Iterator[str]:
    """An ``AlpacaStreamServer`` in a child process; yields its base URL.

    For memory measurements: nothing the server allocates (it logs every connection
    and message by design) is traced in the test's process.
    """
    import json

    with subprocess.Popen(
        [sys.executable, "-c", _CHILD_SERVER, json.dumps(options)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None and proc.stdin is not None
        try:
            url = proc.stdout.readline().strip()
            assert url.startswith("ws://"), f"child server did not start: {url!r}"
            yield url
        finally:
            proc.stdin.close()
            try:
                proc.wait(10 * TIMING_FACTOR)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()
