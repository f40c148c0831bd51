"""Live views for Jupyter: a stream rendered into *its own* cell output, updated in place.

``.subscribe(print)`` in a notebook prints from the socket thread into whichever
cell happens to be running; these views instead create one output (an IPython
display handle) in the cell that made them, and update that output — only that
one — from a render thread, at most every ``interval`` seconds::

    from rxalpaca.notebook import live_table, live_log

    live_table(client.quotes("AAPL", "MSFT"), columns=["bid_price", "ask_price"])
    live_log(client.trades("AAPL"), lines=10)

Needs IPython (``pip install "rxalpaca[notebook]"``; Jupyter has it). Outside
IPython there is no output to update: the view prints its text once, when the
stream ends or ``stop()`` is called.

Threading: the source's thread (the socket thread) only stores the latest records
under ``LiveView._lock`` and sets ``_dirty``; one daemon thread per view
("rxalpaca-display") renders and calls ``DisplayHandle.update``, never more often
than ``interval``; so a fast stream costs the socket thread a dict store, not an
HTML render, and the front end gets a bounded update rate.
"""

from __future__ import annotations

import collections
import datetime as _dt
import html
import threading
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import msgspec
from reactivex import Observable

from .errors import ConfigurationError

__all__ = ["LiveView", "live_log", "live_table"]

#: Never shown as columns: internal (the raw wire time; ``timestamp`` shows it).
_HIDDEN = frozenset({"raw_time", "received_ns"})


def _open_output(obj: object) -> Any:
    """A display handle showing ``obj`` in the running cell; ``None`` outside IPython."""
    try:
        from IPython.core.interactiveshell import InteractiveShell  # noqa: PLC0415
        from IPython.display import display  # noqa: PLC0415 - optional dependency
    except ImportError:
        raise ConfigurationError(
            'live views need IPython: pip install "rxalpaca[notebook]" (Jupyter has it)'
        ) from None
    if not InteractiveShell.initialized():
        return None
    return display(obj, display_id=True)  # type: ignore[no-untyped-call]


def default_columns(record: Any) -> list[str]:
    """A record's fields, as named on the record (``timestamp`` for the wire time)."""
    if isinstance(record, msgspec.Struct):
        names = [f.name for f in msgspec.structs.fields(record) if f.name not in _HIDDEN]
        if hasattr(record, "raw_time"):
            names.insert(1 if names and names[0] == "symbol" else 0, "timestamp")
        return names
    if isinstance(record, dict):
        return [str(k) for k in record]
    return ["value"]


def _cell(record: Any, column: str) -> str:
    if column == "value" and not hasattr(record, "value"):
        value = record
    elif isinstance(record, dict):
        value = record.get(column, "")
    else:
        try:
            value = getattr(record, column)
        except (AttributeError, ValueError) as exc:  # ValueError: a malformed timestamp
            value = f"<{type(exc).__name__}>"
    if isinstance(value, _dt.datetime):
        return value.isoformat(timespec="milliseconds")
    if isinstance(value, tuple | list):
        return ", ".join(str(v) for v in value)
    return str(value)


