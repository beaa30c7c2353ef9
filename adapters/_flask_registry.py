"""A Flask app's registry of open streams: `init_app()` keeps it in `app.extensions`."""

from __future__ import annotations

from flask import Flask, current_app

from ssekit._registry import StreamRegistry

__all__ = ["init_app", "registry"]

_EXTENSION = "ssekit"


def init_app(
    app: Flask, registry: StreamRegistry | None = None, *, max_streams: int | None = None
) -> StreamRegistry:
    """Give `app` a registry of its open streams (see `StreamRegistry`) and return it.

    `max_streams` caps the streams open at once: beyond it a stream request gets 503 with
    `Retry-After` (give it to the `StreamRegistry` instead when you pass one).
    """
    if registry is not None and max_streams is not None:
        raise TypeError("Give max_streams to the StreamRegistry you pass to init_app(), not both.")
    registry = registry if registry is not None else StreamRegistry(max_streams=max_streams)
    app.extensions[_EXTENSION] = registry
    return registry


def registry() -> StreamRegistry | None:
    """The current app's registry, if `init_app()` gave it one."""
    found = current_app.extensions.get(_EXTENSION)
    return found if isinstance(found, StreamRegistry) else None
