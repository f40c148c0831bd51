"""The C timestamp read path (rxalpaca/_speedups.c) against the full Python parser.

The C module takes a strict subset of what ``parse_time_ns`` accepts — the forms Alpaca
sends — and must give exactly its value there; on everything else it must decline (the
record then takes the Python path, which raises the documented error). The record-level
behaviour on both paths is in tests/test_models.py (its ``read_path`` fixture).
"""

from __future__ import annotations

import datetime as dt
import os
import struct
import subprocess
import sys

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from msgspec import Raw

from rxalpaca import timestamps
from rxalpaca.models import Trade, format_rfc3339_ns, parse_time_ns

if not timestamps.SPEEDUPS:
    if os.environ.get("RXALPACA_REQUIRE_SPEEDUPS"):  # .ci/run: a compiler is there, so build
        pytest.fail("rxalpaca._speedups was not built", pytrace=False)
    pytest.skip("the C read path (rxalpaca._speedups) is not built here", allow_module_level=True)

from rxalpaca import _speedups

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
#: Whole seconds from the epoch an int64 of ns holds with room (the C path's range, both
#: ends included; beyond: Python's).
_C_SECONDS = 9_000_000_000
#: Years 0001-9999, all that RFC 3339 text can write.
_ALL_NS = st.integers(-62_135_596_800 * 10**9, 253_402_300_799 * 10**9 + 999_999_999)


def _python(raw: bytes) -> int | None:
    try:
        return parse_time_ns(Raw(raw))
    except ValueError:
        return None


def _json(ns: int, digits: int) -> bytes:
    """``ns`` as a JSON time with exactly ``digits`` fraction digits (0: none), truncated."""
    text = format_rfc3339_ns(ns - ns % 10**9)[:-1]
    if digits:
        text += "." + f"{ns % 10**9:09d}"[:digits]
    return b'"' + text.encode() + b'Z"'


