"""Fixtures for client integration tests: a real server on 127.0.0.1, real sockets."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from reactivex.abc import ObserverBase

from rxalpaca import RetryPolicy, StreamClient
from rxalpaca.testing import DEFAULT_KEY, DEFAULT_SECRET, AlpacaStreamServer

FAST_RETRY = RetryPolicy(initial_delay=0.02, max_delay=0.2)


class Collector(ObserverBase[Any]):
    """An observer that records everything and lets a test wait for events."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.errors: list[BaseException] = []
        self.completed = threading.Event()
        self.errored = threading.Event()
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._cond = threading.Condition()

    def on_next(self, value: Any) -> None:
        with self._cond:
            self.items.append(value)
            self._cond.notify_all()

    def on_error(self, error: Exception) -> None:
        self.errors.append(error)
        self.errored.set()
        with self._cond:
            self._cond.notify_all()

    def on_completed(self) -> None:
        self.completed.set()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, n: int, timeout: float = 5.0) -> list[Any]:
        """Block until at least ``n`` items arrived (event-driven)."""
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.items) >= n or self.errors, timeout)
        if not ok or len(self.items) < n:
            raise AssertionError(f"got {len(self.items)} items, wanted {n}; errors {self.errors}")
        return list(self.items)


@pytest.fixture
def collector() -> Callable[[], Collector]:
    return Collector


@pytest.fixture
def make_client() -> Iterator[Callable[..., StreamClient]]:
    clients: list[StreamClient] = []

    def make(server: AlpacaStreamServer, feed: str = "iex", **kw: Any) -> StreamClient:
        kw.setdefault("key", DEFAULT_KEY)
        kw.setdefault("secret", DEFAULT_SECRET)
        kw.setdefault("retry", FAST_RETRY)
        kw.setdefault("ping_interval", None)
        client = StreamClient(feed, url=server.base_url, **kw)
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.close()


class SecretWatch(logging.Handler):
    """Captures every log record of every logger (formatted, with tracebacks)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    handler = SecretWatch()
    root = logging.getLogger()
    old = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    yield handler.lines
    root.removeHandler(handler)
    root.setLevel(old)
