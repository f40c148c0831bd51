"""Data out: ``publish``, raw frames, the synthetic market and FAKEPACA (S29-S33).

:class:`FeedScripts` holds the script methods that send data; every one of them
runs in the server's loop (through ``_call``) and queues into sessions, which
filter by subscription and encode once per encoding (a delivery cache shared by
the connections of one batch).
"""

from __future__ import annotations

import asyncio
import bisect
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rxalpaca.feeds import ENDPOINTS, Family, endpoint

from ..market import Market, MarketConfig, family_of_symbol
from ..wire import Encoding, TimestampWidth, WidthCycle, encode_item
from .connection import Connection
from .core import ConnSelector, ServerCore
from .history import BAR_TYPES
from .session import PREPARED, DeliveryCache, Session

__all__ = ["FeedScripts", "MarketHandle", "PreparedMarket"]


@dataclass
class MarketHandle:
    """A running synthetic market (see ``AlpacaStreamServer.start_market``).

    ``sent`` counts generated messages; ``done`` is set when a ``total`` was reached.
    """

    config: MarketConfig
    sent: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    _task: asyncio.Task[None] | None = None


class PreparedMarket:
    """A market's records, generated (and with a ``total`` encoded) ahead of streaming."""

    def __init__(self, cfg: MarketConfig, width: TimestampWidth | WidthCycle) -> None:
        self.family = cfg.resolved_family()
        rate = cfg.rate
        step = cfg.step_ns if cfg.step_ns is not None else int(1e9 / rate) if rate else 2_000
        self.market = Market(
            cfg.symbols,
            family=self.family,
            seed=cfg.seed,
            mix=cfg.mix,
            step_ns=step,
            start_ns=cfg.start_ns,
        )
        self.total = cfg.total
        self.records: list[dict[str, Any]] = []
        self.items: dict[str, list[bytes | None]] = {}
        #: With a ``total``: the positions of its bars, so streaming finds them at once.
        self.bar_positions: list[int] = []
        if cfg.total is not None:
            self.records = self.market.records(cfg.total)
            self.bar_positions = [i for i, r in enumerate(self.records) if r.get("T") in BAR_TYPES]
            wanted = [Encoding(e) for e in cfg.encodings] if cfg.encodings else list(Encoding)
            for enc in wanted:
                self.items[enc] = [encode_item(r, enc, width) for r in self.records]

    def take(self, start: int, n: int) -> tuple[list[dict[str, Any]], DeliveryCache]:
        """Records ``start`` … ``start + n`` and their delivery cache."""
        if self.total is not None:
            end = start + n
            cache: DeliveryCache = {e: v[start:end] for e, v in self.items.items()}
            cache[PREPARED] = []
            return self.records[start:end], cache
        return self.market.records(n), {}

    def bars(self, start: int, recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The bars among ``recs`` (records ``start`` … of this market)."""
        if self.total is None:
            return [r for r in recs if r.get("T") in BAR_TYPES]
        pos = self.bar_positions
        lo = bisect.bisect_left(pos, start)
        hi = bisect.bisect_left(pos, start + len(recs))
        return [self.records[i] for i in pos[lo:hi]]


class FeedScripts(ServerCore):
    """The script methods that send data (mixed into ``AlpacaStreamServer``)."""

    def _started(self) -> None:
        super()._started()
        if self._config.streams.test_stream:
            self._call(lambda: self._spawn(self._run_test_stream()))
        if self._initial_market is not None:
            self.start_market(self._initial_market)

    def publish(
        self,
        records: Sequence[Mapping[str, Any]],
        conn: ConnSelector = None,
        *,
        feed: str | None = None,
        batch: int | None = None,
    ) -> int:
        """Send data messages to matching authenticated connections (S29, S30, S33).

        Args:
            records: wire dicts (``T`` first or not; timestamps as ns ``int`` or datetime).
            conn: one connection, or ``None`` for every authenticated one.
            feed: only connections on this feed.
            batch: messages per frame (default: the server's ``batch_size``).

        Returns:
            how many messages were queued in total, over all connections.

        A single call queues everything at once: more than ``max_buffer_messages``
        messages for one connection overflow its buffer (S37) even if the client reads
        fast, so raise the bound for bulk publishes.
        """
        recs = list(records)
        ep = endpoint(feed) if feed is not None else None

        def run() -> int:
            cache: DeliveryCache = {}
            size = batch or self._config.delivery.batch_size
            total = 0
            bars = [r for r in recs if r.get("T") in BAR_TYPES]
            for rec in bars:
                sym = str(rec.get("S", ""))
                self._history.add(ep.family if ep is not None else family_of_symbol(sym), [rec])
            for c in self._select(conn, authenticated=True):
                s = c.session
                if isinstance(s, Session) and (ep is None or s.endpoint is ep):
                    total += s.deliver(recs, cache, size)
                    c.pump()
            return total

        return self._call(run)

    def send_raw(
        self, frame: bytes | str, conn: ConnSelector = None, *, text: bool | None = None
    ) -> None:
        """Send ``frame`` exactly as given (text frame for ``str``, binary for ``bytes``
        unless ``text`` says otherwise) to one or every open connection."""
        payload = frame.encode() if isinstance(frame, str) else frame
        is_text = isinstance(frame, str) if text is None else text
        self._call(lambda: self._each(conn, lambda s: s.enqueue(payload, 0, text=is_text)))

    def send_records(self, records: Sequence[Mapping[str, Any]], conn: ConnSelector = None) -> None:
        """Send ``records`` as one frame in each connection's encoding, unfiltered."""
        recs = list(records)
        self._call(lambda: self._each(conn, lambda s: s.send_records(recs)))

    # ------------------------------------------------------------------ REST history

    @property
    def rest_url(self) -> str:
        """``http://host:port``: the historical REST endpoints (``/v2/stocks/bars``,
        ``/v1beta3/crypto/us/bars``) on the stream's own port, e.g. alpaca-py's
        ``StockHistoricalDataClient(key, secret, url_override=server.rest_url)``."""
        return f"http://{self.host}:{self._port}"

    def bar_history(
        self, symbol: str, family: Family | str = Family.STOCKS
    ) -> list[dict[str, Any]]:
        """The minute bars REST serves for ``symbol``: every bar a market made or a test
        published, the correction (``u``) over the first version, in time order
        (``t`` in ns; other fields as on the wire, without ``T``/``S``)."""
        fam = Family(family)
        return self._call(lambda: self._history.bars(fam, symbol))

    def rest_requests(self) -> list[str]:
        """The REST requests answered so far (path and query string), oldest first."""
        return self._call(lambda: list(self._rest_log))

    def fail_next_rest(self, status: int = 500, count: int = 1) -> None:
        """Answer the next ``count`` REST requests with ``status`` and
        ``{"message": "injected failure <status>"}`` (429 for a rate limit …)."""
        self._call(lambda: self._rest_failures.extend([status] * count))

    # ------------------------------------------------------------------ market

    def start_market(self, config: MarketConfig | None = None, **kwargs: Any) -> MarketHandle:
        """Stream a synthetic market to every authenticated connection of its family,
        filtered by each one's subscriptions.

        The market pauses while no connection of its family has a subscription, so
        subscribe first, then start it (nothing is generated for nobody).

        ``start_market(symbols=["AAPL"], rate=5000, batch=10)`` is short for
        ``start_market(MarketConfig(symbols=["AAPL"], rate=5000, batch=10))``. With a
        ``total``, every message is generated and encoded before streaming starts.
        """
        cfg = config if config is not None else MarketConfig(**kwargs)
        handle = MarketHandle(cfg)
        prepared = PreparedMarket(cfg, self._width)

        def run() -> None:
            handle._task = self._spawn(self._run_market(handle, prepared))
            self._markets.append(handle)

        self._call(run)
        return handle

    def stop_market(self, handle: MarketHandle | None = None) -> None:
        """Stop one (or every) running market."""

        def run() -> None:
            for h in list(self._markets):
                if handle is None or h is handle:
                    if h._task is not None:
                        h._task.cancel()
                    self._markets.remove(h)

        self._call(run)

    async def _run_market(self, handle: MarketHandle, prep: PreparedMarket) -> None:
        cfg = handle.config
        rate = cfg.rate
        batch = max(1, cfg.batch)
        t0 = time.monotonic()
        try:
            while prep.total is None or handle.sent < prep.total:
                targets = self._market_targets(prep.family)
                if not any(any(subs) for c, s in targets for subs in s.subs.values()):
                    # Nobody is subscribed: pause (no CPU burnt, nothing wasted) and
                    # resume at the configured rate without a catch-up burst.
                    await asyncio.sleep(0.005)
                    if rate is not None:
                        t0 = time.monotonic() - handle.sent / rate
                    continue
                if rate is not None:
                    due = int((time.monotonic() - t0) * rate) - handle.sent
                    if due <= 0:
                        wait = (handle.sent + 1) / rate - (time.monotonic() - t0)
                        await asyncio.sleep(max(wait, 0.0005))
                        continue
                    n = min(due, max(batch * 64, 4096))
                else:
                    n = batch * 64
                    for c, _ in targets:  # as fast as the slowest client reads
                        if not c.room.is_set():
                            await c.room.wait()
                if prep.total is not None:
                    n = min(n, prep.total - handle.sent)
                recs, cache = prep.take(handle.sent, n)
                # The market made these bars whoever was subscribed: REST serves them.
                self._history.add(prep.family, prep.bars(handle.sent, recs))
                for c, s in self._market_targets(prep.family):
                    s.deliver(recs, cache, batch)
                    c.pump()
                handle.sent += n
                await asyncio.sleep(0)
        finally:
            handle.done.set()

    def _market_targets(self, family: Family) -> list[tuple[Connection, Session]]:
        found = []
        for c in self._conns.values():
            s = c.session
            if (
                isinstance(s, Session)
                and s.authenticated
                and not s.closed
                and s.endpoint.family is family
            ):
                found.append((c, s))
        return found

    async def _run_test_stream(self) -> None:
        """S33: FAKEPACA on ``/v2/test`` — a quote every 5 s, a trade now and then, a bar
        each minute (all divided by ``test_stream_speed``)."""
        market = Market(["FAKEPACA"], family=Family.TEST, seed=7)
        tick = 0
        bar: list[float] = []
        test_ep = ENDPOINTS["test"]
        while True:
            await asyncio.sleep(5.0 / max(self._config.streams.test_stream_speed, 1e-6))
            tick += 1
            now = time.time_ns()
            recs: list[dict[str, Any]] = [market.record("q", "FAKEPACA", now)]
            if market.rng.random() < 0.4:
                recs.append(market.record("t", "FAKEPACA", now + 1))
            mid = market.mid("FAKEPACA")
            bar = [mid] * 4 if not bar else [bar[0], max(bar[1], mid), min(bar[2], mid), mid]
            if tick % 12 == 0:
                o, h, lo, cl = (round(x, 2) for x in bar)
                recs.append(
                    {
                        "T": "b",
                        "S": "FAKEPACA",
                        "o": o,
                        "h": h,
                        "l": lo,
                        "c": cl,
                        "v": market.rng.randint(50, 500),
                        # a bar covers the minute before the one it is sent in (§4.4)
                        "t": (now // 60_000_000_000 - 1) * 60_000_000_000,
                        "n": market.rng.randint(5, 30),
                        "vw": round((h + lo) / 2, 2),
                    }
                )
                bar = []
            cache: DeliveryCache = {}
            for c, s in self._market_targets(Family.TEST):
                if s.endpoint is test_ep:
                    s.deliver(recs, cache, 1)
                    c.pump()
