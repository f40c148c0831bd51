"""``rxalpaca export day.rxa --parquet out/`` as a real process (issue #14, item 5).

A session recorded from the embedded server (with a fragmented message, a bad frame,
an undecodable one and a dropped connection) is exported; the Parquet tables read back
with pyarrow are exactly the records a replay of the same file delivers, type by type,
with the exact nanoseconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import rxalpaca
from rxalpaca import ConnectionState, StreamClient
from rxalpaca.dataframes import group_by_type, to_arrow
from rxalpaca.errors import RecordingError
from rxalpaca.export import export_parquet
from rxalpaca.frames import Frame
from rxalpaca.models import format_rfc3339_ns
from rxalpaca.recording import Recorder, RecordingHeader
from rxalpaca.testing import AlpacaStreamServer
from tests.conftest import TIMING_FACTOR

from .conftest import Collector
from .test_cli_commands import one_line_error, run
from .test_client_semantics import states, wait_state

pa: Any = pytest.importorskip("pyarrow")
pq: Any = pytest.importorskip("pyarrow.parquet")

pytestmark = pytest.mark.timeout(90)
WAIT = 10 * TIMING_FACTOR
T0 = 1_700_000_000_123_456_789


def replayed(path: Path) -> dict[type, list[Any]]:
    """Every record (and gap) a replay of ``path`` delivers, by type, in order."""
    r = rxalpaca.replay(path)
    got: list[Any] = []
    for name in ("trades", "quotes", "bars", "daily_bars", "updated_bars", "statuses",
                 "lulds", "imbalances", "corrections", "cancel_errors"):  # fmt: skip
        getattr(r, name)("*").subscribe(got.append)
    r.gaps.subscribe(got.append)
    r.run()
    return group_by_type(got)


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_export_writes_one_exact_table_per_record_type(
    tmp_path: Path,
    encoding: str,
    alpaca_server: AlpacaStreamServer,
    make_client: Callable[..., StreamClient],
) -> None:
    path = tmp_path / "day.rxa"
    client = make_client(alpaca_server, encoding=encoding)
    seen, cond = states(client)
    client.record(path)
    quotes, errors = Collector(), Collector()
    client.errors.subscribe(errors)
    client.quotes("AAPL", "MSFT").subscribe(quotes)
    client.trades("*").subscribe(lambda _: None)
    alpaca_server.wait_for_subscriptions({"quotes": {"AAPL", "MSFT"}, "trades": {"*"}})
    # A gentle rate: the server shares this process (and, under coverage, its tracer).
    alpaca_server.start_market(symbols=["AAPL", "MSFT"], rate=300)
    quotes.wait_for(100, WAIT)
    alpaca_server.split_next_frame(3)  # a fragmented message
    alpaca_server.send_raw(b"\x00not a frame")  # a bad frame
    errors.wait_for(1, WAIT)
    alpaca_server.corrupt_next_frame()  # an undecodable one
    errors.wait_for(2, WAIT)
    alpaca_server.drop()  # a lost connection: a gap
    wait_state(seen, cond, lambda s: s.count(ConnectionState.AUTHENTICATED) >= 2, WAIT)
    quotes.wait_for(len(quotes.items) + 50, WAIT)
    client.close()

    out = tmp_path / "out"
    done = run("export", str(path), "--parquet", str(out), "--batch-rows", "64")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr

    expected = replayed(path)
    names = {cls.__name__ for cls in expected}
    assert {"Quote", "Trade", "Gap"} <= names
    assert {p.name for p in out.iterdir()} == {f"{n}.parquet" for n in names}  # no .part left
    for cls, records in expected.items():
        file = out / f"{cls.__name__}.parquet"
        assert f"{cls.__name__}: {len(records):,} rows -> {file}" in done.stdout
        table = pq.read_table(file)
        assert table.equals(to_arrow(records, cls)), cls  # every value, every type
        assert pq.ParquetFile(file).num_row_groups == math.ceil(len(records) / 64)
        if cls is not rxalpaca.Gap:
            assert table.schema.field("timestamp").type == pa.timestamp("ns", tz="UTC")
            ns = table.column("timestamp").cast(pa.int64()).to_pylist()
            assert ns == [r.timestamp_ns for r in records]
            received = table.column("received").cast(pa.int64()).to_pylist()
            assert received == [r.received_ns for r in records]
    assert len(expected[rxalpaca.Gap]) == 1
    total = sum(len(v) for v in expected.values())
    assert f"exported {total:,} rows in {len(expected)} tables, " in done.stdout
    assert "stopped early" not in done.stdout


def write(path: Path, n: int, per_frame: int = 1) -> None:
    """``n`` frames of ``per_frame`` AAPL quotes; bid ``i``, time ``T0 + i`` for the i-th."""
    with Recorder(path, RecordingHeader(feed="iex", encoding="json")) as rec:
        for i in range(n):
            quotes = []
            for j in range(i * per_frame, (i + 1) * per_frame):
                t = format_rfc3339_ns(T0 + j).encode()
                quotes.append(
                    b'{"T":"q","S":"AAPL","bp":%d,"bs":1,"ap":1,"as":1,"t":"%s"}' % (j, t)
                )
            rec.frame(Frame(b"[" + b",".join(quotes) + b"]", 1, True, T0 + i))
            if i % 50 == 49:
                rec.flush()  # blocks, so that damage in the middle leaves some whole


def test_a_missing_file_and_a_file_that_is_not_a_recording_are_one_sentence(
    tmp_path: Path,
) -> None:
    done = run("export", str(tmp_path / "nope.rxa"), "--parquet", str(tmp_path / "out"))
    assert done.returncode == 2
    assert "no such file" in one_line_error(done.stderr, "export")
    junk = tmp_path / "junk.rxa"
    junk.write_bytes(b'{"T":"q"}\n' * 10)
    done = run("export", str(junk), "--parquet", str(tmp_path / "out"))
    assert done.returncode == 2
    assert "not an rxalpaca recording" in one_line_error(done.stderr, "export")


def test_a_corrupt_recording_fails_and_leaves_no_table(tmp_path: Path) -> None:
    good = tmp_path / "good.rxa"
    write(good, 4000)  # several read chunks: the damage is well after the first
    raw = good.read_bytes()
    at = len(raw) * 3 // 4
    bad = tmp_path / "bad.rxa"
    bad.write_bytes(raw[:at] + bytes([raw[at] ^ 0x5A]) + raw[at + 1 :])
    out = tmp_path / "out"
    done = run("export", str(bad), "--parquet", str(out))
    assert done.returncode == 2
    assert "corrupt" in one_line_error(done.stderr, "export")
    assert list(out.iterdir()) == []  # the quotes before the damage were not kept
    with pytest.raises(RecordingError, match="corrupt") as info:
        export_parquet(bad, out)
    assert info.value.records > 100  # delivered (and written) before the damage: removed
    assert list(out.iterdir()) == []


def test_a_truncated_recording_exports_its_whole_records_and_says_where_it_stopped(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cut.rxa"
    write(path, 100)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) * 3 // 4])  # as if killed while writing
    out = tmp_path / "out"
    result = export_parquet(path, out)
    assert result.stopped is not None and result.errors == 0
    rows = result.rows["Quote"]
    assert 0 < rows < 100
    table = pq.read_table(out / "Quote.parquet")
    assert table.column("bid_price").to_pylist() == [float(i) for i in range(rows)]
    assert table.column("timestamp").cast(pa.int64()).to_pylist() == [T0 + i for i in range(rows)]
    done = run("export", str(path), "--parquet", str(out))
    assert done.returncode == 0 and "stopped early: " in done.stdout


def test_bad_batch_rows_is_one_sentence(tmp_path: Path) -> None:
    write(tmp_path / "s.rxa", 1)
    done = run("export", str(tmp_path / "s.rxa"), "--parquet", str(tmp_path), "--batch-rows", "0")
    assert done.returncode == 2
    assert "batch_rows must be a positive int" in one_line_error(done.stderr, "export")


def test_a_record_whose_time_cannot_be_read_is_counted_not_exported(tmp_path: Path) -> None:
    path = tmp_path / "s.rxa"
    with Recorder(path, RecordingHeader(feed="iex", encoding="json")) as rec:
        for i, t in enumerate([b'"2023-11-14T22:13:20Z"', b"1", b'"2023-11-14T22:13:21Z"']):
            payload = b'[{"T":"q","S":"AAPL","bp":%d,"bs":1,"ap":1,"as":1,"t":%s}]' % (i, t)
            rec.frame(Frame(payload, 1, True, T0 + i))
    result = export_parquet(path, tmp_path / "out")
    assert result.rows == {"Quote": 2} and result.errors == 1
    assert pq.read_table(result.files["Quote"]).column("bid_price").to_pylist() == [0.0, 2.0]


def test_an_output_that_cannot_be_made_or_written(tmp_path: Path) -> None:
    write(tmp_path / "s.rxa", 10, per_frame=3)  # the rest of a frame's batch is not written
    (tmp_path / "file").write_text("")
    done = run("export", str(tmp_path / "s.rxa"), "--parquet", str(tmp_path / "file" / "out"))
    assert done.returncode == 2
    assert "cannot write to" in one_line_error(done.stderr, "export")
    out = tmp_path / "out"
    (out / "Quote.parquet.part").mkdir(parents=True)  # the table cannot be opened
    done = run("export", str(tmp_path / "s.rxa"), "--parquet", str(out))
    assert done.returncode == 1
    assert "failed" in one_line_error(done.stderr, "export")
