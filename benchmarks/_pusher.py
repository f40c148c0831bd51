"""A lean, pre-encoded Alpaca-protocol pusher for ``e2e.py`` (run as its own process).

It speaks just enough of the protocol for a client to reach the data: the greeting
``[{"T":"success","msg":"connected"}]``, ``authenticated`` in reply to ``auth``, the full
subscription state in reply to ``subscribe`` — then, once every symbol of its workload is
subscribed on ``trades``, ``quotes`` and ``bars``, it pushes pre-encoded frames. The
WebSocket handshake, the client's pings and the close are handled by ``websockets``; the
data frames are written to the transport already framed (server frames are unmasked), so
the pusher spends next to nothing per frame and the client is always the bottleneck.

What the client gets is chosen by the URL path (any suffix, such as the ``/v2/iex`` a
client appends, is ignored):

* ``/flood/<json|msgpack>/<symbols>/<cycles>`` — the workload ``cycles`` times, as fast as
  the socket takes it;
* ``/paced/<json|msgpack>/<symbols>/<cycles>/<rate>`` — the same at ``rate`` messages/s.
  Every trade's timestamp ``t`` carries ``time.time_ns()`` taken just before its frame is
  written (RFC 3339 with nine fraction digits in JSON, a MessagePack timestamp 64), so the
  client computes latency from the record as users read it, ``time_ns() - timestamp_ns``,
  on one clock; its id ``i`` carries the same stamp as an integer (for the no-read
  diagnostic client).

Started as ``python benchmarks/_pusher.py --frames 2000 --symbols 100,1000``, it prints one
JSON line — ``{"port": ..., "workloads": {"json/100": {"frames", "messages", "t", "q",
"b"}, ...}}`` — and serves until SIGTERM or until its stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import stat
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import orjson
from websockets.asyncio.server import ServerConnection, serve

sys.path.insert(0, str(Path(__file__).resolve().parent))
from frames import Workload, rfc3339, symbols

#: Placeholder for a trade's ``i``: 19 decimal digits (like ``time_ns()`` until 2286) in
#: JSON, a full-width uint64 (``0xcf`` + 8 bytes) in MessagePack, so a stamp fits in place.
PLACEHOLDER = 1_111_111_111_111_111_111
_JSON_MARK = b'"i":' + str(PLACEHOLDER).encode()
_MSGPACK_MARK = b"\xa1i\xcf" + struct.pack(">Q", PLACEHOLDER)
#: Placeholder for a paced trade's ``t``: fixed width (nine fraction digits; MessagePack
#: timestamp 64, ``d7 ff`` + 8 bytes), so a stamp fits in place.
T_PLACEHOLDER_NS = 4_102_444_799_999_999_999  # 2099-12-31T23:59:59.999999999Z
_JSON_T_MARK = b'"t":"2099-12-31T23:59:59.999999999Z"'
_MSGPACK_T_MARK = b"\xa1t" + msgpack.packb(msgpack.Timestamp.from_unix_nano(T_PLACEHOLDER_NS))
CHANNELS = ("trades", "quotes", "bars")
TEXT, BINARY = 0x1, 0x2


def ws_header(opcode: int, size: int) -> bytes:
    """An unmasked, final server frame header (RFC 6455 §5.2)."""
    first = 0x80 | opcode
    if size < 126:
        return bytes((first, size))
    if size < 1 << 16:
        return bytes((first, 126)) + size.to_bytes(2, "big")
    return bytes((first, 127)) + size.to_bytes(8, "big")


@dataclass(frozen=True)
class Prepared:
    """One workload in one encoding, ready to write."""

    encoding: str
    symbols: list[str]
    #: Paced: header, payload, id stamp offsets, n, time stamp offsets (trades' ``t`` stamped).
    frames: list[tuple[bytes, bytes, tuple[int, ...], int, tuple[int, ...]]]
    flood: bytes  # every frame, framed, back to back: one cycle
    counts: dict[str, int]

    @classmethod
    def build(cls, workload: Workload, names: list[str], encoding: str) -> Prepared:
        frames = []
        flood_parts = []
        for batch in workload.batches:
            opcode = TEXT if encoding == "json" else BINARY
            real = _encode([_wire(m, encoding, stamped=False) for m in batch], encoding)
            flood_parts += [ws_header(opcode, len(real)), real]  # flood: the workload's times
            payload = _encode([_wire(m, encoding, stamped=True) for m in batch], encoding)
            trades = sum(m["T"] == "t" for m in batch)
            if encoding == "json":
                ids = _offsets(payload, _JSON_MARK, 4, trades)
                times = _offsets(payload, _JSON_T_MARK, 5, trades)
            else:
                ids = _offsets(payload, _MSGPACK_MARK, 3, trades)
                times = _offsets(payload, _MSGPACK_T_MARK, 4, trades)
            frames.append((ws_header(opcode, len(payload)), payload, ids, len(batch), times))
        flood = b"".join(flood_parts)
        counts = {"frames": workload.frames, "messages": workload.messages, "t": 0, "q": 0, "b": 0}
        for batch in workload.batches:
            for m in batch:
                counts[m["T"]] += 1
        return cls(encoding, names, frames, flood, counts)


def _encode(messages: list[dict[str, Any]], encoding: str) -> bytes:
    if encoding == "json":
        return orjson.dumps(messages)
    return msgpack.packb(messages, use_bin_type=True)  # type: ignore[no-any-return]


def _offsets(payload: bytes, mark: bytes, skip: int, expected: int) -> tuple[int, ...]:
    """Where each placeholder's value starts (``skip`` bytes into its mark)."""
    out = []
    start = payload.find(mark)
    while start >= 0:
        out.append(start + skip)
        start = payload.find(mark, start + 1)
    if len(out) != expected:
        raise AssertionError(f"{len(out)} placeholders {mark!r} found, {expected} trades")
    return tuple(out)


