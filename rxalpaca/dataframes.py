"""DataFrames of records: ``to_pandas``, ``to_polars`` and ``to_arrow`` (issue #14).

One record type per frame, one column per field, in the record's field order. The
wire's time fields become exact nanosecond timestamps, built from the records' integer
nanoseconds and never through float seconds:

* ``raw_time`` → ``timestamp`` (from ``timestamp_ns``); News' ``raw_created_at`` →
  ``created_at``, ``raw_updated_at`` → ``updated_at``;
* every ``*_ns`` field → the same name without ``_ns`` (``received_ns`` → ``received``;
  a :class:`~rxalpaca.models.Gap`'s ``last_before_ns`` → ``last_before``).

They are ``datetime64[ns, UTC]`` in pandas, ``Datetime("ns", "UTC")`` in polars and
``timestamp[ns, tz=UTC]`` in Arrow (and so in Parquet). A time of ``0`` or ``None``
(``received_ns`` of a record never received, a gap's unknown bound) is missing
(``NaT`` / null). Lists of strings (``conditions``) stay lists; an order book's levels
are lists of ``(price, size)`` (structs in Arrow and polars); optional numbers are
nullable (``Int64`` in pandas).

Mixed record types are refused with a :class:`~rxalpaca.errors.ConfigurationError`
naming them, not silently merged into a frame of mostly-empty columns: a quote and a
trade share no columns but the symbol and times. Keep the streams apart (one
``ops.to_frames`` per stream) or split a mixed list with :func:`group_by_type`.

pandas, polars and pyarrow are imported by the call that needs them (``pip install
'rxalpaca[pandas]'``, ``[polars]``, ``[parquet]``), never by ``import rxalpaca``.
No Rx here: the operator that windows a stream into frames is ``ops.to_frames``.
"""

from __future__ import annotations

import importlib
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from functools import cache
from operator import attrgetter
from typing import Any, NamedTuple

import msgspec
from msgspec import Raw

from .errors import ConfigurationError

__all__ = ["columns", "group_by_type", "to_arrow", "to_pandas", "to_polars"]

#: numpy's NaT as int64: a missing time in a ``datetime64[ns]`` array.
_NAT = -(2**63)


def _optional(name: str, extra: str) -> Any:
    """Import ``name`` or say in one sentence which extra brings it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ConfigurationError(f"this needs {name}: pip install 'rxalpaca[{extra}]'") from None


class Column(NamedTuple):
    """One column of a record type's frame: its name, kind and how to read it."""

    name: str
    #: ``time``, ``int``, ``float``, ``str``, ``bool``, ``int?``, ``float?``, ``str?``,
    #: ``strs`` (a list of strings), ``levels`` (an order book side) or ``object``.
    kind: str
    get: Callable[[Any], Any]


def _kind(tp: Any) -> str:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1 and inner[0] in (int, float, str):
            return f"{inner[0].__name__}?"
        return "object"
    if tp in (int, float, str, bool):
        return str(tp.__name__)
    if typing.get_origin(tp) is tuple and len(args) == 2 and args[1] is Ellipsis:
        if args[0] is str:
            return "strs"
        if isinstance(args[0], type) and args[0].__name__ == "OrderBookLevel":
            return "levels"
    return "object"


@cache
def schema(cls: type) -> tuple[Column, ...]:
    """The columns of ``cls``'s frame (a ``msgspec.Struct`` record class), in field order."""
    if not (isinstance(cls, type) and issubclass(cls, msgspec.Struct)):
        raise ConfigurationError(f"{cls!r} is not an rxalpaca record type")
    out: list[Column] = []
    for f in msgspec.structs.fields(cls):
        name = f.name
        if f.type is Raw and name.startswith("raw_"):
            # raw_time -> timestamp (timestamp_ns), raw_created_at -> created_at (created_at_ns)
            col = "timestamp" if name == "raw_time" else name.removeprefix("raw_")
            out.append(Column(col, "time", attrgetter(f"{col}_ns")))
        elif name.endswith("_ns") and _kind(f.type) in ("int", "int?"):
            out.append(Column(name.removesuffix("_ns"), "time", attrgetter(name)))
        else:
            out.append(Column(name, _kind(f.type), attrgetter(name)))
    return tuple(out)


