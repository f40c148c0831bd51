"""The ``rxalpaca`` command (also ``python -m rxalpaca``).

Subcommands, one function each (``_demo``, ``_serve``, ``_stream``, ``_doctor``) with
its parser beside it in ``_add_<name>``, so a new subcommand is two new functions and
one line in :data:`SUBCOMMANDS`:

* ``demo``   — the embedded server's synthetic market on a live terminal board (no keys).
* ``serve``  — only the embedded server, for notebooks or another process.
* ``stream`` — print a live stream (Alpaca's, or ``--url``'s) as text or JSON lines.
  With ``--nats``, from a gateway on a NATS bus.
* ``doctor`` — diagnose a connection step by step (:mod:`rxalpaca.doctor`).
* ``gateway`` — serve one Alpaca feed to every consumer on a NATS bus.
* ``bus-demo`` — the whole scale-out on one machine: the embedded server, a local
  nats-server, a gateway and two consumer processes. No API keys.
* ``record`` — record a live session to a file; ``replay`` — play one back (a summary,
  ``--print``) or ``--serve`` it through the embedded server to any Alpaca client.
* ``export`` — a recording as one Parquet table per record type (:mod:`rxalpaca.export`).

argparse, not click or typer: the standard library suffices for these subcommands,
keeps the command free of dependencies (rich, for the demo's board, is the optional
``[cli]`` extra), and its parsers are plain data a test can walk. Exit codes are in
:data:`EPILOG`. User mistakes are one line on stderr (exit 2), never a traceback; the
secret is never printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError
from .feeds import Family

if TYPE_CHECKING:
    from .client import StreamClient
    from .metrics import StageProfile
    from .protocol import ConnectionState

# The client, the operators (reactivex), msgspec and the doctor are imported by the
# commands that run them, so ``rxalpaca --help`` and a usage error start fast
# (docs/benchmarks.md, "Import time").

__all__ = ["main"]

DEMO_SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "SPY")
#: The feed the demo's client uses for each family its market can simulate.
_DEMO_FEEDS = {Family.STOCKS: "iex", Family.CRYPTO: "crypto"}


class _UsageError(Exception):
    """A mistake on the command line: ``main`` prints it as one sentence, exit status 2."""


def _symbols(text: str) -> list[str]:
    """``--symbols``: comma-separated, normalised the way the client normalises them
    (stripped, upper case: ``aapl`` is ``AAPL``, ``btc/usd`` is ``BTC/USD``), so the
    market generates the very names the client subscribes to; duplicates dropped."""
    if not text.strip():
        return list(DEMO_SYMBOLS)
    symbols = list(dict.fromkeys(s.strip().upper() for s in text.split(",") if s.strip()))
    if not symbols:
        raise _UsageError(f"--symbols {text!r} names no symbol; try --symbols AAPL,MSFT")
    return symbols


def _demo_feed(symbols: Sequence[str]) -> str:
    """The feed for a demo of ``symbols``: stocks on ``iex``, crypto on ``crypto``."""
    from .testing.market import family_of_symbol  # noqa: PLC0415 - needs the [testing] extra

    families = {family_of_symbol(s) for s in symbols}
    if len(families) > 1:
        raise _UsageError(
            f"--symbols mixes stocks and crypto ({', '.join(symbols)}); "
            "the demo streams one kind at a time"
        )
    feed = _DEMO_FEEDS.get(families.pop())
    if feed is None:
        raise _UsageError("the demo simulates stocks or crypto (e.g. AAPL or BTC/USD) only")
    return feed


class _Board:
    """The demo's view: latest values per symbol, written by the socket thread."""

    def __init__(self, symbols: Sequence[str]) -> None:
        self.symbols = list(symbols)
        self.rows: dict[str, dict[str, Any]] = {s: {} for s in symbols}
        self.lock = threading.Lock()
        from .protocol import ConnectionState  # noqa: PLC0415 - msgspec: not for --help

        self.state: ConnectionState = ConnectionState.IDLE
        self.errors = 0

    def quote(self, q: Any) -> None:
        with self.lock:
            self.rows[q.symbol].update(
                bid=q.bid_price, ask=q.ask_price, bs=q.bid_size, as_=q.ask_size, ts=q.timestamp
            )

    def trade(self, t: Any) -> None:
        with self.lock:
            self.rows[t.symbol].update(last=t.price, size=t.size, x=t.exchange)

    def bar(self, b: Any) -> None:
        with self.lock:
            self.rows[b.symbol].update(
                bar=f"{b.open:.2f}/{b.high:.2f}/{b.low:.2f}/{b.close:.2f}", vol=b.volume
            )

    def title(self, client: StreamClient, started: float) -> str:
        m = client.metrics
        elapsed = max(1e-9, time.monotonic() - started)
        return (
            f"rxalpaca demo — {client.url} — state {self.state.value} — "
            f"{m.messages_decoded / elapsed:,.0f} msg/s, {m.frames_received:,} frames, "
            f"{m.reconnects} reconnects, {self.errors} errors — Ctrl-C to stop"
        )

    def cells(self, s: str) -> list[str]:
        """One symbol's row, as text cells (under the lock)."""
        r = self.rows[s]
        ts = r.get("ts")
        return [
            s,
            _f(r.get("bid")),
            _f(r.get("ask")),
            f"{r.get('bs', '')}x{r.get('as_', '')}",
            _f(r.get("last")),
            str(r.get("size", "")),
            str(r.get("x", "")),
            "" if ts is None else ts.strftime("%H:%M:%S.%f")[:12],
            str(r.get("bar", "")),
            str(r.get("vol", "")),
        ]

    def table(self, client: StreamClient, started: float) -> Any:
        """The board as a rich ``Table`` (the ``[cli]`` extra; see :func:`_rich_console`)."""
        from rich.table import Table  # noqa: PLC0415 - optional, and slow to import

        t = Table(title=self.title(client, started), title_justify="left")
        for name, right in _COLUMNS:
            t.add_column(name, justify="right" if right else "left", no_wrap=True)
        with self.lock:
            for s in self.symbols:
                t.add_row(*self.cells(s))
        return t

    def render(self, client: StreamClient, started: float) -> str:
        lines = [
            self.title(client, started),
            "",
            f"{'symbol':<7} {'bid':>9} {'ask':>9} {'size':>9} {'last':>9} {'trade sz':>8} "
            f"{'x':>2} {'quote time':>12}  {'last minute bar o/h/l/c':<30} {'volume':>8}",
        ]
        with self.lock:
            for s in self.symbols:
                r = self.rows[s]
                ts = r.get("ts")
                lines.append(
                    f"{s:<7} {_f(r.get('bid')):>9} {_f(r.get('ask')):>9} "
                    f"{str(r.get('bs', '')) + 'x' + str(r.get('as_', '')):>9} "
                    f"{_f(r.get('last')):>9} {r.get('size', ''):>8} {r.get('x', ''):>2} "
                    f"{'' if ts is None else ts.strftime('%H:%M:%S.%f')[:12]:>12}  "
                    f"{r.get('bar', ''):<30} {r.get('vol', ''):>8}"
                )
        return "\n".join(lines)


