"""The recording file: round trip, truncation at every byte, bad input, rotation, overflow."""

from __future__ import annotations

import json
import struct
import time
import zlib
from pathlib import Path

import pytest
import reactivex
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from rxalpaca import ops
from rxalpaca.errors import FrameError, RecordingError, RecordingTruncated
from rxalpaca.frames import Frame, Opcode
from rxalpaca.models import Gap
from rxalpaca.recording import (
    FORMAT_VERSION,
    MAGIC,
    Kind,
    Overflow,
    Recorder,
    RecordingHeader,
    open_recording,
    part_paths,
)

HEADER = RecordingHeader(feed="iex", encoding="json", subscriptions={"quotes": ["AAPL"]})


def frame(i: int) -> Frame:
    return Frame(b'[{"T":"q","S":"AAPL","bp":%d}]' % i, Opcode.TEXT, True, 1_000 + i)


def write(path: Path, n: int, *, last_alone: bool = False) -> list[int]:
    """``n`` frames; with ``last_alone`` the last one in a zstd block of its own.
    Returns the file's size after each flush."""
    sizes = []
    with Recorder(path, HEADER, flush_interval=60) as rec:
        for i in range(n - 1 if last_alone else n):
            rec.frame(frame(i))
        assert rec.flush(10)
        sizes.append(path.stat().st_size)
        if last_alone:
            rec.frame(frame(n - 1))
            assert rec.flush(10)
            sizes.append(path.stat().st_size)
    return sizes


def test_every_kind_of_record_reads_back_as_written(tmp_path: Path) -> None:
    path = tmp_path / "a.rxa"
    gap = Gap(
        feed="iex", channels=("quotes",), symbols=("AAPL",), last_before_ns=1, first_after_ns=2
    )
    with Recorder(path, HEADER) as rec:
        rec.state("connecting")
        rec.sent('{"action":"subscribe","quotes":["AAPL"]}', Opcode.TEXT)
        rec.frame(Frame(b"\x91\x80", Opcode.BINARY, False, 5))
        rec.frame(Frame("[]", Opcode.TEXT, True, 6))
        rec.frame(FrameError("message exceeds 10 bytes", b"[1,2,3", 7))
        rec.gap(gap)
    entries = list(reader := open_recording(path))
    assert reader.stopped is None and reader.header == HEADER
    assert [e.kind for e in entries] == [
        Kind.STATE,
        Kind.SENT,
        Kind.RECEIVED,
        Kind.RECEIVED,
        Kind.FRAME_ERROR,
        Kind.GAP,
    ]
    assert entries[0].value == "connecting"
    assert entries[1].value.payload == '{"action":"subscribe","quotes":["AAPL"]}'
    assert entries[2].value == Frame(b"\x91\x80", Opcode.BINARY, False, 5)
    assert entries[3].value == Frame("[]", Opcode.TEXT, True, 6)
    err = entries[4].value
    assert isinstance(err, FrameError) and err.reason == "message exceeds 10 bytes"
    assert err.excerpt == b"[1,2,3" and err.received_ns == 7
    assert entries[5].value == gap


@pytest.fixture(scope="module")
def cut_source(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, int]:
    path = tmp_path_factory.mktemp("cut") / "c.rxa"
    before, _ = write(path, 50, last_alone=True)
    return path.read_bytes(), before


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_a_file_cut_inside_its_last_record_reads_back_every_record_before_it(
    tmp_path_factory: pytest.TempPathFactory, cut_source: tuple[bytes, int], data: st.DataObject
) -> None:
    whole, last_starts = cut_source
    cut = data.draw(st.integers(last_starts, len(whole) - 1))
    path = tmp_path_factory.mktemp("cut") / "t.rxa"
    path.write_bytes(whole[:cut])
    reader = open_recording(path)
    frames = [e.value for e in reader]
    # The last record's block is whole only once the file reaches its end mark.
    assert frames[:49] == [frame(i) for i in range(49)]
    assert len(frames) in (49, 50)
    assert isinstance(reader.stopped, RecordingTruncated)
    assert reader.stopped.records == len(frames)
    assert "the writer stopped" in str(reader.stopped)


