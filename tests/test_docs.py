"""Every self-contained example in docs/ runs as written (the ones that start a server)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def examples() -> list[tuple[str, str]]:
    found = []
    for page in sorted(DOCS.glob("*.md")):
        for i, code in enumerate(BLOCK.findall(page.read_text())):
            if "AlpacaStreamServer(" in code:  # self-contained: brings its own server
                found.append((f"{page.name}#{i}", code))
    return found


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("name", "code"), examples(), ids=[n for n, _ in examples()])
def test_example_runs(name: str, code: str, capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(code, name, "exec"), {"__name__": "__docs__"})  # our own docs
    assert capsys.readouterr().out.strip(), f"{name} printed nothing"
