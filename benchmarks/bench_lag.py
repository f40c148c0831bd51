"""What the message-lag histogram costs the fused pipeline (issue #15): sampled, every frame, off.

Run (numbers in ``docs/benchmarks.md``, section "Message lag histogram")::

    python benchmarks/bench_lag.py            # best of 15 interleaved rounds, a table
    pytest benchmarks/bench_lag.py -q         # the smoke: each variant once, counts checked

The same frames (1-20 trades/quotes/bars each, ``_pipeline.workload``) go through
``ops.pipeline`` — what ``StreamClient`` runs on its socket thread — with the lag histogram
sampling one data frame in 16 (the default), every data frame, and (the baseline) only the
first one (``lag_sample_every`` = 10⁹, which leaves the per-frame countdown in place: the
figure is the timestamp read, the subtraction and the bisect). With 1 and 1,000
subscriptions: the cost is per frame, so it must not grow with the routing table.
"""

from __future__ import annotations

import argparse
import sys
import time

import pytest
from _pipeline import Counter, subscribed_router, to_frames, workload
from reactivex.subject import Subject

from rxalpaca.codec import Codec
from rxalpaca.frames import Frame
from rxalpaca.metrics import Metrics
from rxalpaca.operators import pipeline

VARIANTS = {"off (baseline)": 10**9, "every 16th frame (default)": 16, "every frame": 1}


class Run:
    """One variant: a fused pipeline over a fixed set of frames."""

    def __init__(self, subscriptions: int, encoding: str, every: int) -> None:
        self.w = workload(subscriptions, 400)
        self.frames = to_frames(self.w, encoding)
        self.metrics = Metrics()
        self.metrics.lag_sample_every = every  # read when the pipeline is subscribed
        self.counter = Counter()
        router = subscribed_router(subscriptions, self.counter, self.metrics)
        self.subject: Subject[Frame] = Subject()
        codec = Codec("iex", encoding)  # type: ignore[arg-type]
        self.subject.pipe(pipeline(codec, self.metrics, router)).subscribe(lambda _x: None)

    def run(self) -> int:
        on_next = self.subject.on_next
        before = self.counter.n
        for f in self.frames:
            on_next(f)
        return self.counter.n - before


@pytest.mark.parametrize("every", sorted(VARIANTS.values()))
def test_lag_sampling_smoke(every: int) -> None:
    r = Run(100, "json", every)
    assert r.run() == r.w.messages
    frames = len(r.frames)
    expected = 1 if every >= frames else -(-frames // every)
    assert r.metrics.lag.count == expected


def measure(subscriptions: int, encoding: str, rounds: int) -> dict[str, float]:
    """Best ns per message of each variant, rounds interleaved so noise hits all alike."""
    runs = {name: Run(subscriptions, encoding, every) for name, every in VARIANTS.items()}
    best = dict.fromkeys(runs, float("inf"))
    messages = next(iter(runs.values())).w.messages
    for _ in range(rounds):
        for name, r in runs.items():
            t0 = time.perf_counter_ns()
            r.run()
            best[name] = min(best[name], (time.perf_counter_ns() - t0) / messages)
    return best


def sample_cost(encoding: str, repeats: int) -> tuple[float, float]:
    """ns per sample (timestamp read, subtraction, bisect, increment) and per frame for the
    countdown alone, each the best of ``repeats`` passes over the decoded frames."""
    w = workload(1000, 400)
    codec = Codec("iex", encoding)  # type: ignore[arg-type]
    batches = [
        (f.received_ns, codec.decode(f.payload, f.received_ns)) for f in to_frames(w, encoding)
    ]
    lag = Metrics().lag
    best_sample = best_count = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        for received_ns, items in batches:
            lag.observe(received_ns - items[0].timestamp_ns)  # type: ignore[union-attr]
        t1 = time.perf_counter_ns()
        wait = 0
        for _b in batches:  # the meter stage's per-frame countdown
            if wait:
                wait -= 1
            else:
                wait = 15
        t2 = time.perf_counter_ns()
        best_sample = min(best_sample, (t1 - t0) / len(batches))
        best_count = min(best_count, (t2 - t1) / len(batches))
    return best_sample, best_count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--smoke", action="store_true", help="one round, no claims")
    args = parser.parse_args(argv)
    rounds = 1 if args.smoke else args.rounds
    w = workload(1000, 400)
    per_frame = w.messages / w.frames
    print(f"{per_frame:.1f} messages per frame\n")
    print("| encoding | ns per sample | ns per frame (countdown) | ns per message, default |")
    print("|---|---:|---:|---:|")
    for encoding in ("json", "msgpack"):
        one, count = sample_cost(encoding, 5 if args.smoke else 200)
        per_msg = (one / 16 + count) / per_frame
        print(f"| {encoding} | {one:.0f} | {count:.0f} | {per_msg:.1f} |")
    print()
    print("| encoding | subscriptions | variant | ns/message | vs off |\n|---|---:|---|---:|---:|")
    for encoding in ("json", "msgpack"):
        for subs in (1, 1000):
            best = measure(subs, encoding, rounds)
            base = best["off (baseline)"]
            for name, ns in best.items():
                print(f"| {encoding} | {subs:,} | {name} | {ns:.0f} | {ns / base:.3f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
