"""``Gateway``: one Alpaca connection per feed, fanned out to any number of processes over NATS.

::

    from rxalpaca.bus import Gateway

    with Gateway("nats://127.0.0.1:4222", feed="iex") as gw:   # keys from the environment
        gw.wait()                                               # until close() or Ctrl-C

The gateway owns a :class:`~rxalpaca.client.StreamClient` and three duties:

* **Data.** Every frame the client receives is cut per (channel, symbol)
  (:class:`~rxalpaca.bus.wire.FrameSplitter`) and published on that pair's subject
  (:mod:`rxalpaca.bus.subjects`) in Alpaca's own encoding. The socket thread cuts,
  the bus thread publishes: they meet in a deque, and the bus thread is woken once
  per burst, not per frame.
* **Demand.** Consumers hold leases (``<root>.demand``, request/reply): each names
  every pair its owner wants, refreshed every third of its length. The union of the
  live leases is held upstream as one no-op subscription per pair on the client —
  so the client's ref-counting, coalescing, reconnect replay and refusal handling
  all apply unchanged. A lease not refreshed in time (a consumer that crashed)
  expires, and the pairs only it held are released upstream. A pair the upstream
  refuses (405 symbol limit, 413, 400) is reported to the consumers whose leases
  name it, and only to them.
* **State.** The client's state is published on ``<root>.state`` at every change and
  every ``heartbeat`` seconds (consumers take its silence for a lost gateway), and
  each hole a reconnect left (the client's ``gaps``) on ``<root>.gap``.

Alpaca's keys stay in this process: nothing on the bus carries them.

NATS not there yet (containers start in any order): :meth:`Gateway.start` says so
(a WARNING ``cannot reach NATS at <servers>``, and ``health()``) and returns; the
gateway retries with backoff (at most 2 s apart) and serves as soon as NATS answers.
Refused NATS credentials at the start are a :class:`~rxalpaca.errors.ConfigurationError`.

Threads: the client's socket thread (frames in, cut), the bus thread (NATS, leases,
the held subscriptions — all gateway state is the bus thread's alone, so it takes no
lock), and the client's supervisor.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import itertools
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal, Self, Unpack

import msgspec
from reactivex.abc import DisposableBase

from .. import operators as ops
from .._logging import RateLimitedLog
from ..client import StreamClient
from ..errors import ConfigurationError, FrameError, StreamError, SubscriptionRejected
from ..feeds import Channel
from ..frames import DATA_OPCODES, DEFAULT_MAX_MESSAGE_BYTES, Frame
from ..models import Gap
from ..options import ClientOptions
from ..protocol import ConnectionState
from ._loop import (
    LoopThread,
    NatsCredentialsRefused,
    NatsOptions,
    NatsUnreachable,
    connect_backoff,
    connect_once,
    nats_connect_kwargs,
    redact,
    require_nats,
    server_list,
)
from .subjects import DEFAULT_PREFIX, Subjects
from .wire import (
    Demand,
    DemandReply,
    FrameSplitter,
    GatewayState,
    Refusal,
    decode_control,
    encode_control,
    encode_group,
    merge_groups,
)

__all__ = ["Gateway", "Retention"]

logger = logging.getLogger("rxalpaca.bus")

_Pair = tuple[str, str]
#: A frame cut for the bus: JSON or not, its size, its messages per subject.
_Cut = tuple[bool, int, dict[str, list[msgspec.Raw]]]

#: Queued frames are joined until their sizes add up to this (so a joined payload stays
#: well below NATS's 1 MB max_payload unless one frame alone is that big).
_MAX_JOINED_BYTES = 256 * 1024


@dataclass(frozen=True)
class Retention:
    """How much of a feed a JetStream stream keeps for consumers' catch-up.

    Args:
        max_age: seconds a message is kept.
        max_bytes: the stream's size cap (oldest dropped first).
        storage: ``"file"`` (survives a NATS restart) or ``"memory"``.
        replicas: copies in a NATS cluster.
    """

    max_age: float = 15 * 60.0
    max_bytes: int = 1 << 30
    storage: Literal["file", "memory"] = "file"
    replicas: int = 1


@dataclass
class _Lease:
    pairs: frozenset[_Pair]
    expires: float  # time.monotonic()


@dataclass
class GatewayMetrics:
    """The gateway's own counters (bus thread writes; readers take a snapshot)."""

    frames_cut: int = 0
    messages_published: int = 0
    bytes_published: int = 0
    publish_failures: int = 0
    skipped: int = 0
    bad_frames: int = 0
    demands: int = 0
    bad_demands: int = 0
    leases_expired: int = 0
    refusals_sent: int = 0


