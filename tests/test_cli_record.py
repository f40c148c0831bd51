"""``rxalpaca record`` and ``rxalpaca replay`` (issue #14), against the embedded server."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from rxalpaca import RetryPolicy, StreamClient
from rxalpaca.cli import main
from rxalpaca.recording import Kind, open_recording
from rxalpaca.testing import DEFAULT_KEY, DEFAULT_SECRET, AlpacaStreamServer
from tests.conftest import TIMING_FACTOR

pytestmark = pytest.mark.timeout(90)


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_record_then_replay_from_the_command_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    encoding: str,
) -> None:
    monkeypatch.setenv("APCA_API_KEY_ID", DEFAULT_KEY)
    monkeypatch.setenv("APCA_API_SECRET_KEY", DEFAULT_SECRET)
    out = tmp_path / "day.rxa"
    with AlpacaStreamServer() as server:
        server.start_market(symbols=["AAPL", "MSFT"], rate=2000)
        assert main(["record", "--url", server.base_url, "--feed", "iex", "--symbols",
                     "AAPL,MSFT", "--out", str(out), "--encoding", encoding, "--count", "300",
                     "--duration", str(30 * TIMING_FACTOR)]) == 0  # fmt: skip
    said = capsys.readouterr().out
    assert "recorded" in said and " 0 dropped" in said
    assert open_recording(out).header.encoding == encoding
    assert main(["replay", str(out)]) == 0
    said = capsys.readouterr().out
    assert '"feed": "iex"' in said
    assert "0 errors" in said and "replayed" in said
    replayed = int(said.split("replayed ")[1].split(" ")[0].replace(",", ""))
    assert replayed >= 300


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_replay_serve_sends_the_recorded_market_to_a_client(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    encoding: str,
) -> None:
    monkeypatch.setenv("APCA_API_KEY_ID", DEFAULT_KEY)
    monkeypatch.setenv("APCA_API_SECRET_KEY", DEFAULT_SECRET)
    out = tmp_path / "s.rxa"
    with AlpacaStreamServer() as server:
        server.start_market(symbols=["AAPL"], rate=2000)
        args = ["record", "--url", server.base_url, "--symbols", "AAPL", "--out", str(out)]
        assert main([*args, "--channels", "quotes", "--count", "50", "--encoding", encoding]) == 0
    recorded = [e.value for e in open_recording(out) if e.kind is Kind.RECEIVED]
    assert recorded and open_recording(out).header.encoding == encoding
    with socket.socket() as probe:  # a free port for the server the command starts
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result: list[int] = []
    serving = threading.Thread(
        target=lambda: result.append(
            main(
                [
                    "replay",
                    str(out),
                    "--serve",
                    "--port",
                    str(port),
                    "--speed",
                    "50",
                    "--wait",
                    str(30 * TIMING_FACTOR),
                ]
            )
        )
    )
    serving.start()
    got: list[object] = []
    # Connection refused until the command's server listens: the client retries.
    client = StreamClient(
        "iex", url=f"ws://127.0.0.1:{port}", key=DEFAULT_KEY, secret=DEFAULT_SECRET,
        encoding="msgpack", retry=RetryPolicy(initial_delay=0.02, max_delay=0.2),
    )  # fmt: skip
    try:
        client.quotes("AAPL").subscribe(got.append)
        serving.join(60 * TIMING_FACTOR)
    finally:
        client.close()
    assert result == [0]
    assert len(got) >= 50


def test_replay_of_a_file_that_is_not_a_recording_is_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("hello\n")
    assert main(["replay", str(junk)]) == 2
    err = capsys.readouterr().err
    assert "not an rxalpaca recording" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
