"""OpenTelemetry: the client metrics as OTel instruments, and spans for the connection's life.

``rxalpaca[otel]`` (``opentelemetry-api``; bring the SDK and an exporter of your choice).

* **Metrics** — observable instruments whose callbacks read the clients' counters
  when the SDK collects (nothing on the hot path): ``rxalpaca.messages``
  (attributes ``feed``, ``channel``), ``rxalpaca.messages_dropped`` (``feed``,
  ``reason``), one counter per entry of ``_readings.COUNTERS`` (frames, bytes, decode
  failures, handler errors, reconnects …), ``rxalpaca.observer_seconds`` and the
  gauges (``rxalpaca.connection_up``, ``rxalpaca.subscribed_symbols``, data and frame
  ages, observer-time percentiles). The same numbers as the Prometheus collector.
* **Spans** (CLIENT kind, OTel messaging conventions: ``messaging.system`` =
  ``alpaca``, ``messaging.destination.name`` = the feed, ``messaging.operation.name``,
  ``server.address``/``server.port``): ``connect <feed>`` (socket, TLS, upgrade,
  greeting), ``auth <feed>``, ``subscribe <feed>`` / ``unsubscribe <feed>`` (request
  to ack, with ``rxalpaca.symbols.count``) and ``reconnect <feed>`` (from the loss to
  the next authentication; the new connection's spans are its children). A failure
  sets the span's status to ERROR with ``error.type``. There is never a span per
  message.
* **Receive spans** (opt-in: ``receive_sample_rate``, default 0 = none): one CONSUMER
  span ``receive <feed>`` per sampled *frame*, from the frame's arrival to the end of
  its observers, with ``messaging.operation.type`` = ``receive`` and
  ``messaging.batch.message_count`` (the frame's messages). Sampling is deterministic:
  rate 0.01 makes a span of every 100th frame. Off, it costs one attribute read per
  frame; on, one call per frame and a span per sampled one.

Example::

    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from rxalpaca.contrib.otel import instrument

    otel = instrument(client, meter_provider=MeterProvider(...),
                      tracer_provider=TracerProvider(...))
    ...
    otel.uninstrument(client)

Threading: span bookkeeping runs on whichever thread reports a state change or a
request (socket, supervisor, a user's) under ``_Tracer._lock``; metric callbacks run
on the SDK's collection thread and only read counters.
"""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import SpanKind, Status, StatusCode

from ..errors import ConfigurationError, StreamError
from ..protocol import ConnectionState
from ._readings import COUNTERS, GAUGES, HISTOGRAMS, LABELLED, MetricsSource, read

__all__ = ["OtelInstrumentation", "instrument"]

_S = ConnectionState


def _version() -> str:
    try:
        return metadata.version("rxalpaca")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "unknown"


