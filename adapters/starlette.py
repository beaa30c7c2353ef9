"""Serve event streams from Starlette and FastAPI.

```
from ssekit import StreamRegistry
from ssekit.adapters.starlette import SSEResponse, last_event_id, sse_route

registry = StreamRegistry(farewell="server restarting")

async def progress(request):
    return SSEResponse(job_updates(after=last_event_id(request)), heartbeat=10)

app = Starlette(
    routes=[Route("/progress", progress), sse_route("/ticks", lambda request: ticks())],
    lifespan=registry.lifespan,
)
```

With `lifespan=registry.lifespan` (or `async with registry.lifespan(app)` inside your own), every
`SSEResponse` of the app is tracked, and a SIGINT/SIGTERM first ends open streams with the
registry's farewell, so the server exits promptly.  FastAPI: return `SSEResponse(...)` from an
endpoint, optionally with `response_class=SSEResponse` for the OpenAPI docs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ssekit._registry import StreamRegistry
from ssekit._stream import Source, SSEStream
from ssekit.adapters._common import LAST_EVENT_ID_QUERY, allowed_methods, make_stream
from ssekit.adapters.asgi import DEFAULT_SEND_TIMEOUT, serve_stream
from ssekit.broker import (
    UNAVAILABLE_RETRY_MS,
    Broker,
    BrokerUnavailable,
    SlowPolicy,
    TooManySubscribers,
)

__all__ = ["SSEResponse", "broker_route", "last_event_id", "sse_route"]


def last_event_id(request: Request) -> str | None:
    """Where the client wants to resume: `Last-Event-ID`, else the `lastEventId` query parameter."""
    return request.headers.get("last-event-id", request.query_params.get(LAST_EVENT_ID_QUERY))


class SSEResponse(Response):
    """A `text/event-stream` response for a source (any chunk iterable) or an `SSEStream`.

    Keyword arguments beyond Starlette's are `to_sse()` options, plus `send_timeout` (seconds one
    write may take before the client is deemed gone) and `registry` (defaults to the one the
    app's lifespan provides).
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        content: Source | SSEStream,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
        *,
        send_timeout: float | None = DEFAULT_SEND_TIMEOUT,
        registry: StreamRegistry | None = None,
        **options: Any,
    ) -> None:
        self.stream = make_stream(content, options)
        self.status_code = status_code
        self.media_type = self.media_type if media_type is None else media_type
        self.background = background
        self.send_timeout = send_timeout
        self.registry = registry
        self.init_headers(headers)
        self.headers.setdefault("cache-control", "no-cache")
        self.headers.setdefault("x-accel-buffering", "no")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await serve_stream(
            self.stream,
            scope,
            receive,
            send,
            status=self.status_code,
            headers=self.raw_headers,
            send_timeout=self.send_timeout,
            registry=self.registry,
        )
        if self.background is not None:
            await self.background()


SourceFactory = Callable[[Request], "Source | SSEStream | Awaitable[Source | SSEStream]"]


def sse_route(
    path: str,
    factory: SourceFactory,
    *,
    methods: tuple[str, ...] = (),
    name: str | None = None,
    **options: Any,
) -> Route:
    """A `Route` that streams `factory(request)` (sync or async) with `to_sse()` options."""

    async def endpoint(request: Request) -> Response:
        source = factory(request)
        if isinstance(source, Awaitable):
            source = await source
        return SSEResponse(source, **options)

    return Route(path, endpoint, methods=sorted(allowed_methods(methods)), name=name)


def broker_route(
    path: str,
    broker: Broker,
    *,
    authorize: Callable[[Request, list[str]], bool | Awaitable[bool]] | None = None,
    topic_param: str = "topic",
    policy: SlowPolicy = "disconnect",
    name: str | None = None,
    **options: Any,
) -> Route:
    """A `Route` streaming the topic named in the path, resuming from `Last-Event-ID`.

    ```
    app = Starlette(routes=[broker_route("/events/{topic:path}", broker)])
    ```

    `authorize(request, topics)` (sync or async) returning False gives 403; a topic at its
    subscriber cap, 503.
    """

    async def endpoint(request: Request) -> Response:
        topic = request.path_params[topic_param]
        if authorize is not None:
            allowed = authorize(request, [topic])
            if isinstance(allowed, Awaitable):
                allowed = await allowed
            if not allowed:
                return PlainTextResponse("Forbidden", status_code=403)
        try:
            # A Redis broker reads the replay over the network: keep it off the event loop.
            subscription = await run_in_threadpool(
                broker.subscribe, topic, last_event_id(request), policy=policy
            )
        except TooManySubscribers as exc:
            return PlainTextResponse(str(exc), status_code=503, headers={"Retry-After": "5"})
        except BrokerUnavailable:
            return SSEResponse([], retry=UNAVAILABLE_RETRY_MS, heartbeat=None)  # come back soon
        return SSEResponse(subscription, **options)

    return Route(path, endpoint, methods=["GET", "HEAD"], name=name)
