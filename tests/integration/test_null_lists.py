"""A null list (MessagePack nil) in a data message is an empty list, end to end (issue #9)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from rxalpaca import StreamClient
from rxalpaca.models import Trade
from rxalpaca.testing import AlpacaStreamServer

from .conftest import Collector

pytestmark = pytest.mark.timeout(30)

BASE: dict[str, Any] = {
    "T": "t",
    "S": "AAPL",
    "i": 1,
    "x": "V",
    "p": 187.25,
    "s": 100,
    "z": "C",
    "t": 1_700_000_000_123_456_789,
}


@pytest.mark.parametrize("strict", [False, True], ids=["lazy", "strict"])
@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_a_trade_with_null_conditions_reaches_its_observer(
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
    collector: Callable[[], Collector],
    encoding: str,
    strict: bool,
) -> None:
    client = make_client(alpaca_server, encoding=encoding, strict_timestamps=strict)
    trades, problems = collector(), collector()
    client.errors.subscribe(problems)
    client.trades("AAPL").subscribe(trades)
    alpaca_server.wait_for_subscriptions({"trades": {"AAPL"}})
    alpaca_server.publish(
        [{**BASE, "c": ["@"]}, {**BASE, "i": 2, "c": None}, {**BASE, "i": 3, "c": []}], batch=3
    )
    # A later frame: once it is delivered, the first one has been dealt with (§6: in order).
    alpaca_server.publish([{**BASE, "i": 4, "c": ["I"]}])
    got = trades.wait_for(4)
    assert problems.items == []
    assert [t.id for t in got] == [1, 2, 3, 4]
    assert all(type(t) is Trade for t in got)
    assert [t.conditions for t in got] == [("@",), (), (), ("I",)]
    assert got[1] == msgspec.structs.replace(got[2], id=2)  # null and [] decode alike
    assert got[1].timestamp_ns == BASE["t"]
    assert client.metrics.decode_failures == 0
