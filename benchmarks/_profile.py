"""Where a client's time goes per frame: one flood run under py-spy, samples grouped by layer.

    pip install py-spy
    python benchmarks/_profile.py                       # rxalpaca, JSON, 1,000 symbols
    python benchmarks/_profile.py --client floor --encoding msgpack

It first runs the same flood without the profiler (for the µs per frame), then under
``py-spy record --format raw``, keeps the samples of the thread that reads the socket and
groups each sample by its innermost frame's layer (websocket-client framing, codec, routing,
Rx, observers …). The µs column splits the un-profiled µs/frame by those shares — sampling
slows Python code more than C code, so read it as an estimate; the in-process stage costs of
``e2e.py`` are the exact figures.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e import Config, Pusher, run_client

#: The frame that marks the socket-reading thread's stacks, per client.
THREAD_MARK = {
    "rxalpaca": "_run (rxalpaca/transport.py",
    "floor": "run_floor (",
    "alpaca-py": "_consume (",
}

#: (substring of a frame, layer), first match wins.
LAYERS: tuple[tuple[str, str], ...] = (
    ("websocket/_", "websocket-client framing"),
    ("_BufferedRecv", "socket reads"),
    ("socket.py", "socket reads"),
    ("rxalpaca/codec.py", "Codec.decode"),
    ("Router.dispatch", "Router.dispatch"),
    ("Router._deliver", "Router.dispatch"),
    ("rxalpaca/operators/_route.py", "route operator (timing)"),
    ("rxalpaca/operators/_meter.py", "meter"),
    ("rxalpaca/metrics.py", "meter"),
    ("rxalpaca/operators/_decode.py", "decode operator"),
    ("rxalpaca/operators/_validate.py", "validate"),
    ("rxalpaca/operators/_reassemble.py", "reassemble"),
    ("reactivex/", "Rx (observer hops)"),
    ("<lambda> (<string>", "NamedTuple construction (Frame, Batch)"),
    ("rxalpaca/transport.py", "transport loop"),
    ("_clients.py", "observer / callback (+ orjson/msgpack in C for the floor)"),
    ("msgpack/", "msgpack"),
    ("alpaca/", "alpaca-py"),
    ("pydantic", "pydantic"),
    ("websockets/", "websockets (asyncio)"),
    ("asyncio/", "asyncio"),
)


def layer(frame: str) -> str:
    for needle, name in LAYERS:
        if needle in frame:
            return name
    return "other: " + frame.split(" (", 1)[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", default="rxalpaca", choices=sorted(THREAD_MARK))
    parser.add_argument("--encoding", default="json", choices=("json", "msgpack"))
    parser.add_argument("--symbols", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=400_000)
    parser.add_argument("--rate", type=int, default=1000, help="py-spy samples per second")
    args = parser.parse_args(argv)
    pyspy = shutil.which("py-spy")
    if pyspy is None:
        print("py-spy is not installed (pip install py-spy)", file=sys.stderr)
        return 2
    cfg = Config(
        smoke=False,
        symbols=(args.symbols,),
        encodings=(args.encoding,),
        clients=(args.client,),
        frames=2000,
        flood_messages=args.messages,
        alpaca_flood_messages=args.messages // 5,
        paced_seconds=1.0,
        rate=20_000,
        reps=1,
        paced_reps=1,
        timeout=120.0,
    )
    pusher = Pusher(cfg)
    try:
        plain = run_client(pusher, cfg, args.client, args.encoding, args.symbols, mode="flood")
        w = pusher.info["workloads"][f"{args.encoding}/{args.symbols}"]
        us_per_frame = 1e6 * (w["messages"] / w["frames"]) / plain["rate"]
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "profile.txt"
            wrapper = [pyspy, "record", "-r", str(args.rate), "-f", "raw", "-o", str(out), "--"]
            run_client(
                pusher,
                cfg,
                args.client,
                args.encoding,
                args.symbols,
                mode="flood",
                wrapper=wrapper,
            )
            stacks = out.read_text().splitlines()
    finally:
        pusher.close()
    mark = THREAD_MARK[args.client]
    by_layer: collections.Counter[str] = collections.Counter()
    total = 0
    for line in stacks:
        stack, _, count = line.rpartition(" ")
        if mark not in stack:
            continue
        frames = stack.split(";")
        total += int(count)
        by_layer[layer(frames[-1])] += int(count)
    if not total:
        print("no samples of the socket thread", file=sys.stderr)
        return 1
    print(
        f"{args.client}, {args.encoding}, {args.symbols:,} symbols: {plain['rate']:,.0f} msg/s "
        f"without the profiler = {us_per_frame:.1f} µs per frame; {total:,} samples\n"
    )
    print("| layer (innermost frame) | share | ≈ µs/frame |\n|---|---:|---:|")
    for name, n in by_layer.most_common():
        share = n / total
        if share >= 0.005:
            print(f"| {name} | {100 * share:.1f} % | {share * us_per_frame:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
