"""The Router alone: sans-I/O, no reactivex — plain objects with ``on_next`` subscribe.

Routing through the ``route`` operator (timing, the data clock, what flows downstream)
is tested in ``tests/operators/test_decode_meter_route.py``.
"""

from __future__ import annotations

import importlib
import inspect
import json
from typing import Any

import msgpack
import pytest

from rxalpaca import frames, ops, router
from rxalpaca.codec import Codec
from rxalpaca.metrics import Metrics
from rxalpaca.models import SuccessMessage, Trade
from rxalpaca.options import Settings
from rxalpaca.router import Router

TRADE = (
    b'{"T":"t","S":"%s","i":1,"x":"V","p":1.5,"s":10,"c":["@"],"z":"C",'
    b'"t":"2024-01-02T03:04:05.123456789Z"}'
)


def records(encoding: str, *symbols: str, control: bool = False) -> list[Any]:
    """Real records decoded by the codec, in either encoding."""
    parts = [TRADE % s.encode() for s in symbols]
    if control:
        parts.append(b'{"T":"success","msg":"connected"}')
    json_frame = b"[" + b",".join(parts) + b"]"
    if encoding == "json":
        return Codec("stocks", "json").decode(json_frame, 7)
    return Codec("stocks", "msgpack").decode(msgpack.packb(json.loads(json_frame)), 7)


class Sink:
    """Only ``on_next``: all the router may ask of an observer."""

    def __init__(self, fail: bool = False) -> None:
        self.items: list[Any] = []
        self.fail = fail

    def on_next(self, value: Any) -> None:
        self.items.append(value)
        if self.fail:
            raise RuntimeError("user bug")


@pytest.fixture(params=["json", "msgpack"])
def encoding(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_plain_objects_subscribe_and_non_data_comes_back(encoding: str) -> None:
    metrics = Metrics()
    table = Router(metrics)
    aapl, star = Sink(), Sink()
    table.add("trades", "AAPL", aapl)
    table.add("trades", "*", star)
    rest = table.dispatch(records(encoding, "AAPL", "MSFT", control=True))
    assert [t.symbol for t in aapl.items] == ["AAPL"]
    assert [t.symbol for t in star.items] == ["AAPL", "MSFT"]
    assert all(type(t) is Trade and t.received_ns == 7 for t in star.items)
    assert [type(x) for x in rest] == [SuccessMessage]
    assert metrics.messages_delivered == 2 and metrics.messages_balance()


def test_a_raising_observer_and_a_raising_error_callback_stop_nothing(encoding: str) -> None:
    def on_handler_error(exc: BaseException, record: object, observer: object) -> None:
        seen.append((exc, record, observer))
        raise ValueError("the error callback is buggy too")

    seen: list[tuple[BaseException, object, object]] = []
    metrics = Metrics()
    table = Router(metrics, on_handler_error)
    bad, good = Sink(fail=True), Sink()
    table.add("trades", "AAPL", bad)
    table.add("trades", "AAPL", good)
    [trade] = records(encoding, "AAPL")
    assert table.dispatch([trade]) == []
    assert good.items == [trade] and bad.items == [trade]
    [(exc, rec, obs)] = seen
    assert isinstance(exc, RuntimeError) and rec is trade and obs is bad
    assert metrics.handler_errors == 1 and metrics.messages_delivered == 1


def test_removing_during_dispatch_keeps_the_entry_already_read(encoding: str) -> None:
    # Copy-on-write: a dispatch in progress delivers to the observers it read; the
    # next one no longer does (subscribe/dispose are safe from inside an observer).
    table = Router()
    second = Sink()

    class Remover(Sink):
        def on_next(self, value: Any) -> None:
            super().on_next(value)
            table.remove("trades", "AAPL", second)

    first = Remover()
    table.add("trades", "AAPL", first)
    table.add("trades", "AAPL", second)
    table.dispatch(records(encoding, "AAPL"))
    table.dispatch(records(encoding, "AAPL"))
    assert len(first.items) == 2 and len(second.items) == 1
    assert table.observers("trades", "AAPL") == (first,)


def test_star_entries_come_and_go() -> None:
    table = Router()
    a, b = Sink(), Sink()
    table.add("trades", "*", a)
    table.add("trades", "*", b)
    assert table.remove("trades", "*", a) and table.observers("trades", "*") == (b,)
    assert table.remove("trades", "*", b)
    assert not table.remove("trades", "*", b) and table.entries() == 0
    table.dispatch(records("json", "AAPL"))
    assert not a.items and not b.items


def test_the_router_and_batch_live_in_the_core_and_ops_reexports_them() -> None:
    assert ops.Router is router.Router
    assert ops.Batch is frames.Batch
    assert "Router" in ops.__all__ and "Batch" in ops.__all__


@pytest.mark.parametrize("name", ["rxalpaca.router", "rxalpaca.frames"])
def test_all_is_the_public_api(name: str) -> None:
    mod = importlib.import_module(name)
    for item in mod.__all__:
        assert hasattr(mod, item), f"{name}.__all__ lists missing {item}"
    public = {
        k
        for k, v in vars(mod).items()
        if not k.startswith("_") and getattr(v, "__module__", None) == name and callable(v)
    }
    assert public <= set(mod.__all__)


def test_the_size_cap_has_one_definition() -> None:
    cap = frames.DEFAULT_MAX_MESSAGE_BYTES
    client_default = Settings.build("iex", {"key": "k", "secret": "s"}).options["max_message_bytes"]
    assert client_default is cap
    assert inspect.signature(ops.reassemble).parameters["max_message_bytes"].default is cap
    assert inspect.signature(ops.pipeline).parameters["max_message_bytes"].default is cap
