"""The client against AlpacaStreamServer over real sockets: data on every endpoint kind."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import reactivex

import rxalpaca
from rxalpaca import ConnectionState, StreamClient, ops
from rxalpaca.models import (
    CryptoQuote,
    CryptoTrade,
    News,
    OptionQuote,
    OptionTrade,
    OrderBook,
    Quote,
    Trade,
)
from rxalpaca.testing import AlpacaStreamServer

from .conftest import Collector

NS = 1_700_000_000_123_456_789
pytestmark = pytest.mark.timeout(30)


def quote(sym: str, bid: float, i: int = 0) -> dict[str, Any]:
    return {
        "T": "q",
        "S": sym,
        "bx": "V",
        "bp": bid,
        "bs": 3,
        "ax": "Q",
        "ap": bid + 0.02,
        "as": 4,
        "c": ["R"],
        "z": "C",
        "t": NS + i,
    }


def trade(sym: str, price: float, i: int = 0) -> dict[str, Any]:
    return {
        "T": "t",
        "S": sym,
        "i": 1000 + i,
        "x": "D",
        "p": price,
        "s": 100,
        "c": ["@", "I"],
        "z": "C",
        "t": NS + i,
    }


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_stock_quotes_and_trades_arrive_typed_and_exact(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
    encoding: str,
) -> None:
    client = make_client(alpaca_server, encoding=encoding)
    quotes, trades = collector(), collector()
    client.quotes("AAPL").subscribe(quotes)
    client.trades("AAPL", "MSFT").subscribe(trades)
    alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}, "trades": {"AAPL", "MSFT"}})
    alpaca_server.publish(
        [
            quote("AAPL", 187.25, 1),
            trade("MSFT", 401.5, 2),
            quote("TSLA", 1.0),
            trade("AAPL", 187.3, 3),
        ]
    )
    [q] = quotes.wait_for(1)
    got = trades.wait_for(2)
    assert isinstance(q, Quote) and q.symbol == "AAPL" and q.bid_price == 187.25
    assert q.ask_size == 4 and q.conditions == ("R",) and q.timestamp_ns == NS + 1
    assert q.received_ns > 0
    assert [(t.symbol, t.price, t.id) for t in got] == [
        ("MSFT", 401.5, 1002),
        ("AAPL", 187.3, 1003),
    ]
    assert all(isinstance(t, Trade) and t.timestamp_ns == NS + t.id - 1000 for t in got)
    conn = alpaca_server.wait_for_authenticated()
    assert conn.encoding == encoding
    assert client.current_state is ConnectionState.AUTHENTICATED


def test_crypto_trades_quotes_and_order_book_snapshot(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
) -> None:
    client = make_client(alpaca_server, "crypto")
    books, trades, quotes = collector(), collector(), collector()
    client.orderbooks("BTC/USD").subscribe(books)
    client.trades("BTC/USD").subscribe(trades)
    client.quotes("ETH/USD").subscribe(quotes)
    alpaca_server.wait_for_subscriptions(
        {"orderbooks": {"BTC/USD"}, "trades": {"BTC/USD"}, "quotes": {"ETH/USD"}}
    )
    [snap] = books.wait_for(1)  # S27: a full book right after the ack
    assert isinstance(snap, OrderBook) and snap.reset and snap.symbol == "BTC/USD"
    alpaca_server.publish(
        [
            {
                "T": "t",
                "S": "BTC/USD",
                "p": 71000.5,
                "s": 0.0123,
                "t": NS,
                "i": 3447222699101865076,
                "tks": "S",
            },
            {"T": "q", "S": "ETH/USD", "bp": 3500.1, "bs": 1.5, "ap": 3500.2, "as": 2.25, "t": NS},
        ]
    )
    [t] = trades.wait_for(1)
    [q] = quotes.wait_for(1)
    assert isinstance(t, CryptoTrade) and t.id == 3447222699101865076 and t.size == 0.0123
    assert isinstance(q, CryptoQuote) and q.ask_size == 2.25


def test_options_over_msgpack(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
) -> None:
    client = make_client(alpaca_server, "indicative")
    sym = "AAPL240315C00172500"
    trades, quotes = collector(), collector()
    client.trades(sym).subscribe(trades)
    client.quotes(sym).subscribe(quotes)
    alpaca_server.wait_for_subscriptions({"trades": {sym}, "quotes": {sym}})
    alpaca_server.publish(
        [
            {"T": "t", "S": sym, "t": NS, "p": 2.84, "s": 1, "x": "N", "c": "S"},
            {
                "T": "q",
                "S": sym,
                "t": NS,
                "bx": "C",
                "bp": 9.46,
                "bs": 53,
                "ax": "C",
                "ap": 9.66,
                "as": 38,
                "c": "A",
            },
        ]
    )
    [t] = trades.wait_for(1)
    [q] = quotes.wait_for(1)
    assert isinstance(t, OptionTrade) and t.condition == "S" and t.price == 2.84
    assert isinstance(q, OptionQuote) and q.condition == "A" and q.bid_size == 53


def test_options_refuse_json_at_construction(alpaca_server: AlpacaStreamServer) -> None:
    with pytest.raises(rxalpaca.ConfigurationError, match="MessagePack only"):
        StreamClient("opra", url=alpaca_server.base_url, key="k", secret="s", encoding="json")


def test_news_by_symbol_and_star(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
) -> None:
    client = make_client(alpaca_server, "news", encoding="json")
    aapl, everything = collector(), collector()
    client.news("AAPL").subscribe(aapl)
    client.news("*").subscribe(everything)
    alpaca_server.wait_for_subscriptions({"news": {"AAPL", "*"}})
    base = {
        "T": "n",
        "headline": "h",
        "summary": "",
        "author": "a",
        "created_at": NS,
        "updated_at": NS,
        "url": "",
        "content": "<p>x</p>",
        "source": "benzinga",
    }
    alpaca_server.publish(
        [
            {**base, "id": 1, "symbols": ["AAPL", "MSFT"]},
            {**base, "id": 2, "symbols": []},
            {**base, "id": 3, "symbols": ["TSLA"]},
        ]
    )
    got = everything.wait_for(3)
    assert [n.id for n in got] == [1, 2, 3]
    assert [n.id for n in aapl.wait_for(1)] == [1]
    assert isinstance(got[0], News) and got[0].created_at_ns == NS


def test_test_stream_fakepaca(
    alpaca_server_factory: Callable[..., AlpacaStreamServer],
    make_client: Callable[..., StreamClient],
) -> None:
    server = alpaca_server_factory(test_stream_speed=100.0)
    client = make_client(server, "test", encoding="json")
    got = list(rxalpaca.iterate(client.quotes("FAKEPACA").pipe(ops.take(2)), timeout=10))
    assert [q.symbol for q in got] == ["FAKEPACA", "FAKEPACA"]


def test_market_stream_end_to_end_accounting(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
) -> None:
    client = make_client(alpaca_server)
    symbols = [f"S{i}" for i in range(20)]
    both = collector()
    reactivex.merge(client.quotes(*symbols), client.trades(*symbols)).subscribe(both)
    alpaca_server.wait_for_subscriptions({"quotes": set(symbols), "trades": set(symbols)})
    handle = alpaca_server.start_market(
        symbols=symbols, rate=None, batch=10, total=2000, mix={"q": 1.0, "t": 1.0}
    )
    assert handle.done.wait(10)
    conn = alpaca_server.wait_for_authenticated()
    sent = alpaca_server.connection(conn).sent_data_count
    assert sent == 2000
    both.wait_for(sent, timeout=10)
    assert len(both.items) == sent
    m = client.metrics
    assert m.frames_balance() and m.messages_balance()
    assert m.messages_delivered >= sent
    # per symbol, in order
    for kind in (Quote, Trade):
        for sym in symbols:
            times = [r.timestamp_ns for r in both.items if r.symbol == sym and type(r) is kind]
            assert times == sorted(times)


def test_async_bridge(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
) -> None:
    import asyncio

    client = make_client(alpaca_server)

    async def main() -> list[float]:
        out = []
        async for qt in rxalpaca.aiterate(client.quotes("AAPL").pipe(ops.take(3))):
            out.append(qt.bid_price)
        return out

    async def runner() -> list[float]:
        task = asyncio.ensure_future(main())
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}})
        )
        alpaca_server.publish([quote("AAPL", float(i), i) for i in range(3)])
        return await asyncio.wait_for(task, 10)

    assert asyncio.run(runner()) == [0.0, 1.0, 2.0]


def test_iterate_times_out(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
) -> None:
    client = make_client(alpaca_server)
    with pytest.raises(TimeoutError):
        next(iter(rxalpaca.iterate(client.quotes("NODATA"), timeout=0.3)))
