"""Recordings: a session's raw frames, as received, in a compact crash-safe file.

A recording keeps every raw WebSocket frame a client received, with its receive time
in ns, the frames it sent (the auth message redacted), and markers for connection
states, gaps and recording overflows — so a replay can run the very pipeline the live
client ran (:func:`rxalpaca.replay`). Needs ``zstandard`` (``pip install
'rxalpaca[record]'``).

File layout (all integers little-endian)::

    magic      8 bytes  b"RXAREC\\r\\n"  (the CR LF catches text-mode mangling, like PNG's)
    version    u16      FORMAT_VERSION
    hlen       u32      length of the header
    header     hlen     JSON: format, library, feed, encoding, subscriptions, created_ns, part
    body                one zstd stream of blocks, each ending a zstd block (flushed)

    block   := u32 count | u32 bodies' length | u32 crc32(index, bodies) | index | bodies
    index   := count x u8 code | count x u8 flags | count x u32 length | count x i64 ns
    code    := the frame's opcode (0-15) for a received frame, else kind << 4 | opcode
    flags   := 1: fin, 2: the payload was a str (written UTF-8)

One block per batch the writer drains, in columns (version 2): the writer builds it with
a handful of C-level calls per batch (``b"".join``, ``array``, one ``crc32``) instead of
Python work per record, so it holds the GIL for microseconds, not for a loop over the
batch, and the socket thread waits for nothing (docs/benchmarks.md, "Record and
replay"). Version 1 files (one ``u32 length | u32 crc32 | u8 kind | i64 ns | body``
record after another) still read.

The writer ends a zstd block after every batch, so a file cut off by a crash
decompresses up to its last whole block, and the reader keeps every whole batch in it
(at most one writer pass, ``flush_interval``, is lost — what a crash loses from the queue
anyway); it says where it stopped (:attr:`RecordingReader.stopped`). A block whose
checksum fails, or data zstd cannot decode, is :class:`~rxalpaca.errors.RecordingError`
(zstd alone does not notice every flipped bit: the checksum does).

:class:`Recorder` writes off the caller's thread: callers (the socket thread) append to
a bounded queue, one thread drains it. A full queue drops the record, counts it, and the
next record written is preceded by an ``OVERFLOW`` marker (how many, first and last ns),
so a hole in a recording is never silent; a replay turns it into a
:class:`~rxalpaca.models.Gap`.

Threading: :meth:`Recorder.frame` and the other producer methods run on any thread
(the socket thread, the supervisor's sends, ``close()``'s state change); appending to the
``deque`` is atomic under the GIL and ``_drop_lock`` guards the overflow tally only
(``_fast`` is cleared under it while a drop is pending); the writer thread alone touches
the file.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import struct
import sys
import threading
import time
import zlib
from array import array
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from enum import IntEnum
from functools import partial
from itertools import accumulate, repeat
from operator import call
from pathlib import Path
from typing import Any, BinaryIO, Final, NamedTuple

import msgspec

from .errors import ConfigurationError, FrameError, RecordingError, RecordingTruncated
from .frames import Frame, Opcode
from .models import Gap

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "Entry",
    "Kind",
    "Overflow",
    "Recorder",
    "RecordingHeader",
    "RecordingReader",
    "open_recording",
    "part_paths",
]

MAGIC: Final = b"RXAREC\r\n"
FORMAT_VERSION: Final = 2
#: The versions this module reads (it writes FORMAT_VERSION).
READABLE_VERSIONS: Final = (1, 2)
_PREAMBLE = struct.Struct("<8sHI")
_RECORD = struct.Struct("<IIBq")  # version 1: body length, crc32, kind, ns
_BLOCK = struct.Struct("<III")  # version 2: count, bodies' length, crc32
_INDEX = 14  # version 2: index bytes per record (code, flags, length, ns)
_OVERFLOW = struct.Struct("<Qqq")
#: A record (version 1) or block (version 2) longer than this is corruption, not data
#: (the client caps messages at 64 MiB).
_MAX_RECORD = 1 << 30
#: Records per block at most: bounds the writer's batch (and a reader's block) in memory.
_MAX_BLOCK = 65536
#: Payload bytes per block, about: what a reader holds at a time (and what a block cut
#: by a crash loses at most).
_BLOCK_BYTES = 64 * 1024
#: Compressed bytes fed to zstd at a time: what comes out is bounded by it (times the
#: compression ratio), so memory stays flat however long the file.
_READ_CHUNK = 16 * 1024
#: Decompressed bytes per step, about (the compressed piece shrinks when data compresses
#: very well).
_READ_OUT = 128 * 1024
#: The pieces a part is read in again after zstd refused a piece (see _read_part).
_CAREFUL_CHUNK = 512
_FIN = 0x80  # version 1 flag byte
_WAS_STR = 0x40  # version 1 flag byte
_F_FIN = 1  # version 2 flags
_F_STR = 2  # version 2 flags
_BIG_ENDIAN = sys.byteorder == "big"
assert array("I").itemsize == 4 and array("q").itemsize == 8  # the index's widths
#: tuple.__new__ bound to the class: builds a NamedTuple from a tuple in C (the class's
#: own __new__ is Python code), for the readers' per-record maps.
_new_frame: Final = partial(tuple.__new__, Frame)


def library_version() -> str:
    """rxalpaca's version, for headers."""
    # Imported here: importlib.metadata pulls in email, zipfile and random, which every
    # client would otherwise load at start-up for a header few of them write.
    import importlib.metadata  # noqa: PLC0415

    try:
        return importlib.metadata.version("rxalpaca")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _zstd() -> Any:
    try:
        import zstandard  # noqa: PLC0415 - optional: the [record] extra
    except ImportError:
        raise ConfigurationError(
            "recording and replay need zstandard: pip install 'rxalpaca[record]'"
        ) from None
    return zstandard


