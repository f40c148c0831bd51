"""A connection's outbound queue, bounded for slow clients (S37).

Sans-I/O: the session pushes :class:`Out` records, the connection's writer pops
them. When a client stops reading, the queue grows; past the server's
``max_buffer_messages`` / ``max_buffer_bytes`` the session gives up on the client
(``407 slow client``, best effort, then an abort: :class:`Abort`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["Abort", "Out", "Outbox"]


@dataclass(slots=True)
class Out:
    """One thing to write: a frame, or (``close``) a close handshake after the frames
    queued before it.

    Attributes:
        payload: the frame's bytes; ``text``: send as a text frame.
        data_count: data messages in the frame (0 for control frames).
        close: end the connection with ``code`` / ``reason`` instead of sending.
        split: send as this many continuation fragments (S34), 0 = whole.
    """

    payload: bytes
    text: bool
    data_count: int = 0
    close: bool = False
    code: int = 1000
    reason: str = ""
    split: int = 0

    def fragments(self) -> list[bytes]:
        """The payload cut into ``split`` near-equal parts (just one when not split)."""
        n = self.split
        if not n or not self.payload:
            return [self.payload]
        size = max(1, -(-len(self.payload) // n))
        return [self.payload[i : i + size] for i in range(0, len(self.payload), size)]


@dataclass(frozen=True, slots=True)
class Abort:
    """End the connection without a close frame (S37, S38).

    Attributes:
        reason: the connection's ``close_reason``.
        last_words: a frame to try to send first, only if it goes out without
            waiting (the 407 of a slow client); empty for a plain drop.
        grace: seconds between the last words and the abort.
    """

    reason: str
    last_words: bytes = b""
    grace: float = 0.0


class Outbox:
    """Frames waiting for the writer, with running totals for the S37 bound.

    A frame counts as ``max(data_count, 1)`` messages, so control frames count too.
    """

    __slots__ = ("_items", "bytes", "messages")

    def __init__(self) -> None:
        self._items: deque[Out] = deque()
        self.bytes = 0
        self.messages = 0

    def __len__(self) -> int:
        return len(self._items)

    def push(self, out: Out) -> None:
        """Queue ``out`` behind what is already queued."""
        self._items.append(out)
        self.bytes += len(out.payload)
        self.messages += max(out.data_count, 1)

    def pop(self) -> Out:
        """The oldest record.

        Raises:
            IndexError: the outbox is empty.
        """
        out = self._items.popleft()
        self.bytes -= len(out.payload)
        self.messages -= max(out.data_count, 1)
        return out

    def exceeds(self, max_messages: int | None, max_bytes: int | None) -> bool:
        """Whether the queue is past either bound (``None`` = unbounded)."""
        return (max_messages is not None and self.messages > max_messages) or (
            max_bytes is not None and self.bytes > max_bytes
        )

    def clear(self) -> None:
        """Forget everything queued (a slow client's backlog, S37)."""
        self._items.clear()
        self.bytes = self.messages = 0
