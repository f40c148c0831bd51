"""alpaca-py's streaming classes, built on :class:`~rxalpaca.StreamClient`: change one import.

::

    # from alpaca.data.live import StockDataStream
    from rxalpaca.compat import StockDataStream

    wss_client = StockDataStream("api-key", "secret-key")

    async def quote_data_handler(data):
        print(data)

    wss_client.subscribe_quotes(quote_data_handler, "SPY")
    wss_client.run()

:class:`StockDataStream`, :class:`CryptoDataStream`, :class:`OptionDataStream` and
:class:`NewsDataStream` take alpaca-py's constructor arguments (``api_key``,
``secret_key``, ``raw_data``, ``feed``, ``websocket_params``, ``url_override``,
``data_timeout``) and have its methods: ``subscribe_<channel>(handler, *symbols)``,
``unsubscribe_<channel>(*symbols)``, ``register_trade_corrections`` /
``register_trade_cancels``, ``run()``, ``stop()``, and the coroutines
``_run_forever()``, ``stop_ws()`` and ``close()`` that asyncio programs await.

Handlers are called as alpaca-py calls them — ``async def`` handlers awaited one
record at a time on the loop that ``run()`` (or ``_run_forever()``) runs, a symbol's
own handler before ``"*"``'s, never both — and receive rxalpaca's typed records,
whose attribute names are alpaca-py's (``symbol``, ``timestamp``, ``price``,
``bid_price``, ``vwap`` …), or with ``raw_data=True`` the wire dict (``data["S"]``,
``data["bp"]``). Plain functions work too. What differs: the socket is rxalpaca's
(its own thread, reconnects that restore every subscription, ``ping_timeout``
5 s-style liveness instead of 180 s); a fatal error (bad keys, a plan without the
feed) is raised by ``run()`` instead of logged and retried forever; records cross
to the loop through a bounded hand-over (``size`` records, ``overflow="block"`` by
default, as alpaca-py, whose handler blocks its reader; pass ``overflow=
"drop_oldest"`` to keep the socket reading whatever a handler does). The
underlying client is :attr:`DataStream.client`, for everything alpaca-py lacks.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable
from enum import Enum
from typing import Any, ClassVar

import msgspec
from reactivex import abc

from . import models
from .client import StreamClient
from .errors import ConfigurationError
from .operators._buffer import OverflowPolicy

__all__ = [
    "CryptoDataStream",
    "DataStream",
    "NewsDataStream",
    "OptionDataStream",
    "StockDataStream",
]

logger = logging.getLogger("rxalpaca")

Handler = Callable[[Any], Any]

#: alpaca-py's channel names (its ``_handlers`` keys) → the client's stream methods.
_METHODS = {
    "trades": "trades",
    "quotes": "quotes",
    "bars": "bars",
    "updatedBars": "updated_bars",
    "dailyBars": "daily_bars",
    "statuses": "statuses",
    "lulds": "lulds",
    "orderbooks": "orderbooks",
    "news": "news",
    "corrections": "corrections",
    "cancelErrors": "cancel_errors",
}
#: Registered handlers that ride on trades (alpaca-py: ``register_trade_*``).
_ON_TRADES = ("corrections", "cancelErrors")


def raw_dict(record: models.Record) -> dict[str, Any]:
    """A record as the wire dict alpaca-py's ``raw_data=True`` hands out (``T``, ``S``, ``bp`` …).

    ``t`` is a ``datetime`` (alpaca-py gives msgpack's ``Timestamp``, of which
    ``to_datetime()`` is the usual next step).
    """
    out: dict[str, Any] = {"T": type(record).__struct_config__.tag}
    for f in msgspec.structs.fields(record):
        if f.name == "received_ns":
            continue
        value = getattr(record, f.name)
        if isinstance(value, msgspec.Raw):
            value = record.timestamp if isinstance(record, models.MarketRecord) else bytes(value)
        out[f.encode_name] = (
            [msgspec.to_builtins(v) for v in value] if isinstance(value, tuple) else value
        )
    return out


def _feed_name(feed: Any) -> str:
    return str(feed.value if isinstance(feed, Enum) else feed)


class DataStream:
    """What the four streams share: handlers per (channel, symbol) over one client.

    Args:
        feed: rxalpaca's feed name for the stream.
        api_key: Alpaca API key id.
        secret_key: Alpaca API secret.
        raw_data: hand handlers wire dicts instead of typed records.
        websocket_params: ``ping_interval`` and ``ping_timeout`` are used; other keys
            (websockets' own parameters) have no meaning here and are ignored.
        url_override: the endpoint's full URL (or scheme and host), e.g. a test server.
        data_timeout: reconnect after this many seconds without market data
            (rxalpaca's ``silence_timeout``).
        size: the hand-over's capacity in records per subscription (rxalpaca only).
        overflow: what a full hand-over does (rxalpaca only; see ``ops.on_loop``).
        **options: any other :class:`~rxalpaca.StreamClient` option.
    """

    #: The channels this stream has (alpaca-py's names).
    CHANNELS: ClassVar[tuple[str, ...]] = ()

    def __init__(  # noqa: PLR0917 - alpaca-py's positional signature
        self,
        feed: str,
        api_key: str,
        secret_key: str,
        raw_data: bool = False,
        websocket_params: dict[str, Any] | None = None,
        url_override: str | None = None,
        data_timeout: float | None = None,
        *,
        size: int = 10_000,
        overflow: OverflowPolicy = "block",
        **options: Any,
    ) -> None:
        if data_timeout is not None and data_timeout <= 0:
            raise ValueError("data_timeout must be a positive number of seconds")
        params = dict(websocket_params or {})
        for name in ("ping_interval", "ping_timeout"):
            if name in params:
                options.setdefault(name, params[name])
        #: The rxalpaca client underneath (state, errors, health(), typed streams).
        self.client: StreamClient[Any, Any, Any, Any, Any] = StreamClient(
            feed,
            key=api_key,
            secret=secret_key,
            url=url_override,
            silence_timeout=data_timeout,
            **options,
        )
        self._raw_data = raw_data
        self._size = size
        self._overflow: OverflowPolicy = overflow
        self._lock = threading.Lock()  # guards the three dicts and _loop
        self._handlers: dict[str, dict[str, Handler]] = {c: {} for c in _METHODS}
        self._subs: dict[tuple[str, str], abc.DisposableBase] = {}
        self._loop: asyncio.AbstractEventLoop | None = None  # set while running
        self._stopping = False  # stop() was called: no handler is called after it

    # ---- alpaca-py's API

    def run(self) -> None:
        """Stream until :meth:`stop` or Ctrl-C, running handlers on a new event loop.

        Called where an event loop already runs (a Jupyter cell: alpaca-py fails
        there with "asyncio.run() cannot be called from a running event loop"), the
        handlers get a loop on a thread of their own and this call blocks the cell
        until :meth:`stop`, Ctrl-C or the kernel's interrupt.

        Raises:
            StreamError: a fatal error ended the stream (bad keys, a plan without the
                feed); alpaca-py logs those and retries for ever.
        """
        try:
            if _running_loop() is None:
                asyncio.run(self._run_forever())
            else:
                self._run_on_a_thread()
        except KeyboardInterrupt:
            logger.info("keyboard interrupt: %s stream closed", self.client.endpoint.feed)
        finally:
            self.client.close()

    def _run_on_a_thread(self) -> None:
        failure: list[BaseException] = []

        def target() -> None:
            try:
                asyncio.run(self._run_forever())
            except BaseException as exc:  # handed to the caller's thread below
                failure.append(exc)

        thread = threading.Thread(target=target, name="rxalpaca-compat-loop", daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(0.1)  # slices: KeyboardInterrupt reaches this thread promptly
        if failure:
            raise failure[0]

    async def _run_forever(self) -> None:
        """Stream on the running loop until :meth:`stop` (for programs with their own loop)."""
        loop = asyncio.get_running_loop()
        self.client.bind_loop(loop, size=self._size, overflow=self._overflow)
        with self._lock:
            self._loop = loop
            self._stopping = False
            pending = [
                (c, s) for c, hs in self._handlers.items() if c not in _ON_TRADES for s in hs
            ]
            pending += [
                (c, s)
                for c in _ON_TRADES
                if "*" in self._handlers[c]
                for s in self._handlers["trades"]
            ]
        try:
            for channel, symbol in pending:
                self._apply(channel, symbol)
            await self.client.wait_async()
        finally:
            with self._lock:
                self._loop = None
            await asyncio.to_thread(self.client.close)

    def stop(self) -> None:
        """End :meth:`run` (any thread, also from inside a handler); no handler runs after it."""
        with self._lock:
            self._stopping = True
            loop = self._loop
        on_loop = loop is not None and _running_loop() is loop
        if on_loop:  # close() joins the socket thread: not on the loop the handlers need
            threading.Thread(target=self.client.close, name="rxalpaca-compat-stop").start()
        else:
            self.client.close()

    async def stop_ws(self) -> None:
        """``await`` form of :meth:`stop`."""
        await asyncio.to_thread(self.client.close)

    async def close(self) -> None:
        """Close the connection (as :meth:`stop_ws`)."""
        await self.stop_ws()

    # ---- handlers

    def _subscribe(self, channel: str, handler: Handler, symbols: Iterable[str]) -> None:
        if channel not in self.CHANNELS:
            raise ConfigurationError(f"{type(self).__name__} has no {channel!r} channel")
        if not callable(handler):
            raise ConfigurationError(f"handler must be a function, not {handler!r}")
        for symbol in symbols:
            with self._lock:
                self._handlers[channel][symbol] = handler
                running = self._loop is not None
            if running:
                self._apply(channel, symbol)
                if channel == "trades":
                    for riding in _ON_TRADES:
                        if "*" in self._handlers[riding]:
                            self._apply(riding, symbol)

    def _unsubscribe(self, channel: str, symbols: Iterable[str]) -> None:
        for symbol in symbols:
            with self._lock:
                self._handlers[channel].pop(symbol, None)
                subs = [self._subs.pop((channel, symbol), None)]
                if channel == "trades":
                    subs += [self._subs.pop((c, symbol), None) for c in _ON_TRADES]
            for sub in subs:
                if sub is not None:
                    sub.dispose()

    def _register(self, channel: str, handler: Handler) -> None:
        with self._lock:
            self._handlers[channel]["*"] = handler
            running = self._loop is not None
            trades = list(self._handlers["trades"])
        if running:
            for symbol in trades:
                self._apply(channel, symbol)

    def _apply(self, channel: str, symbol: str) -> None:
        """Subscribe the client's stream for (channel, symbol), replacing an older one."""
        with self._lock:
            old = self._subs.pop((channel, symbol), None)
        if old is not None:
            old.dispose()
        # corrections/cancels: the one registered handler, for each subscribed trade symbol
        deliver = self._handlers[channel].get("*" if channel in _ON_TRADES else symbol)
        if deliver is None:
            return
        shadowed = self._shadow_check(channel, symbol)
        raw = self._raw_data
        handler = deliver

        async def on_record(record: Any) -> None:
            if self._stopping or shadowed(record):
                return  # a symbol's own handler takes it (alpaca-py: one handler per record)
            result = handler(raw_dict(record) if raw else record)
            if asyncio.iscoroutine(result):
                await result

        stream = getattr(self.client, _METHODS[channel])(symbol)
        sub = stream.subscribe(on_record)
        with self._lock:
            self._subs[(channel, symbol)] = sub

    def _shadow_check(self, channel: str, symbol: str) -> Callable[[Any], bool]:
        """For ``"*"``: a record whose symbol has its own handler belongs to that one."""
        if symbol != "*" or channel in _ON_TRADES:
            return lambda _record: False
        own = self._handlers[channel]
        if channel == "news":
            # alpaca-py: "*" gets an article unless every symbol of it has its own handler
            return lambda article: bool(article.symbols) and all(s in own for s in article.symbols)
        return lambda record: record.symbol in own

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.client!r})"


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class StockDataStream(DataStream):
    """alpaca-py's ``StockDataStream``; ``feed``: ``DataFeed.IEX``/``SIP`` or a stock feed name."""

    CHANNELS: ClassVar[tuple[str, ...]] = (
        "trades",
        "quotes",
        "bars",
        "updatedBars",
        "dailyBars",
        "statuses",
        "lulds",
        *_ON_TRADES,
    )

    def __init__(  # noqa: PLR0917 - alpaca-py's positional signature
        self,
        api_key: str,
        secret_key: str,
        raw_data: bool = False,
        feed: Any = "iex",
        websocket_params: dict[str, Any] | None = None,
        url_override: str | None = None,
        data_timeout: float | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            _feed_name(feed),
            api_key,
            secret_key,
            raw_data,
            websocket_params,
            url_override,
            data_timeout,
            **options,
        )

    def subscribe_trades(self, handler: Handler, *symbols: str) -> None:
        """Call ``handler(trade)`` for each trade of ``symbols`` (``"*"``: all)."""
        self._subscribe("trades", handler, symbols)

    def subscribe_quotes(self, handler: Handler, *symbols: str) -> None:
        """Call ``handler(quote)`` for each quote of ``symbols``."""
        self._subscribe("quotes", handler, symbols)

    def subscribe_bars(self, handler: Handler, *symbols: str) -> None:
        """Call ``handler(bar)`` for each minute bar of ``symbols``."""
        self._subscribe("bars", handler, symbols)

    def subscribe_updated_bars(self, handler: Handler, *symbols: str) -> None:
        """Call ``handler(bar)`` for each corrected minute bar of ``symbols``."""
        self._subscribe("updatedBars", handler, symbols)

    def subscribe_daily_bars(self, handler: Handler, *symbols: str) -> None:
        """Call ``handler(bar)`` for each running daily bar of ``symbols``."""
        self._subscribe("dailyBars", handler, symbols)

    def subscribe_trading_statuses(self, handler: Handler, *symbols: str) -> None:
        """Call ``handler(status)`` for each trading status (halt, resumption) of ``symbols``."""
        self._subscribe("statuses", handler, symbols)

    def register_trade_corrections(self, handler: Handler) -> None:
        """Call ``handler(correction)`` for corrections of the subscribed trades."""
        self._register("corrections", handler)

    def register_trade_cancels(self, handler: Handler) -> None:
        """Call ``handler(cancel)`` for cancels and errors of the subscribed trades."""
        self._register("cancelErrors", handler)

    def unsubscribe_trades(self, *symbols: str) -> None:
        """Stop the trades of ``symbols``."""
        self._unsubscribe("trades", symbols)

    def unsubscribe_quotes(self, *symbols: str) -> None:
        """Stop the quotes of ``symbols``."""
        self._unsubscribe("quotes", symbols)

    def unsubscribe_bars(self, *symbols: str) -> None:
        """Stop the minute bars of ``symbols``."""
        self._unsubscribe("bars", symbols)

    def unsubscribe_updated_bars(self, *symbols: str) -> None:
        """Stop the updated bars of ``symbols``."""
        self._unsubscribe("updatedBars", symbols)

    def unsubscribe_daily_bars(self, *symbols: str) -> None:
        """Stop the daily bars of ``symbols``."""
        self._unsubscribe("dailyBars", symbols)

    def unsubscribe_trading_statuses(self, *symbols: str) -> None:
        """Stop the trading statuses of ``symbols``."""
        self._unsubscribe("statuses", symbols)


