"""``validate``: reject frames that cannot be a market-data message before decoding."""

from __future__ import annotations

from collections.abc import Callable

from reactivex import Observable, abc

from ..errors import FrameError
from ..frames import Frame, Opcode

_DATA_OPCODES = frozenset({Opcode.TEXT, Opcode.BINARY})

# A frame is a JSON array (§4.1) or a MessagePack array (fixarray 0x90-0x9f, array16
# 0xdc, array32 0xdd). Anything else cannot hold messages; say so before decoding.
_JSON_START = frozenset(b"[ \t\r\n")
_MSGPACK_ARRAY = frozenset(range(0x90, 0xA0)) | {0xDC, 0xDD}
_ARRAY_START = _JSON_START | _MSGPACK_ARRAY


def validate_step(
    max_message_bytes: int | None, emit: Callable[[Frame | FrameError], None]
) -> Callable[[Frame | FrameError], None]:
    """The logic of :func:`validate` as a plain function feeding ``emit``."""

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
            emit(FrameError("empty frame", b"", item.received_ns))
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
    def validate(source: Observable[Frame | FrameError]) -> Observable[Frame | FrameError]:
        def subscribe(
            observer: abc.ObserverBase[Frame | FrameError],
            scheduler: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            step = validate_step(max_message_bytes, observer.on_next)
            return source.subscribe(
                step, observer.on_error, observer.on_completed, scheduler=scheduler
            )

        return Observable(subscribe)

    return validate
