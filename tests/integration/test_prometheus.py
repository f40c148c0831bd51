"""The Prometheus collector, scraped over real HTTP and parsed by prometheus-client (issue #15)."""

from __future__ import annotations

import re
import signal
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from rxalpaca import StreamClient
from rxalpaca.contrib.prometheus import RxAlpacaCollector, serve_metrics
from rxalpaca.feeds import endpoint
from rxalpaca.metrics import Metrics
from rxalpaca.testing import AlpacaStreamServer
from tests.conftest import TIMING_FACTOR
from tests.integration.test_cli_commands import creds, start

pytestmark = pytest.mark.timeout(60)

LABELS = {"feed", "channel", "reason"}


def scrape(port: int) -> dict[str, Any]:
    """name -> family, parsed by prometheus-client's own parser."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def parse(exposition: bytes) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(exposition.decode())}


def value(families: dict[str, Any], name: str, **labels: str) -> float:
    family = families[name]
    found = [s.value for s in family.samples if s.labels == labels and s.name.startswith(name)]
    assert len(found) == 1, (name, labels, family.samples)
    return float(found[0])


def sample(families: dict[str, Any], sample_name: str, **labels: str) -> float:
    for family in families.values():
        for s in family.samples:
            if s.name == sample_name and s.labels == labels:
                return float(s.value)
    raise AssertionError(f"no sample {sample_name}{labels}")


def receive(client: StreamClient, n: int) -> None:
    """Subscribe to quotes and trades of AAPL and wait for ``n`` quotes."""
    got = threading.Semaphore(0)
    client.quotes("AAPL").subscribe(lambda q: got.release())
    client.trades("AAPL").subscribe(lambda t: None)
    for _ in range(n):
        assert got.acquire(timeout=10 * TIMING_FACTOR), "no quotes"


def test_scrape_follows_the_conventions_and_matches_the_client(
    alpaca_server: AlpacaStreamServer, make_client: Callable[..., StreamClient]
) -> None:
    alpaca_server.start_market(symbols=["AAPL"], rate=400)
    client = make_client(alpaca_server)
    receive(client, 20)
    with serve_metrics(client, port=0) as port:
        before, spent_before = client.metrics.snapshot(), client.metrics.observer_time_total_ns
        families = scrape(port)
        after, spent_after = client.metrics.snapshot(), client.metrics.observer_time_total_ns
    for name, family in families.items():
        assert name.startswith("rxalpaca_"), name
        for s in family.samples:
            info = name.startswith("rxalpaca_build")
            allowed = {"version", "python"} if info else LABELS
            if family.type == "histogram" and s.name.endswith("_bucket"):
                allowed = LABELS | {"le"}  # Prometheus' own bucket label
            assert set(s.labels) <= allowed, (s.name, s.labels)
            assert "AAPL" not in s.labels.values()  # never a per-symbol series
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples)
    quotes = value(families, "rxalpaca_messages", feed="iex", channel="quotes")
    by_type = before["messages_by_type"]
    assert by_type["Quote"] <= quotes <= after["messages_by_type"]["Quote"]
    assert value(families, "rxalpaca_messages", feed="iex", channel="trades") >= 0
    frames = sample(families, "rxalpaca_frames_received_total", feed="iex")
    assert before["frames_received"] <= frames <= after["frames_received"]
    assert sample(families, "rxalpaca_received_bytes_total", feed="iex") >= frames
    assert sample(families, "rxalpaca_decode_failures_total", feed="iex") == 0
    assert sample(families, "rxalpaca_messages_dropped_total", feed="iex", reason="unrouted") >= 0
    assert sample(families, "rxalpaca_connection_up", feed="iex") == 1
    assert sample(families, "rxalpaca_subscribed_symbols", feed="iex") == 2
    assert 0 <= sample(families, "rxalpaca_last_data_age_seconds", feed="iex") < 60
    spent = sample(families, "rxalpaca_observer_seconds_total", feed="iex")
    assert 0 < spent_before / 1e9 <= spent <= spent_after / 1e9
    p50 = sample(families, "rxalpaca_observer_batch_p50_seconds", feed="iex")
    p99 = sample(families, "rxalpaca_observer_batch_p99_seconds", feed="iex")
    assert 0 <= p50 <= p99 < 1
    assert sample_labels(families, "rxalpaca_build_info")["version"]


class BusLike:
    """Anything with the client's three parts is collected (a message-bus client, later)."""

    def __init__(self, feed: str) -> None:
        self.metrics = Metrics()
        self.endpoint = endpoint(feed)

    def health(self) -> dict[str, Any]:
        return {"connected": True, "live_subscriptions": 3, "last_data_age_s": None}


