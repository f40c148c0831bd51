"""Prometheus: a collector that reads clients' metrics at scrape time (``rxalpaca[prometheus]``).

Nothing is added to the hot path: the client keeps counting in its plain
:class:`~rxalpaca.metrics.Metrics`, and :class:`RxAlpacaCollector` turns them into
Prometheus families only when Prometheus scrapes. Names follow Prometheus'
conventions — the ``rxalpaca_`` prefix, base units (seconds, bytes), ``_total`` on
counters — and the only labels are ``feed``, ``channel`` and ``reason`` (never a
symbol: the series count stays bounded however many symbols a client streams).

Example (against the embedded server)::

    import urllib.request
    from prometheus_client import CollectorRegistry, start_http_server
    from rxalpaca import StreamClient
    from rxalpaca.contrib.prometheus import RxAlpacaCollector
    from rxalpaca.testing import DEFAULT_KEY, DEFAULT_SECRET, AlpacaStreamServer

    with AlpacaStreamServer() as server, StreamClient(
        "iex", url=server.base_url, key=DEFAULT_KEY, secret=DEFAULT_SECRET
    ) as client:
        registry = CollectorRegistry()
        registry.register(RxAlpacaCollector(client))
        httpd, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
        ...
        httpd.shutdown()

Any object with ``.metrics`` (a :class:`~rxalpaca.metrics.Metrics`), ``.health()``
(a dict as :meth:`StreamClient.health <rxalpaca.StreamClient.health>` returns) and
``.endpoint.feed`` can be collected (:class:`MetricsSource`): a
:class:`~rxalpaca.StreamClient`, and later a message-bus client or gateway with the
same API. Several sources on one feed are summed into one series per label set.

Threading: :meth:`RxAlpacaCollector.collect` runs on the scraping thread and only
reads the counters (each a whole int written by the socket thread; see
:mod:`rxalpaca.metrics`); adding and removing sources takes ``_lock``.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from importlib import metadata
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.registry import Collector

from ..metrics import Metrics

__all__ = ["MetricsSource", "RxAlpacaCollector", "serve_metrics"]


class _Endpoint(Protocol):
    @property
    def feed(self) -> str: ...


class MetricsSource(Protocol):
    """What the collector reads: a ``StreamClient``, or anything with the same three parts."""

    @property
    def metrics(self) -> Metrics: ...

    @property
    def endpoint(self) -> _Endpoint: ...

    def health(self) -> Mapping[str, Any]: ...


#: (name without prefix or ``_total``, Metrics attribute, help): one counter per feed.
_COUNTERS = (
    ("frames_received", "frames_received", "WebSocket data frames received."),
    ("received_bytes", "bytes_received", "Bytes of data frames received."),
    ("frames_failed", "frames_failed", "Frames that could not be decoded at all."),
    ("decode_failures", "decode_failures", "Messages or frames that failed to decode."),
    ("messages_delivered", "messages_delivered", "Data messages delivered to observers."),
    ("control_messages", "control_messages", "Control messages (success, error, ack)."),
    ("unknown_messages", "unknown_messages", "Messages of a type this version does not know."),
    ("handler_errors", "handler_errors", "Exceptions raised by observers."),
    ("errors_published", "errors_published", "Values published on client.errors."),
    ("connects", "connects", "Connections opened (the first and every reconnect)."),
    ("reconnects", "reconnects", "Reconnects after a lost or dropped connection."),
    ("reply_timeouts", "reply_timeouts", "Sockets dropped for an overdue auth reply or ack."),
    ("slow_observer_warnings", "slow_consumer_warnings", "Slow-observer warnings."),
)

#: Messages decoded but not delivered, by reason (``messages_decoded`` balances them).
_DROPPED = (("unrouted", "messages_unrouted"), ("observer_failed", "messages_failed"))


class RxAlpacaCollector(Collector):
    """Prometheus families for any number of clients, read at scrape time.

    Args:
        *sources: clients (or any :class:`MetricsSource`) to collect from now.
        namespace: the metric name prefix.

    Families (``feed`` label on each; ``channel`` or ``reason`` where named):
    ``rxalpaca_messages_total{channel}`` (data messages decoded per channel),
    ``rxalpaca_messages_dropped_total{reason}`` (decoded but not delivered:
    ``unrouted``, ``observer_failed``), one ``_total`` counter per entry of
    ``_COUNTERS`` (frames, bytes, decode failures, handler errors, reconnects …),
    gauges ``rxalpaca_connection_up``, ``rxalpaca_subscribed_symbols``,
    ``rxalpaca_last_data_age_seconds``, ``rxalpaca_last_frame_age_seconds``, the
    counter ``rxalpaca_observer_seconds_total`` (time observers held the socket thread),
    gauges ``rxalpaca_observer_batch_p50_seconds`` / ``_p99_seconds`` (per frame, over
    the client's sampled timing window) and ``rxalpaca_build_info``.
    """

    def __init__(self, *sources: MetricsSource, namespace: str = "rxalpaca") -> None:
        self._lock = threading.Lock()
        self._sources: list[MetricsSource] = list(sources)
        self.namespace = namespace

    def add(self, source: MetricsSource) -> None:
        """Collect from ``source`` too (any thread)."""
        with self._lock:
            self._sources.append(source)

    def remove(self, source: MetricsSource) -> None:
        """Stop collecting from ``source`` (any thread); unknown sources are ignored."""
        with self._lock, contextlib.suppress(ValueError):
            self._sources.remove(source)

    def describe(self) -> Iterable[Any]:
        """Nothing: the families depend on the sources, so the registry calls ``collect``."""
        return []

    def collect(self) -> Iterator[Any]:
        """The families, summed per label set over every source."""
        ns = self.namespace
        with self._lock:
            sources = list(self._sources)
        counters: dict[str, dict[tuple[str, ...], float]] = defaultdict(lambda: defaultdict(float))
        gauges: dict[str, dict[tuple[str, ...], float]] = defaultdict(lambda: defaultdict(float))
        # Per feed: seconds in observers, p50, p99 (the largest over sources).
        observer: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
        for src in sources:
            feed = src.endpoint.feed
            m = src.metrics
            health = src.health()
            for name, attr, _help in _COUNTERS:
                counters[name][(feed,)] += getattr(m, attr)
            for cls, n in list(m.messages_by_class.items()):
                channel = getattr(cls, "CHANNEL", "")
                if channel:
                    counters["messages"][(feed, channel)] += n
            for reason, attr in _DROPPED:
                counters["messages_dropped"][(feed, reason)] += getattr(m, attr)
            gauges["connection_up"][(feed,)] += 1.0 if health.get("connected") else 0.0
            gauges["subscribed_symbols"][(feed,)] += float(health.get("live_subscriptions", 0))
            for key, name in (
                ("last_data_age_s", "last_data_age"),
                ("last_frame_age_s", "last_frame_age"),
            ):
                age = health.get(key)
                if age is not None:
                    # Several sources on one feed: the freshest answers for the feed.
                    prev = gauges[f"{name}_seconds"].get((feed,))
                    gauges[f"{name}_seconds"][(feed,)] = age if prev is None else min(prev, age)
            o = observer[feed]
            o[0] += m.observer_time_total_ns / 1e9
            o[1] = max(o[1], m.observer_time.percentile(0.5) / 1e9)
            o[2] = max(o[2], m.observer_time.percentile(0.99) / 1e9)

        helps = {name: text for name, _attr, text in _COUNTERS}
        helps["messages"] = "Data messages decoded, per channel."
        helps["messages_dropped"] = "Data messages decoded but not delivered, per reason."
        labels = {"messages": ["feed", "channel"], "messages_dropped": ["feed", "reason"]}
        for name, series in counters.items():
            family = CounterMetricFamily(
                f"{ns}_{name}", helps[name], labels=labels.get(name, ["feed"])
            )
            for values, total in sorted(series.items()):
                family.add_metric(list(values), total)
            yield family
        gauge_help = {
            "connection_up": "1 while the connection is authenticated (summed over clients).",
            "subscribed_symbols": "(channel, symbol) pairs subscribed.",
            "last_data_age_seconds": "Seconds since the last market-data frame.",
            "last_frame_age_seconds": "Seconds since the last frame of any kind.",
        }
        for name, text in gauge_help.items():
            g = GaugeMetricFamily(f"{ns}_{name}", text, labels=["feed"])
            for values, value in sorted(gauges.get(name, {}).items()):
                g.add_metric(list(values), value)
            yield g
        spent = CounterMetricFamily(
            f"{ns}_observer_seconds",
            "Time observers held the socket thread.",
            labels=["feed"],
        )
        p50 = GaugeMetricFamily(
            f"{ns}_observer_batch_p50_seconds",
            "Median time observers took per frame (sampled recent frames).",
            labels=["feed"],
        )
        p99 = GaugeMetricFamily(
            f"{ns}_observer_batch_p99_seconds",
            "99th percentile of the time observers took per frame (sampled recent frames).",
            labels=["feed"],
        )
        for feed, (total, q50, q99) in sorted(observer.items()):
            spent.add_metric([feed], total)
            p50.add_metric([feed], q50)
            p99.add_metric([feed], q99)
        yield from (spent, p50, p99)
        info = InfoMetricFamily(f"{ns}_build", "rxalpaca and Python versions.")
        info.add_metric([], {"version": _version(), "python": sys.version.split()[0]})
        yield info


def _version() -> str:
    try:
        return metadata.version("rxalpaca")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "unknown"


@contextlib.contextmanager
def serve_metrics(
    *sources: MetricsSource, port: int = 9000, addr: str = "127.0.0.1"
) -> Iterator[int]:
    """Serve ``/metrics`` for ``sources`` on ``addr:port`` while the block runs.

    A private registry (the process's default one is left alone) with one
    :class:`RxAlpacaCollector`. ``port=0`` picks a free port; the block gets the port.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RxAlpacaCollector(*sources))
    httpd, thread = start_http_server(port, addr=addr, registry=registry)
    try:
        yield httpd.server_port
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
