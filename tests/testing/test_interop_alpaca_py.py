"""Interop proof: the official SDK alpaca-py (MessagePack) against AlpacaStreamServer.

alpaca-py authenticates, subscribes, and receives exactly the records the test
publishes: symbols, prices, sizes and timestamps compared field by field.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from rxalpaca.testing import DEFAULT_KEY, DEFAULT_SECRET, AlpacaStreamServer

pytestmark = [
    pytest.mark.timeout(30),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

live = pytest.importorskip("alpaca.data.live")

T0 = 1_700_000_000_123_456_000  # microsecond-exact: alpaca-py keeps datetimes


def _dt(ns: int) -> datetime:
    return datetime.fromtimestamp(ns // 1_000_000_000, UTC).replace(
        microsecond=(ns % 1_000_000_000) // 1000
    )


def test_alpaca_py_stock_stream_receives_published_records(
    alpaca_server: AlpacaStreamServer,
) -> None:
    server = alpaca_server
    stream = live.StockDataStream(DEFAULT_KEY, DEFAULT_SECRET, url_override=server.url("iex"))
    got: dict[str, list[Any]] = {"trades": [], "quotes": [], "bars": []}
    lock = threading.Lock()
    all_in = threading.Event()
    expected_counts = {"trades": 3, "quotes": 2, "bars": 1}

    def make_handler(kind: str) -> Any:
        async def handler(rec: Any) -> None:
            with lock:
                got[kind].append(rec)
                if all(len(got[k]) >= n for k, n in expected_counts.items()):
                    all_in.set()

        return handler

    stream.subscribe_trades(make_handler("trades"), "AAPL", "MSFT")
    stream.subscribe_quotes(make_handler("quotes"), "AAPL")
    stream.subscribe_bars(make_handler("bars"), "SPY")

    errors: list[BaseException] = []

    def run() -> None:
        try:
            stream.run()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=run, name="alpaca-py", daemon=True)
    thread.start()
    try:
        info = server.wait_for_subscriptions(
            {"trades": {"AAPL", "MSFT"}, "quotes": {"AAPL"}, "bars": {"SPY"}}, timeout=10
        )
        assert info.authenticated and info.encoding == "msgpack"
        assert info.received[0] == {"action": "auth", "key": DEFAULT_KEY, "secret": DEFAULT_SECRET}
        assert info.headers.get("User-Agent", "").startswith("APCA-PY")

        trades: list[dict[str, Any]] = [
            {
                "T": "t",
                "S": "AAPL",
                "i": 1,
                "x": "V",
                "p": 187.25,
                "s": 100,
                "c": ["@"],
                "z": "C",
                "t": T0,
            },
            {
                "T": "t",
                "S": "MSFT",
                "i": 2,
                "x": "Q",
                "p": 402.0,
                "s": 5,
                "c": ["@", "I"],
                "z": "C",
                "t": T0 + 1000,
            },
            {
                "T": "t",
                "S": "AAPL",
                "i": 3,
                "x": "K",
                "p": 187.26,
                "s": 7,
                "c": [" "],
                "z": "C",
                "t": T0 + 2000,
            },
        ]
        quotes: list[dict[str, Any]] = [
            {
                "T": "q",
                "S": "AAPL",
                "bx": "V",
                "bp": 187.2,
                "bs": 3,
                "ax": "Q",
                "ap": 187.3,
                "as": 4,
                "c": ["R"],
                "z": "C",
                "t": T0 + 3000,
            },
            {
                "T": "q",
                "S": "AAPL",
                "bx": "V",
                "bp": 187.21,
                "bs": 1,
                "ax": "Q",
                "ap": 187.31,
                "as": 2,
                "c": ["R"],
                "z": "C",
                "t": T0 + 4000,
            },
        ]
        bars: list[dict[str, Any]] = [
            {
                "T": "b",
                "S": "SPY",
                "o": 450.0,
                "h": 451.5,
                "l": 449.75,
                "c": 451.0,
                "v": 12345,
                "n": 321,
                "vw": 450.6,
                "t": 1_700_000_040_000_000_000,
            }
        ]
        noise = [
            {"T": "t", "S": "TSLA", "i": 9, "x": "V", "p": 1.0, "s": 1, "c": [], "z": "C", "t": T0}
        ]
        server.publish(noise + trades + quotes + bars)
        assert all_in.wait(10), got

        with lock:
            tr, qu, ba = list(got["trades"]), list(got["quotes"]), list(got["bars"])
        assert [(t.symbol, t.price, t.size, t.exchange, t.id) for t in tr] == [
            (r["S"], r["p"], r["s"], r["x"], r["i"]) for r in trades
        ]
        assert [t.timestamp for t in tr] == [_dt(r["t"]) for r in trades]
        assert [(q.symbol, q.bid_price, q.bid_size, q.ask_price, q.ask_size) for q in qu] == [
            (r["S"], r["bp"], r["bs"], r["ap"], r["as"]) for r in quotes
        ]
        assert [q.timestamp for q in qu] == [_dt(r["t"]) for r in quotes]
        (bar,) = ba
        assert (
            bar.symbol,
            bar.open,
            bar.high,
            bar.low,
            bar.close,
            bar.volume,
            bar.trade_count,
            bar.vwap,
        ) == ("SPY", 450.0, 451.5, 449.75, 451.0, 12345, 321, 450.6)
        assert bar.timestamp == datetime(2023, 11, 14, 22, 14, tzinfo=UTC)
    finally:
        stream.stop()
        # alpaca-py notices the stop request between receives: wake it with an empty frame.
        for c in server.connections(include_closed=False):
            server.send_raw(b"\x90", conn=c)
        thread.join(10)
    assert not thread.is_alive()
    assert not errors
    server.wait_for(lambda cs: all(c.closed for c in cs))


class _Runner:
    """Runs an alpaca-py data stream in a thread and collects what its handlers get."""

    def __init__(self, stream: Any, server: AlpacaStreamServer) -> None:
        self.stream = stream
        self.server = server
        self.got: list[Any] = []
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.thread = threading.Thread(target=stream.run, name="alpaca-py", daemon=True)

    async def handler(self, rec: Any) -> None:
        with self.cond:
            self.got.append(rec)
            self.cond.notify_all()

    def wait_for(self, n: int, timeout: float = 10) -> list[Any]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.got) >= n, timeout), self.got
            return list(self.got)

    def __enter__(self) -> _Runner:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stream.stop()
        for c in self.server.connections(include_closed=False):
            self.server.send_raw(b"\x90", conn=c)  # wake alpaca-py's 5 s receive loop
        self.thread.join(10)
        assert not self.thread.is_alive()


def test_alpaca_py_crypto_stream_orderbook_snapshot_and_big_ids(
    alpaca_server: AlpacaStreamServer,
) -> None:
    """Crypto: alpaca-py gets the r:true book after subscribing (S27) and a trade whose
    id exceeds 2^53 (S32) intact."""
    stream = live.CryptoDataStream(
        DEFAULT_KEY, DEFAULT_SECRET, url_override=alpaca_server.url("crypto/us")
    )
    runner = _Runner(stream, alpaca_server)
    stream.subscribe_orderbooks(runner.handler, "BTC/USD")
    stream.subscribe_trades(runner.handler, "BTC/USD")
    with runner:
        alpaca_server.wait_for_subscriptions(
            {"orderbooks": ["BTC/USD"], "trades": ["BTC/USD"]}, timeout=10
        )
        (book,) = runner.wait_for(1)
        assert book.symbol == "BTC/USD" and book.reset is True and book.bids and book.asks
        big = 3447222699101865076
        alpaca_server.publish(
            [
                {
                    "T": "t",
                    "S": "BTC/USD",
                    "p": 67000.5,
                    "s": 0.012345678,
                    "t": T0,
                    "i": big,
                    "tks": "B",
                }
            ]
        )
        trade = runner.wait_for(2)[1]
        assert (trade.symbol, trade.price, trade.size, trade.id) == (
            "BTC/USD",
            67000.5,
            0.012345678,
            big,
        )
        assert trade.timestamp == _dt(T0)


def test_alpaca_py_option_stream(alpaca_server: AlpacaStreamServer) -> None:
    """Options (MessagePack only): alpaca-py parses trades whose c is a single string."""
    stream = live.OptionDataStream(
        DEFAULT_KEY, DEFAULT_SECRET, url_override=alpaca_server.url("indicative")
    )
    runner = _Runner(stream, alpaca_server)
    sym = "AAPL240315C00172500"
    stream.subscribe_trades(runner.handler, sym)
    stream.subscribe_quotes(runner.handler, sym)
    with runner:
        alpaca_server.wait_for_subscriptions({"trades": [sym], "quotes": [sym]}, timeout=10)
        alpaca_server.publish(
            [
                {"T": "t", "S": sym, "t": T0, "p": 2.84, "s": 1, "x": "N", "c": "S"},
                {
                    "T": "q",
                    "S": sym,
                    "t": T0 + 1000,
                    "bx": "C",
                    "bp": 2.8,
                    "bs": 53,
                    "ax": "C",
                    "ap": 2.9,
                    "as": 38,
                    "c": "A",
                },
            ]
        )
        trade, quote = runner.wait_for(2)
        assert (trade.symbol, trade.price, trade.size) == (sym, 2.84, 1)
        assert (quote.bid_price, quote.bid_size, quote.ask_price, quote.ask_size) == (
            2.8,
            53,
            2.9,
            38,
        )
        assert quote.timestamp == _dt(T0 + 1000)
