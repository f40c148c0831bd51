"""``reassemble``: join WebSocket continuation frames into whole messages (RFC 6455 §5.4)."""

from __future__ import annotations

import time
from collections.abc import Callable

from reactivex import Observable, abc

from ..errors import FrameError
from ..frames import Frame, Opcode

_DATA_OPCODES = frozenset({Opcode.TEXT, Opcode.BINARY})

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # news bodies can be large (§4.17); still bounded


Emit = Callable[[Frame | FrameError], None]


def reassemble_step(max_message_bytes: int, emit: Emit) -> Callable[[Frame | FrameError], None]:
    """The logic of :func:`reassemble` as a plain function feeding ``emit``.

    Each call builds fresh state: one step per subscription (a reconnect starts clean).
    The fused pipeline chains steps directly, saving an Rx hop per stage.
    """
    return reassemble_steps(max_message_bytes, emit)[0]


def reassemble_steps(
    max_message_bytes: int, emit: Emit
) -> tuple[Callable[[Frame | FrameError], None], Callable[[int], None]]:
    """``(on_next, on_end)``: :func:`reassemble_step` plus what to do when the source
    completes — ``on_end(now_ns)`` reports a message left unfinished as a FrameError,
    so nothing is lost without a trace."""
    if max_message_bytes <= 0:
        raise ValueError("max_message_bytes must be positive")
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
        if op not in _DATA_OPCODES:
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

    def on_end(now_ns: int) -> None:
        nonlocal discarding
        if parts:
            stub = parts[0]
            parts.clear()
            emit(FrameError("stream ended inside a fragmented message", stub, now_ns))
        discarding = False

    return on_next, on_end


def reassemble_(
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> Callable[[Observable[Frame | FrameError]], Observable[Frame | FrameError]]:
    if max_message_bytes <= 0:
        raise ValueError("max_message_bytes must be positive")

    def reassemble(source: Observable[Frame | FrameError]) -> Observable[Frame | FrameError]:
        def subscribe(
            observer: abc.ObserverBase[Frame | FrameError],
            scheduler: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            step, end = reassemble_steps(max_message_bytes, observer.on_next)

            def on_completed() -> None:
                # A message cut off by the end of the stream becomes an error value. (On
                # on_error the error itself says the stream broke; nothing to add.)
                end(time.time_ns())
                observer.on_completed()

            return source.subscribe(step, observer.on_error, on_completed, scheduler=scheduler)

        return Observable(subscribe)

    return reassemble


def _as_bytes(payload: bytes | str) -> bytes:
    return payload.encode("utf-8") if isinstance(payload, str) else payload
