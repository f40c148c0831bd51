"""``AlpacaUpstream``: the Alpaca socket that a :class:`~rxalpaca.streams.Streams` facade drives.

It wires the transport (a hot Observable of frames), the fused pipeline
(reassemble → validate → decode → meter → route), the sans-I/O
:class:`~rxalpaca.protocol.Session` (handshake, acks, error codes, reply
deadlines) and ``retry_with_backoff`` (reconnects) into one connection
observable, and keeps the server's subscriptions in step with the book.

Threading — who owns what:

* the **socket thread** (the transport's) runs the pipeline and observers, and the
  control path (:meth:`_on_control`): Session transitions, acks, server errors;
* the **supervisor thread** (:class:`~rxalpaca.supervisor.Supervisor`) runs every
  clock-driven check: reply deadlines (``Session.tick``), the linger flush of
  subscription requests, silence (no market data), the slow-observer warning and
  the summaries of rate-limited log lines;
* **any thread** may call :meth:`pump` (a subscription changed) and :meth:`close`.

Locks: ``_state_lock`` (re-entrant) guards the Session and orders its transitions
with their emission on ``state``; ``_send_lock`` makes taking the next request from
the book, recording its deadline and writing it one step, and the book forgets a lost
session under it too, so a request can never reach a socket of a later session
(order: ``_send_lock`` before ``_state_lock``);
``_flush_lock`` guards the linger's due time; ``_conn_lock`` the connection's
disposable. No lock is held while observers run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import Disposable

from . import models
from ._logging import error_fields
from .codec import Codec, Decoded
from .errors import (
    ConnectionLostError,
    FrameError,
    KeepaliveTimeout,
    RemoteProtocolError,
    ReplyTimeout,
    SilenceTimeout,
    StreamError,
    SubscriptionMismatch,
    UnknownMessage,
)
from .operators import RetryPolicy, pipeline, retry_with_backoff
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
from .streams import ErrorOutlet, Streams
from .supervisor import Supervisor
from .transport import WebSocketTransport

__all__ = ["AlpacaUpstream", "RequestListener", "reconnect_reason"]

logger = logging.getLogger("rxalpaca")
_W = logging.WARNING

#: Server error codes that may end a connection and be retried (§5): each its own reason.
_RETRIED_CODES = frozenset((404, 406, 407, 500))


def reconnect_reason(error: BaseException) -> str:
    """The ``reason`` label of a reconnect: a short, bounded name for why the socket went.

    ``silence`` (no market data for ``silence_timeout``), ``reply_timeout`` (auth reply or
    ack overdue), ``keepalive_timeout`` (a ping unanswered), ``protocol_error`` (a message
    the state does not allow), ``server_error_<code>`` (404, 406, 407, 500; other codes
    ``server_error``), ``closed`` (a close frame or the TCP connection closed),
    ``network_error`` (the socket failed) and ``error`` (anything else).
    """
    if isinstance(error, SilenceTimeout):
        return "silence"
    if isinstance(error, ReplyTimeout):
        return "reply_timeout"
    if isinstance(error, KeepaliveTimeout):
        return "keepalive_timeout"
    if isinstance(error, RemoteProtocolError):
        return "protocol_error"
    if isinstance(error, StreamError):
        code = error.server_code
        return f"server_error_{code}" if code in _RETRIED_CODES else "server_error"
    if isinstance(error, ConnectionLostError):
        return "network_error" if error.__cause__ is not None else "closed"
    return "error"


class RequestListener(Protocol):
    """Told about subscription requests and their answers (tracing; see ``contrib.otel``).

    Called on the thread that sent the request (``request_sent``, any thread) and on the
    socket thread (``request_answered``); a listener that raises is logged and ignored.
    """

    def request_sent(self, action: str, channels: Mapping[str, tuple[str, ...]]) -> None:
        """A subscribe or unsubscribe request was written to the socket."""

    def request_answered(self, error: Exception | None) -> None:
        """The server acked the request in flight (``None``) or refused it."""


class AlpacaUpstream:
    """One Alpaca endpoint's connection, across reconnects, for one streams facade.

    Args:
        streams: the facade (router, book, metrics) this upstream serves.
        outlet: where problems are published.
        transport, codec, session: the socket, the encoding, the state machine.
        supervisor: the thread that runs this upstream's clock-driven checks.
        emit_state: publishes a new :class:`ConnectionState` (called under
            ``_state_lock``, so in order).
        on_fatal: the connection ended for good with this error.
        retry: the back-off policy for reconnects.
        max_message_bytes, linger, silence_timeout, slow_threshold: see ``StreamClient``.
    """

    def __init__(
        self,
        streams: Streams[Any, Any, Any, Any, Any],
        outlet: ErrorOutlet,
        *,
        transport: WebSocketTransport,
        codec: Codec,
        session: Session,
        supervisor: Supervisor,
        emit_state: Callable[[ConnectionState], None],
        on_fatal: Callable[[Exception], None],
        retry: RetryPolicy,
        max_message_bytes: int,
        linger: float,
        silence_timeout: float | None,
        slow_threshold: float,
    ) -> None:
        self.streams = streams
        self.metrics = streams.metrics
        self.outlet = outlet
        self.transport = transport
        self.codec = codec
        self.session = session
        self._supervisor = supervisor
        self._emit_state = emit_state
        self._on_fatal = on_fatal
        self._retry = retry
        self._max_message_bytes = max_message_bytes
        self._linger = linger
        self._silence_timeout = silence_timeout
        self._slow_threshold = slow_threshold
        self._state_lock = threading.RLock()
        self._send_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._flush_due: float | None = None
        self._conn_lock = threading.Lock()
        self._connection: abc.DisposableBase | None = None
        self._shut = False
        # time.time_ns() of the last authentication (socket thread writes, supervisor reads).
        self._authenticated_ns = 0
        # The last time the supervisor saw no live subscription (silence starts after).
        self._unsubscribed_ns = time.time_ns()
        self._slow_window = (self.metrics.observer_time_total_ns, time.perf_counter_ns())
        self._slow_warned = 0.0
        # A hole opened by a lost connection, published as a Gap once the next session
        # authenticates: (last data before, pairs subscribed). Written by the socket
        # threads only, one connection after the other.
        self._hole: tuple[int, frozenset[tuple[str, str]]] | None = None
        #: Called with every message about to be sent (a recorder's); replaced whole
        #: (copy-on-write), so senders read it without a lock.
        self.send_taps: tuple[Callable[[dict[str, Any]], None], ...] = ()
        #: Request listeners; replaced whole (copy-on-write), read without a lock.
        self.listeners: tuple[RequestListener, ...] = ()
        for check in (self._check_flush, self._check_deadlines, self._check_activity):
            supervisor.add(check)

    def log_fields(self, error: BaseException | None = None) -> dict[str, object]:
        """The structured fields of this upstream's log lines (any thread; see ``_logging``).

        Plain reads of values other threads write (the state, the connection count):
        a log line may show them a moment stale.
        """
        return {
            "feed": self.streams.endpoint.feed,
            "endpoint": self.transport.url,
            "conn_id": self.metrics.connects,
            "state": self.session.state.value,
            **error_fields(error),
        }

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> None:
        """Subscribe the connection observable (once); it reconnects until closed."""
        with self._conn_lock:
            if self._connection is not None or self._shut:
                return
            # Assigned before subscribing: the subscription may call back synchronously.
            self._connection = Disposable()
        sub = self._connection_observable().subscribe(
            on_next=lambda _state: None, on_error=self._on_fatal, on_completed=lambda: None
        )
        with self._conn_lock:
            close_now = self._shut
            if not close_now:
                self._connection = sub
        if close_now:
            sub.dispose()

    def close(self) -> None:
        """Close the socket for good and complete the raw-frame observers (any thread)."""
        with self._conn_lock:
            self._shut = True
            conn, self._connection = self._connection, None
        with self._state_lock:
            if not self.session.state.terminal:
                self.session.close()
                self._emit_state(self.session.state)
        if conn is not None:
            conn.dispose()
        self.transport.close(final=True)
        self.streams._book.disconnected()

    def fail(self) -> None:
        """A fatal error ended the connection: the state machine says so."""
        with self._state_lock:
            if not self.session.state.terminal:
                self.session.fail()
                self._emit_state(self.session.state)
        self.streams._book.disconnected()

    def liveness(self) -> dict[str, Any]:
        """The two clocks and the link's health, for ``health()`` (any thread).

        ``last_data_age_s`` counts from the last market data (also under its older
        name ``last_message_age_s``), ``last_frame_age_s`` from the last bytes of any
        kind; ``link_stale`` is true while a ping has gone unanswered for more than
        half of ``ping_timeout`` (``None`` when pings are off).
        """
        last = self.metrics.last_message_ns
        read_age, unanswered = self.transport.link()
        interval, timeout = self.transport.ping_interval, self.transport.ping_timeout
        stale = None
        if interval is not None:
            stale = unanswered is not None and unanswered > (timeout or interval * 2) / 2
        data_age = (time.time_ns() - last) / 1e9 if last else None
        return {
            "last_message_age_s": data_age,
            "last_data_age_s": data_age,
            "last_frame_age_s": read_age,
            "link_stale": stale,
            "ping_unanswered_s": unanswered,
        }

    # ------------------------------------------------------------------ connection

    def _connection_observable(self) -> Observable[ConnectionState]:
        def connect_once(_scheduler: abc.SchedulerBase | None = None) -> Observable[Any]:
            with self._state_lock:
                if self.session.state.terminal:
                    return reactivex.empty()
                self.session.connect(time.monotonic())  # the auth reply is due from now
                self.metrics.connects += 1
                self._emit_state(self.session.state)
            self._supervisor.wake()
            # reassemble → validate → decode → meter → route, fused into one Rx hop.
            return self.transport.frames().pipe(
                pipeline(self.codec, self.metrics, self.streams._router, self._max_message_bytes),
                _map(self._on_control),
            )

        return reactivex.defer(connect_once).pipe(
            _on_error_do(self._on_lost),
            retry_with_backoff(
                self._retry,
                reset_on=lambda s: s is ConnectionState.AUTHENTICATED,
                on_retry=self._on_retry,
            ),
        )

    def _on_control(self, item: Decoded) -> ConnectionState:
        """Socket thread: everything that is not a data record."""
        feed = self.streams.endpoint.feed
        if isinstance(item, FrameError):
            self.outlet.log.log(
                ("frame", item.reason[:60]),
                _W,
                "bad frame from %s: %s",
                feed,
                item,
                extra=error_fields(item),
            )
            self.outlet.publish(item)
            return self.session.state
        if isinstance(item, models.Unknown):
            self.metrics.unknown_messages += 1
            self.outlet.log.log(
                ("unknown", item.type), _W, "unknown message type %r from %s", item.type, feed
            )
            self.outlet.publish(UnknownMessage(item))
            return self.session.state
        if not isinstance(
            item, models.SuccessMessage | models.ErrorMessage | models.SubscriptionMessage
        ):
            return self.session.state  # a record of a channel nobody routes: nothing to do
        self.metrics.control_messages += 1
        with self._state_lock:
            before = self.session.state
            effects = self.session.receive(item)
            after = self.session.state
            if after is not before:
                self._emit_state(after)
        book = self.streams._book
        if after is ConnectionState.AUTHENTICATED and before is not after:
            self._authenticated_ns = time.time_ns()  # silence is measured from here
            self._close_hole(self._authenticated_ns)
            book.connected()
            self._flush()  # replay every live subscription at once
        for effect in effects:
            if isinstance(effect, Send):
                self._send(effect.message)
            elif isinstance(effect, SubscriptionAck):
                self._tell_answered(None)
                check = book.on_ack(effect.ack)
                if not check.ok:
                    err = SubscriptionMismatch(check.missing, check.unexpected)
                    logger.warning("%s", err, extra=self.log_fields(err))
                    self.outlet.publish(err)
                self.pump()
            elif isinstance(effect, SubscriptionFailed):
                self._tell_answered(effect.error)
                self._refused(effect.error)
                self.pump()
            elif isinstance(effect, PublishError):
                said = effect.error
                self.outlet.log.log(
                    ("server", type(said)), _W, "server reported %s", said, extra=error_fields(said)
                )
                self.outlet.publish(said)
            elif isinstance(effect, Reconnect | Fail):
                raise effect.error  # ends this connection; retry_with_backoff decides
        return after

    def _refused(self, error: StreamError) -> None:
        rejection = self.streams._book.on_error(split=error.per_symbol)
        if rejection.split:
            # Some symbols of a combined request may be fine: try each half alone, now.
            logger.info(
                "server refused a combined subscribe (%s); retrying it in halves",
                error,
                extra=self.log_fields(error),
            )
            self._flush()
            return
        logger.warning(
            "subscription refused by the server: %s", error, extra=self.log_fields(error)
        )
        self.outlet.publish(error)
        self.streams._refuse_pairs(rejection.pairs, error)

    def _on_lost(self, error: Exception) -> None:
        """Socket thread (or the subscriber's): this connection ended."""
        book = self.streams._book
        # Under the send lock: a request another thread took from the book while this
        # session was up is written (to the dead socket) before the book forgets the
        # session — never to the next socket, where its ack would be taken for the
        # replay's.
        with self._send_lock:
            pairs = book.acked()
            book.disconnected()
        if self._shut or not self._retry.should_retry(error):
            return
        if pairs and self._hole is None:  # a hole stays open across failed attempts
            self._hole = (self.metrics.last_message_ns, frozenset(pairs))
        with self._state_lock:
            if not self.session.state.terminal:
                self.session.lost()
                self._emit_state(self.session.state)
        self.metrics.count_reconnect(reconnect_reason(error))
        self.outlet.log.log(
            ("lost", type(error)),
            _W,
            "connection lost (%s); reconnecting",
            error,
            extra=error_fields(error),
        )
        self.outlet.publish(error)

    def _close_hole(self, now_ns: int) -> None:
        """A new session is up: publish the hole the lost one left, if any."""
        hole, self._hole = self._hole, None
        if hole is None:
            return
        last, pairs = hole
        self.streams._publish_gap(
            models.Gap(
                feed=self.streams.endpoint.feed,
                channels=tuple(sorted({ch for ch, _ in pairs})),
                symbols=tuple(sorted({sym for _, sym in pairs})),
                last_before_ns=last or None,
                first_after_ns=now_ns,
                reason="reconnect",
            )
        )

    def _send(self, message: dict[str, Any]) -> None:
        """Show ``message`` to the send taps (a recorder), then encode and send it.

        Taps first: the server's reply may be read (and recorded) on the socket thread
        before this thread returns from the write, and a recording must keep the request
        before its reply. (A write that then fails was still attempted.)
        """
        for tap in self.send_taps:
            try:
                tap(message)
            except Exception:
                logger.exception("a send tap raised; the connection goes on")
        self.transport.send(self.codec.encode(message), self.codec.opcode)

    def _on_retry(self, error: BaseException, attempt: int, delay: float) -> None:
        logger.info(
            "reconnect attempt %d in %.3f s after %s",
            attempt,
            delay,
            error,
            extra={**self.log_fields(error), "attempt": attempt, "delay_s": delay},
        )

    # ------------------------------------------------------------------ requests

    def pump(self) -> None:
        """Send the next subscription request soon (any thread).

        Changes linger for ``subscribe_linger`` seconds first, so a burst of
        subscriptions (a loop over 1,000 symbols) leaves as a few messages instead of
        one per server round trip. The supervisor sends it when the linger is over.
        """
        if self._shut:
            return
        with self._flush_lock:
            if self._flush_due is not None:
                return
            self._flush_due = time.monotonic() + self._linger
        self._supervisor.wake()

    def _flush(self) -> None:
        """Send the next subscription request now, if one is due (any thread)."""
        if self._shut:
            return
        with self._send_lock:
            req = self.streams._book.take_request()
            if req is None:
                return
            with self._state_lock:
                self.session.request_sent(time.monotonic(), req.action)  # ack due from now
            try:
                self._send(req.message())
                for listener in self.listeners:
                    try:
                        listener.request_sent(req.action, req.channels)
                    except Exception:
                        logger.exception("a request listener raised", extra=self.log_fields())
            except ConnectionLostError:
                # The socket is going away; the reconnect replays every subscription.
                logger.debug(
                    "subscription request not sent: connection lost", extra=self.log_fields()
                )
        self._supervisor.wake()

    def _tell_answered(self, error: Exception | None) -> None:
        for listener in self.listeners:
            try:
                listener.request_answered(error)
            except Exception:
                logger.exception("a request listener raised", extra=self.log_fields())

    # ------------------------------------------------------------------ supervisor checks

    def _check_flush(self, now: float) -> float | None:
        with self._flush_lock:
            due = self._flush_due
            if due is None or now < due:
                return due
            self._flush_due = None
        self._flush()
        return None

    def _check_deadlines(self, now: float) -> float | None:
        """Drop a socket whose auth reply or subscription ack is overdue (§2.4)."""
        with self._state_lock:
            effects = self.session.tick(now)
            due = self.session.next_deadline()
        for effect in effects:
            if isinstance(effect, Reconnect) and isinstance(effect.error, ConnectionLostError):
                self.metrics.reply_timeouts += 1
                logger.warning(
                    "%s; reconnecting", effect.error, extra=self.log_fields(effect.error)
                )
                self.transport.abort(effect.error)
        return due

    def _check_activity(self, now: float) -> float | None:
        """Summaries of repeated log lines, the slow-observer warning, silence."""
        self.outlet.log.flush()  # summaries owed by errors that stopped repeating
        m = self.metrics
        period = self._supervisor.period
        last_total, last_at = self._slow_window
        at = time.perf_counter_ns()
        if at - last_at < period * 1e9 * 0.5:
            return None  # woken early for something else: keep the window whole
        total, started = m.observer_time_total_ns, m.dispatch_started_ns
        busy = (total - last_total) / max(1, at - last_at)
        if started and at - started > period * 1e9 * self._slow_threshold:
            busy = 1.0  # one batch still running: a huge frame must not hide it
        self._slow_window = (total, at)
        if self._slow_threshold and busy > self._slow_threshold:
            m.slow_consumer_warnings += 1
            if now - self._slow_warned > 5.0:
                self._slow_warned = now
                logger.warning(
                    "observers use %.0f%% of the socket thread; the server disconnects "
                    "clients that fall behind (407). Move slow work off it with "
                    "ops.conflate(...) or ops.observe_on(...)",
                    min(busy, 1.0) * 100,
                    extra=self.log_fields(),
                )
        if self._silence_timeout:
            self._check_silence(self._silence_timeout)
        return None

    def _check_silence(self, timeout: float) -> None:
        now_ns = time.time_ns()
        if not self.streams._book.live:
            self._unsubscribed_ns = now_ns
            return
        # Only market data refreshes this clock: a mute server still acks (§6).
        quiet_since = max(
            self.metrics.last_message_ns, self._authenticated_ns, self._unsubscribed_ns
        )
        if (
            self.session.state is ConnectionState.AUTHENTICATED
            and now_ns - quiet_since > timeout * 1e9
        ):
            logger.warning(
                "no market data for %.1f s while subscribed; reconnecting",
                (now_ns - quiet_since) / 1e9,
                extra=self.log_fields(),
            )
            self._authenticated_ns = now_ns  # act once; the reconnect resets it anyway
            self.transport.abort(SilenceTimeout("silent connection: no market data"))


# reactivex's ``map`` and ``do_action(on_error=)``, with their semantics, written out here so
# that a client does not import the ``reactivex.operators`` facade (~0.5 MB; any of its
# submodules loads the whole facade first). docs/benchmarks.md, "Memory".


def _map(mapper: Callable[[Any], Any]) -> Callable[[Observable[Any]], Observable[Any]]:
    """``reactivex.operators.map``: an exception from ``mapper`` goes to ``on_error``."""

    def operator(source: Observable[Any]) -> Observable[Any]:
        def subscribe(
            observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            def on_next(value: Any) -> None:
                try:
                    result = mapper(value)
                except Exception as exc:
                    observer.on_error(exc)
                else:
                    observer.on_next(result)

            return source.subscribe(
                on_next, observer.on_error, observer.on_completed, scheduler=scheduler
            )

        return Observable(subscribe)

    return operator


def _on_error_do(
    action: Callable[[Exception], None],
) -> Callable[[Observable[Any]], Observable[Any]]:
    """``reactivex.operators.do_action(on_error=action)``: ``action`` runs before the error
    goes on (an exception from it is sent first, as reactivex does)."""

    def operator(source: Observable[Any]) -> Observable[Any]:
        def subscribe(
            observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            def on_error(error: Exception) -> None:
                try:
                    action(error)
                except Exception as exc:
                    observer.on_error(exc)
                observer.on_error(error)

            return source.subscribe(
                observer.on_next, on_error, observer.on_completed, scheduler=scheduler
            )

        return Observable(subscribe)

    return operator
