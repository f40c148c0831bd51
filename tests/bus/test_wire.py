"""FrameSplitter: a frame cut per subject decodes into exactly the frame's records."""

from __future__ import annotations

from typing import Any

import msgpack
import msgspec
import orjson
import pytest

from rxalpaca.bus import Subjects
from rxalpaca.bus.wire import (
    FORMAT,
    Demand,
    FrameSplitter,
    GatewayState,
    decode_control,
    encode_control,
)
from rxalpaca.codec import Codec
from rxalpaca.feeds import Family
from rxalpaca.models import Gap

T = "2024-01-02T15:00:00.123456789Z"


def trade(sym: str, i: int) -> dict[str, Any]:
    return {
        "T": "t",
        "S": sym,
        "i": i,
        "x": "V",
        "p": 1.5 + i,
        "s": 1,
        "c": ["@"],
        "z": "C",
        "t": T,
    }


def quote(sym: str, i: int) -> dict[str, Any]:
    return {"T": "q", "S": sym, "bx": "V", "bp": 1.0 + i, "bs": 1, "ax": "V", "ap": 2.0, "as": 1,
            "c": ["R"], "z": "C", "t": T}  # fmt: skip


def correction(sym: str) -> dict[str, Any]:
    return {"T": "c", "S": sym, "x": "V", "oi": 1, "op": 1.0, "os": 1, "oc": ["@"], "ci": 2,
            "cp": 1.1, "cs": 1, "cc": ["@"], "z": "C", "t": T}  # fmt: skip


def encode(messages: list[Any], encoding: str) -> bytes:
    if encoding == "json":
        return orjson.dumps(messages)
    return msgpack.packb(messages)  # type: ignore[no-any-return]


def key(record: Any) -> tuple[Any, ...]:
    return (type(record).__name__, *(getattr(record, f) for f in record.__struct_fields__))


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_each_subject_gets_its_messages_in_wire_order(encoding: str) -> None:
    subjects = Subjects("iex")
    splitter = FrameSplitter(Family.STOCKS, subjects)
    messages: list[Any] = [
        trade("AAPL", 1),
        quote("BRK.B", 1),
        trade("AAPL", 2),
        {"T": "success", "msg": "authenticated"},
        correction("AAPL"),
        {"T": "zz", "S": "AAPL"},
        quote("BRK.B", 2),
        [1, 2],
        trade("MSFT", 3),
    ]
    frame = encode(messages, encoding)
    parts = dict(splitter.split(frame))
    assert set(parts) == {
        "rxalpaca.iex.d.trades.AAPL",
        "rxalpaca.iex.d.quotes.BRK%2EB",
        "rxalpaca.iex.d.corrections.AAPL",
        "rxalpaca.iex.d.trades.MSFT",
    }
    assert splitter.skipped == 3  # the success message, the unknown type, the non-map
    codec = Codec("stocks", encoding)  # type: ignore[arg-type]
    whole: list[Any] = [r for r in codec.decode(encode(messages[:3] + messages[4:5] + messages[6:7]
                                             + messages[8:], encoding))]  # fmt: skip
    for subject, payload in parts.items():
        got = codec.decode(payload)
        expected = [r for r in whole if subjects.data(type(r).CHANNEL, r.symbol) == subject]
        assert [key(r) for r in got] == [key(r) for r in expected]


@pytest.mark.parametrize("n", [1, 15, 16, 65535, 65536])
def test_msgpack_array_headers_of_every_size(n: int) -> None:
    splitter = FrameSplitter(Family.STOCKS, Subjects("iex"))
    [(subject, payload)] = splitter.split(msgpack.packb([trade("A", i) for i in range(n)]))
    assert subject == "rxalpaca.iex.d.trades.A"
    assert [m["i"] for m in msgpack.unpackb(payload)] == list(range(n))


def test_a_frame_that_is_not_an_array_raises() -> None:
    splitter = FrameSplitter(Family.STOCKS, Subjects("iex"))
    with pytest.raises(msgspec.DecodeError):
        splitter.split(b'{"T":"t"}')


def test_control_messages_round_trip_and_newer_formats_are_refused() -> None:
    d = Demand(client="c1", lease_s=5.0, pairs=[("quotes", "AAPL")])
    assert decode_control(encode_control(d), Demand) == d
    g = Gap(feed="iex", channels=("quotes",), symbols=("AAPL",), last_before_ns=1, reason="x")
    assert decode_control(encode_control(g), Gap) == g
    newer = orjson.dumps({"v": FORMAT + 1, "client": "c", "lease_s": 1.0, "pairs": []})
    with pytest.raises(ValueError, match="newer"):
        decode_control(newer, Demand)
    with pytest.raises(ValueError):
        decode_control(b"not json", GatewayState)
    with pytest.raises(ValueError):
        decode_control(b'{"v":1,"client":"c"}', Demand)  # a required field is missing
