"""End-to-end loopback benchmark: rxalpaca against the bare-socket floor and alpaca-py.

One command (a few minutes; the figures in ``docs/benchmarks.md``, section "End to end")::

    python benchmarks/e2e.py

and the CI smoke version (a few seconds; checks that messages arrive and counts match,
never timings; needs neither alpaca-py nor matplotlib)::

    python benchmarks/e2e.py --smoke

What runs, all on 127.0.0.1, each in its own process:

* ``_pusher.py`` — a lean Alpaca-protocol server pushing pre-encoded frames of 1-20 mixed
  trades/quotes/bars (``frames.py``), JSON or MessagePack;
* the clients (``_clients.py``), one process per run, runs interleaved; every one reads
  each record's exchange time as exact integer nanoseconds, as a strategy does:

  - **floor**: websocket-client (``skip_utf8_validation=True``, ``recv_data()`` loop) with
    orjson (JSON) or msgpack (MessagePack) into plain dicts and a plain callback per
    message, no Rx — the fastest a plain Python consumer goes; its timestamps: JSON by
    ``_clients.floor_time_ns`` (the whole second cached by its 19-character prefix, the
    fraction by ``int``, no validation), MessagePack by msgpack's C unpacker
    (``timestamp=2``: ext -1 straight to int ns);
  - **rxalpaca**: ``StreamClient``, one subscription per channel over every symbol, the
    observers reading ``timestamp_ns``; **rxalpaca+dt** also reads ``timestamp`` (the
    ``datetime`` view) and one field; **rxalpaca-noread** (a diagnostic row) reads none;
  - **alpaca-py**: ``StockDataStream`` (MessagePack only), async handlers;
  - **bare**: an interpreter that does nothing, the baseline for peak RSS.

Measured: flood throughput (messages/s, the median of ``--reps`` interleaved runs), latency
at a paced ``--rate`` messages/s (p50 / p99 from the pusher's ``time_ns()`` just before the
write — carried in each trade's own timestamp ``t`` — to the observer's ``time_ns()``, read
through the record's timestamp; the first 5 % of
samples are warm-up and dropped), the client's peak RSS (``VmHWM``) over a bare
interpreter, and the in-process pipeline's cost with 1 and 1,000 subscriptions.
Everything is reported as a ratio against the baselines of the same run.

Every client process (and the bare baseline) loads bytecode from one private cache
(``client_env``), as an installed package does; ``rss.py`` breaks the RSS down.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

#: rxalpaca as users run it (reading ``timestamp_ns``), with the ``datetime`` view and a
#: field too, and the diagnostic that reads no timestamp (``_clients.py``).
RXALPACA_CLIENTS = ("rxalpaca", "rxalpaca+dt", "rxalpaca-noread")

WARMUP = 0.05  # share of latency samples dropped at the start of a paced run

#: The client processes' private bytecode cache (``client_env``).
PYCACHE = ROOT / ".benchmarks" / "pycache"

#: Targets from the issue: (key, bound, "max"|"min").
TARGETS = {
    "throughput_vs_floor (json)": (1.0, "min"),
    "throughput_vs_floor (msgpack)": (1.2, "min"),
    "throughput_vs_alpaca_py": (5.0, "min"),
    "p50_vs_floor": (1.0, "max"),
    "p99_vs_floor": (1.3, "max"),
    "rss_over_floor_mb": (5.0, "max"),
    "pipeline_1000_vs_1": (1.05, "max"),
}


@dataclass(frozen=True)
class Config:
    smoke: bool
    symbols: tuple[int, ...]
    encodings: tuple[str, ...]
    clients: tuple[str, ...]
    frames: int  # frames per workload cycle
    flood_messages: int
    alpaca_flood_messages: int
    paced_seconds: float
    rate: float
    reps: int
    paced_reps: int
    timeout: float


def _config(args: argparse.Namespace) -> Config:
    have_alpaca = importlib.util.find_spec("alpaca") is not None
    clients = ["floor", *RXALPACA_CLIENTS] + (["alpaca-py"] if have_alpaca else [])
    if not have_alpaca:
        print("alpaca-py is not installed: its runs are skipped", file=sys.stderr)
    if args.smoke:  # tiny: 100-frame cycles, 1-2 cycles per run, only counts are checked
        return Config(
            smoke=True,
            symbols=(100, 1000),
            encodings=("json", "msgpack"),
            clients=tuple(clients),
            frames=100,
            flood_messages=2_000,
            alpaca_flood_messages=1_000,
            paced_seconds=0.05,
            rate=args.rate,
            reps=1,
            paced_reps=1,
            timeout=10.0,
        )
    return Config(
        smoke=False,
        symbols=tuple(int(s) for s in args.symbols.split(",")),
        encodings=tuple(args.encodings.split(",")),
        clients=tuple(clients),
        frames=2000,
        flood_messages=args.flood_messages,
        alpaca_flood_messages=args.alpaca_flood_messages,
        paced_seconds=args.paced_seconds,
        rate=args.rate,
        reps=args.reps,
        paced_reps=args.paced_reps,
        timeout=60.0,
    )


# ---------------------------------------------------------------- processes


class Pusher:
    """The server subprocess (closed with its stdin; terminated if that is not enough)."""

    def __init__(self, cfg: Config) -> None:
        cmd = [
            sys.executable,
            str(HERE / "_pusher.py"),
            "--frames",
            str(cfg.frames),
            "--symbols",
            ",".join(map(str, cfg.symbols)),
        ]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.close()
            raise RuntimeError("the pusher did not start")
        self.info: dict[str, Any] = json.loads(line)
        self.port: int = self.info["port"]

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait(timeout=3)


def run_client(
    pusher: Pusher,
    cfg: Config,
    client: str,
    encoding: str,
    nsym: int,
    *,
    mode: str,
    wrapper: list[str] | None = None,
) -> dict[str, Any]:
    """One client process; its result dict (raises on any failure)."""
    counts = pusher.info["workloads"][f"{encoding}/{nsym}"]
    per_cycle = counts["messages"]
    if mode == "flood":
        target = cfg.alpaca_flood_messages if client == "alpaca-py" else cfg.flood_messages
        cycles = max(1, math.ceil(target / per_cycle))
        path = f"/flood/{encoding}/{nsym}/{cycles}"
    else:
        cycles = max(1, round(cfg.rate * cfg.paced_seconds / per_cycle))
        path = f"/paced/{encoding}/{nsym}/{cycles}/{cfg.rate:g}"
    request = {
        "client": client,
        "url": f"ws://127.0.0.1:{pusher.port}{path}",
        "encoding": encoding,
        "symbols": pusher.info["symbols"][str(nsym)],
        "expected": {k: counts[k] * cycles for k in ("t", "q", "b")},
        "timeout": cfg.timeout,
    }
    return _spawn(request, cfg.timeout + 15, wrapper)


def client_env() -> dict[str, str]:
    """The client processes' environment: bytecode cached, as for an installed package.

    pip compiles a wheel's modules to bytecode when it installs them, and our dependencies
    load theirs; but an editable install run under ``PYTHONDONTWRITEBYTECODE=1`` (as on our
    development machines) compiles rxalpaca from source in every process, and the compiler's
    transient allocations add 1.7 MB at import and 0.8-1.0 MB to the client's peak RSS
    (``rss.py``, docs/benchmarks.md "Memory"). So every client
    process — and the bare baseline — reads and writes bytecode in one private cache
    (``PYTHONPYCACHEPREFIX``), which ``warm_up`` fills before anything is measured.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    return env


