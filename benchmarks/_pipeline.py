"""The in-process pipeline, from ``Frame`` objects to observers, without a socket.

Shared by ``bench_pipeline.py`` (pytest-benchmark), ``bench_route.py`` and ``e2e.py`` (which
measures the pipeline's cost against the number of subscriptions in the same run as the
socket benchmarks).

"N subscriptions" means: the stream carries N symbols and each (channel, symbol) of
``trades``, ``quotes`` and ``bars`` has its own observer — 3·N router entries, every message
delivered to exactly one observer. So the work per message is the same for any N and only
the size of the routing table changes: the pipeline's cost must not grow with it.

Observers are registered exactly as ``StreamClient`` registers them: the
``AutoDetachObserver`` that ``Observable.subscribe(fn)`` makes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack
import orjson
from frames import Workload, rfc3339, symbols
from reactivex.observer.autodetachobserver import AutoDetachObserver
from reactivex.subject import Subject

from rxalpaca.codec import Codec
from rxalpaca.frames import Frame, Opcode
from rxalpaca.metrics import Metrics
from rxalpaca.operators import Router, decode, meter, pipeline, reassemble, route, validate

CHANNELS = ("trades", "quotes", "bars")
RECEIVED_NS = 1_709_652_600_500_000_000
UNIVERSE = 1000  # symbols of the stream every case is derived from


@dataclass
class Counter:
    """The cheapest observer body: count."""

    n: int = 0

    def __call__(self, _record: object) -> None:
        self.n += 1


def workload(subscriptions: int, frames: int = 400, seed: int = 1) -> Workload:
    """Frames of 1-20 messages over exactly ``subscriptions`` symbols.

    Every N gets the *same* frames — the 1,000-symbol stream, each symbol renamed to one of
    the N — so batch sizes and the message mix are identical and only the routing table's
    size differs between cases.
    """
    if not 1 <= subscriptions <= UNIVERSE:
        raise ValueError(f"1..{UNIVERSE} subscriptions")
    base = Workload.build(symbols=UNIVERSE, frames=frames, batch=(1, 20), seed=seed)
    if subscriptions == UNIVERSE:
        return base
    names = symbols(subscriptions, seed)
    rename = {s: names[i % subscriptions] for i, s in enumerate(symbols(UNIVERSE, seed))}
    batches = [[{**m, "S": rename[m["S"]]} for m in b] for b in base.batches]
    json_frames = [orjson.dumps([{**m, "t": rfc3339(m["t"])} for m in b]) for b in batches]
    msgpack_frames = [
        msgpack.packb(
            [{**m, "t": msgpack.Timestamp.from_unix_nano(m["t"])} for m in b], use_bin_type=True
        )
        for b in batches
    ]
    return Workload(f"{subscriptions}sym-1to20", batches, json_frames, msgpack_frames)


def to_frames(w: Workload, encoding: str) -> list[Frame]:
    """The workload as the transport hands it on: one ``Frame`` per WebSocket frame."""
    if encoding == "json":
        return [Frame(p, Opcode.TEXT, True, RECEIVED_NS) for p in w.json_frames]
    return [Frame(p, Opcode.BINARY, True, RECEIVED_NS) for p in w.msgpack_frames]


#: The class :func:`subscribed_router` builds; pipeline_ratio.py swaps in a baseline's.
router_class: type[Router] = Router


def subscribed_router(
    subscriptions: int, counter: Counter, metrics: Metrics | None = None, seed: int = 1
) -> Router:
    """A router with one observer per (channel, symbol) of ``workload(subscriptions)``."""
    router = router_class(metrics)
    for ch in CHANNELS:
        for sym in symbols(subscriptions, seed):
            router.add(ch, sym, AutoDetachObserver(on_next=counter))
    return router


@dataclass
class Pipeline:
    """reassemble → validate → decode → meter → route, fed through a ``Subject``.

    ``fused=True``: the five stages as ``ops.pipeline`` fuses them into one Rx hop — what
    ``StreamClient`` runs on its socket thread; ``False``: the five operators piped one
    after another (each an Rx hop), as ``stage_costs`` grows them.
    """

    subscriptions: int
    encoding: str
    frames_per_run: int = 400
    fused: bool = False
    counter: Counter = field(default_factory=Counter)
    rest: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.w = workload(self.subscriptions, self.frames_per_run)
        self.frames = to_frames(self.w, self.encoding)
        self.metrics = Metrics()
        self.router = subscribed_router(self.subscriptions, self.counter, self.metrics)
        self.codec = Codec("iex", self.encoding)  # type: ignore[arg-type]
        self.subject: Subject[Frame] = Subject()
        if self.fused:
            chain = self.subject.pipe(pipeline(self.codec, self.metrics, self.router))
        else:
            chain = self.subject.pipe(
                reassemble(),
                validate(),
                decode(self.codec),
                meter(self.metrics),
                route(self.router),
            )
        chain.subscribe(self.rest.append)

    def run(self) -> int:
        """Push every frame; return the messages delivered."""
        before = self.counter.n
        on_next = self.subject.on_next
        for f in self.frames:
            on_next(f)
        return self.counter.n - before

    def run_without_rx(self) -> int:
        """The same decode and dispatch, called directly: what the Rx operators add."""
        before = self.counter.n
        dec, dispatch = self.codec.decode, self.router.dispatch
        for f in self.frames:
            dispatch(dec(f.payload, f.received_ns))
        return self.counter.n - before

    def run_decode_only(self) -> int:
        """Only the codec: the floor under the pipeline."""
        dec = self.codec.decode
        n = 0
        for f in self.frames:
            n += len(dec(f.payload, f.received_ns))
        return n


def per_frame_us(fn: Callable[[], object], frames: int, repeat: int = 7, number: int = 3) -> float:
    """Best-of-``repeat`` microseconds per frame of ``fn`` (which handles ``frames`` frames)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best / frames * 1e6


