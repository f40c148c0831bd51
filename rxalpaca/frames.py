"""The Frame record: one WebSocket frame as the transport saw it.

Frames are the items of the transport's hot Observable. Continuation frames are
kept as they came (``opcode == Opcode.CONTINUATION``); the ``reassemble``
operator joins them. A ``NamedTuple`` is the cheapest immutable record to build
on the socket thread, once per frame.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

__all__ = ["CONTROL_OPCODES", "DATA_OPCODES", "DEFAULT_MAX_MESSAGE_BYTES", "Frame", "Opcode"]


class Opcode(IntEnum):
    """WebSocket opcodes (RFC 6455 §5.2)."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


#: The opcodes that start a message (RFC 6455 §5.6); a continuation frame carries on one.
DATA_OPCODES = frozenset({Opcode.TEXT, Opcode.BINARY})
#: Ping, pong and close (RFC 6455 §5.5): at most 125 bytes, never fragmented.
CONTROL_OPCODES = frozenset({Opcode.CLOSE, Opcode.PING, Opcode.PONG})

#: The largest message accepted by default: news bodies can be large (§4.17); still bounded.
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


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
