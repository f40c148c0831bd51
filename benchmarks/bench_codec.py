"""Codec benchmarks: typed decoding against decoding into plain dicts, per frame.

Run (numbers in ``docs/benchmarks.md``, section "Codec")::

    for i in 1 2 3; do
        pytest benchmarks/bench_codec.py --benchmark-enable --benchmark-only -q \\
            --benchmark-json=.benchmarks/codec-$i.json
    done
    python benchmarks/bench_codec.py .benchmarks/codec-*.json   # the Markdown table

Without ``--benchmark-enable`` (the project default is ``--benchmark-disable``) every
benchmark runs once as a plain test, checking that each candidate decodes every message.

Candidates, on the same frames (``frames.py``):

a. ``orjson.loads`` into plain dicts — the baseline
b. ``orjson.loads`` + building our records in Python (kwargs constructors)
c. our ``Codec.decode`` (msgspec typed JSON decode, ``received_ns`` stamped)
d. ``msgpack.unpackb`` into plain dicts
e. our ``Codec.decode`` in MessagePack mode (msgspec typed MessagePack decode)

plus, for reference, the standard library's ``json.loads`` and (c) without the stamping.

``test_timestamp_read`` measures reading a decoded record's time against the e2e floor's own
conversion (``_clients.floor_time_ns`` on orjson's ``str``; ``docs/benchmarks.md``, "Reading
timestamps"). ``test_timestamp_check`` measures eager timestamp checks against (c)/(e), the
default, which parses timestamps only when read: ``strict_timestamps=True`` and prototypes of
cheaper checks (``docs/benchmarks.md``, "Eager timestamp checks").
"""

from __future__ import annotations

import datetime as dt
import json
import operator
import re
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path
from statistics import median
from typing import Annotated, Any, Union

import msgpack
import msgspec
import orjson
import pytest
from frames import Workload, rfc3339
from msgspec import Raw

from rxalpaca.codec import Codec
from rxalpaca.errors import FrameError
from rxalpaca.models import Bar, MarketRecord, Quote, Record, Trade

RECEIVED_NS = 1_709_652_600_500_000_000

# ---------------------------------------------------------------- workloads

WORKLOADS: dict[str, dict[str, Any]] = {
    "100 symbols, 1-20 msgs/frame": dict(symbols=100, frames=500, batch=(1, 20)),
    "1,000 symbols, 1-20 msgs/frame": dict(symbols=1000, frames=500, batch=(1, 20)),
    "1,000 symbols, 1 msg/frame": dict(symbols=1000, frames=2000, batch=(1, 1)),
    "1,000-msg frame": dict(symbols=1000, frames=5, batch=(1000, 1000)),
}


@cache
def workload(name: str) -> Workload:
    return Workload.build(name=name, seed=1, **WORKLOADS[name])


# ---------------------------------------------------------------- (b): records built in Python


def _raw(text: str) -> Raw:
    return Raw(b'"' + text.encode() + b'"')


def _trade(d: dict[str, Any], r: int) -> Trade:
    return Trade(
        symbol=d["S"],
        raw_time=_raw(d["t"]),
        received_ns=r,
        price=float(d["p"]),
        size=d["s"],
        id=d.get("i", 0),
        exchange=d.get("x", ""),
        conditions=tuple(d.get("c", ())),
        tape=d.get("z", ""),
    )


def _quote(d: dict[str, Any], r: int) -> Quote:
    return Quote(
        symbol=d["S"],
        raw_time=_raw(d["t"]),
        received_ns=r,
        bid_price=float(d["bp"]),
        bid_size=d["bs"],
        ask_price=float(d["ap"]),
        ask_size=d["as"],
        bid_exchange=d.get("bx", ""),
        ask_exchange=d.get("ax", ""),
        conditions=tuple(d.get("c", ())),
        tape=d.get("z", ""),
    )


def _bar(d: dict[str, Any], r: int) -> Bar:
    return Bar(
        symbol=d["S"],
        raw_time=_raw(d["t"]),
        received_ns=r,
        open=float(d["o"]),
        high=float(d["h"]),
        low=float(d["l"]),
        close=float(d["c"]),
        volume=d["v"],
        trade_count=d.get("n", 0),
        vwap=float(d.get("vw", 0.0)),
    )


