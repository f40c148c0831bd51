"""The NATS fan-out against a direct ``StreamClient``: latency, throughput and gateway CPU.

One command (a few minutes; the figures in ``docs/benchmarks.md``, section "Fan-out over
NATS")::

    python benchmarks/bus.py

and the CI smoke version (seconds; checks that every message reaches every consumer, judges
no timing)::

    python benchmarks/bus.py --smoke

What runs, all on 127.0.0.1, each in its own process:

* ``_pusher.py`` — the lean Alpaca-protocol server of ``e2e.py``, pre-encoded frames of 1-20
  trades/quotes/bars (``frames.py``);
* a ``nats-server`` (``rxalpaca.testing.NatsServer``, core NATS: the live path);
* **direct**: ``_clients.py``'s ``StreamClient`` client on the pusher — the baseline;
* **bus**: a ``Gateway`` on the pusher (``_bus_procs.py gateway``) and 1 or 10
  ``BusClient`` consumers (``_bus_procs.py consumer``), each subscribed to every symbol on
  trades, quotes and bars, doing the same work per message as the direct client. The
  consumers are started (every NATS subscription flushed) before the gateway, so the
  gateway's first lease opens the upstream and every consumer sees every message.

Measured, every run of every kind interleaved ``--reps`` times:

* **latency** at a paced ``--rate`` (10,000 msg/s): pusher ``time_ns()`` in each trade's id
  to the observer's ``time_ns()``; p50/p99 per run (first 5 % dropped), then the median over
  runs; the **added** latency is bus minus direct, medians of the same run;
* **flood throughput** at 100 and 1,000 symbols with one consumer, and at 100 symbols with
  10: messages/s from a consumer's first to its last message (the best run, as in
  ``e2e.py``), against the direct client's on the same corpus;
* **gateway CPU per message**: its process CPU time (all threads) between its first and
  last publish, over the messages in the frames it cut — with 10 consumers against 1, in
  the same flood and in a paced run at ``--cpu-rate``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from e2e import Config as E2EConfig  # noqa: E402
from e2e import Pusher, client_env, environment, latencies_us, percentile, run_client  # noqa: E402

#: Set in the consumers' environment: ``_bus_procs.py`` takes the fast-path prototype.
FAST_PATH = "RXALPACA_BENCH_FAST_PATH"

#: Targets from issue #11: (bound, "max"|"min").
TARGETS = {
    "added_p50_ms": (1.0, "max"),
    "bus_rate_100": (150_000.0, "min"),
    "cpu_10_vs_1": (1.2, "max"),
}


@dataclass(frozen=True)
class Config:
    smoke: bool
    encoding: str
    frames: int
    flood_messages: int
    paced_seconds: float
    rate: float
    cpu_rate: float
    reps: int
    fanout: int
    timeout: float
    only: tuple[str, ...] = ()
    fast_path_ab: bool = False  # every bus step again with the consumer fast-path prototype

    def e2e(self) -> E2EConfig:
        """The same settings as ``e2e.py`` reads them (for its pusher and client runs)."""
        return E2EConfig(
            smoke=self.smoke,
            symbols=(100, 1000),
            encodings=(self.encoding,),
            clients=("rxalpaca",),
            frames=self.frames,
            flood_messages=self.flood_messages,
            alpaca_flood_messages=0,
            paced_seconds=self.paced_seconds,
            rate=self.rate,
            reps=self.reps,
            paced_reps=self.reps,
            timeout=self.timeout,
        )


# ---------------------------------------------------------------- one bus run


class _Proc:
    """A ``_bus_procs.py`` process: config in, ``READY`` out, ``END`` in, result file."""

    def __init__(self, cfg: dict[str, Any], tmp: Path, tag: str) -> None:
        self.result_file = tmp / f"{tag}.json"
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "_bus_procs.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=client_env(),
        )
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({**cfg, "result_file": str(self.result_file)}) + "\n")
        self.proc.stdin.flush()
        self.tag = tag

    def wait_ready(self, timeout: float) -> None:
        out = self.proc.stdout
        assert out is not None
        ready, _, _ = select.select([out], [], [], timeout)
        line = out.readline() if ready else ""
        if line.strip() != "READY":
            self.kill()
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"{self.tag} did not get ready: {line!r}\n{err[-2000:]}")

    def end(self) -> None:
        stdin = self.proc.stdin
        if stdin is not None and not stdin.closed:
            try:
                stdin.write("END\n")
                stdin.close()
            except BrokenPipeError:
                pass

    def result(self, timeout: float) -> dict[str, Any]:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        err = self.proc.stderr.read() if self.proc.stderr else ""
        text = self.result_file.read_text() if self.result_file.exists() else ""
        lines = [ln for ln in text.splitlines() if ln.startswith("RESULT ")]
        if not lines:
            raise RuntimeError(
                f"{self.tag}: no result (exit {self.proc.returncode})\n{err[-2000:]}"
            )
        out: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


_RUN = iter(range(1, 1 << 30))

#: Called with the gateway's (or the first consumer's) pid once it is ready: a profiler
#: attaches there (``py-spy record --pid``); it returns a process to wait for at the end.
ATTACH: dict[str, Any] = {}


def run_bus(
    pusher: Pusher, nats_url: str, cfg: Config, nsym: int, *, mode: str, consumers: int
) -> dict[str, Any]:
    """One gateway and ``consumers`` consumer processes over one pusher workload."""
    enc = cfg.encoding
    counts = pusher.info["workloads"][f"{enc}/{nsym}"]
    per_cycle = counts["messages"]
    if mode == "flood":
        cycles = max(1, math.ceil(cfg.flood_messages / per_cycle))
        path = f"/flood/{enc}/{nsym}/{cycles}"
        rate = 0.0
    else:
        rate = cfg.rate if mode == "paced" else cfg.cpu_rate
        cycles = max(1, round(rate * cfg.paced_seconds / per_cycle))
        path = f"/paced/{enc}/{nsym}/{cycles}/{rate:g}"
    expected = {k: counts[k] * cycles for k in ("t", "q", "b")}
    prefix = f"bench{next(_RUN)}"  # a fresh subject space: nothing left over from a run before
    common = {"nats": nats_url, "prefix": prefix, "encoding": enc, "timeout": cfg.timeout}
    procs: list[_Proc] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        try:
            for i in range(consumers):
                c = {
                    **common,
                    "role": "consumer",
                    "symbols": pusher.info["symbols"][str(nsym)],
                    "expected": expected,
                }
                procs.append(_Proc(c, tmp, f"consumer{i}"))
            for p in procs:
                p.wait_ready(60)
            url = f"ws://127.0.0.1:{pusher.port}{path}"
            gateway = _Proc({**common, "role": "gateway", "url": url}, tmp, "gateway")
            procs.append(gateway)
            gateway.wait_ready(60)
            profilers = [
                ATTACH[role](p.proc.pid)
                for role, p in (("consumer", procs[0]), ("gateway", gateway))
                if role in ATTACH
            ]
            started = time.monotonic()
            results = []
            for p in procs[:-1]:  # every consumer exits once it has every message
                left = max(1.0, cfg.timeout - (time.monotonic() - started))
                try:
                    p.proc.wait(left)
                except subprocess.TimeoutExpired:
                    p.end()
                results.append(p.result(15))
            gateway.end()
            gw = gateway.result(30)
            for prof in profilers:
                prof.wait(30)
        finally:
            for p in procs:
                p.end()
                p.kill()
    for r in results:
        r["missing"] = sum(expected.values()) - r["messages"]
    bad = [r for r in results if not r.get("ok")]
    # A full run on a loaded machine may see NATS cut a consumer that fell too far behind
    # (a "slow consumer"): that is a finding, reported as missing messages; smoke fails.
    if bad and (cfg.smoke or all(not r["messages"] for r in bad)):
        r = bad[0]
        raise RuntimeError(
            f"bus {mode} {nsym} sym x{consumers}: {len(bad)} consumer(s) short: "
            f"{r['counts']} != {expected}; errors {r.get('errors')}"
        )
    mpf = counts["messages"] / counts["frames"]
    if gw.get("frames"):
        gw["messages"] = gw["frames"] * mpf
        gw["cpu_us_per_msg"] = 1e6 * gw["cpu_s"] / gw["messages"]
        gw["rate"] = gw["messages"] / gw["wall_s"] if gw["wall_s"] > 0 else float("nan")
    return {
        "kind": "bus",
        "mode": mode,
        "symbols": nsym,
        "consumers": consumers,
        "rate": cfg.rate if mode == "paced" else cfg.cpu_rate if mode == "cpu" else 0.0,
        "results": results,
        "gateway": gw,
    }


def run_direct(pusher: Pusher, cfg: Config, nsym: int, *, mode: str) -> dict[str, Any]:
    r = run_client(pusher, cfg.e2e(), "rxalpaca", cfg.encoding, nsym, mode=mode)
    return {"kind": "direct", "mode": mode, "symbols": nsym, "consumers": 1, "results": [r]}


# ---------------------------------------------------------------- the run


def plan(cfg: Config) -> list[tuple[str, str, int, int]]:
    """(kind, mode, symbols, consumers) for one repetition, in run order."""
    if cfg.smoke:
        return [
            ("direct", "flood", 100, 1),
            ("bus", "flood", 100, 1),
            ("bus", "flood", 100, cfg.fanout),
            ("bus", "paced", 100, 1),
        ]
    steps = [
        ("direct", "paced", 100, 1),
        ("bus", "paced", 100, 1),
        ("direct", "flood", 100, 1),
        ("bus", "flood", 100, 1),
        ("bus", "flood", 100, cfg.fanout),
        ("direct", "flood", 1000, 1),
        ("bus", "flood", 1000, 1),
        ("bus", "cpu", 100, 1),
        ("bus", "cpu", 100, cfg.fanout),
    ]
    if cfg.only:
        steps = [s for s in steps if "-".join(map(str, s)) in cfg.only]
    return steps


def run(cfg: Config) -> dict[str, Any]:
    from rxalpaca.testing.nats_server import NatsServer

    started = time.time()
    runs: list[dict[str, Any]] = []
    pusher = Pusher(cfg.e2e())
    try:
        with NatsServer(jetstream=False) as nats:
            steps = plan(cfg)
            if not cfg.smoke:  # fill the bytecode cache, unmeasured
                run_direct(pusher, cfg, 100, mode="flood")
                run_bus(pusher, nats.url, cfg, 100, mode="flood", consumers=1)
            for rep in range(cfg.reps):
                for kind, mode, nsym, consumers in steps:
                    if kind == "direct":
                        variants = [run_direct(pusher, cfg, nsym, mode=mode)]
                    else:
                        variants = [
                            _bus_variant(
                                pusher, nats.url, cfg, nsym, mode, consumers=consumers, fast=fast
                            )
                            for fast in ((False, True) if cfg.fast_path_ab else (False,))
                        ]
                    for r in variants:
                        r["rep"] = rep
                        runs.append(r)
                        print(_line(r), file=sys.stderr)
    finally:
        pusher.close()
    return {
        "runs": runs,
        "workloads": pusher.info["workloads"],
        "seconds": time.time() - started,
        "environment": environment(),
        "config": cfg.__dict__,
    }


def _bus_variant(
    pusher: Pusher, url: str, cfg: Config, nsym: int, mode: str, *, consumers: int, fast: bool
) -> dict[str, Any]:
    """A bus run; with ``fast``, the consumers use the fast-path prototype
    (``_bus_procs._fast_path``) and the run is reported as ``bus+fast``."""
    if fast:
        os.environ[FAST_PATH] = "1"
    try:
        r = run_bus(pusher, url, cfg, nsym, mode=mode, consumers=consumers)
    finally:
        os.environ.pop(FAST_PATH, None)
    if fast:
        r["kind"] = "bus+fast"
    return r


def _line(r: dict[str, Any]) -> str:
    res = r["results"]
    text = f"{r['kind']:6} {r['mode']:5} {r['symbols']:5} sym x{r['consumers']:<2}"
    if r["mode"] in ("paced", "cpu"):
        lat = [latencies_us([x]) for x in res]
        text += f" p50 {_med([percentile(x, 0.5) for x in lat]):7.0f} µs"
        text += f" p99 {_med([percentile(x, 0.99) for x in lat]):7.0f} µs"
    else:
        text += f" {_med([x['rate'] for x in res]):9,.0f} msg/s/consumer"
    missing = sum(x.get("missing", 0) for x in res)
    if missing:
        text += f" ({missing:,} missing)"
    gw = r.get("gateway", {})
    if "cpu_us_per_msg" in gw:
        text += f"  gateway {gw['rate']:9,.0f} msg/s {gw['cpu_us_per_msg']:6.2f} µs CPU/msg"
    return text


# ---------------------------------------------------------------- statistics


def _med(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else float("nan")


def summarise(data: dict[str, Any]) -> dict[tuple[str, str, int, int], dict[str, Any]]:
    """Per (kind, mode, symbols, consumers): the figures over repetitions."""
    groups: dict[tuple[str, str, int, int], list[dict[str, Any]]] = {}
    for r in data["runs"]:
        groups.setdefault((r["kind"], r["mode"], r["symbols"], r["consumers"]), []).append(r)
    rows: dict[tuple[str, str, int, int], dict[str, Any]] = {}
    for key, runs in groups.items():
        row: dict[str, Any] = {"runs": len(runs)}
        if key[1] in ("paced", "cpu"):  # both paced: every trade carries its send time
            per_run = [latencies_us(r["results"]) for r in runs]
            row["p50_us"] = _med([percentile(x, 0.5) for x in per_run])
            row["p99_us"] = _med([percentile(x, 0.99) for x in per_run])
            row["p50s"] = [percentile(x, 0.5) for x in per_run]
        # Per run, the median consumer; then the best run (the least disturbed, as e2e.py).
        rates = [_med([x["rate"] for x in r["results"]]) for r in runs]
        row["rate"] = max(rates)
        row["rates"] = rates
        row["consumer_cpu_us"] = _med(
            [_med([1e6 * x["cpu_s"] / max(1, x["messages"]) for x in r["results"]]) for r in runs]
        )
        gws = [r["gateway"] for r in runs if "cpu_us_per_msg" in r.get("gateway", {})]
        if gws:
            row["gw_cpu_us"] = _med([g["cpu_us_per_msg"] for g in gws])
            row["gw_cpus"] = [g["cpu_us_per_msg"] for g in gws]
            row["gw_rate"] = max(g["rate"] for g in gws)
            # NATS messages per data message: frames joined per publish (the batching).
            row["gw_pub_per_msg"] = _med([g["published"] / g["messages"] for g in gws])
            row["gw_cpu_per_pub"] = _med([1e6 * g["cpu_s"] / g["published"] for g in gws])
        row["missing"] = max(x.get("missing", 0) for r in runs for x in r["results"])
        rows[key] = row
    return rows


def targets(cfg: Config, rows: dict[tuple[str, str, int, int], dict[str, Any]]) -> list[Any]:
    out: list[tuple[str, str, bool]] = []
    f = cfg.fanout

    def check(name: str, label: str, value: float, shown: str) -> None:
        bound, kind = TARGETS[name]
        met = value <= bound if kind == "max" else value >= bound
        out.append((label, shown, met))

    bus_p, direct_p = rows.get(("bus", "paced", 100, 1)), rows.get(("direct", "paced", 100, 1))
    if bus_p and direct_p:
        added = (bus_p["p50_us"] - direct_p["p50_us"]) / 1e3
        check(
            "added_p50_ms",
            f"added p50 at {cfg.rate:,.0f} msg/s ≤ 1 ms",
            added,
            f"{added:.2f} ms ({bus_p['p50_us']:.0f} vs {direct_p['p50_us']:.0f} µs)",
        )
    bus_f = rows.get(("bus", "flood", 100, 1))
    if bus_f:
        check(
            "bus_rate_100",
            "gateway → one consumer, 100 symbols ≥ 150k msg/s",
            bus_f["rate"],
            f"{bus_f['rate']:,.0f} msg/s",
        )
    for mode in ("flood", "cpu"):
        one, many = rows.get(("bus", mode, 100, 1)), rows.get(("bus", mode, 100, f))
        if one and many and "gw_cpu_us" in one and "gw_cpu_us" in many:
            ratio = many["gw_cpu_us"] / one["gw_cpu_us"]
            what = "flood" if mode == "flood" else f"paced {cfg.cpu_rate:,.0f} msg/s"
            check(
                "cpu_10_vs_1",
                f"gateway CPU/msg, {f} consumers / 1 ({what}) ≤ 1.2",
                ratio,
                f"{ratio:.2f} ({many['gw_cpu_us']:.2f} / {one['gw_cpu_us']:.2f} µs)",
            )
            per_pub = many["gw_cpu_per_pub"] / one["gw_cpu_per_pub"]
            out.append(
                (
                    f"— the same per NATS publish ({what}; for reference)",
                    f"{per_pub:.2f} ({many['gw_cpu_per_pub']:.1f} / "
                    f"{one['gw_cpu_per_pub']:.1f} µs; publishes per message "
                    f"{many['gw_pub_per_msg']:.2f} / {one['gw_pub_per_msg']:.2f})",
                    per_pub <= TARGETS["cpu_10_vs_1"][0],
                )
            )
    return out


def markdown(data: dict[str, Any], rows: dict[Any, dict[str, Any]], tgt: list[Any]) -> str:
    cfg = data["config"]
    env = data["environment"]
    lines = [
        f"Run: `python benchmarks/bus.py` — {cfg['encoding']}, {cfg['reps']} interleaved "
        f"repetitions, {data['seconds']:.0f} s in all.",
        f"Machine: {env['cpu']}, {env['cores']} cores, {env['platform']}, Python {env['python']}.",
        "",
        "| run | symbols | consumers | msgs/s per consumer (best) | x direct | p50 µs | p99 µs "
        "| consumer CPU µs/msg | gateway msgs/s | gateway CPU µs/msg | publishes/msg | missing |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (kind, mode, nsym, n), row in sorted(rows.items()):
        direct = rows.get(("direct", "flood", nsym, 1))
        x = row["rate"] / direct["rate"] if direct and mode == "flood" else float("nan")
        what = f"{kind} {mode}" if mode != "cpu" else f"{kind} paced {cfg['cpu_rate']:,.0f}/s"
        if mode == "paced":
            what = f"{kind} paced {cfg['rate']:,.0f}/s"
        lines.append(
            f"| {what} | {nsym:,} | {n} | "
            + (f"{row['rate']:,.0f}" if mode == "flood" else "-")
            + f" | {_r(x)} | {_f(row.get('p50_us'))} | {_f(row.get('p99_us'))} "
            f"| {row['consumer_cpu_us']:.2f} | "
            + (f"{row['gw_rate']:,.0f}" if "gw_rate" in row else "-")
            + f" | {_r(row.get('gw_cpu_us', float('nan')))} "
            f"| {_r(row.get('gw_pub_per_msg', float('nan')))} | {row['missing']:,} |"
        )
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {n} | {v} | {'yes' if ok else '**no**'} |" for n, v, ok in tgt]
    return "\n".join(lines)


def _f(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.0f}"


def _r(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="CI: seconds, counts only")
    parser.add_argument("--encoding", default="msgpack", choices=("json", "msgpack"))
    parser.add_argument("--flood-messages", type=int, default=200_000)
    parser.add_argument("--paced-seconds", type=float, default=2.0)
    parser.add_argument("--rate", type=float, default=10_000)
    parser.add_argument(
        "--cpu-rate",
        type=float,
        default=2_000,
        help="msg/s of the gateway-CPU runs: low enough for 10 consumers to keep up",
    )
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--fanout", type=int, default=10, help="consumers in the fan-out runs")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated steps, e.g. direct-flood-100-1,bus-flood-100-1 (A/B runs)",
    )
    parser.add_argument(
        "--json", type=Path, default=ROOT / ".benchmarks" / "bus.json", help="raw results"
    )
    parser.add_argument("--summarise", type=Path, help="print the tables of a saved run")
    parser.add_argument(
        "--fast-path-ab",
        action="store_true",
        help="every bus run twice: as is, and with the consumer fast-path prototype",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        cfg = Config(
            True,
            args.encoding,
            100,
            2_000,
            0.1,
            args.rate,
            args.cpu_rate,
            1,
            2,
            30.0,
            (),
            args.fast_path_ab,
        )
    else:
        cfg = Config(
            False,
            args.encoding,
            2000,
            args.flood_messages,
            args.paced_seconds,
            args.rate,
            args.cpu_rate,
            args.reps,
            args.fanout,
            120.0,
            tuple(x for x in args.only.split(",") if x),
            args.fast_path_ab,
        )
    if args.summarise:
        data = json.loads(args.summarise.read_text())
        rows = summarise(data)
        print(markdown(data, rows, targets(cfg, rows)))
        return 0
    try:
        data = run(cfg)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    if cfg.smoke:
        print(f"bus smoke: {len(data['runs'])} runs, every count matched ({data['seconds']:.1f} s)")
        return 0
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(data, default=str))  # raw, latency samples included
    rows = summarise(data)
    tgt = targets(cfg, rows)
    print(markdown(data, rows, tgt))
    return 0


if __name__ == "__main__":
    sys.exit(main())
