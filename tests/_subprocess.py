"""Python child processes that count towards the coverage of ``pytest --cov``.

Tests that start ``python -m rxalpaca …`` or a script using the package (the CLI, the
bus gateway and consumer processes, the alpaca-py compat programs) build the command
with :func:`python_command` and the environment with :func:`child_env`. When this
pytest run measures coverage, the child runs under ``coverage run --parallel-mode``
with the ``[tool.coverage]`` settings of pyproject.toml; otherwise it is plain
``python``. Only these children are measured: the servers other suites start in a
child stay untraced (and fast), so there is no global subprocess patch.

A child writes its data file at exit into a staging directory, never straight beside
pytest-cov's own file: a child killed (SIGKILL, or a second Ctrl-C) while it writes
would leave a truncated file there that ``coverage combine`` cannot read. At the end
of the session (:func:`publish`, called from tests/conftest.py before pytest-cov
combines) every staged file that reads back whole moves beside the main data file; a
damaged one is dropped. A child killed before exit contributes nothing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

import coverage
from coverage.data import CoverageData
from coverage.exceptions import CoverageException

ROOT = Path(__file__).resolve().parents[1]

# One staging directory per pytest process, made on first use (pytest-xdist workers
# each have their own). Only the main thread of a test touches it.
_stage: Path | None = None


def _measuring() -> coverage.Coverage | None:
    return coverage.Coverage.current()


def _staging() -> Path:
    global _stage  # noqa: PLW0603 - one per process, see above
    if _stage is None:
        _stage = Path(tempfile.mkdtemp(prefix="rxalpaca-cov-"))
    return _stage


def python_command(*argv: str) -> list[str]:
    """``python argv…``, under ``coverage run -p`` when this run measures coverage.

    ``argv`` is what follows ``python``: ``"-m", "rxalpaca", …`` or a script path
    (not ``-c``: ``coverage run`` has no such option).
    """
    if _measuring() is None:
        return [sys.executable, *argv]
    rc = f"--rcfile={ROOT / 'pyproject.toml'}"
    run = [sys.executable, "-m", "coverage", "run", "--parallel-mode", rc]
    if argv and argv[0] == "-m":
        return [*run, "-m", *argv[1:]]
    return [*run, *argv]


def child_env(base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """``base`` (default: this process's environment) plus ``extra``, and, when measuring,
    ``COVERAGE_FILE`` pointing into the staging directory."""
    env = dict(os.environ if base is None else base)
    env.update(extra)
    if _measuring() is not None:
        env["COVERAGE_FILE"] = str(_staging() / ".coverage")
    else:
        env.pop("COVERAGE_FILE", None)
    return env


def publish() -> int:
    """Move every readable staged data file beside this run's data file, for pytest-cov's
    combine; drop the damaged ones. Returns how many moved."""
    cov = _measuring()
    if _stage is None or cov is None:
        return 0
    # pytest-cov combines the files beside its data file (cwd-relative, as ours is).
    target = Path(os.path.abspath(cov.config.data_file)).parent
    moved = 0
    for f in sorted(_stage.glob(".coverage.*")):
        try:
            # Reading every line and arc raises on a truncated or damaged file.
            CoverageData(no_disk=True).update(CoverageData(str(f)))
        except (CoverageException, sqlite3.Error):
            continue
        with contextlib.suppress(OSError):
            shutil.move(str(f), target / f.name)
            moved += 1
    shutil.rmtree(_stage, ignore_errors=True)
    return moved
