"""A user's mistakes get one clear sentence at the call, and lose nothing (issue #9).

Unknown feeds, malformed symbols, a list passed as one argument, an ``async def``
observer, and an observer that raises on every message — over real sockets.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import pytest

from rxalpaca import ConfigurationError, ConnectionState, StreamClient, errors
from rxalpaca.testing import DEFAULT_KEY, DEFAULT_SECRET, AlpacaStreamServer

from .conftest import Collector
from .test_client_semantics import quote, subscribe_messages

pytestmark = pytest.mark.timeout(30)


# ---------------------------------------------------------------- feeds (item 9)


def test_an_unknown_feed_is_a_configuration_error_naming_every_feed() -> None:
    with pytest.raises(ConfigurationError) as info:
        StreamClient(feed="nasdaq", key=DEFAULT_KEY, secret=DEFAULT_SECRET)
    msg = str(info.value)
    assert "unknown feed 'nasdaq'" in msg
    assert "iex" in msg and "crypto (= crypto/us)" in msg and "options (= indicative)" in msg


def test_feed_names_are_case_insensitive(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
) -> None:
    client = make_client(alpaca_server, " IEX ")
    assert client.endpoint.feed == "iex" and client.url.endswith("/v2/iex")
    got = collector()
    client.quotes("AAPL").subscribe(got)
    alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}})
    alpaca_server.publish([quote("AAPL")])
    assert got.wait_for(1)[0].symbol == "AAPL"


# ---------------------------------------------------------------- symbols (items 9 and 2)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (123, r"a symbol must be a string such as 'AAPL', not 123 \(int\)"),
        (None, r"not None \(NoneType\)"),
        (b"AAPL", r"not b'AAPL' \(bytes\)"),
        (["AAPL", 1], r"not 1 \(int\) in \['AAPL', 1\]"),
    ],
)
def test_a_symbol_that_is_not_a_string_is_named_with_its_type(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    value: Any,
    says: str,
) -> None:
    client = make_client(alpaca_server)
    with pytest.raises(ConfigurationError, match=says):
        client.quotes(value)
    assert client.current_state is ConnectionState.IDLE  # nothing was opened or sent


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_a_list_of_symbols_means_the_same_as_separate_arguments(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
    encoding: str,
) -> None:
    client = make_client(alpaca_server, encoding=encoding)
    got = collector()
    client.quotes(["AAPL", "msft"]).subscribe(got)
    alpaca_server.wait_for_subscriptions({"quotes": {"AAPL", "MSFT"}})
    alpaca_server.publish([quote("AAPL", 0), quote("MSFT", 1)])
    assert [q.symbol for q in got.wait_for(2)] == ["AAPL", "MSFT"]


@pytest.mark.parametrize(
    "case",
    [
        ("iex", "BAD!!", "'BAD!!' is not a stock symbol", "AAPL"),
        ("crypto", "BTCUSD", "crypto symbols are BASE/QUOTE, e.g. 'BTC/USD'", "BTC/USD"),
        ("indicative", "AAPL", "'AAPL' is not an option symbol", "AAPL240315C00172500"),
        ("news", "A B", "'A B' is not a news symbol", "BTCUSD"),
    ],
    ids=lambda case: case[0],
)
def test_a_malformed_symbol_is_refused_at_the_call_before_anything_is_sent(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
    case: tuple[str, str, str, str],
) -> None:
    feed, bad, says, good = case
    client = make_client(alpaca_server, feed)
    problems = collector()
    client.errors.subscribe(problems)
    channel = "news" if feed == "news" else "trades"
    stream = getattr(client, channel)
    with pytest.raises(ConfigurationError, match=says):
        stream(good, bad)  # one bad symbol refuses the whole call, as the server would
    assert client.current_state is ConnectionState.IDLE
    # The client is unharmed: a good subscription goes through, and the server never
    # saw the bad symbol (nor answered 400).
    stream(good).subscribe(collector())
    alpaca_server.wait_for_subscriptions({channel: {good}})
    assert subscribe_messages(alpaca_server) == [{"action": "subscribe", channel: [good]}]
    assert problems.items == []


# ---------------------------------------------------------------- async observers (item 10)


async def on_trade(_t: Any) -> None:  # what an alpaca-py user writes on day one
    raise AssertionError("never called")


class AsyncObserver:
    async def on_next(self, _t: Any) -> None:
        raise AssertionError("never called")

    def on_error(self, _e: Exception) -> None:
        raise AssertionError("never called")

    def on_completed(self) -> None:
        raise AssertionError("never called")


class AsyncCallable:
    async def __call__(self, _t: Any) -> None:
        raise AssertionError("never called")


def _sync_errors(seen: list[Exception]) -> Callable[[Exception], None]:
    return seen.append


@pytest.mark.parametrize(
    ("subscribe_with", "name"),
    [
        (lambda o: o.subscribe(on_trade), "on_trade"),
        # A sync on_error given too: the mistake is still raised at the call, not mailed.
        (lambda o: o.subscribe(on_trade, _sync_errors([])), "on_trade"),
        (lambda o: o.subscribe(on_next=functools.partial(on_trade)), "on_trade"),
        (lambda o: o.subscribe(AsyncObserver()), "AsyncObserver.on_next"),
        (lambda o: o.subscribe(AsyncCallable()), "AsyncCallable"),
        (lambda o: o.subscribe(print, on_error=on_trade), "on_trade"),
    ],
    ids=["function", "with-on_error", "partial", "observer", "callable", "async-on_error"],
)
def test_an_async_observer_is_refused_at_subscribe_and_nothing_is_subscribed(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
    subscribe_with: Callable[[Any], Any],
    name: str,
) -> None:
    client = make_client(alpaca_server)
    with pytest.raises(ConfigurationError) as info:
        subscribe_with(client.trades("AAPL", "msft"))
    msg = str(info.value)
    assert msg.startswith(f"{name} is an async function")
    assert "async for item in rxalpaca.aiterate(client.trades('AAPL', 'MSFT')): ..." in msg
    # No routing entry, no reference count, no connection.
    assert client._router.entries() == 0 and client._book.live == 0
    assert client.current_state is ConnectionState.IDLE
    got = collector()
    client.trades("MSFT").subscribe(got)
    alpaca_server.wait_for_subscriptions({"trades": {"MSFT"}})
    assert subscribe_messages(alpaca_server) == [{"action": "subscribe", "trades": ["MSFT"]}]


def test_the_refusal_names_the_method_that_was_called(
    alpaca_server: AlpacaStreamServer, make_client: Callable[..., StreamClient]
) -> None:
    client = make_client(alpaca_server)
    with pytest.raises(ConfigurationError, match=r"client\.daily_bars\('AAPL'\)"):
        client.daily_bars("AAPL").subscribe(on_trade)  # the mistake


# ---------------------------------------------------------------- a raising observer (item 5)


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_an_observer_raising_on_every_message_logs_one_traceback_and_counts_all(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
    caplog: pytest.LogCaptureFixture,
    encoding: str,
) -> None:
    caplog.set_level(logging.DEBUG, logger="rxalpaca")
    n = 200
    client = make_client(alpaca_server, encoding=encoding)
    problems, good = collector(), collector()
    client.errors.subscribe(problems)

    def strategy(_q: Any) -> None:
        raise ValueError("strategy bug")

    def other(_q: Any) -> None:
        raise ValueError("another bug")

    client.quotes("AAPL").subscribe(strategy)
    client.quotes("AAPL").subscribe(other)
    client.quotes("AAPL").subscribe(good)
    alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}})
    alpaca_server.publish([quote("AAPL", i) for i in range(n)])
    good.wait_for(n)
    handled = problems.wait_for(2 * n)
    # Every failure is still counted and published ...
    assert len(handled) == 2 * n and all(isinstance(e, errors.HandlerError) for e in handled)
    assert client.metrics.handler_errors == 2 * n
    # ... but each observer wrote one traceback, not one per message.
    tracebacks = [r for r in caplog.records if r.exc_info is not None]
    assert len(tracebacks) == 2
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 2
    here = "test_an_observer_raising_on_every_message_logs_one_traceback_and_counts_all"
    assert sorted(r.getMessage() for r in tracebacks) == [
        f"observer {here}.<locals>.{fn} raised ValueError while handling Quote"
        for fn in ("other", "strategy")
    ]
    assert "strategy bug" in caplog.text and "another bug" in caplog.text
    assert client.current_state is ConnectionState.AUTHENTICATED
