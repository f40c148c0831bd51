"""The RFC 6455 push parser (``rxalpaca.framing``), with byte strings only."""

from __future__ import annotations

import doctest
import itertools
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rxalpaca.framing
from rxalpaca.frames import Frame, Opcode
from rxalpaca.framing import (
    Close,
    CloseCode,
    Failure,
    FrameEvent,
    FrameParser,
    Ping,
    Pong,
    TooLarge,
    default_max_skip_bytes,
)
from tests.conftest import TIMING_FACTOR

TEXT, BINARY, CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONTINUATION
PROTOCOL_ERROR, TOO_BIG = CloseCode.PROTOCOL_ERROR, CloseCode.MESSAGE_TOO_BIG


def header(length: int, opcode: int = TEXT, *, fin: bool = True, first: int = 0) -> bytes:
    """A server frame header in the shortest form for ``length`` (RFC 6455 §5.2);
    ``first`` is OR-ed into the first byte (RSV bits)."""
    b1 = (0x80 if fin else 0) | first | opcode
    if length < 126:
        return bytes([b1, length])
    if length < 1 << 16:
        return bytes([b1, 126]) + length.to_bytes(2, "big")
    return bytes([b1, 127]) + length.to_bytes(8, "big")


def frame(payload: bytes, opcode: int = TEXT, *, fin: bool = True, first: int = 0) -> bytes:
    return header(len(payload), opcode, fin=fin, first=first) + payload


def feed_all(parser: FrameParser, pieces: list[bytes]) -> list[FrameEvent]:
    out: list[FrameEvent] = []
    for p in pieces:
        out.extend(parser.feed(p))
    return out


