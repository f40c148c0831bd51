"""Endpoints, feeds and channels of Alpaca's market-data stream.

Everything here is a table taken from ``alpaca-stream-protocol.md`` §1.2 (paths),
§1.3 (encodings) and §3.2/§3.3 (channels per endpoint and the order of lists in
the subscription acknowledgement). No I/O.

Example::

    >>> from rxalpaca.feeds import endpoint, url_for
    >>> endpoint("iex").family
    <Family.STOCKS: 'stocks'>
    >>> url_for("crypto/us")
    'wss://stream.data.alpaca.markets/v1beta3/crypto/us'
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from .errors import ConfigurationError

__all__ = [
    "ALIASES",
    "ALL_CHANNELS",
    "ENDPOINTS",
    "IMPLICIT_CHANNELS",
    "PRODUCTION_HOST",
    "SANDBOX_HOST",
    "Channel",
    "CryptoFeed",
    "Endpoint",
    "Family",
    "OptionFeed",
    "StockFeed",
    "endpoint",
    "endpoint_for_path",
    "url_for",
]

PRODUCTION_HOST = "wss://stream.data.alpaca.markets"
SANDBOX_HOST = "wss://stream.data.sandbox.alpaca.markets"


class Family(StrEnum):
    """Which schema an endpoint speaks: the same ``T`` code means different records per family."""

    STOCKS = "stocks"
    TEST = "test"  # /v2/test speaks the stock schema with only three channels (§7)
    CRYPTO = "crypto"
    OPTIONS = "options"
    NEWS = "news"


class Channel(StrEnum):
    """Subscription channel keys as they appear on the wire (§3.2)."""

    TRADES = "trades"
    QUOTES = "quotes"
    BARS = "bars"
    DAILY_BARS = "dailyBars"
    UPDATED_BARS = "updatedBars"
    STATUSES = "statuses"
    LULDS = "lulds"
    IMBALANCES = "imbalances"
    CORRECTIONS = "corrections"
    CANCEL_ERRORS = "cancelErrors"
    ORDERBOOKS = "orderbooks"
    NEWS = "news"


ALL_CHANNELS: tuple[Channel, ...] = tuple(Channel)

#: Channels the server fills in by itself: they mirror ``trades`` (§3.1, S25).
#: Clients never send them.
IMPLICIT_CHANNELS: frozenset[Channel] = frozenset({Channel.CORRECTIONS, Channel.CANCEL_ERRORS})

_STOCK_ACK: tuple[Channel, ...] = (
    Channel.TRADES,
    Channel.QUOTES,
    Channel.BARS,
    Channel.UPDATED_BARS,
    Channel.DAILY_BARS,
    Channel.STATUSES,
    Channel.LULDS,
    Channel.IMBALANCES,
    Channel.CORRECTIONS,
    Channel.CANCEL_ERRORS,
)
_CRYPTO_ACK: tuple[Channel, ...] = (
    Channel.TRADES,
    Channel.QUOTES,
    Channel.ORDERBOOKS,
    Channel.BARS,
    Channel.UPDATED_BARS,
    Channel.DAILY_BARS,
)
_OPTIONS_ACK: tuple[Channel, ...] = (Channel.TRADES, Channel.QUOTES)
_NEWS_ACK: tuple[Channel, ...] = (Channel.NEWS,)
_TEST_ACK: tuple[Channel, ...] = (Channel.TRADES, Channel.QUOTES, Channel.BARS)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One stream endpoint.

    Attributes:
        feed: the name users pass (``"iex"``, ``"crypto/us"``, ``"opra"`` …).
        path: the URL path (``"/v2/iex"``).
        family: which schema its messages follow.
        ack_channels: every list of the subscription ack, in the server's order (S24).
        msgpack_only: options endpoints refuse JSON with error 412 (§1.3).
    """

    feed: str
    path: str
    family: Family
    ack_channels: tuple[Channel, ...]
    msgpack_only: bool = False

    @property
    def channels(self) -> frozenset[Channel]:
        """Every channel of this endpoint, the implicit ones included."""
        return frozenset(self.ack_channels)

    @property
    def subscribable(self) -> tuple[Channel, ...]:
        """Channels a client may name in a subscribe message (implicit ones excluded)."""
        return tuple(c for c in self.ack_channels if c not in IMPLICIT_CHANNELS)


