"""One market-data connection's protocol, without sockets (S2-S31).

A :class:`Session` is fed what the client sent and told what the server wants to
send; it updates its state (authenticated, subscriptions, logs) and queues the
bytes to write in its :class:`~.outbox.Outbox`, or asks for an :class:`~.outbox.Abort`.
It owns no loop, thread, socket or timer: the connection shell
(:mod:`.connection`) writes what it queued, runs the auth timer and applies the
server's auth delay. So every protocol rule can be tested with byte strings::

    >>> s = Session(1, ENDPOINTS["iex"], Encoding.JSON, directory=Directory())
    >>> s.start()
    >>> s.next_frame().payload
    b'[{"T":"success","msg":"connected"}]'
    >>> creds = s.receive(b'{"action":"auth","key":"test-key","secret":"test-secret"}')
    >>> s.authenticate(creds)
    >>> s.next_frame().payload
    b'[{"T":"success","msg":"authenticated"}]'
"""

from __future__ import annotations

import base64
import re
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from rxalpaca.errors import error_for_code
from rxalpaca.feeds import IMPLICIT_CHANNELS, Channel, Endpoint, Family

from ..market import Market
from ..wire import (
    Encoding,
    TimestampWidth,
    WidthCycle,
    decode_client_message,
    encode_item,
    join_items,
)
from .config import Account, ServerConfig
from .directory import Directory, Slot
from .outbox import Abort, Out, Outbox
from .records import ConnectionInfo, SentRecord

__all__ = ["CHANNEL_OF", "BaseSession", "Credentials", "Session", "valid_symbol"]

#: Channel of each data ``T`` per family (S29). ``c``/``x`` follow ``trades`` (S25).
CHANNEL_OF: dict[Family, dict[str, str]] = {
    Family.STOCKS: {
        "t": "trades",
        "q": "quotes",
        "b": "bars",
        "d": "dailyBars",
        "u": "updatedBars",
        "s": "statuses",
        "l": "lulds",
        "i": "imbalances",
        "c": "trades",
        "x": "trades",
    },
    Family.TEST: {"t": "trades", "q": "quotes", "b": "bars", "c": "trades", "x": "trades"},
    Family.CRYPTO: {
        "t": "trades",
        "q": "quotes",
        "b": "bars",
        "d": "dailyBars",
        "u": "updatedBars",
        "o": "orderbooks",
    },
    Family.OPTIONS: {"t": "trades", "q": "quotes"},
    Family.NEWS: {"n": "news"},
}

_STOCK_SYMBOL = re.compile(r"[A-Z0-9]+(?:[.\-][A-Z0-9]+)*")
_CRYPTO_SYMBOL = re.compile(r"[A-Z0-9]{1,15}/[A-Z0-9]{1,15}")
_OPTION_SYMBOL = re.compile(r"[A-Z0-9]{1,6}\d{6}[CP]\d{8}")

#: Frames queued before the market generator waits for the writer (back-pressure).
ROOM_HIGH = 32


def valid_symbol(family: Family, symbol: object) -> bool:
    """The per-endpoint symbol grammar of S21 (``*`` always allowed)."""
    if not isinstance(symbol, str) or len(symbol) > 40:
        return False
    if symbol == "*":
        return True
    if family is Family.CRYPTO:
        return _CRYPTO_SYMBOL.fullmatch(symbol) is not None
    if family is Family.OPTIONS:
        return _OPTION_SYMBOL.fullmatch(symbol) is not None
    if family is Family.NEWS:
        return (_STOCK_SYMBOL.fullmatch(symbol) or _CRYPTO_SYMBOL.fullmatch(symbol)) is not None
    return _STOCK_SYMBOL.fullmatch(symbol) is not None


class Credentials(NamedTuple):
    """An auth attempt waiting for :meth:`Session.authenticate` (the shell may delay it)."""

    key: str
    secret: str