class Kind(IntEnum):
    """What a record holds."""

    RECEIVED = 1  # a frame read off the socket (body: flags, payload)
    SENT = 2  # a frame the client sent (auth redacted)
    STATE = 3  # a ConnectionState transition (body: its value)
    GAP = 4  # a Gap the client published (body: JSON)
    OVERFLOW = 5  # records the recorder dropped here (body: count, first ns, last ns)
    FRAME_ERROR = 6  # a frame the transport refused (body: reason NUL excerpt)


_KINDS: Final = {k.value: k for k in Kind}


class Overflow(NamedTuple):
    """The recorder dropped ``dropped`` records received between ``first_ns`` and ``last_ns``."""

    dropped: int
    first_ns: int
    last_ns: int


class Entry(NamedTuple):
    """One record read back: its kind, time (``time.time_ns()`` when it happened) and value.

    ``value`` is a :class:`~rxalpaca.frames.Frame` (``RECEIVED``, ``SENT``), a state's
    value (``STATE``), a :class:`~rxalpaca.models.Gap`, an :class:`Overflow` or a
    :class:`~rxalpaca.errors.FrameError`.
    """

    kind: Kind
    ns: int
    value: Any


_new_entry: Final = partial(tuple.__new__, Entry)


class RecordingHeader(msgspec.Struct, frozen=True, kw_only=True):
    """What a recording says about itself (the header, plain JSON).

    Attributes:
        format: the file format version.
        library: the rxalpaca version that wrote it.
        feed: the feed recorded (``"iex"`` …); ``encoding``: ``"json"`` or ``"msgpack"``.
        subscriptions: channel → symbols acknowledged when this part began.
        created_ns: when this part was opened; ``part``: 0 for the first file.
    """

    format: int = FORMAT_VERSION
    library: str = msgspec.field(default_factory=library_version)
    feed: str = ""
    encoding: str = "msgpack"
    subscriptions: dict[str, list[str]] = msgspec.field(default_factory=dict)
    created_ns: int = 0
    part: int = 0


# ---------------------------------------------------------------- encoding records


def _decode_value(kind: Kind, ns: int, body: bytes) -> Any:
    if kind in (Kind.RECEIVED, Kind.SENT):
        flags = body[0]
        payload: bytes | str = body[1:].decode("utf-8") if flags & _WAS_STR else body[1:]
        return Frame(payload, flags & 0x0F, bool(flags & _FIN), ns)
    if kind is Kind.STATE:
        return body.decode("ascii")
    if kind is Kind.GAP:
        return msgspec.json.decode(body, type=Gap)
    if kind is Kind.OVERFLOW:
        return Overflow(*_OVERFLOW.unpack(body))
    reason, _, excerpt = body.partition(b"\0")
    return FrameError(reason.decode("utf-8", "replace"), excerpt, ns)


# ---------------------------------------------------------------- writing


