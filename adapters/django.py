"""Serve event streams from Django views, under WSGI (gunicorn, runserver) and ASGI (uvicorn).

```
from ssekit.adapters.django import broker_view, last_event_id, sse, sse_response

def progress(request):
    return sse_response(request, job_updates(after=last_event_id(request)), heartbeat=10)

@sse(end="[DONE]")
async def ticks(request):
    return count_to(10)

urlpatterns = [path("progress", progress), path("ticks", ticks),
               path("events/<path:topic>", broker_view(broker))]
```

The response is a `StreamingHttpResponse` whose body suits the request's server: a sync iterator
under WSGI (which notices a departed client before each write, as the WSGI adapter does), an
async one under ASGI (where Django cancels it on `http.disconnect`).  Sync and async sources work
under both.  Open streams are tracked in `registry()`; `get_asgi_application()` and
`get_wsgi_application()` chain its SIGINT/SIGTERM handlers so a shutdown ends them with its
farewell.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast, overload

from django.conf import settings
from django.core.handlers.asgi import ASGIHandler, ASGIRequest
from django.core.handlers.wsgi import WSGIHandler
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.middleware.gzip import GZipMiddleware as DjangoGZipMiddleware

from ssekit._registry import StreamRegistry
from ssekit._stream import Source, SSEStream
from ssekit.adapters._common import (
    SSE_HEADERS,
    asgi_last_event_id,
    warn_once,
    wsgi_last_event_id,
)
from ssekit.adapters._core import (
    FORBIDDEN,
    AsyncBody,
    Authorize,
    AuthorizeTopics,
    BrokerEndpoint,
    Compress,
    Refuse,
    aallowed,
    admit,
    allowed,
    allowed_methods,
    checked_options,
    compression_policy,
    make_stream,
    merge_headers,
    negotiate_encoding,
    track,
)
from ssekit.adapters._lifespan import registry_lifespan
from ssekit.adapters._wsgi_body import StreamBody, client_socket, warn_if_blocking_worker
from ssekit.adapters.asgi import DEFAULT_SEND_TIMEOUT, MAX_BUSY_SECONDS, _SendWatchdog
from ssekit.broker import Broker, SlowPolicy

if TYPE_CHECKING:
    from ssekit.adapters._core import StreamOptionsDict, Unpack

__all__ = [
    "GZipMiddleware",
    "broker_view",
    "get_asgi_application",
    "get_wsgi_application",
    "last_event_id",
    "registry",
    "sse",
    "sse_response",
]

logger = logging.getLogger("ssekit")

#: The setting that may hold the project's `StreamRegistry` (e.g. one with a farewell).
REGISTRY_SETTING = "SSEKIT_REGISTRY"
_CONTENT_TYPE = dict(SSE_HEADERS)["Content-Type"]
_default_registry: StreamRegistry | None = None


def registry() -> StreamRegistry:
    """The process's registry of open streams: `settings.SSEKIT_REGISTRY`, else a default one."""
    global _default_registry
    found = getattr(settings, REGISTRY_SETTING, None)
    if found is not None:
        if not isinstance(found, StreamRegistry):
            raise TypeError(f"settings.{REGISTRY_SETTING} must be a StreamRegistry.")
        return found
    if _default_registry is None:
        _default_registry = StreamRegistry()
    return _default_registry


def _is_asgi(request: HttpRequest) -> bool:
    """Whether an ASGI server serves `request` (else a WSGI one)."""
    return isinstance(request, ASGIRequest)


def last_event_id(request: HttpRequest) -> str | None:
    """Where the client wants to resume: `Last-Event-ID`, else the `lastEventId` query parameter."""
    if isinstance(request, ASGIRequest):
        return asgi_last_event_id(request.scope)
    return wsgi_last_event_id(request.META)


class _AsyncOnly:
    """The body as only an async iterable, so Django takes it as such (an `SSEStream` is both)."""

    __slots__ = ("body",)

    def __init__(self, body: AsyncBody) -> None:
        self.body = body

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.body.__aiter__()


_SET_STREAMING_CONTENT = vars(StreamingHttpResponse)["streaming_content"].fset


class _SSEStreamingResponse(StreamingHttpResponse):
    """A stream response that warns (once per process) when a middleware replaces its body."""

    @property
    def streaming_content(self) -> Any:
        return super().streaming_content

    @streaming_content.setter
    def streaming_content(self, value: Any) -> None:
        if hasattr(self, "_iterator"):
            _warn_replaced()
        _SET_STREAMING_CONTENT(self, value)


_warned_replaced = threading.Event()


def _warn_replaced() -> None:
    warn_once(
        _warned_replaced,
        "ssekit: a middleware replaced an event stream's body (Django's GZipMiddleware does): "
        "it may hold events back or make them unreadable. Use "
        "ssekit.adapters.django.GZipMiddleware instead, or leave the middleware out.",
        stacklevel=4,
    )


