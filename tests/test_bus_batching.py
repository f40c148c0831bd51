"""The gateway's batching: frames queued while the bus thread was busy are joined per
subject, in wire order, into payloads the consumer's codec decodes to the same records."""

from __future__ import annotations

import msgpack
import orjson
import pytest

from rxalpaca.bus.subjects import Subjects
from rxalpaca.bus.wire import FrameSplitter, encode_group, merge_groups
from rxalpaca.codec import Codec
from rxalpaca.feeds import Family
from rxalpaca.models import Quote, Trade


def _quote(sym: str, bid: float) -> dict[str, object]:
    return {
        "T": "q",
        "S": sym,
        "bp": bid,
        "bs": 1,
        "ap": bid + 0.01,
        "as": 2,
        "bx": "V",
        "ax": "V",
        "c": ["R"],
        "z": "C",
        "t": "2024-03-05T15:30:00.123456789Z",
    }


def _trade(sym: str, i: int) -> dict[str, object]:
    return {
        "T": "t",
        "S": sym,
        "i": i,
        "x": "V",
        "p": 10.5,
        "s": 3,
        "c": ["@"],
        "z": "C",
        "t": "2024-03-05T15:30:00.5Z",
    }


FRAMES = [
    [_quote("AAPL", 1.0), _trade("AAPL", 1), _quote("BRK.B", 2.0)],
    [_quote("BRK.B", 3.0), _quote("AAPL", 4.0)],
    [_trade("AAPL", 2), _quote("AAPL", 5.0)],
]


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_joined_frames_keep_each_subjects_order(encoding: str) -> None:
    subjects = Subjects("iex")
    splitter = FrameSplitter(Family.STOCKS, subjects)
    pack = orjson.dumps if encoding == "json" else msgpack.packb
    cuts = [splitter.groups(pack(f)) for f in FRAMES]
    assert {is_json for is_json, _ in cuts} == {encoding == "json"}
    merged = cuts[0][1]
    for _, later in cuts[1:]:
        merge_groups(merged, later)
    codec = Codec(Family.STOCKS, encoding)  # type: ignore[arg-type]
    out = {s: codec.decode(encode_group(encoding == "json", g), 0) for s, g in merged.items()}
    aapl_q = subjects.data("quotes", "AAPL")
    brk_q = subjects.data("quotes", "BRK.B")
    aapl_t = subjects.data("trades", "AAPL")
    assert set(out) == {aapl_q, brk_q, aapl_t}
    assert [q.bid_price for q in out[aapl_q] if isinstance(q, Quote)] == [1.0, 4.0, 5.0]
    assert [q.bid_price for q in out[brk_q] if isinstance(q, Quote)] == [2.0, 3.0]
    assert [t.id for t in out[aapl_t] if isinstance(t, Trade)] == [1, 2]
    # One frame alone still splits as before.
    assert dict(splitter.split(pack(FRAMES[1]))) == {
        brk_q: encode_group(encoding == "json", splitter.groups(pack(FRAMES[1]))[1][brk_q]),
        aapl_q: encode_group(encoding == "json", splitter.groups(pack(FRAMES[1]))[1][aapl_q]),
    }


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_an_odd_message_is_skipped_and_the_rest_routed(encoding: str) -> None:
    """A frame whose heads do not all decode (a non-map, a numeric symbol) is read
    message by message: the odd ones are skipped and counted, the others routed."""
    subjects = Subjects("iex")
    splitter = FrameSplitter(Family.STOCKS, subjects)
    pack = orjson.dumps if encoding == "json" else msgpack.packb
    frame = [_quote("AAPL", 1.0), "junk", {"T": "q", "S": 7}, _trade("AAPL", 9)]
    is_json, groups = splitter.groups(pack(frame))
    assert is_json is (encoding == "json")
    assert sorted(groups) == [subjects.data("quotes", "AAPL"), subjects.data("trades", "AAPL")]
    assert splitter.skipped == 2