def one_byte_at_a_time(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


# ---------------------------------------------------------------- data frames


def test_text_binary_and_continuation_frames_come_out_as_they_came() -> None:
    data = (
        frame(b'[{"T":"t"}]')
        + frame(b"\x91\x80", BINARY)
        + frame(b"[1,", fin=False)
        + frame(b"2]", CONT)
    )
    assert FrameParser().feed(data, received_ns=42) == [
        Frame(b'[{"T":"t"}]', TEXT, True, 42),
        Frame(b"\x91\x80", BINARY, True, 42),
        Frame(b"[1,", TEXT, False, 42),
        Frame(b"2]", CONT, True, 42),
    ]


def test_a_frame_is_stamped_with_the_read_that_completed_it() -> None:
    parser = FrameParser()
    data = frame(b"[]") + frame(b"[1]")
    assert parser.feed(data[:3], received_ns=1) == []
    assert parser.feed(data[3:5], received_ns=2) == [Frame(b"[]", TEXT, True, 2)]
    assert parser.feed(data[5:], received_ns=3) == [Frame(b"[1]", TEXT, True, 3)]


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_extended_lengths_at_their_boundaries(length: int) -> None:
    """7-bit up to 125, 16-bit (126) up to 65535, 64-bit (127) from 65536 (§5.2)."""
    payload = bytes(range(256)) * (length // 256) + bytes(range(length % 256))
    data = frame(payload, BINARY) + frame(b"[]")
    expected_head = 2 if length < 126 else 4 if length < 65536 else 10
    assert len(data) == expected_head + length + 4
    parser = FrameParser()
    assert parser.feed(data) == [Frame(payload, BINARY, True, 0), Frame(b"[]", TEXT, True, 0)]
    assert parser.buffered == 0


@pytest.mark.parametrize("length", [0, 125, 126, 65535])
def test_a_longer_length_form_than_needed_is_accepted(length: int) -> None:
    """Only the shortest form is valid to send, but refusing the others protects nothing."""
    payload = b"x" * length
    data = bytes([0x81, 127]) + length.to_bytes(8, "big") + payload
    assert FrameParser().feed(data) == [Frame(payload, TEXT, True, 0)]


@pytest.mark.parametrize("length", [125, 126, 65535, 65536])
def test_extended_lengths_split_inside_the_length_bytes(length: int) -> None:
    data = frame(b"y" * length)
    parser = FrameParser()
    events = feed_all(parser, [data[:1], data[1:3], data[3:5], data[5:9], data[9:]])
    assert events == [Frame(b"y" * length, TEXT, True, 0)]
    assert parser.buffered == 0


def test_a_large_frame_fed_in_many_reads_is_joined_once() -> None:
    """The pieces of an incomplete frame are kept as a list and joined when the frame
    is complete: holding it costs its size, not its size times the number of reads."""
    payload = bytes(range(256)) * 4096  # 1 MiB
    data = frame(payload, BINARY)
    parser = FrameParser(max_frame_bytes=2 << 20)
    pieces = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    for i, piece in enumerate(pieces[:-1]):
        assert parser.feed(piece) == []
        assert parser.buffered == sum(map(len, pieces[: i + 1]))
    assert parser.feed(pieces[-1]) == [Frame(payload, BINARY, True, 0)]
    assert parser.buffered == 0


def test_a_frame_in_many_small_reads_costs_linear_time() -> None:
    """4 MiB in 16,384 reads: joined once it is a few ms; re-joined on every read it
    would copy 32 GiB (minutes)."""
    payload = b"k" * (4 << 20)
    data = frame(payload, BINARY)
    parser = FrameParser(max_frame_bytes=8 << 20)
    events: list[FrameEvent] = []
    t0 = time.perf_counter()
    for i in range(0, len(data), 256):
        events += parser.feed(data[i : i + 256])
    elapsed = time.perf_counter() - t0
    assert events == [Frame(payload, BINARY, True, 0)]
    assert elapsed < 3.0 * TIMING_FACTOR, f"{elapsed:.2f} s"


# ---------------------------------------------------------------- control frames


def test_control_frames_between_the_fragments_of_a_message_come_in_their_place() -> None:
    """§5.4: control frames may be injected in the middle of a fragmented message."""
    data = (
        frame(b"[1,", fin=False)
        + frame(b"p1", Opcode.PING)
        + frame(b"2,", CONT, fin=False)
        + frame(b"", Opcode.PONG)
        + frame(b"3]", CONT)
        + frame(b"\x03\xe8bye", Opcode.CLOSE)
    )
    assert FrameParser().feed(data, received_ns=5) == [
        Frame(b"[1,", TEXT, False, 5),
        Ping(b"p1"),
        Frame(b"2,", CONT, False, 5),
        Pong(b""),
        Frame(b"3]", CONT, True, 5),
        Close(1000, "bye"),
    ]


def test_a_control_frame_of_125_bytes_is_fine_and_126_is_a_protocol_error() -> None:
    assert FrameParser().feed(frame(b"p" * 125, Opcode.PING)) == [Ping(b"p" * 125)]
    parser = FrameParser()
    events = parser.feed(frame(b"p" * 126, Opcode.PING) + frame(b"[]"))
    assert events == [Failure(PROTOCOL_ERROR, "control frame over 125 bytes (opcode 0x9)")]
    assert parser.closed


@pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.PONG, Opcode.CLOSE])
def test_a_fragmented_control_frame_is_a_protocol_error(opcode: int) -> None:
    events = FrameParser().feed(frame(b"", opcode, fin=False))
    assert events == [Failure(PROTOCOL_ERROR, f"fragmented control frame (opcode {opcode:#x})")]


def test_close_frames_with_and_without_a_code() -> None:
    assert FrameParser().feed(frame(b"", Opcode.CLOSE)) == [Close(CloseCode.NO_STATUS, "")]
    assert FrameParser().feed(frame(b"\x03\xf1", Opcode.CLOSE)) == [Close(1009, "")]
    bad_utf8 = FrameParser().feed(frame(b"\x0f\xa0\xffok", Opcode.CLOSE))
    assert bad_utf8 == [Close(4000, "\ufffdok")]
    one_byte = FrameParser().feed(frame(b"\x03", Opcode.CLOSE))
    assert one_byte == [Failure(PROTOCOL_ERROR, "close frame with a 1-byte payload")]


