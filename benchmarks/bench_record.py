"""Recording on the socket thread: ``Recorder.frame`` against the pipeline it sits beside.

``pytest benchmarks/bench_record.py --benchmark-enable`` times both per frame of the
e2e corpus (100 symbols, 1-20 messages a frame); CI runs each once, untimed, and the
``record_replay.py`` smoke.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pytest
import record_replay
from frames import Workload
from reactivex.subject import Subject

from rxalpaca import Codec, Metrics, ops
from rxalpaca.frames import Frame, Opcode
from rxalpaca.recording import Recorder, RecordingHeader
from rxalpaca.router import Router

WORKLOAD = Workload.build(symbols=100, frames=500, batch=(1, 20))


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_recorder_frame(benchmark: Any, tmp_path: Path, encoding: str) -> None:
    frames = [
        Frame(p, Opcode.TEXT if encoding == "json" else Opcode.BINARY, True, 1)
        for p in (WORKLOAD.json_frames if encoding == "json" else WORKLOAD.msgpack_frames)
    ]
    rec = Recorder(tmp_path / "b.rxa", RecordingHeader(feed="iex", encoding=encoding))

    def put_all() -> None:
        for f in frames:
            rec.frame(f)

    benchmark(put_all)
    rec.close()
    assert rec.written >= len(frames) and rec.dropped == 0


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_pipeline_frame(benchmark: Any, encoding: Literal["json", "msgpack"]) -> None:
    frames = [
        Frame(p, Opcode.TEXT if encoding == "json" else Opcode.BINARY, True, 1)
        for p in (WORKLOAD.json_frames if encoding == "json" else WORKLOAD.msgpack_frames)
    ]
    metrics = Metrics()
    source: Subject[Frame] = Subject()
    source.pipe(ops.pipeline(Codec("stocks", encoding), metrics, Router(metrics))).subscribe()

    def push_all() -> None:
        for f in frames:
            source.on_next(f)

    benchmark(push_all)
    assert metrics.frames_decoded >= len(frames)


@pytest.mark.timeout(300)
def test_record_replay_smoke() -> None:
    assert record_replay.main(["--smoke"]) == 0
