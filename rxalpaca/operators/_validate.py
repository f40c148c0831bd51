"""``validate``: reject frames that cannot be a market-data message before decoding."""

from __future__ import annotations

from collections.abc import Callable

from reactivex import Observable, abc

from ..errors import FrameError
from ..frames import Frame, Opcode

# A frame is a JSON array (§4.1) or a MessagePack array (fixarray 0x90-0x9f, array16
# 0xdc, array32 0xdd). Anything else cannot hold messages; say so before decoding.
_JSON_START = frozenset(b"[ \t\r\n")
_MSGPACK_ARRAY = frozenset(range(0x90, 0xA0)) | {0xDC, 0xDD}
_ARRAY_START = _JSON_START | _MSGPACK_ARRAY


def validate_(
    max_message_bytes: int | None = None,
) -> Callable[[Observable[Frame | FrameError]], Observable[Frame | FrameError]]:
    def validate(source: Observable[Frame | FrameError]) -> Observable[Frame | FrameError]:
        def subscribe(
            observer: abc.ObserverBase[Frame | FrameError],
            scheduler: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            def on_next(item: Frame | FrameError) -> None:
                if isinstance(item, FrameError):
                    observer.on_next(item)
                    return
                op = item.opcode
                if op not in (Opcode.TEXT, Opcode.BINARY):
                    return  # pings, pongs and closes are the transport's business
                payload = item.payload
                if not item.fin:
                    observer.on_next(
                        FrameError(
                            "fragment reached validate; put reassemble() first",
                            payload,
                            item.received_ns,
                        )
                    )
                    return
                if not payload:
                    observer.on_next(FrameError("empty frame", b"", item.received_ns))
                    return
                if max_message_bytes is not None and len(payload) > max_message_bytes:
                    observer.on_next(
                        FrameError(
                            f"message exceeds {max_message_bytes} bytes", payload, item.received_ns
                        )
                    )
                    return
                first = payload[0]
                lead = ord(first) if isinstance(first, str) else first
                if lead not in _ARRAY_START:
                    observer.on_next(FrameError("frame is not an array", payload, item.received_ns))
                    return
                observer.on_next(item)

            return source.subscribe(
                on_next, observer.on_error, observer.on_completed, scheduler=scheduler
            )

        return Observable(subscribe)

    return validate