def test_sources_on_one_feed_are_summed_and_any_source_with_the_api_works() -> None:
    a, b, c = BusLike("iex"), BusLike("iex"), BusLike("crypto")
    for source, reasons in ((a, "cc"), (b, "ccn"), (c, "n" * 7)):
        for r in reasons:
            source.metrics.count_reconnect("closed" if r == "c" else "network_error")
    collector = RxAlpacaCollector(a, b)
    collector.add(c)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    families = {
        f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())
    }
    assert sample(families, "rxalpaca_reconnects_total", feed="iex", reason="closed") == 4
    assert sample(families, "rxalpaca_reconnects_total", feed="iex", reason="network_error") == 1
    assert (
        sample(families, "rxalpaca_reconnects_total", feed="crypto/us", reason="network_error") == 7
    )
    assert sample(families, "rxalpaca_connection_up", feed="iex") == 2
    assert sample(families, "rxalpaca_subscribed_symbols", feed="iex") == 6
    assert not any(s.name == "rxalpaca_last_data_age_seconds" for s in
                   families["rxalpaca_last_data_age_seconds"].samples)  # fmt: skip
    collector.remove(a)
    collector.remove(a)  # twice: ignored
    families = {
        f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())
    }
    assert sample(families, "rxalpaca_reconnects_total", feed="iex", reason="closed") == 2


def test_stream_serves_metrics_on_metrics_port(alpaca_server: AlpacaStreamServer) -> None:
    """``rxalpaca stream ... --metrics-port 0``: scraped while the process streams."""
    alpaca_server.start_market(symbols=["AAPL"], rate=400)
    proc = start("stream", "quotes", "AAPL", *creds(alpaca_server), "--metrics-port", "0")
    try:
        assert proc.stderr is not None
        port = None
        for line in proc.stderr:
            found = re.match(r"# metrics on http://127\.0\.0\.1:(\d+)/metrics", line)
            if found:
                port = int(found.group(1))
                break
        assert port is not None, "no metrics line"
        deadline = time.monotonic() + 10 * TIMING_FACTOR
        quotes = 0.0
        while quotes == 0 and time.monotonic() < deadline:  # polls the endpoint itself
            families = scrape(port)
            if "rxalpaca_messages" in families and families["rxalpaca_messages"].samples:
                quotes = value(families, "rxalpaca_messages", feed="iex", channel="quotes")
        assert quotes > 0
        assert sample(families, "rxalpaca_connection_up", feed="iex") == 1
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10 * TIMING_FACTOR) == 0
    finally:
        proc.kill()
        proc.communicate()


def test_metrics_port_in_use_is_a_one_line_error(alpaca_server: AlpacaStreamServer) -> None:
    with serve_metrics(port=0) as busy:
        proc = start("stream", "quotes", "AAPL", *creds(alpaca_server), "--metrics-port", str(busy))
        _out, err = proc.communicate(timeout=30 * TIMING_FACTOR)
    assert proc.returncode == 2, err
    assert "Traceback" not in err
    assert re.search(r"^rxalpaca stream: cannot serve metrics on 127\.0\.0\.1:\d+", err, re.M)


def sample_labels(families: dict[str, Any], sample_name: str) -> dict[str, str]:
    for family in families.values():
        for s in family.samples:
            if s.name == sample_name:
                return dict(s.labels)
    raise AssertionError(f"no sample {sample_name}")
