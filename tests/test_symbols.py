"""The per-family symbol grammar (protocol §3.1, S21), checked on the client."""

from __future__ import annotations

import doctest
from typing import Any

import pytest

import rxalpaca.symbols
from rxalpaca.errors import ConfigurationError
from rxalpaca.feeds import Family
from rxalpaca.symbols import MAX_SYMBOL_LENGTH, normalise_symbols, validate_symbol
from rxalpaca.testing.server.session import valid_symbol as server_accepts

STOCK_GOOD = ["AAPL", "BRK.B", "BF.B", "SPY", "TSLA", "A", "A1", "GOOGL", "BF-B", "PBR.A", "ZVZZT"]
CRYPTO_GOOD = ["BTC/USD", "ETH/USDT", "SHIB/USD", "1INCH/USD", "USDC/USD"]
OPTION_GOOD = [
    "AAPL240315C00172500",
    "SPXW240327P04925000",
    "A240315C00001000",
    "AAPL1240315P00172500",
]

# Every one of these the server answers with 400 (S21).
STOCK_BAD = [
    "BAD!!",
    "A B",
    "BTC/USD",
    ".B",
    "BRK.",
    "BRK..B",
    "AAPL$",
    "\u00c4PPLE",
    "\u0663M",
    "stra\u00dfe",
]
CRYPTO_BAD = ["BTCUSD", "BTC/", "/USD", "BTC/USD/EUR", "BTC-USD", "BTC/US D", "A" * 16 + "/USD"]
OPTION_BAD = [
    "AAPL",
    "AAPL240315X00172500",  # neither C nor P
    "AAPL24031C00172500",  # 5-digit date
    "TOOLONG240315C00172500",  # root of 7
    "AAPL240315C0017250",  # 7-digit strike
    "AAPL240315C\u0660\u0660172500",  # digits of another script
    "BTC/USD",
]

VECTORS: list[tuple[Family, list[str], list[str]]] = [
    (Family.STOCKS, STOCK_GOOD, STOCK_BAD),
    (Family.TEST, ["FAKEPACA", *STOCK_GOOD], STOCK_BAD),
    (Family.CRYPTO, CRYPTO_GOOD, CRYPTO_BAD),
    (Family.OPTIONS, OPTION_GOOD, OPTION_BAD),
    (Family.NEWS, [*STOCK_GOOD, *CRYPTO_GOOD, "BTCUSD"], ["BAD!!", "A B", "BTC/", "BTC/USD/X"]),
]
CASES = [(fam, s, True) for fam, good, _ in VECTORS for s in good] + [
    (fam, s, False) for fam, _, bad in VECTORS for s in bad
]


@pytest.mark.parametrize(("family", "symbol", "ok"), CASES, ids=repr)
def test_grammar_vectors(family: Family, symbol: str, ok: bool) -> None:
    if ok:
        assert validate_symbol(symbol, family) == symbol
    else:
        with pytest.raises(ConfigurationError, match=r"is not an? "):
            validate_symbol(symbol, family)


@pytest.mark.parametrize(("family", "symbol", "ok"), CASES, ids=repr)
def test_client_and_server_agree(family: Family, symbol: str, ok: bool) -> None:
    """The client refuses exactly what our server would answer with 400 (ASCII digits aside)."""
    if not symbol.isascii():
        # The server's \\d also takes other scripts' digits; the real grammar surely does
        # not, and the client refusing them early is the safe side.
        assert not ok
        return
    assert server_accepts(family, symbol) is ok


@pytest.mark.parametrize("family", list(Family))
def test_star_is_always_allowed(family: Family) -> None:
    assert validate_symbol("*", family) == "*"
    assert validate_symbol(" * ", family) == "*"


@pytest.mark.parametrize(
    ("family", "raw", "canonical"),
    [
        (Family.STOCKS, "aapl", "AAPL"),
        (Family.STOCKS, " brk.b\t", "BRK.B"),
        (Family.STOCKS, "AAPL\n", "AAPL"),
        (Family.CRYPTO, "btc/usd", "BTC/USD"),
        (Family.OPTIONS, "aapl240315c00172500", "AAPL240315C00172500"),
        (Family.NEWS, "btcusd", "BTCUSD"),
    ],
)
def test_lower_case_and_whitespace_are_normalised(family: Family, raw: str, canonical: str) -> None:
    assert validate_symbol(raw, family) == canonical
    assert server_accepts(family, canonical)


