"""``Settings``: a client's options, checked once, with the credentials kept out of sight.

:class:`ClientOptions` names every keyword option of
:class:`~rxalpaca.client.StreamClient` (documented there) for type checkers;
:meth:`Settings.build` turns a feed name and those options into one frozen record,
raising :class:`~rxalpaca.errors.ConfigurationError` with one clear sentence for
anything that cannot work. The secret (and the headers that may carry it) never
appear in a ``repr``.

Example::

    >>> s = Settings.build("IEX", {"key": "k", "secret": "s3cret", "url": "ws://127.0.0.1:1"})
    >>> s.url, s.endpoint.feed, "s3cret" in repr(s)
    ('ws://127.0.0.1:1/v2/iex', 'iex', False)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict, cast

from .errors import ConfigurationError
from .feeds import Endpoint, endpoint, url_for
from .frames import DEFAULT_MAX_MESSAGE_BYTES
from .operators import RetryPolicy

__all__ = ["ClientOptions", "Settings"]


class ClientOptions(TypedDict, total=False):
    """The keyword options of ``StreamClient`` (documented there)."""

    key: str | None
    secret: str | None
    url: str | None
    sandbox: bool
    encoding: Literal["json", "msgpack"]
    header_auth: bool
    retry: RetryPolicy | None
    ping_interval: float | None
    ping_timeout: float | None
    ca_file: str | None
    max_message_bytes: int
    silence_timeout: float | None
    slow_observer_threshold: float
    subscribe_linger: float
    reply_timeout: float | None
    strict_timestamps: bool
    name: str
    replace_previous: bool


_DEFAULTS: dict[str, Any] = {
    "key": None,
    "secret": None,
    "url": None,
    "sandbox": False,
    "encoding": "msgpack",
    "header_auth": False,
    "retry": None,
    "ping_interval": 10.0,
    "ping_timeout": 10.0,
    "ca_file": None,
    "max_message_bytes": DEFAULT_MAX_MESSAGE_BYTES,
    "silence_timeout": None,
    "slow_observer_threshold": 0.8,
    "subscribe_linger": 0.01,
    "reply_timeout": 5.0,
    "strict_timestamps": False,
    "name": "rxalpaca",
    "replace_previous": True,
}
_SECONDS = ("reply_timeout", "ping_interval", "ping_timeout", "silence_timeout")


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a client needs to connect, checked (see :meth:`build`)."""

    endpoint: Endpoint
    url: str
    key: str
    secret: str = field(repr=False)
    #: Upgrade headers; with ``header_auth`` they carry the credentials.
    headers: dict[str, str] = field(repr=False)
    options: dict[str, Any] = field(repr=False)

    @classmethod
    def build(cls, feed: str, options: Mapping[str, Any]) -> Settings:
        """Check ``options`` for ``feed`` and fill in defaults and credentials.

        Raises:
            ConfigurationError: an unknown option or feed, a bad value, no credentials.
        """
        unknown = sorted(set(options) - set(_DEFAULTS))
        if unknown:
            known = ", ".join(sorted(_DEFAULTS))
            raise ConfigurationError(f"unknown option {unknown[0]!r}; the options are {known}")
        o = {**_DEFAULTS, **options}
        ep = endpoint(feed)
        if o["encoding"] not in ("json", "msgpack"):
            raise ConfigurationError(f"encoding must be 'json' or 'msgpack', not {o['encoding']!r}")
        if ep.msgpack_only and o["encoding"] != "msgpack":
            raise ConfigurationError(f"{ep.feed} speaks MessagePack only (§1.3)")
        for name in _SECONDS:
            value = o[name]
            if value is not None and not value > 0:
                raise ConfigurationError(f"{name} must be a positive number of seconds or None")
        key = o["key"] if o["key"] is not None else os.environ.get("APCA_API_KEY_ID")
        secret = o["secret"] if o["secret"] is not None else os.environ.get("APCA_API_SECRET_KEY")
        if not key or not secret:
            raise ConfigurationError(
                "no credentials: pass key= and secret=, or set APCA_API_KEY_ID and "
                "APCA_API_SECRET_KEY"
            )
        headers = {"User-Agent": "rxalpaca/0.1"}
        if o["encoding"] == "msgpack":
            headers["Content-Type"] = "application/msgpack"
        if o["header_auth"]:
            headers["APCA-API-KEY-ID"] = key
            headers["APCA-API-SECRET-KEY"] = secret
        url = _resolve_url(feed, cast(str | None, o["url"]), bool(o["sandbox"]), ep)
        return cls(ep, url, key, secret, headers, o)


def _resolve_url(feed: str, url: str | None, sandbox: bool, ep: Endpoint) -> str:
    if url is None:
        return url_for(feed, sandbox=sandbox)
    if url.rstrip("/").endswith(ep.path):
        return url
    return url.rstrip("/") + ep.path
