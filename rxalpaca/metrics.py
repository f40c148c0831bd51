"""Counters and timings of one client: the books that must balance.

Threading: every counter is written by one thread only — the socket thread that
runs the pipeline — except ``handler_errors`` and ``errors_published`` which an
observer on another scheduler may also bump (``+=`` on an int attribute is not
atomic in general, so those two go through a small lock). Readers on any other
thread get whole values that may be a moment stale; :meth:`Metrics.snapshot`
copies everything into a plain dict.

The identities kept (checked by the reliability suites):

* ``frames_received == frames_decoded + frames_failed`` (control frames such as
  pings never reach the pipeline and are not counted);
* ``messages_decoded == messages_delivered + messages_unrouted + messages_failed``
  where ``messages_failed`` counts data messages whose delivery to every observer
  raised, and control/unknown messages are counted apart (``control_messages``,
  ``unknown_messages``).
"""

from __future__ import annotations

import threading
import time
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "LAG_BUCKETS",
    "OBSERVER_BUCKETS",
    "DiscardReason",
    "Histogram",
    "Metrics",
    "StageProfile",
    "TimingWindow",
    "active_profile",
    "bind_thread",
    "count_discarded",
    "start_profiling",
    "stop_profiling",
    "thread_binding",
]

#: Upper bounds (seconds) of the message-lag histogram's buckets: exchange time → receipt.
LAG_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
)  # fmt: skip
#: Upper bounds (seconds) of the observer-time histogram's buckets (time per frame).
OBSERVER_BUCKETS: tuple[float, ...] = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 1.0,
)  # fmt: skip

#: Why a slow-consumer operator let an item go (``count_discarded``'s reasons):
#: ``conflated`` (``conflate`` replaced a pending item), ``throttled`` (``throttle``
#: replaced one inside its window), ``buffer_overflow`` (``bounded_buffer`` dropped one)
#: and ``loop_overflow`` (``on_loop``'s hand-over dropped one).
DiscardReason = str
DISCARD_REASONS = ("conflated", "throttled", "buffer_overflow", "loop_overflow")


class Histogram:
    """Fixed buckets: one ``bisect`` and one array increment per observation.

    ``bounds`` are the buckets' upper bounds in seconds (inclusive, as Prometheus'
    ``le``); one more bucket counts what is above the last. Kept in integer ns in a
    machine-integer array, so an observation allocates nothing. One writer (the socket
    thread); readers on other threads copy :meth:`counts` (whole values, a moment stale).
    A negative observation (the exchange's clock ahead of ours) counts in the first
    bucket and adds 0 to the sum, so the sum never goes down.
    """

    __slots__ = ("_bounds_ns", "_counts", "bounds", "sum_ns")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(float(b) for b in bounds)
        if list(self.bounds) != sorted(set(self.bounds)):
            raise ValueError("histogram bounds must be strictly increasing")
        self._bounds_ns = tuple(round(b * 1e9) for b in self.bounds)
        self._counts = array("q", bytes(8 * (len(self.bounds) + 1)))
        self.sum_ns = 0

    def observe(self, ns: int) -> None:
        """Record one duration in ns (owner thread only)."""
        self._counts[bisect_left(self._bounds_ns, ns)] += 1
        if ns > 0:
            self.sum_ns += ns

    def counts(self) -> list[int]:
        """Observations per bucket (not cumulative); the last is above every bound."""
        return list(self._counts)

    @property
    def count(self) -> int:
        """Observations so far."""
        return sum(self._counts)

    def quantile(self, q: float) -> float:
        """The ``q`` quantile (0..1) in seconds, interpolated inside its bucket; 0.0 when empty."""
        return quantile(self.bounds, self.counts(), q)


def quantile(bounds: Sequence[float], counts: Sequence[int], q: float) -> float:
    """The ``q`` quantile of bucket ``counts`` (as :meth:`Histogram.counts`), in seconds:
    linear inside its bucket (Prometheus' ``histogram_quantile``); the overflow bucket
    answers its lower bound."""
    total = sum(counts)
    if total == 0:
        return 0.0
    rank = q * total
    seen = 0
    for i, n in enumerate(counts):
        if n and seen + n >= rank:
            if i == len(bounds):
                return bounds[-1]
            lower = bounds[i - 1] if i else 0.0
            return lower + (bounds[i] - lower) * max(0.0, rank - seen) / n
        seen += n
    return bounds[-1]  # pragma: no cover - rank <= total always finds a bucket


