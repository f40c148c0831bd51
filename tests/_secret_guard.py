"""pytest plugin: fail any test whose logs reveal a known secret.

Registered from ``tests/conftest.py``. For every test, from the start of its setup to
the end of its teardown (so module- and session-scoped fixtures that end with it are
covered too), a handler on the root logger captures every record of every logger at
DEBUG, formatted *with* exception tracebacks and stack info; a record that contains a
known secret makes the test's teardown fail. The failure message shows the offending
lines with the secret masked.

Known secrets: :data:`rxalpaca.testing.DEFAULT_SECRET` and anything passed to
:func:`register_secret` (or ``secret_guard.register(...)`` through the fixture).
Register a secret *before* the code under test may log it: records are checked as
they are emitted.

Besides logs, :func:`assert_no_secret` checks ``repr``/``str`` of any objects (for
exceptions: the whole formatted chain, ``__cause__`` and ``__context__`` included;
for dicts, lists and tuples: every element), for the places logs cannot see
(reprs, exceptions, metrics and health dicts).

Example::

    from _secret_guard import assert_no_secret, register_secret   # or tests._secret_guard

    def test_wrong_secret(make_client, alpaca_server):
        client = make_client(alpaca_server, secret=register_secret("hunter2-wrong"))
        ...
        assert_no_secret(client, client.health(), client.metrics.snapshot())

One exception: the ``websockets`` loggers (the library of the embedded test server and
of alpaca-py) are kept at INFO during the test. At DEBUG they dump every frame the
*server* receives — the client's auth message included — which is the peer's view of
the secret, not a leak by rxalpaca; and formatting one debug line per frame would slow
every high-rate suite. Their INFO and above records are still checked.
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from rxalpaca.testing import DEFAULT_SECRET

__all__ = [
    "SecretGuardHandler",
    "assert_no_secret",
    "find_secrets",
    "known_secrets",
    "register_secret",
    "secret_guard",
]

# One registry whatever name imported this module first: the lead registers it as a
# plugin from tests/conftest.py ("_secret_guard" or "tests._secret_guard") while test
# modules import it by the other name.
for _alias in ("_secret_guard", "tests._secret_guard"):
    sys.modules.setdefault(_alias, sys.modules[__name__])

#: Loggers held at this level (not lower) while a test runs; see the module docstring.
QUIET_LOGGERS: dict[str, int] = {"websockets": logging.INFO}

_lock = threading.Lock()
_secrets: set[str] = {DEFAULT_SECRET}
_MIN_LEN = 4  # shorter strings would match by accident


def register_secret(secret: str) -> str:
    """Treat ``secret`` as a secret from now on (for every later test too); returns it."""
    if not isinstance(secret, str) or len(secret) < _MIN_LEN:
        raise ValueError(f"a secret to guard must be a str of at least {_MIN_LEN} characters")
    with _lock:
        _secrets.add(secret)
    return secret


def known_secrets() -> frozenset[str]:
    """Every secret guarded right now."""
    with _lock:
        return frozenset(_secrets)


def find_secrets(text: str) -> list[str]:
    """The known secrets that occur in ``text``."""
    return [s for s in known_secrets() if s in text]


def mask(text: str) -> str:
    """``text`` with every known secret replaced by ``***``."""
    for s in sorted(known_secrets(), key=len, reverse=True):
        text = text.replace(s, "***")
    return text


def _renderings(obj: Any, depth: int = 0) -> Iterator[str]:
    yield repr(obj)
    yield str(obj)
    if isinstance(obj, BaseException):
        yield "".join(traceback.format_exception(obj))
        for attr in ("__cause__", "__context__"):
            inner = getattr(obj, attr)
            if inner is not None and depth < 5:
                yield from _renderings(inner, depth + 1)
        for arg in obj.args:
            if depth < 5:
                yield from _renderings(arg, depth + 1)
    elif isinstance(obj, dict) and depth < 5:
        for k, v in obj.items():
            yield from _renderings(k, depth + 1)
            yield from _renderings(v, depth + 1)
    elif isinstance(obj, list | tuple | set | frozenset) and depth < 5:
        for v in obj:
            yield from _renderings(v, depth + 1)


def assert_no_secret(*objects: Any) -> None:
    """Fail if a known secret shows in the repr/str of any object (see module docstring)."""
    for i, obj in enumerate(objects):
        for text in _renderings(obj):
            if isinstance(text, str) and find_secrets(text):
                pytest.fail(
                    f"a secret shows in object #{i} ({type(obj).__name__}): {mask(text)[:500]}",
                    pytrace=False,
                )


class SecretGuardHandler(logging.Handler):
    """Checks every record as it is emitted; keeps the offending lines (masked)."""

    def __init__(self, keep: int = 20) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(
            logging.Formatter("%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s")
        )
        self.findings: list[str] = []
        self.records = 0
        #: The last ``keep`` formatted lines (masked), for debugging a failure.
        self.recent: deque[str] = deque(maxlen=keep)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            # Formatter.format appends the traceback (exc_info) and stack_info.
            text = self.format(record)
        except Exception as exc:  # a broken record is still checked, as raw as it gets
            text = f"{record.msg!r} % {record.args!r} (unformattable: {exc!r})"
        if record.exc_info and record.exc_info[1] is not None:
            # Also each exception's own repr and args (a message may hide them).
            text += "\n" + "\n".join(_renderings(record.exc_info[1]))
        self.records += 1
        if find_secrets(text):
            self.findings.append(mask(text))
        self.recent.append(mask(text))

    def register(self, secret: str) -> str:
        """Same as :func:`register_secret`."""
        return register_secret(secret)

    def check(self) -> None:
        """Fail if any record so far held a secret."""
        if self.findings:
            shown = "\n---\n".join(f[:2000] for f in self.findings[:5])
            pytest.fail(
                f"{len(self.findings)} log record(s) revealed a secret (masked as ***):\n{shown}",
                pytrace=False,
            )


class _Attached:
    """The handler of one test and the logger levels to restore."""

    def __init__(self, root_level: int = logging.DEBUG) -> None:
        self.handler = SecretGuardHandler()
        root = logging.getLogger()
        self._root_level = root.level
        root.addHandler(self.handler)
        root.setLevel(root_level)
        self._levels: list[tuple[logging.Logger, int]] = []
        for name, level in QUIET_LOGGERS.items():
            lg = logging.getLogger(name)
            self._levels.append((lg, lg.level))
            if lg.getEffectiveLevel() < level or lg.level == logging.NOTSET:
                lg.setLevel(level)

    def detach(self) -> SecretGuardHandler:
        root = logging.getLogger()
        root.removeHandler(self.handler)
        root.setLevel(self._root_level)
        for lg, level in self._levels:
            lg.setLevel(level)
        return self.handler


_KEY = pytest.StashKey[_Attached]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "secret_guard_level(level): root logger level while the secret guard watches this "
        "test (default DEBUG). At DEBUG pytest's own log capture also keeps every DEBUG/INFO "
        "record, which memory-growth tests may count: they can ask for logging.WARNING.",
    )


def _level(item: pytest.Item) -> int:
    marker = item.get_closest_marker("secret_guard_level")
    return int(marker.args[0]) if marker and marker.args else logging.DEBUG


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterable[None]:
    if _KEY not in item.stash:
        item.stash[_KEY] = _Attached(_level(item))
    return (yield)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterable[None]:
    try:
        return (yield)
    finally:
        attached = item.stash.get(_KEY, None)
        if attached is not None:
            del item.stash[_KEY]
            attached.detach().check()


@pytest.fixture
def secret_guard(request: pytest.FixtureRequest) -> SecretGuardHandler:
    """This test's guard: ``.register(secret)``, ``.findings``, ``.records``, ``.recent``."""
    attached: _Attached | None = request.node.stash.get(_KEY, None)
    if attached is None:  # pragma: no cover - the hooks always attach first
        attached = request.node.stash[_KEY] = _Attached(_level(request.node))
    return attached.handler
