"""``validate``: reject frames that cannot be a market-data message before decoding."""

from __future__ import annotations

from collections.abc import Callable

from reactivex import Observable

from ..errors import FrameError
from ..frames import ARRAY_LEADS, DATA_OPCODES, Frame
from ._stage import Stage, StageFactory, lift


def validate_stage(
    max_message_bytes: int | None,
) -> StageFactory[Frame | FrameError, Frame | FrameError]:
    """The logic of :func:`validate` as a stage (``_stage.py``)."""

    def make(emit: Callable[[Frame | FrameError], None]) -> Stage[Frame | FrameError]:
        return Stage(_validator(max_message_bytes, emit))

    return make


def _validator(
    max_message_bytes: int | None, emit: Callable[[Frame | FrameError], None]
) -> Callable[[Frame | FrameError], None]:
    def on_next(item: Frame | FrameError) -> None:
        if isinstance(item, FrameError):
            emit(item)
            return
        op = item.opcode
        if op not in DATA_OPCODES:
            return  # pings, pongs and closes are the transport's business
        payload = item.payload
        if not item.fin:
            emit(
                FrameError(
                    "fragment reached validate; put reassemble() first", payload, item.received_ns
                )
            )
            return
        if not payload:
            # Zero bytes is not an array. An empty array ("[]", 0x90) is a valid frame with
            # nothing in it (§6): it passes, and decoding yields nothing.
            emit(FrameError("empty frame (zero bytes)", b"", item.received_ns))
            return
        if max_message_bytes is not None and len(payload) > max_message_bytes:
            emit(
                FrameError(f"message exceeds {max_message_bytes} bytes", payload, item.received_ns)
            )
            return
        first = payload[0]
        lead = ord(first) if isinstance(first, str) else first
        # A JSON (§4.1) or MessagePack array; anything else cannot hold messages.
        if lead not in ARRAY_LEADS:
            emit(FrameError("frame is not an array", payload, item.received_ns))
            return
        emit(item)

    return on_next


def validate_(
    max_message_bytes: int | None = None,
) -> Callable[[Observable[Frame | FrameError]], Observable[Frame | FrameError]]:
    return lift(validate_stage(max_message_bytes))
