"""``to_frames``: window a stream of records into DataFrames (``rxalpaca.dataframes``).

reactivex's own buffers cut the windows (``buffer_with_count``, ``buffer_with_time``,
``buffer_with_time_or_count``); each non-empty window becomes one frame. Converting
runs on the thread that closes the window: the source's thread for a count, the
scheduler's timer thread for a timespan (the replay's thread with its virtual-time
scheduler). pandas/polars — and ``reactivex.operators`` and our ``dataframes`` module —
are imported when the operator is built, not with ``ops``: a client never loads them
(``tests/test_exports.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, Literal

from reactivex import Observable, abc

from ..errors import ConfigurationError

FrameLibrary = Literal["pandas", "polars"]


def to_frames_(
    timespan: float | timedelta | None,
    count: int | None,
    library: FrameLibrary,
    scheduler: abc.SchedulerBase | None,
) -> Callable[[Observable[Any]], Observable[Any]]:
    from reactivex import operators as rx_ops  # noqa: PLC0415 - see the module docstring

    from .. import dataframes  # noqa: PLC0415

    if library == "pandas":
        dataframes._optional("pandas", "pandas")
        convert: Callable[[list[Any]], Any] = dataframes.to_pandas
    elif library == "polars":
        dataframes._optional("polars", "polars")
        convert = dataframes.to_polars
    else:
        raise ConfigurationError(f"library must be 'pandas' or 'polars', not {library!r}")
    if count is not None and not (isinstance(count, int) and count > 0):
        raise ConfigurationError(f"count must be a positive int, not {count!r}")
    seconds = timespan.total_seconds() if isinstance(timespan, timedelta) else timespan
    if seconds is not None and not (isinstance(seconds, int | float) and seconds > 0):
        raise ConfigurationError(f"timespan must be a positive number of seconds, not {timespan!r}")
    if seconds is None and count is None:
        raise ConfigurationError("to_frames needs timespan=, count= or both")
    window: Callable[[Observable[Any]], Observable[list[Any]]]
    if seconds is not None and count is not None:
        window = rx_ops.buffer_with_time_or_count(seconds, count, scheduler=scheduler)
    elif seconds is not None:
        window = rx_ops.buffer_with_time(seconds, scheduler=scheduler)
    else:
        assert count is not None
        window = rx_ops.buffer_with_count(count)

    def operator(source: Observable[Any]) -> Observable[Any]:
        windows: Observable[list[Any]] = source.pipe(window, rx_ops.filter(bool))
        return windows.pipe(rx_ops.map(convert))

    return operator
