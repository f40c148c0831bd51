"""RFC 6455 framing as a push parser: bytes in, frames and events out (sans-I/O).

The transport reads the socket and feeds what it read; the parser hands back
everything those bytes completed, in order::

    >>> parser = FrameParser(max_frame_bytes=1024)
    >>> parser.feed(b"\\x81\\x02[]\\x89\\x00\\x82", received_ns=7)  # text, ping, half a header
    [Frame(payload=b'[]', opcode=1, fin=True, received_ns=7), Ping(payload=b'')]
    >>> parser.feed(b"\\x03ab", received_ns=8)  # a 3-byte binary frame, 2 bytes of it so far
    []
    >>> parser.feed(b"c", received_ns=9)
    [Frame(payload=b'abc', opcode=2, fin=True, received_ns=9)]

It owns no socket, thread or clock (the caller passes ``received_ns``), so it is
tested with byte strings alone, as python-websockets tests its ``frames.py``.

What comes out of :meth:`FrameParser.feed`:

* :class:`~rxalpaca.frames.Frame` for each data frame (text, binary, continuation),
  as it came: the ``reassemble`` operator joins fragments;
* :class:`Ping`, :class:`Pong`, :class:`Close` for control frames, in their place
  in the stream (they may come between the fragments of a message, §5.4);
* :class:`TooLarge` once per message whose frame announces more than
  ``max_frame_bytes``: the frame is refused at its header and its payload skipped
  as it arrives, never buffered; the message's further fragments are dropped;
* :class:`Failure` when the server broke the framing rules: the connection must
  close with its ``code`` (1002 protocol error, 1009 message too big).

After a :class:`Close` or a :class:`Failure` the parser is closed: it ignores any
further bytes (nothing after a close frame counts, §5.5.1).

Checks (RFC 6455 §5): no RSV bit (we negotiate no extension), no mask bit (a server
never masks, §5.1), no reserved opcode, control frames unfragmented and at most 125
bytes, a 64-bit length with its top bit clear, a close payload of 0 or at least 2
bytes, and messages in order: a continuation only inside a message, a new message
only after the last one finished (§5.4).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from .frames import CONTROL_OPCODES, Frame, Opcode

__all__ = [
    "Close",
    "CloseCode",
    "Failure",
    "FrameEvent",
    "FrameParser",
    "Ping",
    "Pong",
    "TooLarge",
    "default_max_skip_bytes",
]


class CloseCode(IntEnum):
    """The close codes the parser and the transport use (RFC 6455 §7.4.1)."""

    NORMAL = 1000
    PROTOCOL_ERROR = 1002
    NO_STATUS = 1005  #: a close frame without a code (never sent on the wire)
    MESSAGE_TOO_BIG = 1009


@dataclass(frozen=True, slots=True)
class Ping:
    """The server pinged: answer with a pong carrying ``payload`` (§5.5.2)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    """The server answered a ping (or sent an unsolicited pong, §5.5.3)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """The server sent a close frame (§5.5.1).

    Attributes:
        code: its status code; :attr:`CloseCode.NO_STATUS` (1005) when it had none.
        reason: its reason text (invalid UTF-8 replaced, not refused: we are
            leaving anyway).
    """

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class TooLarge:
    """A frame announced more than ``max_frame_bytes``: its message is lost.

    Reported once per message, at the first oversized frame's header; that frame's
    payload and the message's further fragments are dropped without being kept.

    Attributes:
        length: the payload length the header announced.
        fin: the header's FIN bit (``False``: the message's later fragments follow
            and are dropped too).
    """

    length: int
    fin: bool


@dataclass(frozen=True, slots=True)
class Failure:
    """The server broke the framing rules: close the connection with ``code``.

    The last event the parser returns; later bytes are ignored.

    Attributes:
        code: the close code to send (1002 protocol error, 1009 message too big).
        reason: what was wrong, in words.
    """

    code: int
    reason: str


#: What :meth:`FrameParser.feed` returns items of.
FrameEvent = Frame | Ping | Pong | Close | TooLarge | Failure

# Message states between frames.
_IDLE, _IN_MESSAGE, _DISCARDING = 0, 1, 2


def default_max_skip_bytes(max_frame_bytes: int | None) -> int:
    """How many bytes of an oversized frame are worth reading to drop it.

    Up to this the payload is skipped and the connection goes on; beyond it the
    parser fails with 1009: a reconnect is cheaper than reading gigabytes.
    """
    return max(16 * (max_frame_bytes or 0), 16 * 1024 * 1024)


class FrameParser:
    """Frames out of a byte stream from a WebSocket server (one connection's).

    Push-style: :meth:`feed` takes whatever the socket gave and returns every event
    those bytes complete. Split the stream anywhere — one byte at a time or many
    frames at once — and the events are the same. Memory is bounded: at most one
    incomplete frame of up to ``max_frame_bytes`` (plus one read) is held, and an
    oversized frame's payload is skipped, not held.

    Not thread-safe: one feeder (the socket thread).

    Args:
        max_frame_bytes: refuse a frame announcing more bytes than this, at its
            header (:class:`TooLarge`); ``None``: no limit.
        max_skip_bytes: an oversized frame larger than this is a
            :class:`Failure` (1009) instead of being skipped; default
            :func:`default_max_skip_bytes`.
    """

    __slots__ = ("_closed", "_have", "_limit", "_max_skip", "_need", "_pending", "_skip", "_state")

    def __init__(
        self, max_frame_bytes: int | None = None, max_skip_bytes: int | None = None
    ) -> None:
        # 2**63 - 1 is the largest length a valid header can announce (§5.2).
        self._limit = (1 << 63) - 1 if max_frame_bytes is None else max_frame_bytes
        self._max_skip = (
            default_max_skip_bytes(max_frame_bytes) if max_skip_bytes is None else max_skip_bytes
        )
        # An incomplete frame: its bytes so far, in pieces joined once ``_need`` arrived
        # (joining on every feed would copy a large frame once per read: quadratic).
        self._pending: list[bytes] = []
        self._have = 0
        self._need = 0
        self._skip = 0  # payload bytes of an oversized frame still to drop
        self._state = _IDLE
        self._closed = False

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame."""
        return self._have

    @property
    def closed(self) -> bool:
        """True once a :class:`Close` or :class:`Failure` was returned."""
        return self._closed

    def feed(self, data: bytes, received_ns: int = 0) -> list[FrameEvent]:
        """Take the next bytes of the stream; return the events they complete, in order.

        Args:
            data: the bytes, as read (any amount, any split).
            received_ns: stamped on each data frame completed by ``data`` (the caller's
                ``time.time_ns()`` of the read; the parser has no clock).
        """
        if self._closed:
            return []
        pos = 0
        if self._skip:
            if len(data) <= self._skip:
                self._skip -= len(data)
                return []
            pos, self._skip = self._skip, 0
        elif self._pending:
            self._pending.append(data)
            self._have += len(data)
            if self._have < self._need:
                return []
            data = b"".join(self._pending)
            self._pending = []
            self._have = 0

        # The hot loop (every market-data frame passes here): locals only, the common
        # case (a data frame of < 64 KiB, whole in ``data``) first and branch-light.
        events: list[FrameEvent] = []
        append = events.append
        limit = self._limit
        state = self._state
        size = len(data)
        while True:
            if size - pos < 2:
                need = 2
                break
            b1 = data[pos]
            b2 = data[pos + 1]
            if b1 & 0x70 or b2 & 0x80:
                append(self._fail(_bad_bits(b1, b2)))
                return events
            op = b1 & 0x0F
            fin = b1 > 0x7F
            n = b2
            if op > 2:  # not continuation, text or binary (int literals: enum lookups cost)
                if op not in CONTROL_OPCODES:
                    append(self._fail(f"reserved opcode {op:#x}"))
                    return events
                if not fin:
                    append(self._fail(f"fragmented control frame (opcode {op:#x})"))
                    return events
                if n > 125:
                    append(self._fail(f"control frame over 125 bytes (opcode {op:#x})"))
                    return events
                end = pos + 2 + n
                if end > size:
                    need = 2 + n
                    break
                payload = data[pos + 2 : end]
                pos = end
                if op == Opcode.PING:
                    append(Ping(payload))
                elif op == Opcode.PONG:
                    append(Pong(payload))
                else:
                    append(self._close(payload))
                    return events
                continue
            head = 2
            if n > 125:
                head = 4 if n == 126 else 10
                if size - pos < head:
                    need = head
                    break
                n = int.from_bytes(data[pos + 2 : pos + head], "big")
                if n >> 63:
                    append(self._fail("64-bit payload length with its top bit set (§5.2)"))
                    return events
            # Messages in order (§5.4): a first frame only between messages, a
            # continuation only inside one.
            if op:
                if state:
                    append(self._fail("a new message began before the last one finished"))
                    return events
            elif not state:
                append(self._fail("continuation frame outside a message"))
                return events
            if n > limit:
                # Refused at its header, once per message (its fragments go with it).
                if state != _DISCARDING:
                    append(TooLarge(n, fin))
                if n > self._max_skip:
                    append(
                        self._fail(
                            f"a frame of {n} bytes announced, over the {self._max_skip} "
                            "bytes worth skipping",
                            CloseCode.MESSAGE_TOO_BIG,
                        )
                    )
                    return events
                state = _IDLE if fin else _DISCARDING
                pos += head + n
                if pos > size:
                    self._skip = pos - size
                    pos = size
                continue
            end = pos + head + n
            if end > size:
                need = head + n
                break
            if state == _DISCARDING:
                # A later fragment of a message already reported as too large.
                state = _IDLE if fin else _DISCARDING
            else:
                append(Frame(data[pos + head : end], op, fin, received_ns))
                state = _IDLE if fin else _IN_MESSAGE
            pos = end
        self._state = state
        if pos < size:
            rest = data[pos:] if pos else data
            self._pending = [rest]
            self._have = len(rest)
            self._need = need
        return events

    def _fail(self, reason: str, code: int = CloseCode.PROTOCOL_ERROR) -> Failure:
        self._closed = True
        self._pending = []
        self._have = 0
        return Failure(code, reason)

    def _close(self, payload: bytes) -> Close | Failure:
        if len(payload) == 1:
            return self._fail("close frame with a 1-byte payload")  # §5.5.1: 0 or >= 2
        self._closed = True
        self._pending = []
        self._have = 0
        if not payload:
            return Close(CloseCode.NO_STATUS, "")
        return Close(int.from_bytes(payload[:2], "big"), payload[2:].decode("utf-8", "replace"))


def _bad_bits(b1: int, b2: int) -> str:
    if b1 & 0x70:
        return f"reserved bits set in frame header {b1:#04x} (no extension was negotiated)"
    return "masked frame from the server (§5.1: a server never masks)"