_BUILDERS: dict[str, Callable[[dict[str, Any], int], MarketRecord]] = {
    "t": _trade,
    "q": _quote,
    "b": _bar,
}


# ---------------------------------------------------------------- candidates

JSON_CODEC = Codec("stocks", "json")
MSGPACK_CODEC = Codec("stocks", "msgpack")


def a_orjson_dicts(frames: list[bytes]) -> int:
    n = 0
    loads = orjson.loads
    for f in frames:
        n += len(loads(f))
    return n


def b_orjson_build_records(frames: list[bytes]) -> int:
    n = 0
    loads = orjson.loads
    builders = _BUILDERS
    for f in frames:
        n += len([builders[d["T"]](d, RECEIVED_NS) for d in loads(f)])
    return n


def c_codec_json(frames: list[bytes]) -> int:
    n = 0
    decode = JSON_CODEC.decode
    for f in frames:
        n += len(decode(f, RECEIVED_NS))
    return n


def c0_codec_json_unstamped(frames: list[bytes]) -> int:
    n = 0
    decode = JSON_CODEC.decode
    for f in frames:
        n += len(decode(f))
    return n


def d_msgpack_dicts(frames: list[bytes]) -> int:
    n = 0
    unpackb = msgpack.unpackb
    for f in frames:
        n += len(unpackb(f))
    return n


def e_codec_msgpack(frames: list[bytes]) -> int:
    n = 0
    decode = MSGPACK_CODEC.decode
    for f in frames:
        n += len(decode(f, RECEIVED_NS))
    return n


def z_stdlib_json_dicts(frames: list[bytes]) -> int:
    n = 0
    loads = json.loads
    for f in frames:
        n += len(loads(f))
    return n


# name → (function, encoding of the frames it reads)
CANDIDATES: dict[str, tuple[Callable[[list[bytes]], int], str]] = {
    "a orjson.loads -> dicts (baseline)": (a_orjson_dicts, "json"),
    "b orjson.loads + records built in Python": (b_orjson_build_records, "json"),
    "c Codec.decode JSON (msgspec typed)": (c_codec_json, "json"),
    "c' Codec.decode JSON, no received_ns": (c0_codec_json_unstamped, "json"),
    "d msgpack.unpackb -> dicts": (d_msgpack_dicts, "msgpack"),
    "e Codec.decode MessagePack (msgspec typed)": (e_codec_msgpack, "msgpack"),
    "z json.loads (stdlib) -> dicts": (z_stdlib_json_dicts, "json"),
}
BASELINE = "a orjson.loads -> dicts (baseline)"


@pytest.mark.parametrize("candidate", list(CANDIDATES))
@pytest.mark.parametrize("workload_name", list(WORKLOADS))
def test_decode(benchmark: Any, workload_name: str, candidate: str) -> None:
    w = workload(workload_name)
    fn, encoding = CANDIDATES[candidate]
    frames = w.json_frames if encoding == "json" else w.msgpack_frames
    benchmark.group = f"decode: {workload_name}"
    benchmark.name = candidate
    benchmark.extra_info.update(
        workload=workload_name,
        candidate=candidate,
        frames=w.frames,
        messages=w.messages,
        bytes=sum(map(len, frames)),
    )
    assert benchmark(fn, frames) == w.messages


def test_typed_decoders_agree_with_the_python_builder() -> None:
    """The records being compared are the same records, whichever way they were made."""
    w = workload("100 symbols, 1-20 msgs/frame")
    for jf, mf in zip(w.json_frames[:50], w.msgpack_frames[:50], strict=True):
        built = [_BUILDERS[d["T"]](d, RECEIVED_NS) for d in orjson.loads(jf)]
        from_json = JSON_CODEC.decode(jf, RECEIVED_NS)
        from_msgpack = MSGPACK_CODEC.decode(mf, RECEIVED_NS)
        assert not any(isinstance(x, FrameError) for x in from_json + from_msgpack)
        assert from_json == built
        assert [r.timestamp_ns for r in from_msgpack] == [r.timestamp_ns for r in built]  # type: ignore[union-attr]


# ---------------------------------------------------------------- the salvage path


