"""``decode``: frames to batches of typed records (one ``Batch`` per frame)."""

from __future__ import annotations

from collections.abc import Callable

from reactivex import Observable

from ..codec import Codec, Decoded
from ..errors import FrameError
from ..frames import Batch, Frame
from ._stage import Stage, StageFactory, lift


def decode_stage(codec: Codec) -> StageFactory[Frame | FrameError, Batch[Decoded]]:
    """The logic of :func:`decode` as a stage (``_stage.py``)."""

    def make(emit: Callable[[Batch[Decoded]], None]) -> Stage[Frame | FrameError]:
        return Stage(_decoder(codec, emit))

    return make


def _decoder(
    codec: Codec, emit: Callable[[Batch[Decoded]], None]
) -> Callable[[Frame | FrameError], None]:
    dec = codec.decode

    def on_next(item: Frame | FrameError) -> None:
        if isinstance(item, FrameError):
            emit(Batch([item], len(item.excerpt), item.received_ns, True))
            return
        items = dec(item.payload, item.received_ns)  # never raises
        # Cheap test first: a failed frame starts with an error (rare path after).
        failed = (
            bool(items)
            and type(items[0]) is FrameError
            and all(type(x) is FrameError for x in items)
        )
        emit(Batch(items, len(item.payload), item.received_ns, failed))

    return on_next


def decode_(codec: Codec) -> Callable[[Observable[Frame | FrameError]], Observable[Batch[Decoded]]]:
    return lift(decode_stage(codec))