def _f(v: float | None) -> str:
    return "" if v is None else f"{v:.2f}"


#: The demo board's columns: (heading, right-aligned).
_COLUMNS = (
    ("symbol", False),
    ("bid", True),
    ("ask", True),
    ("size", True),
    ("last", True),
    ("trade sz", True),
    ("x", True),
    ("quote time", True),
    ("last minute bar o/h/l/c", False),
    ("volume", True),
)


def _rich_console(stream: Any = None) -> Any:
    """rich's ``Console`` on ``stream`` (default stdout), or None for plain text.

    rich is the ``[cli]`` extra, not a core dependency: a library that trading code
    imports should not pull a terminal toolkit (and its own dependencies) along, and
    importing rich costs tens of ms that ``rxalpaca --help`` must not pay — so it is
    imported here, by the commands that draw. Without it (or with ``RXALPACA_NO_RICH``
    set) the commands print plain text.
    """
    if os.environ.get("RXALPACA_NO_RICH"):
        return None
    try:
        from rich.console import Console  # noqa: PLC0415 - optional, and slow to import
    except ImportError:  # pragma: no cover - the [cli] extra is installed where tests run
        return None
    return Console(file=stream or sys.stdout)


@contextlib.contextmanager
def _profiled(enabled: bool, messages: Callable[[], int]) -> Iterator[Callable[[Any], Any]]:
    """``--profile``: every pipeline built inside the block is timed per stage; at the end
    the table goes to stderr. Yields a wrapper that times an observer ("observers")."""
    if not enabled:
        yield lambda fn: fn
        return
    from .metrics import start_profiling, stop_profiling  # noqa: PLC0415

    profile = start_profiling()

    def timed(fn: Callable[[Any], None]) -> Callable[[Any], None]:
        clock, add = time.perf_counter_ns, profile.add

        def observer(item: Any) -> None:
            t0 = clock()
            try:
                fn(item)
            finally:
                add("observers", clock() - t0)

        return observer

    try:
        yield timed
    finally:
        stop_profiling()
        _print_profile(profile, messages())