def _with_one_unknown(frames: list[bytes]) -> list[bytes]:
    """Each frame gains one message of a type the stock family does not know (``T: "p"``)."""
    extra = b'{"T":"p","S":"BTC-PERP","t":"2022-05-27T10:18:00Z","ip":50702.8},'
    return [f[:1] + extra + f[1:] for f in frames]


def _encode(batches: list[list[dict[str, Any]]], encoding: str) -> list[bytes]:
    """Frames of these messages (``t`` in ns), timestamps in the wire form ``frames.py`` uses."""
    if encoding == "json":
        return [orjson.dumps([{**m, "t": rfc3339(m["t"])} for m in b]) for b in batches]
    ts = msgpack.Timestamp.from_unix_nano
    return [msgpack.packb([{**m, "t": ts(m["t"])} for m in b]) for b in batches]


def _with_null_conditions(w: Workload, encoding: str, every: bool) -> list[bytes]:
    """The same messages with ``c: null`` on the first trade or quote of each frame (or on
    every one): what a server writing Go nil slices sends; decoded as empty (§3.3)."""
    batches = []
    for batch in w.batches:
        out, done = [], False
        for m in batch:
            nulled = m["T"] in "tq" and (every or not done)
            out.append({**m, "c": None} if nulled else m)
            done = done or nulled
        batches.append(out)
    return _encode(batches, encoding)


SALVAGE_KINDS = [
    "clean frames",
    "one unknown T per frame",
    "one null c per frame",
    "every c null",
]


@cache
def _salvage_frames(kind: str, encoding: str) -> tuple[list[bytes], int]:
    """(frames, messages decoded from them) of one salvage case."""
    w = workload("1,000 symbols, 1-20 msgs/frame")
    clean = w.json_frames if encoding == "json" else w.msgpack_frames
    if kind == "clean frames":
        return clean, w.messages
    if kind == "one unknown T per frame":
        assert encoding == "json"
        return _with_one_unknown(clean), w.messages + w.frames
    return _with_null_conditions(w, encoding, every=kind == "every c null"), w.messages


@pytest.mark.parametrize(
    ("kind", "encoding"),
    [(k, "json") for k in SALVAGE_KINDS]
    + [(k, "msgpack") for k in SALVAGE_KINDS if "unknown" not in k],
)
def test_salvage_cost(benchmark: Any, kind: str, encoding: str) -> None:
    w = workload("1,000 symbols, 1-20 msgs/frame")
    frames, expected = _salvage_frames(kind, encoding)
    label = "JSON" if encoding == "json" else "MessagePack"
    benchmark.group = f"salvage: 1,000 symbols, 1-20 msgs/frame, {label}"
    benchmark.name = kind
    benchmark.extra_info.update(
        workload=kind,
        candidate=kind,
        frames=w.frames,
        messages=w.messages,
        baseline=kind == "clean frames",
    )
    fn = c_codec_json if encoding == "json" else e_codec_msgpack
    assert benchmark(fn, frames) == expected


def test_null_condition_frames_decode_like_empty_ones() -> None:
    """The null cases measure what they claim: every message delivered, ``()`` for null."""
    for encoding, codec in (("json", JSON_CODEC), ("msgpack", MSGPACK_CODEC)):
        frames, _ = _salvage_frames("every c null", encoding)
        clean, _ = _salvage_frames("clean frames", encoding)
        for f, g in zip(frames[:50], clean[:50], strict=True):
            records = codec.decode(g)
            assert codec.decode(f) == [
                msgspec.structs.replace(x, conditions=()) if isinstance(x, Trade | Quote) else x
                for x in records
            ]


# ---------------------------------------------------------------- eager timestamp checks
#
# The default codec keeps ``t`` raw and parses it when read. Each candidate below is the
# default ``Codec.decode`` plus one way of proving every timestamp at decode time; the
# prototypes put their check inline after the call, as it would sit in the fast path.

JSON_STRICT = Codec("stocks", "json", strict_timestamps=True)
MSGPACK_STRICT = Codec("stocks", "msgpack", strict_timestamps=True)
_raw_time = operator.attrgetter("raw_time")
_AwareList = list[Annotated[dt.datetime, msgspec.Meta(tz=True)]]
_JSON_TIMES = msgspec.json.Decoder(_AwareList).decode
_MSGPACK_TIMES = msgspec.msgpack.Decoder(_AwareList).decode
#: Shape only (digits and separators): no ranges, no calendar — weaker than the proof.
_JSON_SHAPES = re.compile(rb'(?:"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?Z")*').fullmatch


