"""Rate-limited logging: the first of many repeated events in full, then a count.

An observer that raises on every message, or a server that sends the same bad
frame a thousand times a second, would otherwise write a traceback per event and
bury everything else in the log (and slow the socket thread down). Per key — e.g.
``("handler", observer, ValueError)`` — the first event is written in full; later
ones are only counted, and at most one summary line per ``interval`` says how many
there were. Counters and ``client.errors`` still see every event: only the log is
thinned.

Example::

    log = RateLimitedLog(logging.getLogger("rxalpaca"), interval=10.0)
    ...
    log.log(("bad-frame",), logging.WARNING, "bad frame from %s: %s", feed, err)
    ...
    log.flush()  # now and then (a supervisor tick) and at close: summaries still owed

Structured fields: every line the library writes carries fields in ``extra=`` (so
they become attributes of the ``LogRecord``), named by :data:`FIELDS` — ``feed``,
``endpoint``, ``conn_id``, ``state``, ``error``, ``code`` and, on a summary line,
``repeats``. A plain formatter ignores them; a JSON formatter
(:class:`rxalpaca.contrib.logs.JsonFormatter`) or structlog's ``ExtraAdder`` renders
them (docs/operations.md). A :class:`RateLimitedLog` adds its ``context()`` fields to
every line it writes, computed only when a line is written.

Stdlib only: a layer-0 module (design.md).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from typing import NamedTuple

__all__ = ["FIELDS", "RateLimitedLog", "RepeatLimiter", "Verdict", "error_fields"]

#: The structured fields rxalpaca's log records may carry (``record.<name>``).
FIELDS = (
    "feed",  # the feed name ("iex", "crypto/us" ...)
    "endpoint",  # the URL connected to
    "conn_id",  # which connection of the client: 1 for the first, +1 per reconnect
    "state",  # the ConnectionState value when the line was written
    "error",  # the exception's class name
    "code",  # Alpaca's error code (402, 406 ...) when the error has one
    "attempt",  # reconnect attempt number
    "delay_s",  # back-off before that attempt
    "repeats",  # on a rate-limited summary line: how many events it stands for
)


def error_fields(error: BaseException | None) -> dict[str, object]:
    """``error`` (class name) and ``code`` (when it has one) for ``extra=``."""
    if error is None:
        return {}
    out: dict[str, object] = {"error": type(error).__name__}
    code = getattr(error, "code", None)
    if isinstance(code, int):
        out["code"] = code
    return out


class Verdict(NamedTuple):
    """What to write for one event (see :meth:`RepeatLimiter.hit`).

    Attributes:
        first: write this event in full (with its traceback): the first of its key,
            or the first after a quiet ``interval``.
        repeats: when not ``first``, how many events the summary line stands for
            (every event since the last line written for the key, this one included).
        seconds: the time those events spanned.
        note: what the caller passed with the key's first event (e.g. its rendered
            message), for a summary written when the key has gone quiet.
    """

    first: bool
    repeats: int
    seconds: float
    note: object


class _Entry:
    __slots__ = ("note", "pending", "since")

    def __init__(self, since: float, note: object) -> None:
        self.since = since  # when the key's last line was written
        self.pending = 0  # events since then that were not written
        self.note = note


class RepeatLimiter:
    """Decides, per key, which of many repeated events get a log line.

    Thread-safe. Memory is bounded: at most ``max_keys`` keys are remembered (the
    least recently seen is forgotten first), and a key that stayed quiet for a whole
    ``interval`` with nothing left to summarise is dropped as soon as it reaches the
    old end — forgetting it changes nothing, its next event is "first" either way.
    Keys are held strongly, so a key may name an observer: it is let go within an
    ``interval`` of going quiet, or when ``max_keys`` newer keys push it out.

    Args:
        interval: seconds between two lines of one key (at most one summary each).
        max_keys: how many keys to remember; a key pushed out loses its unwritten count.
        clock: seconds, monotonic (injectable for tests).
    """

    def __init__(
        self,
        interval: float = 10.0,
        *,
        max_keys: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.interval = interval
        self.max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()

    def __len__(self) -> int:
        """How many keys are remembered right now."""
        return len(self._entries)

    def hit(self, key: Hashable, note: Callable[[], object] | None = None) -> Verdict | None:
        """Count one event of ``key``; what, if anything, to write for it.

        Args:
            key: what counts as "the same event" (hashable; held until forgotten).
            note: called only for a key's first event (so a repeat costs no formatting);
                its result is remembered for summaries and returned in the Verdict.

        Returns:
            ``None``: write nothing (counted for the next summary). A :class:`Verdict`
            with ``first``: write the event in full. Otherwise: write one summary line
            for ``repeats`` events over ``seconds`` (the key's last line is at least
            ``interval`` old).
        """
        now = self._clock()
        with self._lock:
            entries = self._entries
            e = entries.get(key)
            if e is not None and (e.pending or now - e.since < self.interval):
                entries.move_to_end(key)
                if now - e.since < self.interval:
                    e.pending += 1
                    return None
                verdict = Verdict(False, e.pending + 1, now - e.since, e.note)
                e.since, e.pending = now, 0
                return verdict
            e = entries[key] = _Entry(now, None)
            entries.move_to_end(key)
            self._trim(now)
        # Outside the lock: the note may format arbitrary objects.
        e.note = note() if note is not None else None
        return Verdict(True, 1, 0.0, e.note)

    def due(self) -> list[tuple[Hashable, Verdict]]:
        """Summaries owed by keys that went quiet with events left unwritten.

        Each key whose last line is ``interval`` old and that has unwritten events is
        returned once with its summary :class:`Verdict`, and starts a new interval.
        """
        now = self._clock()
        out: list[tuple[Hashable, Verdict]] = []
        with self._lock:
            for key, e in self._entries.items():
                if e.pending and now - e.since >= self.interval:
                    out.append((key, Verdict(False, e.pending, now - e.since, e.note)))
                    e.since, e.pending = now, 0
            self._trim(now)
        return out

    def _trim(self, now: float) -> None:
        # Called with the lock held. Oldest first: LRU order is move_to_end on each hit.
        entries = self._entries
        while len(entries) > self.max_keys:
            entries.popitem(last=False)
        while entries:
            e = next(iter(entries.values()))
            if e.pending or now - e.since < self.interval:
                break
            entries.popitem(last=False)


class RateLimitedLog:
    """A logger front that writes the first event of a key in full, then summaries.

    ``log(key, level, msg, *args, exc_info=...)`` works like ``logger.log`` for the
    first event of ``key``; repeats within ``interval`` are counted silently, and the
    first one after it is written as ``"<message> (repeated N times in the last S s;
    only the first is logged in full)"`` without a traceback. Call :meth:`flush` now
    and then (and at close) to write the summaries of keys that went quiet.

    Args:
        logger: where lines go.
        interval, max_keys, clock: see :class:`RepeatLimiter`.
    """

    SUMMARY = "%s (repeated %d times in the last %.1f s; only the first is logged in full)"

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 10.0,
        *,
        max_keys: int = 256,
        clock: Callable[[], float] = time.monotonic,
        context: Callable[[], Mapping[str, object]] | None = None,
    ) -> None:
        self.logger = logger
        self.limiter = RepeatLimiter(interval, max_keys=max_keys, clock=clock)
        #: Fields added to every line written (``extra=``), e.g. the feed and state;
        #: called only when a line is written. May be set after construction.
        self.context = context

    @property
    def interval(self) -> float:
        """Seconds between two lines of one key."""
        return self.limiter.interval

    def log(
        self,
        key: Hashable,
        level: int,
        msg: str,
        *args: object,
        exc_info: bool | BaseException | None = None,
        extra: Mapping[str, object] | None = None,
    ) -> bool:
        """Log one event of ``key`` (``msg % args``); True if a line was written.

        ``extra``: fields of this event, besides :attr:`context`'s; a summary line
        carries the first event's fields and ``repeats``.
        """
        # Counted even when the level is off, so turning it on later replays no flood.
        verdict = self.limiter.hit(
            key, lambda: (level, msg % args if args else msg, dict(extra or {}))
        )
        if verdict is None or not self.logger.isEnabledFor(level):
            return False
        # stacklevel=2: the record names the caller's line, as a plain logger call would.
        if verdict.first:
            self.logger.log(
                level,
                "%s",
                _text(verdict.note),
                exc_info=exc_info,
                stacklevel=2,
                extra=self._fields(verdict.note),
            )
        else:
            text = msg % args if args else msg
            self.logger.log(
                level,
                self.SUMMARY,
                text,
                verdict.repeats,
                verdict.seconds,
                stacklevel=2,
                extra={**self._fields(verdict.note), "repeats": verdict.repeats},
            )
        return True

    def _fields(self, note: object) -> dict[str, object]:
        fields = dict(self.context()) if self.context is not None else {}
        if isinstance(note, tuple) and len(note) > 2 and isinstance(note[2], dict):
            fields.update(note[2])
        return fields

    def flush(self) -> int:
        """Write the summaries owed by keys that went quiet; how many lines were written."""
        written = 0
        for _key, verdict in self.limiter.due():
            note = verdict.note
            level = note[0] if isinstance(note, tuple) else logging.WARNING
            self.logger.log(
                level,
                self.SUMMARY,
                _text(note),
                verdict.repeats,
                verdict.seconds,
                extra={**self._fields(note), "repeats": verdict.repeats},
            )
            written += 1
        return written


def _text(note: object) -> str:
    """The message kept in a RateLimitedLog note: ``(level, text, fields)``."""
    return str(note[1]) if isinstance(note, tuple) else str(note)
