"""Parquet export benchmark (issue #14, item 5): what the tables cost over the replay.

One command (the figures in ``docs/benchmarks.md``, "DataFrames and Parquet export")::

    python benchmarks/export.py

and the CI smoke version (seconds; checks counts, never timings)::

    python benchmarks/export.py --smoke

The corpus is e2e's (``frames.Workload``: 100 symbols, 1-20 mixed trades/quotes/bars per
frame), recorded with ``Recorder`` (JSON and MessagePack). Per rep, back to back in this
process: the replay alone (``speed=None``, the three channels subscribed, records
dropped) — the baseline, since an export is that replay plus the tables — then
``export_parquet`` of the same file. Reported: messages/s of each and their ratio
(medians). Memory: ``export_parquet`` of the recording and of one five times longer, each
in a fresh process with ``batch_rows=8192``; peak RSS of each (flat: the buffers are
bounded by ``batch_rows``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from frames import Workload  # noqa: E402

from rxalpaca import replay  # noqa: E402
from rxalpaca.export import export_parquet  # noqa: E402
from rxalpaca.frames import Frame, Opcode  # noqa: E402
from rxalpaca.recording import Recorder, RecordingHeader  # noqa: E402


def write(path: Path, workload: Workload, encoding: str, passes: int) -> int:
    """The workload's frames ``passes`` times (1 ms apart); the messages written."""
    frames = workload.json_frames if encoding == "json" else workload.msgpack_frames
    opcode = Opcode.TEXT if encoding == "json" else Opcode.BINARY
    ns = 1_700_000_000_000_000_000
    with Recorder(
        path, RecordingHeader(feed="sip", encoding=encoding, created_ns=ns), queue_size=1 << 24
    ) as rec:
        for _ in range(passes):
            for payload in frames:
                ns += 1_000_000
                rec.frame(Frame(payload, opcode, True, ns))
    assert rec.dropped == 0
    return workload.messages * passes


def replay_only(path: Path) -> tuple[int, float]:
    r = replay(path, strict_timestamps=True)
    seen = [0]

    def count(_record: object) -> None:
        seen[0] += 1

    for name in ("trades", "quotes", "bars"):
        getattr(r, name)("*").subscribe(count)
    started = time.perf_counter()
    r.run()
    return seen[0], time.perf_counter() - started


def export(path: Path, out: Path) -> tuple[int, float]:
    started = time.perf_counter()
    result = export_parquet(path, out)
    return sum(result.rows.values()), time.perf_counter() - started


#: Rows per row group in the memory runs: small enough that both recordings flush many
#: times, so what is measured is the bounded steady state, not one whole file held.
RSS_BATCH_ROWS = 8_192


def child(path: str, out: str) -> int:
    result = export_parquet(Path(path), Path(out), batch_rows=RSS_BATCH_ROWS)
    rows = sum(result.rows.values())
    # VmHWM, not getrusage's ru_maxrss: Linux keeps ru_maxrss across fork + execve, so a
    # child would report its parent's peak; a new address space starts a new VmHWM.
    status = Path("/proc/self/status").read_text()
    rss = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmHWM:")))
    print(json.dumps({"rows": rows, "rss_kib": rss}))
    return 0


def peak_rss(path: Path, out: Path) -> tuple[int, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(path), str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    got = json.loads(done.stdout)
    return int(got["rows"]), got["rss_kib"] / 1024


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny corpus, one rep, no timings")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--frames", type=int, default=2_000, help="distinct frames in the corpus")
    p.add_argument("--passes", type=int, default=5, help="times the corpus is recorded")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(*args.child)
    frames, passes, reps = (50, 1, 1) if args.smoke else (args.frames, args.passes, args.reps)
    workload = Workload.build(symbols=100, frames=frames, batch=(1, 20))
    tmp = Path(tempfile.mkdtemp(prefix="rxalpaca-export-"))
    print("| enc. | messages | replay msg/s | export msg/s | export x replay | peak RSS 1x | 5x |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for encoding in ("json", "msgpack"):
        path = tmp / f"{encoding}.rxa"
        n = write(path, workload, encoding, passes)
        rates: list[tuple[float, float]] = []
        for rep in range(reps):
            got, replay_s = replay_only(path)
            rows, export_s = export(path, tmp / f"out-{encoding}-{rep}")
            assert got == rows == n, (got, rows, n)
            rates.append((n / replay_s, n / export_s))
        if args.smoke:  # counts only: no child processes for the memory figures
            print(f"| {encoding} | {n:,} | (smoke) | | | | |")
            continue
        longer = tmp / f"{encoding}-5x.rxa"
        write(longer, workload, encoding, passes * 5)
        rows1, rss1 = peak_rss(path, tmp / f"rss1-{encoding}")
        rows5, rss5 = peak_rss(longer, tmp / f"rss5-{encoding}")
        assert (rows1, rows5) == (n, 5 * n), (rows1, rows5, n)
        replay_rate = statistics.median(r for r, _ in rates)
        export_rate = statistics.median(e for _, e in rates)
        ratio = statistics.median(e / r for r, e in rates)
        print(
            f"| {encoding} | {n:,} | {replay_rate:,.0f} | {export_rate:,.0f} | {ratio:.2f}x | "
            f"{rss1:.0f} MiB | {rss5:.0f} MiB |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