def test_every_cut_offset_of_the_last_record_is_handled(
    tmp_path: Path, cut_source: tuple[bytes, int]
) -> None:
    whole, last_starts = cut_source
    for cut in range(last_starts, len(whole)):
        path = tmp_path / f"{cut}.rxa"
        path.write_bytes(whole[:cut])
        reader = open_recording(path)
        assert len(list(reader)) >= 49 and reader.stopped is not None, cut


def test_not_a_recording_wrong_version_and_corrupt_data_are_clear_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.rxa"
    junk.write_bytes(b'{"T":"q"}\n' * 10)
    with pytest.raises(RecordingError, match="not an rxalpaca recording"):
        open_recording(junk)
    good = tmp_path / "good.rxa"
    write(good, 200)
    raw = good.read_bytes()
    newer = tmp_path / "newer.rxa"
    newer.write_bytes(MAGIC + struct.pack("<H", FORMAT_VERSION + 1) + raw[10:])
    with pytest.raises(RecordingError, match=f"version {FORMAT_VERSION + 1}"):
        open_recording(newer)
    with pytest.raises(RecordingError, match="no such file"):
        open_recording(tmp_path / "missing.rxa")
    # Flip bytes in the middle of the compressed records: zstd or the checksum objects.
    for at in range(len(raw) // 2, len(raw) - 8, 7):
        bad = tmp_path / "bad.rxa"
        bad.write_bytes(raw[:at] + bytes([raw[at] ^ 0x5A]) + raw[at + 1 :])
        reader = open_recording(bad)
        with pytest.raises(RecordingError, match="corrupt") as info:
            list(reader)
        assert info.value.records < 200  # every record before the damage, none after


def test_rotation_by_size_writes_parts_that_read_back_as_one(tmp_path: Path) -> None:
    path = tmp_path / "day.rxa"
    with Recorder(path, HEADER, max_bytes=300, flush_interval=60) as rec:
        for i in range(300):
            rec.frame(frame(i))
            if i % 20 == 19:
                assert rec.flush(10)
    parts = part_paths(path)
    assert len(parts) > 2 and parts == rec.paths
    assert parts[1].name == "day.1.rxa"
    assert [h.part for h in (open_recording([p]).header for p in parts)] == list(range(len(parts)))
    assert [e.value for e in open_recording(path)] == [frame(i) for i in range(300)]


def test_rotation_by_time(tmp_path: Path) -> None:
    path = tmp_path / "t.rxa"
    with Recorder(path, HEADER, max_seconds=0.01, flush_interval=0.005) as rec:
        rec.frame(frame(0))
        assert rec.flush(10)
        time.sleep(0.05)  # the clock must pass; nothing to wait for but time itself
        assert rec.flush(10)
        rec.frame(frame(1))
    assert len(rec.paths) >= 2
    assert [e.value for e in open_recording(path)] == [frame(0), frame(1)]


def test_a_full_queue_drops_counts_and_marks_the_hole(tmp_path: Path) -> None:
    path = tmp_path / "o.rxa"
    counts: list[int] = []
    rec = Recorder(path, HEADER, queue_size=5, flush_interval=60, on_overflow=counts.append)
    assert rec.flush(10)  # the writer is idle, waiting a minute: nothing drains the queue
    for i in range(20):
        rec.frame(frame(i))
    assert rec.dropped == 15 and counts == list(range(1, 16))
    assert rec.flush(10)
    rec.frame(frame(20))
    rec.close()
    entries = list(open_recording(path))
    assert [e.value for e in entries[:5]] == [frame(i) for i in range(5)]
    assert entries[5].kind is Kind.OVERFLOW
    assert entries[5].value == Overflow(15, frame(5).received_ns, frame(19).received_ns)
    assert entries[6].value == frame(20)


def test_overflow_at_the_very_end_is_still_marked(tmp_path: Path) -> None:
    path = tmp_path / "e.rxa"
    rec = Recorder(path, HEADER, queue_size=1, flush_interval=60)
    assert rec.flush(10)
    rec.frame(frame(0))
    rec.frame(frame(1))
    rec.close()
    assert [e.kind for e in open_recording(path)] == [Kind.RECEIVED, Kind.OVERFLOW]


def test_ops_record_passes_frames_on_and_closes_its_file(tmp_path: Path) -> None:
    path = tmp_path / "ops.rxa"
    frames = [frame(i) for i in range(10)]
    seen: list[object] = []
    reactivex.from_iterable(frames).pipe(ops.record(path, HEADER)).subscribe(seen.append)
    assert seen == frames
    assert [e.value for e in open_recording(path)] == frames


def test_bad_options_are_one_clear_sentence(tmp_path: Path) -> None:
    from rxalpaca.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="queue_size"):
        Recorder(tmp_path / "x.rxa", HEADER, queue_size=0)
    with pytest.raises(ConfigurationError, match="max_bytes"):
        Recorder(tmp_path / "x.rxa", HEADER, max_bytes=0)


