"""The ASGI applications built on `serve_stream()`: `SSEApp`, and the mounting `SSEMiddleware`.

Both are importable from `ssekit.adapters.asgi`, where `serve_stream()` lives.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ssekit._compress import CompressionPolicy
from ssekit._registry import StreamRegistry
from ssekit._stream import SSEStream
from ssekit.adapters._asgi_common import (
    DEFAULT_SEND_TIMEOUT,
    ASGIApp,
    Receive,
    Scope,
    Send,
    send_refusal,
)
from ssekit.adapters._common import SSERequest
from ssekit.adapters._core import Authorize, Compress, Factory, Refuse, StreamEndpoint
from ssekit.adapters._lifespan import lifespan_around, registry_lifespan
from ssekit.adapters._mount import MountingMiddleware

if TYPE_CHECKING:
    from ssekit.adapters._core import StreamOptionsDict, Unpack

__all__ = ["SSEApp", "SSEMiddleware"]


class _Serving:
    """What both apps serve a request with: their registry and their send timeout."""

    registry: StreamRegistry
    send_timeout: float | None

    async def _answer(
        self,
        answer: SSEStream | Refuse,
        compress: CompressionPolicy,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """Send the refusal, or serve the stream until it ends or the client leaves."""
        # Imported here: ssekit.adapters.asgi imports this module to export its apps.
        from ssekit.adapters.asgi import serve_stream

        if isinstance(answer, Refuse):
            await send_refusal(send, answer)
            return
        await serve_stream(
            answer,
            scope,
            receive,
            send,
            send_timeout=self.send_timeout,
            registry=self.registry,
            compress=compress,
        )


class SSEApp(_Serving):
    """An ASGI application that streams `factory(request)` to every request.

    ```
    app = SSEApp(lambda request: ticks(after=request.last_event_id), heartbeat=10)
    ```

    GET and HEAD are served (`methods=` adds others); `authorize(request)`, sync or async,
    returning False or raising gives 403.  When it is the top-level app it also handles the
    lifespan: the registry's signal handlers are chained while serving, so a server's shutdown
    first ends the streams with the registry's farewell.  Other keyword arguments are `to_sse()`
    options, checked here.
    """

    def __init__(
        self,
        factory: Factory[SSERequest],
        *,
        methods: Iterable[str] = (),
        registry: StreamRegistry | None = None,
        send_timeout: float | None = DEFAULT_SEND_TIMEOUT,
        authorize: Authorize[SSERequest] | None = None,
        compress: Compress = False,
        **options: Unpack[StreamOptionsDict],
    ) -> None:
        self.endpoint = StreamEndpoint(
            factory, methods=methods, authorize=authorize, compress=compress, options=options
        )
        self.registry = registry if registry is not None else StreamRegistry()
        self.send_timeout = send_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await registry_lifespan(self.registry, receive, send)
            return
        if scope["type"] != "http":
            raise ValueError(f"SSEApp serves HTTP, not {scope['type']!r}.")
        request = SSERequest.from_asgi(scope)
        answer = await self.endpoint.aopen(request, request.method)
        await self._answer(answer, self.endpoint.compression, scope, receive, send)


class SSEMiddleware(MountingMiddleware[ASGIApp], _Serving):
    """Wraps any ASGI app and serves ssekit streams under given paths; the rest goes to `app`.

    ```
    app = SSEMiddleware(litestar_app)
    app.add_broker("/events", broker, authorize=may_follow)  # GET /events/<topic>
    app.add_stream("/clock", lambda request: ticks(), heartbeat=10)
    ```

    A mounted path behaves as `SSEApp` and Starlette's `broker_route` do (405 with `Allow`,
    400 for a bad topic, 403 when `authorize` says no, 503 at a topic's cap, `Last-Event-ID`
    resume, HEAD, `compress=`); factories and hooks get an `SSERequest`.  Every other request,
    websocket and lifespan messages included, reaches `app` untouched.  The lifespan is also
    where the middleware chains the registry's SIGINT/SIGTERM handlers (after `app`'s startup
    completes) and ends open streams (when the shutdown arrives, before `app` sees it); an app
    that refuses lifespan scopes gets them answered by the middleware instead.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        registry: StreamRegistry | None = None,
        send_timeout: float | None = DEFAULT_SEND_TIMEOUT,
    ) -> None:
        super().__init__(app, registry=registry)
        self.send_timeout = send_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan_around(self.app, self.registry, scope, receive, send)
            return
        found = self._mounts.match(scope.get("path", "")) if scope["type"] == "http" else None
        if found is None:
            await self.app(scope, receive, send)
            return
        answer = await found.aopen(SSERequest.from_asgi(scope))
        await self._answer(answer, found.compression, scope, receive, send)
