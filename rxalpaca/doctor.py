"""``rxalpaca doctor``: diagnose a connection to an Alpaca market-data stream, step by step.

Each step of getting market data is tried in turn and timed — DNS lookup, TCP
connect, TLS handshake (``wss://``), the WebSocket upgrade, the server's greeting,
authentication, one subscription and the first market-data message — and the first
that fails gives the verdict, with the cause and the fix in plain words. Alpaca's
error codes (401/402/404/405/406/409 …) are translated into what they mean for the
account: wrong keys, a plan without the feed, another connection holding the slot.

Example (against the embedded server, no API keys needed)::

    from rxalpaca.doctor import diagnose
    from rxalpaca.testing import DEFAULT_KEY, DEFAULT_SECRET, AlpacaStreamServer

    with AlpacaStreamServer() as server:
        server.start_market(symbols=["AAPL"], rate=200)
        report = diagnose("iex", url=server.base_url, key=DEFAULT_KEY, secret=DEFAULT_SECRET)
        print(report.render())  # the steps, their times, and "verdict: ok — ..."

It is a plain blocking probe on the calling thread, separate from
:class:`~rxalpaca.StreamClient` on purpose: it uses no reconnects, no back-off and no
pipeline, so what it reports is what the network and the server did, once. The
secret is sent to the server only and never appears in the report.
"""

from __future__ import annotations

import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import websocket

from . import models as m
from .codec import Codec
from .errors import ConfigurationError
from .feeds import Family
from .options import Settings

__all__ = ["Diagnosis", "Step", "Verdict", "diagnose"]

#: What to subscribe to when no symbol is given, per family (news takes every story).
DEFAULT_SYMBOL = {
    Family.STOCKS: "AAPL",
    Family.TEST: "FAKEPACA",
    Family.CRYPTO: "BTC/USD",
    Family.NEWS: "*",
}


class Verdict(StrEnum):
    """How a diagnosis ended; :attr:`Diagnosis.exit_code` maps it to a process status."""

    OK = "ok"  # every step passed and market data arrived
    WARNING = "warning"  # connected, authenticated and subscribed, but no data came
    FAILED = "failed"  # a step failed: the report says which, why and the fix


#: Exit status of ``rxalpaca doctor`` per verdict (2 is a usage mistake).
EXIT_CODES = {Verdict.OK: 0, Verdict.FAILED: 1, Verdict.WARNING: 3}


@dataclass
class Step:
    """One step of the diagnosis.

    Attributes:
        name: ``dns``, ``tcp``, ``tls``, ``upgrade``, ``greeting``, ``auth``,
            ``subscribe`` or ``data``.
        ok: passed; ``None`` when the step did not run (an earlier one failed) or only
            warned (``data``).
        seconds: how long it took.
        detail: what was seen, one line.
    """

    name: str
    ok: bool | None
    seconds: float
    detail: str


