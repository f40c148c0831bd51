"""docs/operations.md: each recipe runs as written and prints what the page says (issue #15)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parent.parent / "docs" / "operations.md"
BLOCKS = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def _restore_rxalpaca_logger() -> Iterator[None]:
    """The logging recipes set the level of the ``rxalpaca`` logger: put it back."""
    log = logging.getLogger("rxalpaca")
    level, handlers = log.level, list(log.handlers)
    yield
    log.setLevel(level)
    log.handlers[:] = handlers


def run(marker: str, capsys: pytest.CaptureFixture[str]) -> str:
    """Run the one example that contains ``marker``; its stdout."""
    [code] = [b for b in BLOCKS if marker in b]
    exec(compile(code, f"operations.md:{marker}", "exec"), {"__name__": "__docs__"})
    return capsys.readouterr().out


def test_prometheus_scrape(capsys: pytest.CaptureFixture[str]) -> None:
    out = run("serve_metrics(", capsys)
    assert re.search(
        r'^rxalpaca_messages_total\{channel="quotes",feed="iex"\} [1-9]\d*\.0$', out, re.M
    )
    assert re.search(r'^rxalpaca_connection_up\{feed="iex"\} 1\.0$', out, re.M)


def test_otel_setup(capsys: pytest.CaptureFixture[str]) -> None:
    out = run("from rxalpaca.contrib.otel import instrument", capsys)
    assert re.search(r"^rxalpaca\.messages \{'feed': 'iex', 'channel': 'quotes'\} [1-9]", out, re.M)
    spans = re.findall(r"^(\w+ iex) (\w+) iex$", out, re.M)
    assert spans == [("connect iex", "UNSET"), ("auth iex", "UNSET"), ("subscribe iex", "UNSET")]


def test_json_logs(capsys: pytest.CaptureFixture[str]) -> None:
    out = run("JsonFormatter(static=", capsys)
    lines = [json.loads(line) for line in out.splitlines()]
    [failed] = [ln for ln in lines if ln["message"].startswith("stream failed for good")]
    assert failed["service"] == "md-ingest" and failed["code"] == 402
    assert failed["error"] == "AuthFailed" and failed["feed"] == "iex" and failed["conn_id"] == 1


def test_structlog_setup(capsys: pytest.CaptureFixture[str]) -> None:
    out = run("structlog.stdlib.ProcessorFormatter", capsys)
    lines = [json.loads(line) for line in out.splitlines()]
    [lost] = [ln for ln in lines if ln["event"].startswith("connection lost")]
    assert lost["level"] == "warning" and lost["state"] == "reconnecting"
    assert lost["feed"] == "iex" and lost["conn_id"] == 1 and lost["error"] == "ConnectionLostError"


def test_doctor_function(capsys: pytest.CaptureFixture[str]) -> None:
    out = run("from rxalpaca.doctor import diagnose", capsys)
    assert out.strip() == "ok ['dns', 'tcp', 'upgrade', 'greeting', 'auth', 'subscribe', 'data']"
