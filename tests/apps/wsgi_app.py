"""The contract routes (see `apps`) as raw `SSEWSGIApp`s behind a path dispatcher (no framework).

gunicorn: `apps.wsgi_app:create_app()` with `SSEKIT_TEST_EVENTS` set to the event log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from apps import events_path, raw_routes
from ssekit.adapters.wsgi import SSEWSGIApp

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def create_app(events: str | None = None) -> WSGIApp:
    """The dispatcher; sources log to `events` (default: the `SSEKIT_TEST_EVENTS` file)."""
    routes: dict[str, WSGIApp] = {
        path: SSEWSGIApp(factory, **options)
        for path, (factory, options) in raw_routes(events_path(events)).items()
    }

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/health":
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
            return [b"ok"]
        route = routes.get(path)
        if route is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found"]
        return route(environ, start_response)

    return app