@dataclass
class Diagnosis:
    """The outcome of :func:`diagnose`.

    Attributes:
        url: the URL probed.
        feed: the feed's name.
        steps: the steps that ran, in order.
        verdict: ok, warning or failed.
        summary: what happened, one sentence.
        fix: what to do about it, one sentence (``None`` when all is well).
        code: the Alpaca error code that decided a failure, if any.
        clock_skew_ms: receipt time minus the first message's exchange timestamp
            (network latency plus the difference of the two clocks); ``None`` without data.
    """

    url: str
    feed: str
    steps: list[Step] = field(default_factory=list)
    verdict: Verdict = Verdict.OK
    summary: str = ""
    fix: str | None = None
    code: int | None = None
    clock_skew_ms: float | None = None

    @property
    def exit_code(self) -> int:
        """0 ok, 1 failed, 3 warning (see :data:`EXIT_CODES`)."""
        return EXIT_CODES[self.verdict]

    def step(self, name: str) -> Step | None:
        """The step called ``name``, if it ran."""
        return next((s for s in self.steps if s.name == name), None)

    def render(self) -> str:
        """The report as text: one line per step, then the verdict and the fix."""
        lines = [f"rxalpaca doctor: {self.url} (feed {self.feed})"]
        for s in self.steps:
            mark = {True: "ok", False: "FAIL", None: "warn"}[s.ok]
            lines.append(f"  {s.name:<9} {mark:<4} {s.seconds * 1000:8.1f} ms  {s.detail}")
        lines.append(f"verdict: {self.verdict.value} — {self.summary}")
        if self.fix:
            lines.append(f"fix: {self.fix}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data (``rxalpaca doctor --json``)."""
        return {
            "url": self.url,
            "feed": self.feed,
            "verdict": self.verdict.value,
            "summary": self.summary,
            "fix": self.fix,
            "code": self.code,
            "clock_skew_ms": self.clock_skew_ms,
            "steps": [
                {"name": s.name, "ok": s.ok, "ms": round(s.seconds * 1000, 3), "detail": s.detail}
                for s in self.steps
            ],
        }


def explain_code(code: int, feed: str) -> tuple[str, str]:
    """What an Alpaca stream error code means for the user, and the fix: two sentences.

    Example::

        >>> what, fix = explain_code(409, "sip")
        >>> what.endswith("does not include the 'sip' feed (409 insufficient subscription)")
        True
    """
    table: dict[int, tuple[str, str]] = {
        400: (
            "the server could not parse a message (400 invalid syntax)",
            "check --encoding; this is likely a bug in the client, please report it",
        ),
        401: (
            "a message was sent before authenticating (401 not authenticated)",
            "this is a client bug; please report it with the report above",
        ),
        402: (
            "the server refused the key and secret (402 auth failed)",
            "check --key/--secret (or APCA_API_KEY_ID/APCA_API_SECRET_KEY): a typo, a "
            "revoked key, or a key of another environment",
        ),
        404: (
            "the server waited too long for the credentials (404 auth timeout)",
            "the network or this machine is too slow right now; try again",
        ),
        405: (
            "the subscription asks for more symbols than the plan allows (405 symbol limit)",
            "subscribe to fewer symbols, or upgrade the market-data plan",
        ),
        406: (
            "another connection with these credentials is already open on this endpoint "
            "(406 connection limit exceeded)",
            "close the other connection (another process, a notebook, or a session the "
            "server still holds for a minute after a dropped connection) and retry",
        ),
        409: (
            f"the account's market-data plan does not include the {feed!r} feed "
            "(409 insufficient subscription)",
            "use --feed iex (every plan has it), or upgrade the plan to include this feed",
        ),
        410: (
            "the endpoint does not offer that channel (410 invalid subscribe action)",
            "pick a channel this feed has (--channel)",
        ),
        411: (
            "the credentials lack the market-data scope (411 insufficient scope)",
            "use keys (or an OAuth token) with market-data access",
        ),
        412: (
            "the endpoint speaks MessagePack only (412)",
            "use --encoding msgpack",
        ),
        413: (
            "this channel does not take the * wildcard (413)",
            "name the symbols (--symbol)",
        ),
        500: (
            "the server had an internal error (500)",
            "try again later; if it persists, it is the server's problem",
        ),
    }
    return table.get(code, (f"the server answered error {code}", "see the protocol's §5 table"))


class _Failed(Exception):
    """A step failed: ``summary`` and ``fix`` end the diagnosis."""

    def __init__(self, summary: str, fix: str, code: int | None = None) -> None:
        super().__init__(summary)
        self.summary, self.fix, self.code = summary, fix, code


class _Probe:
    """One run of the steps; owns the socket (the caller's thread only)."""

    def __init__(self, report: Diagnosis, timeout: float) -> None:
        self.report = report
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.ws: websocket.WebSocket | None = None

    def run(self, name: str, fn: Callable[[], str]) -> None:
        """Time ``fn``; record the step; a :class:`_Failed` or ``OSError`` ends the run."""
        started = time.perf_counter()
        try:
            detail = fn()
        except _Failed as e:
            self.report.steps.append(Step(name, False, time.perf_counter() - started, e.summary))
            raise
        self.report.steps.append(Step(name, True, time.perf_counter() - started, detail))

    def recv(self, codec: Codec, deadline: float) -> list[Any]:
        """The records of the next data frame, or ``[]`` at ``deadline``."""
        assert self.ws is not None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            self.ws.settimeout(left)
            try:
                opcode, payload = self.ws.recv_data()
            except (websocket.WebSocketTimeoutException, TimeoutError):
                return []
            except websocket.WebSocketConnectionClosedException as e:
                raise _Failed(
                    "the server closed the connection",
                    "see the server's error above, or retry",
                ) from e
            if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                return codec.decode(payload, time.time_ns())

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close(timeout=1)
        elif self.sock is not None:
            self.sock.close()


def diagnose(
    feed: str = "iex",
    *,
    url: str | None = None,
    key: str | None = None,
    secret: str | None = None,
    symbol: str | None = None,
    channel: str | None = None,
    encoding: str = "msgpack",
    ca_file: str | None = None,
    sandbox: bool = False,
    timeout: float = 5.0,
    data_timeout: float = 5.0,
) -> Diagnosis:
    """Try every step of connecting to ``feed`` once and tell what went wrong, if anything.

    Args:
        feed: the feed, as for :class:`~rxalpaca.StreamClient`.
        url: another server (``ws://127.0.0.1:8765``); default Alpaca's.
        key: API key id; default ``$APCA_API_KEY_ID``.
        secret: API secret; default ``$APCA_API_SECRET_KEY``. Sent to the server only.
        symbol: what to subscribe to; default ``AAPL``, ``BTC/USD``, ``*`` (news) by family.
        channel: which channel; default ``trades`` (``news`` on the news feed).
        encoding: ``"msgpack"`` or ``"json"``.
        ca_file: a CA bundle to trust for ``wss://``.
        sandbox: the Broker-API sandbox host.
        timeout: seconds allowed for each network step.
        data_timeout: seconds to wait for the first market-data message.

    Returns:
        A :class:`Diagnosis`; it never raises for what the network or server does.

    Raises:
        ConfigurationError: a user mistake (unknown feed, no credentials, a bad option).
    """
    cfg = Settings.build(
        feed,
        {"url": url, "key": key, "secret": secret, "encoding": encoding, "sandbox": sandbox},
    )
    ep = cfg.endpoint
    if channel is None:
        channel = "news" if ep.family is Family.NEWS else "trades"
    if channel not in ep.subscribable:
        names = ", ".join(ep.subscribable)
        raise ConfigurationError(f"{ep.feed} has no channel {channel!r}; its channels: {names}")
    if symbol is None:
        if ep.family not in DEFAULT_SYMBOL:
            raise ConfigurationError(f"name a contract to subscribe to on {ep.feed} (--symbol)")
        symbol = DEFAULT_SYMBOL[ep.family]
    report = Diagnosis(url=cfg.url, feed=ep.feed)
    parts = urllib.parse.urlsplit(cfg.url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ConfigurationError(f"{cfg.url!r} is not a ws:// or wss:// URL")
    host, tls = parts.hostname, parts.scheme == "wss"
    port = parts.port or (443 if tls else 80)
    codec = Codec(ep.family, cfg.options["encoding"])
    probe = _Probe(report, timeout)
    addresses: list[Any] = []

    def dns() -> str:
        try:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as e:
            raise _Failed(
                f"the host name {host!r} does not resolve ({e.strerror})",
                "check the host in --url, and this machine's DNS",
            ) from e
        addresses.extend(found)
        return ", ".join(dict.fromkeys(str(a[4][0]) for a in found))

    def tcp() -> str:
        family, kind, proto, _, address = addresses[0]
        sock = socket.socket(family, kind, proto)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
        except OSError as e:
            sock.close()
            if isinstance(e, TimeoutError):
                raise _Failed(
                    f"no answer from {host}:{port} within {timeout:g} s",
                    "a firewall or proxy may drop the connection; check the port and route",
                ) from e
            raise _Failed(
                f"could not connect to {host}:{port} ({e.strerror or e})",
                "check that the server runs and the port in --url is right",
            ) from e
        probe.sock = sock
        return f"connected to {address[0]}:{address[1]}"

    def tls_handshake() -> str:
        assert probe.sock is not None
        ctx = ssl.create_default_context(cafile=ca_file)
        try:
            probe.sock = ctx.wrap_socket(probe.sock, server_hostname=host)
        except ssl.SSLCertVerificationError as e:
            raise _Failed(
                f"the server's certificate is not trusted ({e.verify_message})",
                "if the server uses a private CA, pass it with --ca-file; otherwise something "
                "between you and the server intercepts TLS",
            ) from e
        except (ssl.SSLError, OSError) as e:
            raise _Failed(
                f"the TLS handshake failed ({e})",
                "check that the server speaks TLS on this port (a plain server wants ws://)",
            ) from e
        assert isinstance(probe.sock, ssl.SSLSocket)
        return f"{probe.sock.version()}, certificate verified for {host}"

    def upgrade() -> str:
        ws = websocket.WebSocket(enable_multithread=False)
        try:
            ws.connect(cfg.url, socket=probe.sock, header=cfg.headers, timeout=timeout)
        except websocket.WebSocketBadStatusException as e:
            status = e.status_code
            fix = {
                404: f"the server has no endpoint at {ep.path}: check --url and --feed",
                429: "too many connection attempts: wait a minute before retrying",
            }.get(status, "check --url")
            raise _Failed(f"the server refused the WebSocket upgrade (HTTP {status})", fix) from e
        except (websocket.WebSocketException, OSError) as e:
            raise _Failed(
                f"the WebSocket upgrade failed ({e})",
                "check that --url points at a WebSocket server",
            ) from e
        probe.ws = ws
        return f"HTTP 101, path {ep.path}"

    def expect_control(stage: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            records = probe.recv(codec, deadline)
            if not records:
                raise _Failed(
                    f"no {stage} from the server within {timeout:g} s",
                    "the server or the network is stalled; try again or raise --timeout",
                )
            for rec in records:
                if isinstance(rec, m.ErrorMessage):
                    summary, fix = explain_code(rec.code, ep.feed)
                    raise _Failed(summary, fix, rec.code)
                if isinstance(rec, m.SuccessMessage | m.SubscriptionMessage):
                    return rec

    def greeting() -> str:
        rec = expect_control("greeting")
        return f"{type(rec).__name__} {getattr(rec, 'msg', '')!r}"

    def auth() -> str:
        assert probe.ws is not None
        probe.ws.send(codec.encode_auth(cfg.key, cfg.secret), _opcode(codec))
        rec = expect_control("auth reply")
        if not (isinstance(rec, m.SuccessMessage) and rec.msg == "authenticated"):
            raise _Failed(
                f"the server answered the credentials with {rec!r}",
                "this is unexpected; report it",
            )
        return f"authenticated ({cfg.options['encoding']})"

    def subscribe() -> str:
        assert probe.ws is not None
        probe.ws.send(codec.encode_subscribe({channel: [symbol]}), _opcode(codec))
        rec = expect_control("subscription ack")
        if not isinstance(rec, m.SubscriptionMessage):
            raise _Failed(
                "the server answered the subscription with something else",
                "this is unexpected; report it",
            )
        acked = getattr(rec, channel, None) or ()
        if symbol not in acked:
            raise _Failed(
                f"the ack does not list {symbol} on {channel}",
                "check the symbol: the server dropped it",
            )
        return f"{channel}: {symbol}"

    try:
        probe.run("dns", dns)
        probe.run("tcp", tcp)
        if tls:
            probe.run("tls", tls_handshake)
        probe.run("upgrade", upgrade)
        probe.run("greeting", greeting)
        probe.run("auth", auth)
        probe.run("subscribe", subscribe)
        _first_data(
            probe, codec=codec, report=report, wait=data_timeout, channel=channel, symbol=symbol
        )
    except _Failed as e:
        report.verdict, report.summary, report.fix, report.code = (
            Verdict.FAILED,
            e.summary,
            e.fix,
            e.code,
        )
    finally:
        probe.close()
    return report


def _opcode(codec: Codec) -> int:
    return (
        websocket.ABNF.OPCODE_BINARY if codec.encoding == "msgpack" else websocket.ABNF.OPCODE_TEXT
    )


def _first_data(
    probe: _Probe, *, codec: Codec, report: Diagnosis, wait: float, channel: str, symbol: str
) -> None:
    """The last step: the first market-data message, and the clock skew it shows."""
    started = time.perf_counter()
    deadline = time.monotonic() + wait
    while True:
        records = probe.recv(codec, deadline)
        if not records:
            report.steps.append(
                Step("data", None, time.perf_counter() - started, f"nothing in {wait:g} s")
            )
            report.verdict = Verdict.WARNING
            report.summary = (
                f"connected, authenticated and subscribed to {channel} {symbol}, but no "
                f"market data arrived within {wait:g} s"
            )
            report.fix = (
                "outside trading hours this is normal; otherwise the server is mute: "
                "set silence_timeout on the client so that it reconnects"
            )
            return
        for rec in records:
            if isinstance(rec, m.ErrorMessage):
                summary, fix = explain_code(rec.code, report.feed)
                raise _Failed(summary, fix, rec.code)
            lag = getattr(rec, "lag_ns", None)
            if isinstance(lag, int):
                report.clock_skew_ms = lag / 1e6
                report.steps.append(
                    Step(
                        "data",
                        True,
                        time.perf_counter() - started,
                        f"{type(rec).__name__} {getattr(rec, 'symbol', '')}, "
                        f"clock skew {report.clock_skew_ms:+.1f} ms",
                    )
                )
                report.summary = (
                    f"market data flows from {report.feed}; receipt minus exchange time "
                    f"{report.clock_skew_ms:+.1f} ms"
                )
                return
