"""The contract routes (see `apps`) as Starlette endpoints returning `SSEResponse`."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

import apps
from ssekit.adapters.starlette import SSEResponse, last_event_id


def create_app(events: str | None = None) -> Starlette:
    """The app; sources log to `events` (default: the `SSEKIT_TEST_EVENTS` file)."""
    log = apps.events_path(events)

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def sample_view(request: Request) -> Response:
        return SSEResponse(apps.sample(request.query_params["kind"]), heartbeat=apps.HEARTBEAT)

    async def resume_view(request: Request) -> Response:
        tag = request.query_params.get("tag")
        answer = apps.resume(log, tag, last_event_id(request), request.method)
        return SSEResponse(answer, heartbeat=apps.HEARTBEAT)

    async def options_view(request: Request) -> Response:
        return SSEResponse(list(apps.OPTIONS_SOURCE), heartbeat=apps.HEARTBEAT, **apps.OPTIONS)

    async def hold_view(request: Request) -> Response:
        params = request.query_params
        return SSEResponse(apps.hold(params["kind"], log, params["tag"]), heartbeat=apps.HEARTBEAT)

    async def slow_view(request: Request) -> Response:
        params = request.query_params
        return SSEResponse(apps.slow(params["kind"], log, params["tag"]), heartbeat=apps.HEARTBEAT)

    async def subscription(request: Request) -> Response:
        source = apps.Subscription(log, request.query_params["tag"])
        return SSEResponse(source, heartbeat=apps.HEARTBEAT)

    async def broken(request: Request) -> Response:
        raise ValueError(apps.SECRET)

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/sample", sample_view),
            Route("/resume", resume_view),
            Route("/post", resume_view, methods=["GET", "POST"]),
            Route("/options", options_view),
            Route("/hold", hold_view),
            Route("/slow", slow_view),
            Route("/subscription", subscription),
            Route("/broken", broken),
        ]
    )
