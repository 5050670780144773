"""Everything the feature packages export is importable (their public surface)."""

import importlib

import pytest


@pytest.mark.parametrize("package", ["streams.features", "feature_store"])
def test_everything_exported_is_importable(package):
    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name) is not None, name
