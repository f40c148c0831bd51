"""Recording and replay benchmark (issue #14): what recording costs, how fast replay runs.

One command (the figures in ``docs/benchmarks.md``, section "Record and replay")::

    python benchmarks/record_replay.py

and the CI smoke version (seconds; checks counts, never timings)::

    python benchmarks/record_replay.py --smoke

What runs, on 127.0.0.1, each client in its own process (``e2e.py``'s pusher and clients):

* **live**: ``StreamClient`` flooded by the pusher (1-20 mixed trades/quotes/bars per
  frame), one subscription per channel over every symbol — ``e2e.py``'s rxalpaca run;
* **live + record**: the same with ``client.record(path)`` on: every frame also goes to
  the recorder's queue, its thread compresses and writes it;

then, in this process, on the file that run wrote:

* **replay**: ``rxalpaca.replay(path)`` at ``speed=None`` (same corpus), the same three
  subscriptions: messages/s;
* **decode floor**: ``Codec.decode`` over the same frames in a loop (no pipeline, no
  file): the in-process floor a replay cannot beat;

and the recording's size per message against the raw frames' bytes per message. The four
run back to back, ``--reps`` times; each rep's ratios compare runs under the same load, and
the medians of the ratios are reported (the machine is shared: absolute rates drift).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from e2e import Config, Pusher, _spawn  # noqa: E402


def _config(smoke: bool, reps: int, messages: int) -> Config:
    return Config(
        smoke=smoke,
        symbols=(100,),
        encodings=("json", "msgpack"),
        clients=("rxalpaca",),
        # One pass of distinct frames (no repeats): compression sees what a real day has.
        frames=100 if smoke else 20_000,
        flood_messages=2_000 if smoke else messages,
        alpaca_flood_messages=0,
        paced_seconds=0.0,
        rate=1.0,
        reps=1 if smoke else reps,
        paced_reps=0,
        timeout=30.0 if smoke else 120.0,
    )


def replay_rate(path: Path, symbols: list[str]) -> tuple[float, float, int]:
    """Messages/s of a replay at ``speed=None``, wall and CPU (this process); messages.

    The same subscriptions and observer work as the live client's (``_clients.py``,
    ``rxalpaca``): one subscription per channel over every symbol, each record's
    ``timestamp_ns`` read, a trade's latency appended to an array.
    """
    import rxalpaca

    r = rxalpaca.replay(path)
    n = [0]
    lat = array("q")
    clock = time.time_ns

    def on_trade(t: Any) -> None:
        lat.append(clock() - t.timestamp_ns)
        n[0] += 1

    def on_other(record: Any) -> None:
        record.timestamp_ns  # noqa: B018 - the read is the point
        n[0] += 1

    r.trades(*symbols).subscribe(on_trade)
    r.quotes(*symbols).subscribe(on_other)
    r.bars(*symbols).subscribe(on_other)
    cpu, started = time.process_time(), time.perf_counter()
    r.run()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return n[0] / wall, n[0] / max(cpu, 1e-9), n[0]


def decode_floor(path: Path, encoding: str) -> tuple[float, int, int]:
    """Messages/s of ``Codec.decode`` over the recorded frames; the messages; raw bytes."""
    from rxalpaca import Codec
    from rxalpaca.recording import Kind, open_recording

    payloads = [e.value.payload for e in open_recording(path) if e.kind is Kind.RECEIVED]
    codec = Codec("stocks", encoding)  # type: ignore[arg-type]
    raw = sum(len(p) for p in payloads)
    started = time.perf_counter()
    messages = 0
    for p in payloads:
        messages += len(codec.decode(p))
    return messages / (time.perf_counter() - started), messages, raw


def run(cfg: Config) -> dict[str, Any]:
    """Per rep: live, live + record, replay of that recording, decode floor — adjacent,
    so each rep's ratios compare runs under the same load; the medians are reported."""
    out: dict[str, Any] = {}
    pusher = Pusher(cfg)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for enc in cfg.encodings:
                path = Path(tmp) / f"{enc}.rxa"
                runs: dict[str, list[float]] = {
                    k: [] for k in ("live", "record", "replay", "floor", "record_cost",
                                    "record_cpu", "replay_vs_live", "replay_vs_floor",
                                    "replay_cpu_vs_live", "load")
                }  # fmt: skip
                expected = size = decoded = raw = 0
                for _ in range(cfg.reps):
                    live = _run(pusher, cfg, enc, None, None)
                    path.unlink(missing_ok=True)
                    rec = _run(pusher, cfg, enc, str(path), None)
                    expected = rec["messages"]
                    symbols = pusher.info["symbols"]["100"]
                    replay, replay_cpu, replayed = replay_rate(path, symbols)
                    floor, decoded, raw = decode_floor(path, enc)
                    assert replayed == expected, (replayed, expected)
                    size = path.stat().st_size
                    for k, v in (
                        ("live", live["rate"]),
                        ("record", rec["rate"]),
                        ("replay", replay),
                        ("floor", floor),
                        ("record_cost", 1 - rec["rate"] / live["rate"]),
                        # CPU per message (all threads), record over live: what recording
                        # costs in work, whatever the load on the machine does to rates.
                        ("record_cpu", rec["cpu_s"] / max(1e-9, live["cpu_s"]) - 1),
                        ("replay_vs_live", replay / live["rate"]),
                        ("replay_vs_floor", replay / floor),
                        # Messages per CPU second, replay over live: the ratio the load
                        # disturbs least (each is one busy thread's work per message).
                        (
                            "replay_cpu_vs_live",
                            replay_cpu / (live["messages"] / max(1e-9, live["cpu_s"])),
                        ),
                        ("load", os.getloadavg()[0]),
                    ):
                        runs[k].append(v)
                out[enc] = {
                    "messages": expected,
                    **{k: statistics.median(v) for k, v in runs.items()},
                    "bytes_per_msg_file": size / max(1, decoded),
                    "bytes_per_msg_raw": raw / max(1, decoded),
                    "runs": runs,
                }
    finally:
        pusher.close()
        if pusher.proc.stdout is not None:
            pusher.proc.stdout.close()  # Pusher.close leaves its pipe to the collector
    return out


