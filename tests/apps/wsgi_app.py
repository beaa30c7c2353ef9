"""The contract routes (see `apps`) as raw `SSEWSGIApp`s behind a path dispatcher (no framework).

gunicorn: `apps.wsgi_app:create_app()` with `SSEKIT_TEST_EVENTS` set to the event log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from apps import (
    HEARTBEAT,
    OPTIONS,
    OPTIONS_SOURCE,
    SECRET,
    Subscription,
    events_path,
    hold,
    resume,
    sample,
    slow,
)
from ssekit.adapters.wsgi import SSEWSGIApp

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _broken(request: Any) -> list[str]:
    raise ValueError(SECRET)


def create_app(events: str | None = None) -> WSGIApp:
    """The dispatcher; sources log to `events` (default: the `SSEKIT_TEST_EVENTS` file)."""
    log = events_path(events)

    def tag(request: Any) -> str:
        tagged: str = request.query["tag"]
        return tagged

    def answer(request: Any) -> list[dict[str, Any]]:
        return resume(log, request.query.get("tag"), request.last_event_id, request.method)

    routes: dict[str, WSGIApp] = {
        "/sample": SSEWSGIApp(lambda r: sample(r.query["kind"]), heartbeat=HEARTBEAT),
        "/resume": SSEWSGIApp(answer, heartbeat=HEARTBEAT),
        "/post": SSEWSGIApp(answer, methods=("POST",), heartbeat=HEARTBEAT),
        "/options": SSEWSGIApp(lambda r: list(OPTIONS_SOURCE), heartbeat=HEARTBEAT, **OPTIONS),
        "/hold": SSEWSGIApp(lambda r: hold(r.query["kind"], log, tag(r)), heartbeat=HEARTBEAT),
        "/slow": SSEWSGIApp(lambda r: slow(r.query["kind"], log, tag(r)), heartbeat=HEARTBEAT),
        "/subscription": SSEWSGIApp(lambda r: Subscription(log, tag(r)), heartbeat=HEARTBEAT),
        "/broken": SSEWSGIApp(_broken, heartbeat=HEARTBEAT),
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
