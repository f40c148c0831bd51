"""Typed streams: an editor knows each feed's record types (checked by ``mypy --strict``).

``assert_type`` does nothing at run time; ``.ci/run`` type-checks this file, and
mypy fails it if ``client.trades(...)`` on a stock feed were anything but
``Observable[Trade]``. The run-time part checks the clients really build.
"""

from __future__ import annotations

from typing import Any, assert_type

from reactivex import Observable

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


def test_stock_feeds_give_stock_records() -> None:
    with StreamClient("iex", key="k", secret="s") as client:
        assert_type(client.trades("AAPL"), Observable[Trade])
        assert_type(client.quotes("AAPL"), Observable[Quote])
        assert_type(client.bars("AAPL"), Observable[Bar])
        assert_type(client.daily_bars("AAPL"), Observable[DailyBar])
        assert_type(client.updated_bars("AAPL"), Observable[UpdatedBar])
    with StreamClient(key="k", secret="s") as default:  # "iex"
        assert_type(default.trades("AAPL"), Observable[Trade])


def test_crypto_feeds_give_crypto_records() -> None:
    with StreamClient("crypto", key="k", secret="s") as client:
        assert_type(client.trades("BTC/USD"), Observable[CryptoTrade])
        assert_type(client.quotes("BTC/USD"), Observable[CryptoQuote])
        assert_type(client.bars("BTC/USD"), Observable[CryptoBar])
        assert_type(client.orderbooks("BTC/USD"), Observable[OrderBook])


def test_option_feeds_give_option_records() -> None:
    with StreamClient("opra", key="k", secret="s") as client:
        assert_type(client.trades("AAPL240315C00172500"), Observable[OptionTrade])
        assert_type(client.quotes("AAPL240315C00172500"), Observable[OptionQuote])


def test_a_feed_chosen_at_run_time_gives_any() -> None:
    feed: str = "iex"
    with StreamClient(feed, key="k", secret="s") as client:
        assert_type(client.trades("AAPL"), Observable[Any])
        plain: StreamClient = client  # a bare annotation needs no type arguments
        assert plain.endpoint.feed == "iex"
    with StreamClient("news", key="k", secret="s") as news:
        assert_type(news.news("*"), Observable[News])
