"""The supervisor: one thread runs every clock-driven check, each as soon as it is due."""

from __future__ import annotations

import threading
import time

import pytest

from rxalpaca.supervisor import Supervisor
from tests.conftest import TIMING_FACTOR

WAIT = 5.0 * TIMING_FACTOR
pytestmark = pytest.mark.timeout(30)


def test_a_check_runs_again_at_the_time_it_asks_for() -> None:
    sup = Supervisor("t", period=30.0)  # the period alone would not run it again in time
    runs: list[float] = []
    twice = threading.Event()

    def check(now: float) -> float | None:
        runs.append(now)
        if len(runs) == 2:
            twice.set()
            return None
        return now + 0.05

    sup.add(check)
    sup.start()
    try:
        assert twice.wait(WAIT)
        assert runs[1] - runs[0] >= 0.05
    finally:
        sup.stop()


def test_wake_runs_the_checks_at_once() -> None:
    sup = Supervisor("t", period=30.0)
    due = threading.Event()
    ran = threading.Event()

    def check(_now: float) -> float | None:
        if due.is_set():
            ran.set()
        return None

    sup.add(check)
    sup.start()
    try:
        due.set()
        sup.wake()
        assert ran.wait(WAIT)  # well before the 30 s period
    finally:
        sup.stop()


def test_a_raising_check_is_logged_and_the_others_go_on(caplog: pytest.LogCaptureFixture) -> None:
    sup = Supervisor("t", period=0.01)
    ran = threading.Event()

    def bad(_now: float) -> float | None:
        raise RuntimeError("check bug")

    def good(_now: float) -> float | None:
        ran.set()
        return None

    sup.add(bad)
    sup.add(good)
    sup.start()
    try:
        assert ran.wait(WAIT)
    finally:
        sup.stop()
    assert any("check bug" in (r.exc_text or "") for r in caplog.records)


def test_stop_is_prompt_and_the_thread_ends() -> None:
    sup = Supervisor("t", period=30.0)
    sup.add(lambda _now: None)
    sup.start()
    assert sup.alive
    t0 = time.monotonic()
    sup.stop()
    assert not sup.alive and time.monotonic() - t0 < 1.0 * TIMING_FACTOR
    sup.start()  # no restart after stop
    assert not sup.alive


def test_stop_from_a_check_does_not_deadlock() -> None:
    sup = Supervisor("t", period=0.01)
    stopped = threading.Event()

    def check(_now: float) -> float | None:
        sup.stop()
        stopped.set()
        return None

    sup.add(check)
    sup.start()
    assert stopped.wait(WAIT)
    sup._thread.join(WAIT)
    assert not sup.alive