def _print_profile(profile: StageProfile, messages: int) -> None:
    """Where the time went, per pipeline stage, on stderr (a rich table when it can)."""
    console = _rich_console(sys.stderr)
    if console is None:
        print(f"# where the time went (--profile)\n{profile.report(messages)}", file=sys.stderr)
        return
    from rich.table import Table  # noqa: PLC0415

    frames = profile.calls("route") or profile.calls("reassemble")
    wall = max(1, profile.wall_ns)
    t = Table(title=f"where the time went (--profile): {frames:,} frames, {messages:,} messages")
    for name in ("stage", "ms", "share", "µs/frame", "µs/msg"):
        t.add_column(name, justify="left" if name == "stage" else "right")
    for name, ns, _calls in profile.breakdown():
        t.add_row(
            name,
            f"{ns / 1e6:.1f}",
            f"{100 * ns / wall:.1f}%",
            f"{ns / 1e3 / frames:.2f}" if frames else "-",
            f"{ns / 1e3 / messages:.3f}" if messages else "-",
        )
    t.add_row("wall", f"{wall / 1e6:.1f}", "100.0%", "", "")
    console.print(t)


def _demo(args: argparse.Namespace) -> int:
    from . import ops  # noqa: PLC0415 - see the imports
    from .client import StreamClient  # noqa: PLC0415
    from .testing import (  # noqa: PLC0415 - needs the [testing] extra
        DEFAULT_KEY,
        DEFAULT_SECRET,
        AlpacaStreamServer,
        MarketConfig,
    )

    symbols = _symbols(args.symbols)
    feed = _demo_feed(symbols)
    board = _Board(symbols)
    tty = sys.stdout.isatty()
    # No per-connection message logs: the demo may run for hours (issue #9, item 13).
    with AlpacaStreamServer(sent_log_size=0, received_log_size=100) as server:
        # The synthetic clock runs 15x faster than the wall clock so that minute
        # bars show up every few seconds.
        server.start_market(
            MarketConfig(symbols=symbols, rate=args.rate, step_ns=int(15e9 / args.rate))
        )
        with StreamClient(
            feed=feed,
            url=server.base_url,
            key=DEFAULT_KEY,
            secret=DEFAULT_SECRET,
            encoding=args.encoding,
        ) as client:
            client.state.subscribe(lambda s: setattr(board, "state", s))
            client.errors.subscribe(lambda e: setattr(board, "errors", board.errors + 1))
            per_symbol = ops.throttle(args.throttle, key=lambda r: r.symbol)
            client.quotes(*symbols).pipe(per_symbol).subscribe(board.quote)
            client.trades(*symbols).pipe(
                ops.throttle(args.throttle, key=lambda r: r.symbol)
            ).subscribe(board.trade)
            client.bars(*symbols).subscribe(board.bar)
            started = time.monotonic()
            deadline = started + args.duration if args.duration else None
            # On a terminal, a rich table redrawn in place; else (or without rich) text.
            console = _rich_console() if tty else None
            live: Any = contextlib.nullcontext()
            if console is not None:
                from rich.live import Live  # noqa: PLC0415 - the [cli] extra

                live = Live(board.table(client, started), console=console, auto_refresh=False)
            try:
                with live:
                    while deadline is None or time.monotonic() < deadline:
                        # A screen refresh, not synchronisation: the data arrives on its own.
                        time.sleep(0.5)
                        if console is not None:
                            live.update(board.table(client, started), refresh=True)
                            continue
                        view = board.render(client, started)
                        if tty:
                            sys.stdout.write("\x1b[H\x1b[2J" + view + "\n")
                        else:
                            sys.stdout.write(view + "\n\n")
                        sys.stdout.flush()
            except KeyboardInterrupt:
                pass
            summary = client.health()
    print(
        f"done: {summary['messages_delivered']:,} messages delivered, "
        f"{summary['reconnects']} reconnects, {summary['decode_failures']} decode failures"
    )
    return 0


def _serve(args: argparse.Namespace) -> int:
    from .testing import DEFAULT_KEY, DEFAULT_SECRET, AlpacaStreamServer  # noqa: PLC0415 - needs the [testing] extra

    symbols = _symbols(args.symbols)
    with AlpacaStreamServer(port=args.port, sent_log_size=0, received_log_size=100) as server:
        server.start_market(symbols=symbols, rate=args.rate)
        print(
            f"serving {server.base_url} (key {DEFAULT_KEY!r}, secret {DEFAULT_SECRET!r});"
            " Ctrl-C to stop",
            flush=True,
        )
        stop = threading.Event()
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait(args.duration or None)
    return 0


def _json_line(record: Any) -> str:
    """One record as a JSON object: its class as ``type``, timestamps as integer ns."""
    import msgspec  # noqa: PLC0415 - see the imports

    fields = msgspec.structs.asdict(record) if isinstance(record, msgspec.Struct) else {}
    out: dict[str, Any] = {"type": type(record).__name__}
    for name, value in fields.items():
        if isinstance(value, msgspec.Raw):  # the wire timestamp (raw_time), kept undecoded
            out["timestamp_ns"] = record.timestamp_ns
        else:
            out[name] = value
    return msgspec.json.encode(out).decode()


def _failure(error: BaseException, feed: str) -> str:
    """Why a stream ended, in one sentence (with the fix when we know it)."""
    from .doctor import explain_code  # noqa: PLC0415 - see the imports
    from .errors import StreamError  # noqa: PLC0415

    if isinstance(error, StreamError) and error.code is not None:
        what, fix = explain_code(error.code, feed)
        return f"{what}; {fix}"
    return f"the stream ended: {error}"