def test_a_canonical_symbol_is_returned_as_is() -> None:
    sym = "".join(["AA", "PL"])  # a fresh object, not an interned literal
    assert validate_symbol(sym, Family.STOCKS) is sym


@pytest.mark.parametrize(
    ("family", "symbol", "hint"),
    [
        (Family.STOCKS, "BAD!!", "'BAD!!' is not a stock symbol: stock symbols are upper-case"),
        (Family.CRYPTO, "BTCUSD", "'BTCUSD' is not a crypto symbol: crypto symbols are BASE/QUOTE"),
        (Family.OPTIONS, "AAPL", "'AAPL' is not an option symbol: option symbols are OCC"),
        (Family.NEWS, "A B", "'A B' is not a news symbol: news symbols are stock or crypto"),
    ],
)
def test_the_message_names_the_value_and_the_right_form(
    family: Family, symbol: str, hint: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        validate_symbol(symbol, family)
    assert str(info.value).startswith(hint)


def test_too_long_is_refused_with_the_reason() -> None:
    long = "A" * (MAX_SYMBOL_LENGTH + 1)
    assert not server_accepts(Family.STOCKS, long)
    with pytest.raises(ConfigurationError, match=f"longer than {MAX_SYMBOL_LENGTH} characters"):
        validate_symbol(long, Family.STOCKS)
    assert validate_symbol("A" * MAX_SYMBOL_LENGTH, Family.STOCKS)


@pytest.mark.parametrize("value", [123, None, 1.5, b"AAPL", object()])
def test_a_non_string_says_what_it_got(value: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        validate_symbol(value, Family.STOCKS)
    msg = str(info.value)
    assert "must be a string" in msg and f"({type(value).__name__})" in msg


@pytest.mark.parametrize("value", ["", "   "])
def test_empty_symbol(value: str) -> None:
    with pytest.raises(ConfigurationError, match="empty symbol"):
        validate_symbol(value, Family.STOCKS)


def test_unknown_family_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown symbol family"):
        validate_symbol("AAPL", "bonds")


def test_normalise_accepts_separate_arguments_and_iterables_alike() -> None:
    assert normalise_symbols(("AAPL", "MSFT"), Family.STOCKS) == ("AAPL", "MSFT")
    assert normalise_symbols((["AAPL", "MSFT"],), Family.STOCKS) == ("AAPL", "MSFT")
    assert normalise_symbols((("aapl",), "MSFT", {"NVDA"}), Family.STOCKS) == (
        "AAPL",
        "MSFT",
        "NVDA",
    )
    # De-duplicated in order of first appearance, after normalising.
    assert normalise_symbols(("msft", "AAPL", ["MSFT", " aapl "]), Family.STOCKS) == (
        "MSFT",
        "AAPL",
    )
    assert normalise_symbols((iter(["BTC/USD"]),), Family.CRYPTO) == ("BTC/USD",)


@pytest.mark.parametrize("symbols", [(), ([],), ((), [])])
def test_normalise_wants_at_least_one_symbol(symbols: tuple[Any, ...]) -> None:
    with pytest.raises(ConfigurationError, match="at least one symbol"):
        normalise_symbols(symbols, Family.STOCKS)


def test_normalise_refuses_nested_and_non_string_items() -> None:
    with pytest.raises(ConfigurationError, match=r"not \['MSFT'\] \(list\) in"):
        normalise_symbols((["AAPL", ["MSFT"]],), Family.STOCKS)
    with pytest.raises(ConfigurationError, match=r"not 123 \(int\)"):
        normalise_symbols(("AAPL", 123), Family.STOCKS)
    with pytest.raises(ConfigurationError, match=r"not b'AAPL' \(bytes\)"):
        normalise_symbols((b"AAPL",), Family.STOCKS)


def test_module_examples() -> None:
    failed, tried = doctest.testmod(rxalpaca.symbols)
    assert tried and not failed
