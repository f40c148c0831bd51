"""The in-process pipeline's 1,000/1 subscriptions ratio in instructions, not seconds.

    python benchmarks/instructions.py                 # about 2 min; needs valgrind
    python benchmarks/instructions.py --encodings json --runs 2

Timings on a shared VM move by several per cent from one process to the next; callgrind's
counts do not. Each case runs in its own process under ``valgrind --tool=callgrind
--cache-sim=yes``, collecting only inside ``builtin_sorted`` (the runs are made as
``sorted(range(runs), key=lambda _: pipeline.run())``, and nothing else in the measured
code sorts), so workload building, imports and the warm-up run are not counted. Reported per
frame: instructions (Ir), and the data-cache misses of callgrind's simulated caches: first
level (D1, 32 KiB) and last level, set here to this machine's 512 KiB L2 (``--LL``) — the
part of the cost that depends on how much memory the routing table and its observers spread
over. ``PYTHONHASHSEED=0`` keeps dict layouts alike between runs; the miss counts still move
by a few per cent with the address-space layout, the instruction counts by about 0.1 %.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

TARGET = """
import sys
sys.path.insert(0, {here!r})
from _pipeline import Pipeline
p = Pipeline({n}, {enc!r}, frames_per_run={frames}, fused={fused})
assert p.run() == p.w.messages  # warm-up, not counted
sorted(range({runs}), key=lambda _: p.run())  # counted: inside builtin_sorted only
"""

_COLLECTED = re.compile(r"Collected :" + r" (\d+)" * 9)

#: callgrind's last-level cache, as size,associativity,line: the L2 of the machine the
#: figures in docs/benchmarks.md come from (AMD EPYC, 512 KiB per core).
LL = "524288,8,64"


def count(n: int, enc: str, frames: int, runs: int, fused: bool) -> dict[str, float]:
    """Per frame: Ir, D1 and LL data misses of ``runs`` runs over ``frames`` frames."""
    code = TARGET.format(here=str(HERE), n=n, enc=enc, frames=frames, runs=runs, fused=fused)
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--cache-sim=yes",
                f"--LL={LL}",
                "--collect-atstart=no",
                "--toggle-collect=builtin_sorted",
                f"--callgrind-out-file={tmp}/out",
                sys.executable,
                "-c",
                code,
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
            check=True,
        )
    m = _COLLECTED.search(proc.stderr)
    if m is None:
        raise RuntimeError(proc.stderr[-2000:])
    ir, _dr, _dw, _i1mr, d1mr, d1mw, _ilmr, dlmr, dlmw = (int(x) for x in m.groups())
    total = frames * runs
    return {"Ir": ir / total, "D1": (d1mr + d1mw) / total, "LL": (dlmr + dlmw) / total}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encodings", default="json,msgpack")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--chain", action="store_true", help="the five operators piped, not ops.pipeline"
    )
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed", file=sys.stderr)
        return 1
    print("| encoding | subscriptions | Ir / frame | D1 misses / frame | L2 (LL) misses / frame |")
    print("|---|---:|---:|---:|---:|")
    ratios = []
    for enc in args.encodings.split(","):
        one = count(1, enc, args.frames, args.runs, not args.chain)
        big = count(1000, enc, args.frames, args.runs, not args.chain)
        for n, c in ((1, one), (1000, big)):
            print(f"| {enc} | {n:,} | {c['Ir']:,.0f} | {c['D1']:,.1f} | {c['LL']:,.1f} |")
        ratios.append(
            f"{enc}: Ir 1,000/1 = {big['Ir'] / one['Ir']:.4f}; 1,000 - 1 per frame: "
            f"D1 misses {big['D1'] - one['D1']:+.1f}, L2 misses {big['LL'] - one['LL']:+.1f}"
        )
    print()
    print("\n".join(ratios))
    return 0


if __name__ == "__main__":
    sys.exit(main())