class StageProfile:
    """Where a pipeline's time went: ``perf_counter_ns`` totals per stage (``--profile``).

    While one is active (:func:`start_profiling`) a connection opened or a pipeline
    subscribed from then on is built with a clock read around each stage; when none is,
    they are built without (no cost). ``add`` is called by the socket thread (or the
    replay thread) only; read the totals after the run.
    """

    def __init__(self) -> None:
        self.started_ns = time.perf_counter_ns()
        self.stopped_ns = 0
        #: stage name → [calls, total ns], in the order stages first reported.
        self.stages: dict[str, list[int]] = {}

    def add(self, stage: str, ns: int) -> None:
        """Count one call of ``stage`` that took ``ns`` (inclusive of what it called)."""
        slot = self.stages.get(stage)
        if slot is None:
            slot = self.stages[stage] = [0, 0]
        slot[0] += 1
        slot[1] += ns

    def total_ns(self, stage: str) -> int:
        """The ``stage``'s total ns so far (0 if it never ran)."""
        slot = self.stages.get(stage)
        return slot[1] if slot else 0

    def calls(self, stage: str) -> int:
        """How often ``stage`` ran."""
        slot = self.stages.get(stage)
        return slot[0] if slot else 0

    @property
    def wall_ns(self) -> int:
        """From the start to :func:`stop_profiling` (or now)."""
        return (self.stopped_ns or time.perf_counter_ns()) - self.started_ns

    def breakdown(self) -> list[tuple[str, int, int]]:
        """``(stage, ns spent in it alone, calls)`` in pipeline order, then ``other``.

        The stages' reports are inclusive (a stage's time holds the stages it called),
        so each one's own time is its total less the next one's: framing is the frame
        loop less ``reassemble``, ``route`` is less the control path and the observers
        (``observers``: what the caller timed around its own callbacks). ``other`` is the
        wall time nothing above accounts for (other threads' work, waits outside
        ``recv``, a replay's file reading).
        """
        chain = ("reassemble", "validate", "decode", "meter", "route")
        t = self.total_ns
        rows: list[tuple[str, int, int]] = []
        if "socket read" in self.stages:
            rows.append(
                ("socket read (waiting included)", t("socket read"), self.calls("socket read"))
            )
        if "frame loop" in self.stages:
            rows.append(
                (
                    "framing + hop into the pipeline",
                    t("frame loop") - t("reassemble"),
                    self.calls("frame loop"),
                )
            )
        for i, name in enumerate(chain):
            if name not in self.stages:
                continue
            if name == "route":
                own = t("route") - t("control") - t("observers")
            else:
                own = t(name) - t(chain[i + 1])
            rows.append((name, own, self.calls(name)))
        for name in ("control", "observers"):
            if name in self.stages:
                rows.append((name, t(name), self.calls(name)))
        accounted = sum(ns for _n, ns, _c in rows)
        rows.append(("other", max(0, self.wall_ns - accounted), 0))
        return rows

    def report(self, messages: int = 0) -> str:
        """:meth:`breakdown` as a plain-text table (ms, share of wall time, µs per frame
        and, given ``messages``, per message)."""
        frames = self.calls("route") or self.calls("reassemble")
        wall = max(1, self.wall_ns)
        lines = [
            f"{'stage':<32} {'ms':>10} {'share':>7} {'µs/frame':>9} {'µs/msg':>8}",
        ]
        for name, ns, _calls in self.breakdown():
            per_frame = f"{ns / 1e3 / frames:.2f}" if frames else "-"
            per_msg = f"{ns / 1e3 / messages:.3f}" if messages else "-"
            lines.append(
                f"{name:<32} {ns / 1e6:>10.1f} {100 * ns / wall:>6.1f}% {per_frame:>9} {per_msg:>8}"
            )
        totals = f"{frames:,} frames, {messages:,} messages"
        lines.append(f"{'wall':<32} {wall / 1e6:>10.1f} {100.0:>6.1f}%   {totals}")
        return "\n".join(lines)