class CryptoDataStream(DataStream):
    """alpaca-py's ``CryptoDataStream``; ``feed``: ``CryptoFeed.US``, ``"us-1"`` or ``"eu-1"``."""

    CHANNELS = ("trades", "quotes", "bars", "updatedBars", "dailyBars", "orderbooks")

    def __init__(  # noqa: PLR0917 - alpaca-py's positional signature
        self,
        api_key: str,
        secret_key: str,
        raw_data: bool = False,
        feed: Any = "us",
        url_override: str | None = None,
        websocket_params: dict[str, Any] | None = None,
        data_timeout: float | None = None,
        **options: Any,
    ) -> None:
        name = _feed_name(feed)
        super().__init__(
            name if name.startswith("crypto") else f"crypto/{name}",
            api_key,
            secret_key,
            raw_data,
            websocket_params,
            url_override,
            data_timeout,
            **options,
        )

    def subscribe_trades(self, handler: Handler, *symbols: str) -> None:
        """Call ``handler(trade)`` for each trade of ``symbols`` (e.g. ``"BTC/USD"``)."""
        self._subscribe("trades", handler, symbols)

    def subscribe_quotes(self, handler: Handler, *symbols: str) -> None:
        """Call ``handler(quote)`` for each quote of ``symbols``."""
        self._subscribe("quotes", handler, symbols)

    def subscribe_bars(self, handler: Handler, *symbols: str) -> None:
        """Call ``handler(bar)`` for each minute bar of ``symbols``."""
        self._subscribe("bars", handler, symbols)

    def subscribe_updated_bars(self, handler: Handler, *symbols: str) -> None:
        """Call ``handler(bar)`` for each corrected minute bar of ``symbols``."""
        self._subscribe("updatedBars", handler, symbols)

    def subscribe_daily_bars(self, handler: Handler, *symbols: str) -> None:
        """Call ``handler(bar)`` for each running daily bar of ``symbols``."""
        self._subscribe("dailyBars", handler, symbols)

    def subscribe_orderbooks(self, handler: Handler, *symbols: str) -> None:
        """Call ``handler(book)`` for each order-book snapshot or update of ``symbols``."""
        self._subscribe("orderbooks", handler, symbols)

    def unsubscribe_trades(self, *symbols: str) -> None:
        """Stop the trades of ``symbols``."""
        self._unsubscribe("trades", symbols)

    def unsubscribe_quotes(self, *symbols: str) -> None:
        """Stop the quotes of ``symbols``."""
        self._unsubscribe("quotes", symbols)

    def unsubscribe_bars(self, *symbols: str) -> None:
        """Stop the minute bars of ``symbols``."""
        self._unsubscribe("bars", symbols)

    def unsubscribe_updated_bars(self, *symbols: str) -> None:
        """Stop the updated bars of ``symbols``."""
        self._unsubscribe("updatedBars", symbols)

    def unsubscribe_daily_bars(self, *symbols: str) -> None:
        """Stop the daily bars of ``symbols``."""
        self._unsubscribe("dailyBars", symbols)

    def unsubscribe_orderbooks(self, *symbols: str) -> None:
        """Stop the order books of ``symbols``."""
        self._unsubscribe("orderbooks", symbols)


