"""rxalpaca.compat: alpaca-py programs run unchanged but for the import.

The programs are alpaca-py's documented streaming examples, each run as a real
subprocess twice — under alpaca-py itself and under ``rxalpaca.compat`` — against the
embedded server; the only edits are the import line and the constructor's
``url_override`` and keys (to reach the server instead of Alpaca).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rxalpaca import models
from rxalpaca.codec import Codec
from rxalpaca.compat import (
    CryptoDataStream,
    DataStream,
    NewsDataStream,
    OptionDataStream,
    StockDataStream,
    raw_dict,
)
from rxalpaca.errors import AuthFailed, ConfigurationError
from rxalpaca.testing import DEFAULT_KEY, DEFAULT_SECRET, AlpacaStreamServer
from tests._subprocess import child_env, python_command
from tests.conftest import TIMING_FACTOR

ROOT = Path(__file__).resolve().parents[2]

# alpaca-py's README ("Real-time data") — verbatim but for {import}, the keys and the URL.
README_EXAMPLE = """\
from {module} import StockDataStream

wss_client = StockDataStream({key!r}, {secret!r}, url_override={url!r})

# async handler
async def quote_data_handler(data):
    # quote data will arrive here
    print(data)

wss_client.subscribe_quotes(quote_data_handler, "SPY")

wss_client.run()
"""

# A raw_data program as found in the wild: reads wire keys.
RAW_EXAMPLE = """\
from {module} import StockDataStream

idx = 0
async def quote_data_handler(data):
    global idx
    if idx == 0:
        ticker, bid_price, ask_price = data['S'], data['bp'], data['ap']
        print(ticker, bid_price, ask_price)
    idx = (idx + 1) % 15

wss_client = StockDataStream({key!r}, {secret!r}, raw_data=True, url_override={url!r})
wss_client.subscribe_quotes(quote_data_handler, "AAPL")
wss_client.run()
"""

# alpaca-py's docs ("Market Data" > "Real Time Data"), for crypto.
CRYPTO_EXAMPLE = """\
from {module} import CryptoDataStream

wss_client = CryptoDataStream({key!r}, {secret!r}, url_override={crypto_url!r})

# async handler
async def quote_data_handler(data):
    # quote data will arrive here
    print(data)

wss_client.subscribe_quotes(quote_data_handler, "BTC/USD")

