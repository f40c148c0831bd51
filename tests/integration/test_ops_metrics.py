"""Message lag, reconnects by reason, slow-consumer discards and sampled receive spans,
against the embedded server: scraped over HTTP, read back through OTel's in-memory
exporters (issue #15, items 1 and 2)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from reactivex import operators as rx_ops

from rxalpaca import StreamClient, ops
from rxalpaca.contrib.prometheus import serve_metrics
from rxalpaca.errors import ConfigurationError
from rxalpaca.protocol import ConnectionState
from rxalpaca.testing import AlpacaStreamServer
from tests.conftest import TIMING_FACTOR
from tests.integration.test_otel import Otel
from tests.integration.test_prometheus import sample, scrape

pytestmark = pytest.mark.timeout(60)

WAIT = 10 * TIMING_FACTOR


@pytest.fixture(name="otel")
def otel_fixture() -> Iterator[Otel]:
    o = Otel()
    yield o
    o.meter_provider.shutdown()
    o.tracer_provider.shutdown()


def quotes(client: StreamClient, n: int, *symbols: str) -> None:
    got = threading.Semaphore(0)
    client.quotes(*(symbols or ("AAPL",))).subscribe(lambda q: got.release())
    for _ in range(n):
        assert got.acquire(timeout=WAIT), "no quotes"


def reconnected(client: StreamClient) -> threading.Event:
    """Set when the client is authenticated again after a lost connection."""
    done, lost = threading.Event(), threading.Event()

    def on(state: ConnectionState) -> None:
        if state is ConnectionState.RECONNECTING:
            lost.set()
        elif state is ConnectionState.AUTHENTICATED and lost.is_set():
            done.set()

    client.state.subscribe(on)
    return done


def test_lag_histogram_is_scraped_with_cumulative_buckets(
    alpaca_server: AlpacaStreamServer, make_client: Callable[..., StreamClient]
) -> None:
    alpaca_server.start_market(symbols=["AAPL"], rate=400)
    client = make_client(alpaca_server)
    client.metrics.lag_sample_every = 1  # every data frame: a short test still sees many
    quotes(client, 30)
    with serve_metrics(client, port=0) as port:
        before = client.metrics.lag.count
        families = scrape(port)
        after = client.metrics.lag.count
    lag = families["rxalpaca_message_lag_seconds"]
    assert lag.type == "histogram"
    buckets = [(s.labels["le"], s.value) for s in lag.samples if s.name.endswith("_bucket")]
    counts = [v for _le, v in buckets]
    assert counts == sorted(counts), "cumulative buckets never go down"
    assert buckets[-1][0] == "+Inf"
    count = sample(families, "rxalpaca_message_lag_seconds_count", feed="iex")
    assert count == buckets[-1][1]
    assert 0 < before <= count <= after
    total = sample(families, "rxalpaca_message_lag_seconds_sum", feed="iex")
    # The embedded server stamps records as it sends them: well under a second, on average.
    assert 0 <= total / count < 1.0
    assert 0 <= client.metrics.lag.quantile(0.5) <= client.metrics.lag.quantile(0.99) < 5
    observer = families["rxalpaca_observer_batch_seconds"]
    assert observer.type == "histogram"
    snap = client.metrics.snapshot()
    assert snap["lag_samples"] >= count and 0 <= snap["lag_p50_s"] <= snap["lag_p99_s"]


def test_lag_is_sampled_one_data_frame_in_n(
    alpaca_server: AlpacaStreamServer, make_client: Callable[..., StreamClient]
) -> None:
    alpaca_server.start_market(symbols=["AAPL"], rate=400)
    client = make_client(alpaca_server)
    client.metrics.lag_sample_every = 8
    quotes(client, 80)
    m = client.metrics
    frames = m.frames_received
    # One sample per 8 frames (control frames let the countdown run, never sample).
    assert 1 <= m.lag.count <= frames // 8 + 1


def test_reconnects_are_counted_by_reason(
    alpaca_server: AlpacaStreamServer, make_client: Callable[..., StreamClient]
) -> None:
    alpaca_server.start_market(symbols=["AAPL"], rate=200)
    client = make_client(alpaca_server)
    quotes(client, 3)
    again = reconnected(client)
    alpaca_server.close(code=1000)
    assert again.wait(WAIT)
    quotes(client, 1)
    again = reconnected(client)
    alpaca_server.send_error(407, close=True)
    assert again.wait(WAIT)
    quotes(client, 1)
    m = client.metrics
    assert dict(m.reconnects_by_reason) == {"closed": 1, "server_error_407": 1}
    assert m.reconnects == 2
    assert m.snapshot()["reconnects_by_reason"] == {"closed": 1, "server_error_407": 1}
    with serve_metrics(client, port=0) as port:
        families = scrape(port)
    assert sample(families, "rxalpaca_reconnects_total", feed="iex", reason="closed") == 1
    assert sample(families, "rxalpaca_reconnects_total", feed="iex", reason="server_error_407") == 1


def test_silence_is_its_own_reconnect_reason(
    alpaca_server: AlpacaStreamServer, make_client: Callable[..., StreamClient]
) -> None:
    alpaca_server.start_market(symbols=["AAPL"], rate=200)
    client = make_client(alpaca_server, silence_timeout=0.5)
    quotes(client, 3)
    again = reconnected(client)
    alpaca_server.mute()
    assert again.wait(WAIT)
    assert client.metrics.reconnects_by_reason["silence"] >= 1, client.metrics.reconnects_by_reason


def test_conflate_on_the_socket_thread_counts_in_the_clients_metrics(
    alpaca_server: AlpacaStreamServer, make_client: Callable[..., StreamClient]
) -> None:
    """No ``metrics=``: the operator is fed on the socket thread, whose client is known."""
    alpaca_server.start_market(symbols=["AAPL"], rate=1000)
    client = make_client(alpaca_server)
    release = threading.Event()
    seen = threading.Semaphore(0)

    def slow(_q: Any) -> None:
        seen.release()
        release.wait(WAIT)

    client.quotes("AAPL").pipe(ops.conflate()).subscribe(slow)
    assert seen.acquire(timeout=WAIT)
    # The observer is stuck on its first quote: every later one replaces the pending one.
    quotes(client, 20)
    release.set()
    assert client.metrics.discarded().get("conflated", 0) >= 10
    with serve_metrics(client, port=0) as port:
        families = scrape(port)
    assert (
        sample(families, "rxalpaca_messages_discarded_total", feed="iex", reason="conflated") >= 10
    )
    assert (
        sample(families, "rxalpaca_messages_discarded_total", feed="iex", reason="throttled") == 0
    )


def test_throttle_and_buffer_count_with_explicit_metrics(
    alpaca_server: AlpacaStreamServer, make_client: Callable[..., StreamClient]
) -> None:
    alpaca_server.start_market(symbols=["AAPL"], rate=1000)
    client = make_client(alpaca_server)
    got = threading.Semaphore(0)
    release, overflowed = threading.Event(), threading.Event()

    def stuck(_q: Any) -> None:
        release.wait(WAIT)

    m = client.metrics
    client.quotes("AAPL").pipe(ops.throttle(60.0, metrics=m)).subscribe(lambda q: got.release())
    client.quotes("AAPL").pipe(
        rx_ops.observe_on(_thread_scheduler()),  # off the socket thread: metrics= says where
        ops.bounded_buffer(1, "drop_newest", metrics=m, on_overflow=lambda n: overflowed.set()),
    ).subscribe(stuck)
    assert got.acquire(timeout=WAIT)
    quotes(client, 20)
    assert overflowed.wait(WAIT)
    release.set()
    discarded = m.discarded()
    assert discarded.get("throttled", 0) >= 10
    assert discarded.get("buffer_overflow", 0) >= 1


def _thread_scheduler() -> Any:
    from reactivex.scheduler import NewThreadScheduler

    return NewThreadScheduler()


def test_on_loop_overflow_counts_as_loop_overflow(
    alpaca_server: AlpacaStreamServer, make_client: Callable[..., StreamClient]
) -> None:
    alpaca_server.start_market(symbols=["AAPL"], rate=1000)
    client = make_client(alpaca_server)

    async def main() -> int:
        loop = asyncio.get_running_loop()
        first = asyncio.Event()

        async def slow(_q: Any) -> None:
            first.set()
            await asyncio.sleep(0.5)  # a slow handler: the hand-over of 1 overflows

        sub = client.quotes("AAPL").pipe(ops.on_loop(loop, size=1)).subscribe(slow)
        await asyncio.wait_for(first.wait(), WAIT)
        await loop.run_in_executor(None, quotes, client, 100)
        sub.dispose()
        return client.metrics.discarded().get("loop_overflow", 0)

    assert asyncio.run(main()) >= 10


def test_otel_exports_lag_discards_and_reconnect_reasons(
    alpaca_server: AlpacaStreamServer, make_client: Callable[..., StreamClient], otel: Otel
) -> None:
    alpaca_server.start_market(symbols=["AAPL"], rate=400)
    client = make_client(alpaca_server)
    client.metrics.lag_sample_every = 1
    otel.instrument(client)
    quotes(client, 10)
    client.metrics.count_discarded("conflated", 3)
    again = reconnected(client)
    alpaca_server.close(code=1000)
    assert again.wait(WAIT)
    count = otel.points("rxalpaca.message_lag.count")[(("feed", "iex"),)]
    assert count >= 1
    assert otel.points("rxalpaca.message_lag.sum")[(("feed", "iex"),)] >= 0
    p50 = otel.points("rxalpaca.message_lag.p50")[(("feed", "iex"),)]
    p99 = otel.points("rxalpaca.message_lag.p99")[(("feed", "iex"),)]
    assert 0 <= p50 <= p99 < 5
    discarded = otel.points("rxalpaca.messages_discarded")
    assert discarded[(("feed", "iex"), ("reason", "conflated"))] == 3
    assert discarded[(("feed", "iex"), ("reason", "loop_overflow"))] == 0
    reconnects = otel.points("rxalpaca.reconnects")
    assert reconnects[(("feed", "iex"), ("reason", "closed"))] == 1
    assert otel.points("rxalpaca.observer_batch.count")[(("feed", "iex"),)] >= 0


# ------------------------------------------------------------------ receive spans


def test_no_receive_spans_by_default(
    alpaca_server: AlpacaStreamServer, make_client: Callable[..., StreamClient], otel: Otel
) -> None:
    alpaca_server.start_market(symbols=["AAPL"], rate=400)
    client = make_client(alpaca_server)
    otel.instrument(client)
    quotes(client, 20)
    assert client.metrics.receive_hook is None
    assert not otel.finished("receive iex")


def test_sampled_receive_spans_follow_the_messaging_conventions(
    alpaca_server: AlpacaStreamServer, make_client: Callable[..., StreamClient], otel: Otel
) -> None:
    alpaca_server.start_market(symbols=["AAPL", "MSFT"], rate=400)
    client = make_client(alpaca_server)
    inst = instrument_sampled(otel, client, 0.25)
    quotes(client, 40, "AAPL", "MSFT")
    frames = client.metrics.frames_received
    spans = otel.finished("receive iex")
    inst.uninstrument(client)
    assert client.metrics.receive_hook is None
    # One frame in four, the first included (frames still arriving: a little slack).
    assert frames // 4 <= len(spans) <= client.metrics.frames_received // 4 + 1
    data = [s for s in spans if s.attributes and s.attributes["messaging.batch.message_count"]]
    assert data
    for span in spans:
        attrs = dict(span.attributes or {})
        assert span.kind.name == "CONSUMER"
        assert attrs["messaging.system"] == "alpaca"
        assert attrs["messaging.operation.type"] == "receive"
        assert attrs["messaging.destination.name"] == "iex"
        assert int(attrs["messaging.batch.message_count"]) >= 0  # type: ignore[arg-type]
        assert int(attrs["messaging.message.body.size"]) > 0  # type: ignore[arg-type]
        assert span.start_time is not None and span.end_time is not None
        assert span.start_time <= span.end_time
        assert "AAPL" not in str(attrs)  # never a symbol on a span


def test_every_frame_at_rate_one_and_a_bad_frame_is_an_error_span(
    alpaca_server: AlpacaStreamServer, make_client: Callable[..., StreamClient], otel: Otel
) -> None:
    alpaca_server.start_market(symbols=["AAPL"], rate=200)
    client = make_client(alpaca_server)
    instrument_sampled(otel, client, 1.0)
    quotes(client, 5)
    errors = threading.Event()
    client.errors.subscribe(lambda e: errors.set())
    alpaca_server.send_fault("invalid")
    assert errors.wait(WAIT)
    quotes(client, 2)
    before = client.metrics.frames_received
    spans = otel.finished("receive iex")
    after = client.metrics.frames_received
    assert before - 1 <= len(spans) <= after  # every frame (one may be between stages)
    failed = [s for s in spans if s.status.status_code.name == "ERROR"]
    assert failed and dict(failed[0].attributes or {})["error.type"] == "FrameError"


def instrument_sampled(otel: Otel, client: StreamClient, rate: float) -> Any:
    from rxalpaca.contrib.otel import instrument

    return instrument(
        client,
        meter_provider=otel.meter_provider,
        tracer_provider=otel.tracer_provider,
        receive_sample_rate=rate,
    )


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_a_sample_rate_outside_0_1_is_a_configuration_error(rate: float, otel: Otel) -> None:
    from rxalpaca.contrib.otel import OtelInstrumentation

    with pytest.raises(ConfigurationError, match="receive_sample_rate must be between 0 and 1"):
        OtelInstrumentation(meter_provider=otel.meter_provider, receive_sample_rate=rate)


def test_state_is_still_traced_with_receive_spans(
    alpaca_server: AlpacaStreamServer, make_client: Callable[..., StreamClient], otel: Otel
) -> None:
    alpaca_server.start_market(symbols=["AAPL"], rate=200)
    client = make_client(alpaca_server)
    instrument_sampled(otel, client, 0.5)
    quotes(client, 3)
    assert otel.finished("auth iex")
    assert otel.finished("receive iex")
