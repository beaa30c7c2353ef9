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

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from ssekit._stream import SSEStream
from ssekit.adapters._common import asgi_last_event_id
from ssekit.adapters._core import (
    Authorize,
    AuthorizeTopics,
    BrokerEndpoint,
    Compress,
    Factory,
    Refuse,
    StreamEndpoint,
)
from ssekit.adapters._starlette_response import SSEResponse
from ssekit.broker import Broker, SlowPolicy

if TYPE_CHECKING:
    from ssekit.adapters._core import StreamOptionsDict, Unpack

__all__ = ["SSEResponse", "broker_route", "last_event_id", "sse_route"]


def last_event_id(request: Request) -> str | None:
    """Where the client wants to resume: `Last-Event-ID`, else the `lastEventId` query parameter."""
    return asgi_last_event_id(request.scope)


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
