"""What a recorder costs in CPU, in-process: the pipeline per frame with and without one.

    python benchmarks/record_cpu.py            # both encodings, 15 interleaved rounds

No socket and no other process: the e2e corpus's frames (100 symbols, 1-20 messages a
frame, ``_pipeline.py``) go through the fused pipeline to one observer per (channel,
symbol), as on the client's socket thread; in the recorded rounds each frame first goes
to a ``Recorder`` the way the transport's monitor hands it on (an ``AutoDetachObserver``),
and the round ends once the writer thread has written it (``Recorder.flush``). CPU time
is ``time.process_time()`` (every thread), so the writer's work counts; the medians of
the rounds are reported, and "recorder alone" is the same frames into the recorder with
no pipeline.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _pipeline import Pipeline
from reactivex.observer.autodetachobserver import AutoDetachObserver

from rxalpaca.recording import Recorder, RecordingHeader


def measure(encoding: str, rounds: int, frames: int) -> dict[str, float]:
    """µs of CPU per frame: pipeline, pipeline + recorder, recorder alone."""
    p = Pipeline(100, encoding, frames_per_run=frames, fused=True)
    with tempfile.TemporaryDirectory() as tmp:
        rec = Recorder(Path(tmp) / "x.rxa", RecordingHeader(feed="iex", encoding=encoding))
        monitor = AutoDetachObserver(on_next=rec.frame)
        sink = p.subject.on_next

        def plain() -> None:
            for f in p.frames:
                sink(f)

        def recorded() -> None:
            for f in p.frames:
                monitor.on_next(f)
                sink(f)
            rec.flush()

        def alone() -> None:
            for f in p.frames:
                monitor.on_next(f)
            rec.flush()

        cases: dict[str, Callable[[], None]] = {
            "pipeline": plain,
            "recorded": recorded,
            "alone": alone,
        }
        times: dict[str, list[float]] = {k: [] for k in cases}
        plain()
        recorded()  # warm-up
        for _ in range(rounds):
            for name, fn in cases.items():
                started = time.process_time()
                fn()
                times[name].append(time.process_time() - started)
        rec.close()
    n = len(p.frames)
    out = {k: statistics.median(v) / n * 1e6 for k, v in times.items()}
    out["cost"] = statistics.median(
        r / b - 1 for r, b in zip(times["recorded"], times["pipeline"], strict=True)
    )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--encodings", default="json,msgpack")
    args = ap.parse_args(argv)
    print("| enc. | pipeline µs/frame | + recorder µs/frame | recorder alone µs/frame | cost |")
    print("|---|---:|---:|---:|---:|")
    for enc in args.encodings.split(","):
        d = measure(enc, args.rounds, args.frames)
        print(
            f"| {enc} | {d['pipeline']:.2f} | {d['recorded']:.2f} | {d['alone']:.2f} "
            f"| {d['cost']:+.1%} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