class OptionDataStream(DataStream):
    """alpaca-py's ``OptionDataStream``; ``feed``: ``OptionsFeed.INDICATIVE`` or ``OPRA``."""

    CHANNELS = ("trades", "quotes")

    def __init__(  # noqa: PLR0917 - alpaca-py's positional signature
        self,
        api_key: str,
        secret_key: str,
        raw_data: bool = False,
        feed: Any = "indicative",
        websocket_params: dict[str, Any] | None = None,
        url_override: str | None = None,
        data_timeout: float | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            _feed_name(feed),
            api_key,
            secret_key,
            raw_data,
            websocket_params,
            url_override,
            data_timeout,
            **options,
        )

    def subscribe_trades(self, handler: Handler, *symbols: str) -> None:
        """Call ``handler(trade)`` for each trade of the contracts ``symbols``."""
        self._subscribe("trades", handler, symbols)

    def subscribe_quotes(self, handler: Handler, *symbols: str) -> None:
        """Call ``handler(quote)`` for each quote of the contracts ``symbols``."""
        self._subscribe("quotes", handler, symbols)

    def unsubscribe_trades(self, *symbols: str) -> None:
        """Stop the trades of ``symbols``."""
        self._unsubscribe("trades", symbols)

    def unsubscribe_quotes(self, *symbols: str) -> None:
        """Stop the quotes of ``symbols``."""
        self._unsubscribe("quotes", symbols)


class NewsDataStream(DataStream):
    """alpaca-py's ``NewsDataStream``."""

    CHANNELS = ("news",)

    def __init__(  # noqa: PLR0917 - alpaca-py's positional signature
        self,
        api_key: str,
        secret_key: str,
        raw_data: bool = False,
        websocket_params: dict[str, Any] | None = None,
        url_override: str | None = None,
        data_timeout: float | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            "news",
            api_key,
            secret_key,
            raw_data,
            websocket_params,
            url_override,
            data_timeout,
            **options,
        )

    def subscribe_news(self, handler: Handler, *symbols: str) -> None:
        """Call ``handler(article)`` for each article about ``symbols`` (``"*"``: all)."""
        self._subscribe("news", handler, symbols)

    def unsubscribe_news(self, *symbols: str) -> None:
        """Stop the news of ``symbols``."""
        self._unsubscribe("news", symbols)
