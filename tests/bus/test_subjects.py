"""The subject scheme: every symbol is one token, reversibly, and wildcards stay wildcards."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rxalpaca.bus import Subjects, token, untoken


@given(st.text(max_size=40))
def test_token_round_trips_and_is_one_legal_token(text: str) -> None:
    tok = token(text)
    assert untoken(tok) == text
    assert tok and not any(c in tok for c in ".*> \t\r\n")
    assert tok.isascii() and tok.isprintable()


@pytest.mark.parametrize(
    ("symbol", "expected"),
    [
        ("AAPL", "AAPL"),
        ("BRK.B", "BRK%2EB"),
        ("BTC/USD", "BTC%2FUSD"),
        ("AAPL240119C00190000", "AAPL240119C00190000"),
        ("*", "%2A"),
        ("A%B", "A%25B"),
    ],
)
def test_symbols_that_need_escaping(symbol: str, expected: str) -> None:
    assert token(symbol) == expected


def test_subjects_of_a_feed() -> None:
    s = Subjects("crypto/us", "desk1")
    assert s.root == "desk1.crypto%2Fus"
    assert s.data("quotes", "BTC/USD") == "desk1.crypto%2Fus.d.quotes.BTC%2FUSD"
    # "*" is a wildcard in a filter, and never a literal symbol on a data subject.
    assert s.data_filter("quotes", "*") == "desk1.crypto%2Fus.d.quotes.*"
    assert s.data("quotes", "*") != s.data_filter("quotes", "*")
    assert s.data("news", "AAPL") == s.data_filter("news", "TSLA") == "desk1.crypto%2Fus.d.news"
    assert s.refused("a.b") == "desk1.crypto%2Fus.refused.a%2Eb"
    assert s.all_data == "desk1.crypto%2Fus.d.>"
    assert s.stream_name() == "DESK1_CRYPTO_US"


@pytest.mark.parametrize("prefix", ["", "a b", "x.*", ".lead", "trail."])
def test_a_bad_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        Subjects("iex", prefix)
