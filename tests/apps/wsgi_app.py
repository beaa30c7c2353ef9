"""A raw WSGI application: a few `SSEWSGIApp`s behind a path dispatcher (no framework).

gunicorn: `apps.wsgi_app:create_app()` with `SSEKIT_TEST_EVENTS` set to the event log.

Routes (query parameters: `kind` is "sync" or "async", `tag` names a source in the event log):
    /health          200 "ok": the server is up
    /sample          the `SAMPLE` chunks, then the end
    /resume          one event: {"last_event_id": ...} as the factory saw it
    /hold            "ready", then open until the client leaves (logs "closed <tag>")
    /slow            the first chunk only after `SLOW_START` seconds (logs "closed <tag>")
    /subscription    a `Subscription` source (logs "iterated"/"closed")
    /post            like /resume, with POST allowed
    /broken          the factory raises before returning a source
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from apps import HEARTBEAT, Subscription, events_path, hold, sample, slow
from ssekit.adapters._common import SSERequest
from ssekit.adapters.wsgi import SSEWSGIApp

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _resume(request: SSERequest) -> list[dict[str, Any]]:
    return [{"last_event_id": request.last_event_id, "method": request.method}]


def _broken(request: SSERequest) -> list[str]:
    raise ValueError("the factory failed before returning a source")


def create_app(events: str | None = None) -> WSGIApp:
    """The dispatcher; sources log to `events` (default: the `SSEKIT_TEST_EVENTS` file)."""
    log = events_path(events)

    def tag(request: SSERequest) -> str:
        return request.query["tag"]

    routes: dict[str, WSGIApp] = {
        "/sample": SSEWSGIApp(lambda r: sample(r.query["kind"]), heartbeat=HEARTBEAT),
        "/resume": SSEWSGIApp(_resume, heartbeat=HEARTBEAT),
        "/hold": SSEWSGIApp(lambda r: hold(r.query["kind"], log, tag(r)), heartbeat=HEARTBEAT),
        "/slow": SSEWSGIApp(lambda r: slow(r.query["kind"], log, tag(r)), heartbeat=HEARTBEAT),
        "/subscription": SSEWSGIApp(lambda r: Subscription(log, tag(r)), heartbeat=HEARTBEAT),
        "/post": SSEWSGIApp(_resume, methods=("POST",), heartbeat=HEARTBEAT),
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
