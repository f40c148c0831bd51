"""The account stream ``/stream`` (S40, ``trade_updates``), without sockets.

Not a market-data endpoint: frames are single JSON objects ``{"stream": …,
"data": …}`` (§9), in binary frames by default as on the paper endpoint; auth is
``{"action":"auth"|"authenticate", …}`` and ``listen`` replaces the set of streams.
alpaca-py's ``TradingStream`` runs against it (``tests/testing/test_interop_alpaca_py.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rxalpaca.feeds import Endpoint, Family

from ..wire import Encoding, decode_client_message, encode_item
from .session import BaseSession

__all__ = ["TRADING_ENDPOINT", "TRADING_STREAMS", "TradingSession", "is_trading_path"]

#: The account stream (S40) is not a market-data endpoint, so it is not in ``feeds``.
TRADING_ENDPOINT = Endpoint("trade_updates", "/stream", Family.NEWS, ())
TRADING_STREAMS = frozenset({"trade_updates"})


def is_trading_path(path: str) -> bool:
    """Whether an upgrade request's path is the account stream's."""
    return (path.split("?", 1)[0].rstrip("/") or "/") == TRADING_ENDPOINT.path


class TradingSession(BaseSession):
    """The server's side of one account-stream connection (S40).

    ``subs["streams"]`` holds the streams listened to.
    """

    def __init__(self, cid: int, encoding: Encoding = Encoding.JSON, **kwargs: Any) -> None:
        super().__init__(cid, TRADING_ENDPOINT, encoding, **kwargs)
        self.subs = {"streams": {}}

    def send(self, obj: Mapping[str, Any]) -> None:
        """One message, alone in its frame as an object, not an array (§9)."""
        binary = self.config.streams.trading_binary_frames
        self.enqueue(
            encode_item(obj, self.encoding), 1, text=self.encoding is Encoding.JSON and not binary
        )

    def publish(self, data: Mapping[str, Any]) -> bool:
        """Send a ``trade_updates`` event if the client listens to it; whether it did."""
        if not (self.authenticated and "trade_updates" in self.subs["streams"]):
            return False
        self.send({"stream": "trade_updates", "data": data})
        order = data.get("order") or {}
        self.log_sent({"T": "trade_updates", "S": str(order.get("symbol", ""))})
        return True

    def receive(self, message: bytes | str) -> None:
        """Handle one client message: auth, listen, or an ``invalid syntax`` error."""
        try:
            msg = decode_client_message(
                message, self.encoding, self.config.protocol.lenient_decoding
            )
        except ValueError:
            msg = None
        self.received.append(msg if msg is not None else message)
        if not isinstance(msg, dict):
            self.send({"stream": "error", "data": {"error": "invalid syntax"}})
            return
        action = msg.get("action")
        raw_data = msg.get("data")
        data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
        if action in ("auth", "authenticate"):
            self._authenticate(msg, data)
        elif action == "listen":
            if not self.authenticated:
                reply = {"status": "unauthorized", "action": "listen"}
                self.send({"stream": "authorization", "data": reply})
                return
            asked = data.get("streams")
            names = asked if isinstance(asked, list) else []
            # listen replaces the set; unknown stream names are left out of the reply
            self.subs["streams"] = {n: None for n in names if n in TRADING_STREAMS}
            self.send({"stream": "listening", "data": {"streams": list(self.subs["streams"])}})
        else:
            self.send({"stream": "error", "data": {"error": "invalid syntax"}})

    def _authenticate(self, msg: Mapping[str, Any], data: Mapping[str, Any]) -> None:
        # Three spellings: the data API's, the trading API's key pair, and OAuth.
        if msg.get("action") == "auth":
            key, secret = msg.get("key"), msg.get("secret")
        elif "oauth_token" in data:
            key, secret = "oauth", data.get("oauth_token")
        else:
            key, secret = data.get("key_id"), data.get("secret_key")
        if isinstance(key, str) and isinstance(secret, str):
            account, identity = self.directory.lookup(key, secret)
            if account is not None:
                self.authenticated = True
                self.identity = identity
                self.account = account
        status = "authorized" if self.authenticated else "unauthorized"
        self.send({"stream": "authorization", "data": {"status": status, "action": "authenticate"}})
