"""``replay``: a recording played back through the live pipeline, behind the streams API.

:class:`Replay` is a :class:`~rxalpaca.streams.Streams` facade, like
:class:`~rxalpaca.client.StreamClient`, so a strategy written against a client runs
unchanged: ``quotes("AAPL")``, ``trades``, ``bars``, ``state``, ``errors``, ``gaps``,
``metrics``. Its upstream is a file instead of a socket: every recorded frame goes
through the very operator the client runs (``ops.pipeline``: reassemble → validate →
decode → meter → route, with a fresh pipeline per recorded connection, as live), and
what the pipeline does not route (bad frames, unknown messages, server errors) reaches
``errors`` the way the client's control path sends it there.

Time: :attr:`Replay.scheduler` is a reactivex ``HistoricalScheduler`` whose clock is the
recording's: before each frame is delivered, the clock advances to the frame's receive
time, running every timer due by then. Give it to time-based operators
(``ops.throttle(1.0, scheduler=replay.scheduler)``, ``buffer_with_time``, windows) and
they behave as they did live, deterministically, at any speed. ``speed=None`` plays as
fast as the pipeline goes; ``speed=1.0`` waits out the recorded gaps between frames in
wall time (``2.0``: twice as fast).

Memory stays flat: the file is read and decompressed a chunk at a time and each record
is played as it is read; nothing is scheduled ahead.

Threading: :meth:`Replay.run` plays on the calling thread, which runs the pipeline and
every observer (the socket thread's role live); :meth:`Replay.start` plays on a thread
of its own. The playing thread owns the reader, the pipeline (``_conn``) and the clock;
``close()`` from another thread sets ``_stop_requested`` (read once per record) and
drops the pipeline, so playback stops at the next record (a paced wait wakes at once).

Subscribe first, then play: subscribing does not start playback (a live client opens on
the first subscription; a file would be half-played by the second).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Literal, Self

from reactivex import Observable, abc
from reactivex import operators as rx_ops
from reactivex.abc import DisposableBase
from reactivex.disposable import Disposable
from reactivex.scheduler import HistoricalScheduler

from . import models
from ._logging import RateLimitedLog
from .codec import Codec, Decoded
from .errors import (
    ConfigurationError,
    ConnectionLostError,
    FrameError,
    RecordingError,
    UnknownMessage,
    error_for_code,
)
from .feeds import endpoint
from .frames import DEFAULT_MAX_MESSAGE_BYTES, Frame
from .metrics import Metrics
from .operators import pipeline
from .protocol import ConnectionState
from .recording import Entry, Kind, RecordingReader, open_recording
from .streams import ErrorOutlet, Streams

__all__ = ["Replay", "ReplayScheduler", "replay"]

logger = logging.getLogger("rxalpaca")
_W = logging.WARNING


def _dt(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


class ReplayScheduler(HistoricalScheduler):
    """The recording's clock: a ``HistoricalScheduler`` the replay moves forward.

    While no timer is queued the replay only notes each frame's receive time
    (:meth:`note`, an int); the clock turns it into a ``datetime`` when someone reads
    it (``now``, scheduling) — not once per frame. The playing thread owns the clock.
    """

    _noted_ns = 0  # a receive time not turned into the clock yet (0: none)
    _time: datetime  # the clock (HistoricalScheduler's _clock, behind the property)

    @property
    def _clock(self) -> datetime:
        ns = self._noted_ns
        if ns:
            self._noted_ns = 0
            self._time = max(self._time, _dt(ns))
        return self._time

    @_clock.setter
    def _clock(self, value: datetime) -> None:
        self._noted_ns = 0
        self._time = value

    def note(self, ns: int) -> None:
        """The clock moves to ``ns`` (never back); only while no timer is queued."""
        self._noted_ns = ns

    def advance_until(self, at: datetime) -> None:
        """Move the clock to ``at`` (never back), running every timer due by then."""
        with self._lock:
            clock = self._clock  # a datetime: the initial clock is one (no to_datetime here)
            if at <= clock:
                return
            queue = self._queue
            if not queue or queue.peek().duetime > at:
                # Nothing due: set the clock without advance_to's loop (once per frame).
                self._clock = at
                return
        self.advance_to(at)


class Replay(Streams[Any, Any, Any, Any, Any]):
    """A recording played through the client's pipeline (see the module's docstring).

    Args:
        path: the recording (its rotated parts follow), or a list of parts.
        speed: ``None`` as fast as possible; ``1.0`` at the recorded pace; ``N``: N
            times faster.
        max_message_bytes: the largest message kept (as the client's option).
        strict_timestamps: as the client's option.

    Raises:
        RecordingError: the file is not a recording, or of an unknown format version.
        ConfigurationError: ``speed`` is not ``None`` or a positive number.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
        *,
        speed: float | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        strict_timestamps: bool = False,
    ) -> None:
        if speed is not None and not (isinstance(speed, int | float) and speed > 0):
            raise ConfigurationError(f"speed must be None or a positive number, not {speed!r}")
        self._reader: RecordingReader = open_recording(path)
        header = self._reader.header
        try:
            ep = endpoint(header.feed)
        except ConfigurationError as exc:
            raise RecordingError(
                str(self._reader.paths[0]), f"the header names no known feed ({exc})"
            ) from None
        encoding: Literal["json", "msgpack"]
        if header.encoding == "json":
            encoding = "json"
        elif header.encoding == "msgpack":
            encoding = "msgpack"
        else:
            raise RecordingError(
                str(self._reader.paths[0]), f"the header's encoding {header.encoding!r} is unknown"
            )
        outlet = ErrorOutlet(Metrics(), RateLimitedLog(logger))
        super().__init__(ep, outlet.metrics, outlet)
        self.header = header
        self.speed = speed
        self.codec = Codec(ep.family, encoding, strict_timestamps=strict_timestamps)
        self._max_message_bytes = max_message_bytes
        #: Virtual time: the recording's clock (see the module's docstring).
        self.scheduler = ReplayScheduler(_dt(header.created_ns or time.time_ns()))
        self._current = ConnectionState.IDLE
        # The live connection's frame sink: the fused pipeline's entry (playing thread).
        self._conn: Callable[[Frame | FrameError], None] | None = None
        self._conn_sub: DisposableBase | None = None
        self._server_error: Exception | None = None  # the last one on this connection
        self._last_data_ns = 0  # receive time of the last frame played (the thread playing)
        self._thread: threading.Thread | None = None
        self._stop_requested = False
        self._stopping = threading.Event()  # set with _stop_requested: wakes a paced wait
        #: Where the file stopped early (a truncated recording), once played.
        self.stopped: RecordingError | None = None

    def __repr__(self) -> str:
        return (
            f"Replay(path={str(self._reader.paths[0])!r}, feed={self.endpoint.feed!r}, "
            f"speed={self.speed!r}, state={self._current.value!r})"
        )

    # ------------------------------------------------------------ the streams' hooks

    @property
    def current_state(self) -> ConnectionState:
        """The recorded state at the point played so far."""
        return self._current

    def _start(self) -> None:
        """Subscribing does not play: :meth:`run` or :meth:`start` does."""

    def _demand_changed(self) -> None:
        """Every recorded frame is played; the router delivers what is subscribed."""

    def _stop(self) -> None:
        self._stop_requested = True
        self._stopping.set()
        self._end_connection()

    # ------------------------------------------------------------ playing

    def run(self) -> None:
        """Play the whole recording on this thread, then close (observers complete).

        A corrupt record ends the replay as live a fatal error ends the client: every
        observer gets the :class:`~rxalpaca.errors.RecordingError` (after every record
        before it), and it is on ``errors``. A truncated file plays to its last whole
        record, then :class:`~rxalpaca.errors.RecordingTruncated` is published on
        ``errors`` and the replay completes. (Unlike a live client's ``run()``, a
        corrupt recording is not raised here: the observers and ``errors`` have it.)
        """
        self._open()
        try:
            self._play()
        except RecordingError as exc:
            self._end_connection()
            self._fail(exc)
            return
        self._end_connection()
        stopped = self._reader.stopped
        if stopped is not None:
            self.stopped = stopped
            logger.warning("%s", stopped)
            self._outlet.publish(stopped)
        self.close()

    def start(self) -> Self:
        """Play on a thread of its own (see :meth:`run`); :meth:`join` waits for the end."""
        if self._thread is None:
            self._thread = threading.Thread(target=self.run, name="rxalpaca-replay", daemon=True)
            self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> bool:
        """Wait for :meth:`start`'s playback to end; ``False`` if ``timeout`` passed first."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def _play(self) -> None:
        speed = self.speed
        first_ns: int | None = None
        wall0 = 0.0
        scheduler = self.scheduler
        timers = scheduler._queue  # empty: no timer queued
        note = scheduler.note
        received = Kind.RECEIVED
        for entries in self._reader.chunks():
            for entry in entries:
                if self._stop_requested:
                    return
                kind, ns, value = entry
                conn = self._conn
                if speed is None and kind is received and conn is not None and not timers:
                    # As fast as possible, no timer queued: only the frame's time is noted
                    # (no datetime, no lock) and the frame goes into the pipeline.
                    note(ns)
                    self._last_data_ns = ns
                    conn(value)
                    continue
                if first_ns is None:
                    first_ns, wall0 = ns, time.monotonic()
                if speed is not None:
                    # Pacing, not synchronisation: wall time follows the recorded clock.
                    wait = wall0 + (ns - first_ns) / 1e9 / speed - time.monotonic()
                    if wait > 0 and self._stopping.wait(wait):
                        return  # closed while waiting out a recorded pause
                # Timers due by now run first, as they did live.
                scheduler.advance_until(_dt(ns))
                self._entry(entry)

    def _entry(self, entry: Entry) -> None:
        kind, value = entry.kind, entry.value
        if kind is Kind.RECEIVED or kind is Kind.FRAME_ERROR:
            conn = self._conn
            if conn is None:
                if self._stop_requested:
                    return  # closed from another thread while playing
                self._new_connection()  # the recording began mid-session
                conn = self._conn
                assert conn is not None
            self._last_data_ns = entry.ns
            conn(value)
        elif kind is Kind.STATE:
            self._state_marker(entry.ns, value)
        elif kind is Kind.GAP:
            self._publish_gap(value)
        elif kind is Kind.OVERFLOW:
            # The recorder dropped records here: the recording has a hole.
            subs = self.header.subscriptions
            self._publish_gap(
                models.Gap(
                    feed=self.endpoint.feed,
                    channels=tuple(sorted(subs)),
                    symbols=tuple(sorted({s for syms in subs.values() for s in syms})),
                    last_before_ns=self._last_data_ns or None,
                    first_after_ns=value.last_ns,
                    reason="recording_overflow",
                )
            )
        # SENT: what the client asked; nothing to deliver.

    def _state_marker(self, ns: int, value: str) -> None:
        try:
            state = ConnectionState(value)
        except ValueError:
            return  # a state a later version added: nothing to replay
        if state is ConnectionState.CONNECTING:
            self.metrics.connects += 1
            self._new_connection()  # a new socket: reassembly starts clean, as live
        elif state is ConnectionState.RECONNECTING:
            self.metrics.count_reconnect("recorded")
            self._end_connection()
            if self._server_error is None:  # live, a server's error was the reason published
                self._outlet.publish(ConnectionLostError("connection lost (recorded)"))
        elif state is ConnectionState.FAILED:
            self._end_connection()
            self._stop_requested = True
            self._current = state
            self._emit_state(state)  # live observers saw FAILED before the end; so do these
            self._fail(self._server_error or ConnectionLostError("failed (recorded)"))
            return
        elif state.terminal:
            self._end_connection()
        if state is not self._current and not (state.terminal and self._refusal() is not None):
            self._current = state
            if not state.terminal:
                self._emit_state(state)

    def _new_connection(self) -> None:
        self._end_connection()
        self._server_error = None
        sinks: list[Callable[[Frame | FrameError], None]] = []

        def source(
            observer: abc.ObserverBase[Frame | FrameError],
            scheduler: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            sinks.append(observer.on_next)  # frames go straight in: no Subject hop
            return Disposable(sinks.clear)

        self._conn_sub = (
            Observable(source)
            .pipe(
                pipeline(self.codec, self.metrics, self._router, self._max_message_bytes),
                rx_ops.map(self._on_control),
            )
            .subscribe(lambda _: None, self._pipeline_error)
        )
        self._conn = sinks[0]

    def _end_connection(self) -> None:
        # Disposed, not completed: a socket lost mid-message reports nothing live either.
        sub, self._conn, self._conn_sub = self._conn_sub, None, None
        if sub is not None:
            sub.dispose()

    def _pipeline_error(self, error: Exception) -> None:
        logger.error("replay pipeline failed: %r", error)
        self._outlet.publish(error)

    def _on_control(self, item: Decoded) -> None:
        """What the pipeline did not route, as the client's control path treats it."""
        feed = self.endpoint.feed
        if isinstance(item, FrameError):
            self._outlet.log.log(
                ("frame", item.reason[:60]), _W, "bad frame from %s: %s", feed, item
            )
            self._outlet.publish(item)
        elif isinstance(item, models.Unknown):
            self.metrics.unknown_messages += 1
            self._outlet.publish(UnknownMessage(item))
        elif isinstance(item, models.ErrorMessage):
            self.metrics.control_messages += 1
            self._server_error = error_for_code(item.code, item.msg or None)
            self._outlet.publish(self._server_error)
        elif isinstance(item, models.SuccessMessage | models.SubscriptionMessage):
            self.metrics.control_messages += 1


def replay(
    path: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    speed: float | None = None,
    **options: Any,
) -> Replay:
    """Open a recording for replay through the live pipeline (see :class:`Replay`).

    Example::

        r = rxalpaca.replay("day.rxa")
        r.quotes("AAPL").pipe(ops.throttle(1.0, scheduler=r.scheduler)).subscribe(print)
        r.run()
    """
    return Replay(path, speed=speed, **options)
