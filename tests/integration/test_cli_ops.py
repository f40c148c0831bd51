"""``--profile`` on ``stream`` and ``replay``, and the rich demo board, as subprocesses
(issue #15, item 4): run through ``rxalpaca_command()`` so coverage follows them."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rxalpaca.testing import DEFAULT_KEY, DEFAULT_SECRET, AlpacaStreamServer
from tests.conftest import TIMING_FACTOR
from tests.integration.test_cli_commands import ROOT, _env, creds, run, rxalpaca_command

pytestmark = pytest.mark.timeout(120)

STAGES = ("socket read", "framing", "reassemble", "validate", "decode", "meter", "route")


def _stages_in(text: str, stages: tuple[str, ...] = STAGES) -> None:
    assert "where the time went (--profile)" in text, text
    for stage in (*stages, "observers", "other", "wall"):
        assert stage in text, (stage, text)


def test_stream_profile_keeps_json_on_stdout_and_prints_a_rich_table(
    alpaca_server: AlpacaStreamServer,
) -> None:
    alpaca_server.start_market(symbols=["AAPL"], rate=400)
    done = run(
        "stream", "quotes", "AAPL", *creds(alpaca_server), "--json", "--profile",
        "--duration", str(1.5 * TIMING_FACTOR),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines and all(json.loads(ln)["type"] == "Quote" for ln in lines)  # unchanged
    _stages_in(done.stderr)
    assert "┃" in done.stderr  # rich's table (the [cli] extra is installed for tests)


def test_stream_profile_without_rich_is_plain_text(alpaca_server: AlpacaStreamServer) -> None:
    alpaca_server.start_market(symbols=["AAPL"], rate=400)
    done = run(
        "stream", "quotes", "AAPL", *creds(alpaca_server), "--profile",
        "--duration", str(1.5 * TIMING_FACTOR), RXALPACA_NO_RICH="1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Quote(" in done.stdout
    _stages_in(done.stderr)
    assert "┃" not in done.stderr
    row = next(ln for ln in done.stderr.splitlines() if ln.startswith("decode"))
    ms = float(row.split()[1])
    assert ms > 0  # the decode stage was timed


def test_without_profile_nothing_is_timed(alpaca_server: AlpacaStreamServer) -> None:
    alpaca_server.start_market(symbols=["AAPL"], rate=400)
    done = run(
        "stream", "quotes", "AAPL", *creds(alpaca_server), "--json",
        "--duration", str(1.0 * TIMING_FACTOR),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "where the time went" not in done.stderr


def test_replay_profile_times_the_pipeline(tmp_path: Path) -> None:
    out = tmp_path / "day.rxa"
    with AlpacaStreamServer() as server:
        server.start_market(symbols=["AAPL", "MSFT"], rate=2000)
        recorded = run(
            "record", "--url", server.base_url, "--feed", "iex", "--symbols", "AAPL,MSFT",
            "--out", str(out), "--count", "200", "--duration", str(30 * TIMING_FACTOR),
            APCA_API_KEY_ID=DEFAULT_KEY, APCA_API_SECRET_KEY=DEFAULT_SECRET,
        )  # fmt: skip
    assert recorded.returncode == 0, recorded.stderr
    done = run("replay", str(out), "--profile", RXALPACA_NO_RICH="1")
    assert done.returncode == 0, done.stderr
    assert "replayed" in done.stdout
    # No socket in a replay: the stages from reassembly on, and the file's reading in "other".
    _stages_in(done.stderr, STAGES[2:])
    assert "socket read" not in done.stderr
    messages = int(done.stderr.rsplit(" frames, ", 1)[1].split(" messages")[0].replace(",", ""))
    assert messages >= 200


def _on_a_terminal(*argv: str, seconds: float, **env: str) -> str:
    """Run ``rxalpaca argv`` with stdout on a pseudo-terminal; what it drew."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [*rxalpaca_command(), *argv],
        stdout=slave,
        stderr=subprocess.PIPE,
        env={**_env(**env), "COLUMNS": "160", "LINES": "40", "TERM": "xterm"},
        cwd=ROOT,
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # the child closed the terminal: it has exited
                    break
                if not data:
                    break
                chunks.append(data)
        assert proc.wait(30 * TIMING_FACTOR) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        proc.kill()
        if proc.stderr:
            proc.stderr.close()
        os.close(master)
    return b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal")
def test_demo_draws_a_rich_table_on_a_terminal() -> None:
    drawn = _on_a_terminal(
        "demo", "--symbols", "AAPL,MSFT", "--duration", str(2.0 * TIMING_FACTOR),
        "--rate", "500", seconds=60 * TIMING_FACTOR,
    )  # fmt: skip
    assert "rxalpaca demo" in drawn and "AAPL" in drawn and "MSFT" in drawn
    assert "┃" in drawn or "│" in drawn  # rich's box
    assert "last minute bar o/h/l/c" in drawn
    assert "done:" in drawn


@pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal")
def test_demo_without_rich_redraws_plain_text() -> None:
    drawn = _on_a_terminal(
        "demo", "--symbols", "AAPL", "--duration", str(1.5 * TIMING_FACTOR), "--rate", "500",
        seconds=60 * TIMING_FACTOR, RXALPACA_NO_RICH="1",
    )  # fmt: skip
    assert "\x1b[H\x1b[2J" in drawn and "AAPL" in drawn
    assert "┃" not in drawn and "│" not in drawn


def test_help_and_import_do_not_load_rich() -> None:
    """rich is imported by the commands that draw, never by ``--help`` or ``import rxalpaca``."""
    code = (
        "import sys, contextlib, io\n"
        "import rxalpaca\n"
        "from rxalpaca.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['--help'])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('rich', 'reactivex')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.strip() == "[]", done.stdout