@given(ns=_ALL_NS, digits=st.integers(0, 9))
@example(ns=0, digits=9)
@example(ns=951_782_400 * 10**9, digits=3)  # 2000-02-29, a leap day of a century year
@example(ns=_C_SECONDS * 10**9 + 999_999_999, digits=9)  # the last second C takes
@example(ns=(_C_SECONDS + 1) * 10**9, digits=9)  # past the C range: declined, Python decides
@example(ns=-_C_SECONDS * 10**9, digits=0)  # the first second C takes
@settings(max_examples=500)
def test_a_json_time_reads_as_the_full_parser_reads_it(ns: int, digits: int) -> None:
    raw = _json(ns, digits)
    expected = parse_time_ns(Raw(raw))
    got = _speedups.buffer_time_ns(raw)
    if abs(expected // 10**9) <= _C_SECONDS:
        assert got == expected  # the forms Alpaca sends never leave C
    else:
        assert got is None
    record = Trade(symbol="X", raw_time=Raw(raw), price=1.0, size=1)
    assert record.timestamp_ns == expected
    assert record.timestamp == _EPOCH + dt.timedelta(microseconds=expected // 1000)


_MUTATIONS = st.tuples(st.integers(0, 40), st.integers(0, 255), st.sampled_from("rid"))


@given(ns=_ALL_NS, digits=st.integers(0, 9), mutations=st.lists(_MUTATIONS, max_size=3))
@example(ns=0, digits=9, mutations=[(20, ord(" "), "r")])
@example(ns=0, digits=0, mutations=[(20, ord("."), "i")])  # '.Z': no digits
@settings(max_examples=2000)
def test_a_damaged_json_time_is_never_read_differently(
    ns: int, digits: int, mutations: list[tuple[int, int, str]]
) -> None:
    """Any byte replaced, inserted or deleted: C gives the parser's value or declines."""
    raw = bytearray(_json(ns, digits))
    for position, byte, how in mutations:
        at = position % (len(raw) + 1)
        if how == "r" and at < len(raw):
            raw[at] = byte
        elif how == "i":
            raw.insert(at, byte)
        elif at < len(raw):
            del raw[at]
    got = _speedups.buffer_time_ns(bytes(raw))
    if got is not None:
        assert got == _python(bytes(raw))


@pytest.mark.parametrize(
    "raw",
    [
        b'"2021-02-29T15:51:44.5Z"',  # not a leap year
        b'"1900-02-29T00:00:00Z"',  # nor is a century year not divisible by 400
        b'"2021-04-31T00:00:00Z"',
        b'"2021-13-01T00:00:00Z"',
        b'"2021-00-01T00:00:00Z"',
        b'"2021-01-00T00:00:00Z"',
        b'"0000-01-01T00:00:00Z"',
        b'"2021-01-01T24:00:00Z"',
        b'"2021-01-01T00:60:00Z"',
        b'"2021-01-01T00:00:60Z"',  # no leap seconds, as msgspec
        b'"2021-01-01T00:00:00.Z"',
        b'"2021-01-01T00:00:00.1234567890Z"',  # ten digits: the parser drops the tenth
        b'"2021-01-01 00:00:00Z"',
        b'"2021-01-01t00:00:00z"',
        b'"2021-01-01T00:00:00+00:00"',
        b'"2021-01-01T00:00:00.5\\u005a"',
        b'"2021-01-01T00:00:00.-5Z"',
        b'"2021-01-01T00:00:00.+5Z"',
        b"2021-01-01T00:00:00Z",  # no quotes (a MessagePack str's text)
        b"\xd7\xff" + struct.pack(">Q", (1_000_000_000 << 34) | 5),  # ns out of range
        b"\xd7\xfe" + struct.pack(">Q", 5),  # another extension type
        b"\xc7\x0c\xff" + struct.pack(">Iq", 5, 1614009104),  # timestamp 96: Python's
        b"",
    ],
)
def test_the_c_path_declines_what_it_does_not_prove(raw: bytes) -> None:
    assert _speedups.buffer_time_ns(raw) is None
    record = Trade(symbol="X", raw_time=Raw(raw), price=1.0, size=1)
    expected = _python(raw)
    if expected is None:
        with pytest.raises(ValueError, match=r"^Trade\.raw_time \(wire field 't'\)"):
            _ = record.timestamp_ns
        with pytest.raises(ValueError, match=r"^Trade\.raw_time \(wire field 't'\)"):
            _ = record.timestamp
    else:
        assert record.timestamp_ns == expected


@given(seconds=st.integers(0, (1 << 34) - 1), nanos=st.integers(0, 999_999_999))
@example(seconds=(1 << 34) - 1, nanos=999_999_999)  # past the C range
def test_a_messagepack_timestamp_64_reads_as_the_parser_reads_it(seconds: int, nanos: int) -> None:
    raw = b"\xd7\xff" + struct.pack(">Q", (nanos << 34) | seconds)
    expected = seconds * 10**9 + nanos
    assert parse_time_ns(Raw(raw)) == expected
    assert _speedups.buffer_time_ns(raw) == (expected if seconds <= _C_SECONDS else None)
    record = Trade(symbol="X", raw_time=Raw(raw), price=1.0, size=1)
    assert record.timestamp_ns == expected
    assert record.timestamp == _EPOCH + dt.timedelta(microseconds=expected // 1000)


@given(seconds=st.integers(0, (1 << 32) - 1))
def test_a_messagepack_timestamp_32_reads_as_the_parser_reads_it(seconds: int) -> None:
    raw = b"\xd6\xff" + struct.pack(">I", seconds)
    assert _speedups.buffer_time_ns(raw) == parse_time_ns(Raw(raw)) == seconds * 10**9


def test_the_datetime_view_before_1970_is_python_s_and_floors() -> None:
    """Negative ns: the C view declines, and the Python view floors to the microsecond."""
    raw = _json(-1, 9)  # 1969-12-31T23:59:59.999999999Z
    record = Trade(symbol="X", raw_time=Raw(raw), price=1.0, size=1)
    assert record.timestamp_ns == -1
    assert record.timestamp == dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC)
    assert record.timestamp.tzinfo is dt.UTC


def test_records_built_by_hand_with_other_types_take_the_python_path() -> None:
    ns = 1614009104 * 10**9 + 5
    for raw in (ns, "2021-02-22T15:51:44.000000005Z"):
        record = Trade(symbol="X", raw_time=raw, price=1.0, size=1)  # type: ignore[arg-type]
        assert record.timestamp_ns == ns
        assert record.timestamp == dt.datetime(2021, 2, 22, 15, 51, 44, tzinfo=dt.UTC)


def test_a_record_without_a_raw_time_raises_attribute_error() -> None:
    with pytest.raises(AttributeError):
        _speedups.record_time_ns(object())
    with pytest.raises(AttributeError):
        _speedups.record_datetime(object())


def test_install_takes_two_callables() -> None:
    with pytest.raises(TypeError, match="two callables"):
        _speedups.install(1, 2)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="two callables"):
        _speedups.install(print)  # type: ignore[call-arg,arg-type]


def test_rxalpaca_no_speedups_selects_the_python_path() -> None:
    """The escape hatch: RXALPACA_NO_SPEEDUPS=1 reads in pure Python, the same values."""
    code = (
        "from msgspec import Raw\n"
        "from rxalpaca import timestamps\n"
        "from rxalpaca.models import Trade\n"
        "t = Trade(symbol='X', raw_time=Raw(b'\"2021-02-22T15:51:44.208123456Z\"'),"
        " price=1.0, size=1)\n"
        "print(timestamps.SPEEDUPS, t.timestamp_ns, t.timestamp.isoformat())\n"
    )
    env = {**os.environ, "RXALPACA_NO_SPEEDUPS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "1614009104208123456", "2021-02-22T15:51:44.208123+00:00"]