wss_client.run()
"""

ALPACA = "alpaca.data.live"
OURS = "rxalpaca.compat"


def run_until_sigint(
    program: str, tmp_path: Path, name: str, lines: int = 2, *, strict: bool = True
) -> tuple[int | None, list[str], str]:
    """Run ``program``; once it printed ``lines`` lines, SIGINT it; (rc, stdout lines, stderr).

    ``strict``: one SIGINT must end it. Otherwise (alpaca-py, whose run() can swallow
    the first Ctrl-C) it gets more, as a user would press Ctrl-C again, then a kill.
    """
    script = tmp_path / f"{name}.py"
    script.write_text(program)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        python_command(str(script)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(env),
    )
    try:
        assert proc.stdout is not None
        seen = [proc.stdout.readline() for _ in range(lines)]
        proc.send_signal(signal.SIGINT)
        if strict:
            out, err = proc.communicate(timeout=30 * TIMING_FACTOR)
        else:
            for _ in range(3):
                try:
                    out, err = proc.communicate(timeout=3 * TIMING_FACTOR)
                    break
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGINT)
            else:
                proc.kill()
                out, err = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, [s for s in seen + out.splitlines() if s.strip()], err


@pytest.mark.parametrize(
    ("program", "symbol", "check"),
    [
        (README_EXAMPLE, "SPY", lambda line: "symbol='SPY'" in line and "bid_price=" in line),
        (RAW_EXAMPLE, "AAPL", lambda line: line.startswith("AAPL ")),
        (CRYPTO_EXAMPLE, "BTC/USD", lambda line: "symbol='BTC/USD'" in line and "size=" in line),
    ],
    ids=["readme", "raw_data", "crypto"],
)
@pytest.mark.parametrize("module", [ALPACA, OURS], ids=["alpaca-py", "compat"])
def test_an_alpaca_py_program_runs_unchanged_but_for_the_import(  # noqa: PLR0917
    alpaca_server: AlpacaStreamServer,
    tmp_path: Path,
    program: str,
    symbol: str,
    check: Callable[[str], bool],
    module: str,
) -> None:
    alpaca_server.start_market(symbols=[symbol], rate=200)
    code = program.format(
        module=module,
        key=DEFAULT_KEY,
        secret=DEFAULT_SECRET,
        url=alpaca_server.url("iex"),
        crypto_url=alpaca_server.url("crypto/us"),
    )
    ours = module == OURS
    rc, lines, err = run_until_sigint(code, tmp_path, "example", strict=ours)
    data = [line for line in lines if "keyboard interrupt" not in line]
    assert data and all(check(line) for line in data[:2]), lines
    if ours:  # one Ctrl-C ends it cleanly
        assert rc == 0, err
        assert "Traceback" not in err, err


# ---------------------------------------------------------------- in process


def quote(i: int, symbol: str) -> dict[str, Any]:
    return {
        "T": "q",
        "S": symbol,
        "bp": float(i),
        "bs": 1,
        "ap": float(i) + 0.01,
        "as": 1,
        "bx": "V",
        "ax": "V",
        "t": 1_700_000_000_000_000_000 + i,
        "c": ["R"],
        "z": "C",
    }


@pytest.fixture
def running() -> Iterator[Callable[[DataStream], threading.Thread]]:
    """Start ``stream.run()`` in a thread; stop and join it at the end."""
    started: list[tuple[DataStream, threading.Thread]] = []

    def start(stream: DataStream) -> threading.Thread:
        thread = threading.Thread(target=stream.run, name="compat-run", daemon=True)
        thread.start()
        started.append((stream, thread))
        return thread

    yield start
    for stream, thread in started:
        stream.stop()
        thread.join(10)


def test_a_symbols_own_handler_wins_over_star_and_unsubscribe_stops_it(
    alpaca_server: AlpacaStreamServer, running: Callable[[DataStream], threading.Thread]
) -> None:
    stream = StockDataStream(DEFAULT_KEY, DEFAULT_SECRET, url_override=alpaca_server.url("iex"))
    got: list[tuple[str, str, float]] = []
    cond = threading.Condition()

    def note(who: str, q: Any) -> None:
        with cond:
            got.append((who, q.symbol, q.bid_price))
            cond.notify_all()

    async def on_any(q: Any) -> None:
        note("star", q)

    async def on_aapl(q: Any) -> None:
        note("aapl", q)
        assert threading.current_thread().name == "compat-run"  # on run()'s loop

    stream.subscribe_quotes(on_any, "*")
    stream.subscribe_quotes(on_aapl, "AAPL")
    running(stream)
    alpaca_server.wait_for_subscriptions({"quotes": {"*", "AAPL"}})
    alpaca_server.publish([quote(1, "AAPL"), quote(2, "MSFT")])
    with cond:
        assert cond.wait_for(lambda: len(got) >= 2, 10 * TIMING_FACTOR)
    assert sorted(got) == [("aapl", "AAPL", 1.0), ("star", "MSFT", 2.0)]
    stream.unsubscribe_quotes("AAPL")
    alpaca_server.wait_for_subscriptions({"quotes": {"*"}})
    alpaca_server.publish([quote(3, "AAPL")])
    with cond:
        assert cond.wait_for(lambda: len(got) >= 3, 10 * TIMING_FACTOR)
    assert got[2] == ("star", "AAPL", 3.0)  # "*" takes AAPL again


def test_run_raises_a_fatal_error_instead_of_retrying_for_ever(
    alpaca_server: AlpacaStreamServer,
) -> None:
    stream = StockDataStream(DEFAULT_KEY, "wrong", url_override=alpaca_server.url("iex"))

    async def on_quote(q: Any) -> None: ...

    stream.subscribe_quotes(on_quote, "AAPL")
    with pytest.raises(AuthFailed):
        stream.run()


def test_run_forever_on_the_programs_own_loop_and_stop_from_a_handler(
    alpaca_server: AlpacaStreamServer,
) -> None:
    stream = CryptoDataStream(
        DEFAULT_KEY, DEFAULT_SECRET, url_override=alpaca_server.url("crypto/us")
    )
    books: list[models.OrderBook] = []

    async def on_book(book: models.OrderBook) -> None:
        books.append(book)
        stream.stop()  # from inside a handler, on the loop

    async def main() -> None:
        stream.subscribe_orderbooks(on_book, "BTC/USD")
        task = asyncio.create_task(stream._run_forever())
        await asyncio.to_thread(alpaca_server.wait_for_subscriptions, {"orderbooks": {"BTC/USD"}})
        # The server opens with a snapshot of the book (reset=True).
        await asyncio.wait_for(task, 10 * TIMING_FACTOR)

    asyncio.run(main())
    assert len(books) == 1 and books[0].reset and books[0].bids  # stopped after one


def test_option_and_news_streams_take_alpaca_py_arguments(
    alpaca_server: AlpacaStreamServer, running: Callable[[DataStream], threading.Thread]
) -> None:
    options = OptionDataStream(
        DEFAULT_KEY, DEFAULT_SECRET, url_override=alpaca_server.url("indicative")
    )
    assert options.client.encoding == "msgpack" and options.client.endpoint.feed == "indicative"
    news = NewsDataStream(DEFAULT_KEY, DEFAULT_SECRET, url_override=alpaca_server.url("news"))
    got: list[Any] = []
    done = threading.Event()

    async def on_news(article: Any) -> None:
        got.append(article)
        done.set()

    news.subscribe_news(on_news, "*")
    running(news)
    alpaca_server.wait_for_subscriptions({"news": {"*"}})
    alpaca_server.publish(
        [
            {
                "T": "n",
                "id": 7,
                "headline": "Hi",
                "symbols": ["AAPL"],
                "created_at": 1,
                "updated_at": 1,
            }
        ],
        feed="news",
    )
    assert done.wait(10 * TIMING_FACTOR)
    assert got[0].headline == "Hi"
    options.client.close()


def test_raw_dict_gives_the_wire_names() -> None:
    codec = Codec("iex", "json")
    [record] = codec.decode(
        b'[{"T":"q","S":"AAPL","bp":1.5,"bs":2,"ap":1.6,"as":3,"bx":"V","ax":"V",'
        b'"t":"2024-01-02T03:04:05.123456789Z","c":["R"],"z":"C"}]'
    )
    assert isinstance(record, models.Quote)
    raw = raw_dict(record)
    assert raw["T"] == "q" and raw["S"] == "AAPL" and raw["bp"] == 1.5 and raw["c"] == ["R"]
    assert raw["t"].year == 2024
    assert "received_ns" not in raw


def test_run_inside_a_running_loop_works_as_in_jupyter(alpaca_server: AlpacaStreamServer) -> None:
    # A Jupyter cell runs inside the kernel's loop; alpaca-py's run() fails there.
    stream = StockDataStream(DEFAULT_KEY, DEFAULT_SECRET, url_override=alpaca_server.url("iex"))
    alpaca_server.start_market(symbols=["AAPL"], rate=200)
    seen: list[str] = []

    async def on_quote(q: Any) -> None:
        seen.append(threading.current_thread().name)
        if len(seen) == 3:
            stream.stop()

    async def cell() -> None:
        stream.subscribe_quotes(on_quote, "AAPL")
        stream.run()  # blocks the "cell" until stop()

    asyncio.run(cell())
    assert seen == ["rxalpaca-compat-loop"] * 3
    assert stream.client.lifecycle.value == "closed"


# ----------------------------------------------------- every channel, while running


def _each_channel(stream: DataStream, symbol: str, channels: tuple[str, ...]) -> None:
    """Subscribe ``symbol`` on every channel through alpaca-py's own method names."""

    async def ignore(_record: Any) -> None: ...

    for channel in channels:
        name = {"updatedBars": "updated_bars", "dailyBars": "daily_bars"}.get(channel, channel)
        if channel == "statuses":
            name = "trading_statuses"
        getattr(stream, f"subscribe_{name}")(ignore, symbol)


