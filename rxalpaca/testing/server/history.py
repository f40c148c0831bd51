"""Historical bars over REST, as Alpaca's Market Data API v2 serves them, without sockets.

:class:`BarHistory` keeps every minute bar the server's markets made (and every bar
a test published), per family and symbol, the corrected version (``T: "u"``) over the
first; :func:`answer` turns one ``GET`` into ``(status, JSON body)``:

* ``/v2/stocks/bars`` — stocks (any stock ``feed``: one market per family);
* ``/v1beta3/crypto/us/bars`` — crypto (keys optional, as on Alpaca).

Parameters as Alpaca takes them: ``symbols`` (comma-separated), ``timeframe``
(``1Min`` … ``59Min``, ``1Hour`` … ``23Hour``, ``1Day``, ``1Week``, ``1``/``2``/``3``/
``4``/``6``/``12Month``; also ``T``/``H``/``D``/``W``/``M``), ``start`` / ``end`` (RFC 3339
with an offset, or a date; both inclusive), ``limit`` (1 … 10 000, default 1 000,
counted across symbols), ``page_token``, ``sort`` (``asc``/``desc``); stocks also
``feed``, ``adjustment`` (``raw``, ``split``, ``dividend``, ``spin-off``, ``all``,
comma-joined), ``asof`` (a date or ``-``) and ``currency`` (ISO 4217), checked but
without effect (no corporate actions, renames or conversions here). Any other
parameter is refused, as Alpaca refuses it. The body is ``{"bars": {symbol:
[{"t","o","h","l","c","v","n","vw"}…]}, "next_page_token": str | null}``: symbols in
alphabetical order, each one's bars in time order, a symbol without bars left out.
Minute and hour bars start on UTC multiples; stock day, week (from Monday) and month
bars at midnight New York time, as Alpaca's daily bars do (``T04:00:00Z`` or
``T05:00:00Z``).

Auth: ``APCA-API-KEY-ID`` / ``APCA-API-SECRET-KEY``, HTTP Basic (``key:secret``, as
alpaca-py's ``use_basic_auth`` and broker keys send it) or an OAuth ``Bearer`` token.
Errors: 401 ``{"message": "unauthorized."}`` without keys, 403 ``{"message":
"forbidden"}`` for wrong ones, 400 ``{"message": …}`` for a bad parameter (Alpaca's
answer today; in 2021 it was a 422 with ``"code": 42210000``).

One deliberate difference: without ``start`` / ``end`` the whole history is served
(Alpaca defaults to today .. now), since a synthetic market's clock need not be the
wall clock.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import cache
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from rxalpaca.feeds import Family

from .directory import Directory

__all__ = ["BAR_TYPES", "REST_PATHS", "BarHistory", "answer", "is_rest_path"]

#: The wire types that are minute bars (``u``: a correction replaces its ``b``).
BAR_TYPES = frozenset({"b", "u"})
#: Path → family of the bars it serves.
REST_PATHS: dict[str, Family] = {
    "/v2/stocks/bars": Family.STOCKS,
    "/v1beta3/crypto/us/bars": Family.CRYPTO,
}
_STOCK_FEEDS = frozenset({"iex", "sip", "delayed_sip", "otc", "boats", "overnight"})
_ADJUSTMENTS = frozenset({"raw", "split", "dividend", "spin-off", "all"})
#: The query parameters each family's endpoint takes (alpaca-py 0.44 sends a subset).
_COMMON = frozenset({"symbols", "timeframe", "start", "end", "limit", "page_token", "sort"})
_PARAMETERS = {
    Family.STOCKS: _COMMON | {"feed", "adjustment", "asof", "currency"},
    Family.CRYPTO: _COMMON,
}
_NS = 1_000_000_000
_MINUTE = 60 * _NS
_HOUR = 60 * _MINUTE
#: Timeframe unit → (the unit, the amounts Alpaca takes).
_UNITS: dict[str, tuple[str, tuple[int, ...]]] = {
    "Min": ("min", tuple(range(1, 60))),
    "T": ("min", tuple(range(1, 60))),
    "Hour": ("hour", tuple(range(1, 24))),
    "H": ("hour", tuple(range(1, 24))),
    "Day": ("day", (1,)),
    "D": ("day", (1,)),
    "Week": ("week", (1,)),
    "W": ("week", (1,)),
    "Month": ("month", (1, 2, 3, 4, 6, 12)),
    "M": ("month", (1, 2, 3, 4, 6, 12)),
}
_TIMEFRAME = re.compile(r"(\d+)(Min|T|Hour|H|Day|D|Week|W|Month|M)")
_ASOF = re.compile(r"\d{4}-\d\d-\d\d|-")
_CURRENCY = re.compile(r"[A-Z]{3}")
_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d\d):(\d\d))"
)
_DEFAULT_LIMIT = 1000
_MAX_LIMIT = 10_000
#: Bars kept per (family, symbol): a month of minutes; the oldest go first.
HISTORY_PER_SYMBOL = 50_000


def is_rest_path(path: str) -> bool:
    """Whether a request's path (query included or not) is a REST endpoint here."""
    return urlsplit(path).path.rstrip("/") in REST_PATHS