def test_a_writer_that_failed_counts_what_it_could_not_write(tmp_path: Path) -> None:
    path = tmp_path / "full.rxa"
    rec = Recorder(path, HEADER, flush_interval=60)
    assert rec.flush(10)
    rec._part.fh.close()  # as if the disk went away under the writer
    rec.frame(frame(0))
    assert not rec.flush(10)  # the writer stopped on the error
    rec.frame(frame(1))
    assert rec.dropped == 1
    with pytest.raises(ValueError, match="closed file"):
        rec.close()  # the reason surfaces at close


def test_a_missing_rotated_part_reads_as_a_gap_where_it_was(tmp_path: Path) -> None:
    path = tmp_path / "day.rxa"
    with Recorder(path, HEADER, max_bytes=200, flush_interval=60) as rec:
        for i in range(200):
            rec.frame(frame(i))
            if i % 20 == 19:
                assert rec.flush(10)
    assert len(rec.paths) >= 4
    lost = rec.paths[2]
    lost_frames = [e.value for e in open_recording([lost])]
    lost.unlink()
    entries = list(open_recording(path))
    gaps = [e.value for e in entries if e.kind is Kind.GAP]
    [gap] = gaps
    assert gap.reason == "missing_part" and gap.symbols == ("AAPL",)
    frames = [e.value for e in entries if e.kind is Kind.RECEIVED]
    assert frames == [f for f in (frame(i) for i in range(200)) if f not in lost_frames]
    assert gap.last_before_ns is not None and gap.first_after_ns is not None
    before = [f for f in frames if f.received_ns <= gap.last_before_ns]
    assert before == frames[: len(before)] and before[-1].received_ns < lost_frames[0].received_ns


def test_an_unwritable_path_is_one_clear_sentence(tmp_path: Path) -> None:
    from rxalpaca.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="cannot write the recording"):
        Recorder(tmp_path / "no" / "such" / "dir" / "x.rxa", HEADER)


def write_v1(path: Path, frames: list[Frame], *, end: bool = True) -> None:
    """A version 1 file, written by hand from its layout (one checksummed record after
    another in one zstd stream), as rxalpaca before format 2 wrote them."""
    head = json.dumps({"format": 1, "feed": "iex", "encoding": "json"}).encode()
    body = bytearray()
    for f in frames:
        payload = f.payload.encode() if isinstance(f.payload, str) else f.payload
        rec = struct.pack("<Bq", Kind.RECEIVED, f.received_ns)
        rec += bytes([(f.opcode & 0x0F) | (0x80 if f.fin else 0)]) + payload
        body += struct.pack("<II", len(rec) - 9, zlib.crc32(rec)) + rec
    z = zstandard.ZstdCompressor(level=1).compressobj()
    flush = zstandard.COMPRESSOBJ_FLUSH_FINISH if end else zstandard.COMPRESSOBJ_FLUSH_BLOCK
    data = z.compress(bytes(body)) + z.flush(flush)
    path.write_bytes(MAGIC + struct.pack("<HI", 1, len(head)) + head + data)


