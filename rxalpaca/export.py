"""``export_parquet``: a recording to Parquet, one table per record type (``rxalpaca export``).

The recording is replayed (:class:`~rxalpaca.replaying.Replay`, ``speed=None``) through
the live pipeline, every channel of its feed subscribed with ``"*"``, so the tables hold
exactly the records a strategy replaying the file would see, in the same order, and the
gaps the replay publishes (a ``Gap`` table). Each table is written as it goes: records
are buffered per type up to ``batch_rows`` and each full buffer is one Parquet row group,
so memory stays flat however long the recording (the replay itself reads the file a
chunk at a time).

Columns are those of :mod:`rxalpaca.dataframes` (``to_arrow``): times are
``timestamp[ns, tz=UTC]`` built from the records' integer nanoseconds, exactly.

Nothing half-written is left behind silently: each table is written to
``<Type>.parquet.part`` and renamed when the whole recording has been read; a corrupt
recording (a :class:`~rxalpaca.errors.RecordingError`) removes the parts and is raised.
A truncated recording (cut off mid-record by a crash) exports every whole record and
says where it stopped (:attr:`ExportResult.stopped`).

Threading: everything runs on the calling thread (the replay plays on it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .dataframes import _optional, arrow_schema, to_arrow
from .errors import ConfigurationError, RecordingError, RecordingTruncated
from .feeds import Channel
from .replaying import Replay

__all__ = ["ExportResult", "export_parquet"]

#: The replay's stream method of each channel.
_STREAMS = {
    Channel.TRADES: "trades",
    Channel.QUOTES: "quotes",
    Channel.BARS: "bars",
    Channel.DAILY_BARS: "daily_bars",
    Channel.UPDATED_BARS: "updated_bars",
    Channel.STATUSES: "statuses",
    Channel.LULDS: "lulds",
    Channel.IMBALANCES: "imbalances",
    Channel.CORRECTIONS: "corrections",
    Channel.CANCEL_ERRORS: "cancel_errors",
    Channel.ORDERBOOKS: "orderbooks",
    Channel.NEWS: "news",
}


@dataclass
class ExportResult:
    """What :func:`export_parquet` wrote."""

    #: Rows per record type (class name, e.g. ``"Quote"``).
    rows: dict[str, int] = field(default_factory=dict)
    #: The Parquet file of each record type.
    files: dict[str, Path] = field(default_factory=dict)
    #: Errors the replay published (bad frames, server errors), as live.
    errors: int = 0
    #: Where a truncated recording stopped (every whole record before it was exported).
    stopped: RecordingTruncated | None = None


class _Table:
    """One record type's Parquet file, written a row group at a time."""

    def __init__(self, pq: Any, cls: type, path: Path, compression: str) -> None:
        self.cls = cls
        self.path = path
        self.part = path.with_name(path.name + ".part")
        self.writer = pq.ParquetWriter(self.part, arrow_schema(cls), compression=compression)
        self.pending: list[Any] = []
        self.rows = 0

    def flush(self) -> None:
        if self.pending:
            self.writer.write_table(to_arrow(self.pending, self.cls))
            self.rows += len(self.pending)
            self.pending = []


def export_parquet(
    path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    batch_rows: int = 65_536,
    compression: str = "zstd",
) -> ExportResult:
    """Export a recording to ``out_dir/<RecordType>.parquet``, one table per record type.

    ::

        result = export_parquet("day.rxa", "out/")
        pyarrow.parquet.read_table(result.files["Quote"])   # or pandas.read_parquet

    Args:
        path: the recording (its rotated parts follow).
        out_dir: created if missing; existing tables of the same names are replaced.
        batch_rows: rows per row group (and the most records held per type).
        compression: Parquet's codec (``"zstd"``, ``"snappy"``, ``"none"`` …).

    Raises:
        RecordingError: the file is missing, not a recording, or corrupt (nothing is
            left in ``out_dir``).
        ConfigurationError: pyarrow is not installed (``pip install
            'rxalpaca[parquet]'``), ``batch_rows`` is not a positive int, or ``out_dir``
            cannot be made.
        OSError: a table could not be written (a full disk …); nothing is left in
            ``out_dir``.
    """
    pq = _optional("pyarrow.parquet", "parquet")
    if not (isinstance(batch_rows, int) and batch_rows > 0):
        raise ConfigurationError(f"batch_rows must be a positive int, not {batch_rows!r}")
    # Strict timestamps: a record whose time cannot be read is a FrameError (counted in
    # ``errors``) rather than a row without its time, or an export cut short.
    replay = Replay(path, strict_timestamps=True)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(f"cannot write to {out}: {exc.strerror or exc}") from None
    tables: dict[type, _Table] = {}
    result = ExportResult()
    failure: list[BaseException] = []

    def on_record(record: Any) -> None:
        try:
            cls = type(record)
            table = tables.get(cls)
            if table is None:
                table = _Table(pq, cls, out / f"{cls.__name__}.parquet", compression)
                tables[cls] = table
            table.pending.append(record)
            if len(table.pending) >= batch_rows:
                table.flush()
        except Exception as exc:  # a full disk, say: stop, and raise it after the replay
            failure.append(exc)
            replay.close()

    def on_error(error: Exception) -> None:
        if isinstance(error, RecordingError) and not failure:
            failure.append(error)

    def count_error(_error: Exception) -> None:
        result.errors += 1

    for channel in replay.endpoint.channels:
        getattr(replay, _STREAMS[channel])("*").subscribe(on_record, on_error)
    replay.gaps.subscribe(on_record, on_error)
    replay.errors.subscribe(count_error)
    replay.run()
    try:
        if not failure:
            for table in tables.values():
                table.flush()
    except Exception as exc:
        failure.append(exc)
    for table in tables.values():
        table.writer.close()
    if failure:
        for table in tables.values():
            table.part.unlink(missing_ok=True)
        raise failure[0]
    for table in tables.values():
        table.part.replace(table.path)
        name = table.cls.__name__
        result.rows[name] = table.rows
        result.files[name] = table.path
    if isinstance(replay.stopped, RecordingTruncated):
        result.stopped = replay.stopped
        result.errors -= 1  # the replay published it on errors too: it is `stopped` here
    return result
