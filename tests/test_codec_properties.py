"""Property tests of rxalpaca.codec: decode never raises, and salvage never loses a good message.

Both encodings. Frames are built with orjson / the ``msgpack`` library (not msgspec, which the
codec uses), MessagePack timestamps as ``msgpack.Timestamp`` (extension type -1, the library
picks the width).
"""

from __future__ import annotations

from typing import Any, Literal

import msgpack
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rxalpaca.codec import Codec
from rxalpaca.errors import FrameError
from rxalpaca.models import (
    Bar,
    MarketRecord,
    Quote,
    Record,
    Trade,
    Unknown,
    format_rfc3339_ns,
)

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ENCODINGS: list[Literal["json", "msgpack"]] = ["json", "msgpack"]
CODECS: dict[str, Codec] = {enc: Codec("stocks", enc) for enc in ENCODINGS}
STRICT: dict[str, Codec] = {enc: Codec("stocks", enc, strict_timestamps=True) for enc in ENCODINGS}

# ---------------------------------------------------------------- valid messages

symbols = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ.", min_size=1, max_size=6)
prices = st.floats(min_value=0, max_value=1e7, allow_nan=False, allow_infinity=False)
sizes = st.integers(min_value=0, max_value=2**32)
ids = st.integers(min_value=0, max_value=2**63 - 1)
times_ns = st.integers(min_value=0, max_value=(2**34 - 1) * 10**9)


@st.composite
def valid_messages(draw: st.DrawFn) -> dict[str, Any]:
    """A stock trade, quote or bar, timestamps as integer ns (encoded per frame)."""
    kind = draw(st.sampled_from("tqb"))
    base: dict[str, Any] = {"T": kind, "S": draw(symbols), "t": draw(times_ns)}
    if kind == "t":
        base |= {"i": draw(ids), "x": "V", "p": draw(prices), "s": draw(sizes), "c": ["@"]}
    elif kind == "q":
        base |= {"bp": draw(prices), "bs": draw(sizes), "ap": draw(prices), "as": draw(sizes)}
    else:
        o, h, low, c = (draw(prices) for _ in range(4))
        base |= {"o": o, "h": h, "l": low, "c": c, "v": draw(sizes), "n": 3, "vw": o}
    return base


def _check(record: Any, message: dict[str, Any]) -> None:
    """``record`` is the decoding of ``message``."""
    cls = {"t": Trade, "q": Quote, "b": Bar}[message["T"]]
    assert type(record) is cls
    assert record.symbol == message["S"]
    assert record.timestamp_ns == message["t"]
    if cls is Trade:
        assert (record.id, record.price, record.size) == (message["i"], message["p"], message["s"])
    elif cls is Quote:
        assert (record.bid_price, record.ask_size) == (message["bp"], message["as"])
    else:
        assert (record.open, record.volume) == (message["o"], message["v"])


# ---------------------------------------------------------------- garbage elements

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=10,
)
# Maps that look like messages: a known or unknown T with wrong, missing or extra fields.
message_like = st.dictionaries(
    st.sampled_from(["T", "S", "p", "s", "t", "bp", "i", "o", "v", "zz"]),
    json_values | st.sampled_from(["t", "q", "b", "s", "success", "error", "p", "n"]),
    max_size=6,
)
garbage = json_values | message_like


def _wire(message: Any, encoding: str) -> Any:
    """The wire form of one element: integer ``t`` becomes a timestamp for valid messages."""
    if isinstance(message, dict) and isinstance(message.get("t"), int) and "S" in message:
        ns = message["t"]
        t: Any = (
            format_rfc3339_ns(ns) if encoding == "json" else msgpack.Timestamp.from_unix_nano(ns)
        )
        return {**message, "t": t}
    return message


def _frame(elements: list[Any], encoding: str) -> bytes:
    wire = [_wire(e, encoding) for e in elements]
    if encoding == "json":
        return orjson.dumps(wire)
    packed: bytes = msgpack.packb(wire, use_bin_type=True)
    return packed


def _assert_well_formed(out: object, received_ns: int) -> None:
    assert isinstance(out, list)
    for item in out:
        assert isinstance(item, Record | Unknown | FrameError)
        if isinstance(item, FrameError | Unknown):
            assert item.received_ns == received_ns


# ---------------------------------------------------------------- properties


@pytest.mark.parametrize("encoding", ENCODINGS)
@FAST
@given(payload=st.binary(max_size=300))
def test_random_bytes_never_raise(encoding: str, payload: bytes) -> None:
    _assert_well_formed(CODECS[encoding].decode(payload, 7), 7)


@pytest.mark.parametrize("encoding", ENCODINGS)
@FAST
@given(payload=st.text(max_size=200))
def test_random_text_never_raises(encoding: str, payload: str) -> None:
    _assert_well_formed(CODECS[encoding].decode(payload, 7), 7)


@pytest.mark.parametrize("encoding", ENCODINGS)
@FAST
@given(messages=st.lists(valid_messages(), min_size=1, max_size=8), data=st.data())
def test_truncated_frames_never_raise(
    encoding: str, messages: list[dict[str, Any]], data: st.DataObject
) -> None:
    payload = _frame(messages, encoding)
    cut = data.draw(st.integers(min_value=0, max_value=len(payload) - 1))
    out = CODECS[encoding].decode(payload[:cut], 7)
    _assert_well_formed(out, 7)
    assert out and isinstance(out[0], FrameError)  # a truncated array never parses


