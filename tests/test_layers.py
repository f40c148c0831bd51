"""The layering of design.md, checked by walking imports with ``ast``.

A module may import only from layers below it; operators and transport are
siblings; layers 0-1 never import reactivex or websocket; testing imports layer 0
and protocol only (and encodes with its own plain path, never ``codec``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "rxalpaca"

LAYER = {
    "frames": 0,
    "models": 0,
    "timestamps": 0,
    "errors": 0,
    "feeds": 0,
    "symbols": 0,
    "_logging": 0,
    "_speedups": 0,  # C (rxalpaca/_speedups.c): the timestamp read path; imports nothing
    "metrics": 0,
    "protocol": 1,
    "framing": 1,
    "book": 1,
    "codec": 1,
    "router": 1,
    "recording": 1,  # the recording file format and its writer thread: no Rx, no socket
    "dataframes": 1,  # records -> pandas / polars / Arrow (imported lazily): no Rx
    "operators": 2,
    "transport": 2,
    "supervisor": 2,
    "streams": 3,  # the streams facade: demand, routing, errors — no upstream
    "options": 3,  # a client's options, checked
    "upstream": 4,  # the Alpaca socket the facade drives
    "client": 5,
    "replaying": 5,  # a recording through the client's pipeline, beside the client
    "testing": 1,  # beside the sans-I/O core; its own imports are checked apart
    "aio": 6,
    "cli": 7,  # every command, the bus's included
    "compat": 6,  # alpaca-py's streaming classes over StreamClient
    "notebook": 6,  # live views for Jupyter (IPython display handles)
    "contrib": 6,
    "backfill": 6,  # gaps in minute bars filled over REST (alpaca-py), beside the client
    "bus": 6,  # the NATS gateway (drives a StreamClient) and BusClient (a Streams)
    "export": 6,  # a recording -> Parquet, through a replay
    "doctor": 5,  # a one-shot connection probe beside the client (cli's doctor)
    "__main__": 8,
}
TESTING_MAY_IMPORT = {"frames", "models", "errors", "feeds", "metrics", "protocol"}
NO_RX = {
    "frames",
    "models",
    "timestamps",
    "errors",
    "feeds",
    "symbols",
    "_logging",
    "metrics",
    "protocol",
    "framing",
    "book",
    "codec",
    "router",
    "recording",
    "dataframes",
    "testing",
    "supervisor",
}
#: Leaves import nothing of ours, so their own layer may use them: the exception tree
#: (feeds and symbols raise ConfigurationError), the timestamp parsers (models) and their C
#: read path.
LEAVES = {"errors", "timestamps", "_speedups"}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0].removesuffix(".py")


def imported_internal(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                pkg = path.relative_to(ROOT).parts[: -node.level]
                target = [*pkg, *(node.module.split(".") if node.module else [])]
                if target:
                    found.add(target[0].removesuffix(".py"))
                else:
                    found.update(a.name for a in node.names)
            elif node.module and node.module.startswith("rxalpaca."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("rxalpaca."):
                    found.add(a.name.split(".")[1])
    return found


def imported_external(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.add(node.module.split(".")[0])
    return out


FILES = sorted(p for p in ROOT.rglob("*.py") if p.name != "__init__.py" or p.parent != ROOT)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_layers(path: Path) -> None:
    me = module_name(path)
    deps = {"operators" if d == "ops" else d for d in imported_internal(path)} - {me}
    if me == "testing":
        assert deps <= TESTING_MAY_IMPORT, f"testing imports {deps - TESTING_MAY_IMPORT}"
        return
    if me not in LAYER:
        pytest.fail(f"{me} has no layer in design.md's table; add it there and here")
    for dep in deps:
        assert dep in LAYER, f"{me} imports unknown module {dep}"
        assert LAYER[dep] < LAYER[me] or dep in LEAVES, f"{me} (layer {LAYER[me]}) imports {dep}"


#: The test server's protocol parts are sans-I/O like the client's core: no loop,
#: thread or socket, so they are unit-tested with byte strings (tests/testing/test_session.py).
SERVER_SANS_IO = ["config", "directory", "history", "outbox", "records", "session", "trading"]
IO = {"asyncio", "websockets", "threading", "socket", "selectors"}


@pytest.mark.parametrize("name", SERVER_SANS_IO)
def test_server_protocol_parts_do_no_io(name: str) -> None:
    path = ROOT / "testing" / "server" / f"{name}.py"
    assert not imported_external(path) & IO
    # ... nor import the I/O modules of their own package.
    assert not {"core", "connection", "feeds", "faults", "stream_server"} & _siblings(path)


def _siblings(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module
    }


def test_leaves_import_nothing_of_ours() -> None:
    """Nothing but other leaves (``_speedups`` is C, and includes no Python of ours)."""
    for leaf in LEAVES - {"_speedups"}:
        assert not imported_internal(ROOT / f"{leaf}.py") - LEAVES


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_core_has_no_rx_and_no_socket(path: Path) -> None:
    if module_name(path) in NO_RX:
        assert not imported_external(path) & {"reactivex", "websocket"}