class OtelInstrumentation:
    """OTel metrics for any number of sources, and spans for the clients that have a state.

    Args:
        meter_provider: where instruments are created (default the global one).
        tracer_provider: where spans go (default the global one).
        receive_sample_rate: the share of frames (0..1) that get a ``receive`` span;
            0 (the default): none.

    The instruments are created once, here; :meth:`instrument` adds a source to what
    their callbacks read, and — for a :class:`~rxalpaca.StreamClient` (anything with
    ``state`` and ``add_request_listener``) — starts its spans.
    """

    def __init__(
        self,
        *,
        meter_provider: metrics.MeterProvider | None = None,
        tracer_provider: trace.TracerProvider | None = None,
        receive_sample_rate: float = 0.0,
    ) -> None:
        if not 0.0 <= receive_sample_rate <= 1.0:
            raise ConfigurationError(
                f"receive_sample_rate must be between 0 and 1, not {receive_sample_rate!r}"
            )
        self.receive_sample_rate = receive_sample_rate
        self._lock = threading.Lock()
        self._sources: list[MetricsSource] = []
        self._tracers: dict[int, _Tracer] = {}
        provider = meter_provider or metrics.get_meter_provider()
        meter = provider.get_meter("rxalpaca", _version())
        self.tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer(
            "rxalpaca", _version()
        )
        for name, _attr, unit, text in COUNTERS:
            meter.create_observable_counter(
                f"rxalpaca.{name}", [self._counter(name, ("feed",))], unit=unit, description=text
            )
        for name, keys, unit, text in LABELLED:
            meter.create_observable_counter(
                f"rxalpaca.{name}", [self._counter(name, keys)], unit=unit, description=text
            )
        # The OTel API has no asynchronous histogram, and recording each sample into a
        # synchronous one would put the SDK on the hot path: each histogram goes out as
        # its count and sum (counters) and its median and 99th percentile (gauges,
        # interpolated in the buckets at collection time).
        for name, _attr, text in HISTOGRAMS:
            stem = name.removesuffix("_seconds")
            meter.create_observable_counter(
                f"rxalpaca.{stem}.count",
                [self._histogram(name, "count")],
                unit="{sample}",
                description=f"{text} Samples.",
            )
            meter.create_observable_counter(
                f"rxalpaca.{stem}.sum",
                [self._histogram(name, "sum")],
                unit="s",
                description=f"{text} Sum.",
            )
            for q in ("p50", "p99"):
                meter.create_observable_gauge(
                    f"rxalpaca.{stem}.{q}",
                    [self._histogram(name, q)],
                    unit="s",
                    description=f"{text} {q}, interpolated in fixed buckets.",
                )
        meter.create_observable_counter(
            "rxalpaca.observer_seconds",
            [self._counter("observer_seconds", ("feed",))],
            unit="s",
            description="Time observers held the socket thread.",
        )
        for name, unit, text in GAUGES:
            meter.create_observable_gauge(
                f"rxalpaca.{name}", [self._gauge(name)], unit=unit, description=text
            )

    def _snapshot(self) -> list[MetricsSource]:
        with self._lock:
            return list(self._sources)

    def _counter(self, name: str, keys: tuple[str, ...]) -> Any:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            series = read(self._snapshot()).counters.get(name, {})
            return [Observation(v, dict(zip(keys, k, strict=True))) for k, v in series.items()]

        return callback

    def _gauge(self, name: str) -> Any:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            series = read(self._snapshot()).gauges.get(name, {})
            return [Observation(v, {"feed": k[0]}) for k, v in series.items()]

        return callback

    def _histogram(self, name: str, what: str) -> Any:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            series = read(self._snapshot()).histograms.get(name, {})
            out = []
            for k, h in series.items():
                if what == "count":
                    v: float = h.count
                elif what == "sum":
                    v = h.sum
                else:
                    v = h.quantile(0.5 if what == "p50" else 0.99)
                out.append(Observation(v, {"feed": k[0]}))
            return out

        return callback

    def instrument(self, source: MetricsSource) -> None:
        """Export ``source``'s metrics, and trace its connection if it has one (any thread)."""
        with self._lock:
            self._sources.append(source)
        if self.receive_sample_rate > 0:
            source.metrics.receive_hook = _ReceiveSpans(
                self.tracer, source.endpoint.feed, self.receive_sample_rate
            )
        state = getattr(source, "state", None)
        add_listener = getattr(source, "add_request_listener", None)
        if state is not None and add_listener is not None:
            tracer = _Tracer(self.tracer, source)
            with self._lock:
                self._tracers[id(source)] = tracer
            add_listener(tracer)
            tracer.subscription = state.subscribe(tracer.on_state)

    def uninstrument(self, source: MetricsSource) -> None:
        """Stop exporting ``source`` and end its open spans."""
        with self._lock:
            if source in self._sources:
                self._sources.remove(source)
            tracer = self._tracers.pop(id(source), None)
        if isinstance(source.metrics.receive_hook, _ReceiveSpans):
            source.metrics.receive_hook = None
        if tracer is not None:
            tracer.stop()


def instrument(
    *sources: MetricsSource,
    meter_provider: metrics.MeterProvider | None = None,
    tracer_provider: trace.TracerProvider | None = None,
    receive_sample_rate: float = 0.0,
) -> OtelInstrumentation:
    """Instrument ``sources`` (clients) with OTel metrics and spans; see the module docs."""
    otel = OtelInstrumentation(
        meter_provider=meter_provider,
        tracer_provider=tracer_provider,
        receive_sample_rate=receive_sample_rate,
    )
    for source in sources:
        otel.instrument(source)
    return otel


