"""validate: non-array frames become error values; control frames vanish."""

from __future__ import annotations

from collections.abc import Sequence

from reactivex.testing import ReactiveTest, TestScheduler

from rxalpaca import ops
from rxalpaca.errors import FrameError
from rxalpaca.frames import Frame, Opcode

on_next, on_completed = ReactiveTest.on_next, ReactiveTest.on_completed


def values(items: Sequence[object], **kw: object) -> list[object]:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(
        *[on_next(210 + i, x) for i, x in enumerate(items)], on_completed(300)
    )
    res = scheduler.start(lambda: xs.pipe(ops.validate(**kw)))  # type: ignore[arg-type]
    return [m.value.value for m in res.messages if m.value.kind == "N"]


def test_arrays_pass() -> None:
    good = [
        Frame(b"[]", Opcode.TEXT),
        Frame(b" [1]", Opcode.TEXT),
        Frame(b"\x90", Opcode.BINARY),
        Frame(b"\xdc\x00\x00", Opcode.BINARY),
        Frame("[1]", Opcode.TEXT),
    ]
    assert values(good) == good


def test_bad_frames_become_errors() -> None:
    out = values(
        [
            Frame(b"hello", Opcode.TEXT),
            Frame(b"", Opcode.TEXT),
            Frame(b"{}", Opcode.TEXT),
            Frame(b"[1", Opcode.TEXT, fin=False),
        ]
    )
    assert len(out) == 4 and all(isinstance(x, FrameError) for x in out)


def test_control_frames_are_dropped_and_errors_pass() -> None:
    err = FrameError("x", b"y")
    out = values([Frame(b"", Opcode.PING), Frame(b"", Opcode.PONG), err])
    assert out == [err]


def test_size_cap() -> None:
    [out] = values([Frame(b"[" + b"1" * 50 + b"]", Opcode.TEXT)], max_message_bytes=10)
    assert isinstance(out, FrameError) and "exceeds" in out.reason


def test_a_zero_byte_frame_is_an_error_an_empty_array_is_not() -> None:
    """A frame is an array of messages (§6): ``[]`` is one with nothing in it, passed on
    (decoding yields nothing, no error); a frame with no bytes at all is not an array."""
    empty_arrays = [Frame(b"[]", Opcode.TEXT), Frame(b"\x90", Opcode.BINARY), Frame("[ ]")]
    assert values(empty_arrays) == empty_arrays
    out = values([Frame(b"", Opcode.TEXT), Frame(b"", Opcode.BINARY), Frame("", Opcode.TEXT)])
    assert [(type(x), x.reason) for x in out] == [(FrameError, "empty frame (zero bytes)")] * 3  # type: ignore[attr-defined]
