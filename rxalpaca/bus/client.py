"""``BusClient``: the streams API of ``StreamClient``, fed by a gateway over NATS.

::

    from rxalpaca.bus import BusClient

    with BusClient("nats://127.0.0.1:4222", feed="iex") as client:
        client.quotes("AAPL").pipe(ops.throttle(0.5)).subscribe(print)
        client.wait()

The same facade (:class:`~rxalpaca.streams.Streams`: typed streams, ref-counted
demand, ``state``, ``errors``, ``gaps``, ``metrics``, ``close()``) over another
upstream: a :class:`~rxalpaca.bus.gateway.Gateway` that holds the one Alpaca
connection. Switching from ``StreamClient`` is one constructor.

* **Data**: one NATS subscription per (channel, symbol) observed (a channel's
  ``"*"`` replaces its single symbols, so nothing arrives twice); each message is a
  frame in Alpaca's encoding and runs through the same fused pipeline as the socket
  client (reassemble → validate → decode → meter → route), so records are identical.
* **Demand**: the book's wanted pairs are declared to the gateway as a lease
  (request/reply) at every change and every third of ``lease``; ``close()`` declares
  an empty one, so pairs are released at once, and a crash releases them when the
  lease runs out.
* **State**: ``AUTHENTICATED`` while NATS is connected *and* the gateway reports its
  upstream authenticated; a lost NATS connection, a silent gateway (three heartbeats)
  or an upstream reconnecting shows as ``RECONNECTING``. NATS not reachable at the
  start (containers start in any order) is ``RECONNECTING`` too, with a
  ``BusDisconnected`` on ``errors`` per failed round of the server list; it is retried
  with backoff (at most 2 s apart) until it answers, then all goes on by itself. Each hole is one
  :class:`~rxalpaca.models.Gap`: the gateway's own for an upstream reconnect
  (``reason="reconnect"``), ours for a lost bus (``"bus"``) or gateway
  (``"gateway"``), and for messages NATS dropped because we were too slow
  (``"slow consumer"``).
* **Catch-up** (``durable="name"``): data comes from the gateway's JetStream stream
  through a durable consumer instead, acknowledged after delivery, so a process
  restarted under the same name resumes where it stopped (no loss, no duplicate
  within the stream's retention), then carries on live.

Threads: every NATS callback, and so every observer, runs on the bus thread
(``<name>-bus``): it owns the NATS connection, the subscriptions, the state and the
open hole. ``subscribe``/``dispose`` (any thread) only touch the router and book
(their own locks) and wake the bus thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal, Never, TypedDict, Unpack, overload

from reactivex.subject import Subject

from .. import models as m
from .._logging import RateLimitedLog
from ..codec import Codec
from ..errors import (
    BusDisconnected,
    BusMessageError,
    ConfigurationError,
    FrameError,
    UnknownMessage,
    error_for_code,
)
from ..feeds import CryptoFeed, OptionFeed, StockFeed, endpoint
from ..frames import DEFAULT_MAX_MESSAGE_BYTES, Frame, Opcode
from ..metrics import Metrics
from ..operators import pipeline
from ..protocol import ConnectionState
from ..streams import BarT, DailyBarT, ErrorOutlet, QuoteT, Streams, TradeT, UpdatedBarT
from ._loop import (
    LoopThread,
    NatsCredentialsRefused,
    NatsOptions,
    NatsUnreachable,
    connect_backoff,
    connect_once,
    is_auth_error,
    nats_connect_kwargs,
    redact,
    require_nats,
    server_list,
)
from .subjects import DEFAULT_PREFIX, Subjects
from .wire import Demand, DemandReply, GatewayState, Refusal, decode_control, encode_control

__all__ = ["BusClient", "BusOptions"]

logger = logging.getLogger("rxalpaca.bus")
_W = logging.WARNING
S = ConnectionState

_Pair = tuple[str, str]


class BusOptions(TypedDict, total=False):
    """The keyword options of :class:`BusClient` (documented there)."""

    prefix: str
    lease: float
    durable: str | None
    encoding: Literal["json", "msgpack"]
    client_id: str | None
    nats_options: NatsOptions | None
    name: str
    pending_limit: int


class BusClient(Streams[TradeT, QuoteT, BarT, DailyBarT, UpdatedBarT]):
    """One feed's typed streams, served by a :class:`~rxalpaca.bus.gateway.Gateway` over NATS.

    Args:
        nats: NATS server URL(s) (a list: a cluster, failed over by nats-py).
        feed: the feed the gateway serves (``"iex"``, ``"crypto"``, …; as StreamClient).
        prefix: the subject prefix the gateway publishes under.
        lease: seconds the gateway keeps this client's demand without a refresh;
            after a crash its symbols are released within this time.
        durable: a durable name for catch-up from the gateway's JetStream stream
            (the gateway must run with ``retention``); ``None``: live only.
        encoding: the gateway's encoding (it decodes either; this one is the fast path).
        client_id: this client's name in leases (default: host pid and a random tag;
            the durable name when given).
        nats_options: credentials and TLS for NATS (:class:`~rxalpaca.bus.NatsOptions`).
        name: names the bus thread.
        pending_limit: messages NATS buffers for this client before dropping (a
            ``"slow consumer"`` gap says so).
    """

    @overload
    def __init__(
        self: BusClient[m.Trade, m.Quote, m.Bar, m.DailyBar, m.UpdatedBar],
        nats: str | list[str] = ...,
        feed: StockFeed = "iex",
        **options: Unpack[BusOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: BusClient[
            m.CryptoTrade, m.CryptoQuote, m.CryptoBar, m.CryptoDailyBar, m.CryptoUpdatedBar
        ],
        nats: str | list[str],
        feed: CryptoFeed,
        **options: Unpack[BusOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: BusClient[m.OptionTrade, m.OptionQuote, Never, Never, Never],
        nats: str | list[str],
        feed: OptionFeed,
        **options: Unpack[BusOptions],
    ) -> None: ...
    @overload
    def __init__(
        self: BusClient[Any, Any, Any, Any, Any],
        nats: str | list[str],
        feed: str,
        **options: Unpack[BusOptions],
    ) -> None: ...
    def __init__(
        self,
        nats: str | list[str] = "nats://127.0.0.1:4222",
        feed: str = "iex",
        **options: Unpack[BusOptions],
    ) -> None:
        unknown = sorted(set(options) - set(BusOptions.__annotations__))
        if unknown:
            raise ConfigurationError(
                f"unknown BusClient option {unknown[0]!r}; known: "
                f"{', '.join(sorted(BusOptions.__annotations__))}"
            )
        prefix = options.get("prefix", DEFAULT_PREFIX)
        lease = options.get("lease", 10.0)
        durable = options.get("durable")
        encoding = options.get("encoding", "msgpack")
        client_id = options.get("client_id")
        nats_options = options.get("nats_options")
        name = options.get("name", "rxalpaca")
        pending_limit = options.get("pending_limit", 65536)
        self._nats_mod = require_nats()
        ep = endpoint(feed)
        if not lease > 0.3:
            raise ConfigurationError(f"lease must be more than 0.3 seconds, not {lease!r}")
        if durable is not None and (not durable or any(c in durable for c in " .*>")):
            raise ConfigurationError(
                f"durable name {durable!r} must be non-empty without spaces, '.', '*' or '>'"
            )
        outlet = ErrorOutlet(Metrics(), RateLimitedLog(logger))
        super().__init__(ep, outlet.metrics, outlet)
        self.subjects = Subjects(ep.feed, prefix)
        self.lease = lease
        self.durable = durable
        self.client_id = client_id or durable or f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.encoding = encoding
        self._name = name
        self._pending_limit = pending_limit
        self._connect_kwargs = nats_connect_kwargs(nats, nats_options)
        self._connect_kwargs.setdefault("name", f"rxalpaca-bus-{self.client_id}")
        self._where = server_list(self._connect_kwargs["servers"])  # no credentials
        self._codec = Codec(ep.family, encoding)
        # Bus thread only, from here on.
        self._lt: LoopThread | None = None
        self._nc: Any = None
        self._connecting: Any = None  # the client connecting, until it is self._nc
        self._subs: dict[str, Any] = {}  # filter subject -> nats subscription
        self._tasks: list[asyncio.Task[Any]] = []
        self._sync_due = False
        self._current = S.IDLE
        self._ever_up = False
        self._nats_up = False
        self._nats_error: str | None = None  # why the last connect failed; None once up
        self._gateway: GatewayState | None = None
        self._gateway_seen = 0.0  # time.monotonic() of its last state message
        self._gateway_id: str | None = None
        self._hole: tuple[str, int, frozenset[_Pair]] | None = None  # reason, last data, pairs
        self._declared: frozenset[_Pair] | None = None
        self._jsub: Any = None  # the durable pull subscription
        self._to_ack: Any = None  # the last delivered, not yet acknowledged, catch-up message
        self._jfilters: frozenset[str] = frozenset()
        self._slow: dict[Any, _SlowHole] = {}  # subscription id -> its open hole
        self._frames: Subject[Frame | FrameError] = Subject()
        self._frames.pipe(
            pipeline(self._codec, self.metrics, self._router, DEFAULT_MAX_MESSAGE_BYTES),
        ).subscribe(self._on_control)

    def __repr__(self) -> str:
        return (
            f"BusClient(feed={self.endpoint.feed!r}, root={self.subjects.root!r}, "
            f"client_id={self.client_id!r}, state={self._current.value!r})"
        )

    # ------------------------------------------------------------------ public

    @property
    def current_state(self) -> ConnectionState:
        """The state right now (NATS and the gateway's upstream together)."""
        return self._current

    def _liveness(self) -> dict[str, Any]:
        """The bus's part of ``health()``: NATS, the gateway, the data clock."""
        last = self.metrics.last_message_ns
        gw = self._gateway
        return {
            "nats_connected": self._nats_up,
            "nats_error": self._nats_error,
            "gateway": gw.gateway if gw else None,
            "gateway_state": gw.state if gw else None,
            "gateway_age_s": time.monotonic() - self._gateway_seen if gw else None,
            "last_data_age_s": (time.time_ns() - last) / 1e9 if last else None,
        }

    # ------------------------------------------------------------------ the facade's hooks

    def _start(self) -> None:
        self._lt = lt = LoopThread(self._name)
        lt.soon(lambda: self._tasks.append(lt.loop.create_task(self._run())))

    def _demand_changed(self) -> None:
        lt = self._lt
        if lt is not None:
            lt.soon(self._schedule_sync)

    def _stop(self) -> None:
        self._halt(S.CLOSED)

    def _failed(self) -> None:
        self._halt(S.FAILED)

    def _halt(self, final: ConnectionState) -> None:
        """Leave NATS and stop the bus thread, then say so on ``state`` (last word)."""
        lt = self._lt
        if lt is not None and not lt.on_loop:
            with contextlib.suppress(Exception):
                lt.call(self._shutdown(), timeout=5)
            lt.stop()
        elif lt is not None:  # failing on the bus thread itself: finish there, later
            lt.loop.create_task(self._shutdown()).add_done_callback(lambda _t: lt.stop())
        if self._current is not final:
            self._current = final
            self._emit_state(final)

    # ------------------------------------------------------------------ connection (bus thread)

    async def _run(self) -> None:
        attempt = 0
        while self._nc is None:
            self._set_state()
            # Made here rather than by nats.connect() so a close() meanwhile can close it.
            self._connecting = nc = self._nats_mod.aio.client.Client()
            try:
                # One try per server (nats-py's own connect() would retry forever, silently).
                await connect_once(
                    nc,
                    self._connect_kwargs,
                    self._on_nats_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                )
                self._nc = nc
            except NatsCredentialsRefused as exc:
                with contextlib.suppress(Exception):
                    await nc.close()
                text = f"NATS at {self._where} refused the credentials ({exc})"
                self._fail(BusDisconnected(text))
                return
            except Exception as exc:  # NatsUnreachable; or connect() itself raised
                with contextlib.suppress(Exception):
                    await nc.close()  # its socket, if it got one
                wait = connect_backoff(attempt)
                attempt += 1
                self._nats_error = redact(str(exc) or type(exc).__name__, self._connect_kwargs)
                text = f"cannot reach NATS at {self._where} ({self._nats_error})"
                self._outlet.log.log(("connect",), _W, "%s; retrying", text)
                cause = exc.__cause__ if isinstance(exc, NatsUnreachable) else None
                cause = cause or exc
                self._outlet.publish(_lost(f"{text}; retrying in {wait:.1f} s", cause))
                self._set_state()  # RECONNECTING: waiting for NATS
                await asyncio.sleep(wait)
        self._nats_up = True
        self._nats_error = None
        if attempt:
            self._outlet.log.log(("reached",), logging.INFO, "reached NATS at %s", self._where)
        nc, subjects = self._nc, self.subjects
        await nc.subscribe(subjects.state, cb=self._on_gateway_state)
        await nc.subscribe(subjects.gap, cb=self._on_gateway_gap)
        await nc.subscribe(subjects.refused(self.client_id), cb=self._on_refusal)
        loop = asyncio.get_running_loop()
        self._tasks += [
            loop.create_task(self._every(self.lease / 3, self._heartbeat)),
            loop.create_task(self._every(0.25, self._watch_gateway)),
        ]
        self._set_state()
        await self._sync()

    async def _shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        # Connected, connecting or reconnecting: it is closed either way (a client left
        # reconnecting would keep its sockets and tasks).
        nc = self._nc or self._connecting
        if nc is None:
            return
        if nc.is_connected:
            await self._goodbye(nc)
        with contextlib.suppress(Exception):
            await nc.close()

    async def _goodbye(self, nc: Any) -> None:
        if self.durable is None:
            with contextlib.suppress(Exception):
                # An empty lease: the gateway releases our pairs now, not at expiry. A
                # durable client leaves its lease to run out instead, so the stream keeps
                # capturing its symbols while it restarts.
                await nc.publish(
                    self.subjects.demand,
                    encode_control(Demand(client=self.client_id, lease_s=self.lease, pairs=[])),
                )
        if self._to_ack is not None:
            with contextlib.suppress(Exception):
                await self._to_ack.ack_sync(timeout=2)  # delivered: never again after restart
        if self._jsub is not None:
            with contextlib.suppress(Exception):
                await self._jsub.unsubscribe()
        with contextlib.suppress(Exception):
            await nc.flush(timeout=2)

    async def _on_disconnected(self) -> None:
        self._nats_up = False
        if self._life.value in ("closed", "failed") or self._nc is None:
            return  # closing, or a client that never connected being closed (_run)
        self._outlet.publish(BusDisconnected("lost the NATS connection; reconnecting"))
        self._set_state(reason="bus")

    async def _on_reconnected(self) -> None:
        self._nats_up = True
        self.metrics.count_reconnect("bus_reconnected")
        self._declared = None  # declare again at once: the gateway may have missed ours
        self._set_state()
        await self._declare()

    async def _on_nats_error(self, exc: Exception) -> None:
        # Connected (connect_once handles the errors before): refused credentials at a
        # reconnect, a slow consumer, anything else nats-py reports.
        if is_auth_error(exc):
            # nats-py would retry refused credentials forever: no retry can fix them.
            self._fail(BusDisconnected(f"NATS refused the credentials ({type(exc).__name__})"))
            return
        if type(exc).__name__ == "SlowConsumerError":
            # nats-py dropped a message of a subscription whose buffer was full: a hole
            # in that subscription's data, after the messages still buffered. Said once
            # on errors when it opens; its Gap goes out once those buffered messages
            # are delivered (_deliver): right after the last record before the hole.
            sub = getattr(exc, "sub", None)
            sid = getattr(exc, "sid", None)
            queued = sub.pending_msgs if sub is not None else 0
            hole = self._slow.get(sid)
            if hole is not None:
                hole.queued = queued  # more dropped: the hole ends later
                return
            hole = self._slow[sid] = _SlowHole(queued, str(getattr(sub, "subject", "")))
            self._outlet.log.log(
                ("slow",), _W, "messages dropped: this consumer is too slow (%s)", hole.filter
            )
            self._outlet.publish(
                BusMessageError(str(getattr(exc, "subject", "")), "slow consumer: dropping")
            )
            if queued <= 0:
                self._slow_hole_ends(sid, hole)
            return
        self._outlet.log.log(("nats", type(exc)), _W, "NATS: %r", exc)

    # ------------------------------------------------------------------ gateway (bus thread)

    async def _on_gateway_state(self, msg: Any) -> None:
        try:
            state = decode_control(msg.data, GatewayState)
        except ValueError as exc:
            self._bad(msg, exc)
            return
        new_gateway = state.gateway != self._gateway_id
        # Another gateway than the one we had: whatever the old one held is gone.
        replaced = new_gateway and self._gateway_id is not None
        self._gateway, self._gateway_id = state, state.gateway
        self._gateway_seen = time.monotonic()
        if state.state == S.FAILED.value and state.error:
            self._outlet.log.log(
                ("gateway-failed",), _W, "the gateway's upstream failed: %s", state.error
            )
        self._set_state(reason="gateway" if replaced else "reconnect")
        if new_gateway:  # a gateway (re)started: it knows nothing of us yet
            self._declared = None
            await self._declare()

    async def _on_gateway_gap(self, msg: Any) -> None:
        try:
            gap = decode_control(msg.data, m.Gap)
        except ValueError as exc:
            self._bad(msg, exc)
            return
        pairs = frozenset(
            (ch, sym)
            for ch, sym in self._book.wanted()
            if ch in gap.channels and sym in gap.symbols
        )
        if pairs:
            self._publish_gap_for(gap.reason, gap.last_before_ns, gap.first_after_ns, pairs)

    async def _on_refusal(self, msg: Any) -> None:
        try:
            refusal = decode_control(msg.data, Refusal)
        except ValueError as exc:
            self._bad(msg, exc)
            return
        self._apply_refusals([refusal])

    def _apply_refusals(self, refusals: list[Refusal]) -> None:
        for r in refusals:
            pairs = [(r.channel, s) for s in r.symbols]
            held = self._book.refuse(pairs)
            if not held:
                continue  # already refused, or nobody holds it any more
            error = error_for_code(r.code, r.message)
            self._outlet.publish(error)
            self._refuse_pairs(sorted(held), error)
        self.metrics.live_subscriptions = self._book.live

    def _watch_gateway(self) -> None:
        self._set_state()

    def _gateway_alive(self) -> bool:
        gw = self._gateway
        if gw is None:
            return False
        return time.monotonic() - self._gateway_seen < 3 * gw.heartbeat_s + 0.5

    # ------------------------------------------------------------------ state (bus thread)

    def _set_state(self, reason: str = "reconnect") -> None:
        """Work out the state from NATS and the gateway; publish a change (and gaps)."""
        if self._life.value in ("closed", "failed"):
            return
        if self._nc is None or not self._nats_up:
            # RECONNECTING too while NATS has not answered yet (_nats_error says why):
            # as StreamClient's after a failed connect, backing off before the next.
            retrying = self._ever_up or self._nats_error is not None
            new, why = (S.RECONNECTING if retrying else S.CONNECTING), "bus"
        elif not self._gateway_alive():
            new, why = (S.RECONNECTING if self._ever_up else S.CONNECTING), "gateway"
        else:
            assert self._gateway is not None
            upstream = self._gateway.state
            if upstream == S.AUTHENTICATED.value:
                new, why = S.AUTHENTICATED, reason
            else:
                # Its upstream is not up. A reconnect of the same gateway reports its own
                # gap; a replaced gateway (restarted, or another one) does not: ours.
                why = "gateway" if reason == "gateway" else "reconnect"
                new = S.RECONNECTING if self._ever_up else S.CONNECTING
        old = self._current
        if new is old:
            return
        if old is S.AUTHENTICATED and self._hole is None:
            # A hole opens. An upstream reconnect's gap comes from the gateway itself,
            # with its exact bounds; a lost bus or gateway is ours to report.
            if why != "reconnect":
                pairs = frozenset(self._book.wanted())
                self._hole = (why, self.metrics.last_message_ns, pairs)
            if why == "gateway":
                self._outlet.publish(BusDisconnected("the gateway stopped answering"))
        if new is S.AUTHENTICATED:
            self._ever_up = True
            hole, self._hole = self._hole, None
            if hole is not None:
                self._publish_gap_for(hole[0], hole[1], time.time_ns(), hole[2])
        self._current = new
        self._emit_state(new)

    def _publish_gap_for(
        self, reason: str, last_ns: int | None, first_ns: int | None, pairs: frozenset[_Pair]
    ) -> None:
        if not pairs:
            return
        self._publish_gap(
            m.Gap(
                feed=self.endpoint.feed,
                channels=tuple(sorted({ch for ch, _ in pairs})),
                symbols=tuple(sorted({s for _, s in pairs})),
                last_before_ns=last_ns or None,
                first_after_ns=first_ns,
                reason=reason,
            )
        )

    # ------------------------------------------------------------------ demand (bus thread)

    def _schedule_sync(self) -> None:
        if self._sync_due or self._lt is None:
            return
        self._sync_due = True
        task = self._lt.loop.create_task(self._sync())
        self._tasks.append(task)
        task.add_done_callback(self._tasks.remove)

    async def _sync(self) -> None:
        """Subscribe NATS to what observers want, then declare it to the gateway."""
        self._sync_due = False
        nc = self._nc
        if nc is None or self._life.value in ("closed", "failed"):
            return
        filters = self._filters()
        if self.durable is not None:
            await self._sync_durable(filters)
        else:
            for f in filters - self._subs.keys():
                self._subs[f] = await nc.subscribe(
                    f,
                    cb=self._on_data,
                    pending_msgs_limit=self._pending_limit,
                    pending_bytes_limit=self._pending_limit * 4096,
                )
            for f in [f for f in self._subs if f not in filters]:
                with contextlib.suppress(Exception):
                    await self._subs.pop(f).unsubscribe()
        await self._declare()

    def _filters(self) -> frozenset[str]:
        keys = self._router.snapshot().keys()
        stars = {ch for ch, sym in keys if sym == "*"}
        s = self.subjects
        return frozenset(
            s.data_filter(ch, sym) for ch, sym in keys if sym == "*" or ch not in stars
        )

    async def _declare(self, refresh: bool = False) -> None:
        nc = self._nc
        if nc is None or not nc.is_connected:
            # Not now (NATS reconnects by itself; _on_reconnected declares). Never close
            # the client here: it is self._nc, and a closed one never reconnects.
            return
        wanted = frozenset(self._book.wanted())
        if wanted == self._declared and not refresh:
            return
        if not wanted and not self._declared and refresh:
            return  # nothing held: no lease to keep alive
        demand = Demand(client=self.client_id, lease_s=self.lease, pairs=sorted(wanted))
        try:
            msg = await nc.request(self.subjects.demand, encode_control(demand), timeout=2.0)
        except Exception as exc:  # no gateway yet (no responders), a timeout
            self._declared = None  # try again at the next heartbeat or gateway hello
            self._outlet.log.log(("declare", type(exc)), logging.INFO, "no gateway: %r", exc)
            return
        self._declared = wanted
        try:
            reply = decode_control(msg.data, DemandReply)
        except ValueError as exc:
            self._bad(msg, exc)
            return
        self._apply_refusals(reply.refused)
        refused = {(r.channel, s) for r in reply.refused for s in r.symbols}
        self._book.adopt(wanted - refused)

    async def _heartbeat(self) -> None:
        await self._declare(refresh=True)

    # ------------------------------------------------------------------ catch-up (bus thread)

    async def _sync_durable(self, filters: frozenset[str]) -> None:
        if filters == self._jfilters:
            return
        from nats.js.api import (  # noqa: PLC0415 - the optional extra, loaded on use
            AckPolicy,
            ConsumerConfig,
            DeliverPolicy,
        )

        js = self._nc.jetstream()
        stream = self.subjects.stream_name()
        assert self.durable is not None
        config = ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.ALL,
            deliver_policy=DeliverPolicy.NEW,
            filter_subjects=sorted(filters) or [self.subjects.news + ".none"],
            max_ack_pending=-1,
        )
        try:
            info = await js.consumer_info(stream, self.durable)
        except Exception:
            info = None
        try:
            floor = info.ack_floor.stream_seq if info and info.ack_floor else 0
            if info is not None and self._jsub is None and info.num_ack_pending and floor:
                # An earlier run stopped with messages fetched but not acknowledged
                # (close() cancels a fetch in flight; a crash): the server holds them
                # back for ack_wait, and our first AckAll would acknowledge them unseen.
                # Start again right after the last acknowledged message instead.
                await js.delete_consumer(stream, self.durable)
                config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
                config.opt_start_seq = floor + 1
            elif info is not None:  # an update may not change where delivery starts
                config.deliver_policy = info.config.deliver_policy
                config.opt_start_seq = info.config.opt_start_seq
            await js.add_consumer(stream, config)  # creates, or updates the filters
        except Exception as exc:
            self._outlet.publish(
                BusMessageError(stream, f"cannot set up the durable consumer: {exc!r}")
            )
            return
        self._jfilters = filters
        if self._jsub is None:
            self._jsub = await js.pull_subscribe_bind(self.durable, stream=stream)
            self._tasks.append(asyncio.get_running_loop().create_task(self._pull()))

    async def _pull(self) -> None:
        nats = self._nats_mod
        while True:
            try:
                msgs = await self._jsub.fetch(256, timeout=1.0)
            except nats.errors.TimeoutError:
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._life.value in ("closed", "failed"):
                    return
                self._outlet.log.log(("pull", type(exc)), _W, "catch-up fetch failed: %r", exc)
                await asyncio.sleep(0.2)
                continue
            for msg in msgs:
                self._deliver(msg)
            if msgs:
                # AckPolicy.ALL: one ack covers the batch. Kept until it is sent, so a
                # close() in between still acks what was delivered (no duplicate later).
                self._to_ack = msgs[-1]
                with contextlib.suppress(Exception):
                    await self._to_ack.ack()
                self._to_ack = None

    # ------------------------------------------------------------------ data (bus thread)

    async def _on_data(self, msg: Any) -> None:
        self._deliver(msg)

    def _deliver(self, msg: Any) -> None:
        data: bytes = msg.data
        opcode = Opcode.TEXT if data[:1] == b"[" else Opcode.BINARY
        self._frames.on_next(Frame(data, opcode, True, time.time_ns()))
        if self._slow:
            sid = getattr(msg, "_sid", None)
            hole = self._slow.get(sid)
            if hole is not None:
                hole.queued -= 1  # buffered before the drop: before the hole
                if hole.queued <= 0:
                    self._slow_hole_ends(sid, hole)

    def _slow_hole_ends(self, sid: Any, hole: _SlowHole) -> None:
        """Everything before the hole is delivered: publish its Gap (next: after it)."""
        del self._slow[sid]
        s = self.subjects
        pairs = frozenset(
            (ch, sym)
            for ch, sym in self._book.wanted()
            if hole.filter in (s.data_filter(ch, sym), s.data_filter(ch, "*"))
        )
        self._publish_gap_for("slow consumer", self.metrics.last_message_ns, time.time_ns(), pairs)

    def _on_control(self, item: object) -> None:
        # Only data travels on data subjects: anything else is a bad bus message.
        if isinstance(item, FrameError):
            self._outlet.log.log(("frame",), _W, "bad frame on the bus: %s", item)
            self._outlet.publish(item)
        elif isinstance(item, m.Unknown):
            self.metrics.unknown_messages += 1
            self._outlet.publish(UnknownMessage(item))

    def _bad(self, msg: Any, exc: Exception) -> None:
        subject = getattr(msg, "subject", "?")
        self._outlet.log.log(
            ("bad", subject), _W, "unusable bus message on %s: %s", subject, exc, exc_info=True
        )
        self._outlet.publish(BusMessageError(subject, str(exc), bytes(msg.data)))

    async def _every(self, seconds: float, fn: Any) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                result = fn()
                if asyncio.iscoroutine(result):
                    await result
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("bus task %s raised", getattr(fn, "__name__", fn))


@dataclass
class _SlowHole:
    """Messages nats-py dropped on one subscription (bus thread only)."""

    queued: int  # messages buffered before the latest drop: delivered before the hole
    filter: str  # the subscription's subject


def _lost(text: str, cause: BaseException) -> BusDisconnected:
    err = BusDisconnected(text)
    err.__cause__ = cause
    return err
