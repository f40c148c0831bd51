"""The ways in: a script that blocks on the client, asyncio code with async handlers.

Real sockets against the embedded server; a script is a real subprocess that gets a
real SIGINT.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rxalpaca import StreamClient, errors, ops
from rxalpaca.testing import DEFAULT_KEY, DEFAULT_SECRET, AlpacaStreamServer
from tests._subprocess import child_env, python_command
from tests.conftest import TIMING_FACTOR

ROOT = Path(__file__).resolve().parents[2]


def quote(i: int, symbol: str = "AAPL") -> dict[str, Any]:
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


# ---------------------------------------------------------------- scripts


def readme_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"```python\n(.*?)```", text, re.S)
    assert match, "README.md has no python snippet"
    return match.group(1)


def test_readme_snippet_as_a_script_streams_until_sigint_and_exits_0(
    alpaca_server: AlpacaStreamServer, tmp_path: Path
) -> None:
    code = readme_snippet()
    assert 'StreamClient(feed="iex")' in code and "client.run()" in code
    # The one change: point the client at the embedded server (keys come from the env,
    # as the snippet says); then a summary line once run() returns.
    code = code.replace(
        'StreamClient(feed="iex")', f'StreamClient(feed="iex", url={alpaca_server.base_url!r})'
    )
    code += (
        'print(f"summary: {client.metrics.messages_delivered} quotes, {client.lifecycle.value}")\n'
    )
    script = tmp_path / "snippet.py"
    script.write_text(code)
    alpaca_server.start_market(symbols=["AAPL"], rate=200)
    env = {
        **os.environ,
        "APCA_API_KEY_ID": DEFAULT_KEY,
        "APCA_API_SECRET_KEY": DEFAULT_SECRET,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.Popen(
        python_command(str(script)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(env),
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # blocks until the first quote is printed
        assert first.startswith("Quote("), first
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20 * TIMING_FACTOR)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    summary = out.strip().splitlines()[-1]
    assert re.fullmatch(r"summary: \d+ quotes, closed", summary), summary


def test_wait_returns_true_on_close_and_false_on_timeout(
    alpaca_server: AlpacaStreamServer, make_client: Callable[..., StreamClient]
) -> None:
    client = make_client(alpaca_server)
    client.quotes("AAPL").subscribe(lambda _: None)
    assert client.wait(timeout=0.01) is False
    closer = threading.Timer(0.05, client.close)
    closer.start()
    assert client.wait() is True
    closer.join()
    assert client.wait(timeout=0) is True  # ended stays ended


def test_wait_and_run_raise_the_fatal_error(
    alpaca_server: AlpacaStreamServer, make_client: Callable[..., StreamClient]
) -> None:
    client = make_client(alpaca_server, secret="wrong")
    client.quotes("AAPL").subscribe(lambda _: None, lambda _: None)
    with pytest.raises(errors.AuthFailed):
        client.wait(timeout=10 * TIMING_FACTOR)
    other = make_client(alpaca_server, secret="wrong")
    with pytest.raises(errors.AuthFailed):
        other.run()  # connects by itself, then fails


# ---------------------------------------------------------------- asyncio


@pytest.fixture
def loop_thread() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running in its own thread named "user-loop"."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="user-loop", daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def test_async_handlers_get_every_record_in_order_on_the_bound_loop(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    loop_thread: asyncio.AbstractEventLoop,
) -> None:
    n = 200
    client = make_client(alpaca_server).bind_loop(loop_thread, size=0)  # unbounded: lose none
    seen: list[tuple[float, str]] = []
    done = threading.Event()

    async def on_quote(q: Any) -> None:
        await asyncio.sleep(0)  # really a coroutine: others run between records
        seen.append((q.bid_price, threading.current_thread().name))

    async def on_done() -> None:
        done.set()

    # After a pipe a type checker sees a plain Observable (whose subscribe takes no
    # coroutine function); at run time pipe keeps the Stream.
    client.quotes("AAPL").pipe(ops.take(n)).subscribe(on_quote, on_completed=on_done)  # type: ignore[arg-type]
    alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}})
    alpaca_server.publish([quote(i) for i in range(n)])
    assert done.wait(10 * TIMING_FACTOR)
    assert [p for p, _ in seen] == [float(i) for i in range(n)]
    assert {t for _, t in seen} == {"user-loop"}


def test_a_slow_async_handler_meets_the_overflow_policy_not_the_socket_thread(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    loop_thread: asyncio.AbstractEventLoop,
    collector: Callable[[], Any],
) -> None:
    dropped: list[int] = []
    client = make_client(alpaca_server).bind_loop(
        loop_thread, size=4, overflow="drop_oldest", on_overflow=dropped.append
    )
    release = asyncio.Event()  # only touched on the loop
    got: list[float] = []
    first = threading.Event()

    async def slow(q: Any) -> None:
        got.append(q.bid_price)
        first.set()
        await release.wait()  # stuck until the test lets it go

    client.quotes("AAPL").subscribe(slow)
    fast = collector()  # a plain observer on the socket thread beside it
    client.quotes("AAPL").subscribe(fast)
    alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}})
    alpaca_server.publish([quote(0)])
    assert first.wait(5 * TIMING_FACTOR)
    alpaca_server.publish([quote(i) for i in range(1, 50)])
    # The socket thread went on: the plain observer has all 50 while `slow` is stuck.
    fast.wait_for(50, timeout=10 * TIMING_FACTOR)
    assert got == [0.0]
    assert dropped and dropped[-1] == 45  # 49 queued into 4 places: the 45 oldest dropped
    loop_thread.call_soon_threadsafe(release.set)
    done = threading.Event()
    loop_thread.call_soon_threadsafe(lambda: asyncio.ensure_future(_set_after(got, 5, done)))
    assert done.wait(5 * TIMING_FACTOR)
    assert got == [0.0, 46.0, 47.0, 48.0, 49.0]  # the freshest four, in order


async def _set_after(got: list[float], n: int, done: threading.Event) -> None:
    while len(got) < n:
        await asyncio.sleep(0.001)
    done.set()


def test_async_with_binds_the_running_loop_and_closes(alpaca_server: AlpacaStreamServer) -> None:
    async def main() -> tuple[list[float], set[str], bool]:
        names: set[str] = set()
        prices: list[float] = []
        async with StreamClient(
            "iex", url=alpaca_server.base_url, key=DEFAULT_KEY, secret=DEFAULT_SECRET
        ) as client:
            three = asyncio.Event()

            async def on_quote(q: Any) -> None:
                prices.append(q.bid_price)
                names.add(threading.current_thread().name)
                if len(prices) == 3:
                    three.set()

            client.quotes("AAPL").subscribe(on_quote)
            await asyncio.to_thread(alpaca_server.wait_for_subscriptions, {"quotes": {"AAPL"}})
            alpaca_server.publish([quote(i) for i in range(3)])
            await asyncio.wait_for(three.wait(), 10 * TIMING_FACTOR)
            assert await client.wait_async(timeout=0.01) is False
        return prices, names, await client.wait_async()

    prices, names, ended = asyncio.run(main())
    assert prices == [0.0, 1.0, 2.0]
    assert names == {threading.main_thread().name}
    assert ended is True


def test_wait_async_raises_the_fatal_error(alpaca_server: AlpacaStreamServer) -> None:
    async def main() -> None:
        async with StreamClient(
            "iex", url=alpaca_server.base_url, key=DEFAULT_KEY, secret="wrong"
        ) as client:
            client.connect()
            await client.wait_async(timeout=10 * TIMING_FACTOR)

    with pytest.raises(errors.AuthFailed):
        asyncio.run(main())


def test_an_async_handler_that_raises_is_reported_and_the_stream_goes_on(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    loop_thread: asyncio.AbstractEventLoop,
) -> None:
    client = make_client(alpaca_server).bind_loop(loop_thread)
    reported: list[Exception] = []
    client.errors.subscribe(reported.append)
    seen: list[float] = []
    done = threading.Event()

    async def picky(q: Any) -> None:
        if q.bid_price == 1.0:
            raise ValueError("one")
        seen.append(q.bid_price)
        if len(seen) == 2:
            done.set()

    client.quotes("AAPL").subscribe(picky)
    alpaca_server.wait_for_subscriptions({"quotes": {"AAPL"}})
    alpaca_server.publish([quote(i) for i in range(3)])
    assert done.wait(10 * TIMING_FACTOR)
    assert seen == [0.0, 2.0]
    assert client.metrics.handler_errors == 1
    assert isinstance(reported[0], errors.HandlerError)
    assert isinstance(reported[0].__cause__, ValueError)


def test_an_async_handler_outside_any_loop_is_refused_showing_the_ways(
    alpaca_server: AlpacaStreamServer, make_client: Callable[..., StreamClient]
) -> None:
    client = make_client(alpaca_server)

    async def on_quote(q: Any) -> None: ...

    with pytest.raises(errors.ConfigurationError) as info:
        client.quotes("AAPL").pipe(ops.map(lambda q: q)).subscribe(on_quote)  # type: ignore[arg-type]
    msg = str(info.value)
    for way in ("async with client", "bind_loop", "ops.on_loop", "aiterate(client.quotes('AAPL'))"):
        assert way in msg
    assert client.subscriptions() == {}