def test_nothing_after_a_close_frame_counts() -> None:
    parser = FrameParser()
    events = parser.feed(frame(b"[1]") + frame(b"\x03\xe8", Opcode.CLOSE) + frame(b"[2]"))
    assert events == [Frame(b"[1]", TEXT, True, 0), Close(1000, "")]
    assert parser.closed
    assert parser.feed(frame(b"[3]")) == []
    assert parser.buffered == 0


# ---------------------------------------------------------------- protocol errors


@pytest.mark.parametrize("rsv", [0x40, 0x20, 0x10, 0x70])
@pytest.mark.parametrize("opcode", [TEXT, Opcode.PING])
def test_a_reserved_bit_is_a_protocol_error(rsv: int, opcode: int) -> None:
    """No extension was negotiated, so RSV1-3 must be 0 (§5.2)."""
    parser = FrameParser()
    events = parser.feed(frame(b"[1]") + frame(b"[2]", opcode, first=rsv) + frame(b"[3]"))
    assert events[0] == Frame(b"[1]", TEXT, True, 0)
    assert len(events) == 2
    failure = events[1]
    assert isinstance(failure, Failure) and failure.code == PROTOCOL_ERROR
    assert f"{0x80 | rsv | opcode:#04x}" in failure.reason and "reserved bits" in failure.reason
    assert parser.closed and parser.feed(frame(b"[4]")) == []


def test_a_masked_frame_from_the_server_is_a_protocol_error() -> None:
    """§5.1: a client closes the connection when it sees a masked frame."""
    masked = bytes([0x81, 0x80 | 2]) + b"\x00\x00\x00\x00" + b"[]"
    events = FrameParser().feed(masked)
    assert events == [
        Failure(PROTOCOL_ERROR, "masked frame from the server (§5.1: a server never masks)")
    ]


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_a_reserved_opcode_is_a_protocol_error(opcode: int) -> None:
    events = FrameParser().feed(frame(b"[]", opcode) + frame(b"[]"))
    assert events == [Failure(PROTOCOL_ERROR, f"reserved opcode {opcode:#x}")]


def test_a_64_bit_length_with_its_top_bit_set_is_a_protocol_error() -> None:
    data = bytes([0x82, 127]) + (1 << 63).to_bytes(8, "big")
    events = FrameParser(max_frame_bytes=10).feed(data)
    assert events == [Failure(PROTOCOL_ERROR, "64-bit payload length with its top bit set (§5.2)")]


def test_a_continuation_outside_a_message_is_a_protocol_error() -> None:
    events = FrameParser().feed(frame(b"[1]") + frame(b"2]", CONT))
    assert events == [
        Frame(b"[1]", TEXT, True, 0),
        Failure(PROTOCOL_ERROR, "continuation frame outside a message"),
    ]


@pytest.mark.parametrize("second", [TEXT, BINARY])
def test_a_new_message_before_the_last_one_finished_is_a_protocol_error(second: int) -> None:
    events = FrameParser().feed(frame(b"[1,", fin=False) + frame(b"[2]", second))
    assert events == [
        Frame(b"[1,", TEXT, False, 0),
        Failure(PROTOCOL_ERROR, "a new message began before the last one finished"),
    ]


# ---------------------------------------------------------------- oversized frames


def test_an_oversized_frame_is_refused_at_its_header_and_skipped_across_many_reads() -> None:
    """The payload is dropped as it arrives, never buffered: after the header, the
    parser holds nothing however many reads the payload takes."""
    parser = FrameParser(max_frame_bytes=100)
    big = b"\x00" * 50_000
    data = frame(big, BINARY)
    head = data[:4]
    assert parser.feed(head) == [TooLarge(50_000, True)]
    for i in range(4, len(data), 7):
        assert parser.feed(data[i : i + 7]) == []
        assert parser.buffered == 0
    assert parser.feed(frame(b"[]")) == [Frame(b"[]", TEXT, True, 0)]


