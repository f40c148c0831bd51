"""``meter``: count frames, bytes and messages as batches go by (socket thread only)."""

from __future__ import annotations

from collections import _count_elements  # type: ignore[attr-defined]  # C helper
from collections.abc import Callable

from reactivex import Observable, abc

from ..errors import FrameError
from ..metrics import Metrics
from ._decode import Batch


def meter_step(metrics: Metrics, emit: Callable[[Batch], None]) -> Callable[[Batch], None]:
    """The logic of :func:`meter` as a plain function feeding ``emit`` (socket thread)."""
    m = metrics
    by_class = m.messages_by_class

    def on_next(batch: Batch) -> None:
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
        emit(batch)

    return on_next


def meter_(metrics: Metrics) -> Callable[[Observable[Batch]], Observable[Batch]]:
    def meter(source: Observable[Batch]) -> Observable[Batch]:
        def subscribe(
            observer: abc.ObserverBase[Batch],
            scheduler: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            step = meter_step(metrics, observer.on_next)
            return source.subscribe(
                step, observer.on_error, observer.on_completed, scheduler=scheduler
            )

        return Observable(subscribe)

    return meter
