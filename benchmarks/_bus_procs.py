"""The processes of ``bus.py``: a gateway, or one bus consumer (one per process).

Run as ``python benchmarks/_bus_procs.py`` with one JSON line on stdin::

    {"role": "consumer", "nats": "nats://...", "prefix": "...", "encoding": "msgpack",
     "symbols": [...], "expected": {"t": n, "q": n, "b": n}, "timeout": s, "result_file": path}
    {"role": "gateway", "nats": "nats://...", "prefix": "...", "encoding": "msgpack",
     "url": "ws://127.0.0.1:PORT/flood/...", "result_file": path}

Both print ``READY`` once set up — a consumer when every NATS subscription is made and
flushed to the server, so nothing the gateway publishes later can miss it; a gateway when it
is connected to NATS (the Alpaca socket opens at the first lease). A consumer does the same
work per message as ``_clients.py``'s (the same ``Sink``) and exits when every expected
message arrived, or when ``END`` arrives on stdin; the gateway serves until ``END``.

The gateway samples, every 10 ms on a thread of its own, its process CPU time
(``time.process_time()``: every thread, nanosecond clock) and its counters; the CPU between
the first and the last sample at which it published something is its cost for the data
(connecting, authenticating and the leases are left out).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _clients import Result, Sink, _total


def _stdin_end(event: threading.Event) -> None:
    """Set ``event`` at ``END`` on stdin, or when stdin closes (the parent went away)."""

    def read() -> None:
        for line in sys.stdin:
            if line.strip() == "END":
                break
        event.set()

    threading.Thread(target=read, daemon=True).start()


def _ready() -> None:
    sys.stdout.write("READY\n")
    sys.stdout.flush()


def run_consumer(cfg: dict[str, Any]) -> Result:
    """A ``BusClient`` with one subscription per channel over every symbol."""
    from rxalpaca.bus import BusClient

    sink = Sink(_total(cfg))
    lat = sink.lat
    clock = time.time_ns
    total = sink.total

    def counted() -> None:
        sink.n += 1
        if sink.n == 1:
            sink.started()
        if sink.n == total:
            sink.finish()

    def on_trade(t: Any) -> None:
        lat.append(clock() - t.id)
        counted()

    def on_quote(q: Any) -> None:
        sink.quotes += 1
        counted()

    def on_bar(b: Any) -> None:
        sink.bars += 1
        counted()

    syms = cfg["symbols"]
    client: Any = BusClient(
        cfg["nats"], "iex", prefix=cfg["prefix"], encoding=cfg["encoding"], name="bench"
    )
    errors: list[str] = []
    client.errors.subscribe(lambda e: errors.append(repr(e)))
    client.trades(*syms).subscribe(on_trade)
    client.quotes(*syms).subscribe(on_quote)
    client.bars(*syms).subscribe(on_bar)
    # Ready only once NATS has every subscription (the bus thread makes them).
    deadline = time.monotonic() + cfg["timeout"]
    while len(client._subs) < 3 * len(syms) or client._nc is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"consumer: {len(client._subs)} NATS subscriptions made")
        time.sleep(0.01)
    client._lt.call(client._nc.flush(timeout=10), timeout=15)
    if os.environ.get("RXALPACA_BENCH_FAST_PATH"):
        _fast_path(client)
    end = threading.Event()
    _stdin_end(end)
    _ready()
    while not sink.done.wait(0.05):
        if end.is_set() or time.monotonic() > deadline:
            if sink.n and not sink.last:
                sink.finish()  # short: the report says how many arrived
            break
    out = sink.result("bus", cfg)
    out["errors"] = errors[:5]
    out["metrics"] = {k: v for k, v in client.metrics.snapshot().items() if not isinstance(v, dict)}
    client.close()
    return out


class _Data:
    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


def _fast_path(client: Any) -> None:
    """PROTOTYPE (measured in docs/benchmarks.md, not in the library): hand the data
    subscriptions' payloads from nats-py's protocol parser straight to the pipeline,
    skipping nats-py's ``Msg``, its per-subscription queue and task, and the callback
    coroutine. (It also skips nats-py's client-side pending limits: a slow consumer is
    then NATS-server-side only.)"""
    nc = client._nc
    original = nc._process_msg
    sids = {sub._id for sub in client._subs.values()}
    deliver = client._deliver

    async def process_msg(sid: int, subject: bytes, reply: bytes, data: bytes, hdr: Any) -> None:
        if sid in sids and not hdr:
            deliver(_Data(data))
            return
        await original(sid, subject, reply, data, hdr)

    nc._process_msg = process_msg


def run_gateway(cfg: dict[str, Any]) -> Result:
    """A ``Gateway`` on the pusher's URL, its CPU sampled while it publishes."""
    from rxalpaca.bus import Gateway

    gw = Gateway(
        cfg["nats"],
        "iex",
        prefix=cfg["prefix"],
        url=cfg["url"],
        key="key",
        secret="secret",
        encoding=cfg["encoding"],
        name="bench-gateway",
    )
    gw.start()
    metrics = gw.bus_metrics
    samples: list[tuple[float, float, int, int]] = []  # wall, cpu, frames, published
    stop = threading.Event()

    def sample() -> None:
        last = (-1, -1)
        clock, cpu = time.perf_counter, time.process_time
        while not stop.wait(0.01):
            now = (metrics.frames_cut, metrics.messages_published)
            if now != last and now[1] > 0:
                samples.append((clock(), cpu(), *now))
            last = now

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    end = threading.Event()
    _stdin_end(end)
    _ready()
    end.wait()
    stop.set()
    sampler.join()
    health = gw.health()["gateway"]
    gw.close()
    out: Result = {"role": "gateway", "ok": True, "gateway": health}
    if len(samples) >= 2:
        (w0, c0, f0, p0), (w1, c1, f1, p1) = samples[0], samples[-1]
        out.update(wall_s=w1 - w0, cpu_s=c1 - c0, frames=f1 - f0, published=p1 - p0)
    return out


def main() -> int:
    cfg = json.loads(sys.stdin.readline())
    run = run_consumer if cfg["role"] == "consumer" else run_gateway
    result = run(cfg)
    with open(cfg["result_file"], "w") as f:
        f.write("RESULT " + json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