def test_version_1_recordings_still_read(tmp_path: Path) -> None:
    path = tmp_path / "v1.rxa"
    frames = [frame(i) for i in range(30)]
    write_v1(path, frames)
    reader = open_recording(path)
    assert reader.header.format == 1
    assert [e.value for e in reader] == frames and reader.stopped is None
    # Cut off: the whole records before the cut, and a note.
    cut = tmp_path / "v1cut.rxa"
    write_v1(cut, frames, end=False)
    reader = open_recording(cut)
    assert [e.value for e in reader] == frames
    assert isinstance(reader.stopped, RecordingTruncated)
    # A damaged record: the records before it, then a clear error.
    raw = path.read_bytes()
    head = len(MAGIC) + 6 + struct.unpack_from("<I", raw, len(MAGIC) + 2)[0]
    plain = bytearray(zstandard.ZstdDecompressor().decompressobj().decompress(raw[head:]))
    plain[-3] ^= 0x5A  # the last record's payload: its checksum no longer matches
    bad = tmp_path / "v1bad.rxa"
    bad.write_bytes(raw[:head] + zstandard.ZstdCompressor(level=1).compress(bytes(plain)))
    reader = open_recording(bad)
    got: list[Frame] = []
    with pytest.raises(RecordingError, match="checksum") as info:
        got.extend(e.value for e in reader)
    assert got == frames[:29] and info.value.records == 29


def test_a_block_with_every_kind_reads_back_and_big_batches_split_into_blocks(
    tmp_path: Path,
) -> None:
    path = tmp_path / "big.rxa"
    big = [Frame(bytes([65 + i % 26]) * 50_000, Opcode.BINARY, True, i) for i in range(12)]
    with Recorder(path, HEADER, flush_interval=60) as rec:
        for f in big:  # 600 kB in one writer pass: several blocks of about 64 KiB
            rec.frame(f)
        rec.state("connected")
        rec.frame(Frame("é", Opcode.TEXT, False, 99))
    entries = list(open_recording(path))
    assert [e.value for e in entries[:12]] == big
    assert entries[12].kind is Kind.STATE and entries[12].value == "connected"
    assert entries[13].value == Frame("é", Opcode.TEXT, False, 99)


def test_a_cut_or_garbled_header_is_a_clear_error(tmp_path: Path) -> None:
    good = tmp_path / "good.rxa"
    write(good, 5)
    raw = good.read_bytes()
    hlen = struct.unpack_from("<I", raw, 10)[0]
    cut = tmp_path / "cut.rxa"
    cut.write_bytes(raw[: 14 + hlen // 2])
    with pytest.raises(RecordingError, match=r"unreadable header \(the header is cut off\)"):
        open_recording(cut)
    garbled = tmp_path / "garbled.rxa"
    garbled.write_bytes(raw[:14] + b"x" * hlen + raw[14 + hlen :])
    with pytest.raises(RecordingError, match="unreadable header"):
        open_recording(garbled)


def test_zstd_frames_appended_to_a_recording_read_on(tmp_path: Path) -> None:
    """A compressed stream may be several zstd frames one after another (an appended
    file): the reader goes on through all of them."""
    good = tmp_path / "good.rxa"
    write(good, 50)
    raw = good.read_bytes()
    hlen = struct.unpack_from("<I", raw, 10)[0]
    once = list(open_recording(good))
    twice = tmp_path / "twice.rxa"
    twice.write_bytes(raw + raw[14 + hlen :])
    again = list(open_recording(twice))
    assert again == once + once