def _unsubscribe_each(stream: DataStream, symbol: str, channels: tuple[str, ...]) -> None:
    for channel in channels:
        name = {"updatedBars": "updated_bars", "dailyBars": "daily_bars"}.get(channel, channel)
        if channel == "statuses":
            name = "trading_statuses"
        getattr(stream, f"unsubscribe_{name}")(symbol)


STOCK = ("trades", "quotes", "bars", "updatedBars", "dailyBars", "statuses")
CRYPTO = ("trades", "quotes", "bars", "updatedBars", "dailyBars", "orderbooks")


@pytest.mark.parametrize(
    ("kind", "feed", "symbol", "channels"),
    [
        ("stock", "iex", "AAPL", STOCK),
        ("crypto", "crypto/us", "BTC/USD", CRYPTO),
        ("option", "indicative", "AAPL240119C00100000", ("trades", "quotes")),
        ("news", "news", "AAPL", ("news",)),
    ],
)
def test_every_subscribe_and_unsubscribe_method_reaches_the_server_while_running(  # noqa: PLR0917
    alpaca_server: AlpacaStreamServer,
    running: Callable[[DataStream], threading.Thread],
    kind: str,
    feed: str,
    symbol: str,
    channels: tuple[str, ...],
) -> None:
    url = alpaca_server.url(feed)
    stream: DataStream
    if kind == "stock":
        stream = StockDataStream(DEFAULT_KEY, DEFAULT_SECRET, url_override=url)
    elif kind == "crypto":
        stream = CryptoDataStream(DEFAULT_KEY, DEFAULT_SECRET, url_override=url)
    elif kind == "option":
        stream = OptionDataStream(DEFAULT_KEY, DEFAULT_SECRET, url_override=url)
    else:
        stream = NewsDataStream(DEFAULT_KEY, DEFAULT_SECRET, url_override=url)
    # One channel before run() (applied when it starts), the rest while it runs.
    _each_channel(stream, symbol, channels[:1])
    running(stream)
    alpaca_server.wait_for_subscriptions({channels[0]: {symbol}}, timeout=10 * TIMING_FACTOR)
    _each_channel(stream, symbol, channels[1:])
    alpaca_server.wait_for_subscriptions(
        {ch: {symbol} for ch in channels}, timeout=10 * TIMING_FACTOR
    )
    _unsubscribe_each(stream, symbol, channels)
    alpaca_server.wait_for_subscriptions({ch: set() for ch in channels}, timeout=10 * TIMING_FACTOR)