@st.composite
def mutations(draw: st.DrawFn, payload: bytes) -> bytes:
    data = bytearray(payload)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "set"]))
        at = draw(st.integers(min_value=0, max_value=max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(min_value=0, max_value=7))
        elif op == "insert":
            data.insert(at, draw(st.integers(min_value=0, max_value=255)))
        elif op == "delete" and data:
            del data[at]
        elif data:
            data[at] = draw(st.integers(min_value=0, max_value=255))
    return bytes(data)


@pytest.mark.parametrize("encoding", ENCODINGS)
@FAST
@given(messages=st.lists(valid_messages(), min_size=1, max_size=8), data=st.data())
def test_mutated_frames_never_raise(
    encoding: str, messages: list[dict[str, Any]], data: st.DataObject
) -> None:
    payload = data.draw(mutations(_frame(messages, encoding)))
    _assert_well_formed(CODECS[encoding].decode(payload, 7), 7)


@pytest.mark.parametrize("encoding", ENCODINGS)
@FAST
@given(
    elements=st.lists(
        st.tuples(st.just(True), valid_messages()) | st.tuples(st.just(False), garbage),
        max_size=12,
    )
)
def test_every_valid_message_survives_garbage_neighbours(
    encoding: str, elements: list[tuple[bool, Any]]
) -> None:
    out = CODECS[encoding].decode(_frame([e for _, e in elements], encoding), 7)
    _assert_well_formed(out, 7)
    # One output per element, in order — except empty maps in MessagePack, which are skipped.
    kept = [(valid, e) for valid, e in elements if valid or encoding == "json" or e != {}]
    assert len(out) == len(kept)
    for (valid, message), item in zip(kept, out, strict=True):
        if valid:
            _check(item, message)
            assert item.received_ns == 7  # type: ignore[union-attr]


@pytest.mark.parametrize("encoding", ENCODINGS)
@FAST
@given(messages=st.lists(valid_messages(), max_size=20))
def test_valid_frames_decode_exactly(encoding: str, messages: list[dict[str, Any]]) -> None:
    out = CODECS[encoding].decode(_frame(messages, encoding), 9)
    assert len(out) == len(messages)
    for message, record in zip(messages, out, strict=True):
        _check(record, message)
        assert record.received_ns == 9  # type: ignore[union-attr]


# ---------------------------------------------------------------- strict_timestamps


def _readable(item: object) -> bool:
    if not isinstance(item, MarketRecord):
        return True
    try:
        item.timestamp_ns  # noqa: B018 - parsing is the point
    except ValueError:
        return False
    return True


def _assert_strict_is_lax_minus_unreadable(payload: bytes, encoding: str) -> int:
    """The strict codec delivers exactly the lax codec's records whose timestamps read.

    Each record the strict codec drops is one more FrameError; nothing else differs.
    Returns how many were dropped.
    """
    lax = CODECS[encoding].decode(payload, 7)
    strict = STRICT[encoding].decode(payload, 7)
    _assert_well_formed(strict, 7)
    records = [x for x in lax if isinstance(x, Record)]
    readable = [r for r in records if _readable(r)]
    assert [x for x in strict if isinstance(x, Record)] == readable
    assert all(_readable(x) for x in strict)
    dropped = len(records) - len(readable)
    errors = [sum(isinstance(x, FrameError) for x in out) for out in (lax, strict)]
    assert errors[1] == errors[0] + dropped
    assert [x for x in strict if isinstance(x, Unknown)] == [
        x for x in lax if isinstance(x, Unknown)
    ]
    return dropped


_MARKER = "__T__"


@pytest.mark.parametrize("encoding", ENCODINGS)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    messages=st.lists(valid_messages(), max_size=4),
    ns=times_ns,
    data=st.data(),
)
def test_strict_timestamps_deliver_exactly_the_readable_times(
    encoding: str, messages: list[dict[str, Any]], ns: int, data: st.DataObject
) -> None:
    """A mutated timestamp among good messages: strict drops it iff reading it would fail."""
    if encoding == "json":
        good, marker = orjson.dumps(format_rfc3339_ns(ns)), orjson.dumps(_MARKER)
    else:
        good, marker = msgpack.packb(msgpack.Timestamp.from_unix_nano(ns)), msgpack.packb(_MARKER)
    bad = data.draw(mutations(good))
    target = {"T": "q", "S": "M", "bp": 1.0, "bs": 1, "ap": 2.0, "as": 1, "t": _MARKER}
    at = data.draw(st.integers(min_value=0, max_value=len(messages)))
    frame = _frame([*messages[:at], target, *messages[at:]], encoding)
    _assert_strict_is_lax_minus_unreadable(frame.replace(marker, bad), encoding)


@pytest.mark.parametrize("encoding", ENCODINGS)
@FAST
@given(messages=st.lists(valid_messages(), min_size=1, max_size=8), data=st.data())
def test_strict_timestamps_on_mutated_frames(
    encoding: str, messages: list[dict[str, Any]], data: st.DataObject
) -> None:
    payload = data.draw(mutations(_frame(messages, encoding)))
    _assert_strict_is_lax_minus_unreadable(payload, encoding)


@pytest.mark.parametrize("encoding", ENCODINGS)
@FAST
@given(
    channels=st.dictionaries(
        st.sampled_from(["trades", "quotes", "bars", "dailyBars"]),
        st.lists(symbols, max_size=5),
    )
)
def test_subscribe_encoding_round_trips(encoding: str, channels: dict[str, list[str]]) -> None:
    codec = CODECS[encoding]
    wire = codec.encode_subscribe(channels)
    decoded = orjson.loads(wire) if encoding == "json" else msgpack.unpackb(wire)
    expected = {k: list(dict.fromkeys(v)) for k, v in channels.items() if v}
    assert decoded == {"action": "subscribe", **expected}