def _wire(message: dict[str, Any], encoding: str, *, stamped: bool) -> dict[str, Any]:
    """The message as the server writes it; when ``stamped``, a trade's id and time are
    the stamp placeholders."""
    ns = message["t"]
    if stamped and message["T"] == "t":
        ns = T_PLACEHOLDER_NS
    t = rfc3339(ns) if encoding == "json" else msgpack.Timestamp.from_unix_nano(ns)
    out = {**message, "t": t}
    if stamped and message["T"] == "t":
        out["i"] = PLACEHOLDER
    return out


def _rfc3339_ns(ns: int) -> bytes:
    """Nine fraction digits, always (the placeholder's width)."""
    seconds, frac = divmod(ns, 1_000_000_000)
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{frac:09d}Z").encode()


class Pusher:
    """The server: prepared workloads, and one handler per connection."""

    def __init__(self, workloads: dict[str, Prepared]) -> None:
        self.workloads = workloads

    async def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        parts = ws.request.path.strip("/").split("/")
        mode, encoding, nsym, cycles = parts[0], parts[1], parts[2], int(parts[3])
        rate = float(parts[4]) if mode == "paced" else 0.0
        prepared = self.workloads[f"{encoding}/{nsym}"]
        is_json = encoding == "json"

        async def reply(message: dict[str, Any]) -> None:
            if is_json:
                await ws.send(orjson.dumps([message]).decode())
            else:
                await ws.send(msgpack.packb([message], use_bin_type=True))

        await reply({"T": "success", "msg": "connected"})
        wanted = set(prepared.symbols)
        subscribed: dict[str, set[str]] = {ch: set() for ch in CHANNELS}
        pushing: asyncio.Task[None] | None = None
        try:
            async for raw in ws:
                msg = (
                    orjson.loads(raw)
                    if isinstance(raw, str) or raw[:1] == b"{"
                    else (msgpack.unpackb(raw))
                )
                action = msg.get("action")
                if action == "auth":
                    await reply({"T": "success", "msg": "authenticated"})
                    continue
                if action not in ("subscribe", "unsubscribe"):
                    continue
                for ch in CHANNELS:
                    syms = msg.get(ch) or ()
                    if action == "subscribe":
                        subscribed[ch].update(syms)
                    else:
                        subscribed[ch].difference_update(syms)
                state = {ch: sorted(subscribed[ch]) for ch in CHANNELS}
                await reply(
                    {
                        "T": "subscription",
                        **state,
                        "corrections": state["trades"],
                        "cancelErrors": state["trades"],
                    }
                )
                if pushing is None and all(subscribed[ch] >= wanted for ch in CHANNELS):
                    pushing = asyncio.create_task(self._push(ws, prepared, cycles, rate))
        finally:
            if pushing is not None:
                pushing.cancel()

    @staticmethod
    async def _push(ws: ServerConnection, p: Prepared, cycles: int, rate: float) -> None:
        transport: Any = ws.transport
        write = transport.write
        if not rate:
            for _ in range(cycles):
                write(p.flood)
                await ws.drain()
            return
        clock, stamp_clock = time.perf_counter, time.time_ns
        is_json = p.encoding == "json"
        pack_into = struct.Struct(">Q").pack_into
        start = clock() + 0.005
        sent = 0
        for _ in range(cycles):
            for header, payload, offsets, n, times in p.frames:
                delay = start + sent / rate - clock()
                if delay > 0:
                    await asyncio.sleep(delay)
                buf = bytearray(header + payload)
                base = len(header)
                ns = stamp_clock()
                if is_json:
                    digits = str(ns).encode()
                    for off in offsets:
                        buf[base + off : base + off + 19] = digits
                    text = _rfc3339_ns(ns)
                    for off in times:
                        buf[base + off : base + off + 30] = text
                else:
                    for off in offsets:
                        pack_into(buf, base + off, ns)
                    stamp = ((ns % 1_000_000_000) << 34) | (ns // 1_000_000_000)
                    for off in times:
                        pack_into(buf, base + off, stamp)
                write(buf)
                sent += n
                if transport.get_write_buffer_size() > 1 << 20:
                    await ws.drain()  # a client that cannot keep up: don't buffer forever


async def _serve(workloads: dict[str, Prepared]) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)

    if stat.S_ISFIFO(os.fstat(0).st_mode):
        # Started by e2e.py with a pipe on stdin: its end means the parent went away.
        def on_stdin() -> None:
            if not os.read(0, 4096):
                loop.remove_reader(0)
                stop.set()

        loop.add_reader(0, on_stdin)
    pusher = Pusher(workloads)
    async with serve(
        pusher.handler, "127.0.0.1", 0, ping_interval=None, compression=None, max_size=1 << 24
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        info = {
            "port": port,
            "workloads": {k: w.counts for k, w in workloads.items()},
            "symbols": {k.split("/")[1]: w.symbols for k, w in workloads.items()},
        }
        sys.stdout.write(orjson.dumps(info).decode() + "\n")
        sys.stdout.flush()
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000, help="frames per workload cycle")
    parser.add_argument("--symbols", default="100,1000", help="symbol counts, comma-separated")
    parser.add_argument("--batch", default="1,20", help="messages per frame: min,max")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    lo, hi = (int(x) for x in args.batch.split(","))
    workloads: dict[str, Prepared] = {}
    for n in (int(x) for x in args.symbols.split(",")):
        w = Workload.build(symbols=n, frames=args.frames, batch=(lo, hi), seed=args.seed)
        names = symbols(n, args.seed)  # the workload's symbols (every one is subscribed)
        for enc in ("json", "msgpack"):
            workloads[f"{enc}/{n}"] = Prepared.build(w, names, enc)
    asyncio.run(_serve(workloads))


if __name__ == "__main__":
    main()