def test_corrections_and_cancels_registered_while_running_reach_their_handlers(
    alpaca_server: AlpacaStreamServer, running: Callable[[DataStream], threading.Thread]
) -> None:
    stream = StockDataStream(DEFAULT_KEY, DEFAULT_SECRET, url_override=alpaca_server.url("iex"))
    got: list[Any] = []
    cond = threading.Condition()

    async def note(record: Any) -> None:
        with cond:
            got.append(record)
            cond.notify_all()

    async def on_trade(_trade: Any) -> None: ...

    stream.subscribe_trades(on_trade, "AAPL")
    running(stream)
    alpaca_server.wait_for_subscriptions({"trades": {"AAPL"}}, timeout=10 * TIMING_FACTOR)
    stream.register_trade_corrections(note)  # while running: applied to the subscribed trades
    stream.register_trade_cancels(note)
    t = 1_700_000_000_000_000_000
    cancel = {"T": "x", "S": "AAPL", "i": 3, "x": "V", "p": 1.0, "s": 1, "a": "C", "z": "C", "t": t}
    correction = {"T": "c", "S": "AAPL", "x": "V", "oi": 1, "op": 1.0, "os": 1, "oc": ["@"],
                  "ci": 2, "cp": 1.1, "cs": 1, "cc": ["@"], "z": "C", "t": t}  # fmt: skip
    # The handlers ride on the trades subscription: the records come until they arrive.
    deadline = 10 * TIMING_FACTOR
    with cond:
        while not cond.wait_for(lambda: len(got) >= 2, 0.5):
            alpaca_server.publish([correction, cancel])
            deadline -= 0.5
            assert deadline > 0, got
    kinds = {type(r).__name__ for r in got}
    assert kinds == {"Correction", "CancelError"}, got
    # Unsubscribing the trades ends the records riding on them.
    stream.unsubscribe_trades("AAPL")
    alpaca_server.wait_for_subscriptions({"trades": set()}, timeout=10 * TIMING_FACTOR)


