"""Command line: ``python -m rxalpaca demo | serve | stream``.

* ``demo``   — the embedded Alpaca-protocol server with a synthetic market, and the
  client showing a live, throttled terminal view of quotes, trades and bars.
  No API keys. Ctrl-C or ``--duration`` stops it.
* ``serve``  — just the local server (for notebooks or another process).
* ``stream`` — print a live stream from Alpaca itself (needs ``APCA_API_KEY_ID`` /
  ``APCA_API_SECRET_KEY``) or from ``--url``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError
from .feeds import Family

if TYPE_CHECKING:
    from .client import StreamClient
    from .protocol import ConnectionState

# The client and the operators (reactivex) are imported by the commands that run them, so
# ``rxalpaca --help`` and a usage error start fast (docs/benchmarks.md, "Import time").

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

    def render(self, client: StreamClient, started: float) -> str:
        m = client.metrics
        elapsed = max(1e-9, time.monotonic() - started)
        lines = [
            f"rxalpaca demo — {client.url} — state {self.state.value} — "
            f"{m.messages_decoded / elapsed:,.0f} msg/s, {m.frames_received:,} frames, "
            f"{m.reconnects} reconnects, {self.errors} errors — Ctrl-C to stop",
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
            try:
                while deadline is None or time.monotonic() < deadline:
                    # A screen refresh, not synchronisation: the data arrives on its own.
                    time.sleep(0.5)
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


def _stream(args: argparse.Namespace) -> int:
    from .client import StreamClient  # noqa: PLC0415 - see the imports

    client = StreamClient(feed=args.feed, url=args.url, encoding=args.encoding)
    channel = getattr(client, args.channel)
    done = threading.Event()
    with client:

        def failed(error: Exception) -> None:
            print(f"stream ended: {error!r}", file=sys.stderr)
            done.set()

        channel(*args.symbols.split(",")).subscribe(print, on_error=failed)
        client.state.subscribe(lambda s: print(f"# {s.value}", file=sys.stderr))
        with contextlib.suppress(KeyboardInterrupt):
            done.wait(args.duration or None)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``rxalpaca`` and ``python -m rxalpaca``."""
    parser = argparse.ArgumentParser(
        prog="rxalpaca", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="live view of the embedded server's synthetic market")
    demo.add_argument("--duration", type=float, default=0, help="seconds (0: until Ctrl-C)")
    demo.add_argument("--rate", type=int, default=2000, help="messages per second")
    demo.add_argument("--symbols", default="", help="comma-separated")
    demo.add_argument("--throttle", type=float, default=0.25, help="seconds per symbol")
    demo.add_argument("--encoding", choices=("json", "msgpack"), default="msgpack")
    demo.set_defaults(func=_demo)

    serve = sub.add_parser("serve", help="run the local Alpaca-protocol server")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--rate", type=int, default=1000)
    serve.add_argument("--symbols", default="")
    serve.add_argument("--duration", type=float, default=0)
    serve.set_defaults(func=_serve)

    stream = sub.add_parser("stream", help="print a live stream (Alpaca or --url)")
    stream.add_argument(
        "channel",
        choices=(
            "trades",
            "quotes",
            "bars",
            "daily_bars",
            "updated_bars",
            "statuses",
            "lulds",
            "news",
            "orderbooks",
        ),
    )
    stream.add_argument("symbols", help="comma-separated, or *")
    stream.add_argument("--feed", default="iex")
    stream.add_argument("--url", default=None)
    stream.add_argument("--encoding", choices=("json", "msgpack"), default="msgpack")
    stream.add_argument("--duration", type=float, default=0)
    stream.set_defaults(func=_stream)

    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        result: int = args.func(args)
    except (_UsageError, ConfigurationError) as e:
        # A user mistake (a bad --feed, a malformed symbol): one sentence, no traceback.
        print(f"rxalpaca {args.command}: {e}", file=sys.stderr)
        return 2
    return result