def test_an_oversized_frame_whole_in_one_read_is_skipped_too() -> None:
    data = frame(b"[1]") + frame(b"z" * 101) + frame(b"[2]")
    assert FrameParser(max_frame_bytes=100).feed(data) == [
        Frame(b"[1]", TEXT, True, 0),
        TooLarge(101, True),
        Frame(b"[2]", TEXT, True, 0),
    ]


def test_a_frame_of_exactly_the_limit_passes() -> None:
    assert FrameParser(max_frame_bytes=100).feed(frame(b"a" * 100)) == [
        Frame(b"a" * 100, TEXT, True, 0)
    ]


def test_an_oversized_message_is_reported_once_and_its_fragments_dropped() -> None:
    """Its later fragments, small or large, are dropped; control frames between them
    still come; the next message comes whole."""
    data = (
        frame(b"a" * 200, fin=False)
        + frame(b"b" * 10, CONT, fin=False)
        + frame(b"p", Opcode.PING)
        + frame(b"c" * 300, CONT, fin=False)
        + frame(b"d", CONT)
        + frame(b"[ok]")
    )
    assert FrameParser(max_frame_bytes=100).feed(data) == [
        TooLarge(200, False),
        Ping(b"p"),
        Frame(b"[ok]", TEXT, True, 0),
    ]


def test_an_oversized_continuation_ends_a_message_begun_in_small_fragments() -> None:
    data = frame(b"[1,", fin=False) + frame(b"2" * 101, CONT, fin=False) + frame(b"]", CONT)
    data += frame(b"[3]")
    assert FrameParser(max_frame_bytes=100).feed(data) == [
        Frame(b"[1,", TEXT, False, 0),
        TooLarge(101, False),
        Frame(b"[3]", TEXT, True, 0),
    ]


def test_a_frame_over_the_skip_limit_fails_with_1009() -> None:
    parser = FrameParser(max_frame_bytes=100, max_skip_bytes=1000)
    events = parser.feed(header(1001, BINARY) + b"\x00" * 500)
    assert events == [
        TooLarge(1001, True),
        Failure(TOO_BIG, "a frame of 1001 bytes announced, over the 1000 bytes worth skipping"),
    ]
    assert parser.closed and parser.buffered == 0


def test_within_a_discarded_message_a_frame_over_the_skip_limit_fails_without_a_second_report() -> (
    None
):
    parser = FrameParser(max_frame_bytes=100, max_skip_bytes=1000)
    events = parser.feed(frame(b"a" * 101, fin=False) + header(5000, CONT))
    assert [type(e) for e in events] == [TooLarge, Failure]
    assert events[1] == Failure(
        TOO_BIG, "a frame of 5000 bytes announced, over the 1000 bytes worth skipping"
    )


def test_the_default_skip_limit() -> None:
    assert default_max_skip_bytes(None) == 16 * 1024 * 1024
    assert default_max_skip_bytes(1024) == 16 * 1024 * 1024
    assert default_max_skip_bytes(64 * 1024 * 1024) == 16 * 64 * 1024 * 1024
    parser = FrameParser(max_frame_bytes=10)
    limit = default_max_skip_bytes(10)
    assert parser.feed(header(limit, BINARY)) == [TooLarge(limit, True)]
    over = FrameParser(max_frame_bytes=10).feed(header(limit + 1, BINARY))
    assert [type(e) for e in over] == [TooLarge, Failure]


# ---------------------------------------------------------------- any split, same events

