"""What the exporters read from clients, summed per feed, at collection time.

Shared by :mod:`.prometheus` and :mod:`.otel` so both export the same numbers under
their own naming conventions. Reading costs nothing on the hot path: counters are
plain ints the socket thread writes; a reader on another thread sees whole values,
a moment stale (see :mod:`rxalpaca.metrics`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..metrics import DISCARD_REASONS, Metrics, quantile

__all__ = [
    "COUNTERS",
    "GAUGES",
    "HISTOGRAMS",
    "LABELLED",
    "HistogramReading",
    "MetricsSource",
    "Readings",
    "read",
]


class _Endpoint(Protocol):
    @property
    def feed(self) -> str: ...


class MetricsSource(Protocol):
    """What the exporters read: a ``StreamClient``, or anything with the same three parts."""

    @property
    def metrics(self) -> Metrics: ...

    @property
    def endpoint(self) -> _Endpoint: ...

    def health(self) -> Mapping[str, Any]: ...


#: (name, Metrics attribute, unit, description): one counter per feed. Names are
#: base names: Prometheus adds ``rxalpaca_`` and ``_total``, OTel ``rxalpaca.``.
COUNTERS: tuple[tuple[str, str, str, str], ...] = (
    ("frames_received", "frames_received", "{frame}", "WebSocket data frames received."),
    ("received_bytes", "bytes_received", "By", "Bytes of data frames received."),
    ("frames_failed", "frames_failed", "{frame}", "Frames that could not be decoded at all."),
    ("decode_failures", "decode_failures", "{message}", "Messages that failed to decode."),
    ("messages_delivered", "messages_delivered", "{message}", "Data messages delivered."),
    ("control_messages", "control_messages", "{message}", "Control messages (success, ack)."),
    ("unknown_messages", "unknown_messages", "{message}", "Messages of an unknown type."),
    ("handler_errors", "handler_errors", "{error}", "Exceptions raised by observers."),
    ("errors_published", "errors_published", "{error}", "Values published on client.errors."),
    ("connects", "connects", "{connection}", "Connections opened (first and reconnects)."),
    ("reply_timeouts", "reply_timeouts", "{timeout}", "Sockets dropped for an overdue reply."),
    ("slow_observer_warnings", "slow_consumer_warnings", "{warning}", "Slow-observer warnings."),
)

#: (name, unit, description) of the per-feed gauges.
GAUGES: tuple[tuple[str, str, str], ...] = (
    ("connection_up", "1", "1 while the connection is authenticated (summed over clients)."),
    ("subscribed_symbols", "{pair}", "(channel, symbol) pairs subscribed."),
    ("last_data_age_seconds", "s", "Seconds since the last market-data frame."),
    ("last_frame_age_seconds", "s", "Seconds since the last frame of any kind."),
    ("observer_batch_p50_seconds", "s", "Median time observers took per frame (sampled)."),
    ("observer_batch_p99_seconds", "s", "99th percentile of observer time per frame (sampled)."),
)

#: Messages decoded but not delivered, by reason (``messages_decoded`` balances them).
DROPPED = (("unrouted", "messages_unrouted"), ("observer_failed", "messages_failed"))

#: (name, labels, unit, description) of the counters with a second label.
LABELLED: tuple[tuple[str, tuple[str, ...], str, str], ...] = (
    ("messages", ("feed", "channel"), "{message}", "Data messages decoded, per channel."),
    (
        "messages_dropped",
        ("feed", "reason"),
        "{message}",
        "Data messages decoded but not delivered, per reason.",
    ),
    (
        "messages_discarded",
        ("feed", "reason"),
        "{message}",
        "Items a slow-consumer operator let go (conflated, throttled, buffer_overflow, "
        "loop_overflow).",
    ),
    ("reconnects", ("feed", "reason"), "{connection}", "Reconnects after a lost connection."),
)

#: (name, Metrics attribute, description) of the histograms, in seconds.
HISTOGRAMS: tuple[tuple[str, str, str], ...] = (
    (
        "message_lag_seconds",
        "lag",
        "Exchange timestamp to receipt of one data message per sampled frame.",
    ),
    ("observer_batch_seconds", "observer_histogram", "Time observers took per frame (sampled)."),
)


@dataclass
class HistogramReading:
    """Buckets (not cumulative; the last above every bound) and the sum, in seconds."""

    bounds: tuple[float, ...]
    counts: list[int]
    sum: float = 0.0

    @property
    def count(self) -> int:
        """Observations."""
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """``(le, observations <= le)`` per bound, then ``(inf, count)``: Prometheus' buckets."""
        out: list[tuple[float, int]] = []
        seen = 0
        for le, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            seen += n
            out.append((le, seen))
        return out

    def quantile(self, q: float) -> float:
        """The ``q`` quantile in seconds (interpolated inside its bucket)."""
        return quantile(self.bounds, self.counts, q)