class Gateway:
    """Serve one Alpaca feed to every consumer on a NATS bus (see the module docstring).

    Args:
        nats: the NATS server URL(s), e.g. ``"nats://127.0.0.1:4222"`` or a list
            (a cluster; nats-py fails over between them).
        feed: the Alpaca feed to serve (as :class:`~rxalpaca.client.StreamClient`).
        prefix: the first subject token (several deployments may share one NATS).
        heartbeat: seconds between state messages; consumers give up on a gateway
            after three missed ones.
        retention: keep the feed's data in a JetStream stream for consumers'
            catch-up (``BusClient(durable=...)``); ``None`` publishes on core NATS only.
        nats_options: credentials and TLS for NATS (:class:`NatsOptions`).
        client: serve through this client instead of one built from ``client_options``.
        **client_options: :class:`~rxalpaca.client.StreamClient` options (``key``,
            ``secret``, ``url``, ``encoding`` …). Alpaca's keys never leave this process.
    """

    def __init__(
        self,
        nats: str | list[str] = "nats://127.0.0.1:4222",
        feed: str = "iex",
        *,
        prefix: str = DEFAULT_PREFIX,
        heartbeat: float = 1.0,
        retention: Retention | None = None,
        nats_options: NatsOptions | None = None,
        client: StreamClient[Any, Any, Any, Any, Any] | None = None,
        **client_options: Unpack[ClientOptions],
    ) -> None:
        self._nats_mod = require_nats()
        if not heartbeat > 0:
            raise ConfigurationError(f"heartbeat must be a positive number, not {heartbeat!r}")
        client_options.setdefault("name", "rxalpaca-gateway")
        self.client: StreamClient[Any, Any, Any, Any, Any] = (
            client if client is not None else StreamClient(feed, **client_options)
        )
        self.feed = self.client.endpoint.feed
        self.subjects = Subjects(self.feed, prefix)
        self.id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.heartbeat = heartbeat
        self.retention = retention
        #: The gateway's own counters; ``metrics`` and ``endpoint`` are its client's, so
        #: whatever reads a StreamClient (a dashboard, an exporter) reads a gateway too.
        self.bus_metrics = GatewayMetrics()
        self.metrics = self.client.metrics
        self.endpoint = self.client.endpoint
        self._connect_kwargs = nats_connect_kwargs(nats, nats_options)
        self._connect_kwargs.setdefault("name", f"rxalpaca-gateway-{self.feed}")
        self._where = server_list(self._connect_kwargs["servers"])  # no credentials
        self._splitter = FrameSplitter(self.client.endpoint.family, self.subjects)
        self._log = RateLimitedLog(logger)
        # Bus thread only:
        self._leases: dict[str, _Lease] = {}
        self._held: dict[_Pair, DisposableBase] = {}
        self._refused: dict[_Pair, Refusal] = {}
        self._nc: Any = None
        self._connecting: Any = None  # the NATS client connecting, until it is self._nc
        self._nats_error: str | None = None  # why the last connect failed; None once up
        self._tasks: list[asyncio.Task[None]] = []
        # Socket thread → bus thread: each frame's messages per subject (JSON or not),
        # and whether the bus thread has been woken for them already.
        self._out: collections.deque[_Cut] = collections.deque()
        self._armed = False
        self._wake: asyncio.Event | None = None
        self._lt: LoopThread | None = None
        self._hooks: list[DisposableBase] = []
        self._closed = threading.Event()
        self._started = False

    def __repr__(self) -> str:
        return f"Gateway(feed={self.feed!r}, root={self.subjects.root!r}, id={self.id!r})"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ life

    def start(self) -> Self:
        """Connect to NATS and start serving (the Alpaca socket opens at the first lease).

        Returns once connected, or once it has said it cannot reach NATS (it goes on
        trying in the background and serves when NATS answers).

        Raises:
            ConfigurationError: NATS refused the credentials.
        """
        if self._started:
            return self
        self._started = True
        self._lt = lt = LoopThread(f"rxalpaca-gateway-{self.feed}")
        first: concurrent.futures.Future[None] = concurrent.futures.Future()
        lt.soon(lambda: self._tasks.append(lt.loop.create_task(self._run(first))))
        try:
            # Bounded: a round of connects is; past it the bus thread carries on alone.
            first.result(timeout=30)
        except concurrent.futures.TimeoutError:
            pass
        except BaseException:
            self.close()
            raise
        client = self.client
        max_bytes = DEFAULT_MAX_MESSAGE_BYTES
        self._hooks = [
            client.frames.pipe(ops.reassemble(max_bytes)).subscribe(self._on_frame),
            # Each transition as it happened: read later on the bus thread, a quick
            # reconnecting → authenticated would show twice as authenticated.
            client.state.subscribe(lambda s: self._soon(self._publish_state, s)),
            client.gaps.subscribe(lambda g: self._soon(self._publish_gap, g)),
        ]
        return self

    async def _run(self, first: concurrent.futures.Future[None]) -> None:
        """Connect (again and again while NATS is not there), then set up; bus thread.

        ``first`` is the start's outcome: ``None`` once connected or once it said it
        cannot reach NATS; an error that no retry mends (refused credentials, a
        stream that cannot be made) fails ``start()`` if it comes first, else it is
        logged and retried like an unreachable NATS.
        """
        self._wake = asyncio.Event()
        attempt = 0
        while True:
            # Made here rather than by nats.connect() so a close() meanwhile can close it.
            self._connecting = nc = self._nats_mod.aio.client.Client()
            try:
                await connect_once(
                    nc,
                    self._connect_kwargs,
                    self._on_nats_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                )
                self._nc = nc
                await self._start()
            except Exception as exc:
                self._nc = None
                with contextlib.suppress(Exception):
                    await nc.close()
                if isinstance(exc, NatsCredentialsRefused):
                    text = f"NATS at {self._where} refused the gateway's credentials ({exc})"
                    exc = ConfigurationError(text)
                elif isinstance(exc, NatsUnreachable):
                    text = f"cannot reach NATS at {self._where} ({exc})"
                else:  # setting up on a NATS that answered (the stream, the demand subject)
                    text = f"cannot set up on NATS at {self._where} ({exc!r})"
                if not first.done() and not isinstance(exc, NatsUnreachable):
                    first.set_exception(exc)  # start() raises it
                    return
                wait = connect_backoff(attempt)
                attempt += 1
                self._nats_error = text = redact(text, self._connect_kwargs)
                self._log.log(("connect", type(exc)), logging.WARNING, "%s; retrying", text)
                if not first.done():
                    first.set_result(None)  # said: start() returns, we go on trying
                await asyncio.sleep(wait)
                continue
            self._nats_error = None
            if attempt:  # at the level of the warnings it ends: an operator sees both
                logger.warning("gateway reached NATS at %s; serving", self._where)
            if not first.done():
                first.set_result(None)
            return

    async def _start(self) -> None:
        """Connected: the stream, the demand subject, the tasks; then say hello."""
        if self.retention is not None:
            await self._ensure_stream(self.retention)
        await self._nc.subscribe(self.subjects.demand, cb=self._on_demand)
        loop = asyncio.get_running_loop()
        self._tasks += [
            loop.create_task(self._pump()),
            loop.create_task(self._every(self.heartbeat, self._publish_state)),
            loop.create_task(self._every(0.1, self._expire)),
        ]
        self._publish_state()  # "a gateway is here": consumers re-declare at once

    async def _ensure_stream(self, retention: Retention) -> None:
        from nats.js.api import StorageType, StreamConfig  # noqa: PLC0415 - optional extra

        config = StreamConfig(
            name=self.subjects.stream_name(),
            subjects=[self.subjects.all_data],
            max_age=retention.max_age,
            max_bytes=retention.max_bytes,
            storage=StorageType.FILE if retention.storage == "file" else StorageType.MEMORY,
            num_replicas=retention.replicas,
        )
        js = self._nc.jetstream()
        try:
            await js.add_stream(config)
        except Exception:  # exists with another config: bring it in line
            await js.update_stream(config)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until :meth:`close` (Ctrl-C closes); ``True`` if it closed."""
        try:
            return self._closed.wait(timeout)
        except KeyboardInterrupt:
            self.close()
            return True

    def close(self) -> None:
        """Stop serving: release the Alpaca connection and leave NATS. Idempotent."""
        if self._closed.is_set():
            return
        self._closed.set()
        for hook in self._hooks:
            hook.dispose()
        self.client.close()
        lt = self._lt
        if lt is not None:
            with contextlib.suppress(Exception):
                lt.call(self._stop(), timeout=5)
            lt.stop()
        self._log.flush()

    async def _stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._drain_out()
                await self._nc.flush(timeout=2)
        # Connected, connecting or reconnecting: closed either way.
        nc = self._nc or self._connecting
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()

    def health(self) -> dict[str, Any]:
        """The client's health plus the gateway's leases and counters."""
        out = self.client.health()
        out["gateway"] = {
            "id": self.id,
            "nats_connected": bool(self._nc is not None and self._nc.is_connected),
            "nats_error": self._nats_error,
            "leases": len(self._leases),
            "pairs_held": len(self._held),
            "pairs_refused": len(self._refused),
            **vars(self.bus_metrics),
        }
        return out

    # ------------------------------------------------------------------ data (socket thread)

    def _on_frame(self, item: Frame | FrameError) -> None:
        if not isinstance(item, Frame) or item.opcode not in DATA_OPCODES:
            return
        try:
            is_json, groups = self._splitter.groups(item.payload)
        except msgspec.DecodeError:
            self.bus_metrics.bad_frames += 1  # the client reports it on its own errors
            return
        self.bus_metrics.frames_cut += 1
        if not groups:
            return
        self._out.append((is_json, len(item.payload), groups))
        if not self._armed:
            self._armed = True
            wake, lt = self._wake, self._lt
            if wake is not None and lt is not None:
                lt.soon(wake.set)

    async def _pump(self) -> None:
        wake = self._wake
        assert wake is not None
        while True:
            await wake.wait()
            wake.clear()
            self._armed = False  # appends from now on wake us again
            await self._drain_out()

    async def _drain_out(self) -> None:
        """Publish everything queued: the frames that queued up while the bus thread was
        busy go out as one message per subject (their messages joined in wire order),
        so a burst costs one publish per subject, not one per subject per frame — the
        bus batches more when it is slower, as Alpaca's server does (§6)."""
        out, publish, m = self._out, self._nc.publish, self.bus_metrics
        while out:
            is_json, size, merged = out.popleft()
            while out and size < _MAX_JOINED_BYTES and out[0][0] == is_json:
                _, more, groups = out.popleft()
                merge_groups(merged, groups)
                size += more
            for subject, group in merged.items():
                payload = encode_group(is_json, group)
                try:
                    await publish(subject, payload)
                except Exception as exc:  # buffer full while NATS reconnects, too large …
                    m.publish_failures += 1
                    self._log.log(
                        ("publish", type(exc)), logging.WARNING, "publish failed: %r", exc
                    )
                    continue
                m.messages_published += 1
                m.bytes_published += len(payload)

    # ------------------------------------------------------------------ demand (bus thread)

    async def _on_demand(self, msg: Any) -> None:
        try:
            demand = decode_control(msg.data, Demand)
        except ValueError as exc:
            self.bus_metrics.bad_demands += 1
            self._log.log(
                ("demand",), logging.WARNING, "ignored a malformed lease: %s", exc, exc_info=True
            )
            return
        self.bus_metrics.demands += 1
        lease_s = min(max(demand.lease_s, 0.2), 3600.0)
        pairs = frozenset((ch, sym) for ch, sym in demand.pairs)
        self._leases[demand.client] = _Lease(pairs, time.monotonic() + lease_s)
        self._apply()
        if msg.reply:
            reply = DemandReply(
                gateway=self.id,
                encoding=self.client.encoding,
                state=self.client.current_state.value,
                refused=[self._refused[p] for p in pairs if p in self._refused],
            )
            with contextlib.suppress(Exception):
                await msg.respond(encode_control(reply))

    def _expire(self) -> None:
        now = time.monotonic()
        gone = [c for c, lease in self._leases.items() if lease.expires < now]
        for c in gone:
            del self._leases[c]
            self.bus_metrics.leases_expired += 1
            logger.info("lease of %s expired", c)
        if gone:
            self._apply()

    def _apply(self) -> None:
        """Hold upstream exactly the union of the live leases (minus refused pairs)."""
        union: set[_Pair] = set()
        for lease in self._leases.values():
            union |= lease.pairs
        for pair in [p for p in self._refused if p not in union]:
            del self._refused[pair]  # nobody asks any more: a later ask tries again
        union -= self._refused.keys()
        for pair in [p for p in self._held if p not in union]:
            self._held.pop(pair).dispose()
        for pair in union - self._held.keys():
            self._hold(pair)

    def _hold(self, pair: _Pair) -> None:
        ch, sym = pair
        lt = self._lt
        assert lt is not None
        try:
            stream = self.client._stream(Channel(ch), (sym,))
        except (ValueError, ConfigurationError) as exc:
            self._refuse(pair, Refusal(channel=ch, symbols=[sym], code=400, message=str(exc)))
            return

        def on_error(exc: Exception) -> None:
            lt.loop.call_soon_threadsafe(self._on_upstream_error, pair, exc)

        self._held[pair] = stream.subscribe(_ignore, on_error)

    def _on_upstream_error(self, pair: _Pair, exc: Exception) -> None:
        self._held.pop(pair, None)
        if isinstance(exc, SubscriptionRejected):
            cause: StreamError = exc.cause
            refusal = Refusal(
                channel=pair[0], symbols=[pair[1]], code=cause.server_code, message=cause.msg
            )
            self._refuse(pair, refusal)
        # Anything else ends the client for good: the state message says so.

    def _refuse(self, pair: _Pair, refusal: Refusal) -> None:
        self._refused[pair] = refusal
        payload = encode_control(refusal)
        for client, lease in self._leases.items():
            if pair in lease.pairs:
                self.bus_metrics.refusals_sent += 1
                self._spawn(self._nc.publish(self.subjects.refused(client), payload))

    # ------------------------------------------------------------------ state (bus thread)

    def _publish_state(self, current: ConnectionState | None = None) -> None:
        if self._nc is None or self._closed.is_set():
            return
        client = self.client
        error = client._ended_by
        state = GatewayState(
            gateway=self.id,
            feed=self.feed,
            state=(current if current is not None else client.current_state).value,
            encoding=client.encoding,
            heartbeat_s=self.heartbeat,
            error=f"{type(error).__name__}: {error}" if error is not None else None,
        )
        self._spawn(self._nc.publish(self.subjects.state, encode_control(state)))

    def _publish_gap(self, gap: Gap) -> None:
        if self._nc is not None:
            self._spawn(self._nc.publish(self.subjects.gap, encode_control(gap)))

    # ------------------------------------------------------------------ plumbing

    def _soon(self, fn: Any, *args: Any) -> None:
        if self._lt is not None:
            self._lt.soon(fn, *args)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        task.add_done_callback(_swallow)

    async def _every(self, seconds: float, fn: Any) -> None:
        for _ in itertools.count():
            await asyncio.sleep(seconds)
            try:
                fn()
            except Exception:
                logger.exception("gateway task %s raised", getattr(fn, "__name__", fn))

    async def _on_nats_error(self, exc: Exception) -> None:
        self._log.log(("nats", type(exc)), logging.WARNING, "NATS: %r", exc)

    async def _on_disconnected(self) -> None:
        # Not for a client that never connected, being closed (_run): nothing was lost.
        if not self._closed.is_set() and self._nc is not None:
            logger.warning("gateway lost NATS; nats-py reconnects")

    async def _on_reconnected(self) -> None:
        logger.info("gateway reconnected to NATS")
        self._publish_state()


def _ignore(_record: object) -> None:
    """The gateway's own subscriptions only hold demand; the data goes out raw."""


def _swallow(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.debug("bus publish failed: %r", task.exception())
