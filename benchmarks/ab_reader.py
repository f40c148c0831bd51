"""A/B in one process: the frame reader (``transport._FrameReader``) against another revision's.

    python benchmarks/ab_reader.py c409271      # the reader before the keep-alive clocks

The keep-alive (issue #9) made the reader publish, per system call, when it started
waiting for bytes and when bytes last came (two ``time.monotonic()`` reads). This
measures what that costs per frame in the two extremes: a flood (64 KiB per
``recv``, dozens of frames each) and a paced stream (one frame per ``recv``). The
``recv`` is a slice of a prepared buffer, so the figure is the reader's own cost —
a real system call, several µs, is left out, which makes the paced ratio an upper bound.
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _frame(payload: bytes) -> bytes:
    n = len(payload)
    head = bytes([0x81, n]) if n < 126 else bytes([0x81, 126]) + n.to_bytes(2, "big")
    return head + payload


def _run(cls: Callable[..., Any], data: bytes, chunk: int, n: int) -> float:
    pos = 0

    def raw(k: int) -> bytes:
        nonlocal pos
        out = data[pos : pos + min(k, chunk)]
        pos += len(out)
        return out

    read = cls(raw, None).read
    t0 = time.perf_counter()
    for _ in range(n):
        read()
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("rev", help="the base git revision")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--frames", type=int, default=200_000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    data = subprocess.run(
        ["git", "archive", args.rev, "rxalpaca"], cwd=HERE.parent, check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(tmp, filter="data")
    (tmp / "rxalpaca").rename(tmp / "rxalpaca_base")
    sys.path.insert(0, str(tmp))
    sys.path.insert(0, str(HERE.parent))
    from rxalpaca_base.transport import _FrameReader as Old  # type: ignore[import-not-found]

    from rxalpaca.transport import _FrameReader as New

    payload = b'[{"T":"q","S":"AAPL","bp":1.0,"ap":1.1}]'.ljust(60, b" ")
    stream = _frame(payload) * args.frames
    for label, chunk in (("flood (64 KiB per recv)", 65536), ("paced (1 frame per recv)", 62)):
        ratios, best_old, best_new = [], 1e9, 1e9
        for _ in range(args.rounds):
            old = _run(Old, stream, chunk, args.frames)
            new = _run(New, stream, chunk, args.frames)
            best_old, best_new = min(best_old, old), min(best_new, new)
            ratios.append(new / old)
        print(
            f"{label}: base {best_old:.3f} µs/frame, now {best_new:.3f} µs/frame, "
            f"median ratio now/base {statistics.median(ratios):.3f}"
        )


if __name__ == "__main__":
    main()
