"""The contract routes (see `apps`) as FastAPI endpoints with `response_class=SSEResponse`.

Each endpoint returns an `SSEResponse`; FastAPI generator endpoints (`yield`) are tested in
`test_adapter_starlette.py`.  GET routes are declared with HEAD too (FastAPI does not add it).
Endpoints are `async def`: FastAPI runs plain `def` ones in worker threads that outlive the
request (the suite fails a test that leaves threads behind).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse

import apps
from ssekit.adapters.starlette import SSEResponse, last_event_id

GET = ["GET", "HEAD"]


def create_app(events: str | None = None) -> FastAPI:
    """The app; sources log to `events` (default: the `SSEKIT_TEST_EVENTS` file)."""
    log = apps.events_path(events)
    app = FastAPI()

    def stream(source: Any, **options: Any) -> SSEResponse:
        return SSEResponse(source, heartbeat=apps.HEARTBEAT, **options)

    @app.get("/health", response_class=PlainTextResponse)
    async def health() -> str:
        return "ok"

    @app.api_route("/sample", methods=GET, response_class=SSEResponse)
    async def sample_view(kind: str) -> SSEResponse:
        return stream(apps.sample(kind))

    @app.api_route("/resume", methods=GET, response_class=SSEResponse)
    async def resume_view(request: Request, tag: str | None = None) -> SSEResponse:
        return stream(apps.resume(log, tag, last_event_id(request), request.method))

    @app.api_route("/post", methods=[*GET, "POST"], response_class=SSEResponse)
    async def post_view(request: Request, tag: str | None = None) -> SSEResponse:
        return stream(apps.resume(log, tag, last_event_id(request), request.method))

    @app.api_route("/options", methods=GET, response_class=SSEResponse)
    async def options_view() -> SSEResponse:
        return stream(list(apps.OPTIONS_SOURCE), **apps.OPTIONS)

    @app.api_route("/hold", methods=GET, response_class=SSEResponse)
    async def hold_view(kind: str, tag: str) -> SSEResponse:
        return stream(apps.hold(kind, log, tag))

    @app.api_route("/slow", methods=GET, response_class=SSEResponse)
    async def slow_view(kind: str, tag: str) -> SSEResponse:
        return stream(apps.slow(kind, log, tag))

    @app.api_route("/subscription", methods=GET, response_class=SSEResponse)
    async def subscription(tag: str) -> SSEResponse:
        return stream(apps.Subscription(log, tag))

    @app.api_route("/broken", methods=GET, response_class=SSEResponse)
    async def broken() -> SSEResponse:
        raise ValueError(apps.SECRET)

    return app