def warm_up(pusher: Pusher, cfg: Config) -> None:
    """One short flood per client and encoding, unmeasured: fills the bytecode cache with
    every module a client imports (also the ones imported while connecting)."""
    for client in cfg.clients:
        for enc in cfg.encodings:
            if client != "alpaca-py" or enc == "msgpack":
                run_client(pusher, cfg, client, enc, cfg.symbols[0], mode="flood")


def _spawn(
    request: dict[str, Any], timeout: float, wrapper: list[str] | None = None
) -> dict[str, Any]:
    """Run ``_clients.py`` (under ``wrapper``, e.g. a profiler, if given) on ``request``."""
    with tempfile.TemporaryDirectory() as tmp:
        result_file = Path(tmp) / "result.json"
        proc = subprocess.run(
            [*(wrapper or ()), sys.executable, str(HERE / "_clients.py")],
            input=json.dumps({**request, "result_file": str(result_file)}),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=client_env(),
        )
        text = result_file.read_text() if result_file.exists() else ""
    lines = [ln for ln in text.splitlines() if ln.startswith("RESULT ")]
    what = f"{request['client']} {request.get('encoding', '')} {request.get('url', '')}"
    if not lines:
        raise RuntimeError(f"{what}: no result (exit {proc.returncode})\n{proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    if proc.returncode != 0 or not result.get("ok"):
        raise RuntimeError(
            f"{what}: counts {result.get('counts')} != expected {request.get('expected')}; "
            f"errors {result.get('errors')}\n{proc.stderr[-2000:]}"
        )
    return result


# ---------------------------------------------------------------- statistics


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    idx = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return float(sorted_values[idx])


def latencies_us(results: list[dict[str, Any]]) -> list[float]:
    """Pooled latency samples of paced runs (warm-up dropped), sorted, in µs."""
    out: list[float] = []
    for r in results:
        lat = r["lat_ns"]
        out.extend(x / 1e3 for x in lat[int(len(lat) * WARMUP) :])
    return sorted(out)


# ---------------------------------------------------------------- in-process pipeline


#: The in-process pipeline's variants: ``fused`` is what ``StreamClient`` runs (``ops.pipeline``,
#: one Rx hop), ``chain`` the five operators piped one after another.
PIPELINES = ("fused", "chain")
SUBSCRIPTIONS = (1, 100, 1000)


def pipeline_costs(
    smoke: bool, rounds: int = 15, blocks: int = 3
) -> dict[str, dict[str, dict[int, list[float]]]]:
    """µs per frame of the in-process pipeline with 1, 100 and 1,000 subscriptions:
    ``out[variant][encoding][subscriptions]`` is one figure per block, each the best of
    ``rounds`` interleaved rounds (drift on a noisy machine hits every case alike), so the
    1,000/1 ratio can be read several times in the same run."""
    from _pipeline import Pipeline, per_frame_us

    cases = {
        (variant, enc, n): Pipeline(
            n, enc, frames_per_run=50 if smoke else 400, fused=variant == "fused"
        )
        for variant in PIPELINES
        for enc in ("json", "msgpack")
        for n in SUBSCRIPTIONS
    }
    for (variant, enc, n), p in cases.items():
        delivered = p.run()
        if delivered != p.w.messages:
            raise RuntimeError(f"pipeline {variant}/{enc}/{n}: {delivered} != {p.w.messages}")
    out: dict[str, dict[str, dict[int, list[float]]]] = {
        v: {"json": {}, "msgpack": {}} for v in PIPELINES
    }
    if smoke:
        return out
    for _ in range(blocks):
        best: dict[tuple[str, str, int], float] = {}
        for _ in range(rounds):
            for key, p in cases.items():
                cost = per_frame_us(p.run, p.w.frames, repeat=1, number=2)
                best[key] = min(best.get(key, float("inf")), cost)
        for (variant, enc, n), cost in best.items():
            out[variant][enc].setdefault(n, []).append(cost)
    return out


def pipeline_ratios(costs: dict[int, list[float]]) -> list[float]:
    """The 1,000/1 ratio of each block."""
    return [big / one for one, big in zip(costs[1], costs[1000], strict=True)]


def stage_breakdown(smoke: bool) -> dict[str, dict[str, float]]:
    """Where the in-process microseconds of a frame go, stage by stage (1,000 subscriptions)."""
    from _pipeline import stage_costs

    out = {enc: stage_costs(enc, rounds=1 if smoke else 15) for enc in ("json", "msgpack")}
    for enc, costs in out.items():
        if not costs["total"] > 0 or not costs["ws_framing"] > 0:
            raise RuntimeError(f"stage breakdown ({enc}) measured nothing: {costs}")
    return out


# ---------------------------------------------------------------- the run


def run(cfg: Config) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    started = time.time()
    pusher = Pusher(cfg)
    try:
        if not cfg.smoke:  # smoke judges no RSS: its first runs may fill the cache
            warm_up(pusher, cfg)
        bare = _spawn({"client": "bare"}, 30)
        plan: list[tuple[str, str, int, str]] = []
        for nsym in cfg.symbols:
            for mode, reps in (("flood", cfg.reps), ("paced", cfg.paced_reps)):
                for _ in range(reps):
                    for enc in cfg.encodings:
                        for client in cfg.clients:
                            if client == "alpaca-py" and enc != "msgpack":
                                continue
                            if (
                                cfg.smoke
                                and nsym != cfg.symbols[0]
                                and (client == "alpaca-py" or mode == "paced")
                            ):
                                continue  # smoke: 1,000 symbols once per client/encoding
                            plan.append((client, enc, nsym, mode))
        for i, (client, enc, nsym, mode) in enumerate(plan, 1):
            r = run_client(pusher, cfg, client, enc, nsym, mode=mode)
            r["mode"] = mode
            runs.append(r)
            lat = latencies_us([r]) if mode == "paced" else []
            print(
                f"[{i:>3}/{len(plan)}] {mode:5} {client:9} {enc:7} {nsym:>5} sym: "
                f"{r['messages']:>7} msgs, {r['rate']:>10,.0f} msg/s"
                + (
                    f", p50 {percentile(lat, 0.5):7.1f} µs, p99 {percentile(lat, 0.99):8.1f} µs"
                    if lat
                    else ""
                )
                + f", VmHWM {r['vmhwm_kb'] / 1024:5.1f} MB",
                file=sys.stderr,
                flush=True,
            )
    finally:
        pusher.close()
    pipeline = pipeline_costs(cfg.smoke)
    stages = stage_breakdown(cfg.smoke)
    return {
        "bare": bare,
        "runs": runs,
        "pipeline": pipeline,
        "stages": stages,
        "workloads": pusher.info["workloads"],
        "seconds": time.time() - started,
        "environment": environment(),
        "config": cfg.__dict__,
    }


def summarise(data: dict[str, Any]) -> dict[str, Any]:
    """Per (symbols, client, encoding): throughput, latency, RSS; and the ratios."""
    bare_kb = data["bare"]["vmhwm_kb"]
    rows: dict[tuple[int, str, str], dict[str, Any]] = {}
    for r in data["runs"]:
        key = (r["symbols"], r["client"], r["encoding"])
        row = rows.setdefault(key, {"rates": [], "paced": [], "hwm": 0})
        if r["mode"] == "flood":
            row["rates"].append(r["rate"])
        else:
            row["paced"].append(r)
        row["hwm"] = max(row["hwm"], r["vmhwm_kb"])
    table = []
    for (nsym, client, enc), row in sorted(rows.items()):
        lat = latencies_us(row["paced"])
        per_run = [latencies_us([r]) for r in row["paced"]]
        table.append(
            {
                "symbols": nsym,
                "client": client,
                "encoding": enc,
                # The best flood run is the least disturbed one (as in the Codec section).
                "rate": max(row["rates"]) if row["rates"] else float("nan"),
                "rates": row["rates"],
                # Percentiles per paced run, then the median over runs: one run disturbed
                # by a neighbour on the shared machine does not decide the p99.
                "p50_us": _median([percentile(x, 0.5) for x in per_run]),
                "p99_us": _median([percentile(x, 0.99) for x in per_run]),
                "p999_us": percentile(lat, 0.999),
                "samples": len(lat),
                "hwm_mb": row["hwm"] / 1024,
                "over_bare_mb": (row["hwm"] - bare_kb) / 1024,
            }
        )
    index = {(t["symbols"], t["client"], t["encoding"]): t for t in table}
    for t in table:
        floor = index.get((t["symbols"], "floor", t["encoding"]))
        apy = index.get((t["symbols"], "alpaca-py", "msgpack"))
        t["rate_vs_floor"] = t["rate"] / floor["rate"] if floor else float("nan")
        t["rate_vs_alpaca_py"] = t["rate"] / apy["rate"] if apy else float("nan")
        t["p50_vs_floor"] = t["p50_us"] / floor["p50_us"] if floor else float("nan")
        t["p99_vs_floor"] = t["p99_us"] / floor["p99_us"] if floor else float("nan")
    return {"table": table, "index": index}


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def check_targets(data: dict[str, Any], summary: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(target, measured, met) for rxalpaca at each symbol count and encoding."""
    out: list[tuple[str, str, bool]] = []
    for t in summary["table"]:
        if t["client"] != "rxalpaca":
            continue
        tag = f"{t['symbols']} sym, {t['encoding']}"
        checks = [(f"throughput_vs_floor ({t['encoding']})", t["rate_vs_floor"])]
        if t["encoding"] == "msgpack":  # alpaca-py speaks MessagePack only: like for like
            checks.append(("throughput_vs_alpaca_py", t["rate_vs_alpaca_py"]))
        checks += [
            ("p50_vs_floor", t["p50_vs_floor"]),
            ("p99_vs_floor", t["p99_vs_floor"]),
        ]
        floor = summary["index"].get((t["symbols"], "floor", t["encoding"]))
        if floor and t["symbols"] == max(s for s in data["config"]["symbols"]):
            checks.append(("rss_over_floor_mb", t["over_bare_mb"] - floor["over_bare_mb"]))
        for name, value in checks:
            if math.isnan(value):
                continue
            bound, kind = TARGETS[name]
            met = value >= bound if kind == "min" else value <= bound
            sign = "≥" if kind == "min" else "≤"
            out.append((f"{name.split(' (')[0]} ({tag})", f"{value:.2f} ({sign} {bound:g})", met))
    for enc, costs in data["pipeline"]["fused"].items():
        if 1 in costs and 1000 in costs:
            ratios = pipeline_ratios(costs)
            value = statistics.median(ratios)
            bound, _ = TARGETS["pipeline_1000_vs_1"]
            shown = f"{value:.3f}, blocks {min(ratios):.3f}-{max(ratios):.3f} (≤ {bound:g})"
            out.append((f"pipeline_1000_vs_1 ({enc}, StreamClient's)", shown, value <= bound))
    return out


def environment() -> dict[str, Any]:
    versions = {}
    for dist in (
        "rxalpaca",
        "reactivex",
        "websocket-client",
        "websockets",
        "orjson",
        "msgspec",
        "msgpack",
        "alpaca-py",
        "pydantic",
        "matplotlib",
    ):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "-"
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            names = (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
            cpu = next(names, "?")
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "versions": versions,
    }


# ---------------------------------------------------------------- report


def markdown(data: dict[str, Any], summary: dict[str, Any], targets: list[Any]) -> str:
    env = data["environment"]
    cfg = data["config"]
    lines = [
        f"Run: `python benchmarks/e2e.py` — {cfg['reps']} interleaved flood runs per client "
        f"(the best), {cfg['paced_reps']} x {cfg['paced_seconds']:g} s paced at "
        f"{cfg['rate']:,.0f} msg/s (percentiles per run, then the median over runs), "
        f"{data['seconds']:.0f} s in all.",
        f"Machine: {env['cpu']}, {env['cores']} cores, {env['platform']}, Python {env['python']}.",
        "Packages: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()) + ".",
        "",
        "| symbols | client | enc. | msgs/s | x floor | x alpaca-py | p50 µs | p99 µs "
        "| p50 x floor | p99 x floor | peak RSS MB | over bare MB |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t in summary["table"]:
        lines.append(
            f"| {t['symbols']:,} | {t['client']} | {t['encoding']} | {t['rate']:,.0f} "
            f"| {_r(t['rate_vs_floor'])} | {_r(t['rate_vs_alpaca_py'])} "
            f"| {t['p50_us']:.0f} | {t['p99_us']:.0f} | {_r(t['p50_vs_floor'])} "
            f"| {_r(t['p99_vs_floor'])} | {t['hwm_mb']:.1f} | {t['over_bare_mb']:.1f} |"
        )
    lines += ["", f"Bare interpreter peak RSS: {data['bare']['vmhwm_kb'] / 1024:.1f} MB.", ""]
    if data["pipeline"]["fused"].get("json"):
        lines += [
            "In-process pipeline, frames to observers (µs per frame of 1-20 messages; "
            "N subscriptions = N symbols, an observer per channel and symbol). Each block is "
            "the best of 15 interleaved rounds; the µs are the best block, the ratio the "
            "median over blocks and their range:",
            "",
            "| pipeline | encoding | 1 subscription | 100 | 1,000 | 1,000 / 1 | over blocks |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        names = {"fused": "`ops.pipeline` (StreamClient's)", "chain": "five operators piped"}
        for variant, by_enc in data["pipeline"].items():
            for enc, c in by_enc.items():
                ratios = pipeline_ratios(c)
                lines.append(
                    f"| {names[variant]} | {enc} | {min(c[1]):.2f} | {min(c[100]):.2f} "
                    f"| {min(c[1000]):.2f} | {statistics.median(ratios):.3f} "
                    f"| {min(ratios):.3f}-{max(ratios):.3f} |"
                )
        lines.append("")
    lines += breakdown_markdown(data, summary)
    lines += ["| target | measured | met |", "|---|---|---|"]
    lines += [
        f"| {name} | {value} | {'yes' if met else '**no**'} |" for name, value, met in targets
    ]
    return "\n".join(lines)


def breakdown_markdown(data: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    """µs per frame: end to end (from throughput) against the in-process stages."""
    largest = max(data["config"]["symbols"])
    cols = [enc for enc in ("json", "msgpack") if enc in data["stages"]]
    index = summary["index"]

    def e2e_us(client: str, enc: str) -> float:
        row = index.get((largest, client, enc))
        w = data["workloads"].get(f"{enc}/{largest}")
        if not row or not w or not row["rate"] > 0:
            return float("nan")
        return float(1e6 * (w["messages"] / w["frames"]) / row["rate"])

    def line(label: str, values: list[float]) -> str:
        return f"| {label} | " + " | ".join(_us(v) for v in values) + " |"

    st = [data["stages"][enc] for enc in cols]
    rx = [e2e_us("rxalpaca", enc) for enc in cols]
    in_process = [c["total"] - c["subject"] for c in st]
    rows = [
        f"Per frame ({st[0]['messages_per_frame']:.1f} messages on average), µs — end to end "
        f"from the flood throughput at {largest:,} symbols, and the in-process stages with "
        "1,000 subscriptions (`_pipeline.stage_costs`: the chain grown one operator at a "
        "time, best of 15 interleaved rounds):",
        "",
        "| µs per frame | " + " | ".join(cols) + " |",
        "|---|" + "---:|" * len(cols),
        line("**floor, end to end**", [e2e_us("floor", enc) for enc in cols]),
        line("**rxalpaca, end to end**", rx),
        line(
            "— of which reading every timestamp (rxalpaca - rxalpaca-noread)",
            [r - e2e_us("rxalpaca-noread", enc) for r, enc in zip(rx, cols, strict=True)],
        ),
        line("websocket-client `recv_frame` (framing, from memory)", [c["ws_framing"] for c in st]),
        line("reassemble (operator hop)", [c["reassemble"] for c in st]),
        line("validate (operator hop)", [c["validate"] for c in st]),
        line("decode: operator + `Codec.decode`", [c["decode"] for c in st]),
        line("— of which `Codec.decode` alone", [c["codec_only"] for c in st]),
        line("meter", [c["meter"] for c in st]),
        line("route: timing + `Router.dispatch` + observers", [c["route"] for c in st]),
        line("in-process pipeline, total", in_process),
        line("— the same decode + dispatch without Rx", [c["without_rx"] for c in st]),
        line(
            "rest: kernel, `recv` calls, wake-ups, transport loop",
            [r - c["ws_framing"] - t for r, c, t in zip(rx, st, in_process, strict=True)],
        ),
        "",
    ]
    return rows


def _us(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.1f}"


def _r(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.2f}"


COLOURS = {"floor": "#555555", "rxalpaca": "#1f77b4", "alpaca-py": "#ff7f0e"}
STYLES = {"json": "-", "msgpack": "--"}


def plot(data: dict[str, Any], summary: dict[str, Any], path: Path) -> None:
    """Latency distributions (1,000 symbols) and throughput against symbol count."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = summary["table"]
    series = sorted({(t["client"], t["encoding"]) for t in table})
    largest = max(t["symbols"] for t in table)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    for client, enc in series:
        paced = [
            r
            for r in data["runs"]
            if r["mode"] == "paced"
            and r["client"] == client
            and r["encoding"] == enc
            and r["symbols"] == largest
        ]
        lat = latencies_us(paced)
        if lat:
            n = len(lat)
            ax1.plot(
                lat,
                [1 - i / n for i in range(n)],
                STYLES[enc],
                color=COLOURS.get(client),
                label=f"{client} ({enc})",
            )
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("latency, server send → observer (µs)")
    ax1.set_ylabel("share of trades slower (log)")
    ax1.set_title(f"Latency at {data['config']['rate']:,.0f} msg/s, {largest:,} symbols")
    for q, label in ((0.5, "p50"), (0.01, "p99"), (0.001, "p99.9")):
        ax1.axhline(q, color="grey", lw=0.6)
        ax1.text(ax1.get_xlim()[0], q, f" {label}", va="bottom", fontsize=8, color="grey")
    ax1.grid(True, which="both", alpha=0.3)
    ax1.legend()
    for client, enc in series:
        pts = sorted(
            (t["symbols"], t["rate"])
            for t in table
            if t["client"] == client and t["encoding"] == enc
        )
        ax2.plot(
            [p[0] for p in pts],
            [p[1] / 1e3 for p in pts],
            STYLES[enc],
            marker="o",
            color=COLOURS.get(client),
            label=f"{client} ({enc})",
        )
    ax2.set_xscale("log")
    ax2.set_xlabel("symbols subscribed (trades, quotes and bars each)")
    ax2.set_ylabel("flood throughput (thousand messages/s)")
    ax2.set_title("Throughput against symbol count (best of runs)")
    ax2.set_ylim(bottom=0)
    ax2.grid(True, alpha=0.3)
    ax2.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"plot: {path}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="CI: a few seconds, checks counts only, no timings judged",
    )
    parser.add_argument("--symbols", default="10,100,1000")
    parser.add_argument("--encodings", default="json,msgpack")
    parser.add_argument("--flood-messages", type=int, default=200_000)
    parser.add_argument("--alpaca-flood-messages", type=int, default=40_000)
    parser.add_argument("--paced-seconds", type=float, default=2.0)
    parser.add_argument("--rate", type=float, default=20_000)
    parser.add_argument("--reps", type=int, default=3, help="interleaved flood runs per client")
    parser.add_argument("--paced-reps", type=int, default=3)
    parser.add_argument(
        "--json",
        type=Path,
        default=ROOT / ".benchmarks" / "e2e.json",
        help="where the raw results go (not in --smoke)",
    )
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "img" / "e2e.png")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    cfg = _config(args)
    try:
        data = run(cfg)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    if cfg.smoke:
        n = len(data["runs"])
        print(f"e2e smoke: {n} client runs, every count matched ({data['seconds']:.1f} s)")
        return 0
    summary = summarise(data)
    targets = check_targets(data, summary)
    print(markdown(data, summary, targets))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    slim = {
        **data,
        "runs": [{k: v for k, v in r.items() if k != "lat_ns"} for r in data["runs"]],
        "summary": summary["table"],
    }
    args.json.write_text(json.dumps(slim, indent=1, default=str))
    if not args.no_plot:
        plot(data, summary, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
