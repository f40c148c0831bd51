"""Every example of docs/record-replay.md runs and prints what its comments say."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parent.parent / "docs" / "record-replay.md"
BLOCKS = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)
#: What each block must print (a substring of its output).
EXPECT = [
    "iex msgpack\n['RECEIVED', 'SENT', 'STATE']",
    "100\n",
    "True",
    "throttled quotes from 60 s of market",
    "reconnect ('quotes',) ('AAPL',)",
    "[('live', 100.0), ('live', 101.0), ('backfilled', 102.0), ('backfilled', 103.0),"
    " ('live', 104.0)]",
    "'tape']\ndatetime64[ns, UTC]\n1\n126.55047619047619\n"
    "one frame holds one record type, got Quote, Trade:",
    "\n".join(f"22:13:{20 + i} 10 quotes, mean spread 0.020" for i in range(10)),
    "{'Trade': 1000}\ntimestamp[ns, tz=UTC]\nTrue\n4\n",
]


def test_every_block_has_an_expectation() -> None:
    assert len(BLOCKS) == len(EXPECT)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("code", "expect"), list(zip(BLOCKS, EXPECT, strict=True)))
def test_example_runs(code: str, expect: str, capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(code, str(PAGE), "exec"), {"__name__": "__docs__"})  # our own docs
    out = capsys.readouterr().out
    assert expect in out, out
