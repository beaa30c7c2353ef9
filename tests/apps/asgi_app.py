"""The contract routes (see `apps`) as raw `SSEApp`s behind a path dispatcher (no framework)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from apps import events_path, raw_routes
from ssekit.adapters.asgi import SSEApp

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def create_app(events: str | None = None) -> ASGIApp:
    """The dispatcher; sources log to `events` (default: the `SSEKIT_TEST_EVENTS` file)."""
    routes: dict[str, SSEApp] = {
        path: SSEApp(factory, **options)
        for path, (factory, options) in raw_routes(events_path(events)).items()
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