_PROFILE: list[StageProfile] = []


def start_profiling() -> StageProfile:
    """Profile every pipeline built from now on, in this process (see :class:`StageProfile`)."""
    profile = StageProfile()
    _PROFILE[:] = [profile]
    return profile


def stop_profiling() -> StageProfile | None:
    """Stop profiling new pipelines; the profile that was active (its clock stops)."""
    profile = _PROFILE.pop() if _PROFILE else None
    if profile is not None:
        profile.stopped_ns = time.perf_counter_ns()
    return profile


def active_profile() -> StageProfile | None:
    """The profile new pipelines report to, or None (read once per pipeline built)."""
    return _PROFILE[0] if _PROFILE else None


# The client whose pipeline runs on this thread (the socket thread, a bus or replay
# thread): the route stage binds it at its first frame, so a slow-consumer operator fed on
# that thread counts what it discards in that client's metrics, without being told.
_THREAD = threading.local()


def bind_thread(metrics: Metrics) -> None:
    """This thread's items come from ``metrics``' client (what the route stage does)."""
    _THREAD.metrics = metrics


def thread_binding() -> threading.local:
    """The thread-local :func:`bind_thread` writes (the route stage stores into it inline)."""
    return _THREAD


def count_discarded(reason: DiscardReason, metrics: Metrics | None = None) -> None:
    """An operator let one item go for ``reason``: count it in ``metrics``, or else in
    the metrics of the client whose pipeline runs on this thread (if any)."""
    m = metrics if metrics is not None else getattr(_THREAD, "metrics", None)
    if m is not None:
        m.count_discarded(reason)


class TimingWindow:
    """The last ``size`` durations (ns), for percentiles without unbounded memory."""

    __slots__ = ("_buf", "_count", "_size")

    def __init__(self, size: int = 4096) -> None:
        # Machine integers: a full window is 32 KiB, not 4,096 int objects besides.
        self._buf = array("q", bytes(8 * size))
        self._size = size
        self._count = 0

    def add(self, ns: int) -> None:
        """Record one duration (owner thread only)."""
        self._buf[self._count % self._size] = ns
        self._count += 1

    @property
    def count(self) -> int:
        """Durations recorded since the start (not only those kept)."""
        return self._count

    def percentile(self, q: float) -> float:
        """The ``q`` quantile (0..1) of the kept durations, in ns; 0.0 when empty."""
        n = min(self._count, self._size)
        if n == 0:
            return 0.0
        data = sorted(self._buf[:n])
        idx = min(n - 1, max(0, round(q * (n - 1))))
        return float(data[idx])


