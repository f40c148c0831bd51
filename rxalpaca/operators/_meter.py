"""``meter``: count frames, bytes and messages as batches go by (socket thread only)."""

from __future__ import annotations

from collections.abc import Callable

from reactivex import Observable, abc

from ..errors import FrameError
from ..metrics import Metrics
from ._decode import Batch


def meter_(metrics: Metrics) -> Callable[[Observable[Batch]], Observable[Batch]]:
    def meter(source: Observable[Batch]) -> Observable[Batch]:
        def subscribe(
            observer: abc.ObserverBase[Batch],
            scheduler: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            m = metrics
            by_class = m.messages_by_class

            def on_next(batch: Batch) -> None:
                m.frames_received += 1
                m.bytes_received += batch.nbytes
                if batch.failed:
                    m.frames_failed += 1
                else:
                    m.frames_decoded += 1
                    m.last_message_ns = batch.received_ns
                for item in batch.items:
                    by_class[type(item)] += 1
                m.decode_failures = by_class[FrameError]
                observer.on_next(batch)

            return source.subscribe(
                on_next, observer.on_error, observer.on_completed, scheduler=scheduler
            )

        return Observable(subscribe)

    return meter
