"""rxalpaca.dataframes: records -> pandas / polars / Arrow, exact ns times (issue #14)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import msgspec
import pytest

import rxalpaca
from rxalpaca import models
from rxalpaca.codec import Codec
from rxalpaca.dataframes import (
    arrow_schema,
    columns,
    group_by_type,
    schema,
    to_arrow,
    to_pandas,
    to_polars,
)
from rxalpaca.errors import ConfigurationError

pd: Any = pytest.importorskip("pandas")
pa: Any = pytest.importorskip("pyarrow")
pl: Any = pytest.importorskip("polars")

# Nanoseconds a float64 of seconds cannot hold: 1614009104.208123457 s rounds to ...456.8 µs.
T1 = 1_614_009_104_208_123_457
T2 = 1_614_009_105_000_000_001
STOCK_FRAME = (
    b'[{"T":"t","S":"AAPL","i":1,"x":"V","p":126.55,"s":1,"c":["@","I"],"z":"C",'
    b'"t":"2021-02-22T15:51:44.208123457Z"},'
    b'{"T":"t","S":"MSFT","i":2,"x":"V","p":12.5,"s":3,"c":[],"z":"C",'
    b'"t":"2021-02-22T15:51:45.000000001Z"}]'
)


def trades() -> list[models.Trade]:
    decoded = list(Codec("stocks", "json").decode(STOCK_FRAME))
    assert all(isinstance(t, models.Trade) for t in decoded)
    return [
        msgspec.structs.replace(t, received_ns=T2 + i)
        for i, t in enumerate(decoded)
        if isinstance(t, models.Trade)
    ]


def test_trades_become_one_column_per_field_with_exact_ns() -> None:
    recs = trades()
    df = to_pandas(recs)
    assert list(df.columns) == [
        "symbol", "timestamp", "received", "price", "size", "id", "exchange", "conditions", "tape",
    ]  # fmt: skip
    assert str(df["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert str(df["received"].dtype) == "datetime64[ns, UTC]"
    assert df["timestamp"].astype("int64").tolist() == [T1, T2] == [r.timestamp_ns for r in recs]
    assert df["received"].astype("int64").tolist() == [T2, T2 + 1]
    assert df["price"].tolist() == [126.55, 12.5] and str(df["size"].dtype) == "int64"
    assert df["conditions"].tolist() == [("@", "I"), ()]
    assert df["symbol"].tolist() == ["AAPL", "MSFT"]
    # Through float seconds the first would be off: the test can tell.
    assert int(T1 / 1e9 * 1e9) != T1


def test_polars_and_arrow_keep_the_same_nanoseconds() -> None:
    recs = trades()
    frame = to_polars(recs)
    assert frame.schema["timestamp"] == pl.Datetime("ns", "UTC")
    assert frame["timestamp"].cast(pl.Int64).to_list() == [T1, T2]
    assert frame["conditions"].to_list() == [["@", "I"], []]
    table = to_arrow(recs)
    assert table.schema.field("timestamp").type == pa.timestamp("ns", tz="UTC")
    assert table.column("timestamp").cast(pa.int64()).to_pylist() == [T1, T2]
    assert table.schema.metadata == {b"rxalpaca.record_type": b"Trade"}
    assert table.column_names == list(to_pandas(recs).columns)


def test_mixed_types_are_refused_naming_them() -> None:
    recs: list[Any] = [*trades(), models.Gap(feed="iex")]
    for convert in (to_pandas, to_polars, to_arrow):
        with pytest.raises(ConfigurationError, match=r"got Gap, Trade: .*group_by_type"):
            convert(recs)
    with pytest.raises(ConfigurationError, match="got Quote, Trade"):
        to_pandas(trades(), record_type=models.Quote)
    groups = group_by_type([recs[2], recs[0], recs[1]])
    assert list(groups) == [models.Gap, models.Trade]
    assert groups[models.Trade] == recs[:2]  # order kept within a type


def test_no_records() -> None:
    assert to_pandas([]).empty and to_polars([]).is_empty()
    typed = to_pandas([], record_type=models.Quote)
    assert typed.empty and str(typed["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert str(typed["bid_size"].dtype) == "int64"
    assert to_arrow([], record_type=models.Quote).num_rows == 0
    with pytest.raises(ConfigurationError, match="record_type"):
        to_arrow([])
    assert columns(iter([])) == ((), {})


def test_missing_times_optional_numbers_and_order_book_levels() -> None:
    gap = models.Gap(feed="iex", channels=("quotes",), last_before_ns=None, first_after_ns=T1)
    df = to_pandas([gap])
    assert pd.isna(df["last_before"][0]) and df["first_after"].astype("int64")[0] == T1
    assert to_arrow([gap]).column("last_before").to_pylist() == [None]

    codec = Codec("stocks", "json")
    [imb] = codec.decode(b'[{"T":"i","S":"AAPL","p":1.5,"z":"C","t":"2021-02-22T15:51:44Z"}]')
    frame = to_pandas([imb])
    assert str(frame["paired_shares"].dtype) == "Int64" and pd.isna(frame["paired_shares"][0])
    assert frame["received"].isna().all()  # received_ns 0: never received

    [book] = Codec("crypto", "json").decode(
        b'[{"T":"o","S":"BTC/USD","t":"2021-02-22T15:51:44.000000007Z",'
        b'"b":[{"p":1.5,"s":2}],"a":[],"r":true}]'
    )
    assert to_pandas([book])["bids"].tolist() == [((1.5, 2.0),)]
    assert to_polars([book])["bids"].to_list() == [[{"price": 1.5, "size": 2.0}]]
    assert to_arrow([book]).column("bids").to_pylist() == [[{"price": 1.5, "size": 2.0}]]
    assert to_arrow([book]).column("timestamp").cast(pa.int64()).to_pylist()[0] % 1000 == 7

    [news] = Codec("news", "json").decode(
        b'[{"T":"n","id":1,"headline":"h","created_at":"2021-02-22T15:51:44.000000009Z",'
        b'"symbols":["AAPL"]}]'
    )
    nf = to_pandas([news])
    assert nf["created_at"].astype("int64")[0] % 1000 == 9 and nf["updated_at"].isna().all()


def every_record_type() -> list[type]:
    out: list[type] = [models.Gap, models.News]
    todo: list[type] = [models.MarketRecord]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if not cls.__name__.startswith("_") and cls is not models.MarketRecord:
            out.append(cls)
    return out


@pytest.mark.parametrize("cls", every_record_type(), ids=lambda c: c.__name__)
def test_every_record_type_has_a_typed_table(cls: type) -> None:
    """No ``object`` column: every field maps to an Arrow (so a Parquet) type."""
    assert all(c.kind != "object" for c in schema(cls)), schema(cls)
    assert len(arrow_schema(cls)) == len(msgspec.structs.fields(cls))


def test_not_a_record_type() -> None:
    with pytest.raises(ConfigurationError, match="not an rxalpaca record type"):
        to_pandas([1, 2])
    unknown = models.Unknown(type="zz", raw={"T": "zz"})
    assert to_pandas([unknown])["raw"].tolist() == [{"T": "zz"}]  # object, as it is
    with pytest.raises(ConfigurationError, match=r"Unknown\.raw has no Arrow type"):
        to_arrow([unknown])


@pytest.mark.parametrize(
    ("module", "call", "extra"),
    [
        ("pandas", to_pandas, "pandas"),
        ("polars", to_polars, "polars"),
        ("pyarrow", to_arrow, "parquet"),
    ],
)
def test_a_missing_library_is_one_sentence(
    monkeypatch: pytest.MonkeyPatch, module: str, call: Any, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    with pytest.raises(ConfigurationError, match=rf"pip install 'rxalpaca\[{extra}\]'"):
        call(trades())


def test_top_level_names_and_nothing_imported_early() -> None:
    assert rxalpaca.to_pandas is to_pandas and rxalpaca.to_polars is to_polars
    code = (
        "import rxalpaca, rxalpaca.dataframes\nfrom rxalpaca import ops\nimport sys\n"
        "print(' '.join(m for m in ('pandas', 'polars', 'pyarrow', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
