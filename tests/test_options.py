"""A client's options are checked once, at construction, in one clear sentence each."""

from __future__ import annotations

import pytest

from rxalpaca import ConfigurationError, StreamClient
from rxalpaca.options import Settings


def test_an_unknown_option_is_named() -> None:
    with pytest.raises(ConfigurationError, match="unknown option 'ping_timout'"):
        StreamClient("iex", key="k", secret="s", ping_timout=3)  # type: ignore[call-overload]


@pytest.mark.parametrize("option", ["reply_timeout", "ping_interval", "ping_timeout"])
def test_durations_must_be_positive(option: str) -> None:
    with pytest.raises(ConfigurationError, match=f"{option} must be a positive"):
        Settings.build("iex", {"key": "k", "secret": "s", option: 0})


def test_options_feeds_refuse_json() -> None:
    with pytest.raises(ConfigurationError, match="MessagePack only"):
        Settings.build("opra", {"key": "k", "secret": "s", "encoding": "json"})


def test_credentials_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APCA_API_KEY_ID", "env-key")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "env-s3cret")
    s = Settings.build("iex", {"header_auth": True})
    assert s.key == "env-key" and s.secret == "env-s3cret"
    assert s.headers["APCA-API-SECRET-KEY"] == "env-s3cret"
    assert "env-s3cret" not in repr(s)  # neither the secret nor the headers carrying it
    monkeypatch.delenv("APCA_API_SECRET_KEY")
    with pytest.raises(ConfigurationError, match="no credentials"):
        Settings.build("iex", {})


def test_defaults_and_url() -> None:
    s = Settings.build("Crypto", {"key": "k", "secret": "s", "url": "ws://127.0.0.1:9/"})
    assert s.url == "ws://127.0.0.1:9/v1beta3/crypto/us"
    assert s.options["ping_timeout"] == 10.0 and s.options["reply_timeout"] == 5.0
    assert s.headers["Content-Type"] == "application/msgpack"


def test_every_option_has_one_default_and_one_type() -> None:
    """``ClientOptions`` (for type checkers) and the defaults name the same options."""
    from rxalpaca.options import _DEFAULTS, ClientOptions

    assert set(_DEFAULTS) == set(ClientOptions.__annotations__)
