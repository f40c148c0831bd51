"""Shared test configuration.

``rxalpaca.testing``'s fixtures (``alpaca_server`` …) are loaded here, once, for
every test directory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests._subprocess import publish

# The server fixtures, and the secret guard that fails any test whose logs reveal
# a known API secret (issue: "across all suites ... the secret never appears").
pytest_plugins = ["rxalpaca.testing.pytest_plugin", "tests._secret_guard"]

#: Timing-sensitive tests scale their waits by this factor on slow machines
#: (python-websockets' habit): RXALPACA_TIMING_FACTOR=3 pytest ...
TIMING_FACTOR = float(os.environ.get("RXALPACA_TIMING_FACTOR", "1"))


@pytest.fixture(scope="session", autouse=True)
def _child_coverage() -> Iterator[None]:
    """Hands the coverage data of measured child processes (tests/_subprocess.py) to
    pytest-cov: session fixtures end inside the test loop, before it combines."""
    yield
    publish()
