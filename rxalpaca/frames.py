"""Frames and batches: one WebSocket frame as the transport saw it, and what came out of it.

Frames are the items of the transport's hot Observable. Continuation frames are
kept as they came (``opcode == Opcode.CONTINUATION``); the ``reassemble``
operator joins them. ``decode`` turns each whole frame into one :class:`Batch`
of records. ``NamedTuple`` is the cheapest immutable record to build on the
socket thread, once per frame.

The few facts about frames that more than one module needs are defined here, once:
which opcodes carry data, which lead bytes can start a message array (§6) and the
default cap on a message's size.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final, Generic, NamedTuple, TypeVar

__all__ = [
    "ARRAY_LEADS",
    "CONTROL_OPCODES",
    "DATA_OPCODES",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "JSON_ARRAY_LEADS",
    "MSGPACK_ARRAY_LEADS",
    "Batch",
    "Frame",
    "Opcode",
]

_T = TypeVar("_T")


class Opcode(IntEnum):
    """WebSocket opcodes (RFC 6455 §5.2)."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


#: The opcodes of frames that carry messages; the others are the transport's business.
DATA_OPCODES: Final = frozenset({Opcode.TEXT, Opcode.BINARY})
#: Ping, pong and close (RFC 6455 §5.5): at most 125 bytes, never fragmented.
CONTROL_OPCODES: Final = frozenset({Opcode.CLOSE, Opcode.PING, Opcode.PONG})

#: Lead bytes of a JSON array (§4.1): ``[`` after optional whitespace.
JSON_ARRAY_LEADS: Final = frozenset(b"[ \t\r\n")
#: Lead bytes of a MessagePack array: fixarray 0x90-0x9f, array16 0xdc, array32 0xdd.
MSGPACK_ARRAY_LEADS: Final = frozenset(range(0x90, 0xA0)) | {0xDC, 0xDD}
#: A frame starting with anything else cannot hold messages (§6).
ARRAY_LEADS: Final = JSON_ARRAY_LEADS | MSGPACK_ARRAY_LEADS

#: The largest message kept by default: news bodies can be large (§4.17); still bounded.
DEFAULT_MAX_MESSAGE_BYTES: Final = 64 * 1024 * 1024


class Frame(NamedTuple):
    """One WebSocket frame.

    Attributes:
        payload: the frame's bytes (text frames too: decoding validates UTF-8 in C).
        opcode: see :class:`Opcode`.
        fin: ``False`` when more continuation frames follow.
        received_ns: ``time.time_ns()`` when the frame was read off the socket.
    """

    payload: bytes | str
    opcode: int = Opcode.TEXT
    fin: bool = True
    received_ns: int = 0


class Batch(NamedTuple, Generic[_T]):
    """The records of one frame, in wire order (``ops.decode`` emits one per frame).

    Attributes:
        items: records, ``Unknown`` messages and ``FrameError`` values
            (``Batch[Decoded]``, see :data:`rxalpaca.codec.Decoded`).
        nbytes: the frame's size on the wire.
        received_ns: when the frame arrived.
        failed: nothing good came out of the frame.
    """

    items: list[_T]
    nbytes: int
    received_ns: int
    failed: bool = False
