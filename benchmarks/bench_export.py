"""``export.py``'s smoke run (CI): a recording exported to Parquet, counts checked."""

from __future__ import annotations

import export
import pytest


@pytest.mark.timeout(300)
def test_export_smoke() -> None:
    pytest.importorskip("pyarrow")
    assert export.main(["--smoke"]) == 0
