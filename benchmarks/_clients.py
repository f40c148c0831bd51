"""The client side of ``e2e.py``: one client per process, so each has its own interpreter,
its own core and its own peak RSS.

Run as ``python benchmarks/_clients.py`` with a JSON config on stdin::

    {"client": "floor" | "rxalpaca" | "rxalpaca+dt" | "rxalpaca-noread" | "alpaca-py" | "bare",
     "url": "ws://127.0.0.1:PORT/...",
     "encoding": "json" | "msgpack", "symbols": [...], "expected": {"t": n, "q": n, "b": n},
     "timeout": seconds}

It prints one line, ``RESULT {json}`` (or writes it to ``"result_file"`` if the config
names one), and exits 0 — or non-zero if the counts do not
match. Every client does what a strategy does with each record: count it and read its
exchange time as exact integer nanoseconds; for a trade it appends ``time_ns()`` minus that
timestamp (the pusher stamps a paced trade's ``t`` with its send time). ``rxalpaca+dt``
also reads the ``datetime`` view and one field of every record; ``rxalpaca-noread`` is the
diagnostic that reads no timestamp (latency from the id, which the pusher stamps too).

Module-level imports are a few small standard-library modules; the ``bare`` baseline is a
``python -c`` that imports nothing.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from array import array
from collections.abc import Callable
from typing import Any

Result = dict[str, Any]


def _vm_kb(field: str) -> int:
    """``VmHWM`` / ``VmRSS`` of this process from /proc (``ru_maxrss`` would carry over
    from the parent across fork)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Sink:
    """The per-message work every client does, and the clock around it."""

    __slots__ = (
        "bars",
        "cpu_first",
        "cpu_last",
        "done",
        "first",
        "last",
        "lat",
        "n",
        "phases",
        "quotes",
        "total",
    )

    def __init__(self, total: int) -> None:
        self.total = total
        self.n = self.quotes = self.bars = 0
        # An array, not a list: samples must not add int objects to the peak RSS measured.
        self.lat = array("q")
        self.first = self.last = 0.0
        #: This process's CPU time (every thread) at the first and the last message.
        self.cpu_first = self.cpu_last = 0.0
        self.done = threading.Event()
        #: VmRSS (kB) after the imports and at the first data message (connected,
        #: authenticated, every subscription acknowledged), and the threads then (rss.py).
        self.phases: dict[str, int] = {"imported_kb": _vm_kb("VmRSS")}

    def started(self) -> None:
        """The first data message: the subscribed, idle client's footprint."""
        self.first = time.perf_counter()
        self.cpu_first = time.process_time()
        self.phases["first_message_kb"] = _vm_kb("VmRSS")
        self.phases["threads"] = threading.active_count()

    def finish(self) -> None:
        self.last = time.perf_counter()
        self.cpu_last = time.process_time()
        self.done.set()

    def result(self, client: str, cfg: dict[str, Any]) -> Result:
        hwm, rss = _vm_kb("VmHWM"), _vm_kb("VmRSS")  # first: the report below allocates
        counts = {"t": len(self.lat), "q": self.quotes, "b": self.bars}
        elapsed = self.last - self.first if self.last else 0.0
        return {
            "client": client,
            "encoding": cfg["encoding"],
            "symbols": len(cfg["symbols"]),
            "messages": self.n,
            "counts": counts,
            "ok": counts == cfg["expected"],
            "elapsed_s": elapsed,
            "rate": (self.n - 1) / elapsed if elapsed > 0 else 0.0,
            "cpu_s": self.cpu_last - self.cpu_first,
            "lat_ns": self.lat.tolist(),
            "vmhwm_kb": hwm,
            "vmrss_kb": rss,
            "phases": self.phases,
        }


def _total(cfg: dict[str, Any]) -> int:
    return int(sum(cfg["expected"].values()))


# ---------------------------------------------------------------- the floor

#: ``"YYYY-MM-DDTHH:MM:SS"`` -> that second in ns since the epoch (cleared when large).
_FLOOR_SECONDS: dict[str, int] = {}
#: ns per unit of a fraction of k digits.
_FLOOR_SCALE = tuple(10 ** (9 - k) for k in range(10))


