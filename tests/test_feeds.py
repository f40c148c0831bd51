"""Endpoints and channels (protocol §1.2, §3.2)."""

from __future__ import annotations

from typing import Any

import pytest

from rxalpaca.errors import ConfigurationError
from rxalpaca.feeds import (
    ALIASES,
    ENDPOINTS,
    Channel,
    Family,
    endpoint,
    endpoint_for_path,
    url_for,
)

PATHS = {
    "/v2/iex",
    "/v2/sip",
    "/v2/delayed_sip",
    "/v1beta1/boats",
    "/v1beta1/overnight",
    "/v2/test",
    "/v1beta3/crypto/us",
    "/v1beta3/crypto/us-1",
    "/v1beta3/crypto/eu-1",
    "/v1beta1/indicative",
    "/v1beta1/opra",
    "/v1beta1/news",
}


def test_every_documented_path_is_served() -> None:
    assert {e.path for e in ENDPOINTS.values()} == PATHS


def test_urls() -> None:
    assert url_for("iex") == "wss://stream.data.alpaca.markets/v2/iex"
    assert url_for("sip", sandbox=True) == "wss://stream.data.sandbox.alpaca.markets/v2/sip"
    assert url_for("crypto") == "wss://stream.data.alpaca.markets/v1beta3/crypto/us"
    assert url_for("news", base="ws://127.0.0.1:1/") == "ws://127.0.0.1:1/v1beta1/news"


def test_channels_per_family() -> None:
    assert endpoint("test").subscribable == (Channel.TRADES, Channel.QUOTES, Channel.BARS)
    assert Channel.ORDERBOOKS in endpoint("crypto").channels
    assert Channel.ORDERBOOKS not in endpoint("iex").channels
    assert endpoint("opra").msgpack_only and endpoint("opra").family is Family.OPTIONS
    assert Channel.CORRECTIONS not in endpoint("iex").subscribable
    assert endpoint("news").subscribable == (Channel.NEWS,)


def test_lookup_by_path_and_unknown_feed() -> None:
    assert endpoint_for_path("/v2/iex?x=1") is endpoint("iex")
    assert endpoint_for_path("/v2/boats") is None  # BOATS lives under v1beta1 (§1.2)
    with pytest.raises(ValueError, match="unknown feed"):
        endpoint("otc")


@pytest.mark.parametrize(
    ("name", "feed"),
    [
        ("IEX", "iex"),
        (" iex ", "iex"),
        ("Sip\n", "sip"),
        ("CRYPTO", "crypto/us"),
        ("Crypto/EU-1", "crypto/eu-1"),
        (" Options", "indicative"),
        ("OPRA", "opra"),
    ],
)
def test_feed_names_ignore_case_and_surrounding_whitespace(name: str, feed: str) -> None:
    assert endpoint(name) is ENDPOINTS[feed]
    assert url_for(name) == url_for(feed)


def test_an_unknown_feed_is_a_configuration_error_listing_every_name() -> None:
    with pytest.raises(ConfigurationError) as info:
        endpoint("nasdaq")
    assert isinstance(info.value, ValueError)  # what callers caught before
    msg = str(info.value)
    assert msg.startswith("unknown feed 'nasdaq'; known feeds: ")
    for name in [*ENDPOINTS, *ALIASES]:
        assert name in msg
    assert "crypto (= crypto/us)" in msg and "options (= indicative)" in msg


def test_an_unknown_feed_close_to_a_known_one_gets_a_suggestion() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown feed 'iexx' \(did you mean 'iex'\?\)"):
        endpoint("iexx")


@pytest.mark.parametrize("feed", [None, 3, b"iex"])
def test_a_feed_that_is_not_a_string(feed: Any) -> None:
    with pytest.raises(
        ConfigurationError, match=rf"feed must be a string.*\({type(feed).__name__}\)"
    ):
        endpoint(feed)
