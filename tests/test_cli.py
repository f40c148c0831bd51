"""``rxalpaca demo``: the embedded server's market on the terminal board (issue #9, item 11)."""

from __future__ import annotations

import re

import pytest

from rxalpaca.cli import main
from tests.conftest import TIMING_FACTOR

pytestmark = pytest.mark.timeout(60)


def board_rows(out: str) -> dict[str, list[str]]:
    """The last rendered board: symbol -> its cells."""
    last = out.rsplit("rxalpaca demo", 1)[-1]
    rows: dict[str, list[str]] = {}
    for line in last.splitlines()[3:]:
        cells = line.split()
        if cells and not line.startswith("done:"):
            rows[cells[0]] = cells[1:]
    return rows


@pytest.mark.parametrize(
    ("symbols", "shown", "encoding"),
    [
        ("aapl, msft", ["AAPL", "MSFT"], "json"),
        ("aapl, msft", ["AAPL", "MSFT"], "msgpack"),
        ("btc/usd,ETH/usd,btc/usd", ["BTC/USD", "ETH/USD"], "msgpack"),  # on the crypto feed
    ],
    ids=["stocks-json", "stocks-msgpack", "crypto-msgpack"],
)
def test_demo_with_lower_case_symbols_shows_them(
    capsys: pytest.CaptureFixture[str], symbols: str, shown: list[str], encoding: str
) -> None:
    """The client upper-cases symbols; the demo's market must use the same names."""
    duration = 2.0 * TIMING_FACTOR  # the demo's own run time, not a synchronisation
    assert main(["demo", "--symbols", symbols, "--duration", str(duration),
                 "--rate", "2000", "--encoding", encoding]) == 0  # fmt: skip
    out = capsys.readouterr().out
    rows = board_rows(out)
    assert list(rows) == shown, out[-2000:]
    for sym, cells in rows.items():
        assert cells and re.fullmatch(r"\d+\.\d\d", cells[0]), f"{sym}: no bid in {cells}"
    delivered = re.search(r"done: ([\d,]+) messages delivered", out)
    assert delivered is not None, out[-500:]
    assert int(delivered.group(1).replace(",", "")) > 0


@pytest.mark.parametrize(
    ("symbols", "says"),
    [
        (" , ", "names no symbol"),
        ("aapl,btc/usd", "mixes stocks and crypto"),
        ("AAPL240119C00190000", "stocks or crypto"),
    ],
)
def test_demo_symbol_mistakes_are_one_sentence(
    capsys: pytest.CaptureFixture[str], symbols: str, says: str
) -> None:
    assert main(["demo", "--symbols", symbols, "--duration", "1"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith("rxalpaca demo: ") and says in line


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (
            ["stream", "quotes", "BAD!!", "--url", "ws://127.0.0.1:9"],
            "'BAD!!' is not a stock symbol",
        ),
        (["stream", "quotes", "AAPL", "--feed", "nasdaq"], "unknown feed 'nasdaq'"),
    ],
)
def test_stream_mistakes_are_one_sentence(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, argv: list[str], says: str
) -> None:
    monkeypatch.setenv("APCA_API_KEY_ID", "k")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "s")
    assert main(argv) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("rxalpaca stream: ") and says in line