def part_paths(path: str | os.PathLike[str]) -> list[Path]:
    """The files of a recording, in order: ``day.rxa``, then ``day.1.rxa``, ``day.2.rxa`` …

    Rotation names the parts after the first this way; a recording that never rotated
    is its one file. A part missing in the middle is skipped here; the reader notices
    the jump in the headers' part numbers and reports the hole as a ``Gap``.
    """
    first = Path(path)
    parts = [first] if first.exists() else []
    pattern = re.compile(re.escape(first.stem) + r"\.(\d+)" + re.escape(first.suffix) + "$")
    numbered = []
    for p in first.parent.glob(f"{glob.escape(first.stem)}.*{glob.escape(first.suffix)}"):
        m = pattern.match(p.name)
        if m:
            numbered.append((int(m.group(1)), p))
    return parts + [p for _, p in sorted(numbered)]


def _part_path(first: Path, n: int) -> Path:
    return first if n == 0 else first.with_name(f"{first.stem}.{n}{first.suffix}")


class _PartWriter:
    """One open part: preamble, header, then a zstd stream (writer thread only)."""

    def __init__(self, path: Path, header: RecordingHeader, level: int) -> None:
        zstd = _zstd()
        self._zstd = zstd
        self.path = path
        self.fh: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed by close()
        head = msgspec.json.encode(header)
        self.fh.write(_PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(head)) + head)
        self._z = zstd.ZstdCompressor(level=level).stream_writer(self.fh, closefd=False)
        self.opened = time.monotonic()

    def write(self, chunk: bytes) -> None:
        self._z.write(chunk)

    def flush(self) -> None:
        """End the zstd block and hand the bytes to the OS: a crash keeps them."""
        self._z.flush(self._zstd.FLUSH_BLOCK)
        self.fh.flush()

    @property
    def size(self) -> int:
        return self.fh.tell()

    def close(self) -> None:
        self._z.close()  # ends the zstd frame: the reader's "clean end"
        self.fh.close()