def _ep(
    feed: str, path: str, family: Family, ack: tuple[Channel, ...], msgpack_only: bool = False
) -> Endpoint:
    return Endpoint(feed, path, family, ack, msgpack_only)


#: Every documented stream endpoint (§1.2), keyed by feed name.
ENDPOINTS: dict[str, Endpoint] = {
    e.feed: e
    for e in (
        _ep("iex", "/v2/iex", Family.STOCKS, _STOCK_ACK),
        _ep("sip", "/v2/sip", Family.STOCKS, _STOCK_ACK),
        _ep("delayed_sip", "/v2/delayed_sip", Family.STOCKS, _STOCK_ACK),
        _ep("boats", "/v1beta1/boats", Family.STOCKS, _STOCK_ACK),
        _ep("overnight", "/v1beta1/overnight", Family.STOCKS, _STOCK_ACK),
        _ep("test", "/v2/test", Family.TEST, _TEST_ACK),
        _ep("crypto/us", "/v1beta3/crypto/us", Family.CRYPTO, _CRYPTO_ACK),
        _ep("crypto/us-1", "/v1beta3/crypto/us-1", Family.CRYPTO, _CRYPTO_ACK),
        _ep("crypto/eu-1", "/v1beta3/crypto/eu-1", Family.CRYPTO, _CRYPTO_ACK),
        _ep("indicative", "/v1beta1/indicative", Family.OPTIONS, _OPTIONS_ACK, True),
        _ep("opra", "/v1beta1/opra", Family.OPTIONS, _OPTIONS_ACK, True),
        _ep("news", "/v1beta1/news", Family.NEWS, _NEWS_ACK),
    )
}

#: Short names for common feeds (``"crypto"`` is the US crypto feed, ``"options"`` the
#: indicative one, which every plan may use).
ALIASES: dict[str, str] = {"crypto": "crypto/us", "options": "indicative", "v2/test": "test"}

#: Feed names by family, for type checkers (``StreamClient``'s overloads pick the
#: record types from them); ``endpoint()`` also takes any case and other spellings.
StockFeed = Literal["iex", "sip", "delayed_sip", "boats", "overnight", "test", "v2/test"]
CryptoFeed = Literal["crypto", "crypto/us", "crypto/us-1", "crypto/eu-1"]
OptionFeed = Literal["indicative", "opra", "options"]
_BY_PATH = {e.path: e for e in ENDPOINTS.values()}


def endpoint(feed: str) -> Endpoint:
    """Look up an endpoint by feed name (``"iex"``, ``"crypto"``, ``"crypto/eu-1"``, ``"opra"``…).

    Names are case-insensitive and surrounding whitespace is ignored (``" IEX "`` is
    ``"iex"``); the aliases of :data:`ALIASES` are accepted too.

    Raises:
        ConfigurationError: ``feed`` is not a string, or not a documented stream
            endpoint (the message lists every name, aliases included). It is a
            ``ValueError`` too.
    """
    if not isinstance(feed, str):
        raise ConfigurationError(
            f"feed must be a string such as 'iex', not {feed!r} ({type(feed).__name__})"
        )
    name = feed.strip().lower()
    ep = ENDPOINTS.get(ALIASES.get(name, name))
    if ep is not None:
        return ep
    import difflib  # noqa: PLC0415 - only for this error (import time, RSS)

    names = [*ENDPOINTS, *ALIASES]
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    aliases = ", ".join(f"{a} (= {t})" for a, t in ALIASES.items())
    raise ConfigurationError(
        f"unknown feed {feed!r}{hint}; known feeds: {', '.join(ENDPOINTS)}; aliases: {aliases}"
    )


def endpoint_for_path(path: str) -> Endpoint | None:
    """The endpoint served at a URL path, or ``None`` (the server answers 404, S1)."""
    return _BY_PATH.get(path.split("?", 1)[0].rstrip("/") or "/")


def url_for(feed: str, *, sandbox: bool = False, base: str | None = None) -> str:
    """The full ``wss://`` URL of a feed.

    Args:
        feed: feed name, see :func:`endpoint`.
        sandbox: use the Broker-API sandbox host (§1.1).
        base: another scheme and host, e.g. ``"ws://127.0.0.1:8765"`` for a local server.
    """
    host = base if base is not None else (SANDBOX_HOST if sandbox else PRODUCTION_HOST)
    return host.rstrip("/") + endpoint(feed).path
