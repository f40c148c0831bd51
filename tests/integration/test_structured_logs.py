"""Structured log fields (``extra=``), rendered by a JSON formatter and by structlog (issue #15)."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog

from rxalpaca import StreamClient
from rxalpaca._logging import FIELDS, RateLimitedLog
from rxalpaca.contrib.logs import JsonFormatter
from rxalpaca.testing import AlpacaStreamServer
from tests.conftest import TIMING_FACTOR

pytestmark = pytest.mark.timeout(60)


class JsonLines(logging.Handler):
    """Formats every record with :class:`JsonFormatter` and keeps the parsed objects."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter(static={"service": "test"}))
        self.lines: list[dict[str, Any]] = []
        self.changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        obj = json.loads(self.format(record))
        with self.changed:
            self.lines.append(obj)
            self.changed.notify_all()

    def wait_for(self, pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        with self.changed:
            found: list[dict[str, Any]] = []

            def match() -> bool:
                found[:] = [ln for ln in self.lines if pred(ln)]
                return bool(found)

            assert self.changed.wait_for(match, 10 * TIMING_FACTOR), self.lines
            return found[0]


@pytest.fixture
def json_lines() -> Iterator[JsonLines]:
    handler = JsonLines()
    log = logging.getLogger("rxalpaca")
    old = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    yield handler
    log.removeHandler(handler)
    log.setLevel(old)


def test_lost_connection_and_reconnect_carry_fields(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    json_lines: JsonLines,
) -> None:
    client = make_client(alpaca_server)
    client.quotes("AAPL").subscribe(lambda q: None)
    conn = alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}}, timeout=10 * TIMING_FACTOR)
    alpaca_server.drop(conn)
    lost = json_lines.wait_for(lambda ln: ln["message"].startswith("connection lost"))
    assert lost["level"] == "WARNING" and lost["service"] == "test"
    assert lost["feed"] == "iex" and lost["endpoint"] == client.url
    assert lost["conn_id"] == 1 and lost["error"] == "ConnectionLostError"
    assert lost["state"] in {"reconnecting", "connecting", "disconnected"}
    retry = json_lines.wait_for(lambda ln: ln["message"].startswith("reconnect attempt"))
    assert retry["attempt"] == 1 and retry["delay_s"] >= 0 and retry["feed"] == "iex"
    # --debug: each state transition is a line with the new state as a field.
    json_lines.wait_for(lambda ln: ln.get("state") == "authenticated" and ln["conn_id"] == 2)
    states = [ln["state"] for ln in json_lines.lines if ln["message"].startswith("state ")]
    assert "authenticating" in states and "authenticated" in states


def test_fatal_error_carries_its_code(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    json_lines: JsonLines,
) -> None:
    client = make_client(alpaca_server, secret="not-the-secret")
    client.quotes("AAPL").subscribe(lambda q: None, on_error=lambda e: None)
    line = json_lines.wait_for(lambda ln: ln["message"].startswith("stream failed for good"))
    assert line["level"] == "ERROR" and line["code"] == 402 and line["error"] == "AuthFailed"
    assert line["feed"] == "iex" and line["conn_id"] == 1
    assert not any("not-the-secret" in json.dumps(ln) for ln in json_lines.lines)


def test_a_raising_observer_logs_fields_once_then_a_counted_summary(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    json_lines: JsonLines,
) -> None:
    alpaca_server.start_market(symbols=["AAPL"], rate=400)
    client = make_client(alpaca_server)
    seen = threading.Semaphore(0)

    def boom(q: object) -> None:
        seen.release()
        raise ValueError("boom")

    client.quotes("AAPL").subscribe(boom)
    for _ in range(20):
        assert seen.acquire(timeout=10 * TIMING_FACTOR)
    client.close()  # flushes the summary owed
    raised = [ln for ln in json_lines.lines if "raised ValueError" in ln["message"]]
    assert raised, json_lines.lines
    first, *rest = raised
    assert first["error"] == "ValueError" and "exception" in first
    assert first["feed"] == "iex" and first["state"] == "authenticated"
    # Rate limiting still holds: 20+ events, one full line, the rest counted.
    assert len(rest) <= 1
    if rest:
        assert rest[0]["repeats"] >= 19 and "exception" not in rest[0]
        assert rest[0]["feed"] == "iex"


def test_rate_limited_log_fields_on_first_and_summary_lines() -> None:
    now = [0.0]
    logger = logging.getLogger("tests.structured")
    logger.propagate = False
    handler = JsonLines()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        log = RateLimitedLog(logger, 10.0, clock=lambda: now[0], context=lambda: {"feed": "iex"})
        for _ in range(5):
            log.log("k", logging.WARNING, "bad %s", "frame", extra={"code": 400})
        now[0] = 11.0
        assert log.flush() == 1
    finally:
        logger.removeHandler(handler)
    first, summary = handler.lines
    assert first["message"] == "bad frame" and first["feed"] == "iex" and first["code"] == 400
    assert "repeats" not in first
    assert summary["repeats"] == 4 and summary["code"] == 400 and summary["feed"] == "iex"


def test_structlog_renders_the_same_fields() -> None:
    """The docs/operations.md recipe: stdlib records through structlog's JSON renderer."""
    out = io.StringIO()
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.ExtraAdder(allow=FIELDS),
            structlog.processors.TimeStamper(fmt="iso"),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    logger = logging.getLogger("tests.structlog")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        RateLimitedLog(logger, context=lambda: {"feed": "iex", "conn_id": 3}).log(
            "k", logging.WARNING, "connection lost", extra={"error": "KeepaliveTimeout"}
        )
    finally:
        logger.removeHandler(handler)
    line = json.loads(out.getvalue())
    assert line["event"] == "connection lost" and line["level"] == "warning"
    assert line["feed"] == "iex" and line["conn_id"] == 3 and line["error"] == "KeepaliveTimeout"
