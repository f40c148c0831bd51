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
def dt():
    for r in records:
        r.timestamp
import datetime
EPOCH, TD = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC), datetime.timedelta
def floor_dt():
    for t in texts:
        EPOCH + TD(0, 0, floor_time_ns(t) // 1000)
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

#: case -> (label, function in TARGET, RXALPACA_NO_SPEEDUPS); the C read path is used when
#: rxalpaca._speedups is built, the Python one with RXALPACA_NO_SPEEDUPS=1.
CASES = {
    "floor": ("floor `floor_time_ns` on a `str`", "floor", False),
    "read": ("`timestamp_ns`, C read path", "read", False),
    "read_python": ("`timestamp_ns`, pure-Python read path", "read", True),
    "floor_dt": ("floor's `datetime`: epoch + `timedelta` of `floor_time_ns`", "floor_dt", False),
    "dt": ("`timestamp` (the `datetime` view), C read path", "dt", False),
    "dt_python": ("`timestamp`, pure-Python read path", "dt", True),
    "call": ("a plain function call returning 0 (the floor's call)", "call", False),
}

_COLLECTED = re.compile(r"Collected : (\d+)")
_COUNT = re.compile(r"N (\d+)")


def count(function: str, python: bool = False) -> tuple[int, int]:
    """(instructions collected, records) for one function of TARGET."""
    code = TARGET.format(here=str(HERE), case=function)
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    env.pop("RXALPACA_NO_SPEEDUPS", None)
    if python:
        env["RXALPACA_NO_SPEEDUPS"] = "1"
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
        env=env,
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
    per_read = {
        case: (count(fn, python)[0] - empty) / (5 * n) for case, (_, fn, python) in CASES.items()
    }
    print(f"{n:,} JSON records, 5 passes; instructions per read, an empty loop subtracted")
    print()
    print("| per read | instructions | x floor |")
    print("|---|---:|---:|")
    for case, (label, _, _) in CASES.items():
        base = per_read["floor_dt" if case.startswith("dt") else "floor"]
        print(f"| {label} | {per_read[case]:,.0f} | {per_read[case] / base:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