def _stream(args: argparse.Namespace) -> int:
    from .protocol import ConnectionState  # noqa: PLC0415 - see the imports

    client: Any
    if args.nats:
        from .bus import BusClient  # noqa: PLC0415 - needs the [nats] extra

        client = BusClient(args.nats.split(","), args.feed, prefix=args.prefix)
    else:
        from .client import StreamClient  # noqa: PLC0415

        client = StreamClient(
            feed=args.feed,
            url=args.url,
            key=args.key,
            secret=args.secret,
            encoding=args.encoding,
            ca_file=args.ca_file,
        )
    where = args.nats or client.url
    channel = getattr(client, args.channel)
    symbols = [s for s in args.symbols.split(",") if s.strip()] or ["*"]
    done = threading.Event()  # the stream ended (set on the socket thread)
    up = threading.Event()  # authenticated at least once
    settled = threading.Event()  # either of the two
    failure: list[str] = []
    last_error: list[Exception] = []
    show: Callable[[Any], str] = _json_line if args.json else str
    exporter = _metrics_server(client, args.metrics_port, args.metrics_addr)
    profiled = _profiled(args.profile, lambda: int(client.metrics.messages_delivered))
    timed = profiled.__enter__()  # before the first subscription opens the connection

    @timed
    def emit(record: Any) -> None:
        print(show(record), flush=True)

    def failed(error: Exception) -> None:
        failure.append(_failure(error, client.endpoint.feed))
        done.set()
        settled.set()

    def on_state(state: ConnectionState) -> None:
        if not args.json:
            print(f"# {state.value}", file=sys.stderr, flush=True)
        if state is ConnectionState.AUTHENTICATED:
            up.set()
            settled.set()

    with contextlib.ExitStack() as stack:
        stack.push(profiled)  # the table is printed after the client has closed
        stack.enter_context(client)
        stack.enter_context(exporter)
        # The stream first: a bad symbol is refused here, before anything is printed.
        records = channel(*symbols)
        if args.throttle:
            from . import ops  # noqa: PLC0415 - see the imports

            records = records.pipe(ops.throttle(args.throttle, key=lambda r: r.symbol))
        records.subscribe(emit, on_error=failed)
        client.errors.subscribe(last_error.append)
        client.state.subscribe(on_state)
        try:
            # Not authenticated in time (nothing listens, wrong URL, …): the client would
            # retry for ever; the command says why and stops.
            if not settled.wait(args.connect_timeout):
                why = f" (last error: {last_error[-1]})" if last_error else ""
                failure.append(f"not connected to {where} within {args.connect_timeout:g} s{why}")
            else:
                done.wait(args.duration or None)
        except KeyboardInterrupt:
            pass
    if failure:
        print(f"rxalpaca stream: {failure[0]}", file=sys.stderr)
        return 1
    return 0


@contextlib.contextmanager
def _metrics_server(client: Any, port: int | None, addr: str) -> Iterator[None]:
    """A Prometheus endpoint for ``client`` on ``addr:port`` while the stream runs."""
    if port is None:
        yield
        return
    try:
        from .contrib.prometheus import serve_metrics  # noqa: PLC0415 - the [prometheus] extra
    except ImportError as e:
        raise _UsageError(
            "--metrics-port needs the prometheus extra: pip install 'rxalpaca[prometheus]'"
        ) from e
    try:
        server = serve_metrics(client, port=port, addr=addr)
        bound = server.__enter__()
    except OSError as e:
        raise _UsageError(f"cannot serve metrics on {addr}:{port}: {e.strerror or e}") from e
    try:
        print(f"# metrics on http://{addr}:{bound}/metrics", file=sys.stderr, flush=True)
        yield
    finally:
        server.__exit__(None, None, None)


def _doctor(args: argparse.Namespace) -> int:
    from .doctor import diagnose  # noqa: PLC0415 - see the imports

    report = diagnose(
        args.feed,
        url=args.url,
        key=args.key,
        secret=args.secret,
        symbol=args.symbol,
        channel=args.channel,
        encoding=args.encoding,
        ca_file=args.ca_file,
        timeout=args.timeout,
        data_timeout=args.data_timeout,
    )
    print(json.dumps(report.to_dict()) if args.json else report.render())
    return report.exit_code


