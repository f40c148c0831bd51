"""The fused pipeline behaves exactly like the five operators piped one after another."""

from __future__ import annotations

from typing import Any

import reactivex

from rxalpaca import ops
from rxalpaca.codec import Codec
from rxalpaca.errors import FrameError
from rxalpaca.frames import Frame, Opcode
from rxalpaca.metrics import Metrics

T, C = Opcode.TEXT, Opcode.CONTINUATION
Q = b'{"T":"q","S":"%s","bp":1,"bs":1,"ap":2,"as":1,"t":"2024-01-01T00:00:00.5Z"}'

FRAMES: list[Frame | FrameError] = [
    Frame(b'[{"T":"success","msg":"connected"}]', T, True, 1),
    Frame(b"[" + Q % b"AAPL" + b"," + Q % b"MSFT" + b"]", T, True, 2),
    Frame(b"[" + Q % b"AAPL", T, False, 3),
    Frame(b"]", C, True, 4),
    Frame(b"garbage", T, True, 5),
    Frame(b"", Opcode.PING, True, 6),
    FrameError("refused by the transport", b"", 7),
    Frame(b"[" + Q % b"IBM" + b',{"T":"zz"},' + Q % b"AAPL" + b"]", T, True, 8),
    Frame(b"x" * 300, C, True, 9),
]


class Sink:
    def __init__(self) -> None:
        self.items: list[Any] = []

    def on_next(self, v: Any) -> None:
        self.items.append(v)

    def on_error(self, e: Exception) -> None:
        raise AssertionError(e)

    def on_completed(self) -> None:
        pass


def run(fused: bool) -> tuple[list[Any], list[Any], dict[str, Any]]:
    metrics = Metrics()
    router = ops.Router(metrics)
    sink = Sink()
    router.add("quotes", "AAPL", sink)
    codec = Codec("stocks", "json")
    if fused:
        op = [ops.pipeline(codec, metrics, router, 200)]
    else:
        op = [
            ops.reassemble(200),
            ops.validate(),
            ops.decode(codec),
            ops.meter(metrics),
            ops.route(router),
        ]
    rest: list[Any] = []
    reactivex.from_iterable(FRAMES).pipe(*op).subscribe(rest.append)
    snap = metrics.snapshot()
    for volatile in ("observer_time_p50_us", "observer_time_p99_us", "observer_batches"):
        snap.pop(volatile)
    return sink.items, [repr(x) for x in rest], snap


def test_fused_equals_piped() -> None:
    assert run(fused=True) == run(fused=False)
    delivered, rest, snap = run(fused=True)
    assert [q.received_ns for q in delivered] == [2, 4, 8]
    assert snap["frames_received"] == snap["frames_decoded"] + snap["frames_failed"]
    assert len(rest) >= 4  # greeting, garbage, transport error, unknown T