def _one_type(records: Iterable[Any], record_type: type | None) -> tuple[type | None, list[Any]]:
    items = list(records)
    kinds = {type(r) for r in items}
    if record_type is not None:
        kinds.add(record_type)
    if len(kinds) > 1:
        names = ", ".join(sorted(k.__name__ for k in kinds))
        raise ConfigurationError(
            f"one frame holds one record type, got {names}: keep the streams apart or "
            "split the records with rxalpaca.dataframes.group_by_type"
        )
    return (kinds.pop() if kinds else None), items


def group_by_type(records: Iterable[Any]) -> dict[type, list[Any]]:
    """Split records by type, keeping their order within each type.

    ``{cls: to_pandas(rs) for cls, rs in group_by_type(records).items()}`` is a frame per
    record type.
    """
    groups: dict[type, list[Any]] = {}
    for r in records:
        groups.setdefault(type(r), []).append(r)
    return groups


def columns(
    records: Iterable[Any], record_type: type | None = None
) -> tuple[tuple[Column, ...], dict[str, list[Any]]]:
    """The schema and the column values (plain Python) of one record type's records.

    Times are integer nanoseconds, ``None`` where missing (``0`` or ``None``); order book
    levels are ``(price, size)`` tuples. ``to_pandas``, ``to_polars`` and ``to_arrow``
    build on it.

    Raises:
        ConfigurationError: the records are of more than one type (or not
            ``record_type``), or no type is known (no records and no ``record_type``).
    """
    cls, items = _one_type(records, record_type)
    if cls is None:
        return (), {}
    cols = schema(cls)
    values: dict[str, list[Any]] = {}
    for col in cols:
        got = map(col.get, items)  # attrgetter: no Python frame per value
        if col.kind == "time":
            values[col.name] = [v or None for v in got]
        elif col.kind == "levels":
            values[col.name] = [tuple((lv.price, lv.size) for lv in side) for side in got]
        else:
            values[col.name] = list(got)
    return cols, values


_NUMPY_DTYPES = {"int": "int64", "float": "float64", "bool": "bool"}


def _datetimes(pd: Any, ns: Sequence[int | None]) -> Any:
    """Exact ``datetime64[ns, UTC]`` from integer ns (int64 viewed as datetime64: no float)."""
    np = importlib.import_module("numpy")  # pandas' own dependency
    ints = np.fromiter((_NAT if v is None else v for v in ns), dtype=np.int64, count=len(ns))
    return pd.DatetimeIndex(ints.view("datetime64[ns]")).tz_localize("UTC")


def to_pandas(records: Iterable[Any], record_type: type | None = None) -> Any:
    """A pandas ``DataFrame`` of records of one type: one row per record, one column per
    field (see the module's docstring for the names and types).

    ::

        df = rxalpaca.to_pandas(quotes)             # a list of Quote
        df.set_index("timestamp")["bid_price"].plot()

    Args:
        records: records of one type (a list, or any iterable: it is read once).
        record_type: the type expected; gives an empty list its columns.

    Raises:
        ConfigurationError: mixed record types (see :func:`group_by_type`), or pandas is
            not installed (``pip install 'rxalpaca[pandas]'``).
    """
    pd = _optional("pandas", "pandas")
    cols, values = columns(records, record_type)
    data: dict[str, Any] = {}
    for col in cols:
        v = values[col.name]
        if col.kind == "time":
            data[col.name] = _datetimes(pd, v)
        elif col.kind == "int?":
            data[col.name] = pd.array(v, dtype="Int64")
        elif col.kind == "float?":
            data[col.name] = pd.array(v, dtype="Float64")
        elif col.kind in ("int", "float", "bool"):
            data[col.name] = pd.array(v, dtype=_NUMPY_DTYPES[col.kind])
        elif col.kind == "str":
            data[col.name] = pd.Series(v, dtype=str)  # pandas' string dtype (3.x), else object
        else:  # str?, strs, levels, object
            data[col.name] = pd.Series(v, dtype=object)
    return pd.DataFrame(data)


