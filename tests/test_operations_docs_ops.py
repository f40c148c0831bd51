"""docs/operations.md, the lag, discard, receive-span and profiling recipes: each runs as
written and prints what the page says (issue #15)."""

from __future__ import annotations

import re

import pytest

from tests.test_operations_docs import run

pytestmark = pytest.mark.timeout(60)


def test_lag_recipe(capsys: pytest.CaptureFixture[str]) -> None:
    out = run("lag_sample_every = 1", capsys)
    found = re.search(r"^True samples; p50 ([\d.]+) ms, p99 ([\d.]+) ms$", out, re.M)
    assert found, out
    assert float(found.group(1)) <= float(found.group(2))


def test_discard_recipe(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("ops.conflate(on_conflated=", capsys).strip() == "conflated True"


def test_receive_span_recipe(capsys: pytest.CaptureFixture[str]) -> None:
    out = run("receive_sample_rate=0.1", capsys)
    assert re.fullmatch(r"True \d+\n", out), out


def test_profile_recipe(capsys: pytest.CaptureFixture[str]) -> None:
    out = run("profile = start_profiling()", capsys)
    assert out.strip() == str(
        ["socket read (waiting included)", "framing + hop into the pipeline", "reassemble",
         "validate", "decode", "meter", "route", "control", "other"]
    )  # fmt: skip