def _civil_seconds(prefix: str) -> int:
    """``YYYY-MM-DDTHH:MM:SS`` (UTC) to seconds since the epoch (days from civil, H. Hinnant)."""
    y, m, d = int(prefix[0:4]), int(prefix[5:7]), int(prefix[8:10])
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    return days * 86400 + int(prefix[11:13]) * 3600 + int(prefix[14:16]) * 60 + int(prefix[17:19])


def floor_time_ns(
    text: str, _get: Callable[[str], int | None] = _FLOOR_SECONDS.get, _scale: Any = _FLOOR_SCALE
) -> int:
    """The floor's RFC 3339 (UTC, ``Z``) to exact ns, the fastest plain Python found: the whole
    second from a cache keyed by its 19-character prefix, the 1-9 fraction digits by ``int``.
    No validation: the floor trusts the server (``bench_codec.py`` measures it against
    ``timestamp_ns``)."""
    base = _get(text[:19])
    if base is None:
        if len(_FLOOR_SECONDS) > 4096:
            _FLOOR_SECONDS.clear()
        base = _FLOOR_SECONDS[text[:19]] = _civil_seconds(text) * 1_000_000_000
    fraction = text[20:-1]
    return base + int(fraction) * _scale[len(fraction)] if fraction else base


def run_floor(cfg: dict[str, Any]) -> Result:
    """websocket-client + orjson (or msgpack) into plain dicts, a plain callback, no Rx; every
    timestamp converted to exact ns (JSON: ``floor_time_ns``; MessagePack: by msgpack's C
    unpacker itself, ``timestamp=2``)."""
    import functools

    import websocket

    to_ns: Callable[[Any], int]
    if cfg["encoding"] == "json":
        import orjson

        loads: Callable[[Any], Any] = orjson.loads
        dumps: Callable[[Any], Any] = orjson.dumps
        opcode = websocket.ABNF.OPCODE_TEXT
        to_ns = floor_time_ns
    else:
        import msgpack

        loads = functools.partial(msgpack.unpackb, timestamp=2)  # ext -1 -> int ns, in C
        dumps, opcode = msgpack.packb, websocket.ABNF.OPCODE_BINARY
        to_ns = int
    sink = Sink(_total(cfg))
    lat = sink.lat
    clock = time.time_ns
    total = sink.total

    def on_message(m: dict[str, Any]) -> None:
        kind = m["T"]
        if kind == "t":
            lat.append(clock() - to_ns(m["t"]))
        elif kind == "q":
            to_ns(m["t"])
            sink.quotes += 1
        elif kind == "b":
            to_ns(m["t"])
            sink.bars += 1
        else:
            return  # control messages
        sink.n += 1
        if sink.n == 1:
            sink.started()
        if sink.n == total:
            sink.finish()

    ws = websocket.WebSocket(skip_utf8_validation=True)
    ws.connect(cfg["url"] + "/v2/iex", timeout=10)
    ws.send(dumps({"action": "auth", "key": "key", "secret": "secret"}), opcode)
    syms = cfg["symbols"]
    ws.send(dumps({"action": "subscribe", "trades": syms, "quotes": syms, "bars": syms}), opcode)
    recv = ws.recv_data
    deadline = time.monotonic() + cfg["timeout"]
    ws.settimeout(cfg["timeout"])
    while not sink.done.is_set() and time.monotonic() < deadline:
        _, data = recv()
        for m in loads(data):
            on_message(m)
    out = sink.result("floor", cfg)
    ws.close()
    return out


# ---------------------------------------------------------------- rxalpaca