def test_bad_arguments_are_clear_errors(alpaca_server: AlpacaStreamServer) -> None:
    url = alpaca_server.url("iex")
    with pytest.raises(ValueError, match="data_timeout"):
        StockDataStream(DEFAULT_KEY, DEFAULT_SECRET, url_override=url, data_timeout=0)
    stream = StockDataStream(
        DEFAULT_KEY,
        DEFAULT_SECRET,
        url_override=url,
        websocket_params={"ping_interval": 7, "ping_timeout": 3},
    )
    try:
        with pytest.raises(ConfigurationError, match="must be a function"):
            stream.subscribe_quotes("not a function", "AAPL")  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="no 'orderbooks' channel"):
            stream._subscribe("orderbooks", print, ["AAPL"])
        assert repr(stream).startswith("StockDataStream(")
    finally:
        stream.client.close()


def test_a_fatal_error_inside_a_running_loop_is_raised_to_the_cell(
    alpaca_server: AlpacaStreamServer,
) -> None:
    stream = StockDataStream(DEFAULT_KEY, "wrong", url_override=alpaca_server.url("iex"))

    async def on_quote(q: Any) -> None: ...

    async def cell() -> None:
        stream.subscribe_quotes(on_quote, "AAPL")
        stream.run()  # on a thread of its own; its failure comes back here

    with pytest.raises(AuthFailed):
        asyncio.run(cell())


def test_close_and_stop_ws_are_awaitable(alpaca_server: AlpacaStreamServer) -> None:
    stream = StockDataStream(DEFAULT_KEY, DEFAULT_SECRET, url_override=alpaca_server.url("iex"))
    stream.client.connect()
    alpaca_server.wait_for_authenticated(timeout=10 * TIMING_FACTOR)
    asyncio.run(stream.close())
    assert stream.client.lifecycle.value == "closed"
    asyncio.run(stream.stop_ws())  # again: nothing left to do


def test_a_new_handler_replaces_the_old_and_new_trades_carry_registered_corrections(
    alpaca_server: AlpacaStreamServer, running: Callable[[DataStream], threading.Thread]
) -> None:
    stream = StockDataStream(DEFAULT_KEY, DEFAULT_SECRET, url_override=alpaca_server.url("iex"))
    got: list[tuple[str, str]] = []
    cond = threading.Condition()

    def handler(who: str) -> Callable[[Any], Any]:
        async def note(record: Any) -> None:
            with cond:
                got.append((who, type(record).__name__))
                cond.notify_all()

        return note

    stream.register_trade_corrections(handler("corrections"))
    stream.subscribe_quotes(handler("old"), "AAPL")
    running(stream)
    alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}}, timeout=10 * TIMING_FACTOR)
    stream.subscribe_quotes(handler("new"), "AAPL")  # while running: replaces "old"
    stream.subscribe_trades(handler("trades"), "MSFT")  # corrections ride on it
    alpaca_server.wait_for_subscriptions({"trades": {"MSFT"}}, timeout=10 * TIMING_FACTOR)
    t = 1_700_000_000_000_000_000
    correction = {"T": "c", "S": "MSFT", "x": "V", "oi": 1, "op": 1.0, "os": 1, "oc": ["@"],
                  "ci": 2, "cp": 1.1, "cs": 1, "cc": ["@"], "z": "C", "t": t}  # fmt: skip
    deadline = 10 * TIMING_FACTOR
    with cond:
        while not cond.wait_for(
            lambda: ("corrections", "Correction") in got and ("new", "Quote") in got, 0.5
        ):
            alpaca_server.publish([correction, quote(1, "AAPL")])
            deadline -= 0.5
            assert deadline > 0, got
    assert ("old", "Quote") not in got