class LiveView:
    """One output area that shows a stream and follows it (see :func:`live_table`).

    Args:
        source: the Observable to show.
        rows: ``"latest"`` (one row per ``key``) or ``"log"`` (the last ``lines`` records).
        key: the row of a record, with ``rows="latest"``.
        columns: attribute names to show; default: the first record's fields.
        lines: how many records a log keeps.
        interval: seconds between two updates of the output, at least.
        title: a caption above the table.
    """

    def __init__(
        self,
        source: Observable[Any],
        *,
        rows: str = "latest",
        key: Callable[[Any], Hashable] | None = None,
        columns: Sequence[str] | None = None,
        lines: int = 20,
        interval: float = 0.5,
        title: str | None = None,
    ) -> None:
        if rows not in ("latest", "log"):
            raise ConfigurationError(f"rows must be 'latest' or 'log', not {rows!r}")
        if interval <= 0 or lines < 1:
            raise ConfigurationError("interval must be > 0 and lines >= 1")
        self.title = title
        self.interval = interval
        self._rows = rows
        self._key = key or _symbol
        self._columns: list[str] | None = list(columns) if columns is not None else None
        by_symbol = rows == "latest" and key is None
        if self._columns is not None and by_symbol and "symbol" not in self._columns:
            self._columns.insert(0, "symbol")  # a row per symbol says which
        self._lock = threading.Lock()  # guards everything below, up to _dirty
        self._latest: dict[Hashable, Any] = {}
        self._log: collections.deque[Any] = collections.deque(maxlen=lines)
        self.count = 0  # records seen
        self._error: Exception | None = None
        self._ended = False
        self._dirty = threading.Event()  # something to render
        self._stopped = threading.Event()
        self._output = _Output(self)  # what the handle shows; see _ipython_display_
        self._handle = _open_output(self._output)
        self._thread = threading.Thread(target=self._render_loop, name="rxalpaca-display")
        self._thread.daemon = True
        self._thread.start()
        self._subscription = source.subscribe(self._on_next, self._on_error, self._on_completed)

    # ---- the source's thread

    def _on_next(self, record: Any) -> None:
        with self._lock:
            self.count += 1
            if self._rows == "latest":
                self._latest[self._key(record)] = record
            else:
                self._log.append(record)
            if self._columns is None:
                self._columns = default_columns(record)
        self._dirty.set()

    def _on_error(self, error: Exception) -> None:
        with self._lock:
            self._error, self._ended = error, True
        self._dirty.set()

    def _on_completed(self) -> None:
        with self._lock:
            self._ended = True
        self._dirty.set()

    # ---- the render thread

    def _render_loop(self) -> None:
        while not self._stopped.is_set():
            self._dirty.wait()
            self._dirty.clear()
            if self._stopped.is_set():
                break
            with self._lock:
                ended = self._ended
            self._show(final=ended)
            if ended:
                return
            self._stopped.wait(self.interval)  # the rate limit, cut short by stop()
        self._show(final=True)  # the state at stop()

    def _show(self, final: bool) -> None:
        if self._handle is not None:
            self._handle.update(self._output)
        elif final:  # not in IPython: no output to update, so the last state, once
            print(repr(self))

    # ---- any thread

    def stop(self) -> None:
        """Stop following the stream (the output keeps its last state)."""
        self._subscription.dispose()
        self._stopped.set()
        self._dirty.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(5.0)

    def snapshot(self) -> tuple[list[str], list[list[str]]]:
        """The columns and rows shown now, as text."""
        with self._lock:
            records = list(self._latest.values()) if self._rows == "latest" else list(self._log)
            columns = list(self._columns or [])
        if self._rows == "latest":
            records.sort(key=lambda r: str(self._key(r)))
        return columns, [[_cell(r, c) for c in columns] for r in records]

    def _status(self) -> str:
        with self._lock:
            error, ended, count = self._error, self._ended, self.count
        state = (
            f"ended with {type(error).__name__}: {error}"
            if error is not None
            else "ended"
            if ended
            else "stopped"
            if self._stopped.is_set()
            else "live"
        )
        return f"{count} records · {state}"

    def _ipython_display_(self) -> None:
        # The view is on screen already (its own output, made when it was created): a
        # cell ending in ``live_table(...)`` must not add a second, frozen copy.
        return

    def _repr_html_(self) -> str:
        columns, rows = self.snapshot()
        esc = html.escape
        head = "".join(f"<th>{esc(c)}</th>" for c in columns)
        body = "".join("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in r) + "</tr>" for r in rows)
        caption = esc(f"{self.title} — " if self.title else "") + esc(self._status())
        return (
            f"<table><caption>{caption}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>"
        )

    def __repr__(self) -> str:
        columns, rows = self.snapshot()
        widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
        lines = [f"{self.title} — {self._status()}" if self.title else self._status()]
        lines.append("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
        return "\n".join(lines)


class _Output:
    """The view as IPython renders it into its display handle (HTML, and text)."""

    def __init__(self, view: LiveView) -> None:
        self._view = view

    def _repr_html_(self) -> str:
        return self._view._repr_html_()

    def __repr__(self) -> str:
        return repr(self._view)


def _symbol(record: Any) -> Hashable:
    return getattr(record, "symbol", None) or (record.get("S") if isinstance(record, dict) else "")


def live_table(
    source: Observable[Any],
    key: Callable[[Any], Hashable] | None = None,
    columns: Sequence[str] | None = None,
    *,
    interval: float = 0.5,
    title: str | None = None,
) -> LiveView:
    """Show the latest record per ``key`` (default: per symbol) as a table that updates in place.

    Returns the :class:`LiveView`; ``view.stop()`` stops following (the client
    closing ends it too).
    """
    return LiveView(source, rows="latest", key=key, columns=columns, interval=interval, title=title)


def live_log(
    source: Observable[Any],
    lines: int = 20,
    columns: Sequence[str] | None = None,
    *,
    interval: float = 0.5,
    title: str | None = None,
) -> LiveView:
    """Show the last ``lines`` records, newest last, in this cell's output, updated in place."""
    return LiveView(
        source, rows="log", columns=columns, lines=lines, interval=interval, title=title
    )