class Recorder:
    """Writes a session to a recording on its own thread, through a bounded queue.

    Producers call :meth:`frame`, :meth:`sent`, :meth:`state`, :meth:`gap` from any
    thread; they only append to a queue (never block, never touch the file). The
    writer thread drains it every ``flush_interval`` seconds, compresses the batch and
    ends a zstd block, so at most that much is lost to a crash.

    Args:
        path: the file (parts after the first: ``day.1.rxa``, ``day.2.rxa`` …).
        header: what the file says about the session (feed, encoding, subscriptions).
        header_update: called (writer thread) when a new part starts, for fresh
            ``subscriptions``; the rest of the header is kept.
        queue_size: records the queue holds; beyond that records are dropped, counted
            (:attr:`dropped`) and marked in the file (an ``OVERFLOW`` record).
        max_bytes: start a new part once the current one is this large.
        max_seconds: start a new part after this many seconds.
        flush_interval: seconds between writer passes.
        level: zstd compression level (1: the fastest of the usual levels, about 5x on
            market data at a third of level 3's CPU — docs/benchmarks.md).
        on_overflow: called on the producer's thread with the running drop count.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        header: RecordingHeader,
        *,
        header_update: Callable[[], dict[str, list[str]]] | None = None,
        queue_size: int = 1_000_000,
        max_bytes: int | None = None,
        max_seconds: float | None = None,
        flush_interval: float = 0.05,
        level: int = 1,
        on_overflow: Callable[[int], None] | None = None,
    ) -> None:
        if queue_size < 1:
            raise ConfigurationError(f"queue_size must be at least 1, not {queue_size!r}")
        if max_bytes is not None and max_bytes < 1:
            raise ConfigurationError(f"max_bytes must be positive, not {max_bytes!r}")
        if max_seconds is not None and max_seconds <= 0:
            raise ConfigurationError(f"max_seconds must be positive, not {max_seconds!r}")
        _zstd()  # the extra is missing: say so now, at the call
        self.path = Path(path)
        self._header = header
        self._header_update = header_update
        # (body, code, fin, ns): a received Frame itself (code: its opcode), or a tuple of
        # that shape for the other kinds (code: kind << 4 | opcode) — the socket thread
        # appends the frame it was given and nothing else (no tuple, no copy, no encoding).
        self._queue: deque[tuple[bytes | str, int, bool, int]] = deque()
        self._queue_size = queue_size
        self._max_bytes = max_bytes
        self._max_seconds = max_seconds
        self._flush_interval = flush_interval
        self._level = level
        self._on_overflow = on_overflow
        #: Records dropped on a full queue (all of them, ever).
        self.dropped = 0
        #: Records written to the file.
        self.written = 0
        self._drop_lock = threading.Lock()  # the pending overflow tally below
        self._pending_drop: tuple[int, int, int] | None = None  # (count, first ns, last ns)
        self._closed = False
        # True while a frame may go straight into the queue: open, no drop pending.
        self._fast = True
        self._wake = threading.Event()
        self._passes = 0  # writer passes done, under _idle
        self._idle = threading.Condition()
        self._error: BaseException | None = None
        self._closers: list[Callable[[], None]] = []
        self.paths: list[Path] = []
        try:
            self._part = _PartWriter(self.path, header, level)
        except OSError as exc:  # a user's path: one sentence, not a traceback
            raise ConfigurationError(
                f"cannot write the recording {str(self.path)!r}: {exc.strerror or exc}"
            ) from exc
        self.paths.append(self.path)
        self._thread = threading.Thread(target=self._run, name="rxalpaca-recorder", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ producers (any thread)

    def frame(self, frame: Frame | FrameError) -> None:
        """A frame received (or one the transport refused)."""
        q = self._queue
        if self._fast and frame.__class__ is Frame and len(q) < self._queue_size:
            q.append(frame)  # the socket thread's whole share
            return
        if isinstance(frame, FrameError):
            body = frame.reason.encode("utf-8", "replace") + b"\0" + frame.excerpt
            self._put(Kind.FRAME_ERROR, frame.received_ns or time.time_ns(), body)
            return
        payload, opcode, fin, ns = frame
        self._put(Kind.RECEIVED, ns, payload, opcode, fin)

    def sent(self, payload: bytes | str, opcode: int = Opcode.TEXT) -> None:
        """A frame the client sent (pass the auth message redacted: it is written as given)."""
        self._put(Kind.SENT, time.time_ns(), payload, opcode, True)

    def state(self, state: str) -> None:
        """A connection state transition (connect, authenticated, disconnect …)."""
        self._put(Kind.STATE, time.time_ns(), str(state).encode("ascii"))

    def gap(self, gap: Gap) -> None:
        """A gap the client published."""
        self._put(Kind.GAP, time.time_ns(), msgspec.json.encode(gap))

    def _put(
        self, kind: int, ns: int, body: bytes | str, opcode: int = 0, fin: bool = False
    ) -> None:
        if self._closed:
            if self._error is not None:  # the writer died (a full disk): count, never hide
                with self._drop_lock:
                    self.dropped += 1
            return
        q = self._queue
        if len(q) >= self._queue_size:
            with self._drop_lock:
                self._fast = False  # until the marker below is queued
                self.dropped += 1
                p = self._pending_drop
                self._pending_drop = (1, ns, ns) if p is None else (p[0] + 1, p[1], ns)
                dropped = self.dropped
            if self._on_overflow is not None:
                self._on_overflow(dropped)
            return
        if self._pending_drop is not None:
            with self._drop_lock:
                p, self._pending_drop = self._pending_drop, None
                self._fast = not self._closed
            if p is not None:  # the marker goes where the hole is, before this record
                q.append(_marker(p))
        code = opcode & 0x0F if kind == Kind.RECEIVED else kind << 4 | opcode & 0x0F
        q.append((body, code, fin, ns))

    # ------------------------------------------------------------ the writer thread

    def _run(self) -> None:
        try:
            while True:
                closing = self._closed
                self._drain()
                with self._idle:
                    self._passes += 1
                    self._idle.notify_all()
                if closing:
                    break
                self._wake.wait(self._flush_interval)
                self._wake.clear()
        except BaseException as exc:  # a full disk: keep the reason, stop writing
            self._error = exc
            self._fast = False
            self._closed = True
        finally:
            with contextlib.suppress(Exception):
                self._part.close()

    def _drain(self) -> None:
        q = self._queue
        if q:
            # Only this thread pops, so len(q) records are there; producers append behind.
            n = min(len(q), _MAX_BLOCK)  # bounded blocks: the file stays fresh under load
            bodies: Sequence[bytes | str]
            bodies, codes, fins, stamps = zip(*map(call, repeat(q.popleft, n)), strict=True)
            if str in map(type, bodies):  # a text frame given as str: rare, per record
                bodies, flags = _utf8(bodies, fins)
            else:
                flags = bytes(map(bool, fins))  # 1: fin (a truthy fin of any type)
            lengths = array("I", map(len, bodies))
            part = self._part
            if sum(lengths) <= _BLOCK_BYTES:
                _write_block(part, bodies, codes, flags, lengths, stamps)
            else:  # blocks of about _BLOCK_BYTES: a reader holds one at a time
                ends = list(accumulate(lengths))
                i = 0
                while i < n:
                    j = max(i + 1, bisect_right(ends, (ends[i - 1] if i else 0) + _BLOCK_BYTES))
                    _write_block(
                        part, bodies[i:j], codes[i:j], flags[i:j], lengths[i:j], stamps[i:j]
                    )
                    i = j
            part.flush()  # ends the zstd block: what was written survives a crash
            self.written += n
        self._maybe_rotate()

    def _maybe_rotate(self) -> None:
        part = self._part
        by_size = self._max_bytes is not None and part.size >= self._max_bytes
        by_time = (
            self._max_seconds is not None and time.monotonic() - part.opened >= self._max_seconds
        )
        if not (by_size or by_time):
            return
        subs = self._header_update() if self._header_update else self._header.subscriptions
        n = len(self.paths)
        header = msgspec.structs.replace(
            self._header, subscriptions=subs, created_ns=time.time_ns(), part=n
        )
        path = _part_path(self.path, n)
        part.close()
        self._part = _PartWriter(path, header, self._level)
        self.paths.append(path)

    def on_close(self, detach: Callable[[], None]) -> None:
        """Call ``detach`` (e.g. a subscription's ``dispose``) first thing in :meth:`close`."""
        self._closers.append(detach)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until what was queued before this call is in the file (not just queued).

        Returns ``False`` if ``timeout`` passed first or the writer has stopped.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            target = self._passes + 2  # the pass under way may have missed our records
            while self._passes < target and self._thread.is_alive():
                self._wake.set()  # again after each pass: the writer clears it
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._idle.wait(left)
            return self._passes >= target

    def close(self) -> None:
        """Write what is queued, end the file cleanly and stop the thread. Idempotent.

        Raises:
            OSError: writing failed (the disk is full …); what came before is kept.
        """
        closers, self._closers = self._closers, []
        for detach in closers:  # stop the sources first: nothing arrives after the end
            with contextlib.suppress(Exception):
                detach()
        self._fast = False
        self._closed = True  # producers stop here; a hole at the very end is still marked
        with self._drop_lock:
            p, self._pending_drop = self._pending_drop, None
        if p is not None:
            self._queue.append(_marker(p))
        if threading.current_thread() is self._thread:
            return
        self._wake.set()
        self._thread.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> dict[str, Any]:
        """Records written and dropped, parts and bytes so far."""
        return {
            "written": self.written,
            "dropped": self.dropped,
            "queued": len(self._queue),
            "parts": [str(p) for p in self.paths],
            "bytes": sum(p.stat().st_size for p in self.paths if p.exists()),
        }


def _write_block(  # noqa: PLR0917 - the block's columns
    part: _PartWriter,
    bodies: Sequence[bytes | str],
    codes: Sequence[int],
    flags: bytes,
    lengths: array[int],
    stamps: Sequence[int],
) -> None:
    """One block (the layout in the module's docstring), in a few C-level calls."""
    blob = b"".join(bodies)  # type: ignore[arg-type] # str bodies were encoded
    ns = array("q", stamps)
    if _BIG_ENDIAN:
        lengths.byteswap()
        ns.byteswap()
    index = bytes(codes) + flags + lengths.tobytes() + ns.tobytes()
    part.write(_BLOCK.pack(len(codes), len(blob), zlib.crc32(blob, zlib.crc32(index))))
    part.write(index)
    part.write(blob)


def _marker(p: tuple[int, int, int]) -> tuple[bytes, int, bool, int]:
    """The queued OVERFLOW record for a pending drop (count, first ns, last ns)."""
    return (_OVERFLOW.pack(*p), Kind.OVERFLOW << 4, False, p[2])


def _utf8(bodies: Sequence[bytes | str], fins: Sequence[bool]) -> tuple[list[bytes], bytes]:
    """Bodies as bytes and the flags byte per record, marking the str ones."""
    out: list[bytes] = []
    flags = bytearray()
    for body, fin in zip(bodies, fins, strict=True):
        if isinstance(body, str):
            out.append(body.encode("utf-8"))
            flags.append(_F_STR | (_F_FIN if fin else 0))
        else:
            out.append(body)
            flags.append(_F_FIN if fin else 0)
    return out, bytes(flags)


# ---------------------------------------------------------------- reading


class RecordingReader:
    """Reads a recording record by record (flat memory: the file is streamed).

    Opening reads the header, so a file that is not a recording, or of another format
    version, is a :class:`~rxalpaca.errors.RecordingError` at once. Iterating yields
    :class:`Entry` values; corrupt data raises ``RecordingError`` after the whole
    records before it. A file cut off mid-record ends the iteration after its last
    whole record, and :attr:`stopped` says where (a
    :class:`~rxalpaca.errors.RecordingTruncated`; ``None`` for a clean end).

    Args:
        paths: the parts of one recording, in order (see :func:`part_paths`).
    """

    def __init__(self, paths: Sequence[str | os.PathLike[str]]) -> None:
        if not paths:
            raise RecordingError("(none)", "no recording files given")
        self.paths = [Path(p) for p in paths]
        self.header = read_header(self.paths[0])
        self.stopped: RecordingTruncated | None = None
        #: Whole records read so far, over every part.
        self.records = 0
        self._last_ns = 0  # time of the last record read (a missing part's gap starts there)

    def __iter__(self) -> Iterator[Entry]:
        for entries in self.chunks():
            yield from entries

    def chunks(self) -> Iterator[list[Entry]]:
        """The records in lists, one per piece of the file decompressed (what
        :meth:`__iter__` yields one by one): for a reader in a tight loop (a replay)."""
        last_ns = 0
        expect = self.header.part
        for path in self.paths:
            header = read_header(path) if path != self.paths[0] else self.header
            if header.part != expect:
                # Rotated parts in between are missing: say so where they were.
                gap = Entry(
                    Kind.GAP,
                    header.created_ns,
                    Gap(
                        feed=header.feed,
                        channels=tuple(sorted(header.subscriptions)),
                        symbols=tuple(
                            sorted({s for syms in header.subscriptions.values() for s in syms})
                        ),
                        last_before_ns=last_ns or None,
                        first_after_ns=header.created_ns or None,
                        reason="missing_part",
                    ),
                )
                yield [gap]
            expect = header.part + 1
            yield from self._read_part(path)
            last_ns = self._last_ns
            if self.stopped is not None:
                return  # a truncated part: what follows it is not contiguous

    def _read_part(self, path: Path) -> Iterator[list[Entry]]:
        base = self.records  # records before this part
        try:
            yield from self._decode_part(path, _READ_CHUNK, base)
        except _Retry:
            # zstd refuses a piece: its whole output is lost, good blocks before the
            # damage too. Again in small pieces, past what was already delivered, so
            # every whole record before the damage is kept.
            yield from self._decode_part(path, _CAREFUL_CHUNK, base)

    def _decode_part(self, path: Path, piece: int, base: int) -> Iterator[list[Entry]]:
        zstd = _zstd()
        name = str(path)
        seen = 0  # records of this part parsed in this pass
        with open(path, "rb") as fh:
            hlen, version = _check_preamble(name, fh)
            fh.seek(hlen, os.SEEK_CUR)  # past the header
            parse = _parse_v1 if version == 1 else _parse
            d = zstd.ZstdDecompressor().decompressobj()
            buf = bytearray()
            pos = 0  # offset in the decompressed stream of buf[0]
            size = _CAREFUL_CHUNK  # then grown or shrunk to the ratio met
            while chunk := fh.read(size):
                try:
                    out = d.decompress(chunk)
                    while d.eof and d.unused_data:  # another zstd frame follows (appended)
                        rest = d.unused_data
                        d = zstd.ZstdDecompressor().decompressobj()
                        out += d.decompress(rest)
                    buf += out
                    # Flat memory whatever the compression ratio: about _READ_OUT per step.
                    # (zstd gives out whole blocks: it grows by at most 2x a step.)
                    grown = size * _READ_OUT // len(out) if out else piece
                    size = max(_CAREFUL_CHUNK, min(piece, 2 * size, grown))
                except zstd.ZstdError as exc:
                    if piece > _CAREFUL_CHUNK:
                        raise _Retry from None
                    raise RecordingError(
                        name, f"corrupt zstd data ({exc})", offset=pos, records=base + seen
                    ) from None
                while True:
                    entries, start, error = parse(buf, pos, name, base + seen)
                    seen += len(entries)
                    fresh = base + seen - self.records  # not delivered by an earlier pass
                    if fresh > 0:  # every whole record before any damage, first
                        if fresh < len(entries):
                            entries = entries[-fresh:]
                        self.records += fresh
                        self._last_ns = entries[-1].ns
                        yield entries
                    if error is not None:
                        raise error
                    if not start:
                        break
                    del buf[:start]
                    pos += start
            if buf and d.eof:  # a cleanly ended file cannot end mid-record: damage
                raise RecordingError(
                    name,
                    "corrupt record (its length runs past the end of the recording)",
                    offset=pos,
                    records=self.records,
                )
            if buf:
                why = (
                    "the file ends mid-record (the writer stopped); read up to its last "
                    f"whole record, the {len(buf)} bytes after it dropped"
                )
            elif not d.eof:
                why = (
                    "the file ends early, without its end mark (the writer stopped): read up to "
                    "its last whole record"
                )
            else:
                return
            self.stopped = RecordingTruncated(name, why, offset=pos, records=self.records)


class _Retry(Exception):
    """zstd refused a piece of a part: read it again in small pieces."""


def _parse(
    buf: bytearray, pos: int, name: str, before: int
) -> tuple[list[Entry], int, RecordingError | None]:
    """The first block in ``buf``, if it is whole (version 2): (entries, bytes used,
    the damage met). One block a call: the caller holds one block's records at a time.

    A block of received frames (the bulk of a recording) is checked with one ``crc32``
    and built with C-level maps: one slice per payload, the ``Frame`` and ``Entry``
    tuples made by ``tuple.__new__`` — no Python code per record.
    """
    entries: list[Entry] = []
    unpack, crc32, hdr, n = _BLOCK.unpack_from, zlib.crc32, _BLOCK.size, len(buf)
    start = 0
    with memoryview(buf) as view:
        while n - start >= hdr:
            count, blen, crc = unpack(view, start)
            at = start + hdr
            bodies = at + count * _INDEX
            end = bodies + blen
            if count > _MAX_BLOCK or blen > _MAX_RECORD:
                why = f"corrupt block ({count} records, {blen} bytes)"
            elif end > n:
                break  # the rest of it comes with the next chunk
            elif crc32(view[at:end]) != crc:
                why = "corrupt block (checksum mismatch)"
            else:
                lengths, stamps = array("I"), array("q")
                lengths.frombytes(view[at + 2 * count : at + 6 * count])
                stamps.frombytes(view[at + 6 * count : bodies])
                if _BIG_ENDIAN:
                    lengths.byteswap()
                    stamps.byteswap()
                offsets = list(accumulate(lengths, initial=bodies))
                if offsets[-1] == end:
                    codes = bytes(view[at : at + count])
                    flags = bytes(view[at + count : at + 2 * count])
                    # One copy of each payload, straight out of buf.
                    payloads = map(bytes, map(view.__getitem__, map(slice, offsets, offsets[1:])))
                    if (not codes or max(codes) < 16) and (not flags or max(flags) <= _F_FIN):
                        # Received frames only, bytes payloads: all in C.
                        frames = map(
                            _new_frame, zip(payloads, codes, map(bool, flags), stamps, strict=True)
                        )
                        entries += map(
                            _new_entry,
                            zip(repeat(Kind.RECEIVED, count), stamps, frames, strict=True),
                        )
                        return entries, end, None  # one block a call: flat memory
                    try:
                        entries += _block_entries(codes, flags, list(payloads), stamps)
                        return entries, end, None  # one block a call: flat memory
                    except (KeyError, ValueError, IndexError, msgspec.DecodeError) as exc:
                        why = f"corrupt block ({exc!r})"
                else:
                    why = "corrupt block (its lengths do not add up)"
            error = RecordingError(name, why, offset=pos + start, records=before + len(entries))
            return entries, start, error
    return entries, start, None


def _block_entries(
    codes: bytes, flags: bytes, bodies: list[bytes], stamps: array[int]
) -> list[Entry]:
    """A block with other kinds than received frames in it, record by record."""
    out: list[Entry] = []
    for code, flag, body, ns in zip(codes, flags, bodies, stamps, strict=True):
        kind = _KINDS[code >> 4] if code >= 16 else Kind.RECEIVED
        if kind is Kind.RECEIVED or kind is Kind.SENT:
            payload: bytes | str = body.decode("utf-8") if flag & _F_STR else body
            out.append(Entry(kind, ns, Frame(payload, code & 0x0F, bool(flag & _F_FIN), ns)))
        else:
            out.append(Entry(kind, ns, _decode_value(kind, ns, body)))
    return out


def _parse_v1(
    buf: bytearray, pos: int, name: str, before: int
) -> tuple[list[Entry], int, RecordingError | None]:
    """The whole records at the start of ``buf`` (version 1): (entries, bytes used, the
    damage met).

    One tight loop per decompressed chunk, no generator in it: a received frame (the
    bulk of a recording) is checked and built inline with one copy of its payload.
    """
    entries: list[Entry] = []
    append = entries.append
    unpack, crc32, hdr, n = _RECORD.unpack_from, zlib.crc32, _RECORD.size, len(buf)
    received = Kind.RECEIVED
    start = 0
    with memoryview(buf) as view:
        while n - start >= hdr:
            length, crc, kind, ns = unpack(view, start)
            end = start + hdr + length
            if length > _MAX_RECORD:
                why = f"corrupt record (length {length})"
            elif end > n:
                break  # the rest of it comes with the next chunk
            # kind, ns and body lie side by side: one checksum call over them.
            elif crc32(view[start + 8 : end]) != crc:
                why = "corrupt record (checksum mismatch)"
            elif kind == received and length and not buf[start + hdr] & _WAS_STR:
                flags = buf[start + hdr]
                payload = bytes(view[start + hdr + 1 : end])
                append(Entry(received, ns, Frame(payload, flags & 0x0F, bool(flags & _FIN), ns)))
                start = end
                continue
            else:
                try:
                    k = _KINDS[kind]
                    append(Entry(k, ns, _decode_value(k, ns, bytes(view[start + hdr : end]))))
                    start = end
                    continue
                except (KeyError, ValueError, IndexError, msgspec.DecodeError) as exc:
                    why = f"corrupt record ({exc!r})"
            error = RecordingError(name, why, offset=pos + start, records=before + len(entries))
            return entries, start, error
    return entries, start, None


def _check_preamble(name: str, fh: BinaryIO) -> tuple[int, int]:
    """(header length, format version) of an open recording, past its preamble."""
    raw = fh.read(_PREAMBLE.size)
    if len(raw) < _PREAMBLE.size or not raw.startswith(MAGIC):
        raise RecordingError(name, "not an rxalpaca recording (no RXAREC magic)", offset=0)
    _, version, hlen = _PREAMBLE.unpack(raw)
    if version not in READABLE_VERSIONS:
        raise RecordingError(
            name,
            f"recording format version {version}; this rxalpaca reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}",
            offset=8,
        )
    return int(hlen), int(version)


def read_header(path: str | os.PathLike[str]) -> RecordingHeader:
    """The header of one recording file (raises ``RecordingError`` if it is not one)."""
    name = str(path)
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        raise RecordingError(name, "no such file") from None
    with fh:
        hlen, _ = _check_preamble(name, fh)
        raw = fh.read(hlen)
    try:
        if len(raw) < hlen:
            raise ValueError("the header is cut off")
        return msgspec.json.decode(raw, type=RecordingHeader)
    except (ValueError, msgspec.DecodeError) as exc:
        raise RecordingError(name, f"unreadable header ({exc})", offset=_PREAMBLE.size) from None


def open_recording(
    path: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
) -> RecordingReader:
    """A reader over a recording: one file with its rotated parts, or the given parts.

    Example::

        reader = open_recording("day.rxa")
        for entry in reader:
            ...
        if reader.stopped:
            print(reader.stopped)
    """
    if isinstance(path, str | os.PathLike):
        parts: list[Path] = part_paths(path) or [Path(path)]
    else:
        parts = [Path(p) for p in path]
    return RecordingReader(parts)


def header_dict(header: RecordingHeader) -> Mapping[str, Any]:
    """The header as plain JSON-able data (for printing)."""
    out: dict[str, Any] = json.loads(msgspec.json.encode(header))
    return out
