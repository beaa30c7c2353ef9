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
from ssekit._stream import SSEStream
from ssekit.adapters._common import SSERequest, wsgi_text
from ssekit.adapters._core import (
    Authorize,
    AuthorizeTopics,
    BrokerEndpoint,
    Compress,
    Factory,
    Refuse,
    StreamEndpoint,
    refuse_async,
)
from ssekit.adapters._mount import Mounts
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
from ssekit.broker import Broker, SlowPolicy

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


class SSEMiddleware:
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

    def __init__(self, app: WSGIApp, *, registry: StreamRegistry | None = None) -> None:
        self.app = app
        self.registry = registry if registry is not None else StreamRegistry()
        self._mounts = Mounts()

    def add_stream(
        self,
        path: str,
        factory: Factory[SSERequest],
        *,
        methods: Iterable[str] = (),
        authorize: Authorize[SSERequest] | None = None,
        compress: Compress = False,
        **options: Unpack[StreamOptionsDict],
    ) -> SSEMiddleware:
        """Serve `factory(request)` at exactly `path`; options checked here."""
        refuse_async(factory, "SSEMiddleware (WSGI)")
        endpoint = StreamEndpoint(
            factory, methods=methods, authorize=authorize, compress=compress, options=options
        )
        self._mounts.add_stream(path, endpoint)
        return self

    def add_broker(
        self,
        prefix: str,
        broker: Broker,
        *,
        authorize: AuthorizeTopics[SSERequest] | None = None,
        policy: SlowPolicy = "disconnect",
        compress: Compress = False,
        **options: Unpack[StreamOptionsDict],
    ) -> SSEMiddleware:
        """Serve `broker`'s topic `<topic>` at `<prefix>/<topic>`, resuming from `Last-Event-ID`.

        `authorize(request, [topic])` (sync or async) returning False, or raising, gives 403.
        """
        endpoint = BrokerEndpoint[SSERequest](
            broker, authorize=authorize, policy=policy, compress=compress, options=options
        )
        self._mounts.add_broker(prefix, endpoint)
        return self

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        found = self._mounts.match(wsgi_text(environ.get("PATH_INFO", "")))
        if found is None:
            return self.app(environ, start_response)
        request = SSERequest.from_wsgi(environ)
        answer: SSEStream | Refuse
        if found.stream is not None:
            answer = found.stream.open(request, request.method)
            compression = found.stream.compression
        else:
            assert found.broker is not None
            compression = found.broker.compression
            if request.method not in ("GET", "HEAD"):
                answer = Refuse(405, "Method Not Allowed", (("Allow", "GET, HEAD"),))
            else:
                decision = found.broker.decide(request, found.topic, request.last_event_id)
                answer = found.broker.respond(decision)
        if isinstance(answer, Refuse):
            return refusal(start_response, answer)
        return respond(
            answer, environ, start_response, registry=self.registry, compress=compression
        )
