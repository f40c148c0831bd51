"""rxalpaca: Alpaca's real-time market data as reactive streams."""

from __future__ import annotations

__version__ = "0.1.0"