def _gateway(args: argparse.Namespace) -> int:
    from .bus import Gateway, Retention  # noqa: PLC0415 - needs the [nats] extra

    retention = None
    if args.retention:
        retention = Retention(max_age=args.retention, max_bytes=args.retention_bytes)
    # One gateway (one Alpaca connection) per feed served.
    with contextlib.ExitStack() as stack:
        gateways = [
            stack.enter_context(
                Gateway(
                    args.nats.split(","),
                    feed.strip(),
                    prefix=args.prefix,
                    retention=retention,
                    url=args.url,
                    encoding=args.encoding,
                )
            )
            for feed in args.feed.split(",")
        ]
        for g in gateways:
            # Started before NATS: it said so (a WARNING) and serves once NATS answers.
            late = "" if g.health()["gateway"]["nats_connected"] else " once NATS answers"
            print(f"serving {g.feed} on {g.subjects.root}.*{late}; Ctrl-C to stop", flush=True)
        gateways[0].wait(args.duration or None)
    return 0


def _bus_demo(args: argparse.Namespace) -> int:
    import subprocess  # noqa: PLC0415 - only this command starts processes

    from .bus import Gateway  # noqa: PLC0415 - needs the [nats] extra
    from .testing import (  # noqa: PLC0415 - needs the [testing] extra
        DEFAULT_KEY,
        DEFAULT_SECRET,
        AlpacaStreamServer,
        MarketConfig,
    )
    from .testing.nats_server import NatsServer  # noqa: PLC0415 - needs the [nats] extra

    symbols = [s for s in DEMO_SYMBOLS if s != "SPY"]
    halves = [",".join(symbols[:5]), ",".join(symbols[2:])]  # overlapping on purpose
    with (
        AlpacaStreamServer(sent_log_size=0, received_log_size=100) as server,
        NatsServer() as nats,
    ):
        server.start_market(MarketConfig(symbols=symbols, rate=args.rate))
        with Gateway(
            nats.url, "iex", url=server.base_url, key=DEFAULT_KEY, secret=DEFAULT_SECRET
        ) as gateway:
            print(f"# alpaca server {server.base_url}, nats {nats.url}, gateway {gateway.id}")
            command = [sys.executable, "-m", "rxalpaca", "stream", "quotes"]
            options = ["--nats", nats.url, "--throttle", "1", "--duration", str(args.duration)]
            consumers = [
                subprocess.Popen([*command, half, *options], stdout=subprocess.PIPE, text=True)
                for half in halves
            ]
            threads = [
                threading.Thread(target=_relay, args=(f"consumer {i + 1}", c.stdout), daemon=True)
                for i, c in enumerate(consumers)
            ]
            for t in threads:
                t.start()
            try:
                for c in consumers:
                    c.wait()
            except KeyboardInterrupt:
                for c in consumers:
                    c.terminate()
            for t in threads:
                t.join(5)
            h = gateway.health()
            print(
                f"# gateway: one Alpaca connection, {h['gateway']['messages_published']:,} "
                f"batches published to {len(consumers)} consumers"
            )
    return 0


def _relay(name: str, stream: Any) -> None:
    for line in stream:
        print(f"[{name}] {line.rstrip()}", flush=True)


def _add_record(sub: Any) -> None:
    """``rxalpaca record``: record a live session to a file (issue #14)."""
    p = sub.add_parser("record", help="record a live session to a file (needs rxalpaca[record])")
    p.add_argument("--out", required=True, help="the recording, e.g. day.rxa")
    p.add_argument("--symbols", required=True, help="comma-separated, or *")
    p.add_argument("--feed", default="iex")
    p.add_argument("--channels", default="trades,quotes,bars", help="comma-separated")
    p.add_argument("--url", default=None, help="another server (default: Alpaca)")
    p.add_argument("--encoding", choices=("json", "msgpack"), default="msgpack")
    p.add_argument("--duration", type=float, default=0, help="seconds (0: until Ctrl-C)")
    p.add_argument("--count", type=int, default=0, help="stop after this many records")
    p.add_argument("--rotate-mb", type=float, default=None, help="new part every N MB")
    p.add_argument("--rotate-minutes", type=float, default=None, help="new part every N min")

    def run(args: argparse.Namespace) -> int:
        symbols = [s for s in args.symbols.split(",") if s.strip()]
        channels = [c.strip() for c in args.channels.split(",") if c.strip()]
        allowed = {"trades", "quotes", "bars", "daily_bars", "updated_bars", "statuses",
                   "lulds", "news", "orderbooks"}  # fmt: skip
        wrong = [c for c in channels if c not in allowed]
        if wrong or not channels:
            raise _UsageError(f"--channels {args.channels!r}: choose from {sorted(allowed)}")
        from .client import StreamClient  # noqa: PLC0415 - see the imports

        client = StreamClient(feed=args.feed, url=args.url, encoding=args.encoding)
        done = threading.Event()
        seen = [0]

        def count(_record: Any) -> None:
            seen[0] += 1
            if args.count and seen[0] >= args.count:
                done.set()

        with client:
            recorder = client.record(
                args.out,
                max_bytes=int(args.rotate_mb * 1e6) if args.rotate_mb else None,
                max_seconds=args.rotate_minutes * 60 if args.rotate_minutes else None,
            )
            for ch in channels:
                getattr(client, ch)(*symbols).subscribe(count, on_error=lambda _e: done.set())
            print(f"recording {args.feed} {','.join(channels)} to {args.out}; Ctrl-C to stop",
                  file=sys.stderr)  # fmt: skip
            with contextlib.suppress(KeyboardInterrupt):
                done.wait(args.duration or None)
            recorder.close()
        stats = recorder.stats()
        print(
            f"recorded {stats['written']:,} records ({seen[0]:,} market records), "
            f"{stats['dropped']:,} dropped, {stats['bytes']:,} bytes in "
            f"{len(stats['parts'])} file(s)"
        )
        return 0

    p.set_defaults(func=run)


