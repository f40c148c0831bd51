"""Every ``rxalpaca`` subcommand run as a real process against the embedded server (issue #15).

Each test starts ``python -m rxalpaca ...`` with :mod:`subprocess` and checks what a
user sees: the exit code, stdout, and stderr — one sentence for a mistake or a
failure, never a traceback, never the secret.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rxalpaca import StreamClient
from rxalpaca.testing import DEFAULT_KEY, DEFAULT_SECRET, Account, AlpacaStreamServer
from tests._subprocess import child_env, python_command
from tests.conftest import TIMING_FACTOR
from tests.reliability.tls_helpers import TlsProxy, have_openssl, make_certs

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[2]
WRONG_SECRET = "wrong-secret-7f3a9c"  # distinctive: the tests look for it in the output


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APCA_")}
    env.update(extra)
    env["PYTHONPATH"] = str(ROOT)
    return child_env(env)


def rxalpaca_command() -> list[str]:
    """``python -m rxalpaca``, under coverage when this run measures it (tests/_subprocess.py)."""
    return python_command("-m", "rxalpaca")


def run(*argv: str, timeout: float = 30.0, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m rxalpaca argv...`` to completion."""
    return subprocess.run(
        [*rxalpaca_command(), *argv],
        capture_output=True,
        text=True,
        timeout=timeout * TIMING_FACTOR,
        env=_env(**env),
        cwd=ROOT,
        check=False,
    )


def start(*argv: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*rxalpaca_command(), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(**env),
        cwd=ROOT,
    )


