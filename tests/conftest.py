"""Shared test configuration.

``rxalpaca.testing``'s fixtures (``alpaca_server`` …) are loaded here, once, for
every test directory.
"""

from __future__ import annotations

import os

pytest_plugins = ["rxalpaca.testing.pytest_plugin"]

#: Timing-sensitive tests scale their waits by this factor on slow machines
#: (python-websockets' habit): RXALPACA_TIMING_FACTOR=3 pytest ...
TIMING_FACTOR = float(os.environ.get("RXALPACA_TIMING_FACTOR", "1"))
