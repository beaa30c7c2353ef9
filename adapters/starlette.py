"""Serve event streams from Starlette and FastAPI.

```
async def progress(request):
    return SSEResponse(job_updates(after=last_event_id(request)), heartbeat=10)

app = Starlette(
    routes=[Route("/progress", progress), sse_route("/ticks", lambda request: ticks())],
    lifespan=StreamRegistry(farewell="server restarting").lifespan,
)
```

With `lifespan=registry.lifespan` (or `async with registry.lifespan(app)` inside your own), every
`SSEResponse` of the app is tracked, and a SIGINT/SIGTERM first ends open streams with the
registry's farewell, so the server exits promptly.  FastAPI: return `SSEResponse(...)` from an
endpoint, optionally with `response_class=SSEResponse` for the OpenAPI docs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ssekit._registry import StreamRegistry
from ssekit._stream import Source, SSEStream
from ssekit.adapters._common import asgi_last_event_id
from ssekit.adapters._core import (
    Authorize,
    AuthorizeTopics,
    BrokerEndpoint,
    Compress,
    Factory,
    Refuse,
    StreamEndpoint,
    compression_policy,
    make_stream,
)
from ssekit.adapters.asgi import DEFAULT_SEND_TIMEOUT, serve_stream
from ssekit.broker import Broker, SlowPolicy

if TYPE_CHECKING:
    from ssekit.adapters._core import StreamOptionsDict, Unpack

__all__ = ["SSEResponse", "broker_route", "last_event_id", "sse_route"]


def last_event_id(request: Request) -> str | None:
    """Where the client wants to resume: `Last-Event-ID`, else the `lastEventId` query parameter."""
    return asgi_last_event_id(request.scope)


class SSEResponse(Response):
    """A `text/event-stream` response for a source (any chunk iterable) or an `SSEStream`.

    Keyword arguments beyond Starlette's are `to_sse()` options (checked here), plus
    `send_timeout` (seconds one write may take before the client is deemed gone), `registry`
    (defaults to the one the app's lifespan provides) and `compress` (True or a tuple of codings:
    compressed when the request's `Accept-Encoding` allows, every write batch flushed).
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
        compress: Compress = False,
        **options: Unpack[StreamOptionsDict],
    ) -> None:
        self.compression = compression_policy(compress)
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
            compress=self.compression,
        )
        if self.background is not None:
            await self.background()


def _response(answer: SSEStream | Refuse, compress: Compress) -> Response:
    if isinstance(answer, Refuse):
        return PlainTextResponse(answer.reason, answer.status, dict(answer.headers))
    return SSEResponse(answer, compress=compress)


def sse_route(
    path: str,
    factory: Factory[Request],
    *,
    methods: tuple[str, ...] = (),
    name: str | None = None,
    authorize: Authorize[Request] | None = None,
    compress: Compress = False,
    **options: Unpack[StreamOptionsDict],
) -> Route:
    """A `Route` that streams `factory(request)` (sync or async) with `to_sse()` options.

    `authorize(request)` (sync or async) returning False, or raising, gives 403.  Without
    `name`, the route is named `"sse:" + path`.
    """
    endpoint = StreamEndpoint(
        factory, methods=methods, authorize=authorize, compress=compress, options=options
    )

    async def stream(request: Request) -> Response:
        return _response(await endpoint.aopen(request, request.method), endpoint.compression)

    return Route(path, stream, methods=list(endpoint.methods), name=name or f"sse:{path}")


def broker_route(
    path: str,
    broker: Broker,
    *,
    authorize: AuthorizeTopics[Request] | None = None,
    topic_param: str = "topic",
    policy: SlowPolicy = "disconnect",
    name: str | None = None,
    compress: Compress = False,
    **options: Unpack[StreamOptionsDict],
) -> Route:
    """A `Route` streaming the topic named in the path, resuming from `Last-Event-ID`.

    ```
    app = Starlette(routes=[broker_route("/events/{topic:path}", broker)])
    ```

    `authorize(request, topics)` (sync or async) returning False, or raising, gives 403; an
    empty or too long topic, 400; a topic at its subscriber cap, 503.  Without `name`, the route
    is named `"broker:" + path`.
    """
    endpoint = BrokerEndpoint[Request](
        broker, authorize=authorize, policy=policy, compress=compress, options=options
    )

    async def events(request: Request) -> Response:
        topic = request.path_params[topic_param]
        decision = await endpoint.adecide(request, topic, last_event_id(request))
        return _response(endpoint.respond(decision), endpoint.compression)

    return Route(path, events, methods=["GET", "HEAD"], name=name or f"broker:{path}")
