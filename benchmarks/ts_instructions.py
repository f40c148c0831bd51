"""Reading a JSON record's ``timestamp_ns`` against the e2e floor's conversion, in instructions.

    python benchmarks/ts_instructions.py          # about 2 min idle (10+ under load); valgrind

Timings of a 200 ns operation on a shared VM move by tens of per cent; callgrind's counts do
not. Each case runs in its own process under ``valgrind --tool=callgrind``, collecting only
inside ``builtin_sorted`` (5 passes made as ``sorted(range(5), key=...)``), so building the
records, imports and two warm-up passes (which fill both seconds caches) are not counted.
Reported per read: the case's instructions minus those of an empty loop over the same
records. The records are the JSON records of 100 frames of ``frames.py``'s 100-symbol
workload (seed 1); the floor reads the same times as orjson's ``str``
(``_clients.floor_time_ns``). docs/benchmarks.md, "Reading timestamps".
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

TARGET = """
import sys
sys.path.insert(0, {here!r})
import orjson
from frames import Workload
from _clients import floor_time_ns
from rxalpaca.codec import Codec
w = Workload.build(symbols=100, frames=100, batch=(1, 20), seed=1)
records = [r for f in w.json_frames for r in Codec("stocks", "json").decode(f)]
texts = [m["t"] for f in w.json_frames for m in orjson.loads(f)]
def zero(_):
    return 0
def floor():
    for t in texts:
        floor_time_ns(t)
def read():
    for r in records:
        r.timestamp_ns
def call():
    for t in texts:
        zero(t)
def empty():
    for r in records:
        pass
fn = {case}
fn()
fn()
sorted(range(5), key=lambda _: (fn(), 0)[1])  # counted: inside builtin_sorted only
print("N", len(records))
"""

CASES = {
    "floor": "floor `floor_time_ns` on a `str`",
    "read": "`timestamp_ns` (property read)",
    "call": "a plain function call returning 0 (the floor's call)",
}

_COLLECTED = re.compile(r"Collected : (\d+)")
_COUNT = re.compile(r"N (\d+)")


def count(case: str) -> tuple[int, int]:
    """(instructions collected, records) for one case."""
    code = TARGET.format(here=str(HERE), case=case)
    proc = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--collect-atstart=no",
            "--toggle-collect=builtin_sorted",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-c",
            code,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
        check=True,
    )
    collected, n = _COLLECTED.search(proc.stderr), _COUNT.search(proc.stdout)
    if collected is None or n is None:
        raise RuntimeError(proc.stderr[-2000:])
    return int(collected.group(1)), int(n.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed", file=sys.stderr)
        return 1
    empty, n = count("empty")
    per_read = {case: (count(case)[0] - empty) / (5 * n) for case in CASES}
    print(f"{n:,} JSON records, 5 passes; instructions per read, an empty loop subtracted")
    print()
    print("| per read | instructions | x floor |")
    print("|---|---:|---:|")
    for case, label in CASES.items():
        print(f"| {label} | {per_read[case]:,.0f} | {per_read[case] / per_read['floor']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
