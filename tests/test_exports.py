"""``__all__`` is the public API; keep it honest (httpx's test_exported_members)."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator
from types import ModuleType

import pytest
import reactivex

import rxalpaca
import rxalpaca.aio

MODULES = [
    "rxalpaca",
    "rxalpaca.errors",
    "rxalpaca.models",
    "rxalpaca.feeds",
    "rxalpaca.symbols",
    "rxalpaca.codec",
    "rxalpaca.protocol",
    "rxalpaca.book",
    "rxalpaca.operators",
    "rxalpaca.aio",
    "rxalpaca.client",
    "rxalpaca.transport",
    "rxalpaca.testing",
    "rxalpaca.frames",
    "rxalpaca.framing",
    "rxalpaca.router",
    "rxalpaca.supervisor",
    "rxalpaca.streams",
    "rxalpaca.upstream",
    "rxalpaca.options",
    "rxalpaca.timestamps",
    "rxalpaca.testing.server",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_names_exist_and_public_names_are_listed(name: str) -> None:
    mod = importlib.import_module(name)
    exported = set(mod.__all__)
    for item in exported:
        assert hasattr(mod, item), f"{name}.__all__ lists missing {item}"
    if name == "rxalpaca.operators":
        return  # re-exports reactivex.operators by design
    defined_here = {
        k
        for k, v in vars(mod).items()
        if not k.startswith("_") and getattr(v, "__module__", None) == name and callable(v)
    }
    assert defined_here <= exported, f"{name}: public but not in __all__: {defined_here - exported}"


def test_ops_serves_ours_and_reactivex() -> None:
    assert rxalpaca.ops is rxalpaca.operators
    for name in ("throttle", "reassemble", "retry_with_backoff", "map", "filter", "observe_on"):
        assert callable(getattr(rxalpaca.ops, name))


def test_public_api_has_docstrings() -> None:
    for name in rxalpaca.__all__:
        obj = getattr(rxalpaca, name)
        if callable(obj):
            assert obj.__doc__, f"rxalpaca.{name} has no docstring"


def test_star_import_does_not_hide_the_builtin_aiter() -> None:
    namespace: dict[str, object] = {}
    exec("from rxalpaca import *", namespace)
    exec("from rxalpaca.aio import *", namespace)
    assert "aiter" not in namespace
    assert "aiterate" in namespace


async def _collect(items: AsyncIterator[int]) -> list[int]:
    return [item async for item in items]


def test_aiterate_iterates_an_observable() -> None:
    assert asyncio.run(_collect(rxalpaca.aiterate(reactivex.of(1, 2, 3)))) == [1, 2, 3]


@pytest.mark.parametrize("module", [rxalpaca, rxalpaca.aio], ids=lambda m: m.__name__)
def test_old_aiter_still_works_and_warns_once_per_call(module: ModuleType) -> None:
    old_aiter = module.aiter
    with pytest.warns(DeprecationWarning, match=r"use rxalpaca\.aiterate") as caught:
        items = old_aiter(reactivex.of(1, 2, 3))
    assert len(caught) == 1
    assert caught[0].filename == __file__  # points at the caller, not at rxalpaca
    assert asyncio.run(_collect(items)) == [1, 2, 3]


def test_unknown_attributes_still_raise() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = rxalpaca.no_such_name  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = rxalpaca.aio.no_such_name  # type: ignore[attr-defined]


def _modules_after(code: str) -> set[str]:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(out.stdout.split())


def test_import_loads_only_what_is_used() -> None:
    """PEP 562 exports: ``import rxalpaca`` loads none of its dependencies, a record class
    loads no Rx, and the CLI's ``--help`` path neither (docs/benchmarks.md, "Import time")."""
    bare = _modules_after("import rxalpaca")
    assert not {"reactivex", "msgspec", "websocket", "rxalpaca.client"} & bare
    models = _modules_after("from rxalpaca import Trade, ConfigurationError")
    assert "msgspec" in models and not {"reactivex", "websocket", "random"} & models
    cli = _modules_after("import rxalpaca.cli")
    assert not {"reactivex", "websocket", "msgspec", "rxalpaca.client"} & cli
    client = _modules_after("from rxalpaca import StreamClient")
    assert "reactivex" in client and "random" not in client
    assert "reactivex.operators" not in client  # ~0.5 MB: loaded when ops serves one of its
    ops = _modules_after("from rxalpaca import ops; ops.map")
    assert "reactivex.operators" in ops
    # Operators a default client never uses load on first use (issue #12, "Memory").
    assert not {*_ON_FIRST_USE.values(), "rxalpaca.recording", "zlib"} & client


#: rxalpaca's operators whose module loads when first called: (call, module).
_ON_FIRST_USE = {
    "ops.throttle(1.0)": "rxalpaca.operators._throttle",
    "ops.conflate()": "rxalpaca.operators._conflate",
    "ops.record('x.rxa')": "rxalpaca.operators._record",
    "ops.to_frames(count=1)": "rxalpaca.operators._frames",
}


@pytest.mark.parametrize(("call", "module"), _ON_FIRST_USE.items())
def test_rarely_used_operators_load_on_first_call(call: str, module: str) -> None:
    before = _modules_after("from rxalpaca import StreamClient, ops")
    assert module not in before
    after = _modules_after(f"from rxalpaca import StreamClient, ops\n{call}")
    assert module in after
    if module.endswith("_record"):
        assert {"rxalpaca.recording", "zlib"} <= after


def test_ops_serves_reactivex_names_lazily() -> None:
    """``rxalpaca.ops`` re-exports reactivex's operators on first use (PEP 562), with
    ``__all__`` and ``dir`` listing them, ours first and never shadowed by reactivex's."""
    import reactivex.operators as rx_operators

    import rxalpaca.operators as ops

    assert ops.map is rx_operators.map
    assert set(rx_operators.__all__) <= set(ops.__all__) <= set(dir(ops))
    assert ops.throttle.__module__ == "rxalpaca.operators"
    namespace: dict[str, object] = {}
    exec("from rxalpaca.operators import *", namespace)
    assert namespace["map"] is rx_operators.map and namespace["throttle"] is ops.throttle
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        getattr(ops, "nope")  # noqa: B009 - an unknown name, on purpose
    with pytest.raises(AttributeError, match="no attribute '__wrapped__'"):
        getattr(ops, "__wrapped__")  # noqa: B009 - dunder names are not looked up


def test_lazy_names_are_bound_once_and_listed() -> None:
    assert rxalpaca.StreamClient is rxalpaca.client.StreamClient
    assert "StreamClient" in vars(rxalpaca)  # bound after the first use
    assert set(rxalpaca.__all__) <= set(dir(rxalpaca))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        getattr(rxalpaca, "nope")  # noqa: B009 - an unknown name, on purpose
