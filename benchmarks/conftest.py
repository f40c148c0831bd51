"""Benchmark collection and imports.

* Files named ``bench_*.py`` are collected too, so ``pytest benchmarks`` (CI's smoke run,
  ``.ci/run``) finds them, not only ``pytest benchmarks/bench_codec.py``.
* Benchmarks import their helpers (``frames.py``) as top-level modules, from this folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    # A path named on the command line is collected by pytest itself; don't collect it twice.
    if (
        file_path.suffix == ".py"
        and file_path.name.startswith("bench_")
        and not parent.session.isinitpath(file_path)
    ):
        return pytest.Module.from_parent(parent, path=file_path)
    return None
