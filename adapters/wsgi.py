"""Serve event streams from any PEP 3333 WSGI server, with no framework and no dependency.

`SSEWSGIApp(factory)` is a WSGI application: each request calls `factory(request)` for a source.
`SSEMiddleware(app)` wraps any other WSGI app and serves streams and broker topics under given
paths.
The body starts with the stream's preamble at once, so servers that send headers with the first
body block (all of them) let the browser fire `open` before a slow source yields.  When the
client leaves, the body notices before its next write (it peeks at the client's socket where the
server shares it; otherwise the write fails) and the server calls `close()`, which closes the
source: the heartbeat bounds how long that takes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ssekit._registry import StreamRegistry
from ssekit.adapters._common import SSERequest, wsgi_text
from ssekit.adapters._core import (
    Authorize,
    Compress,
    Factory,
    Refuse,
    StreamEndpoint,
    refuse_async,
)
from ssekit.adapters._mount import MountingMiddleware
from ssekit.adapters._wsgi_body import (
    Environ,
    StartResponse,
    StreamBody,
    client_socket,
    peer_closed,
    refusal,
    respond,
    warn_if_blocking_worker,
)

if TYPE_CHECKING:
    from ssekit.adapters._core import StreamOptionsDict, Unpack

#: A PEP 3333 application.
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

__all__ = [
    "SSEMiddleware",
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
        compress: Compress = False,
        **options: Unpack[StreamOptionsDict],
    ) -> None:
        refuse_async(factory, "SSEWSGIApp")
        self.endpoint = StreamEndpoint(
            factory, methods=methods, authorize=authorize, compress=compress, options=options
        )
        self.registry = registry if registry is not None else StreamRegistry()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        request = SSERequest.from_wsgi(environ)
        stream = self.endpoint.open(request, request.method)
        if isinstance(stream, Refuse):
            return refusal(start_response, stream)
        return respond(
            stream,
            environ,
            start_response,
            registry=self.registry,
            compress=self.endpoint.compression,
        )


class SSEMiddleware(MountingMiddleware[WSGIApp]):
    """Wraps any WSGI app and serves ssekit streams under given paths; the rest goes to `app`.

    ```
    app = SSEMiddleware(bottle_app)
    app.add_broker("/events", broker, authorize=may_follow)  # GET /events/<topic>
    app.add_stream("/clock", lambda request: ticks(), heartbeat=10)
    ```

    A mounted path behaves as `SSEWSGIApp` and Flask's `broker_view` do (405 with `Allow`, 400
    for a bad topic, 403 when `authorize` says no, 503 at a topic's cap, `Last-Event-ID`
    resume, HEAD, `compress=`); factories and hooks get an `SSERequest`, and factories must be
    sync.  Every other request reaches `app` untouched.  WSGI has no shutdown hook: call
    `middleware.registry.close_all()` from the server's (e.g. gunicorn's `worker_int`).
    """

    def _check_factory(self, factory: Factory[SSERequest]) -> None:
        """An `async def` factory cannot run under WSGI: refused when mounted."""
        refuse_async(factory, "SSEMiddleware (WSGI)")

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        found = self._mounts.match(wsgi_text(environ.get("PATH_INFO", "")))
        if found is None:
            return self.app(environ, start_response)
        answer = found.open(SSERequest.from_wsgi(environ))
        if isinstance(answer, Refuse):
            return refusal(start_response, answer)
        return respond(
            answer, environ, start_response, registry=self.registry, compress=found.compression
        )
