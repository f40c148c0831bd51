"""``route``: hand each batch to the :class:`~rxalpaca.router.Router`; emit what is not data.

The routing table itself is sans-I/O and lives in ``rxalpaca/router.py``; this operator
adds what belongs to the stream: timing the observers (the slow-observer check reads
it), the data clock, and emitting control messages, ``Unknown`` and ``FrameError``
values downstream one by one.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from reactivex import Observable

from ..codec import Decoded
from ..frames import Batch
from ..metrics import thread_binding
from ..router import Router
from ._stage import Stage, StageFactory, lift

#: One batch in this many goes into the observer-time percentiles; every batch is
#: timed (two clock reads) for the running total the slow-observer check uses.
TIMING_SAMPLE = 16


def route_stage(router: Router) -> StageFactory[Batch[Decoded], Decoded]:
    """The logic of :func:`route` as a stage (``_stage.py``; socket thread)."""

    def make(emit: Callable[[Decoded], None]) -> Stage[Batch[Decoded]]:
        return Stage(_router_step(router, emit))

    return make


def _router_step(
    router: Router, emit: Callable[[Decoded], None]
) -> Callable[[Batch[Decoded]], None]:
    dispatch = router.dispatch
    metrics = router.metrics
    timing = metrics.observer_time
    histogram = metrics.observer_histogram
    binding = thread_binding()
    bound = False
    clock = time.perf_counter_ns
    count = 0

    def on_next(batch: Batch[Decoded]) -> None:
        nonlocal count, bound
        if not bound:
            # Slow-consumer operators fed on this thread count their discards in these
            # metrics. Once per subscription: a connection's frames come on one thread.
            binding.metrics = metrics
            bound = True
        t0 = clock()
        # Published so the supervisor can see a batch that is taking long *while* it runs.
        metrics.dispatch_started_ns = t0
        items = batch.items
        rest = dispatch(items)
        spent = clock() - t0
        if len(rest) < len(items):
            # Market data (not only acks, errors or bad messages): the data clock that
            # silence_timeout and health()["last_data_age_s"] read.
            metrics.last_message_ns = batch.received_ns
        metrics.dispatch_started_ns = 0
        metrics.observer_time_total_ns += spent
        hook = metrics.receive_hook
        if hook is not None:  # sampled receive spans (contrib.otel), when asked for
            hook(batch)
        count += 1
        if not count % TIMING_SAMPLE:
            timing.add(spent)
            histogram.observe(spent)
        for item in rest:
            emit(item)

    return on_next


def route_(router: Router) -> Callable[[Observable[Batch[Decoded]]], Observable[Decoded]]:
    return lift(route_stage(router))
