"""One exception tree: the drawing in ``errors``' docstring, the classes and ``__all__`` agree.

httpx draws its whole exception tree in one docstring; these tests keep ours true:
every :class:`~rxalpaca.errors.RxAlpacaError` subclass in the package is defined in
``rxalpaca.errors``, is drawn under its real parent, and is exported from both
``rxalpaca.errors`` and ``rxalpaca``; the old import paths still give the same class.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import pytest

import rxalpaca
from rxalpaca import errors

#: One drawn row: the indentation of tree guides, a branch, the class name, its note.
_ROW = re.compile(r"^(?P<guides>(?:│   |    )*)(?:├── |└── )(?P<name>\w+)(?P<note>.*)$")
_ROOT = "RxAlpacaError"


def drawn_tree() -> dict[str, tuple[str | None, str]]:
    """``{class name: (parent name, note)}`` read from the drawing in the docstring."""
    doc = errors.__doc__ or ""
    _, _, after = doc.partition("::\n")
    lines = [line.removeprefix("    ") for line in after.splitlines()]
    while lines and not lines[0].strip():
        lines.pop(0)
    assert lines and lines[0].strip() == _ROOT, "the drawing starts with the root class"
    tree: dict[str, tuple[str | None, str]] = {_ROOT: (None, "")}
    parents = [_ROOT]  # parents[d]: the last class drawn at depth d
    for line in lines[1:]:
        if not line.strip():
            break  # the drawing ends at the first blank line
        row = _ROW.match(line)
        if row is None:
            # A wrapped note continues on a line that has guides but no branch.
            assert set(line[:4]) <= {"│", " "}, f"not a row of the tree: {line!r}"
            continue
        depth = len(row["guides"]) // 4 + 1
        name = row["name"]
        assert name not in tree, f"{name} is drawn twice"
        assert depth <= len(parents), f"{name} is drawn deeper than any parent"
        tree[name] = (parents[depth - 1], row["note"].strip())
        del parents[depth:]
        parents.append(name)
    return tree


def _rx_parent(cls: type[errors.RxAlpacaError]) -> str:
    """The one base of ``cls`` inside the tree (``ConfigurationError`` is a ``ValueError`` too)."""
    bases = [b for b in cls.__bases__ if issubclass(b, errors.RxAlpacaError)]
    assert len(bases) == 1, f"{cls.__name__} has {len(bases)} parents in the tree"
    return bases[0].__name__


def classes_in_errors() -> dict[str, type[errors.RxAlpacaError]]:
    return {
        name: obj
        for name, obj in vars(errors).items()
        if inspect.isclass(obj)
        and issubclass(obj, errors.RxAlpacaError)
        and obj.__module__ == errors.__name__
    }


def all_subclasses_in_the_package() -> set[type[errors.RxAlpacaError]]:
    for mod in pkgutil.walk_packages(rxalpaca.__path__, "rxalpaca."):
        importlib.import_module(mod.name)
    seen: set[type[errors.RxAlpacaError]] = set()
    todo = [errors.RxAlpacaError]
    while todo:
        cls = todo.pop()
        seen.add(cls)
        todo.extend(cls.__subclasses__())
    return {cls for cls in seen if cls.__module__.split(".")[0] == "rxalpaca"}


def test_the_drawing_is_the_class_tree() -> None:
    drawn = {name: parent for name, (parent, _) in drawn_tree().items()}
    defined = {
        name: (None if cls is errors.RxAlpacaError else _rx_parent(cls))
        for name, cls in classes_in_errors().items()
    }
    assert drawn == defined


def test_every_error_of_the_package_lives_in_errors() -> None:
    elsewhere = {
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in all_subclasses_in_the_package()
        if cls.__module__ != errors.__name__
    }
    assert not elsewhere, (
        f"define these in rxalpaca.errors (re-export where they were): {elsewhere}"
    )


def test_every_error_is_exported_from_errors_and_the_package() -> None:
    names = set(classes_in_errors())
    assert names <= set(errors.__all__)
    assert names <= set(rxalpaca.__all__)
    for name in names:
        assert getattr(rxalpaca, name) is getattr(errors, name)


def test_errors_all_is_the_classes_and_error_for_code() -> None:
    assert set(errors.__all__) == set(classes_in_errors()) | {"error_for_code"}


@pytest.mark.parametrize(
    ("old_path", "name"),
    [
        ("rxalpaca.client", "UnknownMessage"),
        ("rxalpaca.client", "SubscriptionMismatch"),
        ("rxalpaca.operators", "BufferOverflow"),
    ],
)
def test_old_import_paths_give_the_same_class(old_path: str, name: str) -> None:
    assert getattr(importlib.import_module(old_path), name) is getattr(errors, name)


@pytest.mark.parametrize(
    "cls",
    [
        c
        for c in classes_in_errors().values()
        if c is not errors.StreamError and issubclass(c, errors.StreamError)
    ],
    ids=lambda c: c.__name__,
)
def test_the_drawing_states_each_server_errors_code_and_flags(
    cls: type[errors.StreamError],
) -> None:
    note = drawn_tree()[cls.__name__][1]
    assert note.split()[0] == str(cls.code)
    assert ("fatal" in note) == cls.fatal, note
    assert ("retryable" in note) == cls.retryable, note
    assert type(errors.error_for_code(cls.code)) is cls