class GZipMiddleware(DjangoGZipMiddleware):
    """Django's `GZipMiddleware`, leaving event streams alone.

    Django's compresses every streamed response: under WSGI it holds the events back (no flush
    per chunk), under ASGI it makes each chunk a gzip member of its own, which browsers stop
    reading after the first.  Put this one in `MIDDLEWARE` in its place.
    """

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> Any:
        if response.get("Content-Type", "").startswith("text/event-stream"):
            return response
        return super().process_response(request, response)


class _ASGIStreamResponse(_SSEStreamingResponse):
    """A stream response for Django's ASGI handler: yields to the loop while busy, gives up on
    a stuck send, and closes the stream (so its source) however the iteration ends."""

    def __init__(
        self,
        stream: SSEStream,
        body: AsyncBody,
        send_timeout: float | None,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        super().__init__(_AsyncOnly(body), *args, **kwargs)
        self._stream = stream
        self._body = body
        self._send_timeout = send_timeout
        self._untrack = track(registry(), stream)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        timeout = self._send_timeout
        watchdog = None
        if timeout is not None and task is not None:  # Django sends; this only times the sends
            watchdog = _SendWatchdog(self._stream, task, timeout, _no_send)
            watchdog.watch()
        busy_until = loop.time() + MAX_BUSY_SECONDS
        try:
            parts = cast("AsyncGenerator[bytes, None]", super().__aiter__())
            async with contextlib.aclosing(parts):
                async for part in parts:
                    if watchdog is not None:
                        watchdog.sending_since = loop.time()
                    yield part  # Django sends it before asking for the next one
                    if watchdog is not None:
                        watchdog.sending_since = None
                    # uvicorn learns of a departed client only when the loop runs.
                    if loop.time() >= busy_until:
                        await asyncio.sleep(0)
                        busy_until = loop.time() + MAX_BUSY_SECONDS
        finally:
            if watchdog is not None:
                watchdog.unwatch()
            await self._body.aclose()  # a compressed body closes the stream inside it
            await self._stream.aclose()
            self._untrack()

    def close(self) -> None:
        try:
            self._stream.close()  # a stream never iterated (a started one closes in __aiter__)
        finally:
            self._untrack()
            super().close()


async def _no_send(message: Any) -> None:
    """The send of a watchdog that only times Django's own sends."""


def _head_body(request: HttpRequest) -> Iterable[bytes] | AsyncIterator[bytes]:
    async def nothing() -> AsyncIterator[bytes]:
        return
        yield  # pragma: no cover (makes it an async generator)

    return nothing() if _is_asgi(request) else []


def sse_response(
    request: HttpRequest,
    source: Source | SSEStream,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    send_timeout: float | None = DEFAULT_SEND_TIMEOUT,
    compress: Compress = False,
    **options: Unpack[StreamOptionsDict],
) -> StreamingHttpResponse | HttpResponse:
    """A `StreamingHttpResponse` streaming `source` to `request`'s client.

    Keyword arguments beyond these are `to_sse()` options.  A HEAD request gets the headers and
    the source is closed unread.  `send_timeout` (ASGI): seconds one write may take before the
    client is deemed gone.  `compress=True` (or a tuple of codings) compresses the stream when
    the request's `Accept-Encoding` allows, flushing every write batch.  Past the registry's
    `max_streams`, a 503 with `Retry-After`.
    """
    policy = compression_policy(compress)
    stream = make_stream(source, options)
    refused = None if request.method == "HEAD" else admit(registry(), stream)
    if refused is not None:
        stream.close()
        return _plain(refused)
    given = dict(headers or {})
    names = {name.lower() for name in given}
    base = [h for h in SSE_HEADERS if h[0].lower() not in names] + list(given.items())
    encoding = negotiate_encoding(policy, request.META.get("HTTP_ACCEPT_ENCODING"), base)
    response: StreamingHttpResponse
    if request.method == "HEAD":
        stream.close()
        response = StreamingHttpResponse(_head_body(request), status=status)
    elif _is_asgi(request):
        body = encoding.abody(stream)
        response = _ASGIStreamResponse(stream, body, send_timeout, status=status)
    else:
        warn_if_blocking_worker(request.META)
        chunks = StreamBody(stream, registry(), client_socket(request.META))
        response = _SSEStreamingResponse(encoding.body(chunks), status=status)
    for name, value in merge_headers(base, encoding.headers):
        response[name] = value
    return response


def _plain(refused: Refuse) -> HttpResponse:
    response = HttpResponse(
        refused.reason, status=refused.status, content_type="text/plain; charset=utf-8"
    )
    for name, value in refused.headers:
        response[name] = value
    return response


def _refuse_method(request: HttpRequest, methods: tuple[str, ...]) -> HttpResponse | None:
    if (request.method or "GET").upper() in methods:
        return None
    return _plain(Refuse(405, "Method Not Allowed", (("Allow", ", ".join(methods)),)))


View = Callable[..., Any]


@overload
def sse(view: View, /) -> View: ...


@overload
def sse(
    view: None = None,
    /,
    *,
    methods: Iterable[str] = (),
    authorize: Authorize[HttpRequest] | None = None,
    send_timeout: float | None = DEFAULT_SEND_TIMEOUT,
    compress: Compress = False,
    **options: Unpack[StreamOptionsDict],
) -> Callable[[View], View]: ...


def sse(
    view: View | None = None,
    /,
    *,
    methods: Iterable[str] = (),
    authorize: Authorize[HttpRequest] | None = None,
    send_timeout: float | None = DEFAULT_SEND_TIMEOUT,
    compress: Compress = False,
    **options: Unpack[StreamOptionsDict],
) -> Any:
    """Turn a view returning (or being) a source into a stream view: `@sse` or `@sse(...)`.

    The view may be sync or `async def` (or a sync or async generator).  GET and HEAD are
    served (`methods=` adds others; anything else is a 405 with `Allow`); `authorize(request)`
    (sync or async) returning False, or raising, gives 403 before the view runs.  A view that
    returns an `HttpResponse` (a redirect, an error) is passed through; one that raises gets
    Django's own 500.  Options are checked when the view is decorated.
    """
    checked_options(options)
    policy = compression_policy(compress)
    allowed_verbs = allowed_methods(methods)

    def respond(request: HttpRequest, result: Any) -> HttpResponseBase:
        if isinstance(result, HttpResponseBase):
            return result
        return sse_response(request, result, send_timeout=send_timeout, compress=policy, **options)

    def decorate(view: View) -> View:
        if inspect.iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                refused = _refuse_method(request, allowed_verbs)
                if refused is not None:
                    return refused
                if not await aallowed(authorize, (request,)):
                    return _plain(FORBIDDEN)
                return respond(request, await view(request, *args, **kwargs))

            return async_wrapper

        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            refused = _refuse_method(request, allowed_verbs)
            if refused is not None:
                return refused
            if not allowed(authorize, (request,)):
                return _plain(FORBIDDEN)
            return respond(request, view(request, *args, **kwargs))

        return wrapper

    if view is not None:
        return decorate(view)
    return decorate


def broker_view(
    broker: Broker,
    *,
    authorize: AuthorizeTopics[HttpRequest] | None = None,
    policy: SlowPolicy = "disconnect",
    compress: Compress = False,
    **options: Unpack[StreamOptionsDict],
) -> Callable[..., HttpResponseBase]:
    """A view taking `topic` that streams `broker`'s events, resuming from `last_event_id()`.

    ```
    path("events/<path:topic>", broker_view(broker))
    ```

    `authorize(request, topics)` (sync or async) returning False, or raising, gives 403; an
    empty or too long topic, 400; a topic at its subscriber cap, 503; a method other than GET
    or HEAD, 405.
    """
    endpoint = BrokerEndpoint[HttpRequest](
        broker, authorize=authorize, policy=policy, compress=compress, options=options
    )
    verbs = allowed_methods(())

    def view(request: HttpRequest, topic: str) -> HttpResponseBase:
        refused = _refuse_method(request, verbs)
        if refused is not None:
            return refused
        answer = endpoint.respond(endpoint.decide(request, topic, last_event_id(request)))
        if isinstance(answer, Refuse):
            return _plain(answer)
        return sse_response(request, answer, compress=endpoint.compression)

    view.__name__ = f"ssekit_broker_{id(broker):x}"
    return view


# -- serving: the registry's signal handlers ----------------------------------------------------


def get_wsgi_application() -> WSGIHandler:
    """Django's WSGI application, with `registry()`'s SIGINT/SIGTERM handlers chained.

    Load it in each worker after the server installed its own handlers (gunicorn without
    `--preload` does so), so a worker's shutdown first ends its streams with the farewell.
    """
    from django.core.wsgi import get_wsgi_application as django_wsgi_application

    application = django_wsgi_application()
    registry().install_signal_handlers()  # False (and nothing done) off the main thread
    return application


class _Lifespan:
    """Django's ASGI application plus a lifespan that chains `registry()`'s signal handlers."""

    def __init__(self, application: ASGIHandler) -> None:
        self.application = application

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.application(scope, receive, send)
            return
        await registry_lifespan(registry(), receive, send)


def get_asgi_application() -> Callable[..., Any]:
    """Django's ASGI application, with a lifespan that chains `registry()`'s signal handlers
    while the server serves, so SIGINT/SIGTERM first end open streams with the farewell."""
    from django.core.asgi import get_asgi_application as django_asgi_application

    return _Lifespan(django_asgi_application())
