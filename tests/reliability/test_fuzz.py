"""Fuzz: random, truncated, mutated and fragmented frames through reassemble → validate → decode.

Two levels, both encodings (see ``_fuzz_helpers`` for the kinds of input and what each
must yield):

* **in-process** — :class:`~rxalpaca.frames.Frame` objects through the client's own
  operator chain ``reassemble → validate → decode → meter → route``. Each unit's frames
  carry the unit's number as ``received_ns``, which every output (record, ``Unknown``,
  ``FrameError``) keeps, so each unit's outcome is checked exactly;
* **end to end** — a live :class:`~rxalpaca.StreamClient` against
  :class:`~rxalpaca.testing.AlpacaStreamServer`, frames sent with ``send_raw`` (split into
  continuation frames with ``split_next_frame``). One server and one client per encoding
  serve every example; a sentinel message closes each example.

Properties: nothing raises; every malformed input becomes ``FrameError`` value(s) (on
``client.errors`` end to end); every good message still arrives, in order; the books
balance (``frames_balance``/``messages_balance``); end to end the connection stays
authenticated, with no reconnect.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
import reactivex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rxalpaca import ConnectionState, StreamClient, ops
from rxalpaca.client import UnknownMessage
from rxalpaca.codec import Codec
from rxalpaca.errors import FrameError
from rxalpaca.frames import Frame, Opcode
from rxalpaca.metrics import Metrics
from rxalpaca.models import MarketRecord, Record, Unknown
from rxalpaca.operators import Router
from rxalpaca.testing import DEFAULT_KEY, DEFAULT_SECRET, AlpacaStreamServer
from rxalpaca.testing.wire import Encoding, encode_frame, encode_item, join_items

from ._fuzz_helpers import (
    E2E_KINDS,
    MAX_BYTES,
    SYMBOLS,
    Unit,
    frames_for,
    record_key,
    timing_factor,
    units,
)

ENCODINGS = [Encoding.JSON, Encoding.MSGPACK]
IN_PROCESS_EXAMPLES = 300
E2E_EXAMPLES = 60
TF = timing_factor()

#: Cases run, per level and encoding (reported in docs/reliability.md).
CASES: Counter[str] = Counter()


class _Sink:
    """Routed records and downstream items, grouped by unit tag (``received_ns``)."""

    def __init__(self) -> None:
        self.routed: dict[int, list[Any]] = defaultdict(list)
        self.rest: dict[int, list[Any]] = defaultdict(list)
        self.errors: list[BaseException] = []
        self.completed = False

    def on_routed(self, rec: Any) -> None:
        self.routed[rec.received_ns].append(rec)

    def on_rest(self, item: Any) -> None:
        tag = getattr(item, "received_ns", 0)
        self.rest[tag].append(item)


def safe_key(rec: Any) -> tuple[str, str, Any]:
    """``record_key``, or the raw timestamp bytes when it does not parse.

    A mutated frame can yield a record whose timestamp is garbage: by default it is delivered
    and ``timestamp_ns`` raises on access (see
    ``test_malformed_timestamp_is_delivered_and_raises_when_read``).
    """
    try:
        return record_key(rec)
    except (ValueError, UnicodeDecodeError):
        return (type(rec).__name__, rec.symbol, bytes(rec.raw_time))


def run_pipeline(
    frames: list[Frame], enc: Encoding, *, strict_timestamps: bool = False
) -> tuple[_Sink, Metrics]:
    metrics = Metrics()
    sink = _Sink()
    handler_errors: list[BaseException] = []
    router = Router(metrics, lambda exc, rec, obs: handler_errors.append(exc))
    observer = reactivex.Observer(sink.on_routed)
    for channel in ("trades", "quotes"):
        router.add(channel, "*", observer)

    def done() -> None:
        sink.completed = True

    reactivex.from_iterable(frames).pipe(
        ops.reassemble(MAX_BYTES),
        ops.validate(),
        ops.decode(Codec("stocks", enc.value, strict_timestamps=strict_timestamps)),
        ops.meter(metrics),
        ops.route(router),
    ).subscribe(sink.on_rest, sink.errors.append, done)
    assert not handler_errors
    return sink, metrics


def check_units(us: list[Unit], sink: _Sink, metrics: Metrics, tag_base: int = 1) -> None:
    assert not sink.errors, f"the pipeline raised: {sink.errors!r}"
    assert sink.completed
    for i, u in enumerate(us):
        tag = tag_base + i
        routed = sink.routed.pop(tag, [])
        rest = sink.rest.pop(tag, [])
        for item in rest:  # everything downstream is a typed value, never a raw object
            assert isinstance(item, FrameError | Unknown | Record), item
        frame_errors = [x for x in rest if isinstance(x, FrameError)]
        if not u.checked:
            continue
        assert u.records is not None
        assert [record_key(r) for r in routed] == [record_key(m) for m in u.records], u.kind
        assert len(frame_errors) == u.frame_errors, (u.kind, frame_errors)
        unknowns = [x for x in rest if isinstance(x, Unknown)]
        assert len(unknowns) == u.unknowns, (u.kind, unknowns)
        assert len(rest) == len(frame_errors) + len(unknowns), (u.kind, rest)
        for err in frame_errors:
            assert isinstance(err.reason, str) and err.reason
            assert isinstance(err.excerpt, bytes)
    assert not sink.routed and not sink.rest, "outputs with no unit"
    # Exact accounting.
    assert metrics.frames_balance(), metrics.snapshot()
    assert metrics.messages_balance(), metrics.snapshot()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("enc", ENCODINGS, ids=lambda e: e.value)
@settings(
    max_examples=IN_PROCESS_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_pipeline_fuzz(enc: Encoding, data: st.DataObject) -> None:
    """In-process: every unit yields exactly its expected records and FrameErrors."""
    us = data.draw(units(enc))
    frames = list(frames_for(us))
    sink, metrics = run_pipeline(frames, enc)
    _check_fuzz_outcome(us, sink, metrics, enc, "in-process")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("enc", ENCODINGS, ids=lambda e: e.value)
@settings(
    max_examples=IN_PROCESS_EXAMPLES // 2,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_pipeline_fuzz_strict_timestamps(enc: Encoding, data: st.DataObject) -> None:
    """The same with ``strict_timestamps``: also, no delivered record has an unreadable time.

    Mutated frames are where bad timestamps come from (a flipped digit, a cut ``Z``…):
    strict mode turns each such message into a FrameError instead of delivering it.
    """
    us = data.draw(units(enc))
    sink, metrics = run_pipeline(list(frames_for(us)), enc, strict_timestamps=True)
    for group in (*sink.routed.values(), *sink.rest.values()):
        for item in group:
            if isinstance(item, MarketRecord):
                item.timestamp_ns  # noqa: B018 - must not raise
    _check_fuzz_outcome(us, sink, metrics, enc, "in-process-strict")


def _check_fuzz_outcome(
    us: list[Unit], sink: _Sink, metrics: Metrics, enc: Encoding, level: str
) -> None:
    # Count the downstream FrameErrors before check_units pops them.
    frame_errors = sum(isinstance(x, FrameError) for g in sink.rest.values() for x in g)
    routed = sum(len(g) for g in sink.routed.values())
    check_units(us, sink, metrics)
    assert metrics.decode_failures == frame_errors
    assert metrics.messages_delivered == routed
    CASES[f"{level}/{enc.value}"] += 1
    CASES[f"{level}/{enc.value}/frames"] += sum(len(u.frames) for u in us)
    for u in us:
        CASES[f"{level}/{enc.value}/{u.kind}"] += 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("enc", ENCODINGS, ids=lambda e: e.value)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    payloads=st.lists(
        st.tuples(st.binary(max_size=64), st.sampled_from(list(Opcode)), st.booleans()),
        max_size=20,
    )
)
def test_pipeline_never_raises_on_arbitrary_frames(
    enc: Encoding, payloads: list[tuple[bytes, int, bool]]
) -> None:
    """Arbitrary bytes, opcodes and fin bits (including nonsense sequences): values, no raise."""
    frames = [Frame(p, op, fin, 7) for p, op, fin in payloads]
    sink, metrics = run_pipeline(frames, enc)
    assert not sink.errors and sink.completed
    for group in (*sink.rest.values(), *sink.routed.values()):
        for item in group:
            assert isinstance(item, FrameError | Unknown | Record)
    assert metrics.frames_balance() and metrics.messages_balance()
    CASES[f"in-process-arbitrary/{enc.value}"] += 1


_BAD_TIMES: list[tuple[str, Any]] = [
    ("json", b'"2025-06-16T10:00:00.00\xe40001Z"'),  # a flipped byte: not even ASCII
    ("json", b'"yesterday"'),
    ("json", b"12"),
    ("msgpack", msgpack.packb("nope")),
    ("msgpack", msgpack.packb(msgpack.ExtType(5, b"1234"))),  # not the timestamp type (-1)
]


def _frame_with_bad_time(encoding: Encoding, raw_time: bytes) -> Frame:
    """Trades 1, 9, 2 in one frame; trade 9's ``t`` is ``raw_time`` (encoded bytes)."""
    good = [
        {"T": "t", "S": "AAA", "i": n, "x": "V", "p": 1.0, "s": 1, "c": ["@"], "z": "C",
         "t": 1_700_000_000_000_000_000 + n}
        for n in (1, 2)
    ]  # fmt: skip
    marker = b'"__T__"' if encoding is Encoding.JSON else msgpack.packb("__T__")
    bad = encode_item({**good[0], "i": 9, "t": "__T__"}, encoding).replace(marker, raw_time)
    payload = join_items([encode_item(good[0], encoding), bad, encode_item(good[1], encoding)],
                         encoding)  # fmt: skip
    return Frame(payload, Opcode.TEXT if encoding is Encoding.JSON else Opcode.BINARY, True, 1)


