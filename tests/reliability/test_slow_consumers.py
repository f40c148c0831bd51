"""Slow consumers: an observer that takes 10 ms per message, fed at 50,000 messages/s.

* **defaults** — observers run on the socket thread, so the socket stops being read,
  the server's outbound buffer fills and the server drops us (``407 slow client``, S37).
  The client must say so first: a WARNING from the ``rxalpaca`` logger and
  ``metrics.slow_consumer_warnings > 0`` before the server gives up on us.
* **conflation** — ``ops.conflate(key=symbol, scheduler=…)`` moves the slow work off the
  socket thread and keeps only the latest quote per symbol while the observer is busy:
  the connection stays healthy (no 407, no reconnect, still authenticated) and the
  observer ends with the latest value of every symbol.
* **bounded buffer** — ``ops.bounded_buffer(size, "drop_oldest", scheduler=…)`` moves the
  slow work off the socket thread through a queue of ``size`` quotes, evicting the oldest
  when it is full: the connection stays healthy, the observer sees quotes in order and ends
  with the newest ``size`` of them, and every quote was either seen or counted as dropped.

The server's outbound buffer is set to 30,000 messages (its default is 100,000) so the
407 comes after about a second and a half. The figures measured are printed by the last
test (``pytest -s``) for ``docs/reliability.md``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from reactivex.scheduler import ThreadPoolScheduler

from rxalpaca import ConnectionState, StreamClient, ops
from rxalpaca.metrics import Metrics
from rxalpaca.testing import DEFAULT_KEY, DEFAULT_SECRET, AlpacaStreamServer, MarketConfig
from rxalpaca.testing.wire import Encoding, encode_frame, to_nanos

from ._fuzz_helpers import timing_factor

TF = timing_factor()
SYMBOLS = ("AAPL", "MSFT", "AMZN", "NVDA", "SPY", "TSLA")
RATE = 50_000  # messages per second
BATCH = 10  # messages per frame
BUFFER = 30_000  # the server's outbound buffer, in messages (S37)
WORK_S = 0.010  # what the observer spends on each message
CONFLATED_RUN_S = 2.5  # longer than the unmitigated client survives
BUFFERED_RUN_S = 2.0  # longer than the unmitigated client survives
QUEUE_SIZE = 100  # the bounded buffer's capacity: one second of the observer's work

FIGURES: dict[str, Any] = {}


class WarningWatch(logging.Handler):
    """Notes when the ``rxalpaca`` logger warns about slow observers."""

    def __init__(self, metrics: Metrics, t0: list[float]) -> None:
        super().__init__(logging.WARNING)
        self.metrics = metrics
        self.t0 = t0
        self.records: list[logging.LogRecord] = []
        self.first_at: float | None = None
        self.metric_at_first = 0
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name != "rxalpaca" or "socket thread" not in record.getMessage():
            return
        self.records.append(record)
        if self.first_at is None:
            self.first_at = time.monotonic() - self.t0[0]
            self.metric_at_first = self.metrics.slow_consumer_warnings
            self.event.set()


@pytest.fixture
def server() -> Iterator[AlpacaStreamServer]:
    with AlpacaStreamServer(test_stream=False, max_buffer_messages=BUFFER) as srv:
        yield srv


@pytest.fixture
def client(server: AlpacaStreamServer) -> Iterator[StreamClient]:
    c = StreamClient(
        "iex", url=server.base_url, key=DEFAULT_KEY, secret=DEFAULT_SECRET, ping_interval=None
    )
    yield c
    c.close()


def slow_observer(
    stop: threading.Event, seen: list[Any], cond: threading.Condition
) -> Callable[[Any], None]:
    def on_next(quote: Any) -> None:
        with cond:
            seen.append(quote)
            cond.notify_all()
        stop.wait(WORK_S)  # 10 ms of "work" (cut short once the test is over)

    return on_next


def wait_balanced(metrics: Metrics, timeout: float) -> None:
    """The books balance once the socket thread has finished its last batch."""
    deadline = time.monotonic() + timeout
    while not (metrics.frames_balance() and metrics.messages_balance()):
        assert time.monotonic() < deadline, metrics.snapshot()
        time.sleep(0.01)


def market() -> MarketConfig:
    return MarketConfig(symbols=list(SYMBOLS), rate=RATE, batch=BATCH, mix={"q": 1})


@pytest.mark.timeout(60)
def test_defaults_warn_before_the_server_drops_a_slow_client(
    server: AlpacaStreamServer, client: StreamClient
) -> None:
    t0 = [0.0]
    watch = WarningWatch(client.metrics, t0)
    log = logging.getLogger("rxalpaca")
    log.addHandler(watch)
    stop = threading.Event()
    seen: list[Any] = []
    cond = threading.Condition()
    try:
        client.quotes(*SYMBOLS).subscribe(slow_observer(stop, seen, cond))
        server.wait_for_subscriptions({"quotes": set(SYMBOLS)}, timeout=5 * TF)
        t0[0] = time.monotonic()
        handle = server.start_market(market())
        dropped = server.wait_for(
            lambda cs: any(c.close_reason == "slow client" for c in cs), timeout=30 * TF
        )
        t_407 = time.monotonic() - t0[0]
        sent = handle.sent
        assert watch.event.wait(5 * TF), "no slow-observer warning at all"
        assert watch.first_at is not None
        FIGURES["default: time to warning (s)"] = round(watch.first_at, 2)
        FIGURES["default: time to 407 without mitigation (s)"] = round(t_407, 2)
        FIGURES["default: messages sent before the 407"] = sent
        FIGURES["default: messages the observer handled by then"] = len(seen)
        # The warning came first, with the metric, from the "rxalpaca" logger.
        assert watch.first_at < t_407, (watch.first_at, t_407)
        assert watch.metric_at_first > 0
        record = watch.records[0]
        assert record.levelno == logging.WARNING
        assert "407" in record.getMessage() and "conflate" in record.getMessage()
        assert [c.close_reason for c in dropped] == ["slow client"]
    finally:
        stop.set()
        log.removeHandler(watch)
        server.stop_market()
        client.close()
    assert client.metrics.slow_consumer_warnings > 0
    wait_balanced(client.metrics, 5 * TF)


def _quotes_frame(n: int) -> bytes:
    """One MessagePack frame of ``n`` quotes over SYMBOLS."""
    return encode_frame(
        [
            {"T": "q", "S": SYMBOLS[i % len(SYMBOLS)], "bx": "V", "bp": 1.0, "bs": 1,
             "ax": "V", "ap": 1.01, "as": 1, "c": ["R"], "z": "C",
             "t": 1_700_000_000_000_000_000 + i}
            for i in range(n)
        ],
        Encoding.MSGPACK,
    )  # fmt: skip


@pytest.mark.timeout(60)
def test_defaults_warn_while_one_large_frame_is_still_being_handled() -> None:
    """Frames of 1,000 quotes at 50,000 quotes/s, 10 ms each: 10 s inside one dispatch."""
    frame = _quotes_frame(1_000)
    with AlpacaStreamServer(test_stream=False, max_buffer_bytes=2 * 1024 * 1024) as server:
        client = StreamClient(
            "iex", url=server.base_url, key=DEFAULT_KEY, secret=DEFAULT_SECRET, ping_interval=None
        )
        t0 = [0.0]
        watch = WarningWatch(client.metrics, t0)
        log = logging.getLogger("rxalpaca")
        log.addHandler(watch)
        stop = threading.Event()
        seen: list[Any] = []

        def flood() -> None:  # a paced producer: 50 frames/s
            due = time.monotonic()
            while not stop.is_set():
                try:
                    server.send_raw(frame)
                except Exception:
                    return
                due += 1_000 / RATE
                stop.wait(max(0.0, due - time.monotonic()))

        producer = threading.Thread(target=flood, name="flood", daemon=True)
        try:
            client.quotes(*SYMBOLS).subscribe(slow_observer(stop, seen, threading.Condition()))
            server.wait_for_subscriptions({"quotes": set(SYMBOLS)}, timeout=5 * TF)
            t0[0] = time.monotonic()
            producer.start()
            server.wait_for(
                lambda cs: any(c.close_reason == "slow client" for c in cs), timeout=30 * TF
            )
            t_407 = time.monotonic() - t0[0]
            FIGURES["1,000-message frames: time to 407 (s)"] = round(t_407, 2)
            FIGURES["1,000-message frames: warned by then"] = watch.first_at is not None
            # The warning should have come before the server dropped us.
            assert watch.first_at is not None and watch.first_at < t_407, (watch.first_at, t_407)
        finally:
            stop.set()
            log.removeHandler(watch)
            client.close()
            if producer.is_alive():
                producer.join(5)


@dataclass
class MitigatedRun:
    """What one run of the market through a mitigating operator left behind."""

    states: list[ConnectionState] = field(default_factory=list)
    errors: list[Exception] = field(default_factory=list)
    seen: list[Any] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)
    stop: threading.Event = field(default_factory=threading.Event)
    elapsed: float = 0.0
    sent: int = 0  # messages the market generated
    info: Any = None  # the server's ConnectionInfo after the run


@contextlib.contextmanager
def mitigated_run(
    server: AlpacaStreamServer,
    client: StreamClient,
    operator: Callable[[ThreadPoolScheduler], Any],
    seconds: float,
) -> Iterator[MitigatedRun]:
    """Run the market for ``seconds`` into the slow observer behind ``operator``, then
    hand the run to the test and, when it is done with it, check that the connection was
    healthy throughout: one connection, authenticated all along, no 407, no errors."""
    run = MitigatedRun()
    client.state.subscribe(run.states.append)
    client.errors.subscribe(run.errors.append)
    scheduler = ThreadPoolScheduler(1)
    try:
        client.quotes(*SYMBOLS).pipe(operator(scheduler)).subscribe(
            slow_observer(run.stop, run.seen, run.cond)
        )
        server.wait_for_subscriptions({"quotes": set(SYMBOLS)}, timeout=5 * TF)
        t0 = time.monotonic()
        handle = server.start_market(market())
        # Run well past the point where the unmitigated client was dropped. Nothing to
        # wait for here: the point is that nothing happens.
        time.sleep(seconds)
        server.stop_market(handle)
        run.elapsed = time.monotonic() - t0
        run.sent = handle.sent
        [run.info] = server.connections()
        assert not run.info.closed and run.info.close_reason == "", run.info.close_reason
        yield run
        metrics = client.metrics
        assert server.connections()[0].close_reason == ""
        assert client.current_state is ConnectionState.AUTHENTICATED
        assert run.states[-1] is ConnectionState.AUTHENTICATED
        assert ConnectionState.RECONNECTING not in run.states
        assert metrics.connects == 1 and metrics.reconnects == 0
        assert run.errors == []
    finally:
        run.stop.set()
        client.close()
        scheduler.executor.shutdown(wait=True)
    wait_balanced(client.metrics, 5 * TF)


@pytest.mark.timeout(60)
def test_conflate_keeps_a_slow_observer_healthy_with_the_latest_values(
    server: AlpacaStreamServer, client: StreamClient
) -> None:
    replaced = [0]

    def conflated(scheduler: ThreadPoolScheduler) -> Any:
        return ops.conflate(
            key=lambda q: q.symbol,
            scheduler=scheduler,
            on_conflated=lambda n: replaced.__setitem__(0, n),
        )

    with mitigated_run(server, client, conflated, CONFLATED_RUN_S) as run:
        seen, info = run.seen, run.info
        # The latest quote of every symbol reaches the observer.
        last: dict[str, int] = {}
        for sent in info.sent_data:
            last[sent.symbol] = to_nanos(sent.record["t"])
        assert set(last) == set(SYMBOLS)

        def latest_seen() -> bool:
            latest: dict[str, int] = {}
            for q in seen[-len(SYMBOLS) * 4 :]:
                latest[q.symbol] = q.timestamp_ns
            return latest == last

        with run.cond:
            assert run.cond.wait_for(latest_seen, 10 * TF), "the latest values never arrived"
        metrics = client.metrics
        FIGURES["conflate: messages sent"] = info.sent_data_count
        FIGURES["conflate: achieved rate (msg/s)"] = round(run.sent / run.elapsed)
        FIGURES["conflate: messages the observer saw"] = len(seen)
        FIGURES["conflate: messages replaced while busy"] = replaced[0]
        FIGURES["conflate: slow-consumer warnings"] = metrics.slow_consumer_warnings
        # Every quote was either shown to the observer or replaced by a newer one.
        assert metrics.messages_delivered == info.sent_data_count
        assert len(seen) + replaced[0] == metrics.messages_delivered
        assert len(seen) < metrics.messages_delivered / 100  # it really was conflated


@pytest.mark.timeout(60)
def test_bounded_buffer_drop_oldest_keeps_a_slow_observer_healthy_with_the_newest_values(
    server: AlpacaStreamServer, client: StreamClient
) -> None:
    dropped = [0]

    def buffered(scheduler: ThreadPoolScheduler) -> Any:
        return ops.bounded_buffer(
            QUEUE_SIZE,
            "drop_oldest",
            scheduler=scheduler,
            on_overflow=lambda n: dropped.__setitem__(0, n),
        )

    with mitigated_run(server, client, buffered, BUFFERED_RUN_S) as run:
        seen, info = run.seen, run.info
        metrics = client.metrics

        def all_accounted_for() -> bool:
            delivered = metrics.messages_delivered
            sent: int = info.sent_data_count
            return delivered == sent == len(seen) + dropped[0]

        # The queue drains at the observer's pace (QUEUE_SIZE x WORK_S at most).
        with run.cond:
            assert run.cond.wait_for(all_accounted_for, 10 * TF), (
                len(seen),
                dropped[0],
                metrics.messages_delivered,
                info.sent_data_count,
            )
        FIGURES["bounded_buffer: messages sent"] = info.sent_data_count
        FIGURES["bounded_buffer: achieved rate (msg/s)"] = round(run.sent / run.elapsed)
        FIGURES["bounded_buffer: messages the observer saw"] = len(seen)
        FIGURES["bounded_buffer: messages dropped (oldest first)"] = dropped[0]
        FIGURES["bounded_buffer: slow-consumer warnings"] = metrics.slow_consumer_warnings
        # In order and never twice: the market's clock is strictly increasing.
        stamps = [q.timestamp_ns for q in seen]
        assert all(a < b for a, b in itertools.pairwise(stamps))
        # The observer ends with the newest QUEUE_SIZE quotes, exactly as they were sent.
        newest_sent = [(r.symbol, to_nanos(r.record["t"])) for r in info.sent_data[-QUEUE_SIZE:]]
        assert [(q.symbol, q.timestamp_ns) for q in seen[-QUEUE_SIZE:]] == newest_sent
        assert dropped[0] > metrics.messages_delivered / 2  # it really was overflowing


@pytest.mark.timeout(10)
def test_zz_report_slow_consumer_figures(capsys: pytest.CaptureFixture[str]) -> None:
    """Prints the figures (``-s``) for docs/reliability.md."""
    with capsys.disabled():
        for k, v in FIGURES.items():
            print(f"slow consumers {k}: {v}")
