"""``validate``: reject frames that cannot be a market-data message before decoding."""

from __future__ import annotations

from collections.abc import Callable

from reactivex import Observable

from ..errors import FrameError
from ..frames import Frame, Opcode
from ._stage import Stage, StageFactory, lift

_DATA_OPCODES = frozenset({Opcode.TEXT, Opcode.BINARY})

# A frame is a JSON array (§4.1) or a MessagePack array (fixarray 0x90-0x9f, array16
# 0xdc, array32 0xdd). Anything else cannot hold messages; say so before decoding.
_JSON_START = frozenset(b"[ \t\r\n")
_MSGPACK_ARRAY = frozenset(range(0x90, 0xA0)) | {0xDC, 0xDD}
_ARRAY_START = _JSON_START | _MSGPACK_ARRAY


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
        if op not in _DATA_OPCODES:
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
        if lead not in _ARRAY_START:
            emit(FrameError("frame is not an array", payload, item.received_ns))
            return
        emit(item)

    return on_next


def validate_(
    max_message_bytes: int | None = None,
) -> Callable[[Observable[Frame | FrameError]], Observable[Frame | FrameError]]:
    return lift(validate_stage(max_message_bytes))
