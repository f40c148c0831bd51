"""``__all__`` is the public API; keep it honest (httpx's test_exported_members)."""

from __future__ import annotations

import importlib

import pytest

import rxalpaca

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