@pytest.mark.timeout(10)
@pytest.mark.parametrize(("enc", "raw_time"), _BAD_TIMES, ids=lambda v: repr(v)[:20])
def test_malformed_timestamp_is_a_frame_error(enc: str, raw_time: bytes) -> None:
    """With ``strict_timestamps``, a message whose timestamp cannot be parsed is a FrameError,
    like any bad field; the good messages of its frame still arrive."""
    encoding = Encoding(enc)
    frame = _frame_with_bad_time(encoding, raw_time)
    sink, metrics = run_pipeline([frame], encoding, strict_timestamps=True)
    routed = sink.routed.get(1, [])
    errors = [x for x in sink.rest.get(1, []) if isinstance(x, FrameError)]
    for rec in routed:
        rec.timestamp_ns  # noqa: B018 - a delivered record must have a readable timestamp
    assert [r.id for r in routed] == [1, 2]
    assert len(errors) == 1
    assert "$.t" in errors[0].reason  # names the field
    assert metrics.decode_failures == 1 and metrics.messages_delivered == 2
    assert metrics.frames_balance() and metrics.messages_balance()


@pytest.mark.timeout(10)
@pytest.mark.parametrize(("enc", "raw_time"), _BAD_TIMES, ids=lambda v: repr(v)[:20])
def test_malformed_timestamp_is_delivered_and_raises_when_read(enc: str, raw_time: bytes) -> None:
    """By default timestamps are parsed when read, not at decode time (no eager check is
    cheap enough for the fast path: docs/benchmarks.md, "Eager timestamp checks"). The
    message is delivered; reading its time raises a ValueError naming the field."""
    encoding = Encoding(enc)
    sink, metrics = run_pipeline([_frame_with_bad_time(encoding, raw_time)], encoding)
    routed = sink.routed.get(1, [])
    assert [r.id for r in routed] == [1, 9, 2]
    assert not [x for x in sink.rest.get(1, []) if isinstance(x, FrameError)]
    assert [r.timestamp_ns for r in (routed[0], routed[2])] == [
        1_700_000_000_000_000_001,
        1_700_000_000_000_000_002,
    ]
    with pytest.raises(ValueError, match=r"^Trade\.raw_time \(wire field 't'\) is not a valid"):
        routed[1].timestamp_ns  # noqa: B018
    assert metrics.decode_failures == 0 and metrics.messages_delivered == 3
    assert metrics.frames_balance() and metrics.messages_balance()


