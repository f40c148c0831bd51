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
from collections.abc import Iterable, Iterator
from importlib import metadata
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.registry import Collector

from ._readings import COUNTERS, GAUGES, HISTOGRAMS, LABELLED, MetricsSource, read

__all__ = ["MetricsSource", "RxAlpacaCollector", "serve_metrics"]


class RxAlpacaCollector(Collector):
    """Prometheus families for any number of clients, read at scrape time.

    Args:
        *sources: clients (or any :class:`MetricsSource`) to collect from now.
        namespace: the metric name prefix.

    Families (``feed`` label on each; ``channel`` or ``reason`` where named):
    ``rxalpaca_messages_total{channel}`` (data messages decoded per channel),
    ``rxalpaca_messages_dropped_total{reason}`` (decoded but not delivered:
    ``unrouted``, ``observer_failed``), ``rxalpaca_messages_discarded_total{reason}``
    (let go by a slow-consumer operator: ``conflated``, ``throttled``,
    ``buffer_overflow``, ``loop_overflow``), ``rxalpaca_reconnects_total{reason}``
    (``upstream.reconnect_reason``), the histograms ``rxalpaca_message_lag_seconds``
    (exchange time → receipt, sampled per frame) and ``rxalpaca_observer_batch_seconds``,
    one ``_total`` counter per entry of
    ``COUNTERS`` in ``_readings`` (frames, bytes, decode failures, handler errors, reconnects …),
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
        readings = read(sources)
        helps = {name: text for name, _attr, _unit, text in COUNTERS}
        labels: dict[str, list[str]] = {}
        for name, keys, _unit, text in LABELLED:
            helps[name] = text
            labels[name] = list(keys)
        helps["observer_seconds"] = "Time observers held the socket thread."
        for name, text in helps.items():
            family = CounterMetricFamily(f"{ns}_{name}", text, labels=labels.get(name, ["feed"]))
            for values, total in sorted(readings.counters.get(name, {}).items()):
                family.add_metric(list(values), total)
            yield family
        for name, _unit, text in GAUGES:
            g = GaugeMetricFamily(f"{ns}_{name}", text, labels=["feed"])
            for values, value in sorted(readings.gauges.get(name, {}).items()):
                g.add_metric(list(values), value)
            yield g
        for name, _attr, text in HISTOGRAMS:
            h = HistogramMetricFamily(f"{ns}_{name}", text, labels=["feed"])
            for values, reading in sorted(readings.histograms.get(name, {}).items()):
                buckets = [(_le(le), n) for le, n in reading.cumulative()]
                h.add_metric(list(values), buckets, reading.sum)
            yield h
        info = InfoMetricFamily(f"{ns}_build", "rxalpaca and Python versions.")
        info.add_metric([], {"version": _version(), "python": sys.version.split()[0]})
        yield info


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


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