def _with_t_as(t_type: Any) -> Codec:
    """A JSON codec whose Trade/Quote/Bar decode ``t`` as ``t_type`` (a constraint checked
    inside the one msgspec call) instead of ``msgspec.Raw``; records otherwise the same."""
    classes = []
    for cls in (Trade, Quote, Bar):
        spec: list[Any] = []
        for f in msgspec.structs.fields(cls):
            typ = t_type if f.encode_name == "t" else f.type
            if f.default is not msgspec.NODEFAULT:
                spec.append((f.name, typ, f.default))
            elif f.default_factory is not msgspec.NODEFAULT:
                spec.append((f.name, typ, msgspec.field(default_factory=f.default_factory)))
            else:
                spec.append((f.name, typ))
        config = cls.__struct_config__
        classes.append(
            msgspec.defstruct(
                f"{cls.__name__}T",
                spec,
                kw_only=True,
                frozen=True,
                gc=False,
                tag_field="T",
                tag=config.tag,
                rename={f.name: f.encode_name for f in msgspec.structs.fields(cls)},
            )
        )
    codec = Codec("stocks", "json")
    union: Any = Union[tuple(classes)]  # noqa: UP007 - a runtime union of a tuple
    codec._decode_frame = msgspec.json.Decoder(list[union]).decode
    return codec


