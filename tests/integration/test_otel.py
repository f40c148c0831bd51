"""OpenTelemetry metrics and spans, read back through the SDK's in-memory exporters (issue #15)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from rxalpaca import StreamClient
from rxalpaca.contrib.otel import OtelInstrumentation, instrument
from rxalpaca.protocol import ConnectionState
from rxalpaca.testing import AlpacaStreamServer
from tests.conftest import TIMING_FACTOR

pytestmark = pytest.mark.timeout(60)


class Otel:
    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.spans = InMemorySpanExporter()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))

    def instrument(self, *clients: Any) -> OtelInstrumentation:
        return instrument(
            *clients, meter_provider=self.meter_provider, tracer_provider=self.tracer_provider
        )

    def points(self, name: str) -> dict[tuple[tuple[str, Any], ...], float]:
        data = self.reader.get_metrics_data()
        out: dict[tuple[tuple[str, Any], ...], float] = {}
        if data is None:  # no instrument observed anything
            return out
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        for p in metric.data.data_points:
                            out[tuple(sorted(p.attributes.items()))] = p.value  # type: ignore[union-attr]
        return out

    def finished(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.name == name]


@pytest.fixture
def otel() -> Iterator[Otel]:
    o = Otel()
    yield o
    o.meter_provider.shutdown()
    o.tracer_provider.shutdown()


def authenticated(client: StreamClient, times: int = 1) -> threading.Event:
    """Set once the client has authenticated ``times`` times."""
    done, seen = threading.Event(), [0]

    def on(state: ConnectionState) -> None:
        if state is ConnectionState.AUTHENTICATED:
            seen[0] += 1
            if seen[0] >= times:
                done.set()

    client.state.subscribe(on)
    return done


class AckCounter:
    """A request listener: set once ``n`` requests were answered."""

    def __init__(self, n: int) -> None:
        self.n, self.answered, self.done = n, 0, threading.Event()

    def request_sent(self, action: str, channels: Mapping[str, tuple[str, ...]]) -> None:
        pass

    def request_answered(self, error: Exception | None) -> None:
        self.answered += 1
        if self.answered >= self.n:
            self.done.set()

    def wait(self, timeout: float) -> bool:
        return self.done.wait(timeout)


def test_metrics_and_spans_of_a_session(
    alpaca_server: AlpacaStreamServer, make_client: Callable[..., StreamClient], otel: Otel
) -> None:
    alpaca_server.start_market(symbols=["AAPL"], rate=400)
    client = make_client(alpaca_server)
    otel.instrument(client)
    got = threading.Semaphore(0)
    client.quotes("AAPL").subscribe(lambda q: got.release())
    for _ in range(50):
        assert got.acquire(timeout=10 * TIMING_FACTOR)
    quotes = otel.points("rxalpaca.messages")[(("channel", "quotes"), ("feed", "iex"))]
    assert quotes >= 50
    assert otel.points("rxalpaca.frames_received")[(("feed", "iex"),)] >= 50
    assert otel.points("rxalpaca.connection_up")[(("feed", "iex"),)] == 1
    assert otel.points("rxalpaca.subscribed_symbols")[(("feed", "iex"),)] == 1
    assert not otel.points("rxalpaca.reconnects")  # a series per reason, once there is one
    [connect], [auth], [sub] = (
        otel.finished(n) for n in ("connect iex", "auth iex", "subscribe iex")
    )
    for span in (connect, auth, sub):
        assert span.status.status_code is StatusCode.UNSET
        assert span.attributes is not None
        assert span.attributes["messaging.system"] == "alpaca"
        assert span.attributes["messaging.destination.name"] == "iex"
        assert span.attributes["server.address"] == "127.0.0.1"
        assert span.attributes["server.port"] == alpaca_server.port
        assert span.parent is None
    assert sub.attributes is not None and sub.attributes["rxalpaca.symbols.count"] == 1
    assert connect.end_time is not None and auth.start_time is not None
    assert connect.end_time <= auth.start_time
    # 50+ messages, and still only the three spans: never one per message.
    assert len(otel.spans.get_finished_spans()) == 3


def test_reconnect_span_is_the_parent_of_the_next_connection(
    alpaca_server: AlpacaStreamServer, make_client: Callable[..., StreamClient], otel: Otel
) -> None:
    client = make_client(alpaca_server)
    otel.instrument(client)
    acks = AckCounter(2)
    client.add_request_listener(acks)  # after otel's: its span has ended when this hears
    twice = authenticated(client, times=2)
    client.quotes("AAPL").subscribe(lambda q: None)
    conn = alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}}, timeout=10 * TIMING_FACTOR)
    alpaca_server.drop(conn)
    assert twice.wait(10 * TIMING_FACTOR)
    assert acks.wait(10 * TIMING_FACTOR)  # the replayed subscription was acked
    [reconnect] = otel.finished("reconnect iex")
    assert reconnect.status.status_code is StatusCode.UNSET
    connects = otel.finished("connect iex")
    assert len(connects) == 2 and len(otel.finished("subscribe iex")) == 2
    assert connects[0].parent is None
    assert connects[1].parent is not None
    assert connects[1].parent.span_id == reconnect.context.span_id
    reconnects = otel.points("rxalpaca.reconnects")  # a drop: closed or network_error
    assert sum(reconnects.values()) == 1 and all(("feed", "iex") in k for k in reconnects)


def test_refused_auth_is_an_error_span(
    alpaca_server: AlpacaStreamServer, make_client: Callable[..., StreamClient], otel: Otel
) -> None:
    client = make_client(alpaca_server, secret="not-it")
    otel.instrument(client)
    ended = threading.Event()
    client.quotes("AAPL").subscribe(lambda q: None, on_error=lambda e: ended.set())
    assert ended.wait(10 * TIMING_FACTOR)
    [auth] = otel.finished("auth iex")
    assert auth.status.status_code is StatusCode.ERROR
    assert auth.attributes is not None and auth.attributes["error.type"] == "AuthFailed"


def test_refused_subscription_is_an_error_span_and_uninstrument_stops(
    alpaca_server_factory: Callable[..., AlpacaStreamServer],
    make_client: Callable[..., StreamClient],
    otel: Otel,
) -> None:
    from rxalpaca.testing import DEFAULT_KEY, DEFAULT_SECRET, Account

    server = alpaca_server_factory(accounts={DEFAULT_KEY: Account(DEFAULT_SECRET, symbol_limit=1)})
    client = make_client(server)
    instrumentation = otel.instrument(client)
    refused = threading.Event()
    client.quotes("AAPL", "MSFT").subscribe(lambda q: None, on_error=lambda e: refused.set())
    assert refused.wait(10 * TIMING_FACTOR)
    failed = [s for s in otel.finished("subscribe iex") if s.status.status_code is StatusCode.ERROR]
    assert failed and failed[0].attributes is not None
    assert failed[0].attributes["rxalpaca.error.code"] == 405
    assert otel.points("rxalpaca.connection_up") == {(("feed", "iex"),): 1}
    instrumentation.uninstrument(client)
    assert otel.points("rxalpaca.connection_up") == {}
