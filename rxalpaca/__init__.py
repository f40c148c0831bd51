"""rxalpaca: Alpaca's real-time market data as reactive streams.

::

    from rxalpaca import StreamClient, ops
    client = StreamClient(feed="iex")
    client.quotes("AAPL").pipe(ops.throttle(0.5)).subscribe(print)

See ``docs/client.md`` for the client, the operators and the threading model.
"""

from __future__ import annotations

import importlib

# Not ``from typing import TYPE_CHECKING``: ``typing`` alone is most of a bare import's cost.
# Type checkers treat any ``TYPE_CHECKING`` as true (PEP 484).
TYPE_CHECKING = False

__version__ = "0.1.0"

# Names are imported when first used (PEP 562), so ``import rxalpaca`` costs next to nothing
# and a program pays only for what it touches: ``from rxalpaca import Trade`` loads the
# models, not reactivex or the client (docs/benchmarks.md, "Import time").
#: Exported name -> the submodule defining it. Exporting one more name is one entry here
#: (and one in ``__all__``, and one in the ``TYPE_CHECKING`` block for type checkers).
_LAZY: dict[str, str] = {
    "aiterate": ".aio",
    "iterate": ".aio",
    "StreamClient": ".client",
    "Codec": ".codec",
    "AlreadyAuthenticated": ".errors",
    "AuthFailed": ".errors",
    "AuthTimeout": ".errors",
    "BackfillError": ".errors",
    "BufferOverflow": ".errors",
    "BusDisconnected": ".errors",
    "BusMessageError": ".errors",
    "ClientClosedError": ".errors",
    "ConfigurationError": ".errors",
    "ConnectionLimitExceeded": ".errors",
    "ConnectionLostError": ".errors",
    "FrameError": ".errors",
    "HandlerError": ".errors",
    "InsufficientScope": ".errors",
    "InsufficientSubscription": ".errors",
    "InternalServerError": ".errors",
    "InvalidSubscribeAction": ".errors",
    "InvalidSyntax": ".errors",
    "KeepaliveTimeout": ".errors",
    "SilenceTimeout": ".errors",
    "MsgpackRequired": ".errors",
    "NotAuthenticated": ".errors",
    "ProtocolViolation": ".errors",
    "RecordingError": ".errors",
    "RecordingTruncated": ".errors",
    "RemoteProtocolError": ".errors",
    "ReplyTimeout": ".errors",
    "RxAlpacaError": ".errors",
    "SlowClient": ".errors",
    "StarNotAllowed": ".errors",
    "StreamError": ".errors",
    "SubscriptionMismatch": ".errors",
    "SubscriptionRejected": ".errors",
    "SymbolLimitExceeded": ".errors",
    "UnknownMessage": ".errors",
    "V2NotEnabled": ".errors",
    "Channel": ".feeds",
    "Family": ".feeds",
    "Frame": ".frames",
    "Opcode": ".frames",
    "Metrics": ".metrics",
    "Bar": ".models",
    "CancelError": ".models",
    "Correction": ".models",
    "CryptoBar": ".models",
    "CryptoDailyBar": ".models",
    "CryptoQuote": ".models",
    "CryptoTrade": ".models",
    "CryptoUpdatedBar": ".models",
    "DailyBar": ".models",
    "Gap": ".models",
    "Imbalance": ".models",
    "Luld": ".models",
    "News": ".models",
    "OptionQuote": ".models",
    "OptionTrade": ".models",
    "OrderBook": ".models",
    "OrderBookLevel": ".models",
    "Quote": ".models",
    "Trade": ".models",
    "TradingStatus": ".models",
    "UpdatedBar": ".models",
    "RetryPolicy": ".operators",
    "ConnectionState": ".protocol",
    "Replay": ".replaying",
    "replay": ".replaying",
    "to_pandas": ".dataframes",
    "to_polars": ".dataframes",
    "BusClient": ".bus",
    "Gateway": ".bus",
}
#: Exported submodules.
_SUBMODULES: dict[str, str] = {"operators": ".operators", "ops": ".operators"}

if TYPE_CHECKING:
    from . import operators as operators
    from . import operators as ops
    from .aio import aiterate, iterate
    from .bus import BusClient, Gateway
    from .client import StreamClient
    from .codec import Codec
    from .dataframes import to_pandas, to_polars
    from .errors import (
        AlreadyAuthenticated,
        AuthFailed,
        AuthTimeout,
        BackfillError,
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
        SilenceTimeout,
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
    from .replaying import Replay, replay

__all__ = [
    "AlreadyAuthenticated",
    "AuthFailed",
    "AuthTimeout",
    "BackfillError",
    "Bar",
    "BufferOverflow",
    "BusClient",
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
    "Gateway",
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
    "SilenceTimeout",
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
    "to_pandas",
    "to_polars",
]


if TYPE_CHECKING:
    # Deprecated (PEP 702): type checkers flag its uses, not this re-export.
    from .aio import aiter as aiter  # type: ignore[deprecated]
else:

    def __getattr__(name: str) -> object:
        module = _LAZY.get(name)
        if module is not None:
            value = getattr(importlib.import_module(module, __name__), name)
        elif name in _SUBMODULES:
            value = importlib.import_module(_SUBMODULES[name], __name__)
        elif name == "aiter":
            # Deprecated (it shadowed the builtin); served, never bound, so that
            # ``from rxalpaca import *`` cannot hide the builtin.
            from .aio import _deprecated_aiter  # noqa: PLC0415 - lazy by design

            return _deprecated_aiter
        else:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        # Bound: later uses are plain attribute reads. Any thread may get here first; the
        # import system's per-module lock serialises the import, and two threads binding
        # the same object is harmless.
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(globals()) | set(__all__))