STAGES = ("reassemble", "validate", "decode", "meter", "route")


def stage_costs(encoding: str, subscriptions: int = 1000, rounds: int = 15) -> dict[str, float]:
    """µs per frame added by each operator, measured by growing the chain one stage at a
    time on a ``Subject`` (``"subject"`` is the Subject's own cost, which the transport does
    not pay), plus the codec alone, decode + dispatch without Rx, and websocket-client's
    frame parsing (``recv_frame`` over an in-memory buffer: framing without the kernel)."""
    p = Pipeline(subscriptions, encoding)
    n = len(p.frames)
    ops: list[Any] = [
        reassemble(),
        validate(),
        decode(Codec("iex", encoding)),  # type: ignore[arg-type]
        meter(Metrics()),
        route(p.router),
    ]
    runs: dict[str, Callable[[], object]] = {}
    for k, name in enumerate(("subject", *STAGES)):
        subject: Subject[Frame] = Subject()
        (subject.pipe(*ops[:k]) if k else subject).subscribe(lambda _: None)
        runs[name] = _feeder(subject.on_next, p.frames)
    runs["codec_only"] = p.run_decode_only
    runs["without_rx"] = p.run_without_rx
    runs["ws_framing"] = websocket_framing(p.frames)
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(rounds):  # interleaved, so drift on a noisy machine hits every run alike
        for name, fn in runs.items():
            best[name] = min(best[name], per_frame_us(fn, n, repeat=1, number=2))
    out: dict[str, float] = {}
    previous = 0.0
    for name in ("subject", *STAGES):  # the chain grown one stage at a time: differences
        out[name] = best[name] - previous
        previous = best[name]
    out["total"] = previous
    for name in ("codec_only", "without_rx", "ws_framing"):
        out[name] = best[name]
    out["messages_per_frame"] = p.w.messages / n
    return out


def _feeder(on_next: Callable[[Frame], None], frames: list[Frame]) -> Callable[[], None]:
    def run() -> None:
        for f in frames:
            on_next(f)

    return run


def websocket_framing(frames: list[Frame]) -> Callable[[], None]:
    """websocket-client's ``frame_buffer.recv_frame`` reading the frames from memory in
    64 KiB chunks (as rxalpaca's buffered recv serves it): framing without the kernel."""
    from websocket._abnf import frame_buffer

    payloads = [f.payload.encode() if isinstance(f.payload, str) else f.payload for f in frames]
    stream = b"".join(
        _header(int(f.opcode), len(p)) + p for f, p in zip(frames, payloads, strict=True)
    )

    def run() -> None:
        pos = 0
        buf = b""
        at = 0

        def recv(size: int) -> bytes:
            nonlocal pos, buf, at
            if at >= len(buf):
                buf, at = stream[pos : pos + 64 * 1024], 0
                pos += len(buf)
            chunk = buf[at : at + size]
            at += len(chunk)
            return chunk

        fb = frame_buffer(recv, True)
        for _ in frames:
            fb.recv_frame()

    return run


def _header(opcode: int, size: int) -> bytes:
    if size < 126:
        return bytes((0x80 | opcode, size))
    if size < 1 << 16:
        return bytes((0x80 | opcode, 126)) + size.to_bytes(2, "big")
    return bytes((0x80 | opcode, 127)) + size.to_bytes(8, "big")
