"""reassemble: continuation frames in virtual time."""

from __future__ import annotations

from typing import Any

from reactivex.testing import ReactiveTest, TestScheduler

from rxalpaca import ops
from rxalpaca.errors import FrameError
from rxalpaca.frames import Frame, Opcode

on_next, on_completed = ReactiveTest.on_next, ReactiveTest.on_completed
subscribe = ReactiveTest.subscribe
T, B, C = Opcode.TEXT, Opcode.BINARY, Opcode.CONTINUATION


def run(frames: list[Frame], **kw: Any) -> tuple[list[Any], Any]:
    scheduler = TestScheduler()
    msgs = [on_next(210 + 10 * i, f) for i, f in enumerate(frames)]
    xs = scheduler.create_hot_observable(*msgs, on_completed(210 + 10 * len(frames)))
    res = scheduler.start(lambda: xs.pipe(ops.reassemble(**kw)))
    return [m.value.value for m in res.messages if m.value.kind == "N"], (res, xs)


def test_whole_frames_pass_untouched() -> None:
    f1, f2 = Frame(b"[1]", T, True, 1), Frame(b"\x91\x01", B, True, 2)
    out, (res, xs) = run([f1, f2])
    assert out == [f1, f2]
    assert res.messages[-1].value.kind == "C"
    assert xs.subscriptions == [subscribe(200, 230)]


def test_fragments_are_joined_with_first_opcode_and_last_time() -> None:
    out, _ = run(
        [Frame(b"[{", B, False, 1), Frame(b'"a"', C, False, 2), Frame(b":1}]", C, True, 3)]
    )
    assert out == [Frame(b'[{"a":1}]', B, True, 3)]


def test_oversized_message_is_an_error_value_and_memory_is_dropped() -> None:
    frames = [
        Frame(b"x" * 60, T, False, 1),
        Frame(b"y" * 60, C, False, 2),
        Frame(b"z" * 60, C, True, 3),
        Frame(b"[2]", T, True, 4),
    ]
    out, _ = run(frames, max_message_bytes=100)
    assert isinstance(out[0], FrameError) and "exceeds 100" in out[0].reason
    assert out[1:] == [Frame(b"[2]", T, True, 4)]


def test_single_oversized_frame() -> None:
    out, _ = run([Frame(b"[" + b"1" * 200 + b"]", T, True, 1)], max_message_bytes=100)
    assert len(out) == 1 and isinstance(out[0], FrameError)


def test_continuation_without_start_is_an_error_value() -> None:
    out, _ = run([Frame(b"abc", C, True, 1), Frame(b"[1]", T, True, 2)])
    assert isinstance(out[0], FrameError)
    assert out[1] == Frame(b"[1]", T, True, 2)


def test_interrupted_message_is_reported_and_new_message_kept() -> None:
    out, _ = run([Frame(b"[1,", T, False, 1), Frame(b"[2]", T, True, 2)])
    assert isinstance(out[0], FrameError) and "interrupted" in out[0].reason
    assert out[1] == Frame(b"[2]", T, True, 2)


def test_state_is_per_subscription() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_next(10, Frame(b"[1,", T, False, 1)), on_completed(20))
    op = ops.reassemble()
    r1 = scheduler.start(lambda: xs.pipe(op))
    # The stub is reported at the end and not carried over to the next subscription.
    assert [m.value.kind for m in r1.messages] == ["N", "C"]
    assert isinstance(r1.messages[0].value.value, FrameError)
    scheduler2 = TestScheduler()
    xs2 = scheduler2.create_cold_observable(on_next(10, Frame(b"2]", C, True, 2)), on_completed(20))
    r2 = scheduler2.start(lambda: xs2.pipe(op))
    assert isinstance(r2.messages[0].value.value, FrameError)


def test_message_unfinished_at_completion_is_an_error_value() -> None:
    """The stream ends mid-message: the stub is reported before the completion."""
    out, (res, _) = run([Frame(b"[1]", T, True, 1), Frame(b"[{", B, False, 2)])
    assert out[0] == Frame(b"[1]", T, True, 1)
    assert len(out) == 2 and isinstance(out[1], FrameError)
    assert "ended inside a fragmented message" in str(out[1]) and out[1].excerpt == b"[{"
    assert [m.value.kind for m in res.messages] == ["N", "N", "C"]


def test_skipped_oversized_message_at_completion_reports_nothing_more() -> None:
    """An oversized message was already reported once; its end needs no second error."""
    out, _ = run([Frame(b"[" + b"1" * 20, B, False, 1)], max_message_bytes=8)
    assert len(out) == 1 and "exceeds" in str(out[0])
