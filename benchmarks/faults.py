"""Unattended-run faults, timed: a dead link, a refused batch, a mute server (issue #9).

Run::

    python benchmarks/faults.py             # every scenario, defaults and fast settings
    python benchmarks/faults.py --smoke     # fast settings only (CI)

Each scenario runs a real client against the embedded server on 127.0.0.1:

* **dead link**: a TCP relay between them stops forwarding without closing
  (``tests/relay.py``); the figure is the time from going dark until the client
  publishes ``KeepaliveTimeout`` (it then reconnects). With the defaults
  (``ping_interval=10``, ``ping_timeout=10``) the bound is 20 s; before the fix it
  was never.
* **refused batch**: forty ``quotes(sym)`` calls in a loop against a plan limit of
  30 symbols; the figures are how many end subscribed and refused, the subscribe
  requests sent, and the time until the last symbol is settled. Before the fix:
  0 subscribed, 40 refused.
* **mute server**: the server stops sending data but keeps acking a subscription
  change every 0.4 s; ``silence_timeout=1.0``; the figure is the time from mute to
  the reconnect. Before the fix: none after 4 s (acks refreshed the clock).
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any, Literal

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rxalpaca import ConnectionState, RetryPolicy, StreamClient, errors
from rxalpaca.testing import DEFAULT_KEY, DEFAULT_SECRET, Account, AlpacaStreamServer
from tests.relay import DarkRelay

FAST = RetryPolicy(initial_delay=0.02, max_delay=0.2)


def _quote(sym: str) -> dict[str, Any]:
    return {
        "T": "q",
        "S": sym,
        "bx": "V",
        "bp": 1.0,
        "bs": 1,
        "ax": "V",
        "ap": 1.1,
        "as": 1,
        "c": ["R"],
        "z": "C",
        "t": 1_700_000_000_000_000_000,
    }


def dead_link(ping_interval: float, ping_timeout: float) -> float:
    """Seconds from the relay going dark to ``KeepaliveTimeout``."""
    with AlpacaStreamServer() as server, DarkRelay("127.0.0.1", server.port) as relay:
        client = StreamClient(
            "iex",
            url=relay.base_url,
            key=DEFAULT_KEY,
            secret=DEFAULT_SECRET,
            retry=FAST,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
        )
        noticed = threading.Event()
        client.errors.subscribe(
            lambda e: noticed.set() if isinstance(e, errors.KeepaliveTimeout) else None
        )
        client.quotes("AAPL").subscribe(lambda _q: None)
        server.wait_for_subscriptions({"quotes": {"AAPL"}})
        t0 = time.monotonic()
        relay.go_dark()
        if not noticed.wait(ping_interval + ping_timeout + 10):
            raise SystemExit("dead link never noticed")
        took = time.monotonic() - t0
        client.close()
        return took


def refused_batch(encoding: Literal["json", "msgpack"] = "msgpack") -> dict[str, float]:
    with AlpacaStreamServer(
        accounts={"free": Account("s", plan="free", symbol_limit=30)}
    ) as server:
        client = StreamClient(
            "iex",
            url=server.base_url,
            key="free",
            secret="s",
            encoding=encoding,
            retry=FAST,
            ping_interval=None,
        )
        symbols = [f"S{i:02d}" for i in range(40)]
        settled = threading.Semaphore(0)
        outcome: dict[str, str] = {}

        def watch(sym: str) -> None:
            def on_next(_q: Any) -> None:
                if sym not in outcome:
                    outcome[sym] = "receiving"
                    settled.release()

            def on_error(_e: Exception) -> None:
                outcome[sym] = "refused"
                settled.release()

            client.quotes(sym).subscribe(on_next, on_error)

        t0 = time.monotonic()
        for s in symbols:
            watch(s)
        conn = server.wait_for_subscriptions(
            lambda subs: len(subs.get("quotes", ())) == 30, timeout=30
        )
        server.publish([_quote(s) for s in conn.subscriptions["quotes"]])
        for _ in symbols:
            settled.acquire(timeout=30)
        took = time.monotonic() - t0
        result = {
            "subscribed": sum(v == "receiving" for v in outcome.values()),
            "refused": sum(v == "refused" for v in outcome.values()),
            "requests": client._book.requests_sent,
            "splits": client._book.splits,
            "seconds": took,
        }
        client.close()
        return result


def mute_server(silence_timeout: float = 1.0) -> float:
    """Seconds from mute (acks still flowing) to the reconnect."""
    with AlpacaStreamServer() as server:
        client = StreamClient(
            "iex",
            url=server.base_url,
            key=DEFAULT_KEY,
            secret=DEFAULT_SECRET,
            retry=FAST,
            ping_interval=None,
            silence_timeout=silence_timeout,
        )
        got = threading.Event()
        client.quotes("AAPL").subscribe(lambda _q: got.set())
        first = server.wait_for_subscriptions({"quotes": {"AAPL"}})
        server.publish([_quote("AAPL")])
        got.wait(5)
        lost = threading.Event()
        client.state.subscribe(lambda s: lost.set() if s is ConnectionState.RECONNECTING else None)
        t0 = time.monotonic()
        server.mute(first)
        sub = None
        while not lost.wait(0.4):
            if time.monotonic() - t0 > 10:
                raise SystemExit("mute server never noticed")
            if sub is None:
                sub = client.quotes("MSFT").subscribe(lambda _q: None)
            else:
                sub.dispose()
                sub = None
        took = time.monotonic() - t0
        client.close()
        return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="fast settings only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    print(f"dead link, ping 0.2 s / timeout 1 s: noticed after {dead_link(0.2, 1.0):.2f} s")
    if not args.smoke:
        print(f"dead link, defaults 10 s / 10 s:  noticed after {dead_link(10.0, 10.0):.2f} s")
    for enc in ("json", "msgpack"):
        r = refused_batch(enc)
        print(
            f"refused batch ({enc}): {r['subscribed']:.0f} subscribed, "
            f"{r['refused']:.0f} refused, {r['requests']:.0f} requests "
            f"({r['splits']:.0f} splits), settled in {r['seconds']:.2f} s"
        )
    print(
        f"mute server, silence_timeout 1 s, acked change every 0.4 s: "
        f"reconnect after {mute_server():.2f} s"
    )


if __name__ == "__main__":
    main()