def _add_replay(sub: Any) -> None:
    """``rxalpaca replay``: play a recording, or serve it through the embedded server."""
    p = sub.add_parser("replay", help="replay a recording (summary, --print, or --serve)")
    p.add_argument("path", help="the recording (its rotated parts follow)")
    p.add_argument("--speed", type=float, default=None, help="1.0: recorded pace (default: max)")
    p.add_argument("--print", action="store_true", help="print every record")
    p.add_argument("--serve", action="store_true", help="serve it to any Alpaca client")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--wait", type=float, default=0, help="--serve: seconds to wait for a client")
    _add_profile_option(p)

    def run(args: argparse.Namespace) -> int:
        from .errors import RecordingError  # noqa: PLC0415
        from .recording import header_dict  # noqa: PLC0415
        from .replaying import replay  # noqa: PLC0415

        try:
            if args.serve:
                return _serve_recording(args)
            r = replay(args.path, speed=args.speed)
        except RecordingError as e:  # not a recording, another version: one sentence
            raise _UsageError(str(e)) from None
        counts: dict[str, int] = {}
        profiled = _profiled(args.profile, lambda: sum(counts.values()))
        timed = profiled.__enter__()

        @timed
        def on(record: Any) -> None:
            name = type(record).__name__
            counts[name] = counts.get(name, 0) + 1
            if args.print:
                print(record)

        for ch in ("trades", "quotes", "bars", "daily_bars", "updated_bars", "news", "orderbooks"):
            if any(c.value == ch for c in r.endpoint.channels):
                getattr(r, ch)("*").subscribe(on)
        gaps: list[Any] = []
        errors: list[Exception] = []
        r.gaps.subscribe(gaps.append)
        r.errors.subscribe(errors.append)
        with contextlib.ExitStack() as stack:
            stack.push(profiled)  # entered above: the observers are timed from the start
            r.run()
        print(json.dumps(header_dict(r.header)))
        print(
            f"replayed {sum(counts.values()):,} records "
            f"({', '.join(f'{n} {k}' for k, n in sorted(counts.items())) or 'none'}), "
            f"{len(gaps)} gaps, {len(errors)} errors"
        )
        for g in gaps:
            print(f"gap: {g}")
        if r.stopped is not None:
            print(f"stopped early: {r.stopped}")
        return 0

    p.set_defaults(func=run)


def _add_export(sub: Any) -> None:
    """``rxalpaca export``: a recording to Parquet, one table per record type (issue #14)."""
    p = sub.add_parser("export", help="export a recording to Parquet (needs rxalpaca[parquet])")
    p.add_argument("path", help="the recording (its rotated parts follow)")
    p.add_argument("--parquet", required=True, metavar="DIR", help="write DIR/<Type>.parquet")
    p.add_argument("--batch-rows", type=int, default=65_536, help="rows per row group")

    def run(args: argparse.Namespace) -> int:
        from .errors import RecordingError  # noqa: PLC0415
        from .export import export_parquet  # noqa: PLC0415 - pyarrow, the replay: lazily

        try:
            result = export_parquet(args.path, args.parquet, batch_rows=args.batch_rows)
        except RecordingError as e:  # missing, not a recording, corrupt: one sentence
            raise _UsageError(str(e)) from None
        except OSError as e:  # writing failed (a full disk): nothing was left behind
            print(f"rxalpaca export: writing {args.parquet} failed: {e}", file=sys.stderr)
            return 1
        for name, rows in sorted(result.rows.items()):
            print(f"{name}: {rows:,} rows -> {result.files[name]}")
        print(f"exported {sum(result.rows.values()):,} rows in {len(result.rows)} tables, "
              f"{result.errors} errors")  # fmt: skip
        if result.stopped is not None:
            print(f"stopped early: {result.stopped}")
        return 0

    p.set_defaults(func=run)


