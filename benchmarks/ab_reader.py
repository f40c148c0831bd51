"""A/B in one process: the socket thread's read loop against another revision's.

    python benchmarks/ab_reader.py a005033      # _FrameReader + its loop, before framing.py

Each side runs its revision's read loop, from ``recv`` to handing each frame to the
observer (``emit``), over the same prepared buffer: where the revision has
``rxalpaca.framing`` that is the transport's own ``_Connection._read`` (recv → feed
→ dispatch) over a fake socket; before, it was ``transport._FrameReader`` under the
loop of ``_Connection._run``, reproduced here. The keep-alive clocks (two
``time.monotonic()`` reads per ``recv``) are in both. Two extremes: a flood (64 KiB
per ``recv``, dozens of frames each) and a paced stream (one frame per ``recv``).
The ``recv`` is a slice of the buffer, so the figure is the loop's own cost — a real
system call, several µs, is left out, which makes the paced ratio an upper bound.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
_Run = Callable[[bytes, int, int], float]


def _frame(payload: bytes) -> bytes:
    n = len(payload)
    head = bytes([0x81, n]) if n < 126 else bytes([0x81, 126]) + n.to_bytes(2, "big")
    return head + payload


class _FakeSocket:
    """``recv`` slices a prepared buffer, at most ``chunk`` bytes at a time; ``b""`` at the end."""

    def __init__(self, data: bytes, chunk: int) -> None:
        self.data, self.chunk, self.pos = data, chunk, 0

    def recv(self, k: int) -> bytes:
        out = self.data[self.pos : self.pos + min(k, self.chunk)]
        self.pos += len(out)
        return out


class _Sink:
    """Counts frames; ``emit`` is an attribute, read per frame as on ``_Connection``."""

    def __init__(self) -> None:
        self.n = 0
        self.emit = self._on

    def _on(self, _frame: Any) -> None:
        self.n += 1


def _feed_loop(pkg: str) -> _Run:
    """``_Connection._read`` (recv → feed → dispatch) of a revision with ``framing``."""
    transport: ModuleType = __import__(f"{pkg}.transport", fromlist=["_Connection"])
    framing: ModuleType = __import__(f"{pkg}.framing", fromlist=["FrameParser"])
    errors: ModuleType = __import__(f"{pkg}.errors", fromlist=["ConnectionLostError"])

    def run(data: bytes, chunk: int, n: int) -> float:
        conn = transport._Connection(transport.WebSocketTransport("ws://bench", ping_interval=None))
        sink = _Sink()
        conn.emit = sink._on
        t0 = time.perf_counter()
        with contextlib.suppress(errors.ConnectionLostError):  # the end of the buffer
            conn._read(_FakeSocket(data, chunk), framing.FrameParser(None))
        elapsed = time.perf_counter() - t0
        assert sink.n == n, (sink.n, n)
        return elapsed / n * 1e6

    return run


def _reader_loop(pkg: str) -> _Run:
    """``_FrameReader`` under the loop of ``_Connection._run``, before ``framing``."""
    transport: ModuleType = __import__(f"{pkg}.transport", fromlist=["_FrameReader"])
    frames: ModuleType = __import__(f"{pkg}.frames", fromlist=["Frame"])
    frame_cls, opcode = frames.Frame, frames.Opcode

    def run(data: bytes, chunk: int, n: int) -> float:
        sock = _FakeSocket(data, chunk)
        reader = transport._FrameReader(sock.recv, None)
        read = reader.read
        clock = time.time_ns
        conn = _Sink()
        skipping = False
        t0 = time.perf_counter()
        for _ in range(n):  # the loop body of _Connection._run, oversized frames aside
            op, fin, payload = read()
            if op == opcode.CONTINUATION:
                if skipping:
                    skipping = not fin
                    continue
            # The same comparisons, in the same order, as the original chain.
            elif op == opcode.PING or op == opcode.PONG or op == opcode.CLOSE:  # noqa: PLR1714
                continue
            conn.emit(frame_cls(payload, op, fin, clock()))
        elapsed = time.perf_counter() - t0
        assert conn.n == n
        return elapsed / n * 1e6

    return run


def _loop(pkg: str) -> _Run:
    try:
        __import__(f"{pkg}.framing")
    except ImportError:
        return _reader_loop(pkg)
    return _feed_loop(pkg)


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
    old, new = _loop("rxalpaca_base"), _loop("rxalpaca")

    payload = b'[{"T":"q","S":"AAPL","bp":1.0,"ap":1.1}]'.ljust(60, b" ")
    stream = _frame(payload) * args.frames
    for label, chunk in (("flood (64 KiB per recv)", 65536), ("paced (1 frame per recv)", 62)):
        ratios, best_old, best_new = [], 1e9, 1e9
        for _ in range(args.rounds):
            t_old = old(stream, chunk, args.frames)
            t_new = new(stream, chunk, args.frames)
            best_old, best_new = min(best_old, t_old), min(best_new, t_new)
            ratios.append(t_new / t_old)
        print(
            f"{label}: base {best_old:.3f} µs/frame, now {best_new:.3f} µs/frame, "
            f"median ratio now/base {statistics.median(ratios):.3f}"
        )


if __name__ == "__main__":
    main()
