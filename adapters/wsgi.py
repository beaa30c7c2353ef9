"""Serve event streams from any PEP 3333 WSGI server, with no framework and no dependency.

`SSEWSGIApp(factory)` is a WSGI application: each request calls `factory(request)` for a source.
The body starts with the stream's preamble at once, so servers that send headers with the first
body block (all of them) let the browser fire `open` before a slow source yields.  When the
client leaves, the body notices before its next write (it peeks at the client's socket where the
server shares it; otherwise the write fails) and the server calls `close()`, which closes the
source: the heartbeat bounds how long that takes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ssekit._registry import StreamRegistry
from ssekit.adapters._common import SSE_HEADERS, SSERequest
from ssekit.adapters._core import Authorize, Factory, Refuse, StreamEndpoint, admit, refuse_async
from ssekit.adapters._wsgi_body import (
    Environ,
    StartResponse,
    StreamBody,
    client_socket,
    peer_closed,
    refusal,
    warn_if_blocking_worker,
)

if TYPE_CHECKING:
    from ssekit.adapters._core import StreamOptionsDict, Unpack

__all__ = [
    "SSEWSGIApp",
    "StreamBody",
    "client_socket",
    "peer_closed",
    "refusal",
    "warn_if_blocking_worker",
]


class SSEWSGIApp:
    """A WSGI application that streams `factory(request)` to every request.

    ```
    app = SSEWSGIApp(lambda request: ticks(after=request.last_event_id), heartbeat=10)
    ```

    GET and HEAD are served (`methods=` adds others); `authorize(request)`, sync or async,
    returning False or raising gives 403; an exception raised by the factory gives a 500.  The
    factory must be sync (an `async def` one is refused here).  Streams are tracked in
    `registry` (one per app unless given), whose `close_all()` ends them at shutdown; beyond its
    `max_streams`, a request gets 503 with `Retry-After`.  Other
    keyword arguments are `to_sse()` options, checked here.
    """

    def __init__(
        self,
        factory: Factory[SSERequest],
        *,
        methods: Iterable[str] = (),
        registry: StreamRegistry | None = None,
        authorize: Authorize[SSERequest] | None = None,
        **options: Unpack[StreamOptionsDict],
    ) -> None:
        refuse_async(factory, "SSEWSGIApp")
        self.endpoint = StreamEndpoint(
            factory, methods=methods, authorize=authorize, options=options
        )
        self.registry = registry if registry is not None else StreamRegistry()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        request = SSERequest.from_wsgi(environ)
        stream = self.endpoint.open(request, request.method)
        if isinstance(stream, Refuse):
            return refusal(start_response, stream)
        refused = None if request.method == "HEAD" else admit(self.registry, stream)
        if refused is not None:  # at the registry's max_streams: 503, at once
            stream.close()
            return refusal(start_response, refused)
        start_response("200 OK", list(SSE_HEADERS))
        if request.method == "HEAD":
            stream.close()
            return []
        warn_if_blocking_worker(environ)
        return StreamBody(stream, self.registry, client_socket(environ))
