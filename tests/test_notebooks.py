"""The notebooks run on a real Jupyter kernel (nbclient + ipykernel), cell by cell.

Not ``exec`` of the cells: a kernel has IPython's display machinery, a running
event loop under every cell (top-level ``await``; ``iterate`` blocking a cell) and
output routing by cell, which is where the traps are. Every notebook must run
without an error, and its outputs must make sense: no ``<Disposable …>`` noise, no
output from one cell's stream landing in another cell, and the checks below.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")  # jupyter_core's own deprecation

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def text_of(output: dict[str, Any]) -> str:
    if output.get("output_type") == "stream":
        return str(output.get("text", ""))
    data = output.get("data", {})
    return str(data.get("text/html") or data.get("text/plain") or "")


def execute(path: Path) -> list[list[str]]:
    """Run ``path`` on a fresh kernel; the text of each code cell's outputs."""
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    cells = [c for c in nb.cells if c.cell_type == "code"]
    for cell in cells:
        errors = [o for o in cell.outputs if o.get("output_type") == "error"]
        assert not errors, f"{path.name}: {cell.source!r} raised {errors[0].get('ename')}"
    return [[text_of(o) for o in cell.outputs] for cell in cells]


#: What each notebook's outputs must show, by cell index (a regex on the joined text).
EXPECT: dict[str, dict[int, str]] = {
    "explore_live_stream.ipynb": {
        0: r"connection state.*authenticated",
        1: r"(\d{4}-\d\d-\d\d .* lag \d+\.\d\d ms\n){5}",
        2: r"[1-9]\d* trades in one second",
        4: r"latest quotes.*<th>symbol</th>.*AAPL.*MSFT.*NVDA",
        5: r"^\{(?=.*'AAPL': \()(?=.*'MSFT': \()(?=.*'NVDA': \()",
        7: r"^closed\n$",
    },
    "crypto_quotes_and_books.ipynb": {
        1: r"crypto quotes.*BTC/USD",
        2: r"after 20 records: [1-9]\d* bid levels",
        3: r"^closed\n$",
    },
    "options_trades_and_quotes.ipynb": {
        0: r"^msgpack\n$",
        1: r"option trades.*AAPL240315C00172500",
        2: r"(AAPL240315C00172500 \d+\.\d+\n){5}",
        3: r"^closed\n$",
    },
    "news.ipynb": {
        1: r"headlines.*<th>headline</th>",
        2: r"(\d\d:\d\d:\d\d .*(AAPL|TSLA).* - .*\n){3}",
        3: r"^closed\n$",
    },
    "replay_to_dataframe.ipynb": {
        0: r"^recorded [\d,]+ records, 0 dropped\n$",
        1: r"^[1-9]\d* quotes, [1-9]\d* trades; timestamp is datetime64\[ns, UTC\]\n"
        r"exact ns: True\n.*<th>timestamp</th>.*(AAPL|MSFT)",
        2: r"^[1-9]\d* windows of 100 ms; quotes per window: \[[1-9]",
        3: r"^<Figure size 900x350 with 1 Axes>$",
        4: r"\('Quote', [1-9]\d*\).*\('Trade', [1-9]\d*\)\]\nsame timestamps: True\n$",
    },
}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_on_a_real_kernel(path: Path) -> None:
    outputs = execute(path)
    everything = "\n".join("\n".join(o) for o in outputs)
    assert "<Disposable" not in everything and "<reactivex." not in everything
    assert "Traceback" not in everything
    for index, pattern in EXPECT[path.name].items():
        text = "".join(outputs[index])
        assert re.search(pattern, text, re.S), f"{path.name} cell {index}: {text[:500]!r}"


def test_every_notebook_is_checked() -> None:
    assert {p.name for p in NOTEBOOKS} == set(EXPECT)
