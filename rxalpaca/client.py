"""``StreamClient``: the facade that wires transport, operators, Session and SubscriptionBook.

Example (against the embedded server, no API keys needed)::

    from rxalpaca import StreamClient, ops
    from rxalpaca.testing import AlpacaStreamServer, DEFAULT_KEY, DEFAULT_SECRET

    with AlpacaStreamServer() as server, StreamClient(
        feed="iex", url=server.base_url, key=DEFAULT_KEY, secret=DEFAULT_SECRET
    ) as client:
        client.quotes("AAPL").pipe(ops.throttle(0.5)).subscribe(print)

Threading — who owns what:

* **socket thread** (one per connection, owned by the transport): reads frames and
  runs reassemble → validate → decode → meter → route, every observer (unless the
  user moves them with ``ops.observe_on`` / ``ops.conflate``), and the handling of
  control messages (the Session's transitions, acks, errors);
* **any thread**: ``subscribe`` / ``dispose`` of the public observables, ``close``,
  ``health``. They touch the Router (its own lock, copy-on-write entries so dispatch
  takes none), the SubscriptionBook (its own lock) and the send path
  (``_send_lock``: taking the next request from the book and writing it are one
  step, so a request can never reach a socket of a later session);
* ``_state_lock`` (re-entrant) orders Session transitions with their emission on
  ``state``, so every observer sees transitions in order;
* the **retry timer thread** only resubscribes; the **flush timer thread** only
  sends the next subscription request after the linger; the **watchdog thread**
  only reads counters and deadlines, aborts a socket that is silent (no market
  data: ``silence_timeout``) or whose reply is overdue, and writes the summaries of
  rate-limited log lines (``_log_limit``, its own lock); the transport's **ping
  thread** pings and aborts a dead (half-open) link (``ping_timeout``);
* ``frames`` observers run on the socket thread before the pipeline; the
  transport's lock guards their registration (copy-on-write, like the router).
No lock is held while observers run, so an observer may subscribe or dispose.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import Any, Literal

import reactivex
from reactivex import Observable, abc
from reactivex import operators as rx_ops
from reactivex.disposable import Disposable
from reactivex.subject import BehaviorSubject, Subject

from . import models
from ._logging import RateLimitedLog
from .book import Request, SubscriptionBook
from .codec import Codec, Decoded
from .errors import (
    ClientClosedError,
    ConfigurationError,
    ConnectionLostError,
    FrameError,
    HandlerError,
    ReplyTimeout,
    StreamError,
    SubscriptionMismatch,
    SubscriptionRejected,
    UnknownMessage,
)
from .feeds import IMPLICIT_CHANNELS, Channel, Endpoint, endpoint, url_for
from .frames import Frame
from .metrics import Metrics
from .operators import RetryPolicy, Router, pipeline, retry_with_backoff
from .operators._reassemble import DEFAULT_MAX_MESSAGE_BYTES
from .protocol import (
    ConnectionState,
    Fail,
    PublishError,
    Reconnect,
    Send,
    Session,
    SubscriptionAck,
    SubscriptionFailed,
)
from .symbols import normalise_symbols
from .transport import WebSocketTransport

# UnknownMessage and SubscriptionMismatch moved to ``errors``; this old path still works.
__all__ = ["StreamClient", "SubscriptionMismatch", "UnknownMessage"]

logger = logging.getLogger("rxalpaca")


_DEFAULT_RETRY = RetryPolicy(initial_delay=0.05, max_delay=10.0)


class StreamClient:
    """A connection to one Alpaca market-data endpoint, as typed per-symbol Observables.

    The socket opens on the first subscription (or :meth:`connect`), authenticates,
    and stays up until :meth:`close`, reconnecting with back-off after transient
    failures and restoring every live subscription.

    Args:
        feed: ``"iex"``, ``"sip"``, ``"delayed_sip"``, ``"boats"``, ``"overnight"``,
            ``"test"``, ``"crypto"`` (``"crypto/us"``, ``"crypto/us-1"``,
            ``"crypto/eu-1"``), ``"indicative"``, ``"opra"`` or ``"news"``.
        key: API key id; default ``$APCA_API_KEY_ID``.
        secret: API secret; default ``$APCA_API_SECRET_KEY``. Never logged or shown.
        url: scheme and host of another server, e.g. ``"ws://127.0.0.1:8765"``
            (the feed's path is appended), or a full URL ending in the path.
        sandbox: use the Broker-API sandbox host.
        encoding: ``"msgpack"`` (default, like the official SDKs) or ``"json"``.
            Options endpoints accept MessagePack only.
        header_auth: send credentials in the upgrade headers instead of an auth message.
        retry: back-off policy for reconnects.
        ping_interval: seconds between WebSocket pings (``None`` disables them).
        ping_timeout: seconds after a ping within which the pong, or any other frame,
            must arrive; otherwise the link is dead (half-open: the socket looks open
            but nothing crosses it) and the client drops it as
            :class:`~rxalpaca.errors.KeepaliveTimeout` and reconnects. alpaca-py waits
            180 s, the Go and JS SDKs 5 s; ``None`` waits forever. Only time the socket
            thread spends waiting for the network counts, not time in observers.
        ca_file: a CA bundle to trust for ``wss://`` (e.g. a private test CA).
            Certificates are always verified.
        max_message_bytes: the largest message accepted (bounded reassembly).
        silence_timeout: reconnect when no market data arrived for this many seconds
            while subscribed — the "connected but mute" server of §6, which still
            answers pings and acks. Acks, errors and pongs do not count as data. Off by
            default: quiet channels such as news are normal.
        slow_observer_threshold: warn when observers take more than this fraction
            of the socket thread's time (the server disconnects slow clients, 407).
        subscribe_linger: seconds a subscription change waits for more changes before
            it is sent, so bursts coalesce into a few messages.
        reply_timeout: seconds to wait for the server's answer — the greeting and auth
            reply after connecting, the ack of each subscription request — before
            dropping the socket as :class:`~rxalpaca.errors.ReplyTimeout` and
            reconnecting (which replays every subscription). A lost control frame
            would otherwise stall the client; ``None`` waits forever.
        strict_timestamps: prove every timestamp well formed while decoding, so a
            malformed one is a ``FrameError`` on ``errors`` rather than a ``ValueError``
            when read (see :class:`~rxalpaca.codec.Codec`; about +50 % JSON and
            +40 % MessagePack decode time).
    """

    def __init__(
        self,
        feed: str = "iex",
        *,
        key: str | None = None,
        secret: str | None = None,
        url: str | None = None,
        sandbox: bool = False,
        encoding: Literal["json", "msgpack"] = "msgpack",
        header_auth: bool = False,
        retry: RetryPolicy | None = None,
        ping_interval: float | None = 10.0,
        ping_timeout: float | None = 10.0,
        ca_file: str | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        silence_timeout: float | None = None,
        slow_observer_threshold: float = 0.8,
        subscribe_linger: float = 0.01,
        reply_timeout: float | None = 5.0,
        strict_timestamps: bool = False,
        name: str = "rxalpaca",
    ) -> None:
        self.endpoint: Endpoint = endpoint(feed)
        # Repeated errors (a raising observer, a bad frame per message) log once in
        # full, then a count every interval; counters and `errors` still see each one.
        self._log_limit = RateLimitedLog(logger)
        if encoding not in ("json", "msgpack"):
            raise ConfigurationError(f"encoding must be 'json' or 'msgpack', not {encoding!r}")
        if self.endpoint.msgpack_only and encoding != "msgpack":
            raise ConfigurationError(f"{self.endpoint.feed} speaks MessagePack only (§1.3)")
        key = key if key is not None else os.environ.get("APCA_API_KEY_ID")
        secret = secret if secret is not None else os.environ.get("APCA_API_SECRET_KEY")
        if not key or not secret:
            raise ConfigurationError(
                "no credentials: pass key= and secret=, or set APCA_API_KEY_ID and "
                "APCA_API_SECRET_KEY"
            )
        self.encoding = encoding
        self.url = _resolve_url(feed, url, sandbox, self.endpoint)
        self._codec = Codec(self.endpoint.family, encoding, strict_timestamps=strict_timestamps)
        self.metrics = Metrics()
        self._router = Router(self.metrics, self._on_handler_error)
        self._book = SubscriptionBook(frozenset(self.endpoint.channels))
        self._session = Session(key, secret, header_auth=header_auth)
        self._retry = retry if retry is not None else _DEFAULT_RETRY
        self._max_message_bytes = max_message_bytes
        headers: dict[str, str] = {"User-Agent": "rxalpaca/0.1"}
        if encoding == "msgpack":
            headers["Content-Type"] = "application/msgpack"
        if header_auth:
            headers["APCA-API-KEY-ID"] = key
            headers["APCA-API-SECRET-KEY"] = secret
        sslopt = {"ca_certs": ca_file} if ca_file else None
        self._transport = WebSocketTransport(
            self.url,
            headers=headers,
            sslopt=sslopt,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            max_frame_bytes=max_message_bytes,
            name=name,
        )
        self._state_lock = threading.RLock()
        self._send_lock = threading.Lock()
        self._conn_lock = threading.Lock()
        self._errors_lock = threading.Lock()
        self._state = BehaviorSubject(ConnectionState.IDLE)
        self._errors: Subject[Exception] = Subject()
        self._connection: abc.DisposableBase | None = None
        self._closed = False
        self._fatal: BaseException | None = None
        self._silence_timeout = silence_timeout
        self._slow_threshold = slow_observer_threshold
        self._watchdog: threading.Thread | None = None
        self._watchdog_stop = threading.Event()
        self._name = name
        self._linger = subscribe_linger
        self._flush_lock = threading.Lock()
        self._flush_timer: threading.Timer | None = None
        for option, value in (
            ("reply_timeout", reply_timeout),
            ("ping_interval", ping_interval),
            ("ping_timeout", ping_timeout),
            ("silence_timeout", silence_timeout),
        ):
            if value is not None and not value > 0:
                raise ConfigurationError(f"{option} must be a positive number of seconds or None")
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._reply_timeout = reply_timeout
        # Reply deadlines (time.monotonic()), read by the watchdog. Single assignments
        # of immutable values, so readers need no lock: the connecting socket's
        # deadline for authentication, and the sent request with its ack deadline.
        self._auth_deadline: float | None = None
        self._request_deadline: tuple[Request, float] | None = None
        # time.time_ns() of the last authentication (socket thread writes, watchdog reads).
        self._authenticated_ns = 0

    # ------------------------------------------------------------------ public

    def __repr__(self) -> str:
        return (
            f"StreamClient(feed={self.endpoint.feed!r}, url={self.url!r}, "
            f"encoding={self.encoding!r}, state={self.current_state.value!r})"
        )

    def __enter__(self) -> StreamClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def state(self) -> Observable[ConnectionState]:
        """The current :class:`ConnectionState` at once, then every transition."""
        return self._state

    @property
    def current_state(self) -> ConnectionState:
        """The state right now."""
        return self._session.state

    @property
    def errors(self) -> Observable[Exception]:
        """Problems that did not stop the stream: bad frames, handler errors, server errors."""
        return self._errors

    @property
    def frames(self) -> Observable[Frame | FrameError]:
        """Every raw WebSocket frame this client receives, across reconnects (hot).

        For recording a session or decoding in your own way beside the typed
        streams: frames arrive on the socket thread, before the client decodes
        them, as :class:`~rxalpaca.frames.Frame` records (payload bytes, opcode,
        ``fin``, ``received_ns``; a message split into fragments arrives as its
        fragments — ``ops.reassemble()`` joins them). Subscribing does not open the
        connection (the first typed stream, or :meth:`connect`, does) and sees the
        frames from then on; it completes when the client closes. A connection lost
        is not an error here (see :attr:`state`). An observer that raises is
        reported on :attr:`errors` like any other.
        """

        def subscribe(
            observer: abc.ObserverBase[Frame | FrameError],
            scheduler: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            if self._closed:
                observer.on_completed()
                return Disposable()

            def on_next(frame: Frame | FrameError) -> None:
                try:
                    observer.on_next(frame)
                except Exception as exc:
                    self.metrics.count_handler_error()
                    self._on_handler_error(exc, frame, observer)

            return self._transport.monitor().subscribe(
                on_next, observer.on_error, observer.on_completed
            )

        return reactivex.create(subscribe)

    def health(self) -> dict[str, Any]:
        """A plain dict for dashboards and liveness probes.

        Two clocks tell a quiet market from a dead link: ``last_data_age_s`` (market
        data only; ``last_message_age_s`` is the same figure under its old name) and
        ``last_frame_age_s`` (any bytes from the server: data, acks, pongs).
        ``link_stale`` is true while a ping has gone unanswered for more than half the
        ``ping_timeout`` (the link will be dropped at the full timeout); ``None`` when
        pings are off.
        """
        m = self.metrics
        now_ns = time.time_ns()
        last = m.last_message_ns
        read_age, unanswered = self._transport.link()
        if self._ping_interval is None:
            stale: bool | None = None
        else:
            limit = (self._ping_timeout or self._ping_interval * 2) / 2
            stale = unanswered is not None and unanswered > limit
        data_age = (now_ns - last) / 1e9 if last else None
        return {
            "feed": self.endpoint.feed,
            "state": self.current_state.value,
            "connected": self.current_state is ConnectionState.AUTHENTICATED,
            "last_message_age_s": data_age,
            "last_data_age_s": data_age,
            "last_frame_age_s": read_age,
            "link_stale": stale,
            "ping_unanswered_s": unanswered,
            "live_subscriptions": self._book.live,
            "server_subscriptions": len(self._book.acked()),
            "reconnects": m.reconnects,
            "frames_received": m.frames_received,
            "messages_delivered": m.messages_delivered,
            "decode_failures": m.decode_failures,
            "handler_errors": m.handler_errors,
            "fatal_error": repr(self._fatal) if self._fatal else None,
            "metrics": m.snapshot(),
        }

    def connect(self) -> StreamClient:
        """Open the connection now instead of at the first subscription."""
        self._ensure_connected()
        return self

    def close(self) -> None:
        """Close the socket and complete every observer. Prompt and idempotent."""
        with self._conn_lock:
            if self._closed:
                return
            self._closed = True
            conn, self._connection = self._connection, None
        with self._state_lock:
            if not self._session.state.terminal:
                self._session.close()
                self._emit_state()
        self._watchdog_stop.set()
        self._log_limit.flush()
        with self._flush_lock:
            timer, self._flush_timer = self._flush_timer, None
        if timer is not None:
            timer.cancel()
        if conn is not None:
            conn.dispose()
        self._transport.close(final=True)  # completes the frames observers
        self._book.disconnected()
        for observer in self._all_observers():
            with contextlib.suppress(Exception):
                observer.on_completed()
        self._state.on_completed()
        with self._errors_lock:
            self._errors.on_completed()
        if self._watchdog is not None and self._watchdog is not threading.current_thread():
            self._watchdog.join(timeout=1.0)

    # ---- typed streams

    def trades(self, *symbols: str | Iterable[str]) -> Observable[Any]:
        """Trades of ``symbols`` (``"*"``: every symbol)."""
        return self._stream(Channel.TRADES, symbols)

    def quotes(self, *symbols: str | Iterable[str]) -> Observable[Any]:
        """Quotes of ``symbols``."""
        return self._stream(Channel.QUOTES, symbols)

    def bars(self, *symbols: str | Iterable[str]) -> Observable[Any]:
        """Minute bars of ``symbols``."""
        return self._stream(Channel.BARS, symbols)

    def daily_bars(self, *symbols: str | Iterable[str]) -> Observable[Any]:
        """Running daily bars."""
        return self._stream(Channel.DAILY_BARS, symbols)

    def updated_bars(self, *symbols: str | Iterable[str]) -> Observable[Any]:
        """Minute bars corrected after late trades."""
        return self._stream(Channel.UPDATED_BARS, symbols)

    def statuses(self, *symbols: str | Iterable[str]) -> Observable[models.TradingStatus]:
        """Trading statuses (halts, resumptions)."""
        return self._stream(Channel.STATUSES, symbols)

    def lulds(self, *symbols: str | Iterable[str]) -> Observable[models.Luld]:
        """Limit up / limit down bands."""
        return self._stream(Channel.LULDS, symbols)

    def imbalances(self, *symbols: str | Iterable[str]) -> Observable[models.Imbalance]:
        """Order imbalances."""
        return self._stream(Channel.IMBALANCES, symbols)

    def corrections(self, *symbols: str | Iterable[str]) -> Observable[models.Correction]:
        """Trade corrections (the server sends them with ``trades``)."""
        return self._stream(Channel.CORRECTIONS, symbols)

    def cancel_errors(self, *symbols: str | Iterable[str]) -> Observable[models.CancelError]:
        """Trade cancels and errors (the server sends them with ``trades``)."""
        return self._stream(Channel.CANCEL_ERRORS, symbols)

    def orderbooks(self, *symbols: str | Iterable[str]) -> Observable[models.OrderBook]:
        """Crypto order-book snapshots (``reset``) and updates."""
        return self._stream(Channel.ORDERBOOKS, symbols)

    def news(self, *symbols: str | Iterable[str]) -> Observable[models.News]:
        """News articles mentioning ``symbols`` (``"*"``: all, including untagged ones)."""
        return self._stream(Channel.NEWS, symbols)

    def subscriptions(self) -> dict[str, set[str]]:
        """What the server has acknowledged, per channel."""
        out: dict[str, set[str]] = {}
        for ch, sym in self._book.acked():
            out.setdefault(ch, set()).add(sym)
        return out

    # ------------------------------------------------------------------ streams

    def _stream(
        self, channel: Channel, symbols: tuple[str | Iterable[str], ...]
    ) -> Observable[Any]:
        if channel not in self.endpoint.channels:
            raise ConfigurationError(
                f"{self.endpoint.feed} has no {channel.value!r} channel; it has "
                f"{', '.join(c.value for c in self.endpoint.subscribable)}"
            )
        # Validated here, at the quotes(...) call, so a typo is one clear sentence now
        # rather than a 400 rejecting the whole request later (§3.1, S21).
        syms = normalise_symbols(symbols, self.endpoint.family)
        # corrections/cancelErrors ride on trades (§3.1): hold trades on the server.
        server_channel = Channel.TRADES if channel in IMPLICIT_CHANNELS else channel
        router, book = self._router, self._book

        def subscribe(
            observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            _refuse_async_observer(observer, channel, syms)
            if self._closed:
                observer.on_error(self._fatal_or_closed())
                return Disposable()
            for s in syms:
                router.add(channel.value, s, observer)
            book.acquire(server_channel.value, syms)
            self.metrics.live_subscriptions = book.live
            released = False

            def dispose() -> None:
                nonlocal released
                if released:
                    return
                released = True
                for s in syms:
                    router.remove(channel.value, s, observer)
                book.release(server_channel.value, syms)
                self.metrics.live_subscriptions = book.live
                self._pump()

            if self._fatal is not None:
                dispose()
                observer.on_error(self._fatal_or_closed())
                return Disposable()
            self._ensure_connected()
            self._pump()
            return Disposable(dispose)

        return reactivex.create(subscribe)

    def _fatal_or_closed(self) -> Exception:
        if isinstance(self._fatal, Exception):
            return self._fatal
        return ClientClosedError("the client is closed")

    def _all_observers(self) -> list[abc.ObserverBase[Any]]:
        seen: dict[int, abc.ObserverBase[Any]] = {}
        for observers in self._router.snapshot().values():
            for o in observers:
                seen.setdefault(id(o), o)
        return list(seen.values())

    # ------------------------------------------------------------------ connection

    def _ensure_connected(self) -> None:
        with self._conn_lock:
            if self._connection is not None or self._closed or self._fatal is not None:
                return
            # Assigned before subscribing: the subscription may call back synchronously.
            self._connection = Disposable()
        sub = self._connection_observable().subscribe(
            on_next=lambda _state: None,
            on_error=self._on_fatal,
            on_completed=lambda: None,
        )
        with self._conn_lock:
            if self._closed:
                close_now = True
            else:
                self._connection = sub
                close_now = False
        if close_now:
            sub.dispose()
        if (
            self._silence_timeout or self._slow_threshold or self._reply_timeout
        ) and self._watchdog is None:
            self._watchdog = threading.Thread(
                target=self._watch, name=f"{self._name}-watchdog", daemon=True
            )
            self._watchdog.start()

    def _connection_observable(self) -> Observable[ConnectionState]:
        max_bytes = self._max_message_bytes

        def connect_once(_scheduler: abc.SchedulerBase | None = None) -> Observable[Any]:
            with self._state_lock:
                if self._session.state.terminal:
                    return reactivex.empty()
                self._session.connect()
                self.metrics.connects += 1
                self._request_deadline = None
                if self._reply_timeout is not None:
                    self._auth_deadline = time.monotonic() + self._reply_timeout
                self._emit_state()
            # reassemble → validate → decode → meter → route, fused into one Rx hop.
            return self._transport.frames().pipe(
                pipeline(self._codec, self.metrics, self._router, max_bytes),
                rx_ops.map(self._on_control),
            )

        return reactivex.defer(connect_once).pipe(
            rx_ops.do_action(on_error=self._on_lost),
            retry_with_backoff(
                self._retry,
                reset_on=lambda s: s is ConnectionState.AUTHENTICATED,
                on_retry=self._on_retry,
            ),
        )

    def _on_control(self, item: Decoded) -> ConnectionState:
        """Socket thread: everything that is not a data record."""
        if isinstance(item, FrameError):
            self._log_limit.log(
                ("frame", item.reason[:60]),
                logging.WARNING,
                "bad frame from %s: %s",
                self.endpoint.feed,
                item,
            )
            self._publish(item)
            return self._session.state
        if isinstance(item, models.Unknown):
            self.metrics.unknown_messages += 1
            self._log_limit.log(
                ("unknown", item.type),
                logging.WARNING,
                "unknown message type %r from %s",
                item.type,
                self.endpoint.feed,
            )
            self._publish(UnknownMessage(item))
            return self._session.state
        if not isinstance(
            item, models.SuccessMessage | models.ErrorMessage | models.SubscriptionMessage
        ):
            return self._session.state  # a record of a channel nobody routes: nothing to do
        self.metrics.control_messages += 1
        with self._state_lock:
            before = self._session.state
            effects = self._session.receive(item)
            after = self._session.state
            if after is not before:
                self._emit_state()
        if after is ConnectionState.AUTHENTICATED and before is not after:
            self._auth_deadline = None
            self._authenticated_ns = time.time_ns()  # silence is measured from here
            self._book.connected()
            self._flush()  # replay every live subscription at once
        for effect in effects:
            if isinstance(effect, Send):
                self._transport.send(self._codec.encode(effect.message), self._codec.opcode)
            elif isinstance(effect, SubscriptionAck):
                check = self._book.on_ack(effect.ack)
                if not check.ok:
                    err = SubscriptionMismatch(check.missing, check.unexpected)
                    logger.warning("%s", err)
                    self._publish(err)
                self._pump()
            elif isinstance(effect, SubscriptionFailed):
                self._reject(effect.error)
                self._pump()
            elif isinstance(effect, PublishError):
                self._log_limit.log(
                    ("server", type(effect.error)),
                    logging.WARNING,
                    "server reported %s",
                    effect.error,
                )
                self._publish(effect.error)
            elif isinstance(effect, Reconnect | Fail):
                raise effect.error  # ends this connection; retry_with_backoff decides
        return after

    def _reject(self, error: StreamError) -> None:
        rejection = self._book.on_error(split=error.per_symbol)
        if rejection.split:
            # Some symbols of a combined request may be fine: try each half alone, now.
            logger.info("server refused a combined subscribe (%s); retrying it in halves", error)
            self._flush()
            return
        logger.warning("subscription refused by the server: %s", error)
        self._publish(error)
        by_observer: dict[int, tuple[abc.ObserverBase[Any], list[tuple[str, str]]]] = {}
        for ch, sym in rejection.pairs:
            channels = [ch] + ([c.value for c in IMPLICIT_CHANNELS] if ch == "trades" else [])
            for c in channels:
                for o in self._router.observers(c, sym):
                    by_observer.setdefault(id(o), (o, []))[1].append((c, sym))
        for o, pairs in by_observer.values():
            exc = SubscriptionRejected(pairs[0][0], tuple(s for _, s in pairs), error)
            exc.__cause__ = error
            with contextlib.suppress(Exception):
                o.on_error(exc)

    def _pump(self) -> None:
        """Send the next subscription request soon (any thread).

        Changes linger for ``subscribe_linger`` seconds first, so a burst of
        subscriptions (a loop over 1,000 symbols) leaves as a few messages instead of
        one per server round trip.
        """
        if self._closed:
            return
        with self._flush_lock:
            if self._flush_timer is not None:
                return
            timer = threading.Timer(self._linger, self._flush_from_timer)
            timer.daemon = True
            self._flush_timer = timer
        timer.start()

    def _flush_from_timer(self) -> None:
        with self._flush_lock:
            self._flush_timer = None
        self._flush()

    def _flush(self) -> None:
        """Send the next subscription request now, if one is due (any thread)."""
        if self._closed:
            return
        with self._send_lock:
            req = self._book.take_request()
            if req is None:
                return
            if self._reply_timeout is not None:
                self._request_deadline = (req, time.monotonic() + self._reply_timeout)
            try:
                self._transport.send(self._codec.encode(req.message()), self._codec.opcode)
            except ConnectionLostError:
                # The socket is going away; the reconnect replays every subscription.
                logger.debug("subscription request not sent: connection lost")

    def _on_lost(self, error: Exception) -> None:
        """Socket thread (or the subscriber's): this connection ended."""
        self._book.disconnected()
        if self._closed or not self._retry.should_retry(error):
            return
        with self._state_lock:
            if not self._session.state.terminal:
                self._session.lost()
                self._emit_state()
        self.metrics.reconnects += 1
        self._log_limit.log(
            ("lost", type(error)), logging.WARNING, "connection lost (%s); reconnecting", error
        )
        self._publish(error)

    def _on_retry(self, error: BaseException, attempt: int, delay: float) -> None:
        logger.info("reconnect attempt %d in %.3f s after %s", attempt, delay, error)

    def _on_fatal(self, error: Exception) -> None:
        """The connection ended for good: fail every observer with the typed error."""
        if self._closed:
            return
        self._fatal = error
        logger.error("stream failed for good: %r", error)
        with self._state_lock:
            if not self._session.state.terminal:
                self._session.fail()
                self._emit_state()
        self._book.disconnected()
        self._publish(error)
        for observer in self._all_observers():
            with contextlib.suppress(Exception):
                observer.on_error(error)
        self._state.on_completed()

    def _emit_state(self) -> None:
        # Called with _state_lock held, so transitions reach observers in order.
        try:
            self._state.on_next(self._session.state)
        except Exception:
            logger.exception("a state observer raised")

    def _publish(self, error: Exception) -> None:
        self.metrics.count_error_published()
        with self._errors_lock:
            try:
                self._errors.on_next(error)
            except Exception:
                logger.exception("an errors observer raised")

    def _on_handler_error(self, exc: BaseException, record: object, observer: object) -> None:
        # Called inside the router's except block, so exc_info has the stack. An observer
        # that raises on every message must not write a traceback per message: the first
        # in full, then a count per interval (every one is still on `errors`).
        self._log_limit.log(
            ("handler", observer, type(exc)),
            logging.ERROR,
            "observer %s raised %s while handling %s",
            _describe(observer),
            type(exc).__name__,
            type(record).__name__,
            exc_info=True,
        )
        err = HandlerError(type(record).__name__, record)
        err.__cause__ = exc
        self._publish(err)

    # ------------------------------------------------------------------ watchdog

    def _next_wait(self, tick: float) -> float:
        """Seconds until the watchdog's next look: a tick, or sooner if a reply is due."""
        wait = tick
        now = time.monotonic()
        auth, req = self._auth_deadline, self._request_deadline
        for deadline in (auth, req[1] if req is not None else None):
            if deadline is not None:
                wait = min(wait, deadline - now)
        return max(wait, 0.001)

    def _check_replies(self) -> None:
        """Watchdog thread: drop a socket whose auth reply or subscription ack is overdue.

        An overdue deadline is cleared whether or not it fires (the reply may have come,
        or the socket may already be gone), so it is acted on at most once.
        """
        now = time.monotonic()
        state = self.current_state
        auth = self._auth_deadline
        if auth is not None and now >= auth:
            self._auth_deadline = None
            if state in (ConnectionState.CONNECTING, ConnectionState.AUTHENTICATING):
                self._reply_overdue(f"not authenticated {self._reply_timeout} s after connecting")
                return
        pending = self._request_deadline
        if pending is not None and now >= pending[1]:
            self._request_deadline = None
            # Still unanswered: the book's in-flight request is this very one.
            if state is ConnectionState.AUTHENTICATED and self._book.in_flight is pending[0]:
                self._reply_overdue(f"no reply to {pending[0].action} in {self._reply_timeout} s")

    def _reply_overdue(self, what: str) -> None:
        self.metrics.reply_timeouts += 1
        err = ReplyTimeout(what)
        logger.warning("%s; reconnecting", err)
        self._transport.abort(err)

    def _watch(self) -> None:
        """Watchdog thread: reply deadlines, silence detection, the slow-observer warning."""
        m = self.metrics
        tick = 0.5
        last_total = m.observer_time_total_ns
        last_at = time.perf_counter_ns()
        last_warn = 0.0
        # The last time the watchdog saw no live subscription: no data can be expected
        # before the first one, so silence is measured from then at the earliest.
        unsubscribed_ns = time.time_ns()
        while not self._watchdog_stop.wait(self._next_wait(tick)):
            self._log_limit.flush()  # summaries owed by errors that stopped repeating
            if self._reply_timeout is not None:
                self._check_replies()
            now = time.perf_counter_ns()
            if now - last_at < tick * 1e9 * 0.5:
                continue  # woken early for a deadline: keep the slow-observer window whole
            total = m.observer_time_total_ns
            started = m.dispatch_started_ns
            busy = (total - last_total) / max(1, now - last_at)
            if started and now - started > tick * 1e9 * self._slow_threshold:
                busy = 1.0  # one batch still running: a huge frame must not hide it
            last_total, last_at = total, now
            if self._slow_threshold and busy > self._slow_threshold:
                m.slow_consumer_warnings += 1
                if time.monotonic() - last_warn > 5.0:
                    last_warn = time.monotonic()
                    logger.warning(
                        "observers use %.0f%% of the socket thread; the server disconnects "
                        "clients that fall behind (407). Move slow work off it with "
                        "ops.conflate(...) or ops.observe_on(...)",
                        min(busy, 1.0) * 100,
                    )
            if not self._silence_timeout:
                continue
            now_ns = time.time_ns()
            if not self._book.live:
                unsubscribed_ns = now_ns
                continue
            # Only market data refreshes this clock: a mute server still acks (§6).
            quiet_since = max(m.last_message_ns, self._authenticated_ns, unsubscribed_ns)
            if (
                self.current_state is ConnectionState.AUTHENTICATED
                and now_ns - quiet_since > self._silence_timeout * 1e9
            ):
                logger.warning(
                    "no market data for %.1f s while subscribed; reconnecting",
                    (now_ns - quiet_since) / 1e9,
                )
                self._authenticated_ns = now_ns  # act once; the reconnect resets it anyway
                self._transport.abort(ConnectionLostError("silent connection: no market data"))


def _resolve_url(feed: str, url: str | None, sandbox: bool, ep: Endpoint) -> str:
    if url is None:
        return url_for(feed, sandbox=sandbox)
    if url.rstrip("/").endswith(ep.path):
        return url
    return url.rstrip("/") + ep.path


def _user_callbacks(observer: object) -> tuple[object, ...]:
    """The user's callbacks behind an observer handed to a subscribe function.

    ``Observable.subscribe`` wraps callbacks — and an observer object's bound methods —
    in an ``AutoDetachObserver`` that keeps them as ``_on_next`` / ``_on_error`` /
    ``_on_completed``; anything else is its own callback.
    """
    inner = tuple(getattr(observer, a, None) for a in ("_on_next", "_on_error", "_on_completed"))
    if any(cb is not None for cb in inner):
        return inner
    return tuple(getattr(observer, a, None) for a in ("on_next", "on_error", "on_completed"))


def _is_async(callback: object) -> bool:
    return inspect.iscoroutinefunction(callback) or inspect.iscoroutinefunction(
        getattr(callback, "__call__", None)  # noqa: B004 - an object with async __call__
    )


def _name(callback: object) -> str:
    while isinstance(callback, functools.partial):
        callback = callback.func
    return str(getattr(callback, "__qualname__", None) or type(callback).__qualname__)


def _describe(observer: object) -> str:
    """The user's name for an observer (its on_next's), for log lines."""
    return _name(_user_callbacks(observer)[0] or observer)


def _refuse_async_observer(observer: object, channel: Channel, syms: tuple[str, ...]) -> None:
    """Refuse an ``async def`` observer before anything is subscribed.

    Observers are called synchronously on the socket thread: calling an ``async def``
    only makes a coroutine, which nobody awaits, so the function would never run.
    """
    callbacks = _user_callbacks(observer)
    bad = next((cb for cb in callbacks if cb is not None and _is_async(cb)), None)
    if bad is None:
        return
    # Stopped first, so Observable.subscribe raises this at the caller rather than
    # handing it to the user's on_error (which may be the async function itself).
    dispose = getattr(observer, "dispose", None)
    if callable(dispose):
        dispose()
    name = _name(bad)
    method = _METHOD_OF.get(channel, channel.value)
    args = ", ".join(repr(s) for s in syms[:3]) + (", ..." if len(syms) > 3 else "")
    raise ConfigurationError(
        f"{name} is an async function, and observers are called synchronously, so it "
        f"would never run; iterate instead: "
        f"async for item in rxalpaca.aiter(client.{method}({args})): ..."
    )


_METHOD_OF = {
    Channel.DAILY_BARS: "daily_bars",
    Channel.UPDATED_BARS: "updated_bars",
    Channel.CANCEL_ERRORS: "cancel_errors",
}
