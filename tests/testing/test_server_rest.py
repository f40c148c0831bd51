"""The embedded server's historical REST bars (``/v2/stocks/bars``, crypto's), over HTTP on
127.0.0.1: Alpaca's parameters, pagination, errors, and alpaca-py's own client."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from typing import Any

import pytest

from rxalpaca.feeds import Family
from rxalpaca.testing import DEFAULT_KEY, DEFAULT_SECRET, AlpacaStreamServer
from rxalpaca.testing.server.history import BarHistory, format_ns, parse_rfc3339, to_ns

pytestmark = pytest.mark.timeout(60)

MIN = 60_000_000_000
T0 = 1_700_000_040_000_000_000  # 2023-11-14T22:14:00Z, a minute's start
AUTH = {"APCA-API-KEY-ID": DEFAULT_KEY, "APCA-API-SECRET-KEY": DEFAULT_SECRET}


def bar(sym: str, i: int, *, kind: str = "b", v: int = 100) -> dict[str, Any]:
    p = 100.0 + i
    return {"T": kind, "S": sym, "o": p, "h": p + 1, "l": p - 1, "c": p + 0.5, "v": v,
            "t": T0 + i * MIN, "n": 3, "vw": p + 0.25}  # fmt: skip


def get(
    server: AlpacaStreamServer,
    path: str,
    headers: dict[str, str] | None = None,
    **params: Any,
) -> tuple[int, Any]:
    url = server.rest_url + path + "?" + urllib.parse.urlencode(params)
    req = urllib.request.Request(url, headers=AUTH if headers is None else headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.headers["Content-Type"].startswith("application/json")
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


@pytest.fixture
def published(alpaca_server: AlpacaStreamServer) -> AlpacaStreamServer:
    """Five AAPL bars and three MSFT ones, the fourth AAPL one corrected by a ``u``."""
    alpaca_server.publish([bar("AAPL", i) for i in range(5)] + [bar("MSFT", i) for i in range(3)])
    alpaca_server.publish([bar("AAPL", 3, kind="u", v=150)])
    return alpaca_server


def test_bars_as_alpaca_serves_them(published: AlpacaStreamServer) -> None:
    status, body = get(published, "/v2/stocks/bars", symbols="MSFT,AAPL", timeframe="1Min")
    assert status == 200 and body["next_page_token"] is None
    assert list(body["bars"]) == ["AAPL", "MSFT"]  # alphabetical
    first = body["bars"]["AAPL"][0]
    assert first == {"t": "2023-11-14T22:14:00Z", "o": 100.0, "h": 101.0, "l": 99.0,
                     "c": 100.5, "v": 100, "n": 3, "vw": 100.25}  # fmt: skip
    assert [b["v"] for b in body["bars"]["AAPL"]] == [100, 100, 100, 150, 100]  # the correction
    assert len(body["bars"]["MSFT"]) == 3
    # start and end are inclusive; RFC 3339 with an offset, or a fraction, both work.
    status, body = get(published, "/v2/stocks/bars", symbols="AAPL", timeframe="1Min",
                       start="2023-11-14T23:15:00+01:00", end="2023-11-14T22:17:00.000000000Z",
                       feed="sip")  # fmt: skip
    assert [b["t"][11:16] for b in body["bars"]["AAPL"]] == ["22:15", "22:16", "22:17"]
    # No bars: the symbol is left out.
    status, body = get(published, "/v2/stocks/bars", symbols="AAPL,TSLA", timeframe="1Min",
                       start="2023-11-15")  # fmt: skip
    assert (status, body) == (200, {"bars": {}, "next_page_token": None})
    # Wider timeframes: the minutes merged.
    _, body = get(published, "/v2/stocks/bars", symbols="AAPL", timeframe="1Hour")
    [hour] = body["bars"]["AAPL"]
    assert hour["t"] == "2023-11-14T22:00:00Z" and (hour["o"], hour["c"]) == (100.0, 104.5)
    assert (hour["h"], hour["l"], hour["v"], hour["n"]) == (105.0, 99.0, 550, 15)
    _, body = get(published, "/v2/stocks/bars", symbols="AAPL", timeframe="2Min", sort="desc")
    assert [b["t"][11:16] for b in body["bars"]["AAPL"]] == ["22:18", "22:16", "22:14"]


def test_pagination_walks_every_bar_once_with_the_limit_across_symbols(
    published: AlpacaStreamServer,
) -> None:
    for sort in ("asc", "desc"):
        pages: list[dict[str, list[dict[str, Any]]]] = []
        token: str | None = None
        while True:
            params: dict[str, Any] = {"symbols": "AAPL,MSFT", "timeframe": "1Min", "limit": 3}
            if token is not None:
                params["page_token"] = token
            status, body = get(published, "/v2/stocks/bars", sort=sort, **params)
            assert status == 200
            pages.append(body["bars"])
            token = body["next_page_token"]
            if token is None:
                break
        # 8 bars, 3 a page, counted across symbols: a page may hold both.
        assert [sum(map(len, p.values())) for p in pages] == [3, 3, 2]
        assert list(pages[1]) == ["AAPL", "MSFT"]
        walked = [(s, b["t"]) for p in pages for s, bars in p.items() for b in bars]
        assert len(walked) == len(set(walked)) == 8
        times = [t for s, t in walked if s == "AAPL"]
        assert times == sorted(times, reverse=sort == "desc")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"timeframe": "1Min"}, "missing symbols"),
        (
            {"symbols": "AAPL", "timeframe": "60Min"},
            "timeframe period number is larger than the allowed maximum of 59",
        ),
        (
            {"symbols": "AAPL", "timeframe": "24H"},
            "timeframe period number is larger than the allowed maximum of 23",
        ),
        ({"symbols": "AAPL", "timeframe": "0Min"}, "invalid timeframe"),
        ({"symbols": "AAPL", "timeframe": "2Day"}, "invalid timeframe"),
        ({"symbols": "AAPL", "timeframe": "2Week"}, "invalid timeframe"),
        ({"symbols": "AAPL", "timeframe": "5Month"}, "invalid timeframe"),
        ({"symbols": "AAPL", "timeframe": "1Sec"}, "invalid timeframe"),
        (
            {"symbols": "AAPL", "timeframe": "1Min", "after": "2024-01-01"},
            "unexpected parameter(s): after",
        ),
        ({"symbols": "AAPL", "timeframe": "1Min", "adjustment": "splits"}, "invalid adjustment"),
        ({"symbols": "AAPL", "timeframe": "1Min", "asof": "2024-13-01"}, "invalid asof"),
        ({"symbols": "AAPL", "timeframe": "1Min", "asof": "today"}, "invalid asof"),
        ({"symbols": "AAPL", "timeframe": "1Min", "currency": "usd"}, "invalid currency"),
        ({"symbols": "AAPL", "timeframe": "1Min", "limit": 0}, "invalid limit"),
        ({"symbols": "AAPL", "timeframe": "1Min", "limit": 10001}, "invalid limit"),
        ({"symbols": "AAPL", "timeframe": "1Min", "limit": "x"}, "invalid limit"),
        ({"symbols": "AAPL", "timeframe": "1Min", "start": "yesterday"}, "invalid start"),
        ({"symbols": "AAPL", "timeframe": "1Min", "start": "2024-02-30T00:00:00Z"}, "invalid"),
        (
            {"symbols": "AAPL", "timeframe": "1Min", "start": "2024-01-02", "end": "2024-01-01"},
            "end should not be before start",
        ),
        ({"symbols": "AAPL", "timeframe": "1Min", "sort": "up"}, "invalid sort"),
        ({"symbols": "AAPL", "timeframe": "1Min", "feed": "nyse"}, "invalid feed"),
        ({"symbols": "AAPL", "timeframe": "1Min", "page_token": "%%%"}, "invalid page_token"),
    ],
)
def test_a_bad_parameter_is_a_400_saying_which(
    alpaca_server: AlpacaStreamServer, params: dict[str, Any], message: str
) -> None:
    """As Alpaca answers today: 400 and ``{"message": …}`` (no ``code``)."""
    status, body = get(alpaca_server, "/v2/stocks/bars", **params)
    assert status == 400 and list(body) == ["message"]
    assert body["message"].startswith(message)


def test_crypto_takes_no_stock_parameters(alpaca_server: AlpacaStreamServer) -> None:
    for name, value in [("feed", "us"), ("adjustment", "raw"), ("asof", "-")]:
        params: dict[str, Any] = {"symbols": "BTC/USD", "timeframe": "1Min", name: value}
        status, body = get(alpaca_server, "/v1beta3/crypto/us/bars", **params)
        assert (status, body) == (400, {"message": f"unexpected parameter(s): {name}"})


def test_stock_parameters_alpaca_takes_are_taken(published: AlpacaStreamServer) -> None:
    """``adjustment``, ``asof`` and ``currency``: checked, accepted, no effect here."""
    extras: list[dict[str, Any]] = [
        {"adjustment": "split,spin-off"},
        {"adjustment": "all"},
        {"asof": "-"},
        {"asof": "2023-11-14"},
        {"currency": "USD"},
        {"feed": "boats"},
    ]
    for extra in extras:
        status, body = get(published, "/v2/stocks/bars", symbols="AAPL", timeframe="1T", **extra)
        assert status == 200 and len(body["bars"]["AAPL"]) == 5, extra


@pytest.mark.parametrize(
    ("timeframe", "family", "start"),
    [
        # Stocks: calendar bars start at midnight New York time (EST here, UTC-5) …
        ("1Day", "stocks", "2023-11-14T05:00:00Z"),
        ("1D", "stocks", "2023-11-14T05:00:00Z"),
        ("1Week", "stocks", "2023-11-13T05:00:00Z"),  # the Monday
        ("1W", "stocks", "2023-11-13T05:00:00Z"),
        # … in summer time (EDT, UTC-4) when the bar starts before 5 November 2023.
        ("1Month", "stocks", "2023-11-01T04:00:00Z"),
        ("3M", "stocks", "2023-10-01T04:00:00Z"),
        ("12Month", "stocks", "2023-01-01T05:00:00Z"),
        ("4Hour", "stocks", "2023-11-14T20:00:00Z"),  # hours: UTC multiples
        # Crypto days are UTC's.
        ("1Day", "crypto", "2023-11-14T00:00:00Z"),
        ("1Week", "crypto", "2023-11-13T00:00:00Z"),
        ("6M", "crypto", "2023-07-01T00:00:00Z"),
    ],
)
def test_wider_bars_start_where_alpaca_s_do(
    alpaca_server: AlpacaStreamServer, timeframe: str, family: str, start: str
) -> None:
    sym = "AAPL" if family == "stocks" else "BTC/USD"
    path = "/v2/stocks/bars" if family == "stocks" else "/v1beta3/crypto/us/bars"
    alpaca_server.publish([bar(sym, i) for i in range(3)])
    status, body = get(alpaca_server, path, symbols=sym, timeframe=timeframe)
    assert status == 200
    [wide] = body["bars"][sym]
    assert wide["t"] == start and (wide["o"], wide["c"], wide["n"]) == (100.0, 102.5, 9)


def test_keys_are_checked_as_alpaca_checks_them(published: AlpacaStreamServer) -> None:
    q: dict[str, Any] = {"symbols": "AAPL", "timeframe": "1Min"}
    assert get(published, "/v2/stocks/bars", {}, **q) == (401, {"message": "unauthorized."})
    wrong = {**AUTH, "APCA-API-SECRET-KEY": "not-it"}
    assert get(published, "/v2/stocks/bars", wrong, **q) == (403, {"message": "forbidden"})
    # OAuth tokens, and crypto bars need no keys at all (but wrong ones are refused).
    assert get(published, "/v2/stocks/bars", {"Authorization": "Bearer nope"}, **q)[0] == 403
    # HTTP Basic (key:secret), as broker keys and alpaca-py's use_basic_auth send them.
    for pair, status in [(f"{DEFAULT_KEY}:{DEFAULT_SECRET}", 200), (f"{DEFAULT_KEY}:x", 403)]:
        basic = {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}
        assert get(published, "/v2/stocks/bars", basic, **q)[0] == status
    assert get(published, "/v2/stocks/bars", {"Authorization": "Basic %%"}, **q)[0] == 403
    assert (
        get(published, "/v1beta3/crypto/us/bars", {}, symbols="BTC/USD", timeframe="1Min")[0] == 200
    )
    assert (
        get(published, "/v1beta3/crypto/us/bars", wrong, symbols="BTC/USD", timeframe="1Min")[0]
        == 403
    )
    # Injected failures come first, then the server answers again.
    published.fail_next_rest(429)
    assert get(published, "/v2/stocks/bars", **q) == (429, {"message": "injected failure 429"})
    assert get(published, "/v2/stocks/bars", **q)[0] == 200
    assert published.rest_requests()[-1] == "/v2/stocks/bars?symbols=AAPL&timeframe=1Min"
    # An unknown path is still a 404, and the stream endpoints still upgrade.
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(published.rest_url + "/v2/stocks/nope", timeout=10)
    err.value.close()
    assert err.value.code == 404


def test_crypto_bars_on_the_crypto_path(alpaca_server: AlpacaStreamServer) -> None:
    alpaca_server.publish([{**bar("BTC/USD", 0), "v": 0.5}])
    status, body = get(alpaca_server, "/v1beta3/crypto/us/bars", symbols="BTC/USD",
                       timeframe="1Min")  # fmt: skip
    assert status == 200 and body["bars"]["BTC/USD"][0]["v"] == 0.5
    assert alpaca_server.bar_history("BTC/USD", "crypto")[0]["t"] == T0
    # Stocks and crypto are apart.
    assert get(alpaca_server, "/v2/stocks/bars", symbols="BTC/USD", timeframe="1Min")[1] == {
        "bars": {},
        "next_page_token": None,
    }


def test_alpaca_py_s_historical_client_runs_against_it_unchanged(
    published: AlpacaStreamServer,
) -> None:
    from alpaca.common.enums import Sort, SupportedCurrencies
    from alpaca.common.exceptions import APIError
    from alpaca.data.enums import Adjustment, DataFeed
    from alpaca.data.historical import StockHistoricalDataClient
    from alpaca.data.requests import StockBarsRequest
    from alpaca.data.timeframe import TimeFrame

    client = StockHistoricalDataClient(DEFAULT_KEY, DEFAULT_SECRET, url_override=published.rest_url)
    req = StockBarsRequest(
        symbol_or_symbols=["AAPL", "MSFT"],
        timeframe=TimeFrame.Minute,
        start=datetime(2023, 11, 14, tzinfo=UTC),
        limit=7,
    )
    got = client.get_stock_bars(req)
    bars = got.data  # type: ignore[union-attr]
    assert len(bars["AAPL"]) == 5 and len(bars["MSFT"]) == 2  # the limit, across symbols
    assert bars["AAPL"][3].volume == 150 and bars["AAPL"][0].timestamp == datetime(
        2023, 11, 14, 22, 14, tzinfo=UTC
    )
    bad = StockHistoricalDataClient(DEFAULT_KEY, "wrong", url_override=published.rest_url)
    with pytest.raises(APIError) as err:
        bad.get_stock_bars(req)
    assert err.value.status_code == 403
    # Everything alpaca-py's request can carry is taken; a bad value is its APIError.
    full = StockBarsRequest(
        symbol_or_symbols="AAPL",
        timeframe=TimeFrame.Minute,
        start=datetime(2023, 11, 14, tzinfo=UTC),
        end=datetime(2023, 11, 15, tzinfo=UTC),
        adjustment=Adjustment.ALL,
        feed=DataFeed.SIP,
        sort=Sort.DESC,
        asof="2023-11-14",
        currency=SupportedCurrencies.USD,
    )
    assert [b.open for b in client.get_stock_bars(full).data["AAPL"]] == [104, 103, 102, 101, 100]  # type: ignore[union-attr]
    with pytest.raises(APIError) as err:
        client.get_stock_bars(full.model_copy(update={"asof": "14/11/2023"}))
    assert err.value.status_code == 400 and err.value.message == "invalid asof: '14/11/2023'"
    # Broker keys authenticate with HTTP Basic.
    basic = StockHistoricalDataClient(
        DEFAULT_KEY, DEFAULT_SECRET, use_basic_auth=True, url_override=published.rest_url
    )
    assert len(basic.get_stock_bars(req).data["AAPL"]) == 5  # type: ignore[union-attr]


def test_history_parts() -> None:
    h = BarHistory(per_symbol=2)
    junk: list[dict[str, Any]] = [
        {"T": "q", "S": "AAPL", "t": T0},
        {"T": "b", "S": "AAPL", "t": "x"},
    ]
    h.add(Family.STOCKS, [bar("AAPL", i) for i in range(3)] + junk)
    assert [b["t"] for b in h.bars(Family.STOCKS, "AAPL")] == [
        T0 + MIN,
        T0 + 2 * MIN,
    ]
    assert format_ns(T0 + 5) == "2023-11-14T22:14:00.000000005Z"
    assert parse_rfc3339("2023-11-14T22:14:00.000000005Z") == T0 + 5
    assert parse_rfc3339("2023-11-14") == T0 - (22 * 60 + 14) * MIN
    assert to_ns(datetime(2023, 11, 14, 22, 14, tzinfo=UTC)) == T0
    assert to_ns(datetime(2023, 11, 14, 22, 14)) is None  # naive: unknown zone
    assert to_ns("2023-11-14T22:14:00Z") == T0 and to_ns(True) is None and to_ns(1.5) is None