def _run(
    pusher: Pusher, cfg: Config, enc: str, record: str | None, wrapper: list[str] | None
) -> dict[str, Any]:
    """``e2e.run_client``'s flood run of rxalpaca, with ``record`` (a path) in the request."""
    counts = pusher.info["workloads"][f"{enc}/100"]
    cycles = max(1, math.ceil(cfg.flood_messages / counts["messages"]))
    request = {
        "client": "rxalpaca",
        "url": f"ws://127.0.0.1:{pusher.port}/flood/{enc}/100/{cycles}",
        "encoding": enc,
        "symbols": pusher.info["symbols"]["100"],
        "expected": {k: counts[k] * cycles for k in ("t", "q", "b")},
        "timeout": cfg.timeout,
        **({"record": record} if record else {}),
    }
    return _spawn(request, cfg.timeout + 15, wrapper)


def markdown(data: dict[str, Any]) -> str:
    rows = [
        "| enc. | msgs | live msg/s | + record msg/s | record cost | record CPU | replay msg/s "
        "| replay x live | replay x live (CPU) | decode floor msg/s | replay x floor "
        "| file B/msg | raw B/msg | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for enc, d in data.items():
        rows.append(
            f"| {enc} | {d['messages']:,} | {d['live']:,.0f} | {d['record']:,.0f} "
            f"| {d['record_cost']:+.1%} | {d['record_cpu']:+.1%} | {d['replay']:,.0f} "
            f"| {d['replay_vs_live']:.2f}x | {d['replay_cpu_vs_live']:.2f}x "
            f"| {d['floor']:,.0f} | {d['replay_vs_floor']:.2f}x "
            f"| {d['bytes_per_msg_file']:.1f} | {d['bytes_per_msg_raw']:.1f} "
            f"| {min(d['runs']['load']):.1f}-{max(d['runs']['load']):.1f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny, counts only (CI)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--json", default="", help="also write every run's figures here")
    args = ap.parse_args(argv)
    data = run(_config(args.smoke, args.reps, args.messages))
    print(markdown(data))
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
