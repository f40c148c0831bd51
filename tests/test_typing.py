"""Typed streams: an editor knows each feed's record types (checked by ``mypy --strict``).

``assert_type`` does nothing at run time; ``.ci/run`` type-checks this file, and
mypy fails it if ``client.trades(...)`` on a stock feed were anything but
``Stream[Trade]``. The run-time part checks the clients really build.
"""

from __future__ import annotations

from typing import Any, assert_type

from rxalpaca import (
    Bar,
    CryptoBar,
    CryptoQuote,
    CryptoTrade,
    DailyBar,
    OptionQuote,
    OptionTrade,
    Quote,
    StreamClient,
    Trade,
    UpdatedBar,
)
from rxalpaca.models import News, OrderBook
from rxalpaca.streams import Stream


def test_stock_feeds_give_stock_records() -> None:
    with StreamClient("iex", key="k", secret="s") as client:
        assert_type(client.trades("AAPL"), Stream[Trade])
        assert_type(client.quotes("AAPL"), Stream[Quote])
        assert_type(client.bars("AAPL"), Stream[Bar])
        assert_type(client.daily_bars("AAPL"), Stream[DailyBar])
        assert_type(client.updated_bars("AAPL"), Stream[UpdatedBar])
    with StreamClient(key="k", secret="s") as default:  # "iex"
        assert_type(default.trades("AAPL"), Stream[Trade])


def test_crypto_feeds_give_crypto_records() -> None:
    with StreamClient("crypto", key="k", secret="s") as client:
        assert_type(client.trades("BTC/USD"), Stream[CryptoTrade])
        assert_type(client.quotes("BTC/USD"), Stream[CryptoQuote])
        assert_type(client.bars("BTC/USD"), Stream[CryptoBar])
        assert_type(client.orderbooks("BTC/USD"), Stream[OrderBook])


def test_option_feeds_give_option_records() -> None:
    with StreamClient("opra", key="k", secret="s") as client:
        assert_type(client.trades("AAPL240315C00172500"), Stream[OptionTrade])
        assert_type(client.quotes("AAPL240315C00172500"), Stream[OptionQuote])


def test_a_feed_chosen_at_run_time_gives_any() -> None:
    feed: str = "iex"
    with StreamClient(feed, key="k", secret="s") as client:
        assert_type(client.trades("AAPL"), Stream[Any])
        plain: StreamClient = client  # a bare annotation needs no type arguments
        assert plain.endpoint.feed == "iex"
    with StreamClient("news", key="k", secret="s") as news:
        assert_type(news.news("*"), Stream[News])