def one_line_error(stderr: str, command: str) -> str:
    """The single line a failure prints: no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.startswith(f"rxalpaca {command}: ")]
    assert len(lines) == 1, stderr
    return lines[0]


def creds(server: AlpacaStreamServer, secret: str = DEFAULT_SECRET) -> list[str]:
    return ["--url", server.base_url, "--key", DEFAULT_KEY, "--secret", secret]


@pytest.fixture
def market_server(alpaca_server: AlpacaStreamServer) -> AlpacaStreamServer:
    alpaca_server.start_market(symbols=["AAPL", "MSFT"], rate=400)
    return alpaca_server


# ----------------------------------------------------------------------------- help


@pytest.mark.parametrize("command", [[], ["demo"], ["serve"], ["stream"], ["doctor"]])
def test_help_is_clean(command: list[str]) -> None:
    done = run(*command, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: rxalpaca")
    assert "``" not in done.stdout and ":mod:" not in done.stdout  # no raw reST
    if not command:
        for sub in ("demo", "serve", "stream", "doctor"):
            assert re.search(rf"^\s+{sub}\s+\S", done.stdout, re.M), done.stdout
    if command in (["stream"], ["doctor"], []):
        assert "exit codes:" in done.stdout and "--secret" in done.stdout


def test_no_subcommand_is_a_usage_error() -> None:
    done = run()
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "required" in done.stderr


# ----------------------------------------------------------------------------- demo, serve


def test_demo_runs_and_summarises() -> None:
    done = run("demo", "--symbols", "AAPL", "--duration", str(1.5 * TIMING_FACTOR), "--rate", "500")
    assert done.returncode == 0, done.stderr
    delivered = re.search(r"done: ([\d,]+) messages delivered", done.stdout)
    assert delivered is not None and int(delivered.group(1).replace(",", "")) > 0, done.stdout
    assert "AAPL" in done.stdout


def test_demo_mistake_is_one_line() -> None:
    done = run("demo", "--symbols", "aapl,btc/usd")
    assert done.returncode == 2
    assert "mixes stocks and crypto" in one_line_error(done.stderr, "demo")


def test_serve_serves_until_interrupted() -> None:
    proc = start("serve", "--port", "0", "--symbols", "AAPL", "--rate", "200")
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        url = re.search(r"serving (ws://127\.0\.0\.1:\d+)", first)
        assert url is not None, first + (proc.stderr.read() if proc.stderr else "")
        got = threading.Event()
        with StreamClient("iex", url=url.group(1), key=DEFAULT_KEY, secret=DEFAULT_SECRET) as c:
            c.quotes("AAPL").subscribe(lambda q: got.set())
            assert got.wait(10 * TIMING_FACTOR), "no quote from the served market"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10 * TIMING_FACTOR) == 0
    finally:
        proc.kill()
        proc.communicate()


# ----------------------------------------------------------------------------- stream


def test_stream_prints_records(market_server: AlpacaStreamServer) -> None:
    done = run("stream", "quotes", "AAPL", *creds(market_server), "--duration", "1.5")
    assert done.returncode == 0, done.stderr
    assert re.search(r"^Quote\(.*AAPL", done.stdout, re.M), done.stdout[:500]
    assert "# authenticated" in done.stderr


def test_stream_json_lines_with_env_credentials(market_server: AlpacaStreamServer) -> None:
    done = run(
        "stream", "trades", "aapl,msft", "--url", market_server.base_url, "--json",
        "--duration", "1.5",
        APCA_API_KEY_ID=DEFAULT_KEY, APCA_API_SECRET_KEY=DEFAULT_SECRET,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert records, done.stderr
    assert {r["type"] for r in records} == {"Trade"}
    assert {r["symbol"] for r in records} <= {"AAPL", "MSFT"}
    assert all(isinstance(r["timestamp_ns"], int) and r["timestamp_ns"] > 0 for r in records)


def test_stream_wrong_secret_exits_1_without_echoing_it(alpaca_server: AlpacaStreamServer) -> None:
    done = run("stream", "quotes", "AAPL", *creds(alpaca_server, WRONG_SECRET), "--duration", "30")
    assert done.returncode == 1, (done.stdout, done.stderr)
    line = one_line_error(done.stderr, "stream")
    assert "402" in line and "--key/--secret" in line
    assert WRONG_SECRET not in done.stdout + done.stderr


def test_stream_without_credentials_is_a_usage_error(alpaca_server: AlpacaStreamServer) -> None:
    done = run("stream", "quotes", "AAPL", "--url", alpaca_server.base_url)
    assert done.returncode == 2
    assert "no credentials" in one_line_error(done.stderr, "stream")


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["stream", "quotes", "BAD!!"], "is not a stock symbol"),
        (["stream", "quotes", "AAPL", "--feed", "nasdaq"], "unknown feed 'nasdaq'"),
        (["doctor", "--feed", "nasdaq"], "unknown feed 'nasdaq'"),
        (["doctor", "--channel", "orderbooks"], "iex has no channel 'orderbooks'"),
    ],
)
def test_mistakes_are_one_line(
    alpaca_server: AlpacaStreamServer, argv: list[str], says: str
) -> None:
    done = run(*argv, *creds(alpaca_server))
    assert done.returncode == 2, done.stderr
    assert says in one_line_error(done.stderr, argv[0])


def test_stream_gives_up_when_nothing_listens(unused_port: int) -> None:
    done = run(
        "stream", "quotes", "AAPL", "--url", f"ws://127.0.0.1:{unused_port}",
        "--key", DEFAULT_KEY, "--secret", DEFAULT_SECRET, "--connect-timeout", "1",
    )  # fmt: skip
    assert done.returncode == 1
    assert "not connected to ws://127.0.0.1" in one_line_error(done.stderr, "stream")


@pytest.fixture
def unused_port() -> Iterator[int]:
    """A port nothing listens on (bound, never listened: connections are refused)."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    yield s.getsockname()[1]
    s.close()


# ----------------------------------------------------------------------------- doctor


def doctor(*argv: str) -> tuple[int, dict[str, object], str]:
    done = run("doctor", "--json", *argv)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout), done.stdout + done.stderr


def steps(report: dict[str, object]) -> dict[str, object]:
    return {s["name"]: s["ok"] for s in report["steps"]}  # type: ignore[attr-defined]


def test_doctor_healthy(market_server: AlpacaStreamServer) -> None:
    code, report, _ = doctor(*creds(market_server))
    assert code == 0, report
    assert report["verdict"] == "ok"
    assert steps(report) == {
        "dns": True, "tcp": True, "upgrade": True, "greeting": True,
        "auth": True, "subscribe": True, "data": True,
    }  # fmt: skip
    assert isinstance(report["clock_skew_ms"], float)


def test_doctor_text_report(market_server: AlpacaStreamServer) -> None:
    done = run("doctor", *creds(market_server), "--encoding", "json")
    assert done.returncode == 0, done.stdout
    assert re.search(r"^  subscribe ok +[\d.]+ ms  trades: AAPL$", done.stdout, re.M)
    assert re.search(r"^verdict: ok — market data flows from iex", done.stdout, re.M)


def test_doctor_wrong_key(alpaca_server: AlpacaStreamServer) -> None:
    code, report, output = doctor(*creds(alpaca_server, WRONG_SECRET))
    assert code == 1
    assert report["verdict"] == "failed" and report["code"] == 402
    assert steps(report)["auth"] is False
    assert "--key/--secret" in str(report["fix"])
    assert WRONG_SECRET not in output


