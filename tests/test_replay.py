"""Replay without a socket: virtual time, holes, truncation, bad input, pacing."""

from __future__ import annotations

import threading
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from reactivex import operators as rx_ops
from reactivex.scheduler import HistoricalScheduler
from reactivex.subject import Subject

import rxalpaca
from rxalpaca import ConnectionState, ops
from rxalpaca.errors import ConfigurationError, RecordingError, RecordingTruncated
from rxalpaca.frames import Frame, Opcode
from rxalpaca.models import Gap, Quote
from rxalpaca.recording import Recorder, RecordingHeader

T0 = 1_700_000_000_000_000_000
HEADER = RecordingHeader(
    feed="iex", encoding="json", subscriptions={"quotes": ["AAPL"]}, created_ns=T0
)


def quote_frame(i: int, ns: int) -> Frame:
    msg = {
        "T": "q",
        "S": "AAPL",
        "bx": "V",
        "bp": 1.0 + i,
        "bs": 1,
        "ax": "V",
        "ap": 1.1 + i,
        "as": 1,
        "c": ["R"],
        "z": "C",
        "t": "2023-11-14T22:13:20.000000001Z",
    }
    return Frame(orjson.dumps([msg]), Opcode.TEXT, True, ns)


def session(path: Path, n: int, step_ns: int, *, blocks: int = 1, **opts: Any) -> list[Frame]:
    """A recorded session: connect, authenticate, ``n`` quotes ``step_ns`` apart (in
    about ``blocks`` blocks: the writer flushes between them)."""
    frames = [quote_frame(i, T0 + (i + 1) * step_ns) for i in range(n)]
    with Recorder(path, HEADER, **opts) as rec:
        rec._put(3, T0, b"connecting")  # states at the recording's own times
        rec._put(3, T0 + 1, b"authenticating")
        rec._put(3, T0 + 2, b"authenticated")
        for i, f in enumerate(frames):
            if blocks > 1 and i and i % (n // blocks) == 0:
                assert rec.flush(10)
            rec.frame(f)
    return frames


def test_throttle_in_virtual_time_emits_what_it_did_live_in_far_less_wall_time(
    tmp_path: Path,
) -> None:
    path = tmp_path / "min.rxa"
    frames = session(path, 600, 100_000_000)  # 60 s at 10 quotes/s
    r = rxalpaca.replay(path)
    got: list[tuple[float, float]] = []
    r.quotes("AAPL").pipe(ops.throttle(1.0, scheduler=r.scheduler)).subscribe(
        lambda q: got.append((r.scheduler.now.timestamp(), q.bid_price))
    )
    started = time.monotonic()
    r.run()
    assert time.monotonic() - started < 30  # 60 s of market in (far) less
    # Live, throttle saw each quote at its receive time: the same, by hand.
    sched = HistoricalScheduler(datetime.fromtimestamp(T0 / 1e9, tz=UTC))
    subject: Subject[Quote] = Subject()
    want: list[tuple[float, float]] = []
    subject.pipe(ops.throttle(1.0, scheduler=sched)).subscribe(
        lambda q: want.append((sched.now.timestamp(), q.bid_price))
    )
    for i, f in enumerate(frames):
        sched.advance_to(datetime.fromtimestamp(f.received_ns / 1e9, tz=UTC))
        subject.on_next(rxalpaca.Codec("stocks", "json").decode(f.payload)[0])  # type: ignore[arg-type]
        assert i >= 0
    subject.on_completed()  # as the replay's end (and a live close) completes observers
    assert got == want
    assert 55 <= len(got) <= 65  # about one a second over 60 s


def test_buffer_with_time_windows_by_recorded_time(tmp_path: Path) -> None:
    path = tmp_path / "buf.rxa"
    session(path, 100, 100_000_000)  # 10 s
    r = rxalpaca.replay(path)
    sizes: list[int] = []
    r.quotes("AAPL").pipe(rx_ops.buffer_with_time(1.0, scheduler=r.scheduler)).subscribe(
        lambda b: sizes.append(len(b))
    )
    r.run()
    assert sizes[:10] == [9] + [10] * 9  # [0 s, 1 s): 0.1 … 0.9; the 1.0 s quote opens the next


def test_an_overflow_hole_in_a_recording_replays_as_a_gap(tmp_path: Path) -> None:
    path = tmp_path / "hole.rxa"
    rec = Recorder(path, HEADER, queue_size=3, flush_interval=60)
    assert rec.flush(10)
    frames = [quote_frame(i, T0 + i) for i in range(10)]
    for f in frames[:6]:
        rec.frame(f)  # 3 kept, 3 dropped
    assert rec.flush(10)
    rec.frame(frames[6])
    rec.close()
    r = rxalpaca.replay(path)
    gaps: list[Gap] = []
    got: list[Quote] = []
    r.gaps.subscribe(gaps.append)
    r.quotes("AAPL").subscribe(got.append)
    r.run()
    assert [q.bid_price for q in got] == [1.0, 2.0, 3.0, 7.0]
    [gap] = gaps
    assert gap.reason == "recording_overflow" and gap.symbols == ("AAPL",)
    assert gap.last_before_ns == frames[2].received_ns
    assert gap.first_after_ns == frames[5].received_ns  # the last record lost
    assert got[-1].received_ns > gap.first_after_ns


def test_a_truncated_recording_replays_to_its_last_whole_record_and_says_so(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cut.rxa"
    with Recorder(path, HEADER, flush_interval=60) as rec:
        for i in range(5):
            rec.frame(quote_frame(i, T0 + i))
        assert rec.flush(10)
        size = path.stat().st_size
        rec.frame(quote_frame(5, T0 + 5))
    path.write_bytes(path.read_bytes()[: size + 3])
    r = rxalpaca.replay(path)
    got: list[Quote] = []
    errors: list[Exception] = []
    done: list[bool] = []
    r.errors.subscribe(errors.append)
    r.quotes("AAPL").subscribe(got.append, on_completed=lambda: done.append(True))
    r.run()
    assert len(got) == 5 and done == [True]
    [note] = errors
    assert isinstance(note, RecordingTruncated) and note.records == 5
    assert r.stopped is note


def test_a_corrupt_recording_ends_the_replay_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.rxa"
    session(path, 200, 1000, blocks=8)  # the damage is in a later block than the first
    raw = path.read_bytes()
    at = len(raw) * 3 // 4
    path.write_bytes(raw[:at] + bytes([raw[at] ^ 0xFF]) + raw[at + 1 :])
    r = rxalpaca.replay(path)
    got: list[Quote] = []
    ended: list[Exception] = []
    r.quotes("AAPL").subscribe(got.append, on_error=ended.append)
    r.run()
    [err] = ended
    assert isinstance(err, RecordingError) and "corrupt" in str(err)
    assert 0 < len(got) < 200
    assert r.lifecycle is rxalpaca.streams.Lifecycle.FAILED


def test_bad_input_is_refused_at_the_call(tmp_path: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("not a recording\n")
    with pytest.raises(RecordingError, match="not an rxalpaca recording"):
        rxalpaca.replay(junk)
    with pytest.raises(ConfigurationError, match="speed"):
        rxalpaca.replay(junk, speed=0)
    odd = tmp_path / "odd.rxa"
    with Recorder(odd, RecordingHeader(feed="nosuchfeed", encoding="json")):
        pass
    with pytest.raises(RecordingError, match="no known feed"):
        rxalpaca.replay(odd)


def test_speed_paces_playback_by_the_recorded_clock(tmp_path: Path) -> None:
    path = tmp_path / "paced.rxa"
    session(path, 11, 100_000_000)  # 1.1 s recorded
    r = rxalpaca.replay(path, speed=4.0)
    got: list[Quote] = []
    r.quotes("AAPL").subscribe(got.append)
    started = time.monotonic()
    r.start()
    assert r.join(30)
    assert len(got) == 11
    assert time.monotonic() - started >= 1.1 / 4 * 0.9  # never faster than asked


def test_states_replay_in_order(tmp_path: Path) -> None:
    path = tmp_path / "s.rxa"
    session(path, 1, 1000)
    r = rxalpaca.replay(path)
    states: list[ConnectionState] = []
    r.state.subscribe(states.append)
    r.run()
    assert states == [
        ConnectionState.IDLE,
        ConnectionState.CONNECTING,
        ConnectionState.AUTHENTICATING,
        ConnectionState.AUTHENTICATED,
    ]


def test_memory_stays_flat_however_long_the_recording(tmp_path: Path) -> None:
    def peak(n: int) -> int:
        path = tmp_path / f"m{n}.rxa"
        session(path, n, 1000)
        r = rxalpaca.replay(path)
        count = [0]
        r.quotes("AAPL").subscribe(lambda _q: count.__setitem__(0, count[0] + 1))
        tracemalloc.start()
        r.run()
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert count[0] == n
        return top

    small, large = peak(2_000), peak(20_000)
    assert large < small * 2  # ten times the records, not ten times the memory


def test_close_from_another_thread_stops_a_paced_replay(tmp_path: Path) -> None:
    path = tmp_path / "long.rxa"
    session(path, 100, 1_000_000_000)  # 100 s recorded
    r = rxalpaca.replay(path, speed=1.0)
    got: list[Quote] = []
    first = threading.Event()

    def on_quote(q: Quote) -> None:
        got.append(q)
        first.set()

    r.quotes("AAPL").subscribe(on_quote)
    r.start()
    assert first.wait(10)
    r.close()
    assert r.join(5)  # at once: it does not wait out the other 99 s
    assert len(got) < 100
