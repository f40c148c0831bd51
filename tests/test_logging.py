"""Rate-limited logging (``rxalpaca._logging``), on a fake clock."""

from __future__ import annotations

import logging
import threading

import pytest

from rxalpaca._logging import RateLimitedLog, RepeatLimiter, Verdict


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_first_in_full_then_silence_then_one_summary_per_interval(clock: FakeClock) -> None:
    lim = RepeatLimiter(10.0, clock=clock)
    assert lim.hit("k", lambda: "note") == Verdict(True, 1, 0.0, "note")
    for _ in range(147):
        clock.now += 0.05
        assert lim.hit("k") is None
    clock.now = 1010.0  # the interval is over: the next event writes the summary
    assert lim.hit("k") == Verdict(False, 148, 10.0, "note")
    clock.now += 9.9
    assert lim.hit("k") is None
    clock.now += 0.1
    # approx stands in for the float field: it compares equal to floats near 10.0.
    assert lim.hit("k") == Verdict(False, 2, pytest.approx(10.0), "note")  # type: ignore[arg-type]


def test_keys_are_independent(clock: FakeClock) -> None:
    lim = RepeatLimiter(10.0, clock=clock)
    assert lim.hit(("handler", "a", ValueError)) is not None
    assert lim.hit(("handler", "b", ValueError)) is not None
    assert lim.hit(("handler", "a", KeyError)) is not None
    assert lim.hit(("handler", "a", ValueError)) is None


def test_the_note_is_made_only_for_a_first_event(clock: FakeClock) -> None:
    lim = RepeatLimiter(10.0, clock=clock)
    made: list[int] = []

    def note() -> str:
        made.append(1)
        return "text"

    for _ in range(100):
        lim.hit("k", note)
    assert made == [1]


def test_after_a_quiet_interval_the_next_event_is_first_again(clock: FakeClock) -> None:
    lim = RepeatLimiter(10.0, clock=clock)
    lim.hit("k")
    clock.now += 10.0
    verdict = lim.hit("k")
    assert verdict is not None and verdict.first


def test_due_returns_the_summaries_of_keys_gone_quiet_once(clock: FakeClock) -> None:
    lim = RepeatLimiter(10.0, clock=clock)
    lim.hit("quiet", lambda: "q")
    lim.hit("quiet")
    lim.hit("quiet")
    lim.hit("single")
    assert lim.due() == []  # nothing is owed before the interval is over
    clock.now += 10.0
    assert lim.due() == [("quiet", Verdict(False, 2, 10.0, "q"))]
    assert lim.due() == []
    clock.now += 10.0
    verdict = lim.hit("quiet")
    assert verdict is not None and verdict.first


def test_memory_is_bounded_by_max_keys(clock: FakeClock) -> None:
    lim = RepeatLimiter(10.0, max_keys=8, clock=clock)
    for i in range(10_000):
        lim.hit(("handler", i))
        assert len(lim) <= 8
    # The least recently seen go first: the newest key is still counted.
    assert lim.hit(("handler", 9_999)) is None


def test_keys_that_went_quiet_are_let_go(clock: FakeClock) -> None:
    lim = RepeatLimiter(10.0, max_keys=1000, clock=clock)
    for i in range(100):
        lim.hit(i)
    clock.now += 10.0
    lim.hit("new")
    assert len(lim) == 1  # an idle key is the same as no key: its next event is first


def test_a_key_with_an_unwritten_count_is_kept_until_it_is_written(clock: FakeClock) -> None:
    lim = RepeatLimiter(10.0, max_keys=1000, clock=clock)
    lim.hit("owed")
    lim.hit("owed")
    clock.now += 10.0
    lim.hit("new")
    assert len(lim) == 2
    assert [k for k, _ in lim.due()] == ["owed"]


def test_thread_safe_every_event_is_accounted_for() -> None:
    lim = RepeatLimiter(3600.0)
    n_threads, per_thread = 4, 2_000
    start = threading.Barrier(n_threads)
    verdicts: list[Verdict | None] = []
    lock = threading.Lock()

    def work() -> None:
        start.wait()
        mine = [lim.hit("k") for _ in range(per_thread)]
        with lock:
            verdicts.extend(mine)

    threads = [threading.Thread(target=work) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(v is not None for v in verdicts) == 1  # exactly one first, no lost update
    assert lim.due() == []  # the interval is an hour: nothing owed yet
    assert len(verdicts) == n_threads * per_thread


@pytest.mark.parametrize(
    ("kw", "match"), [({"interval": 0}, "interval"), ({"max_keys": 0}, "max_keys")]
)
def test_bad_settings(kw: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RepeatLimiter(**kw)  # type: ignore[arg-type]


def test_rate_limited_log_writes_one_traceback_then_summaries(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    log = RateLimitedLog(logging.getLogger("rxalpaca.test"), 10.0, clock=clock)
    caplog.set_level(logging.DEBUG, logger="rxalpaca.test")
    written = []
    for i in range(50):
        try:
            raise ValueError(f"boom {i}")
        except ValueError:
            written.append(
                log.log("k", logging.ERROR, "handler raised %s", "ValueError", exc_info=True)
            )
        clock.now += 0.1
    assert written == [True] + [False] * 49
    [first] = caplog.records
    assert first.getMessage() == "handler raised ValueError"
    assert first.exc_info is not None and "boom 0" in caplog.text
    assert first.funcName == "test_rate_limited_log_writes_one_traceback_then_summaries"
    clock.now += 5.0
    assert log.log("k", logging.ERROR, "handler raised %s", "ValueError", exc_info=True)
    summary = caplog.records[-1]
    assert summary.exc_info is None and summary.levelno == logging.ERROR
    assert summary.getMessage() == (
        "handler raised ValueError (repeated 50 times in the last 10.0 s; "
        "only the first is logged in full)"
    )


def test_flush_writes_what_quiet_keys_still_owe(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    log = RateLimitedLog(logging.getLogger("rxalpaca.test"), 10.0, clock=clock)
    caplog.set_level(logging.DEBUG, logger="rxalpaca.test")
    for _ in range(3):
        log.log("bad-frame", logging.WARNING, "bad frame from %s", "iex")
    assert log.flush() == 0
    clock.now += 12.0
    assert log.flush() == 1
    assert log.flush() == 0
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "bad frame from iex"),
        (
            logging.WARNING,
            "bad frame from iex (repeated 2 times in the last 12.0 s; "
            "only the first is logged in full)",
        ),
    ]


def test_events_below_the_level_are_counted_but_not_written(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    log = RateLimitedLog(logging.getLogger("rxalpaca.test"), 10.0, clock=clock)
    caplog.set_level(logging.ERROR, logger="rxalpaca.test")
    assert not log.log("k", logging.INFO, "x")
    caplog.set_level(logging.INFO, logger="rxalpaca.test")
    assert not log.log("k", logging.INFO, "x")  # not a new flood: a repeat, counted
    assert caplog.records == []
