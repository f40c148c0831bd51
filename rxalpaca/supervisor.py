"""``Supervisor``: the one thread per client for everything that runs on a clock.

Reply deadlines, the linger before a subscription request leaves, silence and
slow-observer checks and the summaries of rate-limited log lines are all *checks*:
plain functions ``check(now) -> next`` called with ``time.monotonic()``, each
returning when it next wants to run (or ``None``: at the next regular look). The
thread sleeps until the earliest of those, or until :meth:`Supervisor.wake` says a
check has something due sooner (a new linger, a new deadline). One thread instead of
a watchdog plus a ``threading.Timer`` per flush: nothing is created per
subscription change, and every clock-driven decision is made in one place.

Threading: checks run on the supervisor thread only, one after another; what they
touch belongs to their owners, who say which lock guards it. ``_cond`` guards the
stop and wake flags. A check that raises is logged and the others go on.

Example::

    >>> import time
    >>> ran = []
    >>> sup = Supervisor("doc", period=0.01)
    >>> sup.add(lambda now: ran.append(now) or None)
    >>> sup.start(); time.sleep(0.05); sup.stop()
    >>> len(ran) > 1
    True
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["Check", "Supervisor"]

logger = logging.getLogger("rxalpaca")

#: ``check(now)`` runs due work and returns the monotonic time it next wants to run.
Check = Callable[[float], float | None]


class Supervisor:
    """Runs checks on one daemon thread, each as soon as it is due.

    Args:
        name: prefix of the thread's name.
        period: the longest sleep between two rounds of checks (seconds).
    """

    def __init__(self, name: str, period: float = 0.5) -> None:
        self.period = period
        self._checks: tuple[Check, ...] = ()
        self._cond = threading.Condition()
        self._stopped = False
        self._woken = False
        self._thread = threading.Thread(target=self._run, name=f"{name}-supervisor", daemon=True)
        self._started = False

    def add(self, check: Check) -> None:
        """Run ``check`` from now on (any thread)."""
        with self._cond:
            self._checks = (*self._checks, check)
            self._woken = True
            self._cond.notify()

    def start(self) -> None:
        """Start the thread (idempotent; not after :meth:`stop`)."""
        with self._cond:
            if self._started or self._stopped:
                return
            self._started = True
        self._thread.start()

    def wake(self) -> None:
        """Run the checks now: one of them has something due sooner (any thread)."""
        with self._cond:
            self._woken = True
            self._cond.notify()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop promptly; joins the thread unless called from it."""
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self._started and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        """Whether the thread is running (for leak checks)."""
        return self._thread.is_alive()

    def _run(self) -> None:
        clock = time.monotonic
        while True:
            with self._cond:
                if self._stopped:
                    return
                self._woken = False
                checks = self._checks
            now = clock()
            wake_at = now + self.period
            for check in checks:
                try:
                    due = check(now)
                except Exception:
                    logger.exception("a supervisor check raised; the others go on")
                    continue
                if due is not None and due < wake_at:
                    wake_at = due
            with self._cond:
                if self._stopped:
                    return
                if not self._woken:
                    self._cond.wait(max(wake_at - clock(), 0.0005))