# ---------------------------------------------------------------- end to end


class _Live:
    """One server, one client, one observer for every example of an encoding."""

    def __init__(self, enc: Encoding) -> None:
        self.enc = enc
        self.server = AlpacaStreamServer(test_stream=False).start()
        self.client = StreamClient(
            "iex",
            url=self.server.base_url,
            key=DEFAULT_KEY,
            secret=DEFAULT_SECRET,
            encoding=enc.value,
            ping_interval=None,
            max_message_bytes=MAX_BYTES,
        )
        self.cond = threading.Condition()
        self.records: list[Any] = []
        self.errors: list[Exception] = []
        self.states: list[ConnectionState] = []
        self.completed_or_failed: list[Any] = []
        self.client.state.subscribe(self.states.append)
        self.client.errors.subscribe(self._on_error)
        for channel in (self.client.trades, self.client.quotes):
            channel(*SYMBOLS, "SENTINEL").subscribe(
                self._on_record,
                self.completed_or_failed.append,
                lambda: self.completed_or_failed.append("completed"),
            )
        self.server.wait_for_subscriptions(
            {"trades": {*SYMBOLS, "SENTINEL"}, "quotes": {*SYMBOLS, "SENTINEL"}},
            timeout=10 * TF,
        )
        self.sentinel_id = 0

    def _on_record(self, rec: Any) -> None:
        with self.cond:
            self.records.append(rec)
            self.cond.notify_all()

    def _on_error(self, err: Exception) -> None:
        with self.cond:
            self.errors.append(err)
            self.cond.notify_all()

    def send_sentinel_and_wait(self) -> None:
        self.sentinel_id += 1
        ident = self.sentinel_id
        frame = encode_frame(
            [
                {
                    "T": "t",
                    "S": "SENTINEL",
                    "i": ident,
                    "x": "V",
                    "p": 1.0,
                    "s": 1,
                    "c": ["@"],
                    "z": "C",
                    "t": 1_800_000_000_000_000_000,
                }
            ],
            self.enc,
        )
        self.server.send_raw(frame, text=self.enc is Encoding.JSON)

        def arrived() -> bool:
            return any(
                r.symbol == "SENTINEL" and getattr(r, "id", None) == ident
                for r in self.records[-50:]
            )

        with self.cond:
            assert self.cond.wait_for(arrived, 10 * TF), "sentinel never arrived"

    def close(self) -> None:
        self.client.close()
        self.server.stop()