def test_doctor_feed_not_in_plan(
    alpaca_server_factory: Callable[..., AlpacaStreamServer],
) -> None:
    server = alpaca_server_factory(accounts={DEFAULT_KEY: Account(DEFAULT_SECRET, plan="free")})
    code, report, _ = doctor(*creds(server), "--feed", "sip")
    assert code == 1 and report["code"] == 409
    assert "'sip' feed" in str(report["summary"]) and "--feed iex" in str(report["fix"])


def test_doctor_connection_limit_reached(
    alpaca_server: AlpacaStreamServer, make_client: Callable[..., StreamClient]
) -> None:
    make_client(alpaca_server).connect()  # holds the one slot of these credentials
    alpaca_server.wait_for_authenticated(timeout=10 * TIMING_FACTOR)
    code, report, _ = doctor(*creds(alpaca_server))
    assert code == 1 and report["code"] == 406
    assert "already open" in str(report["summary"]) and "close the other" in str(report["fix"])


def test_doctor_server_muted(alpaca_server: AlpacaStreamServer) -> None:
    """Data is generated only once the doctor's connection is muted: it must see none."""
    proc = start(
        "doctor", "--json", *creds(alpaca_server), "--data-timeout", str(4 * TIMING_FACTOR)
    )
    try:
        conn = alpaca_server.wait_for_subscriptions(
            {"trades": {"AAPL"}}, timeout=20 * TIMING_FACTOR
        )
        alpaca_server.mute(conn)
        alpaca_server.start_market(symbols=["AAPL"], rate=400)
        out, err = proc.communicate(timeout=30 * TIMING_FACTOR)
    finally:
        proc.kill()
    report = json.loads(out)
    assert proc.returncode == 3, (out, err)
    assert report["verdict"] == "warning" and steps(report)["data"] is None
    assert "no market data arrived" in report["summary"]


def test_doctor_tls_failure_on_a_plain_port(alpaca_server: AlpacaStreamServer) -> None:
    plain = alpaca_server.base_url.replace("ws://", "wss://")
    code, report, _ = doctor("--url", plain, "--key", DEFAULT_KEY, "--secret", DEFAULT_SECRET)
    assert code == 1
    assert steps(report) == {"dns": True, "tcp": True, "tls": False}
    assert "TLS handshake failed" in str(report["summary"]) and "ws://" in str(report["fix"])


def test_doctor_nothing_listening(unused_port: int) -> None:
    url = f"ws://127.0.0.1:{unused_port}"
    code, report, _ = doctor("--url", url, "--key", DEFAULT_KEY, "--secret", DEFAULT_SECRET)
    assert code == 1 and steps(report) == {"dns": True, "tcp": False}


def test_doctor_unknown_host() -> None:
    url = "ws://no-such-host.invalid"
    code, report, _ = doctor("--url", url, "--key", DEFAULT_KEY, "--secret", DEFAULT_SECRET)
    assert code == 1 and steps(report) == {"dns": False}
    assert "does not resolve" in str(report["summary"])


@pytest.mark.skipif(not have_openssl(), reason="needs the openssl command")
def test_doctor_untrusted_certificate_then_trusted_with_ca_file(
    market_server: AlpacaStreamServer, tmp_path: Path
) -> None:
    certs = make_certs(tmp_path / "certs")
    with TlsProxy(market_server.port, certs.good_cert, certs.good_key) as proxy:
        url = f"wss://127.0.0.1:{proxy.port}"
        who = ["--key", DEFAULT_KEY, "--secret", DEFAULT_SECRET]
        code, report, _ = doctor("--url", url, *who)
        assert code == 1 and steps(report)["tls"] is False
        assert "not trusted" in str(report["summary"]) and "--ca-file" in str(report["fix"])
        code, report, _ = doctor("--url", url, *who, "--ca-file", str(certs.ca))
        assert code == 0, report
        assert steps(report)["tls"] is True and report["verdict"] == "ok"


def test_debug_logs_state_transitions_without_the_secret(
    market_server: AlpacaStreamServer,
) -> None:
    done = run("--debug", "stream", "quotes", "AAPL", *creds(market_server), "--duration", "1")
    assert done.returncode == 0, done.stderr
    assert re.search(r"DEBUG rxalpaca: state authenticated$", done.stderr, re.M), done.stderr
    assert DEFAULT_SECRET not in done.stderr + done.stdout