class BaseSession:
    """State and outbox shared by the market-data and the account-stream sessions.

    ``config`` and ``width`` are the server's; it replaces them on every session when
    ``set_options`` changes them.
    """

    def __init__(
        self,
        cid: int,
        endpoint: Endpoint,
        encoding: Encoding,
        *,
        directory: Directory,
        config: ServerConfig | None = None,
        width: TimestampWidth | WidthCycle = "auto",
        headers: Mapping[str, str] | None = None,
        compressed: bool = False,
    ) -> None:
        self.id = cid
        self.endpoint = endpoint
        self.encoding = encoding
        self.text = encoding is Encoding.JSON
        self.directory = directory
        self.config = config if config is not None else ServerConfig()
        self.width = width
        self.headers: dict[str, str] = dict(headers or {})
        self.compressed = compressed
        self.identity: str | None = None
        self.authenticated = False
        self.account: Account | None = None
        self.slot: Slot | None = None
        self.subs: dict[str, dict[str, None]] = {}
        self.received: deque[Any] = deque(maxlen=self.config.logs.received_log_size)
        self.sent: deque[SentRecord] = deque(maxlen=self.config.logs.sent_log_size)
        self.sent_count = 0
        self.seq: dict[tuple[str, str], int] = {}
        self.muted = False
        #: Nothing more is queued: a close or an abort is on its way.
        self.ending = False
        #: The socket is gone; ``close_reason`` says why.
        self.closed = False
        self.close_reason = ""
        self.outbox = Outbox()
        #: Set when the connection must end without a close frame; see :meth:`take_abort`.
        self.abort: Abort | None = None
        #: S34 faults on the next frame written: cut it in half / send it in fragments.
        self.corrupt_next = False
        self.split_next = 0

    @property
    def config(self) -> ServerConfig:
        """The server's options in force."""
        return self._config

    @config.setter
    def config(self, value: ServerConfig) -> None:
        self._config = value
        # Read on every frame queued: keep them one attribute away.
        self._max_messages = value.delivery.max_buffer_messages
        self._max_bytes = value.delivery.max_buffer_bytes

    # ------------------------------------------------------------------ outgoing

    def enqueue(
        self, payload: bytes, data_count: int = 0, *, text: bool | None = None, split: int = 0
    ) -> None:
        """Queue one frame (dropped once the session is ending); past the S37 bound
        the client is given up on."""
        if self.closed or self.ending:
            return
        ob = self.outbox
        ob.push(Out(payload, self.text if text is None else text, data_count, split=split))
        if ob.exceeds(self._max_messages, self._max_bytes):
            self._slow_client()

    def _slow_client(self) -> None:
        """S37: drop the backlog, try a last ``407``, abort shortly after."""
        self.outbox.clear()
        err = {"T": "error", "code": 407, "msg": error_for_code(407).msg}
        self.close_reason = "slow client"
        self.ending = True
        self.abort = Abort(
            "slow client", join_items([encode_item(err, self.encoding)], self.encoding), 0.06
        )

    def send_records(self, records: Sequence[Mapping[str, Any]], split: int = 0) -> None:
        """``records`` as one frame in the session's encoding, unfiltered."""
        items = [encode_item(r, self.encoding, self.width) for r in records]
        self.enqueue(join_items(items, self.encoding), 0, split=split)

    def send_control(self, obj: Mapping[str, Any]) -> None:
        """A control message, alone in its frame (S24, §6)."""
        self.send_records([obj])

    def send_error(self, code: int, msg: str | None = None) -> None:
        """``[{"T":"error","code":code,"msg":…}]``, the documented text by default."""
        text = msg if msg is not None else error_for_code(code).msg
        self.send_control({"T": "error", "code": code, "msg": text})

    def close_after_flush(self, code: int, reason: str) -> None:
        """Close with a close frame once what is queued is written."""
        if self.closed or self.ending:
            return
        self.outbox.push(Out(b"", False, close=True, code=code, reason=reason))
        self.ending = True

    def close_protocol(self, reason: str) -> None:
        """A protocol-driven close, with the server's ``close_code`` (S2a)."""
        self.close_after_flush(self.config.protocol.close_code, reason)

    def drop(self, reason: str = "dropped") -> None:
        """S38: end abruptly, no close frame (even while a close is pending)."""
        if self.closed:
            return
        self.ending = True
        self.abort = Abort(reason)

    def take_abort(self) -> Abort | None:
        """The pending abort, once (the shell carries it out)."""
        abort, self.abort = self.abort, None
        return abort

    def next_frame(self) -> Out | None:
        """The next record to write with the S34 faults applied, or ``None`` if idle."""
        if not self.outbox:
            return None
        out = self.outbox.pop()
        if out.close:
            self.close_reason = self.close_reason or out.reason
            return out
        if self.corrupt_next:
            self.corrupt_next = False
            out.payload = out.payload[: max(1, len(out.payload) // 2)]
        if not out.split and self.split_next and out.payload:
            # An empty frame has nothing to split: the request waits for the next.
            out.split, self.split_next = self.split_next, 0
        return out

    def log_sent(self, rec: Mapping[str, Any]) -> None:
        """Record one data message in ``sent_data`` (bounded) and count it."""
        t = str(rec.get("T", ""))
        sym = rec.get("S")
        symbol = sym if isinstance(sym, str) else ",".join(map(str, rec.get("symbols", ()) or ()))
        key = (t, symbol)
        seq = self.seq.get(key, 0) + 1
        self.seq[key] = seq
        self.sent.append(SentRecord(t, symbol, seq, rec))
        self.sent_count += 1

    # ------------------------------------------------------------------ the end

    def connection_lost(self, *, clean: bool) -> None:
        """The socket is gone: ``clean`` if the client's close frame arrived."""
        self.ending = True
        if not self.closed:
            self.closed = True
            if not self.close_reason:
                self.close_reason = "client closed" if clean else "lost"

    def info(self) -> ConnectionInfo:
        """A snapshot for ``connections()``."""
        return ConnectionInfo(
            id=self.id,
            path=self.endpoint.path,
            feed=self.endpoint.feed,
            encoding=self.encoding,
            compressed=self.compressed,
            headers=dict(self.headers),
            key=self.identity,
            authenticated=self.authenticated,
            subscriptions={ch: set(s) for ch, s in self.subs.items()},
            received=list(self.received),
            sent_data=list(self.sent),
            sent_data_count=self.sent_count,
            muted=self.muted,
            closed=self.closed,
            close_reason=self.close_reason,
        )


#: Key of a delivery cache whose encodings were all prepared in advance (a market
#: with a ``total``): a connection in another encoding gets nothing.
PREPARED = "prepared"

#: Per-encoding encoded items of one batch of records, shared by the connections
#: it is delivered to (each record is encoded once per encoding).
DeliveryCache = dict[str, list[bytes | None]]


class Session(BaseSession):
    """The server's side of one market-data connection (``/v2/...``, S2-S31).

    Args:
        order_books: the market whose books answer an order-book subscribe (S27);
            asked for only then.
        clock: nanoseconds since the epoch, for order-book snapshot timestamps.
    """

    def __init__(
        self,
        cid: int,
        endpoint: Endpoint,
        encoding: Encoding,
        *,
        directory: Directory,
        config: ServerConfig | None = None,
        width: TimestampWidth | WidthCycle = "auto",
        headers: Mapping[str, str] | None = None,
        compressed: bool = False,
        order_books: Callable[[], Market] | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        super().__init__(
            cid,
            endpoint,
            encoding,
            directory=directory,
            config=config,
            width=width,
            headers=headers,
            compressed=compressed,
        )
        self.subs = {str(c): {} for c in endpoint.subscribable}
        self._channel_of = CHANNEL_OF[endpoint.family]  # read per record delivered
        self._news = endpoint.family is Family.NEWS
        self._order_books = order_books
        self._clock = clock
        #: S28: (channel, symbol) just unsubscribed, and how many messages may still pass.
        self.lagging: set[tuple[str, str]] = set()
        self.lag_left = 0

    # ------------------------------------------------------------------ incoming

    def start(self) -> None:
        """The greeting (S7); on a MessagePack-only endpoint spoken to in JSON, 412 and
        close right away unless the 412 waits for the first message (S3)."""
        self.send_control({"T": "success", "msg": "connected"})
        if self._wrong_encoding() and self.config.protocol.msgpack_required_timing == "greeting":
            self.send_error(412)
            self.close_protocol("msgpack required")

    def _wrong_encoding(self) -> bool:
        return self.endpoint.msgpack_only and self.encoding is Encoding.JSON

    def header_credentials(self) -> Credentials | None:
        """S10: credentials on the upgrade request (key headers, Bearer or Basic)."""
        lower = {k.lower(): v for k, v in self.headers.items()}
        key = lower.get("apca-api-key-id")
        if key is not None:
            return Credentials(key, lower.get("apca-api-secret-key") or "")
        scheme, _, value = (lower.get("authorization") or "").partition(" ")
        if scheme.lower() == "bearer":
            return Credentials("oauth", value.strip())
        if scheme.lower() == "basic":
            try:
                k, _, s = base64.b64decode(value.strip()).decode().partition(":")
            except Exception:  # malformed Basic: wrong credentials, answered with 402
                k, s = "", ""
            return Credentials(k, s)
        return None

    def receive(self, message: bytes | str) -> Credentials | None:
        """Handle one client message; returns the credentials of an auth attempt, which
        the caller passes to :meth:`authenticate` (after the server's auth delay)."""
        try:
            msg = decode_client_message(
                message, self.encoding, self.config.protocol.lenient_decoding
            )
        except ValueError:
            self.received.append(message)
            self.send_error(400)  # S18
            return None
        self.received.append(msg)
        if self._wrong_encoding():
            # S3, timing "first_message" (with "greeting" we are already closing)
            if not self.ending:
                self.send_error(412)
                self.close_protocol("msgpack required")
            return None
        if not isinstance(msg, dict):
            self.send_error(400)
            return None
        action = msg.get("action")
        if action == "auth":
            key, secret = msg.get("key"), msg.get("secret")
            if not isinstance(key, str) or not isinstance(secret, str):
                self.send_error(400)
            elif self.authenticated:
                self.send_error(403)  # S12
            else:
                return Credentials(key, secret)
        elif action in ("subscribe", "unsubscribe"):
            if not self.authenticated:
                self.send_error(401)  # S17
            else:
                self._subscription_change(msg, subscribe=action == "subscribe")
        else:
            self.send_error(400)
        return None

    def authenticate(self, creds: Credentials) -> None:
        """Answer an auth attempt: success (S9), or 402/409/406 (S11, S16, S14) and
        maybe close, or the error ``fail_next_auth`` queued."""
        if self.closed or self.authenticated:
            return  # closed, or authenticated by another attempt, while delayed
        auth, directory = self.config.auth, self.directory
        if directory.fail_next:
            code = directory.fail_next.popleft()
            self.send_error(code)
            if code == 402 and auth.close_on_auth_failure:
                self.close_protocol("auth failed")
            return
        account, identity = directory.lookup(*creds)
        if account is None:
            self.send_error(402)  # S11
            if auth.close_on_auth_failure:
                self.close_protocol("auth failed")
            return
        if not account.allows(self.endpoint.feed):
            self.send_error(409)  # S16
            if auth.close_on_insufficient_subscription:
                self.close_protocol("insufficient subscription")
            return
        slot = (identity, self.endpoint.path)
        if not directory.claim(slot, self.id, auth.connection_limit):
            self.send_error(406)  # S14
            if auth.close_on_connection_limit:
                self.close_protocol("connection limit exceeded")
            return
        self.slot = slot
        self.identity = identity
        self.authenticated = True
        self.account = account
        self.send_control({"T": "success", "msg": "authenticated"})  # S9

    def auth_timed_out(self) -> None:
        """The shell's ``auth_timeout`` timer fired: 404 and close if still anonymous (S13)."""
        if not self.authenticated and not self.closed:
            self.send_error(404)
            self.close_protocol("auth timeout")

    def _subscription_change(self, msg: dict[str, Any], *, subscribe: bool) -> None:
        fam = self.endpoint.family
        changes: dict[str, list[str]] = {}
        foreign = False
        for key, value in msg.items():
            if key == "action" or value is None:
                continue  # S19: null means no change
            if not isinstance(value, list):
                self.send_error(400)
                return
            if not value or key in IMPLICIT_CHANNELS:
                continue  # corrections / cancelErrors follow trades; tolerate them
            if key not in self.subs:
                foreign = True  # S20
                continue
            changes[key] = value
        if foreign:
            self.send_error(410)
            return
        for syms in changes.values():
            if not all(valid_symbol(fam, s) for s in syms):
                self.send_error(400)  # S21
                return
        if subscribe and fam is Family.OPTIONS and "*" in changes.get("quotes", ()):
            self.send_error(413)  # S22
            return
        new: dict[str, dict[str, None]] = {ch: dict(s) for ch, s in self.subs.items()}
        for ch, syms in changes.items():
            for s in syms:
                if subscribe:
                    new[ch][s] = None
                else:
                    new[ch].pop(s, None)
        if subscribe and self._over_limit(new):
            self.send_error(405)  # S23
            return
        added = {ch: [s for s in new[ch] if s not in self.subs[ch]] for ch in new}
        if not subscribe:
            removed = {(ch, s) for ch in self.subs for s in self.subs[ch] if s not in new[ch]}
            lag = self.config.protocol.lag_messages
            if lag > 0 and removed:  # S28
                self.lagging |= removed
                self.lag_left = lag
        else:
            self.lagging -= {(ch, s) for ch, syms in added.items() for s in syms}
        self.subs = new
        self.send_control(self.ack())  # S24
        if subscribe and "orderbooks" in added:  # S27
            self._send_snapshots(added["orderbooks"])

    def _over_limit(self, new: dict[str, dict[str, None]]) -> bool:
        account = self.account
        if account is None:
            return False
        limit = account.effective_symbol_limit()
        if limit is not None:
            distinct: set[str] = set()
            for ch in self.config.protocol.symbol_limit_channels:
                distinct.update(new.get(ch, {}))
            if len(distinct) > limit:
                return True
        ob_limit = account.effective_orderbook_limit()
        return ob_limit is not None and "orderbooks" in new and len(new["orderbooks"]) > ob_limit

    def ack(self) -> dict[str, Any]:
        """The subscription ack: every list of the endpoint, in its order (S24, S25)."""
        ack: dict[str, Any] = {"T": "subscription"}
        for ch in self.endpoint.ack_channels:
            if ch is Channel.IMBALANCES and not self.config.protocol.imbalances_in_ack:
                continue
            if ch in IMPLICIT_CHANNELS:
                ack[str(ch)] = list(self.subs["trades"])  # S25
            else:
                ack[str(ch)] = list(self.subs[str(ch)])
        return ack

    def _send_snapshots(self, symbols: list[str]) -> None:
        if self._order_books is not None:
            market = self._order_books()
        else:  # a session driven without a server (sans-I/O tests)
            market = Market(("BTC/USD",), family=Family.CRYPTO, seed=11)
        if "*" in symbols:
            symbols = [s for s in symbols if s != "*"] + [
                s for s in market.symbols if s not in symbols
            ]
        for sym in symbols:
            snap = market.order_book_snapshot(sym, self._clock())
            self.log_sent(snap)
            self.enqueue(
                join_items([encode_item(snap, self.encoding, self.width)], self.encoding), 1
            )

    # ------------------------------------------------------------------ data out

    def wants(self, rec: Mapping[str, Any]) -> bool:
        """Whether ``rec`` goes to this client: its subscriptions (S29), the lag of a
        recent unsubscribe (S28); an unknown ``T`` always passes (fault injection)."""
        ch = self._channel_of.get(rec.get("T"))  # type: ignore[arg-type]
        if ch is None:
            return True
        subs = self.subs.get(ch)
        if subs is None:
            return False
        if self._news:
            return "*" in subs or any(s in subs for s in rec.get("symbols") or ())
        sym = rec.get("S")
        if not isinstance(sym, str) or "*" in subs or sym in subs:
            return True
        if self.lag_left > 0 and (ch, sym) in self.lagging:
            self.lag_left -= 1  # S28: already-queued data still trickles out
            return True
        return False

    def deliver(self, recs: Sequence[Mapping[str, Any]], cache: DeliveryCache, batch: int) -> int:
        """Queue the records this client wants in frames of ``batch`` (S29, S30);
        returns how many. ``cache`` shares each record's encoding across sessions."""
        if self.muted or self.closed or self.ending:
            return 0
        enc = self.encoding
        items = cache.get(enc)
        if items is None and cache.get(PREPARED) is not None:
            return 0  # a pre-encoded market without this connection's encoding
        if items is None:
            items = cache[enc] = [None] * len(recs)
        log = self.config.logs.sent_log_size > 0
        wants = self.wants
        chosen: list[bytes] = []
        n = 0
        for idx, rec in enumerate(recs):
            if not wants(rec):
                continue
            item = items[idx]
            if item is None:
                item = items[idx] = encode_item(rec, enc, self.width)
            chosen.append(item)
            if log:
                self.log_sent(rec)
            else:
                self.sent_count += 1
            n += 1
            if len(chosen) >= batch:
                self.enqueue(join_items(chosen, enc), len(chosen))
                chosen = []
        if chosen:
            self.enqueue(join_items(chosen, enc), len(chosen))
        return n