#: One stream with every kind of event: every length form, fragments with control
#: frames between them, an oversized message skipped, a close, and bytes after it.
STREAM = b"".join(
    [
        frame(b'[{"T":"q"}]'),
        frame(b"\x91\x80", BINARY),
        frame(b"[", fin=False),
        frame(b"hello", Opcode.PING),
        frame(b"1" * 130, CONT, fin=False),
        frame(b"", Opcode.PONG),
        frame(b"]", CONT),
        frame(b"m" * 300, BINARY),  # over the limit below: skipped
        frame(b"n" * 70_000, BINARY, fin=False),  # 64-bit length, over the limit
        frame(b"p", Opcode.PING),
        frame(b"o" * 10, CONT),  # dropped with its message
        frame(b"x" * 200),
        frame(b"\x03\xe9going away", Opcode.CLOSE),
        frame(b"[after close]"),
    ]
)
LIMIT = 256
EXPECTED: list[FrameEvent] = [
    Frame(b'[{"T":"q"}]', TEXT, True, 0),
    Frame(b"\x91\x80", BINARY, True, 0),
    Frame(b"[", TEXT, False, 0),
    Ping(b"hello"),
    Frame(b"1" * 130, CONT, False, 0),
    Pong(b""),
    Frame(b"]", CONT, True, 0),
    TooLarge(300, True),
    TooLarge(70_000, False),
    Ping(b"p"),
    Frame(b"x" * 200, TEXT, True, 0),
    Close(1001, "going away"),
]


def test_the_whole_stream_at_once() -> None:
    assert FrameParser(max_frame_bytes=LIMIT).feed(STREAM) == EXPECTED


def test_one_byte_at_a_time_gives_the_same_events() -> None:
    parser = FrameParser(max_frame_bytes=LIMIT)
    assert feed_all(parser, one_byte_at_a_time(STREAM)) == EXPECTED


def test_split_at_every_byte_boundary_gives_the_same_events() -> None:
    # Beyond the 64-bit frame's header every split point behaves alike (skipping), so
    # the huge payload is stepped over in strides; every other boundary is tried.
    skipped_from = STREAM.index(b"n" * 70_000) + 1000
    skipped_to = skipped_from + 68_000
    cuts = [
        *range(skipped_from),
        *range(skipped_from, skipped_to, 997),
        *range(skipped_to, len(STREAM) + 1),
    ]
    for cut in cuts:
        parser = FrameParser(max_frame_bytes=LIMIT)
        assert feed_all(parser, [STREAM[:cut], STREAM[cut:]]) == EXPECTED, cut


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, len(STREAM)), max_size=40))
def test_any_chunking_gives_the_same_events(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(STREAM)]
    pieces = [STREAM[a:b] for a, b in itertools.pairwise(bounds)]
    assert feed_all(FrameParser(max_frame_bytes=LIMIT), pieces) == EXPECTED


@pytest.mark.parametrize(
    "bad",
    [
        frame(b"[]", first=0x40),
        frame(b"[]", 5),
        frame(b"", Opcode.PING, fin=False),
        frame(b"q" * 126, Opcode.PONG),
        frame(b"]", CONT),
        bytes([0x81, 0x82, 1, 2, 3, 4, 5, 6]),
    ],
    ids=["rsv1", "opcode5", "fragmented-ping", "long-pong", "stray-continuation", "masked"],
)
def test_a_protocol_error_is_found_the_same_however_the_bytes_are_split(bad: bytes) -> None:
    data = frame(b"[0]") + bad + frame(b"[9]")
    whole = FrameParser().feed(data)
    assert [type(e) for e in whole] == [Frame, Failure]
    assert feed_all(FrameParser(), one_byte_at_a_time(data)) == whole


# ---------------------------------------------------------------- the module


def test_the_module_examples_run() -> None:
    failed, tried = doctest.testmod(rxalpaca.framing)
    assert tried and not failed


def test_events_are_distinct_types_not_equal_tuples() -> None:
    """A ping and a pong with the same payload are different events."""
    ping: object = Ping(b"x")
    failure: object = Failure(1002, "x")
    assert ping != Pong(b"x")
    assert failure != Close(1002, "x")