def _arrow_type(pa: Any, kind: str) -> Any:
    return {
        "time": pa.timestamp("ns", tz="UTC"),
        "int": pa.int64(),
        "int?": pa.int64(),
        "float": pa.float64(),
        "float?": pa.float64(),
        "str": pa.string(),
        "str?": pa.string(),
        "bool": pa.bool_(),
        "strs": pa.list_(pa.string()),
        "levels": pa.list_(pa.struct([("price", pa.float64()), ("size", pa.float64())])),
    }.get(kind)


def arrow_schema(cls: type) -> Any:
    """The Arrow schema of ``cls``'s table (``to_arrow``, ``rxalpaca export``)."""
    pa = _optional("pyarrow", "parquet")
    fields = []
    for col in schema(cls):
        t = _arrow_type(pa, col.kind)
        if t is None:
            raise ConfigurationError(f"{cls.__name__}.{col.name} has no Arrow type")
        fields.append(pa.field(col.name, t))
    return pa.schema(fields, metadata={"rxalpaca.record_type": cls.__name__})


def to_arrow(records: Iterable[Any], record_type: type | None = None) -> Any:
    """A pyarrow ``Table`` of records of one type (what ``rxalpaca export`` writes to
    Parquet): times are ``timestamp[ns, tz=UTC]`` from the integer ns, exactly.

    Raises:
        ConfigurationError: as :func:`to_pandas`; pyarrow missing (``rxalpaca[parquet]``);
            or no record type is known (no records and no ``record_type``).
    """
    pa = _optional("pyarrow", "parquet")
    items = list(records)
    cols, values = columns(items, record_type)
    if not cols:
        raise ConfigurationError("to_arrow of no records needs record_type=")
    arrow = arrow_schema(record_type or type(items[0]))
    arrays = []
    for col, field in zip(cols, arrow, strict=True):
        v = values[col.name]
        if col.kind == "levels":
            v = [[{"price": p, "size": s} for p, s in side] for side in v]
        arrays.append(pa.array(v, type=field.type))
    return pa.Table.from_arrays(arrays, schema=arrow)


def to_polars(records: Iterable[Any], record_type: type | None = None) -> Any:
    """A polars ``DataFrame`` of records of one type (as :func:`to_pandas`; times are
    ``Datetime("ns", "UTC")``, lists are ``List``, order book levels ``List(Struct)``).

    Raises:
        ConfigurationError: mixed record types, or polars is not installed (``pip
            install 'rxalpaca[polars]'``).
    """
    pl = _optional("polars", "polars")
    cols, values = columns(records, record_type)
    level = pl.Struct({"price": pl.Float64, "size": pl.Float64})
    dtypes = {
        "int": pl.Int64,
        "int?": pl.Int64,
        "float": pl.Float64,
        "float?": pl.Float64,
        "str": pl.String,
        "str?": pl.String,
        "bool": pl.Boolean,
        "strs": pl.List(pl.String),
        "levels": pl.List(level),
    }
    series = []
    for col in cols:
        v = values[col.name]
        if col.kind == "time":
            # Int64 then a cast: the same 64-bit integers, reinterpreted (no float).
            s = pl.Series(col.name, v, dtype=pl.Int64).cast(pl.Datetime("ns", "UTC"))
        elif col.kind == "levels":
            sides = [[{"price": p, "size": q} for p, q in side] for side in v]
            s = pl.Series(col.name, sides, dtype=pl.List(level))
        else:
            s = pl.Series(col.name, v, dtype=dtypes.get(col.kind, pl.Object))
        series.append(s)
    return pl.DataFrame(series)