def _serve_recording(args: argparse.Namespace) -> int:
    """``replay --serve``: the recording's market data through the embedded server, at
    ``--speed`` (default 1.0), to every client subscribed (the server filters)."""
    from .recording import Kind, open_recording  # noqa: PLC0415
    from .testing import DEFAULT_KEY, DEFAULT_SECRET, AlpacaStreamServer  # noqa: PLC0415
    from .testing.wire import TIMESTAMP_KEYS  # noqa: PLC0415
    from .timestamps import parse_time_ns  # noqa: PLC0415

    reader = open_recording(args.path)
    speed = args.speed or 1.0
    loads = _plain_decoder(reader.header.encoding)
    with AlpacaStreamServer(port=args.port, sent_log_size=0, received_log_size=100) as server:
        print(
            f"serving {args.path} at {server.base_url} (feed {reader.header.feed!r}, key "
            f"{DEFAULT_KEY!r}, secret {DEFAULT_SECRET!r})",
            flush=True,
        )
        with contextlib.suppress(TimeoutError):
            server.wait_for(
                lambda cs: any(c.authenticated and any(c.subscriptions.values()) for c in cs),
                args.wait or 3600,
            )
        first: int | None = None
        wall0 = time.monotonic()
        served = 0
        for e in reader:
            if e.kind is not Kind.RECEIVED or not e.value.fin:
                continue  # the server frames its own messages: fragments are not replayed
            try:
                msgs = loads(e.value.payload)
            except ValueError:
                continue
            data = [m for m in msgs if isinstance(m, dict) and m.get("T") not in _CONTROL]
            if not data:
                continue
            for m in data:
                for k in TIMESTAMP_KEYS & m.keys():
                    if isinstance(m[k], str):
                        m[k] = parse_time_ns(m[k])
            first = e.ns if first is None else first
            wait = wall0 + (e.ns - first) / 1e9 / speed - time.monotonic()
            if wait > 0:
                time.sleep(wait)  # pacing by the recorded clock
            served += server.publish(data, batch=len(data))
    print(f"served {served:,} messages")
    return 0


_CONTROL = frozenset({"success", "subscription", "error"})


def _plain_decoder(encoding: str) -> Any:
    """Frames to plain dicts (timestamps as ns or RFC 3339 text) for the test server."""
    if encoding == "json":
        import orjson  # noqa: PLC0415

        return orjson.loads
    import msgpack  # noqa: PLC0415

    def loads(payload: bytes | str) -> Any:
        try:  # timestamp=2: MessagePack timestamps as ns ints
            return msgpack.unpackb(payload, timestamp=2, strict_map_key=False)
        except Exception as exc:  # msgpack's errors share no ValueError base
            raise ValueError(str(exc)) from exc

    return loads


# ---------------------------------------------------------------------- the parsers

EPILOG = """\
exit codes:
  0  done (the duration ran out, Ctrl-C, or doctor found the connection healthy)
  1  failed: authentication refused, the stream ended with an error, not connected
     in time, doctor found a step failing, or writing an export failed
  2  a mistake on the command line, or a file that is not a readable recording
     (one line on stderr says which)
  3  doctor: connected and subscribed, but no market data arrived

credentials: --key/--secret, or APCA_API_KEY_ID and APCA_API_SECRET_KEY (preferred:
a secret on the command line is visible to other users of this machine); the
secret is never printed.
"""

CHANNELS = (
    "trades",
    "quotes",
    "bars",
    "daily_bars",
    "updated_bars",
    "statuses",
    "lulds",
    "news",
    "orderbooks",
)


def _add_connection_options(p: argparse.ArgumentParser) -> None:
    """Where to connect and as whom: shared by stream and doctor."""
    p.add_argument("--feed", default="iex", help="iex, sip, crypto, news, opra … (default iex)")
    p.add_argument("--url", default=None, help="another server, e.g. ws://127.0.0.1:8765")
    p.add_argument("--key", default=None, help="API key id (default $APCA_API_KEY_ID)")
    p.add_argument(
        "--secret",
        default=None,
        help="API secret (default $APCA_API_SECRET_KEY; never printed)",
    )
    p.add_argument("--encoding", choices=("json", "msgpack"), default="msgpack")
    p.add_argument("--ca-file", default=None, help="a CA bundle to trust for wss://")


def _add_demo(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="live view of the embedded server's synthetic market (no keys)",
        description="The embedded Alpaca-protocol server with a synthetic market, and a "
        "client showing a live, throttled board of quotes, trades and bars. "
        "Ctrl-C or --duration stops it.",
    )
    p.add_argument("--duration", type=float, default=0, help="seconds (0: until Ctrl-C)")
    p.add_argument("--rate", type=int, default=2000, help="messages per second (default 2000)")
    p.add_argument("--symbols", default="", help="comma-separated stocks or crypto pairs")
    p.add_argument("--throttle", type=float, default=0.25, help="seconds per symbol and row")
    p.add_argument("--encoding", choices=("json", "msgpack"), default="msgpack")
    p.set_defaults(func=_demo)


def _add_serve(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="run the embedded Alpaca-protocol server",
        description="Run the embedded Alpaca-protocol server with a synthetic market on "
        "127.0.0.1 until Ctrl-C. The first line printed names its URL and credentials.",
    )
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port (default 8765)")
    p.add_argument("--rate", type=int, default=1000, help="messages per second (default 1000)")
    p.add_argument("--symbols", default="", help="comma-separated")
    p.add_argument("--duration", type=float, default=0, help="seconds (0: until Ctrl-C)")
    p.set_defaults(func=_serve)


