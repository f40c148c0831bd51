"""The symbol grammar of each endpoint family, checked before anything is sent.

The server answers a symbol "in invalid format" with ``400 invalid syntax`` and
rejects the whole request (``alpaca-stream-protocol.md`` §3.1, S21). Checking on
the client turns that late, asynchronous refusal into one clear sentence at the
``client.quotes(...)`` call. The grammar is deliberately permissive (the real one
is not documented): it accepts everything the server accepts and refuses only
what it would answer with 400.

* stocks (and the test stream): upper-case letters and digits, with optional
  ``.``/``-`` separated parts — ``AAPL``, ``BRK.B``, ``BF-B``;
* crypto: ``BASE/QUOTE`` — ``BTC/USD``;
* options: OCC — root of 1-6 characters, ``YYMMDD``, ``C`` or ``P``, and the
  strike times 1000 in 8 digits — ``AAPL240315C00172500``;
* news: a stock or a crypto symbol (articles are tagged ``BTCUSD`` as well as ``AAPL``);
* ``"*"`` (every symbol) everywhere.

Lower-case input is upper-cased and surrounding whitespace dropped first.

Example::

    >>> from rxalpaca.symbols import validate_symbol
    >>> validate_symbol(" brk.b ", "stocks")
    'BRK.B'
    >>> validate_symbol("btc/usd", "crypto")
    'BTC/USD'
    >>> validate_symbol("BTCUSD", "crypto")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    rxalpaca.errors.ConfigurationError: 'BTCUSD' is not a crypto symbol: ...
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Iterable

from .errors import ConfigurationError

__all__ = ["MAX_SYMBOL_LENGTH", "normalise_symbols", "validate_symbol"]

#: The longest symbol accepted (the server refuses longer ones with 400).
MAX_SYMBOL_LENGTH = 40

# ASCII only: ``\d`` would also match other scripts' digits.
_STOCK = r"[A-Z0-9]+(?:[.\-][A-Z0-9]+)*"
_CRYPTO = r"[A-Z0-9]{1,15}/[A-Z0-9]{1,15}"
_OPTION = r"[A-Z0-9]{1,6}[0-9]{6}[CP][0-9]{8}"

_STOCK_HINT = "stock symbols are upper-case letters and digits, e.g. 'AAPL' or 'BRK.B'"
_CRYPTO_HINT = "crypto symbols are BASE/QUOTE, e.g. 'BTC/USD'"

# Family value → (the grammar, what a symbol is called, a hint of the right form).
# Keyed by the value so this table needs nothing from feeds (Family is a StrEnum).
_GRAMMAR: dict[str, tuple[re.Pattern[str], str, str]] = {
    "stocks": (re.compile(_STOCK), "a stock symbol", _STOCK_HINT),
    "test": (re.compile(_STOCK), "a stock symbol", _STOCK_HINT),
    "crypto": (re.compile(_CRYPTO), "a crypto symbol", _CRYPTO_HINT),
    "options": (
        re.compile(_OPTION),
        "an option symbol",
        "option symbols are OCC symbols: root, YYMMDD, C or P, and the strike "
        "times 1000 in 8 digits, e.g. 'AAPL240315C00172500'",
    ),
    "news": (
        re.compile(f"{_STOCK}|{_CRYPTO}"),
        "a news symbol",
        "news symbols are stock or crypto symbols, e.g. 'AAPL' or 'BTC/USD'",
    ),
}


def validate_symbol(symbol: object, family: str) -> str:
    """``symbol`` in canonical form (stripped, upper case) if ``family`` allows it.

    Args:
        symbol: what the caller passed.
        family: a :class:`~rxalpaca.feeds.Family` (or its value, e.g. ``"crypto"``).

    Returns:
        The symbol to subscribe. An already canonical string is returned as is (one
        object fewer per subscription with thousands of symbols).

    Raises:
        ConfigurationError: ``symbol`` is not a string, or not a well-formed symbol of
            ``family`` (the server would answer 400, S21). The message names the
            value and says what the right form looks like.
    """
    if not isinstance(symbol, str):
        raise ConfigurationError(
            f"a symbol must be a string such as 'AAPL', not {reprlib.repr(symbol)} "
            f"({type(symbol).__name__})"
        )
    try:
        grammar, what, hint = _GRAMMAR[family]
    except KeyError:
        raise ValueError(f"unknown symbol family {family!r}") from None
    sym = symbol.strip()
    if not sym:
        raise ConfigurationError(f"empty symbol {symbol!r}: name a symbol such as 'AAPL' or '*'")
    up = sym.upper()
    if up == "*":
        return up
    if len(up) > MAX_SYMBOL_LENGTH:
        raise ConfigurationError(
            f"{reprlib.repr(symbol)} is not {what}: longer than {MAX_SYMBOL_LENGTH} characters"
        )
    # ASCII first: str.upper() turns some letters into others ("ß" into "SS").
    if not sym.isascii() or grammar.fullmatch(up) is None:
        raise ConfigurationError(f"{reprlib.repr(symbol)} is not {what}: {hint}")
    return sym if sym == up else up


def normalise_symbols(symbols: Iterable[object], family: str) -> tuple[str, ...]:
    """The symbols of one ``client.quotes(...)``-style call, validated and de-duplicated.

    Each argument is a symbol or an iterable of symbols (a list, tuple or set), so
    ``quotes("AAPL", "MSFT")`` and ``quotes(["AAPL", "MSFT"])`` mean the same. The
    order of first appearance is kept.

    Raises:
        ConfigurationError: no symbol at all, a symbol that is not a string, or one
            that is malformed for ``family`` (see :func:`validate_symbol`).
    """
    out: dict[str, None] = {}
    for arg in symbols:
        if isinstance(arg, str) or not isinstance(arg, Iterable) or isinstance(arg, bytes):
            out[validate_symbol(arg, family)] = None
            continue
        for sym in arg:
            if not isinstance(sym, str):
                raise ConfigurationError(
                    f"a symbol must be a string such as 'AAPL', not {reprlib.repr(sym)} "
                    f"({type(sym).__name__}) in {reprlib.repr(arg)}"
                )
            out[validate_symbol(sym, family)] = None
    if not out:
        raise ConfigurationError("name at least one symbol (or '*')")
    return tuple(out)
