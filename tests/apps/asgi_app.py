"""The contract routes (see `apps`) as raw `SSEApp`s behind a path dispatcher (no framework)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
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
from ssekit.adapters.asgi import SSEApp

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _broken(request: Any) -> list[str]:
    raise ValueError(SECRET)


def create_app(events: str | None = None) -> ASGIApp:
    """The dispatcher; sources log to `events` (default: the `SSEKIT_TEST_EVENTS` file)."""
    log = events_path(events)

    def tag(request: Any) -> str:
        tagged: str = request.query["tag"]
        return tagged

    def answer(request: Any) -> list[dict[str, Any]]:
        return resume(log, request.query.get("tag"), request.last_event_id, request.method)

    routes: dict[str, SSEApp] = {
        "/sample": SSEApp(lambda r: sample(r.query["kind"]), heartbeat=HEARTBEAT),
        "/resume": SSEApp(answer, heartbeat=HEARTBEAT),
        "/post": SSEApp(answer, methods=("POST",), heartbeat=HEARTBEAT),
        "/options": SSEApp(lambda r: list(OPTIONS_SOURCE), heartbeat=HEARTBEAT, **OPTIONS),
        "/hold": SSEApp(lambda r: hold(r.query["kind"], log, tag(r)), heartbeat=HEARTBEAT),
        "/slow": SSEApp(lambda r: slow(r.query["kind"], log, tag(r)), heartbeat=HEARTBEAT),
        "/subscription": SSEApp(lambda r: Subscription(log, tag(r)), heartbeat=HEARTBEAT),
        "/broken": SSEApp(_broken, heartbeat=HEARTBEAT),
    }

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path = scope["path"]
        route = routes.get(path)
        if route is not None:
            await route(scope, receive, send)
            return
        status, body = (200, b"ok") if path == "/health" else (404, b"not found")
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app
