"""Histograms, reconnect reasons, discards and the stage profile (issue #15, items 1 and 3)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from rxalpaca.errors import (
    AuthTimeout,
    ConnectionLostError,
    InvalidSyntax,
    KeepaliveTimeout,
    RemoteProtocolError,
    ReplyTimeout,
    SilenceTimeout,
    SlowClient,
    error_for_code,
)
from rxalpaca.metrics import (
    Histogram,
    Metrics,
    StageProfile,
    active_profile,
    bind_thread,
    count_discarded,
    quantile,
    start_profiling,
    stop_profiling,
)
from rxalpaca.upstream import reconnect_reason


def test_histogram_buckets_are_inclusive_upper_bounds() -> None:
    h = Histogram((0.001, 0.01))
    for ns in (0, 1_000_000, 1_000_001, 10_000_000, 20_000_000, -5):
        h.observe(ns)
    # le=0.001 holds 0, 1 ms and the negative one; le=0.01 holds 1.000001 ms and 10 ms.
    assert h.counts() == [3, 2, 1]
    assert h.count == 6
    assert h.sum_ns == 1_000_000 + 1_000_001 + 10_000_000 + 20_000_000  # negatives add 0


def test_histogram_quantiles_interpolate_and_the_overflow_answers_the_last_bound() -> None:
    h = Histogram((1.0, 2.0))
    assert h.quantile(0.5) == 0.0  # empty
    for _ in range(10):
        h.observe(1_500_000_000)
    assert h.quantile(0.5) == pytest.approx(1.5)
    assert quantile((1.0, 2.0), [0, 0, 4], 0.99) == 2.0


@pytest.mark.parametrize("bounds", [(1.0, 1.0), (2.0, 1.0)])
def test_histogram_bounds_must_increase(bounds: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        Histogram(bounds)


def _wrapped() -> ConnectionLostError:
    err = ConnectionLostError("socket ended: OSError")
    err.__cause__ = OSError("reset")
    return err


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (SilenceTimeout("silent connection: no market data"), "silence"),
        (ReplyTimeout("auth reply overdue"), "reply_timeout"),
        (KeepaliveTimeout("ping unanswered"), "keepalive_timeout"),
        (RemoteProtocolError("idle", "success"), "protocol_error"),
        (SlowClient(), "server_error_407"),
        (AuthTimeout(), "server_error_404"),
        (error_for_code(500), "server_error_500"),
        (InvalidSyntax(), "server_error"),
        (error_for_code(599, "new"), "server_error"),
        (ConnectionLostError("server closed the connection (code 1000)"), "closed"),
        (_wrapped(), "network_error"),
        (RuntimeError("boom"), "error"),
    ],
)
def test_reconnect_reasons_are_few_and_named(error: BaseException, reason: str) -> None:
    assert reconnect_reason(error) == reason


def test_count_reconnect_keeps_the_total_and_the_reasons_in_step() -> None:
    m = Metrics()
    m.count_reconnect("closed")
    m.count_reconnect("closed")
    m.count_reconnect("silence")
    assert m.reconnects == 3 == sum(m.reconnects_by_reason.values())
    assert m.snapshot()["reconnects_by_reason"] == {"closed": 2, "silence": 1}


def test_discards_go_to_the_given_metrics_or_to_the_threads_client() -> None:
    mine, bound = Metrics(), Metrics()
    count_discarded("conflated", mine)
    assert mine.discarded() == {"conflated": 1}
    result: list[dict[str, int]] = []

    def unbound_thread() -> None:
        count_discarded("throttled")  # nobody's pipeline thread: counted nowhere
        bind_thread(bound)
        count_discarded("throttled")
        result.append(bound.discarded())

    t = threading.Thread(target=unbound_thread)
    t.start()
    t.join()
    assert result == [{"throttled": 1}]
    assert mine.snapshot()["messages_discarded"] == {"conflated": 1}


def test_stage_profile_breaks_inclusive_times_down() -> None:
    p = StageProfile()
    p.add("socket read", 1000)
    p.add("frame loop", 900)
    for name, ns in (("reassemble", 800), ("validate", 700), ("decode", 500), ("meter", 400)):
        p.add(name, ns)
    p.add("route", 300)
    p.add("control", 50)
    p.add("observers", 100)
    p.stopped_ns = p.started_ns + 5000
    rows = {name: ns for name, ns, _calls in p.breakdown()}
    assert rows == {
        "socket read (waiting included)": 1000,
        "framing + hop into the pipeline": 100,
        "reassemble": 100,
        "validate": 200,
        "decode": 100,
        "meter": 100,
        "route": 150,
        "control": 50,
        "observers": 100,
        "other": 5000 - 1900,
    }
    assert p.calls("route") == 1 and p.calls("nothing") == 0 and p.total_ns("nothing") == 0
    text = p.report(messages=10)
    assert "decode" in text and "µs/msg" in text and "1 frames, 10 messages" in text
    assert "-" not in StageProfile().report().splitlines()[1].split()[0]


def test_profiling_is_process_wide_and_off_by_default() -> None:
    assert active_profile() is None
    p = start_profiling()
    try:
        assert active_profile() is p
    finally:
        assert stop_profiling() is p
    assert active_profile() is None and p.stopped_ns
    assert stop_profiling() is None


def test_fuse_times_named_stages_only_while_profiling() -> None:
    import reactivex

    from rxalpaca.operators._stage import Stage, fuse

    def double(emit: Callable[[int], None]) -> Stage[int]:
        return Stage(lambda x: emit(2 * x))

    out: list[int] = []
    p = start_profiling()
    try:
        # As many names as stages: the observer after them is not timed.
        reactivex.from_iterable([1, 2, 3]).pipe(fuse(double, names=("double",))).subscribe(
            out.append
        )
    finally:
        stop_profiling()
    assert out == [2, 4, 6]
    assert p.calls("double") == 3 and list(p.stages) == ["double"]
    reactivex.from_iterable([1]).pipe(fuse(double, names=("double",))).subscribe(out.append)
    assert p.calls("double") == 3  # built after profiling stopped: not timed
