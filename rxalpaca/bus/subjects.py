"""The NATS subject scheme of the bus: where each (feed, channel, symbol) lives.

::

    <prefix>.<feed>.d.<channel>.<symbol>   market data, one batch per frame per subject
    <prefix>.<feed>.d.news                 news (one subject: an article names many symbols)
    <prefix>.<feed>.state                  the gateway's upstream state (and its heartbeat)
    <prefix>.<feed>.gap                    a hole the gateway's upstream left (a Gap)
    <prefix>.<feed>.demand                 consumers' leases (request/reply)
    <prefix>.<feed>.refused.<client>       subscriptions the upstream refused, per consumer

``prefix`` defaults to ``rxalpaca``. Feed and symbol are single subject tokens, so
the characters NATS gives a meaning to — ``.`` (token separator), ``*`` and ``>``
(wildcards) — and ``%``, whitespace, ``/`` and anything outside printable ASCII are
percent-encoded (RFC 3986 style, upper-case hex): ``BRK.B`` → ``BRK%2EB``,
``BTC/USD`` → ``BTC%2FUSD``, ``crypto/us`` → ``crypto%2Fus``. Option symbols
(``AAPL240119C00190000``) and ordinary tickers pass unchanged. A subscription to
``"*"`` (every symbol) is the token wildcard ``<prefix>.<feed>.d.<channel>.*``.
Channel tokens are Alpaca's channel names (``trades``, ``quotes``, ``dailyBars``,
``cancelErrors``, …): corrections and cancel/errors travel on their own subjects,
as they are routed on their own streams.
"""

from __future__ import annotations

from typing import Final

__all__ = ["DEFAULT_PREFIX", "Subjects", "token", "untoken"]

DEFAULT_PREFIX: Final = "rxalpaca"

# Printable ASCII that needs no escape in a NATS subject token.
_SAFE: Final = frozenset(chr(c) for c in range(0x21, 0x7F) if chr(c) not in ".*>%/")


def token(text: str) -> str:
    """``text`` as one NATS subject token (reversible with :func:`untoken`).

    >>> token("BRK.B"), token("BTC/USD"), token("AAPL240119C00190000")
    ('BRK%2EB', 'BTC%2FUSD', 'AAPL240119C00190000')
    """
    if all(ch in _SAFE for ch in text) and text:
        return text
    out = []
    for ch in text:
        if ch in _SAFE:
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode())
    return "".join(out) or "%"  # an empty token is illegal; "%" alone decodes to ""


def untoken(tok: str) -> str:
    """The text :func:`token` encoded.

    >>> untoken("BRK%2EB")
    'BRK.B'
    """
    if "%" not in tok:
        return tok
    if tok == "%":
        return ""
    raw = bytearray()
    i = 0
    while i < len(tok):
        if tok[i] == "%":
            raw.append(int(tok[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.extend(tok[i].encode())
            i += 1
    return raw.decode()


class Subjects:
    """The subjects of one feed under one prefix (see the module docstring).

    >>> s = Subjects("iex")
    >>> s.data("quotes", "BRK.B"), s.data_filter("trades", "*"), s.demand
    ('rxalpaca.iex.d.quotes.BRK%2EB', 'rxalpaca.iex.d.trades.*', 'rxalpaca.iex.demand')
    """

    def __init__(self, feed: str, prefix: str = DEFAULT_PREFIX) -> None:
        if not prefix or any(ch in prefix for ch in " \t\r\n*>") or prefix.strip(".") != prefix:
            raise ValueError(f"bad subject prefix {prefix!r}")
        self.feed = feed
        self.prefix = prefix
        self.root = f"{prefix}.{token(feed)}"
        self.data_root = f"{self.root}.d"
        self.news = f"{self.data_root}.news"
        self.state = f"{self.root}.state"
        self.gap = f"{self.root}.gap"
        self.demand = f"{self.root}.demand"
        #: Every data subject of the feed (what a JetStream stream captures).
        self.all_data = f"{self.data_root}.>"

    def data(self, channel: str, symbol: str) -> str:
        """The subject records of (channel, symbol) are published on."""
        if channel == "news":
            return self.news
        return f"{self.data_root}.{channel}.{token(symbol)}"

    def data_filter(self, channel: str, symbol: str) -> str:
        """What a consumer of (channel, symbol) subscribes to (``"*"``: a wildcard)."""
        if channel == "news":
            return self.news
        if symbol == "*":
            return f"{self.data_root}.{channel}.*"
        return self.data(channel, symbol)

    def refused(self, client: str) -> str:
        """Where the gateway tells ``client`` which of its pairs the upstream refused."""
        return f"{self.root}.refused.{token(client)}"

    def stream_name(self) -> str:
        """The JetStream stream that keeps this feed's data for catch-up."""
        name = "".join(ch if ch.isalnum() else "_" for ch in f"{self.prefix}_{self.feed}")
        return name.upper()
