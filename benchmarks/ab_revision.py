"""A/B in one process: the working tree's codec and pipeline against another git revision's.

    python benchmarks/ab_revision.py HEAD              # uncommitted changes vs the last commit
    python benchmarks/ab_revision.py main --rounds 60  # this branch vs main

``git archive REV rxalpaca`` is unpacked as a package named ``rxalpaca_base`` (its imports
are relative), so both versions run in the same process, interleaved round by round: on a
shared machine whose speed drifts, the ratio of the two times *within a round* is far
steadier than either time (docs/benchmarks.md). Prints, per case, the best µs per frame of
each and the median (and interquartile range) of the per-round ratios now/base.

Cases: ``Codec("stocks").decode`` on ``bench_codec``'s workloads (JSON, MessagePack), and
the in-process pipeline (``_pipeline``: 1 and 1,000 subscriptions, ``ops.pipeline`` fused
and the five operators piped).
"""

from __future__ import annotations

import argparse
import importlib
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
RECEIVED_NS = 1_709_652_600_500_000_000


def unpack(rev: str, into: Path) -> None:
    """``rxalpaca/`` at ``rev`` as ``into/rxalpaca_base/``."""
    data = subprocess.run(
        ["git", "archive", rev, "rxalpaca"], cwd=HERE.parent, check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    (into / "rxalpaca").rename(into / "rxalpaca_base")


def per_frame_us(fn: Callable[[], object], frames: int) -> float:
    t0 = time.perf_counter()
    fn()
    fn()
    return (time.perf_counter() - t0) / 2 / frames * 1e6


def decoder(codec: Any, frames: list[bytes]) -> Callable[[], None]:
    def run() -> None:
        dec = codec.decode
        for f in frames:
            dec(f, RECEIVED_NS)

    return run


def pipeline(pkg: str, subscriptions: int, encoding: str, fused: bool) -> Callable[[], None]:
    """``_pipeline.Pipeline``'s set-up, with the operators, codec and metrics of ``pkg``."""
    from _pipeline import CHANNELS, Counter, to_frames, workload
    from frames import symbols
    from reactivex.observer.autodetachobserver import AutoDetachObserver
    from reactivex.subject import Subject

    ops = importlib.import_module(f"{pkg}.operators")
    codec = importlib.import_module(f"{pkg}.codec").Codec("iex", encoding)
    metrics = importlib.import_module(f"{pkg}.metrics").Metrics()
    w = workload(subscriptions, 400)
    frames = to_frames(w, encoding)
    counter = Counter()
    router = ops.Router(metrics)
    for ch in CHANNELS:
        for sym in symbols(subscriptions, 1):
            router.add(ch, sym, AutoDetachObserver(on_next=counter))
    subject: Any = Subject()
    stages: list[Any] = [ops.pipeline(codec, metrics, router)]
    if not fused:
        stages = [ops.reassemble(), ops.validate(), ops.decode(codec), ops.meter(metrics)]
        stages.append(ops.route(router))
    subject.pipe(*stages).subscribe(lambda _: None)

    def run() -> None:
        on_next = subject.on_next
        for f in frames:
            on_next(f)

    run()
    if counter.n != w.messages:
        raise RuntimeError(f"{pkg}: {counter.n} of {w.messages} messages delivered")
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="the git revision to compare against (e.g. HEAD, main)")
    parser.add_argument("--rounds", type=int, default=25)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    with tempfile.TemporaryDirectory() as tmp:
        unpack(args.rev, Path(tmp))
        sys.path.insert(0, tmp)
        import bench_codec

        cases: dict[str, tuple[Callable[[], None], Callable[[], None], int]] = {}
        for name in bench_codec.WORKLOADS:
            w = bench_codec.workload(name)
            for enc in ("json", "msgpack"):
                frames = w.json_frames if enc == "json" else w.msgpack_frames
                pair = [
                    decoder(importlib.import_module(f"{pkg}.codec").Codec("stocks", enc), frames)
                    for pkg in ("rxalpaca_base", "rxalpaca")
                ]
                cases[f"decode, {name}, {enc}"] = (pair[0], pair[1], len(frames))
        for enc in ("json", "msgpack"):
            for subs in (1, 1000):
                for fused in (True, False):
                    pair = [
                        pipeline(pkg, subs, enc, fused) for pkg in ("rxalpaca_base", "rxalpaca")
                    ]
                    variant = "ops.pipeline" if fused else "five operators"
                    cases[f"pipeline, {variant}, {enc}, {subs} sub(s)"] = (pair[0], pair[1], 400)
        best = {k: [float("inf"), float("inf")] for k in cases}
        ratios: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(args.rounds):
            for key, (base, now, n) in cases.items():
                a, b = per_frame_us(base, n), per_frame_us(now, n)
                best[key] = [min(best[key][0], a), min(best[key][1], b)]
                ratios[key].append(b / a)
    print(f"| case | {args.rev} µs/frame | now µs/frame | now/{args.rev}: median (IQR) |")
    print("|---|---:|---:|---:|")
    for key, rs in ratios.items():
        q1, _, q3 = statistics.quantiles(rs, n=4)
        print(
            f"| {key} | {best[key][0]:.2f} | {best[key][1]:.2f} "
            f"| {statistics.median(rs):.3f} ({q1:.2f}-{q3:.2f}) |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
