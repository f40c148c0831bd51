"""Fault injection (S34, S36, S38, S39): bad frames, mute, drops, errors on demand.

:func:`queue_fault` is the sans-I/O part (a canned faulty frame queued on a
session); :class:`FaultScripts` holds the script methods, mixed into
``AlpacaStreamServer``. Every fault acts on one connection or on every open one.
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any

from ..wire import encode_item, join_items
from .core import ConnSelector, ServerCore
from .session import BaseSession

__all__ = ["Fault", "FaultScripts", "queue_fault"]


class Fault(StrEnum):
    """Canned faulty frames for :meth:`AlpacaStreamServer.send_fault` (S34)."""

    TRUNCATED = "truncated"  #: a data frame cut in half
    INVALID = "invalid"  #: bytes that are neither JSON nor MessagePack
    UNKNOWN_TYPE = "unknown_type"  #: a message with an unknown ``T``
    MISSING_FIELDS = "missing_fields"  #: a trade without its required keys
    EXTRA_FIELDS = "extra_fields"  #: a trade with unknown extra keys
    NULL_LISTS = "null_lists"  #: a subscription ack whose lists are null
    CONTROL_IN_BATCH = "control_in_batch"  #: a success message between two trades
    SPLIT = "split"  #: a valid frame sent as continuation fragments
    NOT_AN_ARRAY = "not_an_array"  #: a bare object instead of an array


def queue_fault(s: BaseSession, kind: Fault, now: int) -> None:
    """Queue the faulty frame ``kind`` on ``s``, in its encoding; ``now`` stamps trades (ns)."""
    trade = {"T": "t", "S": "AAPL", "i": 1, "x": "V", "p": 100.5, "s": 10, "c": ["@"], "z": "C"}
    trade["t"] = now
    enc = s.encoding
    if kind is Fault.TRUNCATED:
        frame = join_items([encode_item(trade, enc, s.width)], enc)
        s.enqueue(frame[: len(frame) // 2])
    elif kind is Fault.INVALID:
        s.enqueue(b"\xc1 not a frame {[" if not s.text else b"{not json")
    elif kind is Fault.UNKNOWN_TYPE:
        s.send_records([{"T": "zz", "S": "AAPL", "t": now}])
    elif kind is Fault.MISSING_FIELDS:
        s.send_records([{"T": "t", "S": "AAPL"}])
    elif kind is Fault.EXTRA_FIELDS:
        s.send_records([{**trade, "zz": 1, "extra": [1, 2]}])
    elif kind is Fault.NULL_LISTS:
        ack: dict[str, Any] = {"T": "subscription"}
        ack.update({str(ch): None for ch in s.endpoint.ack_channels})
        s.send_records([ack])
    elif kind is Fault.CONTROL_IN_BATCH:
        s.send_records([trade, {"T": "success", "msg": "authenticated"}, {**trade, "i": 2}])
    elif kind is Fault.SPLIT:
        # Marks this very frame, not whatever frame happens to be written next.
        s.send_records([trade], split=3)
    elif kind is Fault.NOT_AN_ARRAY:
        s.enqueue(encode_item(trade, enc, s.width))


class FaultScripts(ServerCore):
    """The fault-injection script methods (mixed into ``AlpacaStreamServer``)."""

    def send_error(
        self, code: int, conn: ConnSelector = None, *, close: bool = False, msg: str | None = None
    ) -> None:
        """Send ``[{"T":"error","code":code,"msg":…}]`` (the documented text by default)."""

        def act(s: BaseSession) -> None:
            s.send_error(code, msg)
            if close:
                s.close_protocol(f"error {code}")

        self._call(lambda: self._each(conn, act))

    def inject_internal_error(
        self, conn: ConnSelector = None, *, close: bool | None = None
    ) -> None:
        """S39: ``500 internal error``, then close unless ``close=False`` (server default)."""
        default = self._config.protocol.close_on_internal_error
        self.send_error(500, conn, close=default if close is None else close)

    def send_fault(self, fault: Fault | str, conn: ConnSelector = None) -> None:
        """Send one canned faulty frame (S34), in each connection's encoding."""
        kind = Fault(fault)
        self._call(lambda: self._each(conn, lambda s: queue_fault(s, kind, time.time_ns())))

    def split_next_frame(self, n_parts: int = 3, conn: ConnSelector = None) -> None:
        """Send the next non-empty frame written to ``conn`` (whatever is already
        queued comes first) split into ``n_parts`` fragments (S34).

        ``websockets`` ends a fragmented message with an empty final continuation frame,
        so the client sees ``n_parts`` non-empty fragments plus that one.
        """

        def act(s: BaseSession) -> None:
            s.split_next = max(2, n_parts)

        self._call(lambda: self._each(conn, act))

    def corrupt_next_frame(self, conn: ConnSelector = None) -> None:
        """Truncate the next frame sent to ``conn`` (its payload becomes undecodable, S34)."""

        def act(s: BaseSession) -> None:
            s.corrupt_next = True

        self._call(lambda: self._each(conn, act))

    def mute(self, conn: ConnSelector = None, on: bool = True) -> None:
        """S36: stop (or resume) sending data; pings are still answered."""

        def act(s: BaseSession) -> None:
            s.muted = on

        def run() -> None:
            self._each(conn, act)
            self._changed()

        self._call(run)

    def drop(self, conn: ConnSelector = None) -> None:
        """S38: close abruptly — the TCP connection is aborted, no close frame."""
        self._call(lambda: self._each(conn, lambda s: s.drop("dropped")))

    def close(self, conn: ConnSelector = None, code: int = 1000, reason: str = "") -> None:
        """S38: close with a close frame (after what is already queued)."""
        why = reason or "closed by server"
        self._call(lambda: self._each(conn, lambda s: s.close_after_flush(code, why)))

    def fail_next_auth(self, code: int = 406) -> None:
        """Answer the next auth attempt (any connection) with error ``code``."""
        self._call(lambda: self._directory.fail_next.append(code))

    def slow_auth(self, seconds: float) -> None:
        """Delay every auth reply by ``seconds`` (0 to stop)."""

        def run() -> None:
            self._auth_delay = seconds

        self._call(run)
