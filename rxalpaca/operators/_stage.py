"""Stages: the one implementation behind the pipeline's operators, piped or fused.

A stage is the logic of one operator as plain functions: ``on_next`` handles an item and
calls ``emit`` (the next stage, or the observer) with what it produces; ``on_completed``,
if the stage has one, flushes what it still holds when the source completes, before the
completion passes on (``reassemble`` reports a message cut off by the end). Errors pass
straight through: no stage has anything to add to one.

:func:`lift` runs one stage as an Rx operator; :func:`fuse` chains several into one Rx hop
(``ops.pipeline``), each stage calling the next as a plain function, which saves two Python
calls per stage and item (docs/benchmarks.md). Both wire items, completion and errors the
same way — a flush runs before the completion reaches the stages after it — so a fused
pipeline cannot behave differently from its stages piped (tests/operators/test_pipeline.py
checks it on random streams).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from reactivex import Observable, abc

from ..metrics import StageProfile, active_profile

_In = TypeVar("_In")
_Out = TypeVar("_Out")
_Out_co = TypeVar("_Out_co", covariant=True)


class Stage(NamedTuple, Generic[_In]):
    """One subscription's state of a stage: what to do per item, and at completion."""

    on_next: Callable[[_In], None]
    #: Called when the source completes, before the completion passes on; may emit.
    on_completed: Callable[[], None] | None = None


class StageFactory(Protocol[_In, _Out_co]):
    """Builds a stage's fresh state feeding ``emit`` (one per subscription: a reconnect
    starts clean); takes ``_In`` items, emits ``_Out`` ones."""

    def __call__(self, emit: Callable[[_Out_co], None], /) -> Stage[_In]: ...


def lift(make: StageFactory[_In, _Out]) -> Callable[[Observable[_In]], Observable[_Out]]:
    """One stage as an Rx operator: :func:`fuse` of that stage alone, one wiring for both."""
    return fuse(make)


def fuse(
    *makes: StageFactory[Any, Any], names: Sequence[str] = ()
) -> Callable[[Observable[Any]], Observable[Any]]:
    """Stages chained into one Rx operator: ``fuse(a, b)`` ≡ ``pipe(lift(a), lift(b))``.

    ``names``: one per stage, and optionally one more for the observer after them. When
    a :class:`~rxalpaca.metrics.StageProfile` is active as a subscription is made, each
    named step of it is timed (inclusive of the steps it calls); otherwise nothing is
    added to it — the check is made once per subscription, not per item.
    """

    def operator(source: Observable[Any]) -> Observable[Any]:
        def subscribe(
            observer: abc.ObserverBase[Any],
            scheduler: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            emit: Callable[[Any], None] = observer.on_next
            profile = active_profile() if names else None
            if profile is not None and len(names) > len(makes):
                emit = _timed(emit, names[len(makes)], profile)
            stages: list[Stage[Any]] = []
            for i in reversed(range(len(makes))):  # the last stage feeds the observer
                stage = makes[i](emit)
                stages.append(stage)
                emit = stage.on_next
                if profile is not None:
                    emit = _timed(emit, names[i], profile)
            stages.reverse()
            return source.subscribe(
                emit, observer.on_error, _completion(stages, observer), scheduler=scheduler
            )

        return Observable(subscribe)

    return operator


def _timed(step: Callable[[Any], None], name: str, profile: StageProfile) -> Callable[[Any], None]:
    """``step`` with a clock read either side, reported to ``profile`` (profiling only)."""
    clock = time.perf_counter_ns
    add = profile.add

    def timed(item: Any) -> None:
        t0 = clock()
        try:
            step(item)
        finally:
            add(name, clock() - t0)

    return timed


def _completion(stages: list[Stage[Any]], observer: abc.ObserverBase[Any]) -> Callable[[], None]:
    """``on_completed`` for a chain: each stage's flush, upstream first — what piping them
    does, where the completion reaches a stage only after the stages before it flushed
    into it — then the observer's."""
    flushes = [s.on_completed for s in stages if s.on_completed is not None]
    if not flushes:
        return observer.on_completed

    def on_completed() -> None:
        for flush in flushes:
            flush()
        observer.on_completed()

    return on_completed