_PATTERN_CODEC = _with_t_as(
    Annotated[str, msgspec.Meta(pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")]
)
_DATETIME_CODEC = _with_t_as(dt.datetime)
_LENGTH_CODEC = _with_t_as(Annotated[str, msgspec.Meta(min_length=20, max_length=30)])


def _decode_all(codec: Codec) -> Callable[[list[bytes]], int]:
    def run(frames: list[bytes]) -> int:
        n = 0
        decode = codec.decode
        for f in frames:
            n += len(decode(f, RECEIVED_NS))
        return n

    return run


def t_join_only(frames: list[bytes]) -> int:
    n = 0
    decode = JSON_CODEC.decode
    for f in frames:
        records = decode(f, RECEIVED_NS)
        b"".join(map(_raw_time, records))
        n += len(records)
    return n


def t_join_regex(frames: list[bytes]) -> int:
    n = 0
    decode = JSON_CODEC.decode
    for f in frames:
        records = decode(f, RECEIVED_NS)
        if _JSON_SHAPES(b"".join(map(_raw_time, records))) is None:
            raise ValueError("malformed timestamp")
        n += len(records)
    return n


def t_join_datetimes(frames: list[bytes]) -> int:
    n = 0
    decode = JSON_CODEC.decode
    for f in frames:
        records = decode(f, RECEIVED_NS)
        _JSON_TIMES(b"[" + b",".join(map(_raw_time, records)) + b"]")
        n += len(records)
    return n


def t_msgpack_join_datetimes(frames: list[bytes]) -> int:
    n = 0
    decode = MSGPACK_CODEC.decode
    for f in frames:
        records = decode(f, RECEIVED_NS)
        k = len(records)
        head = bytes((0x90 | k,)) if k < 16 else b"\xdc" + k.to_bytes(2, "big")
        _MSGPACK_TIMES(head + b"".join(map(_raw_time, records)))
        n += len(records)
    return n


def t_parse_each(frames: list[bytes]) -> int:
    n = 0
    decode = JSON_CODEC.decode
    for f in frames:
        records = decode(f, RECEIVED_NS)
        for r in records:
            # Every record here is a market record; an isinstance would be timed too.
            r.timestamp_ns  # type: ignore[union-attr]  # noqa: B018
        n += len(records)
    return n


# name → (function, encoding of the frames it reads); the first of each encoding is its
# group's baseline.
TIME_CHECKS: dict[str, tuple[Callable[[list[bytes]], int], str]] = {
    "default: lazy (parsed when read)": (c_codec_json, "json"),
    "strict_timestamps=True (2nd msgspec pass)": (_decode_all(JSON_STRICT), "json"),
    "proto: + join raw times (floor of any post-pass)": (t_join_only, "json"),
    "proto: + joined times -> msgspec list[datetime]": (t_join_datetimes, "json"),
    "proto: + joined times -> one regex (shape only)": (t_join_regex, "json"),
    "proto: + parse_time_ns on each record": (t_parse_each, "json"),
    "proto: t as str + Meta(min/max_length), in C": (_decode_all(_LENGTH_CODEC), "json"),
    "proto: t as str + Meta(pattern), in the call": (_decode_all(_PATTERN_CODEC), "json"),
    "proto: t as datetime, in C (loses ns)": (_decode_all(_DATETIME_CODEC), "json"),
    "MessagePack default: lazy": (e_codec_msgpack, "msgpack"),
    "MessagePack strict_timestamps=True": (_decode_all(MSGPACK_STRICT), "msgpack"),
    "MessagePack proto: + joined times -> list[datetime]": (t_msgpack_join_datetimes, "msgpack"),
}
TIME_WORKLOADS = [w for w in WORKLOADS if w != "1,000-msg frame"]


@pytest.mark.parametrize("check", list(TIME_CHECKS))
@pytest.mark.parametrize("workload_name", TIME_WORKLOADS)
def test_timestamp_check(benchmark: Any, workload_name: str, check: str) -> None:
    w = workload(workload_name)
    fn, encoding = TIME_CHECKS[check]
    frames = w.json_frames if encoding == "json" else w.msgpack_frames
    kind = "JSON" if encoding == "json" else "MessagePack"
    benchmark.group = f"timestamp checks, {kind}: {workload_name}"
    benchmark.name = check
    baseline = check == next(k for k, (_, e) in TIME_CHECKS.items() if e == encoding)
    benchmark.extra_info.update(
        workload=workload_name,
        candidate=check,
        frames=w.frames,
        messages=w.messages,
        baseline=baseline,
    )
    assert benchmark(fn, frames) == w.messages


def test_time_check_prototypes_catch_what_they_claim() -> None:
    """The prototypes really check: a bad time fails them (or is refused by the decoder)."""
    bad = b'[{"T":"q","S":"A","bp":1,"bs":1,"ap":1,"as":1,"t":"2021-02-22T15:51:4a.5Z"}]'
    for fn in (t_join_regex, t_join_datetimes, t_parse_each):
        with pytest.raises(ValueError):
            fn([bad])
    for codec in (_PATTERN_CODEC, _DATETIME_CODEC):  # their fast path (the part measured)
        with pytest.raises(msgspec.ValidationError):
            codec._decode_frame(bad)
    assert _LENGTH_CODEC._decode_frame(bad)[0].raw_time == "2021-02-22T15:51:4a.5Z"  # missed
    assert not any(isinstance(x, Record) for x in JSON_STRICT.decode(bad))


# ---------------------------------------------------------------- reading timestamps
#
# One read per record of already decoded frames: what a strategy pays on top of decoding.
# Each group's baseline is the e2e floor's conversion of the same times.


def _read_cases() -> dict[str, tuple[Callable[[], int], str]]:
    from _clients import floor_time_ns

    from rxalpaca.timestamps import _FRACTION_SCALE, _SECONDS, _record_time_ns, parse_time_ns

    w = workload(TIME_WORKLOADS[0])
    json_records: list[Any] = [r for f in w.json_frames for r in JSON_CODEC.decode(f)]
    msgpack_records: list[Any] = [r for f in w.msgpack_frames for r in MSGPACK_CODEC.decode(f)]
    texts = [m["t"] for f in w.json_frames for m in orjson.loads(f)]
    stamps = [m["t"] for f in w.msgpack_frames for m in msgpack.unpackb(f)]  # Timestamp objects

    def floor_json() -> int:
        for text in texts:
            floor_time_ns(text)
        return len(texts)

    def reads(records: list[Any], attribute: str) -> Callable[[], int]:
        get = operator.attrgetter(attribute)

        def run() -> int:
            for record in records:
                get(record)
            return len(records)

        return run

    def timestamp_ns_json() -> int:  # the property read as users write it
        for record in json_records:
            record.timestamp_ns  # noqa: B018
        return len(json_records)

    def python_path(records: list[Any]) -> Callable[[], int]:
        def run() -> int:  # the pure-Python getter (no C module), called as the property would
            for record in records:
                _record_time_ns(record)
            return len(records)

        return run

    def full_parser() -> int:  # the previous read path: parse_time_ns on every read
        for record in json_records:
            parse_time_ns(record.raw_time)
        return len(json_records)

    def uncached_split() -> int:  # the split without the seconds cache: a date per read
        for record in json_records:
            data = bytes(record.raw_time)
            base = _dt_seconds(data[1:20])
            fraction = data[21:-2]
            if fraction:
                base += int(fraction) * _FRACTION_SCALE[len(fraction)]
        return len(json_records)

    def floor_msgpack() -> int:
        for stamp in stamps:
            stamp.to_unix_nano()
        return len(stamps)

    def timestamp_ns_msgpack() -> int:
        for record in msgpack_records:
            record.timestamp_ns  # noqa: B018
        return len(msgpack_records)

    assert _SECONDS is not None  # the cache the property uses (filled by the first read)
    return {
        "floor: orjson str -> floor_time_ns": (floor_json, "json"),
        "timestamp_ns (the C read path if built)": (timestamp_ns_json, "json"),
        "pure-Python getter (cached seconds, struct split)": (python_path(json_records), "json"),
        "timestamp (datetime view)": (reads(json_records, "timestamp"), "json"),
        "parse_time_ns per read (the old path)": (full_parser, "json"),
        "split without the seconds cache": (uncached_split, "json"),
        "MessagePack floor: Timestamp.to_unix_nano()": (floor_msgpack, "msgpack"),
        "MessagePack timestamp_ns (the C read path if built)": (timestamp_ns_msgpack, "msgpack"),
        "MessagePack pure-Python getter (in place)": (python_path(msgpack_records), "msgpack"),
        "MessagePack timestamp (datetime view)": (reads(msgpack_records, "timestamp"), "msgpack"),
    }


def _dt_seconds(prefix: bytes) -> int:
    t = dt.datetime.fromisoformat(prefix.decode()).replace(tzinfo=dt.UTC)
    return int(t.timestamp()) * 1_000_000_000


JSON_CODEC = Codec("stocks", "json")
MSGPACK_CODEC = Codec("stocks", "msgpack")
READ_CASES = [
    "floor: orjson str -> floor_time_ns",
    "timestamp_ns (the C read path if built)",
    "pure-Python getter (cached seconds, struct split)",
    "timestamp (datetime view)",
    "parse_time_ns per read (the old path)",
    "split without the seconds cache",
    "MessagePack floor: Timestamp.to_unix_nano()",
    "MessagePack timestamp_ns (the C read path if built)",
    "MessagePack pure-Python getter (in place)",
    "MessagePack timestamp (datetime view)",
]


@pytest.mark.parametrize("case", READ_CASES)
def test_timestamp_read(benchmark: Any, case: str) -> None:
    cases = _read_cases()
    fn, encoding = cases[case]
    w = workload(TIME_WORKLOADS[0])
    kind = "JSON" if encoding == "json" else "MessagePack"
    benchmark.group = f"timestamp reads, {kind}: {TIME_WORKLOADS[0]}"
    benchmark.name = case
    fn()  # warm: the seconds caches
    benchmark.extra_info.update(
        workload=TIME_WORKLOADS[0],
        candidate=case,
        frames=w.frames,
        messages=w.messages,
        baseline=case.startswith(("floor", "MessagePack floor")),
    )
    assert benchmark(fn) == w.messages


def test_timestamp_reads_agree() -> None:
    """Every candidate's ns are the full parser's, and the floor's are too."""
    from _clients import floor_time_ns

    from rxalpaca.timestamps import _record_time_ns, parse_time_ns

    w = workload(TIME_WORKLOADS[0])
    records: list[Any] = [r for f in w.json_frames for r in JSON_CODEC.decode(f)]
    texts = [m["t"] for f in w.json_frames for m in orjson.loads(f)]
    full = [parse_time_ns(r.raw_time) for r in records]
    assert [r.timestamp_ns for r in records] == full
    assert [floor_time_ns(t) for t in texts] == full
    packed: list[Any] = [r for f in w.msgpack_frames for r in MSGPACK_CODEC.decode(f)]
    assert [r.timestamp_ns for r in packed] == full
    assert [_record_time_ns(r) for r in records + packed] == full + full


# ---------------------------------------------------------------- encoding

SUBSCRIBE: dict[str, Any] = {
    "action": "subscribe",
    "trades": [f"S{i:03d}" for i in range(100)],
    "quotes": [f"S{i:03d}" for i in range(100)],
}
_MSGSPEC_ENC = msgspec.msgpack.Encoder()

ENCODERS: dict[str, Callable[[], Any]] = {
    "orjson.dumps -> bytes": lambda: orjson.dumps(SUBSCRIBE),
    "orjson.dumps().decode() -> str (Codec JSON)": lambda: orjson.dumps(SUBSCRIBE).decode(),
    "json.dumps -> str (stdlib)": lambda: json.dumps(SUBSCRIBE, separators=(",", ":")),
    "msgspec.json.encode -> bytes": lambda: msgspec.json.encode(SUBSCRIBE),
    "msgspec.msgpack.Encoder (Codec MessagePack)": lambda: _MSGSPEC_ENC.encode(SUBSCRIBE),
    "msgpack.packb": lambda: msgpack.packb(SUBSCRIBE),
}


@pytest.mark.parametrize("encoder", list(ENCODERS))
def test_encode_subscribe_200(benchmark: Any, encoder: str) -> None:
    benchmark.group = "encode: subscribe, 2 channels x 100 symbols"
    benchmark.name = encoder
    benchmark.extra_info.update(workload="encode", candidate=encoder, frames=1, messages=1)
    assert benchmark(ENCODERS[encoder])


# ---------------------------------------------------------------- report


def report(paths: list[str]) -> str:
    """A Markdown table from ``--benchmark-json`` files of one or more runs.

    Each figure is a ratio to the baseline of its group *in the same run* (this machine is a
    shared VM; absolute times drift between runs, ratios much less). The ratio uses each
    benchmark's minimum (the least disturbed round); with several runs the table shows the
    median ratio and the range over runs. Absolute times are the median over runs of the
    minimum.
    """
    runs = [json.loads(Path(p).read_text()) for p in paths]
    ratios: dict[tuple[str, str], list[float]] = {}
    mins: dict[tuple[str, str], list[float]] = {}
    info: dict[tuple[str, str], dict[str, Any]] = {}
    for run in runs:
        groups: dict[str, list[dict[str, Any]]] = {}
        for bench in run["benchmarks"]:
            groups.setdefault(bench["group"], []).append(bench)
        for group, benches in groups.items():
            base = next(
                (
                    b
                    for b in benches
                    if b["extra_info"].get("baseline") or b["extra_info"]["candidate"] == BASELINE
                ),
                benches[0],
            )
            for b in benches:
                key = (group, b["extra_info"]["candidate"])
                ratios.setdefault(key, []).append(b["stats"]["min"] / base["stats"]["min"])
                mins.setdefault(key, []).append(b["stats"]["min"])
                info[key] = b["extra_info"]
    out = []
    for group in dict.fromkeys(g for g, _ in ratios):
        keys = sorted((k for k in ratios if k[0] == group), key=lambda k: median(ratios[k]))
        out.append(f"\n**{group}**\n")
        out.append("| candidate | x baseline | range over runs | µs/frame | ns/message |")
        out.append("|---|---:|---:|---:|---:|")
        for key in keys:
            r = ratios[key]
            t = median(mins[key])
            per_frame = t / info[key]["frames"] * 1e6
            per_msg = t / info[key]["messages"] * 1e9
            out.append(
                f"| {key[1]} | {median(r):.2f} | {min(r):.2f}-{max(r):.2f} "
                f"| {per_frame:,.2f} | {per_msg:,.0f} |"
            )
    machine = runs[0].get("machine_info", {})
    head = (
        f"{len(runs)} run(s); python {machine.get('python_version')} on "
        f"{machine.get('cpu', {}).get('brand_raw')}; first run {runs[0].get('datetime')}"
    )
    return head + "\n" + "\n".join(out)


if __name__ == "__main__":
    print(report(sys.argv[1:] or [".benchmarks/codec.json"]))