class _ReceiveSpans:
    """The route stage's receive hook: a span for one frame in every ``1 / rate``.

    Called on the socket thread only (its credit is that thread's alone, no lock)."""

    def __init__(self, tracer: trace.Tracer, feed: str, rate: float) -> None:
        self._tracer = tracer
        self._rate = rate
        self._credit = 1.0  # the first frame gets a span
        self._name = f"receive {feed}"
        self._base: dict[str, Any] = {
            "messaging.system": "alpaca",
            "messaging.destination.name": feed,
            "messaging.operation.type": "receive",
            "messaging.operation.name": "receive",
            "network.protocol.name": "websocket",
        }

    def __call__(self, batch: Any) -> None:
        credit = self._credit
        if credit < 1.0:
            self._credit = credit + self._rate
            return
        self._credit = credit - 1.0 + self._rate
        span = self._tracer.start_span(
            self._name,
            kind=SpanKind.CONSUMER,
            start_time=batch.received_ns,
            attributes={
                **self._base,
                "messaging.batch.message_count": len(batch.items),
                "messaging.message.body.size": batch.nbytes,
            },
        )
        if batch.failed:
            span.set_status(Status(StatusCode.ERROR, "undecodable frame"))
            span.set_attribute("error.type", "FrameError")
        span.end()


class _Tracer:
    """The spans of one client, driven by its state transitions and request listener."""

    def __init__(self, tracer: trace.Tracer, client: Any) -> None:
        self._tracer = tracer
        self._client = client
        self._lock = threading.Lock()
        feed = client.endpoint.feed
        self.feed = feed
        url = urllib.parse.urlsplit(getattr(client, "url", "") or "")
        self._base: dict[str, Any] = {
            "messaging.system": "alpaca",
            "messaging.destination.name": feed,
            "network.protocol.name": "websocket",
        }
        if url.hostname:
            self._base["server.address"] = url.hostname
            self._base["server.port"] = url.port or (443 if url.scheme == "wss" else 80)
        self._connect: trace.Span | None = None
        self._auth: trace.Span | None = None
        self._reconnect: trace.Span | None = None
        self._request: trace.Span | None = None
        self.subscription: Any = None

    def _start(self, operation: str, **attributes: Any) -> trace.Span:
        parent = trace.set_span_in_context(self._reconnect) if self._reconnect else None
        attrs = {**self._base, "messaging.operation.name": operation, **attributes}
        return self._tracer.start_span(
            f"{operation} {self.feed}", context=parent, kind=SpanKind.CLIENT, attributes=attrs
        )

    @staticmethod
    def _end(span: trace.Span | None, error: str | None = None, kind: str | None = None) -> None:
        if span is None:
            return
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
            span.set_attribute("error.type", kind or "ConnectionLost")
        span.end()

    def on_state(self, state: ConnectionState) -> None:
        with self._lock:
            if state is _S.CONNECTING:
                self._end(self._connect, "superseded")
                self._connect = self._start("connect")
            elif state is _S.AUTHENTICATING:
                self._end(self._connect)
                self._connect = None
                self._auth = self._start("auth")
            elif state is _S.AUTHENTICATED:
                for span in (self._connect, self._auth, self._reconnect):
                    self._end(span)
                self._connect = self._auth = self._reconnect = None
            elif state is _S.RECONNECTING:
                self._end_open("connection lost", "ConnectionLost")
                if self._reconnect is None:
                    self._reconnect = self._start("reconnect")
            elif state.terminal:
                # Closed by the user: the open spans simply end. Failed: they failed.
                error = kind = None
                if state is _S.FAILED:
                    fatal = self._fatal()
                    error, kind = (repr(fatal), type(fatal).__name__) if fatal else ("failed", None)
                self._end_open(error, kind)
                self._end(self._reconnect, error, kind)
                self._reconnect = None

    def _fatal(self) -> BaseException | None:
        # The client keeps the error that ended it (its health() shows only the repr).
        fatal = getattr(self._client, "_ended_by", None)
        return fatal if isinstance(fatal, BaseException) else None

    def _end_open(self, error: str | None, kind: str | None) -> None:
        """End the connect, auth and request spans still open (the connection went away)."""
        for span in (self._connect, self._auth, self._request):
            self._end(span, error, kind)
        self._connect = self._auth = self._request = None

    def request_sent(self, action: str, channels: Mapping[str, tuple[str, ...]]) -> None:
        with self._lock:
            self._end(self._request, "superseded")
            count = sum(len(s) for s in channels.values())
            self._request = self._start(
                action,
                **{"rxalpaca.symbols.count": count, "rxalpaca.channels": sorted(channels)},
            )

    def request_answered(self, error: Exception | None) -> None:
        with self._lock:
            span, self._request = self._request, None
            if span is not None and isinstance(error, StreamError) and error.code is not None:
                span.set_attribute("rxalpaca.error.code", error.code)
            self._end(span, None if error is None else str(error), type(error).__name__)

    def stop(self) -> None:
        if self.subscription is not None:
            self.subscription.dispose()
        with self._lock:
            self._end_open(None, None)
            self._end(self._reconnect)
            self._reconnect = None
