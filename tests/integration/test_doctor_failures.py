"""``rxalpaca.doctor.diagnose`` in-process against failures the CLI tests do not reach."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from rxalpaca.doctor import diagnose
from rxalpaca.errors import ConfigurationError
from rxalpaca.testing import DEFAULT_KEY, DEFAULT_SECRET, AlpacaStreamServer


def test_no_endpoint_at_the_path_fails_the_upgrade_with_http_404(
    alpaca_server: AlpacaStreamServer,
) -> None:
    report = diagnose(
        "iex", url=f"{alpaca_server.base_url}/nowhere", key=DEFAULT_KEY, secret=DEFAULT_SECRET
    )
    assert report.verdict == "failed"
    assert [s.name for s in report.steps][-1] == "upgrade"
    assert report.steps[-1].ok is False
    assert "HTTP 404" in report.summary, report.summary
    assert report.fix is not None and "--url and --feed" in report.fix


@pytest.fixture
def not_websocket() -> Iterator[str]:
    """A TCP server that answers every request with a line that is no HTTP at all."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(4096)
                conn.sendall(b"hello, I am no web server\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"ws://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    listener.close()
    thread.join(5)


def test_a_server_that_is_no_websocket_server_fails_the_upgrade(not_websocket: str) -> None:
    report = diagnose("iex", url=not_websocket, key=DEFAULT_KEY, secret=DEFAULT_SECRET, timeout=3)
    assert report.verdict == "failed"
    assert report.steps[-1].name == "upgrade" and report.steps[-1].ok is False
    assert "upgrade failed" in report.summary, report.summary
    assert report.fix is not None and "WebSocket server" in report.fix


def test_the_report_renders_its_failed_step_and_the_fix(
    alpaca_server: AlpacaStreamServer,
) -> None:
    report = diagnose(
        "iex", url=f"{alpaca_server.base_url}/nowhere", key=DEFAULT_KEY, secret=DEFAULT_SECRET
    )
    upgrade = report.step("upgrade")
    assert upgrade is not None and upgrade.ok is False
    assert report.step("auth") is None  # never ran
    text = report.render().splitlines()
    assert any(line.split()[:2] == ["upgrade", "FAIL"] for line in text), text
    assert text[-1] == f"fix: {report.fix}"


def test_mistakes_in_the_arguments_are_one_sentence() -> None:
    with pytest.raises(ConfigurationError, match="name a contract"):
        diagnose("indicative", url="ws://127.0.0.1:9", key=DEFAULT_KEY, secret=DEFAULT_SECRET)
    with pytest.raises(ConfigurationError, match="is not a ws:// or wss:// URL"):
        diagnose("iex", url="http://127.0.0.1:9", key=DEFAULT_KEY, secret=DEFAULT_SECRET)