class BarHistory:
    """Minute bars by family and symbol, keyed by their minute (``t`` in ns).

    Plain data, owned by the server's loop (no lock): :meth:`add` is called where the
    server sends, :func:`answer` where it answers a request.
    """

    def __init__(self, per_symbol: int = HISTORY_PER_SYMBOL) -> None:
        self.per_symbol = per_symbol
        self._bars: dict[Family, dict[str, dict[int, dict[str, Any]]]] = {}

    def add(self, family: Family, records: Iterable[Mapping[str, Any]]) -> None:
        """Keep the bars among ``records`` (other types are skipped)."""
        fam = self._bars.setdefault(family, {})
        for rec in records:
            if rec.get("T") not in BAR_TYPES:
                continue
            t = to_ns(rec.get("t"))
            sym = rec.get("S")
            if t is None or not isinstance(sym, str):
                continue
            bars = fam.setdefault(sym, {})
            bars[t] = {k: v for k, v in rec.items() if k not in ("T", "S")} | {"t": t}
            if len(bars) > self.per_symbol:
                del bars[min(bars)]

    def bars(self, family: Family, symbol: str) -> list[dict[str, Any]]:
        """One symbol's bars in time order (``t`` in ns), as the stream carried them."""
        found = self._bars.get(family, {}).get(symbol, {})
        return [dict(found[t]) for t in sorted(found)]


class _BadParameter(Exception):
    pass


def answer(
    history: BarHistory,
    directory: Directory,
    target: str,
    headers: Mapping[str, str],
) -> tuple[int, dict[str, Any]]:
    """The status and JSON body for ``GET target`` (path and query string)."""
    split = urlsplit(target)
    family = REST_PATHS.get(split.path.rstrip("/"))
    if family is None:
        return 404, {"message": "Not Found"}
    denied = _authorize(directory, headers, optional=family is Family.CRYPTO)
    if denied is not None:
        return denied
    try:
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        return 200, _bars(history, family, query)
    except _BadParameter as exc:
        return 400, {"message": str(exc)}


