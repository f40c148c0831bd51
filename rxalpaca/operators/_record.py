"""``record``: write every raw frame that passes to a recording, unchanged downstream."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from reactivex import Observable, abc
from reactivex.disposable import Disposable

from ..errors import FrameError
from ..frames import Frame
from ..recording import Recorder, RecordingHeader


def record_(
    target: str | os.PathLike[str] | Recorder,
    header: RecordingHeader | None,
    options: dict[str, Any],
) -> Callable[[Observable[Frame | FrameError]], Observable[Frame | FrameError]]:
    def operator(source: Observable[Frame | FrameError]) -> Observable[Frame | FrameError]:
        def subscribe(
            observer: abc.ObserverBase[Frame | FrameError],
            scheduler: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            # A path: one recorder per subscription, closed with it. A Recorder: the
            # caller's, left open (it may record more than this stream).
            own = not isinstance(target, Recorder)
            rec = (
                Recorder(target, header or RecordingHeader(), **options)
                if not isinstance(target, Recorder)
                else target
            )

            def on_next(frame: Frame | FrameError) -> None:
                rec.frame(frame)
                observer.on_next(frame)

            def on_error(error: Exception) -> None:
                if own:
                    rec.close()
                observer.on_error(error)

            def on_completed() -> None:
                if own:
                    rec.close()
                observer.on_completed()

            sub = source.subscribe(on_next, on_error, on_completed, scheduler=scheduler)

            def dispose() -> None:
                sub.dispose()
                if own:
                    rec.close()

            return Disposable(dispose)

        return Observable(subscribe)

    return operator
