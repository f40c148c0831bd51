"""The whole in-process pipeline, frames to observers, with 1, 100 and 1,000 subscriptions.

Run (numbers in ``docs/benchmarks.md``, section "Routing and the in-process pipeline")::

    pytest benchmarks/bench_pipeline.py --benchmark-enable --benchmark-only -q \\
        --benchmark-group-by=param:encoding

Pre-built ``Frame`` objects (1-20 mixed trades/quotes/bars each, ``frames.py``) go through
reassemble → validate → decode → meter → route on a ``Subject``, as the socket thread runs
them, to one observer per (channel, symbol) (``_pipeline.py``). Two cuts of the same work
show where the time goes:

* ``decode_only`` — ``Codec.decode`` alone: the floor under the pipeline;
* ``without_rx`` — decode and ``Router.dispatch`` called in a plain loop: the pipeline
  minus the Rx operators (reassemble, validate, meter and their ``on_next`` hops).

``test_pipeline`` runs the stages both as ``ops.pipeline`` fuses them (``fused``: what
``StreamClient`` runs) and as the five operators piped (``chain``).

The issue's target: the full pipeline with 1,000 subscriptions costs ≤ 1.1x its cost
with one. Without ``--benchmark-enable`` each case runs once and checks the counts.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest
from _pipeline import Pipeline
from reactivex import from_iterable

SUBSCRIPTIONS = (1, 100, 1000)
ENCODINGS = ("json", "msgpack")


@cache
def pipeline(subscriptions: int, encoding: str, fused: bool = False) -> Pipeline:
    return Pipeline(subscriptions, encoding, frames_per_run=200, fused=fused)


@pytest.mark.parametrize("subscriptions", SUBSCRIPTIONS)
@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("variant", ["chain", "fused"])
def test_pipeline(benchmark: Any, variant: str, encoding: str, subscriptions: int) -> None:
    """``fused``: ``ops.pipeline``, as ``StreamClient`` runs it; ``chain``: the five
    operators piped one after another (an Rx hop each)."""
    p = pipeline(subscriptions, encoding, variant == "fused")
    delivered = benchmark(p.run)
    assert delivered == p.w.messages
    assert p.rest == []  # no control messages, unknowns or errors in a clean stream
    assert p.metrics.frames_balance()
    assert p.metrics.messages_balance()
    assert p.metrics.messages_unrouted == 0


@pytest.mark.parametrize("subscriptions", (1, 1000))
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_pipeline_without_rx(benchmark: Any, encoding: str, subscriptions: int) -> None:
    p = pipeline(subscriptions, encoding)
    assert benchmark(p.run_without_rx) == p.w.messages


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_decode_only(benchmark: Any, encoding: str) -> None:
    p = pipeline(1000, encoding)
    assert benchmark(p.run_decode_only) == p.w.messages


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_pipeline_from_iterable(benchmark: Any, encoding: str) -> None:
    """The same pipeline fed by ``reactivex.from_iterable`` (a cold source per round)."""
    from rxalpaca.codec import Codec
    from rxalpaca.metrics import Metrics
    from rxalpaca.operators import decode, meter, reassemble, route, validate

    p = pipeline(1000, encoding)
    codec, metrics = Codec("iex", encoding), Metrics()  # type: ignore[arg-type]
    router = p.router

    def run() -> int:
        before = p.counter.n
        from_iterable(p.frames).pipe(
            reassemble(), validate(), decode(codec), meter(metrics), route(router)
        ).subscribe(lambda _: None)
        return p.counter.n - before

    assert benchmark(run) == p.w.messages
