"""Every package under the four roots declares its public names, and each one resolves.

Packages are found by walking the directories, so a new package is covered as soon as it
has an ``__init__.py``. Names a package exports lazily (a module ``__getattr__``) are
resolved too, which imports their modules.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROOTS = ("streams", "experiments", "feature_store", "infra")


def packages() -> list[str]:
    found = []
    for root in ROOTS:
        for init in sorted((ROOT / root).rglob("__init__.py")):
            package = init.parent.relative_to(ROOT)
            if all((ROOT / Path(*package.parts[: depth + 1]) / "__init__.py").is_file()
                   for depth in range(len(package.parts))):
                found.append(".".join(package.parts))
    return found


def test_the_walk_finds_the_packages() -> None:
    found = packages()
    assert set(ROOTS) <= set(found)
    assert "streams.worker.learner" in found
    assert len(found) == len(set(found))


@pytest.mark.parametrize("name", packages())
def test_public_names(name: str) -> None:
    package = importlib.import_module(name)
    public = getattr(package, "__all__", None)
    assert public is not None, f"{name} has no __all__"
    assert isinstance(public, list | tuple), f"{name}.__all__ is a {type(public).__name__}"
    assert all(isinstance(item, str) for item in public), f"{name}.__all__ holds a non-string"
    duplicates = sorted({item for item in public if list(public).count(item) > 1})
    assert not duplicates, f"{name}.__all__ lists {duplicates} more than once"
    missing = [item for item in public if not hasattr(package, item)]
    assert not missing, f"{name}.__all__ names {missing}, which it does not have"
