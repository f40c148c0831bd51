"""ops.to_frames: a record stream windowed into DataFrames, in virtual time."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from reactivex.testing import ReactiveTest, TestScheduler

from rxalpaca import models, ops
from rxalpaca.errors import ConfigurationError
from rxalpaca.timestamps import raw_time_from_ns

pd: Any = pytest.importorskip("pandas")
pl: Any = pytest.importorskip("polars")

on_next, on_completed = ReactiveTest.on_next, ReactiveTest.on_completed
T0 = 1_700_000_000_123_456_789


def quote(i: int) -> models.Quote:
    return models.Quote(
        symbol="AAPL", raw_time=raw_time_from_ns(T0 + i), bid_price=100.0 + i, bid_size=1,
        ask_price=100.5 + i, ask_size=2,
    )  # fmt: skip


def frames_of(messages: list[Any]) -> list[tuple[float, list[int]]]:
    """(tick, the window's exact ns) per frame; ('done', []) for completion."""
    out: list[tuple[float, list[int]]] = []
    for m in messages:
        if m.value.kind == "N":
            out.append((m.time, m.value.value["timestamp"].astype("int64").tolist()))
        elif m.value.kind == "C":
            out.append((m.time, []))
        else:
            raise m.value.exception
    return out


def test_count_windows_and_the_last_partial_one() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(
        *(on_next(210 + i, quote(i)) for i in range(5)), on_completed(300)
    )
    res = scheduler.start(lambda: xs.pipe(ops.to_frames(count=2)))
    assert frames_of(res.messages) == [
        (211, [T0, T0 + 1]),
        (213, [T0 + 2, T0 + 3]),
        (300, [T0 + 4]),
        (300, []),
    ]
    frame = res.messages[0].value.value
    assert isinstance(frame, pd.DataFrame) and frame["bid_price"].tolist() == [100.0, 101.0]


def test_time_windows_skip_the_empty_ones() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(
        on_next(201, quote(0)), on_next(205, quote(1)), on_next(235, quote(2)), on_completed(245)
    )
    res = scheduler.start(lambda: xs.pipe(ops.to_frames(timespan=10, scheduler=scheduler)))
    # Windows end at 210 (two quotes), 220 and 230 (none: no frame), 240 (one).
    assert frames_of(res.messages) == [(210, [T0, T0 + 1]), (240, [T0 + 2]), (245, [])]


def test_time_or_count_whichever_first_and_polars() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(
        *(on_next(201 + i, quote(i)) for i in range(3)), on_next(250, quote(3))
    )
    res = scheduler.start(
        lambda: xs.pipe(ops.to_frames(10, 2, library="polars", scheduler=scheduler)), disposed=280
    )
    got = [(m.time, m.value.value["timestamp"].cast(pl.Int64).to_list()) for m in res.messages]
    # A count closes the window at 202; from then on windows end every 10 ticks.
    assert got == [(202, [T0, T0 + 1]), (212, [T0 + 2]), (252, [T0 + 3])]


def test_a_window_of_mixed_types_ends_the_stream_with_the_reason() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(
        on_next(210, quote(0)), on_next(211, models.Gap(feed="iex")), on_completed(300)
    )
    res = scheduler.start(lambda: xs.pipe(ops.to_frames(count=2)))
    assert len(res.messages) == 1 and res.messages[0].value.kind == "E"
    assert isinstance(res.messages[0].value.exception, ConfigurationError)
    assert "got Gap, Quote" in str(res.messages[0].value.exception)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "needs timespan=, count= or both"),
        ({"count": 0}, "count must be a positive int"),
        ({"timespan": -1.0}, "timespan must be a positive number"),
        ({"count": 1, "library": "arrow"}, "library must be 'pandas' or 'polars'"),
    ],
)
def test_bad_arguments_are_one_sentence(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ops.to_frames(**kwargs)


def test_timedelta_timespan_and_missing_pandas(monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import timedelta

    ops.to_frames(timedelta(seconds=1))
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ConfigurationError, match=r"rxalpaca\[pandas\]"):
        ops.to_frames(count=1)
