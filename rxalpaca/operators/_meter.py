"""``meter``: count frames, bytes and messages as batches go by (socket thread only)."""

from __future__ import annotations

from collections import _count_elements  # type: ignore[attr-defined]  # C helper
from collections.abc import Callable
from contextlib import suppress

from reactivex import Observable

from ..codec import Decoded
from ..errors import FrameError
from ..frames import Batch
from ..metrics import Metrics
from ._stage import Stage, StageFactory, lift


def meter_stage(metrics: Metrics) -> StageFactory[Batch[Decoded], Batch[Decoded]]:
    """The logic of :func:`meter` as a stage (``_stage.py``; socket thread)."""

    def make(emit: Callable[[Batch[Decoded]], None]) -> Stage[Batch[Decoded]]:
        return Stage(_meter(metrics, emit))

    return make


def _meter(
    metrics: Metrics, emit: Callable[[Batch[Decoded]], None]
) -> Callable[[Batch[Decoded]], None]:
    m = metrics
    by_class = m.messages_by_class
    lag = m.lag
    every = max(1, m.lag_sample_every)
    wait = 0  # frames to let go by before the next lag sample: the first data frame is one

    def on_next(batch: Batch[Decoded]) -> None:
        nonlocal wait
        m.frames_received += 1
        m.bytes_received += batch.nbytes
        if batch.failed:
            m.frames_failed += 1
        else:
            m.frames_decoded += 1
            m.last_frame_ns = batch.received_ns  # any frame; the data clock is route's
        # Counting in C (Counter's helper) instead of a Python loop per message.
        _count_elements(by_class, map(type, batch.items))
        m.decode_failures = by_class.get(FrameError, 0)
        # The lag histogram: one data frame in ``every``, its first record (the oldest:
        # the server appends), one timestamp read, a subtraction and a bisect — a cost
        # per sampled frame, whatever the number of messages or subscriptions.
        if wait:
            wait -= 1
        else:
            items = batch.items
            if items and items[0].CHANNEL:
                wait = every - 1
                with suppress(ValueError):  # a timestamp that does not parse: no sample
                    lag.observe(batch.received_ns - items[0].timestamp_ns)  # type: ignore[union-attr]
        emit(batch)

    return on_next


def meter_(metrics: Metrics) -> Callable[[Observable[Batch[Decoded]]], Observable[Batch[Decoded]]]:
    return lift(meter_stage(metrics))
