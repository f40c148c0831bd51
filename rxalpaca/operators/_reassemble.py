"""``reassemble``: join WebSocket continuation frames into whole messages (RFC 6455 §5.4)."""

from __future__ import annotations

from collections.abc import Callable

from reactivex import Observable, abc

from ..errors import FrameError
from ..frames import Frame, Opcode

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # news bodies can be large (§4.17); still bounded


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
            # Per-subscription state: a resubscription (reconnect) starts clean.
            parts: list[bytes] = []
            opcode = 0
            size = 0
            discarding = False

            def on_next(frame: Frame | FrameError) -> None:
                nonlocal opcode, size, discarding
                if isinstance(frame, FrameError):
                    # e.g. the transport refused an oversized frame: a message in
                    # progress died with it.
                    parts.clear()
                    discarding = False
                    observer.on_next(frame)
                    return
                op = frame.opcode
                if op == Opcode.CONTINUATION:
                    if not parts and not discarding:
                        observer.on_next(
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
                        observer.on_next(
                            FrameError(
                                f"message exceeds {max_message_bytes} bytes",
                                head,
                                frame.received_ns,
                            )
                        )
                        return
                    parts.append(payload)
                    if frame.fin:
                        whole = b"".join(parts)
                        parts.clear()
                        observer.on_next(Frame(whole, opcode, True, frame.received_ns))
                    return
                if op not in (Opcode.TEXT, Opcode.BINARY):
                    observer.on_next(frame)  # control frames pass through untouched
                    return
                if parts or discarding:
                    # A new message began before the last one finished: report the stub.
                    stub = parts[0] if parts else b""
                    parts.clear()
                    discarding = False
                    observer.on_next(
                        FrameError("message interrupted by a new message", stub, frame.received_ns)
                    )
                if frame.fin:
                    if len(frame.payload) > max_message_bytes:
                        observer.on_next(
                            FrameError(
                                f"message exceeds {max_message_bytes} bytes",
                                frame.payload,
                                frame.received_ns,
                            )
                        )
                        return
                    observer.on_next(frame)
                    return
                payload = _as_bytes(frame.payload)
                opcode = op
                size = len(payload)
                if size > max_message_bytes:
                    discarding = True
                    observer.on_next(
                        FrameError(
                            f"message exceeds {max_message_bytes} bytes", payload, frame.received_ns
                        )
                    )
                    return
                parts.append(payload)

            return source.subscribe(
                on_next, observer.on_error, observer.on_completed, scheduler=scheduler
            )

        return Observable(subscribe)

    return reassemble


def _as_bytes(payload: bytes | str) -> bytes:
    return payload.encode("utf-8") if isinstance(payload, str) else payload
