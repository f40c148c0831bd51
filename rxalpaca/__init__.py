"""rxalpaca: Alpaca's real-time market data as reactive streams.

::

    from rxalpaca import StreamClient, ops
    client = StreamClient(feed="iex")
    client.quotes("AAPL").pipe(ops.throttle(0.5)).subscribe(print)

See ``docs/client.md`` for the client, the operators and the threading model.
"""

from __future__ import annotations

from . import operators
from . import operators as ops
from .aio import aiter, iterate
from .client import StreamClient, SubscriptionMismatch, UnknownMessage
from .codec import Codec
from .errors import (
    AuthFailed,
    ClientClosedError,
    ConfigurationError,
    ConnectionLimitExceeded,
    ConnectionLostError,
    FrameError,
    HandlerError,
    InsufficientSubscription,
    RxAlpacaError,
    StreamError,
    SubscriptionRejected,
)
from .feeds import Channel, Family
from .frames import Frame, Opcode
from .metrics import Metrics
from .models import (
    Bar,
    CancelError,
    Correction,
    CryptoBar,
    CryptoDailyBar,
    CryptoQuote,
    CryptoTrade,
    CryptoUpdatedBar,
    DailyBar,
    Imbalance,
    Luld,
    News,
    OptionQuote,
    OptionTrade,
    OrderBook,
    OrderBookLevel,
    Quote,
    Trade,
    TradingStatus,
    UpdatedBar,
)
from .operators import RetryPolicy
from .protocol import ConnectionState

__version__ = "0.1.0"

__all__ = [
    "AuthFailed",
    "Bar",
    "CancelError",
    "Channel",
    "ClientClosedError",
    "Codec",
    "ConfigurationError",
    "ConnectionLimitExceeded",
    "ConnectionLostError",
    "ConnectionState",
    "Correction",
    "CryptoBar",
    "CryptoDailyBar",
    "CryptoQuote",
    "CryptoTrade",
    "CryptoUpdatedBar",
    "DailyBar",
    "Family",
    "Frame",
    "FrameError",
    "HandlerError",
    "Imbalance",
    "InsufficientSubscription",
    "Luld",
    "Metrics",
    "News",
    "Opcode",
    "OptionQuote",
    "OptionTrade",
    "OrderBook",
    "OrderBookLevel",
    "Quote",
    "RetryPolicy",
    "RxAlpacaError",
    "StreamClient",
    "StreamError",
    "SubscriptionMismatch",
    "SubscriptionRejected",
    "Trade",
    "TradingStatus",
    "UnknownMessage",
    "UpdatedBar",
    "__version__",
    "aiter",
    "iterate",
    "operators",
    "ops",
]
