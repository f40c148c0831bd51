"""Where the client's memory goes: resident set size over a bare interpreter, piece by piece.

    python benchmarks/rss.py            # about 30 s: the tables in docs/benchmarks.md
    python benchmarks/rss.py --smoke    # a few seconds: every step runs once

Three tables, every figure from ``/proc/self/status`` of a fresh process and reported in MB
over a bare interpreter (``python -c`` reading its own ``VmHWM``), each the median of
``--reps`` processes:

1. **imports, cumulative**: one process per row, importing the rows above it and its own
   module. The order is chosen so that each row is charged what it brings *first*: ``ssl``
   (websocket-client imports it, and so does asyncio), websocket-client and orjson — the
   floor's imports — then what rxalpaca adds: asyncio (``reactivex/__init__.py`` starts
   with ``from asyncio import Future``), reactivex, ``reactivex.operators``, msgspec and
   rxalpaca's own modules, with and without bytecode.
2. **each alone**: one import in a fresh process — what a module costs with everything it
   pulls in (the rows of table 1 overlap: websocket-client and asyncio both bring ssl).
3. **the clients at run time** (``_clients.py`` against ``_pusher.py``, as ``e2e.py`` runs
   them): after the imports, at the first data message (connected, authenticated, 1,000
   symbols subscribed on trades, quotes and bars) and the peak over a flood (``VmHWM``),
   for the floor (websocket-client + orjson/msgpack) and rxalpaca.

``--trees A,B`` runs the third table for rxalpaca from each source tree (an A/B of two
checkouts in the same minutes, e.g. a ``git worktree`` of the previous commit); ``--book``
adds the subscription book's own footprint (``tracemalloc``) at 1,000 symbols on
three channels: after the acquires, and after the server's ack is adopted.

Every process runs with bytecode cached (``e2e.client_env``), as for an installed package;
the row "rxalpaca, compiled from source" shows what an editable install under
``PYTHONDONTWRITEBYTECODE=1`` adds instead.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e import Config, Pusher, client_env, run_client

_REPORT = (
    "import sys\n"
    "f = open('/proc/self/status')\n"
    "d = {l.split(':')[0]: int(l.split()[1]) for l in f if l.startswith(('VmRSS', 'VmHWM'))}\n"
    "sys.stdout.write(f\"{d['VmRSS']} {d['VmHWM']}\\n\")\n"
)

#: (label, statement, why): table 1, cumulative.
STEPS: tuple[tuple[str, str, str], ...] = (
    ("ssl", "import ssl", "imported by websocket-client (`_ssl_compat`) and by asyncio"),
    ("websocket-client", "import websocket", "with logging, http.cookies, hashlib, socket"),
    ("orjson", "import orjson", "= the floor's imports"),
    (
        "asyncio",
        "import asyncio",
        "`reactivex/__init__.py`: `from asyncio import Future`; brings concurrent.futures, "
        "subprocess, inspect",
    ),
    ("reactivex", "import reactivex", "the package, schedulers, subjects, observers"),
    (
        "reactivex.operators",
        "import reactivex.operators",
        "the operator facade (150 functions with docstrings); `client.py`, `rxalpaca.ops`",
    ),
    ("msgspec", "import msgspec", "with decimal, uuid; `msgspec/__init__` imports all formats"),
    (
        "rxalpaca.client",
        "import rxalpaca.client",
        "our own modules, bytecode cached (`import rxalpaca` alone loads nothing: PEP 562)",
    ),
)

#: Compiled from source: no bytecode for rxalpaca only (its dependencies keep theirs).
FROM_SOURCE = (
    "import sys; sys.dont_write_bytecode = True; sys.pycache_prefix = '/nonexistent'; "
    "import rxalpaca.client"
)

#: Table 2: one import alone.
ALONE: tuple[str, ...] = (
    "ssl",
    "logging",
    "asyncio",
    "reactivex",
    "websocket",
    "msgspec",
    "orjson",
    "msgpack",
    "rxalpaca",
    "rxalpaca.client",
)


def measure(code: str, reps: int) -> tuple[float, float]:
    """Median (VmRSS, VmHWM) in kB of ``python -c code`` over ``reps`` fresh processes."""
    rss, hwm = [], []
    for _ in range(reps):
        out = subprocess.run(
            [sys.executable, "-c", code + "\n" + _REPORT],
            capture_output=True,
            text=True,
            check=True,
            env=client_env(),
        ).stdout.split()
        rss.append(int(out[0]))
        hwm.append(int(out[1]))
    return statistics.median(rss), statistics.median(hwm)


def import_tables(reps: int) -> dict[str, Any]:
    codes = ["\n".join(s for _, s, _ in STEPS[: i + 1]) for i in range(len(STEPS))]
    from_source = "\n".join(s for _, s, _ in STEPS[:-1]) + "\n" + FROM_SOURCE
    for code in ("pass", *codes, *(f"import {m}" for m in ALONE)):
        measure(code, 1)  # fill the bytecode cache
    bare = measure("pass", reps)
    cumulative = [measure(code, reps) for code in codes]
    return {
        "bare": bare,
        "cumulative": cumulative,
        "from_source": measure(from_source, reps),
        "alone": {m: measure(f"import {m}", reps) for m in ALONE},
    }


def client_runs(
    reps: int, smoke: bool, trees: tuple[str, ...] = ()
) -> dict[str, list[dict[str, Any]]]:
    """The floor and rxalpaca at 1,000 symbols, flood runs as ``e2e.py`` makes them.

    ``trees``: run rxalpaca from each of these source trees (``PYTHONPATH``) instead of
    the installed one, interleaved in the same minutes — an A/B of two checkouts."""
    cfg = Config(
        smoke=smoke,
        symbols=(1000,),
        encodings=("json", "msgpack"),
        clients=("floor", "rxalpaca"),
        frames=100 if smoke else 2000,
        flood_messages=2_000 if smoke else 200_000,
        alpaca_flood_messages=0,
        paced_seconds=0,
        rate=0,
        reps=reps,
        paced_reps=0,
        timeout=60.0,
    )
    out: dict[str, list[dict[str, Any]]] = {}
    pusher = Pusher(cfg)
    runs = [("floor", None)] + [("rxalpaca", tree) for tree in trees or (None,)]
    try:
        for rep in range(reps + 1):  # the first: warm-up (bytecode of what connecting imports)
            for client, tree in runs:
                wrapper = ["env", f"PYTHONPATH={tree}"] if tree else None
                label = f"{client} ({tree})" if tree else client
                for enc in cfg.encodings:
                    r = run_client(pusher, cfg, client, enc, 1000, mode="flood", wrapper=wrapper)
                    if rep:
                        out.setdefault(f"{label}/{enc}", []).append(r)
    finally:
        pusher.close()
    return out


def book_footprint(n: int = 1000) -> dict[str, int]:
    """Bytes (``tracemalloc``) a ``SubscriptionBook`` holds for ``n`` symbols on trades,
    quotes and bars, as ``StreamClient`` fills it: the users' symbol strings exist before
    (not counted), the ack is decoded from JSON as the codec does, then dropped."""
    import tracemalloc

    import msgspec

    from rxalpaca.book import SubscriptionBook
    from rxalpaca.feeds import endpoint
    from rxalpaca.models import SubscriptionMessage

    channels = ("trades", "quotes", "bars")
    symbols = [f"S{i:04d}" for i in range(n)]
    raw = json.dumps({"T": "subscription", **dict.fromkeys(channels, symbols)}).encode()
    tracemalloc.start()
    book = SubscriptionBook(frozenset(endpoint("iex").channels))
    for ch in channels:
        book.acquire(ch, symbols)
    wanted = tracemalloc.get_traced_memory()[0]
    book.connected()
    book.take_request()
    ack = msgspec.json.decode(raw, type=SubscriptionMessage)
    assert book.on_ack(ack).ok
    del ack
    acked, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"pairs": n * len(channels), "wanted": wanted, "acked": acked, "peak": peak}


def book_line(book: dict[str, int]) -> str:
    def mb(n: int) -> str:
        return f"{n / 2**20:.3f}"

    return (
        f"**The subscription book** (`tracemalloc`, {book['pairs']:,} pairs): "
        f"{mb(book['wanted'])} MB after the acquires, {mb(book['acked'])} MB with the ack "
        f"adopted (peak while adopting: {mb(book['peak'])} MB)."
    )


def import_lines(imports: dict[str, Any]) -> list[str]:
    """Tables 1 and 2 as markdown."""
    bare_rss = imports["bare"][0]

    def mb(kb: float) -> str:
        return f"{kb / 1024:.2f}"

    lines = [
        "",
        "**Imports, cumulative** (each row imports the rows above it too):",
        "",
        "| + import | RSS over bare, MB | this row adds, MB | what it brings |",
        "|---|---:|---:|---|",
    ]
    previous = bare_rss
    for (label, _, why), (rss, _) in zip(STEPS, imports["cumulative"], strict=True):
        lines.append(f"| {label} | {mb(rss - bare_rss)} | {mb(rss - previous)} | {why} |")
        previous = rss
    rss, _ = imports["from_source"]
    before = imports["cumulative"][-2][0]
    lines += [
        f"| rxalpaca, compiled from source (no bytecode) | {mb(rss - bare_rss)} "
        f"| {mb(rss - before)} | instead of the row above: an editable install under "
        "`PYTHONDONTWRITEBYTECODE=1` |",
        "",
        "**Each alone** (one import in a fresh process, with everything it pulls in):",
        "",
        "| import | RSS over bare, MB |",
        "|---|---:|",
    ]
    for mod, (rss, _) in imports["alone"].items():
        lines.append(f"| {mod} | {mb(rss - bare_rss)} |")
    return lines


def markdown(
    imports: dict[str, Any],
    runs: dict[str, list[dict[str, Any]]],
    book: dict[str, int] | None = None,
) -> str:
    bare_rss, bare_hwm = imports["bare"]

    def mb(kb: float) -> str:
        return f"{kb / 1024:.2f}"

    lines = [f"Bare interpreter (`python -c`): VmRSS {mb(bare_rss)} MB, VmHWM {mb(bare_hwm)} MB."]
    if "cumulative" in imports:
        lines += import_lines(imports)
    if runs:
        lines += [
            "",
            "**The clients at run time**, 1,000 symbols on trades, quotes and bars, a flood of "
            "1-20-message frames (`_clients.py` against `_pusher.py`; medians over runs):",
            "",
            "| client | enc. | imported, MB over bare | subscribed (first message) | peak "
            "(VmHWM) | threads |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for key, rs in runs.items():
            client, enc = key.rsplit("/", 1)
            imported = statistics.median(r["phases"]["imported_kb"] for r in rs)
            first = statistics.median(r["phases"]["first_message_kb"] for r in rs)
            peak = statistics.median(r["vmhwm_kb"] for r in rs)
            threads = max(r["phases"]["threads"] for r in rs)
            lines.append(
                f"| {client} | {enc} | {mb(imported - bare_hwm)} | {mb(first - bare_hwm)} "
                f"| {mb(peak - bare_hwm)} | {threads} |"
            )
    if book:
        lines += ["", book_line(book)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="every step once, tiny flood")
    parser.add_argument("--reps", type=int, default=3, help="processes per figure")
    parser.add_argument("--no-clients", action="store_true", help="imports only")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument(
        "--trees",
        help="comma-separated source trees: the run-time table for rxalpaca from each "
        "(PYTHONPATH), interleaved with the floor",
    )
    parser.add_argument("--book", action="store_true", help="the subscription book's footprint")
    parser.add_argument("--book-only", action="store_true", help="only that (no processes)")
    args = parser.parse_args(argv)
    reps = 1 if args.smoke else args.reps
    book = book_footprint() if args.book or args.book_only or args.smoke else None
    if args.book_only and book is not None:
        print(book_line(book))
        return 0
    # --trees: the client runs only (the bare interpreter for the baseline).
    if args.trees:
        measure("pass", 1)  # fill the bytecode cache
        imports: dict[str, Any] = {"bare": measure("pass", reps)}
    else:
        imports = import_tables(reps)
    trees = tuple(str(Path(t).resolve()) for t in args.trees.split(",")) if args.trees else ()
    runs = {} if args.no_clients else client_runs(reps, args.smoke, trees)
    print(markdown(imports, runs, book))
    if args.json:
        slim = {k: [{**r, "lat_ns": None} for r in v] for k, v in runs.items()}
        args.json.write_text(json.dumps({"imports": imports, "runs": slim}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