def _authorize(
    directory: Directory, headers: Mapping[str, str], *, optional: bool
) -> tuple[int, dict[str, Any]] | None:
    key = headers.get("APCA-API-KEY-ID")
    secret = headers.get("APCA-API-SECRET-KEY")
    authorization = headers.get("Authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme == "Bearer":
        key, secret = "oauth", credentials
    elif scheme == "Basic":
        try:
            key, _, secret = base64.b64decode(credentials, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            key, secret = "", ""
    if key is None and secret is None:
        return None if optional else (401, {"message": "unauthorized."})
    account, _ = directory.lookup(key or "", secret or "")
    return None if account is not None else (403, {"message": "forbidden"})


def _bars(history: BarHistory, family: Family, q: Mapping[str, str]) -> dict[str, Any]:
    unexpected = sorted(set(q) - _PARAMETERS[family])
    if unexpected:
        raise _BadParameter(f"unexpected parameter(s): {', '.join(unexpected)}")
    symbols = sorted({s.strip() for s in q.get("symbols", "").split(",") if s.strip()})
    if not symbols:
        raise _BadParameter("missing symbols")
    bucket = _timeframe(q.get("timeframe"), family)
    start = _time(q, "start")
    end = _time(q, "end")
    if start is not None and end is not None and end < start:
        raise _BadParameter("end should not be before start")
    limit = _limit(q.get("limit"))
    sort = q.get("sort", "asc") or "asc"
    if sort not in ("asc", "desc"):
        raise _BadParameter(f"invalid sort: {sort!r}")
    feed = q.get("feed")
    if feed and feed not in _STOCK_FEEDS:
        raise _BadParameter(f"invalid feed: {feed!r}")
    adjustment = q.get("adjustment")
    if adjustment and not set(adjustment.split(",")) <= _ADJUSTMENTS:
        raise _BadParameter(f"invalid adjustment: {adjustment!r}")
    asof = q.get("asof")
    if asof and (_ASOF.fullmatch(asof) is None or (asof != "-" and _date(asof) is None)):
        raise _BadParameter(f"invalid asof: {asof!r}")
    currency = q.get("currency")
    if currency and _CURRENCY.fullmatch(currency) is None:
        raise _BadParameter(f"invalid currency: {currency!r}")
    # Every (symbol, bar) the query matches, in the response's order.
    rows: list[tuple[str, dict[str, Any]]] = []
    for sym in symbols:
        bars = _aggregate(history.bars(family, sym), bucket, family)
        picked = [
            b for b in bars if (start is None or b["t"] >= start) and (end is None or b["t"] <= end)
        ]
        if sort == "desc":
            picked.reverse()
        rows.extend((sym, b) for b in picked)
    first = 0
    token = q.get("page_token")
    if token:
        where = _untoken(token)
        first = next((i for i, (s, b) in enumerate(rows) if (s, b["t"]) == where), len(rows))
    page = rows[first : first + limit]
    out: dict[str, list[dict[str, Any]]] = {}
    for sym, bar in page:
        out.setdefault(sym, []).append(bar | {"t": format_ns(bar["t"])})
    rest = rows[first + limit : first + limit + 1]
    next_token = _token(rest[0][0], rest[0][1]["t"]) if rest else None
    return {"bars": out, "next_page_token": next_token}


def _aggregate(
    bars: list[dict[str, Any]], bucket: Callable[[int], int] | None, family: Family
) -> list[dict[str, Any]]:
    """Minute bars merged by ``bucket`` (a time → the start of its bar; ``None``:
    minute bars as they are): open first, close last, sums."""
    if bucket is None:
        return bars
    out: list[dict[str, Any]] = []
    for b in bars:
        t = bucket(b["t"])
        if out and out[-1]["t"] == t:
            a = out[-1]
            pv = a["vw"] * a["v"] + b["vw"] * b["v"]
            a.update(h=max(a["h"], b["h"]), l=min(a["l"], b["l"]), c=b["c"])
            a.update(v=a["v"] + b["v"], n=a["n"] + b["n"])
            a["vw"] = round(pv / a["v"], 4) if a["v"] else b["vw"]
        else:
            out.append(dict(b, t=t))
    if family is Family.STOCKS:
        for a in out:
            a["v"] = int(a["v"])
    return out


def _timeframe(value: str | None, family: Family) -> Callable[[int], int] | None:
    """A timeframe as the function from a minute bar's time to its bar's start
    (``None`` for one minute)."""
    m = _TIMEFRAME.fullmatch(value or "")
    if m is None:
        raise _BadParameter(f"invalid timeframe: {value!r}")
    n = int(m.group(1))
    unit, amounts = _UNITS[m.group(2)]
    if n > amounts[-1] and len(amounts) > 1:
        # Alpaca's own words for 60Min or 24Hour.
        raise _BadParameter(
            f"timeframe period number is larger than the allowed maximum of {amounts[-1]}"
        )
    if n not in amounts:
        raise _BadParameter(f"invalid timeframe: {value!r}")
    if unit == "min":
        return None if n == 1 else _every(n * _MINUTE)
    if unit == "hour":
        return _every(n * _HOUR)
    # Calendar bars: a stock's day starts at midnight in New York; crypto's at UTC's.
    zone: tzinfo = _new_york() if family is Family.STOCKS else UTC
    return lambda t: _calendar_start(t, unit, n, zone)


def _every(width: int) -> Callable[[int], int]:
    return lambda t: t // width * width


@cache
def _new_york() -> ZoneInfo:
    return ZoneInfo("America/New_York")


def _calendar_start(t: int, unit: str, n: int, zone: tzinfo) -> int:
    """The start of the day, week (Monday) or ``n``-month bar holding ``t``, in ``zone``."""
    local = datetime.fromtimestamp(t // _NS, tz=zone)
    day = local.date()
    if unit == "week":
        day -= timedelta(days=day.weekday())
    elif unit == "month":
        day = day.replace(month=(day.month - 1) // n * n + 1, day=1)
    start = datetime(day.year, day.month, day.day, tzinfo=zone)
    return calendar.timegm(start.utctimetuple()) * _NS


def _date(value: str) -> date | None:
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def _limit(value: str | None) -> int:
    if value is None or value == "":
        return _DEFAULT_LIMIT
    try:
        n = int(value)
    except ValueError:
        raise _BadParameter(f"invalid limit: {value!r}") from None
    if not 1 <= n <= _MAX_LIMIT:
        raise _BadParameter(f"invalid limit: {value!r} (1 to {_MAX_LIMIT})")
    return n


def _time(q: Mapping[str, str], name: str) -> int | None:
    value = q.get(name)
    if not value:
        return None
    ns = parse_rfc3339(value)
    if ns is None:
        raise _BadParameter(f"invalid {name}: {value!r}")
    return ns


def parse_rfc3339(value: str) -> int | None:
    """Nanoseconds since the epoch of an RFC 3339 time or a ``YYYY-MM-DD`` date."""
    m = _RFC3339.fullmatch(value)
    if m is None:
        try:
            day = date.fromisoformat(value)
        except ValueError:
            return None
        return calendar.timegm(day.timetuple()) * _NS
    y, mo, d, h, mi, s, frac, _z, sign, oh, om = m.groups()
    try:
        when = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s))
        secs = calendar.timegm(when.timetuple())
    except ValueError:
        return None
    if sign:
        secs -= (1 if sign == "+" else -1) * (int(oh) * 3600 + int(om) * 60)
    return secs * _NS + int((frac or "").ljust(9, "0"))


def format_ns(ns: int) -> str:
    """RFC 3339 in UTC as Alpaca writes it: ``2024-01-02T14:31:00Z`` (a fraction if any)."""
    secs, frac = divmod(ns, _NS)
    text = datetime.fromtimestamp(secs, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{frac:09d}".rstrip("0") if frac else "") + "Z"


def to_ns(t: object) -> int | None:
    """A wire timestamp (ns ``int``, ``datetime``, RFC 3339 ``str``) in ns, or ``None``."""
    if isinstance(t, bool):
        return None
    if isinstance(t, int):
        return t
    if isinstance(t, datetime):
        if t.tzinfo is None:
            return None
        return calendar.timegm(t.utctimetuple()) * _NS + t.microsecond * 1000
    if isinstance(t, str):
        return parse_rfc3339(t)
    return None


def _token(symbol: str, t: int) -> str:
    return base64.b64encode(f"{symbol}|{t}".encode()).decode()


def _untoken(token: str) -> tuple[str, int]:
    try:
        sym, _, t = base64.b64decode(token, validate=True).decode().rpartition("|")
        return sym, int(t)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _BadParameter(f"invalid page_token: {token!r}") from None
