"""``pipelines.__all__`` is exactly what the package exports, and each export is documented."""

from __future__ import annotations

import types

import pipelines


def test_all_matches_what_pipelines_exports():
    exported = {name for name, value in vars(pipelines).items()
                if not name.startswith("_") and not isinstance(value, types.ModuleType)}
    listed_modules = {name for name in pipelines.__all__ if isinstance(getattr(pipelines, name), types.ModuleType)}
    assert sorted(set(pipelines.__all__) - listed_modules) == sorted(exported)  # a listed module is its own API
    assert len(set(pipelines.__all__)) == len(pipelines.__all__)


def test_every_public_function_says_what_it_returns():
    for name in pipelines.__all__:
        value = getattr(pipelines, name)
        if callable(value) and not isinstance(value, type):
            assert value.__doc__ and value.__annotations__.get("return"), name