class Metrics:
    """Everything a client counts. Attribute names are the metric names."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started_ns = time.time_ns()
        self.frames_received = 0
        self.bytes_received = 0
        self.frames_decoded = 0
        self.frames_failed = 0
        self.messages_decoded = 0
        #: Decoded items per class (records, ``Unknown``, ``FrameError``): one dict
        #: increment per message on the hot path; names are made at snapshot time.
        self.messages_by_class: Counter[type] = Counter()
        self.messages_delivered = 0
        self.messages_unrouted = 0
        self.messages_failed = 0
        self.control_messages = 0
        self.unknown_messages = 0
        self.decode_failures = 0
        self.handler_errors = 0
        self.errors_published = 0
        self.reconnects = 0
        self.connects = 0
        #: ``time.time_ns()`` of the last frame that carried market data (not acks or
        #: errors): the data clock of ``silence_timeout``; 0 before any.
        self.last_message_ns = 0
        #: ``time.time_ns()`` of the last decoded frame of any kind (data or control).
        self.last_frame_ns = 0
        self.slow_consumer_warnings = 0
        #: Sockets dropped because the auth reply or a subscription ack was overdue.
        self.reply_timeouts = 0
        self.live_subscriptions = 0
        self.observer_time = TimingWindow()
        #: Total time the socket thread spent inside observers (for the slow-observer check).
        self.observer_time_total_ns = 0
        #: ``perf_counter_ns()`` when the batch being dispatched started; 0 between batches.
        self.dispatch_started_ns = 0
        #: Exchange time → receipt of one data record per ``lag_sample_every`` data
        #: frames (the frame's first record), in the meter stage.
        self.lag = Histogram(LAG_BUCKETS)
        self.lag_sample_every = 16
        #: Observer time per frame, for the batches the observer-time window samples.
        self.observer_histogram = Histogram(OBSERVER_BUCKETS)
        #: Reconnects per reason (``reconnect_reason`` in the upstream); sums to ``reconnects``.
        self.reconnects_by_reason: Counter[str] = Counter()
        #: Called with each batch after its observers ran (socket thread), if set:
        #: ``contrib.otel``'s sampled receive spans. One attribute read per frame when None.
        self.receive_hook: Callable[[Any], None] | None = None
        #: Items the slow-consumer operators let go, per reason (``DISCARD_REASONS``);
        #: written under ``_lock`` (an operator may run on any thread).
        self.messages_discarded: Counter[str] = Counter()

    @property
    def messages_by_type(self) -> dict[str, int]:
        """Decoded items per record class name (``Trade``, ``Quote``, ``FrameError`` …)."""
        return {cls.__name__: n for cls, n in list(self.messages_by_class.items())}

    def count_handler_error(self) -> None:
        """An observer raised (any thread)."""
        with self._lock:
            self.handler_errors += 1

    def count_error_published(self) -> None:
        """A value went out on ``client.errors`` (any thread)."""
        with self._lock:
            self.errors_published += 1

    def count_reconnect(self, reason: str) -> None:
        """A connection was lost and will be retried, for ``reason`` (one writer per client)."""
        self.reconnects += 1
        self.reconnects_by_reason[reason] += 1

    def count_discarded(self, reason: DiscardReason, n: int = 1) -> None:
        """An operator let ``n`` items go for ``reason`` (any thread)."""
        with self._lock:
            self.messages_discarded[reason] += n

    def discarded(self) -> dict[str, int]:
        """A copy of :attr:`messages_discarded` (any thread)."""
        with self._lock:
            return dict(self.messages_discarded)

    def snapshot(self) -> dict[str, Any]:
        """All metrics as a plain dict (safe to call from any thread)."""
        return {
            "frames_received": self.frames_received,
            "bytes_received": self.bytes_received,
            "frames_decoded": self.frames_decoded,
            "frames_failed": self.frames_failed,
            "messages_decoded": self.messages_decoded,
            "messages_by_type": self.messages_by_type,
            "messages_delivered": self.messages_delivered,
            "messages_unrouted": self.messages_unrouted,
            "messages_failed": self.messages_failed,
            "control_messages": self.control_messages,
            "unknown_messages": self.unknown_messages,
            "decode_failures": self.decode_failures,
            "handler_errors": self.handler_errors,
            "errors_published": self.errors_published,
            "reconnects": self.reconnects,
            "connects": self.connects,
            "last_message_ns": self.last_message_ns,
            "last_frame_ns": self.last_frame_ns,
            "slow_consumer_warnings": self.slow_consumer_warnings,
            "reply_timeouts": self.reply_timeouts,
            "live_subscriptions": self.live_subscriptions,
            "observer_time_p50_us": self.observer_time.percentile(0.5) / 1000.0,
            "observer_time_p99_us": self.observer_time.percentile(0.99) / 1000.0,
            "observer_batches": self.observer_time.count,
            "reconnects_by_reason": dict(list(self.reconnects_by_reason.items())),
            "messages_discarded": self.discarded(),
            "lag_samples": self.lag.count,
            "lag_p50_s": self.lag.quantile(0.5),
            "lag_p99_s": self.lag.quantile(0.99),
        }

    def frames_balance(self) -> bool:
        """``frames_received == frames_decoded + frames_failed``."""
        return self.frames_received == self.frames_decoded + self.frames_failed

    def messages_balance(self) -> bool:
        """``messages_decoded == delivered + unrouted + failed`` (data messages)."""
        return self.messages_decoded == (
            self.messages_delivered + self.messages_unrouted + self.messages_failed
        )
