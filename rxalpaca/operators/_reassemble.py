"""``reassemble``: join WebSocket continuation frames into whole messages (RFC 6455 §5.4)."""

from __future__ import annotations

import time
from collections.abc import Callable

from reactivex import Observable

from ..errors import FrameError
from ..frames import DATA_OPCODES, DEFAULT_MAX_MESSAGE_BYTES, Frame, Opcode
from ._stage import Stage, StageFactory, lift

Emit = Callable[[Frame | FrameError], None]


def reassemble_stage(
    max_message_bytes: int,
) -> StageFactory[Frame | FrameError, Frame | FrameError]:
    """The logic of :func:`reassemble` as a stage (``_stage.py``).

    Its ``on_completed`` reports a message left unfinished as a FrameError, so nothing is
    lost without a trace. (On an error the error itself says the stream broke.)
    """
    if max_message_bytes <= 0:
        raise ValueError("max_message_bytes must be positive")

    def make(emit: Emit) -> Stage[Frame | FrameError]:
        return _reassembler(max_message_bytes, emit)

    return make


def _reassembler(max_message_bytes: int, emit: Emit) -> Stage[Frame | FrameError]:
    parts: list[bytes] = []
    opcode = 0
    size = 0
    discarding = False

    def on_next(frame: Frame | FrameError) -> None:
        nonlocal opcode, size, discarding
        if isinstance(frame, FrameError):
            # e.g. the transport refused an oversized frame: a message in progress died too.
            parts.clear()
            discarding = False
            emit(frame)
            return
        op = frame.opcode
        if op == Opcode.CONTINUATION:
            if not parts and not discarding:
                emit(
                    FrameError(
                        "continuation frame without a first fragment",
                        frame.payload,
                        frame.received_ns,
                    )
                )
                return
            if discarding:
                if frame.fin:
                    discarding = False
                return
            payload = _as_bytes(frame.payload)
            size += len(payload)
            if size > max_message_bytes:
                head = parts[0]
                parts.clear()
                discarding = not frame.fin
                emit(
                    FrameError(
                        f"message exceeds {max_message_bytes} bytes", head, frame.received_ns
                    )
                )
                return
            parts.append(payload)
            if frame.fin:
                whole = b"".join(parts)
                parts.clear()
                emit(Frame(whole, opcode, True, frame.received_ns))
            return
        if op not in DATA_OPCODES:
            emit(frame)  # control frames pass through untouched
            return
        if parts or discarding:
            # A new message began before the last one finished: report the stub.
            stub = parts[0] if parts else b""
            parts.clear()
            discarding = False
            emit(FrameError("message interrupted by a new message", stub, frame.received_ns))
        if frame.fin:
            if len(frame.payload) > max_message_bytes:
                emit(
                    FrameError(
                        f"message exceeds {max_message_bytes} bytes",
                        frame.payload,
                        frame.received_ns,
                    )
                )
                return
            emit(frame)
            return
        payload = _as_bytes(frame.payload)
        opcode = op
        size = len(payload)
        if size > max_message_bytes:
            discarding = True
            emit(
                FrameError(f"message exceeds {max_message_bytes} bytes", payload, frame.received_ns)
            )
            return
        parts.append(payload)

    def on_completed() -> None:
        nonlocal discarding
        if parts:
            stub = parts[0]
            parts.clear()
            emit(FrameError("stream ended inside a fragmented message", stub, time.time_ns()))
        discarding = False

    return Stage(on_next, on_completed)


def reassemble_(
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> Callable[[Observable[Frame | FrameError]], Observable[Frame | FrameError]]:
    return lift(reassemble_stage(max_message_bytes))


def _as_bytes(payload: bytes | str) -> bytes:
    return payload.encode("utf-8") if isinstance(payload, str) else payload