def run_rxalpaca(cfg: dict[str, Any]) -> Result:
    """``StreamClient`` with one subscription per channel over every symbol; the observers
    read ``timestamp_ns`` (``rxalpaca+dt``: and ``timestamp`` and a field; ``rxalpaca-noread``:
    nothing)."""
    from rxalpaca import StreamClient

    variant = cfg["client"]

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
        lat.append(clock() - t.timestamp_ns)
        counted()

    def on_quote(q: Any) -> None:
        q.timestamp_ns  # noqa: B018 - the read is the point
        sink.quotes += 1
        counted()

    def on_bar(b: Any) -> None:
        b.timestamp_ns  # noqa: B018
        sink.bars += 1
        counted()

    if variant == "rxalpaca+dt":

        def on_trade(t: Any) -> None:
            lat.append(clock() - t.timestamp_ns)
            t.timestamp  # noqa: B018
            t.price  # noqa: B018
            counted()

        def on_quote(q: Any) -> None:
            q.timestamp_ns  # noqa: B018
            q.timestamp  # noqa: B018
            q.bid_price  # noqa: B018
            sink.quotes += 1
            counted()

        def on_bar(b: Any) -> None:
            b.timestamp_ns  # noqa: B018
            b.timestamp  # noqa: B018
            b.close  # noqa: B018
            sink.bars += 1
            counted()

    elif variant == "rxalpaca-noread":  # the diagnostic: no timestamp read at all

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
    client = StreamClient(
        feed="iex", url=cfg["url"], key="key", secret="secret", encoding=cfg["encoding"]
    )
    errors: list[str] = []
    client.errors.subscribe(lambda e: errors.append(repr(e)))
    if cfg.get("record"):  # record_replay.py: the cost of recording while streaming
        client.record(cfg["record"])
    client.trades(*syms).subscribe(on_trade)
    client.quotes(*syms).subscribe(on_quote)
    client.bars(*syms).subscribe(on_bar)
    sink.done.wait(cfg["timeout"])
    out = sink.result(variant, cfg)
    out["errors"] = errors[:5]
    out["metrics"] = {k: v for k, v in client.metrics.snapshot().items() if not isinstance(v, dict)}
    client.close()
    return out


# ---------------------------------------------------------------- alpaca-py


def run_alpaca_py(cfg: dict[str, Any]) -> Result:
    """alpaca-py's ``StockDataStream`` (MessagePack, pydantic models, async handlers)."""
    from alpaca.data.live import StockDataStream

    sink = Sink(_total(cfg))
    lat = sink.lat
    clock = time.time_ns
    total = sink.total
    stream = StockDataStream("key", "secret", url_override=cfg["url"] + "/v2/iex")

    async def counted() -> None:
        sink.n += 1
        if sink.n == 1:
            sink.started()
        if sink.n == total:
            sink.finish()
            await stream.stop_ws()

    # alpaca-py's records hold the time as a datetime already (microseconds).
    async def on_trade(t: Any) -> None:
        lat.append(clock() - round(t.timestamp.timestamp() * 1e6) * 1000)
        await counted()

    async def on_quote(q: Any) -> None:
        q.timestamp  # noqa: B018
        sink.quotes += 1
        await counted()

    async def on_bar(b: Any) -> None:
        b.timestamp  # noqa: B018
        sink.bars += 1
        await counted()

    syms = cfg["symbols"]
    stream.subscribe_trades(on_trade, *syms)
    stream.subscribe_quotes(on_quote, *syms)
    stream.subscribe_bars(on_bar, *syms)

    def watchdog() -> None:
        if not sink.done.wait(cfg["timeout"]):
            stream.stop()

    threading.Thread(target=watchdog, daemon=True).start()
    stream.run()
    return sink.result("alpaca-py", cfg)


def run_bare(cfg: dict[str, Any]) -> Result:
    """The baseline: a bare interpreter (``python -c``, nothing imported) reports its peak RSS."""
    import subprocess

    code = (
        "f=open('/proc/self/status');"
        "print([int(l.split()[1]) for l in f if l.startswith('VmHWM')][0])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {"client": "bare", "vmhwm_kb": int(out.stdout), "ok": True}


RUNNERS: dict[str, Callable[[dict[str, Any]], Result]] = {
    "floor": run_floor,
    "rxalpaca": run_rxalpaca,
    "rxalpaca+dt": run_rxalpaca,
    "rxalpaca-noread": run_rxalpaca,
    "alpaca-py": run_alpaca_py,
    "bare": run_bare,
}


def main() -> int:
    cfg = json.loads(sys.stdin.read())
    result = RUNNERS[cfg["client"]](cfg)
    line = "RESULT " + json.dumps(result) + "\n"
    if cfg.get("result_file"):  # e.g. under a profiler that shares our stdout
        with open(cfg["result_file"], "w") as f:
            f.write(line)
    else:
        sys.stdout.write(line)
        sys.stdout.flush()
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