def _add_stream(sub: Any) -> None:
    p = sub.add_parser(
        "stream",
        help="print a live stream (Alpaca's, or --url's)",
        description="Print one channel of a live stream, one record a line (or JSON lines "
        "with --json), until --duration or Ctrl-C.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("channel", choices=CHANNELS)
    p.add_argument("symbols", help="comma-separated, or * for every symbol")
    _add_connection_options(p)
    p.add_argument("--json", action="store_true", help="JSON lines instead of text")
    p.add_argument("--duration", type=float, default=0, help="seconds (0: until Ctrl-C)")
    p.add_argument(
        "--connect-timeout",
        type=float,
        default=15.0,
        help="give up unless authenticated within this many seconds (default 15)",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve Prometheus metrics on this port, 0 for any (needs rxalpaca[prometheus])",
    )
    p.add_argument(
        "--metrics-addr",
        default="127.0.0.1",
        help="interface for --metrics-port (default 127.0.0.1)",
    )
    p.add_argument("--nats", default=None, help="read from a gateway on this NATS URL")
    p.add_argument("--prefix", default="rxalpaca", help="the gateway's subject prefix")
    p.add_argument(
        "--throttle", type=float, default=0, help="at most one record per symbol per N s"
    )
    _add_profile_option(p)
    p.set_defaults(func=_stream)


def _add_profile_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--profile",
        action="store_true",
        help="at exit, print where the time went per pipeline stage (on stderr)",
    )


def _add_doctor(sub: Any) -> None:
    p = sub.add_parser(
        "doctor",
        help="diagnose a connection: DNS, TCP, TLS, upgrade, auth, subscribe, data",
        description="Try each step of connecting once, timed, and say what fails and how "
        "to fix it (wrong keys, a plan without the feed, another connection open, a "
        "certificate not trusted, a mute server …).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_connection_options(p)
    p.add_argument("--symbol", default=None, help="default AAPL, BTC/USD or * (news)")
    p.add_argument("--channel", default=None, help="default trades (news on the news feed)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per step (default 5)")
    p.add_argument(
        "--data-timeout",
        type=float,
        default=5.0,
        help="seconds to wait for the first market data (default 5)",
    )
    p.add_argument("--json", action="store_true", help="the report as one JSON object")
    p.set_defaults(func=_doctor)


def _add_gateway(sub: Any) -> None:
    p = sub.add_parser(
        "gateway",
        help="serve Alpaca feeds to every consumer on a NATS bus",
        description="Hold one Alpaca connection per feed and publish it on NATS for any "
        "number of BusClient processes (docs/scale-out.md). Needs rxalpaca[nats].",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--feed", default="iex", help="comma-separated: one connection each")
    p.add_argument("--nats", default="nats://127.0.0.1:4222", help="comma-separated URLs")
    p.add_argument("--prefix", default="rxalpaca", help="the first subject token")
    p.add_argument("--url", default=None, help="another Alpaca-protocol server")
    p.add_argument("--encoding", choices=("json", "msgpack"), default="msgpack")
    p.add_argument("--retention", type=float, default=0, help="seconds kept for catch-up")
    p.add_argument("--retention-bytes", type=int, default=1 << 30, help="the stream's cap")
    p.add_argument("--duration", type=float, default=0, help="seconds (0: until Ctrl-C)")
    p.set_defaults(func=_gateway)


def _add_bus_demo(sub: Any) -> None:
    p = sub.add_parser(
        "bus-demo",
        help="a gateway and two consumer processes on one machine (no keys)",
        description="The embedded server, a local nats-server, a gateway and two consumer "
        "processes with overlapping symbols, printing their quotes.",
    )
    p.add_argument("--duration", type=float, default=10, help="seconds (default 10)")
    p.add_argument("--rate", type=int, default=2000, help="messages per second")
    p.set_defaults(func=_bus_demo)


#: One parser-adding function per subcommand, in the order ``--help`` lists them.
SUBCOMMANDS: tuple[Callable[[Any], None], ...] = (
    _add_demo,
    _add_serve,
    _add_stream,
    _add_doctor,
    _add_gateway,
    _add_bus_demo,
    _add_record,
    _add_replay,
    _add_export,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``rxalpaca`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="rxalpaca",
        description="Alpaca real-time market data as reactive streams: try the embedded "
        "server, stream live data, diagnose a connection.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO")
    parser.add_argument(
        "--debug", action="store_true", help="log at DEBUG: state transitions, requests"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``rxalpaca`` and ``python -m rxalpaca``; returns the exit code."""
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result: int = args.func(args)
    except (_UsageError, ConfigurationError) as e:
        # A user mistake (a bad --feed, a malformed symbol, no keys): one sentence.
        print(f"rxalpaca {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return result
