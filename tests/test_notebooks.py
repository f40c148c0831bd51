"""The notebooks run, cell by cell, as Jupyter would (top-level await included)."""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
from pathlib import Path
from typing import Any

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


async def run_cells(cells: list[str]) -> dict[str, Any]:
    namespace: dict[str, Any] = {"display": print, "__name__": "__notebook__"}
    for src in cells:
        code = compile(src, "<cell>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        result = eval(code, namespace)  # our own notebook, run as Jupyter would
        if inspect.iscoroutine(result):
            await result
    return namespace


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path: Path) -> None:
    nb = json.loads(path.read_text())
    cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    assert cells
    ns = asyncio.run(run_cells(cells))
    assert ns["client"].current_state.value == "closed"
    assert ns["rows"], "the trade window collected nothing"
    assert set(ns["latest"]) == {"AAPL", "MSFT", "NVDA"}