_AGES = (
    ("last_data_age_s", "last_data_age_seconds"),
    ("last_frame_age_s", "last_frame_age_seconds"),
)


def _series() -> dict[tuple[str, ...], float]:
    return defaultdict(float)


@dataclass
class Readings:
    """One reading of every source. Keys of each series are label values: ``(feed,)``,
    ``(feed, channel)`` for ``messages``, ``(feed, reason)`` for ``messages_dropped``."""

    counters: dict[str, dict[tuple[str, ...], float]] = field(
        default_factory=lambda: defaultdict(_series)
    )
    gauges: dict[str, dict[tuple[str, ...], float]] = field(
        default_factory=lambda: defaultdict(_series)
    )
    #: name → ``(feed,)`` → the buckets summed over the feed's sources.
    histograms: dict[str, dict[tuple[str, ...], HistogramReading]] = field(
        default_factory=lambda: defaultdict(dict)
    )


def read(sources: Iterable[MetricsSource]) -> Readings:
    """Sum every source's metrics per feed (several clients on one feed: one series)."""
    out = Readings()
    counters, gauges = out.counters, out.gauges
    for src in sources:
        feed = src.endpoint.feed
        m = src.metrics
        health = src.health()
        key = (feed,)
        for name, attr, _unit, _help in COUNTERS:
            counters[name][key] += getattr(m, attr)
        for cls, n in list(m.messages_by_class.items()):
            channel = getattr(cls, "CHANNEL", "")
            if channel:  # data records only; control, Unknown and FrameError have none
                counters["messages"][(feed, channel)] += n
        for reason, attr in DROPPED:
            counters["messages_dropped"][(feed, reason)] += getattr(m, attr)
        discarded = counters["messages_discarded"]
        for reason in DISCARD_REASONS:  # every reason, zeros included: rate() needs a start
            discarded[(feed, reason)] += 0
        for reason, n in m.discarded().items():
            discarded[(feed, reason)] += n
        reconnects = counters["reconnects"]
        for reason, n in list(m.reconnects_by_reason.items()):
            reconnects[(feed, reason)] += n
        for name, attr, _help in HISTOGRAMS:
            hist = getattr(m, attr)
            buckets = out.histograms[name]
            got = buckets.get(key)
            counts = hist.counts()
            if got is None:
                buckets[key] = HistogramReading(hist.bounds, counts, hist.sum_ns / 1e9)
            else:
                got.counts = [a + b for a, b in zip(got.counts, counts, strict=True)]
                got.sum += hist.sum_ns / 1e9
        counters["observer_seconds"][key] += m.observer_time_total_ns / 1e9
        gauges["connection_up"][key] += 1.0 if health.get("connected") else 0.0
        gauges["subscribed_symbols"][key] += float(health.get("live_subscriptions", 0))
        for health_key, name in _AGES:
            age = health.get(health_key)
            if age is not None:
                # Several sources on one feed: the freshest answers for the feed.
                series = gauges[name]
                series[key] = min(series[key], age) if key in series else float(age)
        for q, name in ((0.5, "observer_batch_p50_seconds"), (0.99, "observer_batch_p99_seconds")):
            series = gauges[name]
            series[key] = max(series.get(key, 0.0), m.observer_time.percentile(q) / 1e9)
    return out
