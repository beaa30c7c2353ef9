"""The contract routes (see `apps`) as Starlette endpoints returning `SSEResponse`."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

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
from ssekit.adapters.starlette import SSEResponse, last_event_id


def create_app(events: str | None = None) -> Starlette:
    """The app; sources log to `events` (default: the `SSEKIT_TEST_EVENTS` file)."""
    log = events_path(events)

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def sample_view(request: Request) -> Response:
        return SSEResponse(sample(request.query_params["kind"]), heartbeat=HEARTBEAT)

    async def resume_view(request: Request) -> Response:
        tag = request.query_params.get("tag")
        answer = resume(log, tag, last_event_id(request), request.method)
        return SSEResponse(answer, heartbeat=HEARTBEAT)

    async def options_view(request: Request) -> Response:
        return SSEResponse(list(OPTIONS_SOURCE), heartbeat=HEARTBEAT, **OPTIONS)

    async def hold_view(request: Request) -> Response:
        params = request.query_params
        return SSEResponse(hold(params["kind"], log, params["tag"]), heartbeat=HEARTBEAT)

    async def slow_view(request: Request) -> Response:
        params = request.query_params
        return SSEResponse(slow(params["kind"], log, params["tag"]), heartbeat=HEARTBEAT)

    async def subscription(request: Request) -> Response:
        source = Subscription(log, request.query_params["tag"])
        return SSEResponse(source, heartbeat=HEARTBEAT)

    async def broken(request: Request) -> Response:
        raise ValueError(SECRET)

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
