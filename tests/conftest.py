"""Shared test configuration.

``rxalpaca.testing``'s fixtures (``alpaca_server`` …) are loaded here, once, for
every test directory.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from tests._subprocess import publish

# The server fixtures, and the secret guard that fails any test whose logs reveal
# a known API secret (issue: "across all suites ... the secret never appears").
pytest_plugins = ["rxalpaca.testing.pytest_plugin", "tests._secret_guard"]

# pytest started as a background job of a non-interactive shell (`pytest &` in a script)
# inherits SIGINT ignored, and so would every child it starts: the Ctrl-C tests of the
# CLI, compat and entry points would wait in vain. A handler here resets to the default
# across exec, so the children get Python's usual KeyboardInterrupt.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

#: Timing-sensitive tests scale their waits by this factor on slow machines
#: (python-websockets' habit): RXALPACA_TIMING_FACTOR=3 pytest ...
TIMING_FACTOR = float(os.environ.get("RXALPACA_TIMING_FACTOR", "1"))


@pytest.fixture(scope="session", autouse=True)
def _child_coverage() -> Iterator[None]:
    """Hands the coverage data of measured child processes (tests/_subprocess.py) to
    pytest-cov: session fixtures end inside the test loop, before it combines."""
    yield
    publish()
