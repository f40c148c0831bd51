"""``StreamClient``: the streams facade over one Alpaca market-data socket.

Example (against the embedded server, no API keys needed)::

    from rxalpaca import StreamClient, ops
    from rxalpaca.testing import AlpacaStreamServer, DEFAULT_KEY, DEFAULT_SECRET

    with AlpacaStreamServer() as server, StreamClient(
        feed="iex", url=server.base_url, key=DEFAULT_KEY, secret=DEFAULT_SECRET
    ) as client:
        client.quotes("AAPL").pipe(ops.throttle(0.5)).subscribe(print)

The client is a facade over three parts, each with its own module: the streams API
and ref-counted demand (:mod:`rxalpaca.streams`), the Alpaca socket it drives
(:mod:`rxalpaca.upstream`: transport, pipeline, Session, reconnects) and the one
thread for everything on a clock (:mod:`rxalpaca.supervisor`). The lifecycle,
``state``, ``errors`` and ``close()`` are the facade's (shared with every upstream);
what it adds is the options, ``frames`` and ``health()``. ``docs/architecture.md``
draws every thread and lock.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Literal, Never, Unpack, overload

from reactivex import Observable

from . import models as m
from ._logging import RateLimitedLog
from .codec import Codec
from .errors import ClientClosedError, FrameError, SubscriptionMismatch, UnknownMessage
from .feeds import CryptoFeed, OptionFeed, StockFeed
from .frames import Frame
from .metrics import Metrics
from .operators import RetryPolicy
from .options import ClientOptions, Settings
from .protocol import ConnectionState, Session
from .streams import (
    BarT,
    DailyBarT,
    ErrorOutlet,
    Lifecycle,
    QuoteT,
    Streams,
    TradeT,
    UpdatedBarT,
)
from .supervisor import Supervisor
from .transport import WebSocketTransport
from .upstream import AlpacaUpstream, RequestListener

if TYPE_CHECKING:  # imported by record(): a client that never records never loads it
    from .recording import Recorder

__all__ = ["ClientOptions", "Lifecycle", "StreamClient", "SubscriptionMismatch", "UnknownMessage"]

logger = logging.getLogger("rxalpaca")

_DEFAULT_RETRY = RetryPolicy(initial_delay=0.05, max_delay=10.0)

# The open clients of this process by (key id, url): Alpaca allows one connection per
# endpoint and key, so a second one would loop on 406 (see ``replace_previous``).
# Guarded by _OPEN_LOCK; weak, so a forgotten client does not live on because of it.
_OPEN: dict[tuple[str, str], weakref.ref[StreamClient[Any, Any, Any, Any, Any]]] = {}
_OPEN_LOCK = threading.Lock()


class StreamClient(Streams[TradeT, QuoteT, BarT, DailyBarT, UpdatedBarT]):
    """A connection to one Alpaca market-data endpoint, as typed per-symbol Observables.

    The socket opens on the first subscription (or :meth:`connect`), authenticates,
    and stays up until :meth:`close`, reconnecting with back-off after transient
    failures and restoring every live subscription.

    Args:
        feed: ``"iex"``, ``"sip"``, ``"delayed_sip"``, ``"boats"``, ``"overnight"``,
            ``"test"``, ``"crypto"`` (``"crypto/us"``, ``"crypto/us-1"``,
            ``"crypto/eu-1"``), ``"indicative"`` (alias ``"options"``), ``"opra"`` or
            ``"news"``; any case.
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
            reconnecting (which replays every subscription). ``None`` waits forever.
        strict_timestamps: prove every timestamp well formed while decoding, so a
            malformed one is a ``FrameError`` on ``errors`` rather than a ``ValueError``
            when read (see :class:`~rxalpaca.codec.Codec`; about +50 % JSON and
            +40 % MessagePack decode time).
    """

    # The feed's family picks the record types, so an editor knows that trades() on
    # "iex" gives Trade and on "crypto" CryptoTrade; any other string gives Any.
    @overload
    def __init__(
        self: StreamClient[m.Trade, m.Quote, m.Bar, m.DailyBar, m.UpdatedBar],
        feed: StockFeed = "iex",
        **options: Unpack[ClientOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: StreamClient[
            m.CryptoTrade, m.CryptoQuote, m.CryptoBar, m.CryptoDailyBar, m.CryptoUpdatedBar
        ],
        feed: CryptoFeed,
        **options: Unpack[ClientOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: StreamClient[m.OptionTrade, m.OptionQuote, Never, Never, Never],
        feed: OptionFeed,
        **options: Unpack[ClientOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: StreamClient[Any, Any, Any, Any, Any], feed: str, **options: Unpack[ClientOptions]
    ) -> None: ...
    def __init__(self, feed: str = "iex", **options: Unpack[ClientOptions]) -> None:
        cfg = Settings.build(feed, options)
        o = cfg.options
        # Repeated errors (a raising observer, a bad frame per message) log once in
        # full, then a count every interval; counters and `errors` still see each one.
        outlet = ErrorOutlet(Metrics(), RateLimitedLog(logger))
        super().__init__(cfg.endpoint, outlet.metrics, outlet)
        self.encoding: Literal["json", "msgpack"] = o["encoding"]
        self.url = cfg.url
        self._identity = (cfg.key, cfg.url)  # the key id is not a secret; the secret stays out
        self._replace_previous: bool = o["replace_previous"]
        self._supervisor = Supervisor(o["name"])
        self._upstream = AlpacaUpstream(
            self,
            outlet,
            transport=WebSocketTransport(
                cfg.url,
                headers=cfg.headers,
                sslopt={"ca_certs": o["ca_file"]} if o["ca_file"] else None,
                ping_interval=o["ping_interval"],
                ping_timeout=o["ping_timeout"],
                max_frame_bytes=o["max_message_bytes"],
                name=o["name"],
            ),
            codec=Codec(
                cfg.endpoint.family, o["encoding"], strict_timestamps=o["strict_timestamps"]
            ),
            session=Session(
                cfg.key, cfg.secret, header_auth=o["header_auth"], reply_timeout=o["reply_timeout"]
            ),
            supervisor=self._supervisor,
            emit_state=self._emit_state,
            on_fatal=self._fail,
            retry=o["retry"] if o["retry"] is not None else _DEFAULT_RETRY,
            max_message_bytes=o["max_message_bytes"],
            linger=o["subscribe_linger"],
            silence_timeout=o["silence_timeout"],
            slow_threshold=o["slow_observer_threshold"],
        )
        # Every rate-limited line (handler errors, bad frames, lost connections) carries
        # the feed, endpoint, connection number and state as structured fields.
        outlet.log.context = self._upstream.log_fields

    def __repr__(self) -> str:
        return (
            f"StreamClient(feed={self.endpoint.feed!r}, url={self.url!r}, "
            f"encoding={self.encoding!r}, state={self.current_state.value!r})"
        )

    # ------------------------------------------------------------------ public

    @property
    def current_state(self) -> ConnectionState:
        """The state right now."""
        return self._upstream.session.state

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
        monitor = self._upstream.transport.monitor()
        return self._outlet.guarded(monitor, lambda: self._life is Lifecycle.CLOSED)

    def _liveness(self) -> dict[str, Any]:
        """The socket's clocks for ``health()``: ``last_data_age_s`` (market data only;
        ``last_message_age_s`` is its old name), ``last_frame_age_s`` (any bytes: data,
        acks, pongs) and ``link_stale`` (a ping unanswered for more than half the
        ``ping_timeout``; ``None`` when pings are off)."""
        return self._upstream.liveness()

    def add_request_listener(self, listener: RequestListener) -> None:
        """Tell ``listener`` about each subscription request and its answer (for tracing:
        ``rxalpaca.contrib.otel`` makes them spans). Not called per message."""
        up = self._upstream
        up.listeners = (*up.listeners, listener)

    def record(self, path: str | os.PathLike[str], **options: Any) -> Recorder:
        """Record this session to ``path`` from now on: every raw frame received (with
        its receive time), every frame sent (the auth secret redacted), state changes
        and gaps. Replay it with :func:`rxalpaca.replay`.

        Writing runs on the recorder's own thread behind a bounded queue: the socket
        thread only appends. Stops at ``recorder.close()`` or when the client closes.
        ``options`` go to :class:`~rxalpaca.recording.Recorder` (``max_bytes``,
        ``max_seconds`` rotation, ``queue_size``, ``on_overflow`` …). Needs
        ``pip install 'rxalpaca[record]'``.
        """
        if self._life in (Lifecycle.CLOSED, Lifecycle.FAILED):
            raise ClientClosedError(f"the client is {self._life.value}: nothing more to record")
        from .recording import Recorder, RecordingHeader  # noqa: PLC0415 - see the imports

        header = RecordingHeader(
            feed=self.endpoint.feed,
            encoding=self.encoding,
            subscriptions=self._acked_lists(),
            created_ns=time.time_ns(),
        )
        recorder = Recorder(path, header, header_update=self._acked_lists, **options)
        codec = self._upstream.codec

        def sent(message: dict[str, Any]) -> None:
            if message.get("action") == "auth":  # never write a secret
                message = {"action": "auth", "key": "***", "secret": "***"}
            recorder.sent(codec.encode(message), codec.opcode)

        upstream = self._upstream
        upstream.send_taps = (*upstream.send_taps, sent)

        def untap() -> None:
            upstream.send_taps = tuple(t for t in upstream.send_taps if t is not sent)

        recorder.on_close(untap)
        for sub in (
            self.state.subscribe(lambda s: recorder.state(s.value)),
            self.gaps.subscribe(recorder.gap),
            # The transport's monitor itself: recorder.frame only appends, it never raises.
            upstream.transport.monitor().subscribe(recorder.frame, on_completed=recorder.close),
        ):
            recorder.on_close(sub.dispose)
        return recorder

    def _acked_lists(self) -> dict[str, list[str]]:
        return {ch: sorted(syms) for ch, syms in self.subscriptions().items()}

    # ------------------------------------------------------------------ the streams' hooks

    def _start(self) -> None:
        self._claim_slot()
        self._supervisor.start()
        self._upstream.open()

    def _demand_changed(self) -> None:
        self._upstream.pump()

    def _stop(self) -> None:
        self._release_slot()
        self._upstream.close()
        self._supervisor.stop()

    def _failed(self) -> None:
        self._release_slot()
        self._upstream.fail()

    def _claim_slot(self) -> None:
        """Take this process's slot for (key, url), closing its holder (``replace_previous``)."""
        with _OPEN_LOCK:
            ref = _OPEN.get(self._identity)
            previous = ref() if ref is not None else None
            if self._replace_previous or previous is None:
                _OPEN[self._identity] = weakref.ref(self)
        if previous is None or previous is self or not self._replace_previous:
            return
        if previous.lifecycle is not Lifecycle.OPENED:
            return
        logger.warning(
            "closing the previous %s client of this process with the same key and url "
            "(%s): Alpaca allows one connection per key and endpoint, so it would keep "
            "this one out with 406 (a notebook cell run twice?); pass "
            "replace_previous=False to keep both",
            self.endpoint.feed,
            self.url,
        )
        previous.close()

    def _release_slot(self) -> None:
        with _OPEN_LOCK:
            ref = _OPEN.get(self._identity)
            if ref is not None and ref() in (self, None):
                del _OPEN[self._identity]

    def _log_fields(self, error: BaseException | None = None) -> dict[str, object]:
        return dict(self._upstream.log_fields(error))

    def _emit_state(self, state: ConnectionState) -> None:
        # Called with the upstream's state lock held, so transitions arrive in order.
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("state %s", state.value, extra=self._upstream.log_fields())
        super()._emit_state(state)
