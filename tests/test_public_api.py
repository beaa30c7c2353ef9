"""The public API is deliberate: every public module lists its names in `__all__` (ruff keeps it
sorted), each of them importable, and every public class or function a module defines is listed."""

from __future__ import annotations

import importlib
import types

import pytest

pytestmark = pytest.mark.timeout(60)

PUBLIC_MODULES = [
    "ssekit",
    "ssekit.ai",
    "ssekit.broker",
    "ssekit.client",
    "ssekit.memory",
    "ssekit.runs",
    "ssekit.testing",
    "ssekit.gunicorn",
    "ssekit.adapters.asgi",
    "ssekit.adapters.wsgi",
    "ssekit.adapters.flask",
    "ssekit.adapters.starlette",
    "ssekit.adapters.django",
]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_importable_and_complete(name: str) -> None:
    if name == "ssekit.adapters.django":
        pytest.importorskip("django")
    module = importlib.import_module(name)
    exported = list(module.__all__)
    missing = [item for item in exported if not hasattr(module, item)]
    assert not missing, f"{name}.__all__ names what it lacks: {missing}"
    defined_here = [
        item
        for item, value in vars(module).items()
        if not item.startswith("_")
        # type(value), not value.__class__: a lazy proxy (Django's settings) must stay unread
        and (issubclass(type(value), type) or type(value) is types.FunctionType)
        and getattr(value, "__module__", None) == name
    ]
    unlisted = sorted(set(defined_here) - set(exported))
    assert not unlisted, f"{name} defines public names missing from __all__: {unlisted}"