@pytest.fixture(scope="module")
def live() -> Iterator[dict[Encoding, _Live]]:
    made: dict[Encoding, _Live] = {}
    try:
        for enc in ENCODINGS:
            made[enc] = _Live(enc)
        yield made
    finally:
        for lv in made.values():
            lv.close()
        for lv in made.values():
            c = lv.client
            assert c.metrics.frames_balance(), c.metrics.snapshot()
            assert c.metrics.messages_balance(), c.metrics.snapshot()


_e2e_clock = [1_750_000_000_000_000_000]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("enc", ENCODINGS, ids=lambda e: e.value)
@settings(
    max_examples=E2E_EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
)
@given(data=st.data())
def test_end_to_end_fuzz(live: dict[Encoding, _Live], enc: Encoding, data: st.DataObject) -> None:
    """Live socket: FrameErrors on client.errors, good messages arrive, still authenticated."""
    lv = live[enc]
    _e2e_clock[0] += 10**12
    us = data.draw(units(enc, E2E_KINDS, max_size=8, start_ns=_e2e_clock[0]))
    with lv.cond:
        rec_before, err_before = len(lv.records), len(lv.errors)
    connects = lv.client.metrics.connects
    for u in us:
        payload = u.payload
        if u.parts > 1 and payload:
            lv.server.split_next_frame(u.parts)
        lv.server.send_raw(payload, text=enc is Encoding.JSON)
        if not payload:
            # The server applies split_next_frame to the next frame it *writes*, and
            # "splitting" an empty frame sends nothing: let this one go out first.
            lv.send_sentinel_and_wait()
    lv.send_sentinel_and_wait()
    with lv.cond:
        got = [r for r in lv.records[rec_before:] if r.symbol != "SENTINEL"]
        errors = list(lv.errors[err_before:])
    # Every good message arrives, in order (mutated frames may add records of their own).
    expected = [record_key(m) for u in us if u.records for m in u.records]
    keys = iter(safe_key(r) for r in got)
    assert all(k in keys for k in expected), "a good message was lost"
    # Every malformed input became FrameError value(s) on client.errors.
    frame_errors = [e for e in errors if isinstance(e, FrameError)]
    want = sum(u.frame_errors or 0 for u in us if u.checked)
    if all(u.checked for u in us):
        assert len(frame_errors) == want, (frame_errors, [u.kind for u in us])
        assert len(got) == len(expected)
        unknowns = [e for e in errors if isinstance(e, UnknownMessage)]
        assert len(unknowns) == sum(u.unknowns or 0 for u in us)
    else:
        assert len(frame_errors) >= want
    for e in errors:
        assert isinstance(e, FrameError | UnknownMessage), repr(e)
    # The connection is healthy: same socket, authenticated, books balanced.
    assert lv.client.current_state is ConnectionState.AUTHENTICATED
    assert lv.client.metrics.connects == connects == 1
    assert lv.client.metrics.reconnects == 0
    assert not lv.completed_or_failed
    assert lv.client.metrics.frames_balance(), lv.client.metrics.snapshot()
    assert lv.client.metrics.messages_balance(), lv.client.metrics.snapshot()
    CASES[f"end-to-end/{enc.value}"] += 1
    for u in us:
        CASES[f"end-to-end/{enc.value}/{u.kind}"] += 1


@pytest.mark.timeout(10)
def test_zz_report_fuzz_cases(capsys: pytest.CaptureFixture[str]) -> None:
    """Prints how many cases ran (``-s`` shows it; figures for docs/reliability.md)."""
    with capsys.disabled():
        for k in sorted(CASES):
            print(f"fuzz cases {k}: {CASES[k]}")
