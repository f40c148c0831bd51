"""rxalpaca: Alpaca's real-time market data as reactive streams.

::

    from rxalpaca import StreamClient, ops
    client = StreamClient(feed="iex")
    client.quotes("AAPL").pipe(ops.throttle(0.5)).subscribe(print)

See ``docs/client.md`` for the client, the operators and the threading model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import operators
from . import operators as ops
from .aio import aiterate, iterate
from .client import StreamClient
from .codec import Codec
from .errors import (
    AlreadyAuthenticated,
    AuthFailed,
    AuthTimeout,
    BufferOverflow,
    BusDisconnected,
    BusMessageError,
    ClientClosedError,
    ConfigurationError,
    ConnectionLimitExceeded,
    ConnectionLostError,
    FrameError,
    HandlerError,
    InsufficientScope,
    InsufficientSubscription,
    InternalServerError,
    InvalidSubscribeAction,
    InvalidSyntax,
    KeepaliveTimeout,
    MsgpackRequired,
    NotAuthenticated,
    ProtocolViolation,
    RecordingError,
    RecordingTruncated,
    RemoteProtocolError,
    ReplyTimeout,
    RxAlpacaError,
    SlowClient,
    StarNotAllowed,
    StreamError,
    SubscriptionMismatch,
    SubscriptionRejected,
    SymbolLimitExceeded,
    UnknownMessage,
    V2NotEnabled,
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
    Gap,
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
from .replay import Replay, replay

__version__ = "0.1.0"

__all__ = [
    "AlreadyAuthenticated",
    "AuthFailed",
    "AuthTimeout",
    "Bar",
    "BufferOverflow",
    "BusDisconnected",
    "BusMessageError",
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
    "Gap",
    "HandlerError",
    "Imbalance",
    "InsufficientScope",
    "InsufficientSubscription",
    "InternalServerError",
    "InvalidSubscribeAction",
    "InvalidSyntax",
    "KeepaliveTimeout",
    "Luld",
    "Metrics",
    "MsgpackRequired",
    "News",
    "NotAuthenticated",
    "Opcode",
    "OptionQuote",
    "OptionTrade",
    "OrderBook",
    "OrderBookLevel",
    "ProtocolViolation",
    "Quote",
    "RecordingError",
    "RecordingTruncated",
    "RemoteProtocolError",
    "Replay",
    "ReplyTimeout",
    "RetryPolicy",
    "RxAlpacaError",
    "SlowClient",
    "StarNotAllowed",
    "StreamClient",
    "StreamError",
    "SubscriptionMismatch",
    "SubscriptionRejected",
    "SymbolLimitExceeded",
    "Trade",
    "TradingStatus",
    "UnknownMessage",
    "UpdatedBar",
    "V2NotEnabled",
    "__version__",
    "aiterate",
    "iterate",
    "operators",
    "ops",
    "replay",
]


if TYPE_CHECKING:
    # Deprecated (PEP 702): type checkers flag its uses, not this re-export.
    from .aio import aiter as aiter  # type: ignore[deprecated]
else:
    from .aio import _deprecated_aiter

    def __getattr__(name: str) -> Any:
        # ``aiter`` (deprecated, it shadowed the builtin) is served here rather than
        # bound, so ``from rxalpaca import *`` cannot hide the builtin (PEP 562).
        if name == "aiter":
            return _deprecated_aiter
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
