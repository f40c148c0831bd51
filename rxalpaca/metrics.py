"""Counters and timings of one client: the books that must balance.

Threading: every counter is written by one thread only — the socket thread that
runs the pipeline — except ``handler_errors`` and ``errors_published`` which an
observer on another scheduler may also bump (``+=`` on an int attribute is not
atomic in general, so those two go through a small lock). Readers on any other
thread get whole values that may be a moment stale; :meth:`Metrics.snapshot`
copies everything into a plain dict.

The identities kept (checked by the reliability suites):

* ``frames_received == frames_decoded + frames_failed`` (control frames such as
  pings never reach the pipeline and are not counted);
* ``messages_decoded == messages_delivered + messages_unrouted + messages_failed``
  where ``messages_failed`` counts data messages whose delivery to every observer
  raised, and control/unknown messages are counted apart (``control_messages``,
  ``unknown_messages``).
"""

from __future__ import annotations

import threading
import time
from array import array
from collections import Counter
from typing import Any

__all__ = ["Metrics", "TimingWindow"]


class TimingWindow:
    """The last ``size`` durations (ns), for percentiles without unbounded memory."""

    __slots__ = ("_buf", "_count", "_size")

    def __init__(self, size: int = 4096) -> None:
        # Machine integers: a full window is 32 KiB, not 4,096 int objects besides.
        self._buf = array("q", bytes(8 * size))
        self._size = size
        self._count = 0

    def add(self, ns: int) -> None:
        """Record one duration (owner thread only)."""
        self._buf[self._count % self._size] = ns
        self._count += 1

    @property
    def count(self) -> int:
        """Durations recorded since the start (not only those kept)."""
        return self._count

    def percentile(self, q: float) -> float:
        """The ``q`` quantile (0..1) of the kept durations, in ns; 0.0 when empty."""
        n = min(self._count, self._size)
        if n == 0:
            return 0.0
        data = sorted(self._buf[:n])
        idx = min(n - 1, max(0, round(q * (n - 1))))
        return float(data[idx])


class Metrics:
    """Everything a client counts. Attribute names are the metric names."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started_ns = time.time_ns()
        self.frames_received = 0
        self.bytes_received = 0
        self.frames_decoded = 0
        self.frames_failed = 0
        self.messages_decoded = 0
        #: Decoded items per class (records, ``Unknown``, ``FrameError``): one dict
        #: increment per message on the hot path; names are made at snapshot time.
        self.messages_by_class: Counter[type] = Counter()
        self.messages_delivered = 0
        self.messages_unrouted = 0
        self.messages_failed = 0
        self.control_messages = 0
        self.unknown_messages = 0
        self.decode_failures = 0
        self.handler_errors = 0
        self.errors_published = 0
        self.reconnects = 0
        self.connects = 0
        #: ``time.time_ns()`` of the last frame that carried market data (not acks or
        #: errors): the data clock of ``silence_timeout``; 0 before any.
        self.last_message_ns = 0
        #: ``time.time_ns()`` of the last decoded frame of any kind (data or control).
        self.last_frame_ns = 0
        self.slow_consumer_warnings = 0
        #: Sockets dropped because the auth reply or a subscription ack was overdue.
        self.reply_timeouts = 0
        self.live_subscriptions = 0
        self.observer_time = TimingWindow()
        #: Total time the socket thread spent inside observers (for the slow-observer check).
        self.observer_time_total_ns = 0
        #: ``perf_counter_ns()`` when the batch being dispatched started; 0 between batches.
        self.dispatch_started_ns = 0

    @property
    def messages_by_type(self) -> dict[str, int]:
        """Decoded items per record class name (``Trade``, ``Quote``, ``FrameError`` …)."""
        return {cls.__name__: n for cls, n in list(self.messages_by_class.items())}

    def count_handler_error(self) -> None:
        """An observer raised (any thread)."""
        with self._lock:
            self.handler_errors += 1

    def count_error_published(self) -> None:
        """A value went out on ``client.errors`` (any thread)."""
        with self._lock:
            self.errors_published += 1

    def snapshot(self) -> dict[str, Any]:
        """All metrics as a plain dict (safe to call from any thread)."""
        return {
            "frames_received": self.frames_received,
            "bytes_received": self.bytes_received,
            "frames_decoded": self.frames_decoded,
            "frames_failed": self.frames_failed,
            "messages_decoded": self.messages_decoded,
            "messages_by_type": self.messages_by_type,
            "messages_delivered": self.messages_delivered,
            "messages_unrouted": self.messages_unrouted,
            "messages_failed": self.messages_failed,
            "control_messages": self.control_messages,
            "unknown_messages": self.unknown_messages,
            "decode_failures": self.decode_failures,
            "handler_errors": self.handler_errors,
            "errors_published": self.errors_published,
            "reconnects": self.reconnects,
            "connects": self.connects,
            "last_message_ns": self.last_message_ns,
            "last_frame_ns": self.last_frame_ns,
            "slow_consumer_warnings": self.slow_consumer_warnings,
            "reply_timeouts": self.reply_timeouts,
            "live_subscriptions": self.live_subscriptions,
            "observer_time_p50_us": self.observer_time.percentile(0.5) / 1000.0,
            "observer_time_p99_us": self.observer_time.percentile(0.99) / 1000.0,
            "observer_batches": self.observer_time.count,
        }

    def frames_balance(self) -> bool:
        """``frames_received == frames_decoded + frames_failed``."""
        return self.frames_received == self.frames_decoded + self.frames_failed

    def messages_balance(self) -> bool:
        """``messages_decoded == delivered + unrouted + failed`` (data messages)."""
        return self.messages_decoded == (
            self.messages_delivered + self.messages_unrouted + self.messages_failed
        )
