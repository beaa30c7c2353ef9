"""Serve event streams from Flask views.

```
from ssekit.adapters.flask import sse, sse_response, last_event_id

@app.get("/progress")
def progress():
    return sse_response(job_updates(after=last_event_id()), heartbeat=10)

@app.get("/ticks")
@sse(end="[DONE]")
def ticks():
    yield from range(10)
```

Sync and async sources both work under the werkzeug server and gunicorn's gthread and gevent
workers; the source runs in a thread (or on a helper loop) of its own, with the request context
copied to it.  Call `init_app(app)` to get a `StreamRegistry` that ends open streams at shutdown.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, overload

from flask import Flask, Request, Response, current_app, request

from ssekit._registry import StreamRegistry
from ssekit._stream import Source, SSEStream
from ssekit.adapters._common import SSE_HEADERS, wsgi_last_event_id
from ssekit.adapters._core import (
    FORBIDDEN,
    Authorize,
    AuthorizeTopics,
    BrokerEndpoint,
    Compress,
    Refuse,
    admit,
    allowed,
    checked_options,
    compression_policy,
    make_stream,
    merge_headers,
)
from ssekit.adapters._wsgi_body import encoding_of, open_body
from ssekit.broker import Broker, SlowPolicy

if TYPE_CHECKING:
    from ssekit.adapters._core import StreamOptionsDict, Unpack

__all__ = ["broker_view", "init_app", "last_event_id", "registry", "sse", "sse_response"]

_EXTENSION = "ssekit"


def init_app(
    app: Flask, registry: StreamRegistry | None = None, *, max_streams: int | None = None
) -> StreamRegistry:
    """Give `app` a registry of its open streams (see `StreamRegistry`) and return it.

    `max_streams` caps the streams open at once: beyond it a stream request gets 503 with
    `Retry-After` (give it to the `StreamRegistry` instead when you pass one).
    """
    if registry is not None and max_streams is not None:
        raise TypeError("Give max_streams to the StreamRegistry you pass to init_app(), not both.")
    registry = registry if registry is not None else StreamRegistry(max_streams=max_streams)
    app.extensions[_EXTENSION] = registry
    return registry


def registry() -> StreamRegistry | None:
    """The current app's registry, if `init_app()` gave it one."""
    found = current_app.extensions.get(_EXTENSION)
    return found if isinstance(found, StreamRegistry) else None


def last_event_id() -> str | None:
    """Where the client wants to resume: `Last-Event-ID`, else the `lastEventId` query parameter."""
    return wsgi_last_event_id(request.environ)


def sse_response(
    source: Source | SSEStream,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    compress: Compress = False,
    **options: Unpack[StreamOptionsDict],
) -> Response:
    """A streaming `Response` for `source`; keyword arguments are `to_sse()` options.

    `compress=True` (or a tuple of codings) compresses the stream when the request's
    `Accept-Encoding` allows, flushing every write batch; a `Vary` in `headers` is kept and
    joined with compression's.
    """
    policy = compression_policy(compress)
    stream = make_stream(source, options)
    refused = None if request.method == "HEAD" else admit(registry(), stream)
    if refused is not None:  # at the registry's max_streams: 503, at once
        stream.close()
        return _plain(refused)
    given = dict(headers or {})
    names = {name.lower() for name in given}
    base = [h for h in SSE_HEADERS if h[0].lower() not in names] + list(given.items())
    encoding = encoding_of(request.environ, policy, base)
    # Flask pops the request and app contexts before the server reads the body: the source
    # starts in a copy of the view's, and sees `request`, `g` and `last_event_id()` as it did.
    body = open_body(stream, request.environ, encoding, registry(), contextvars.copy_context())
    return current_app.response_class(
        body, status=status, headers=merge_headers(base, encoding.headers)
    )


View = Callable[..., Any]


@overload
def sse(view: View, /) -> Callable[..., Response]: ...


@overload
def sse(
    view: None = None,
    /,
    *,
    authorize: Authorize[Request] | None = None,
    compress: Compress = False,
    **options: Unpack[StreamOptionsDict],
) -> Callable[[View], Callable[..., Response]]: ...


def sse(
    view: View | None = None,
    /,
    *,
    authorize: Authorize[Request] | None = None,
    compress: Compress = False,
    **options: Unpack[StreamOptionsDict],
) -> Any:
    """Turn a view that returns (or is) a source into a stream response: `@sse` or `@sse(...)`.

    A view that returns a `Response` (a redirect, an error) is passed through untouched.
    `authorize(request)` (sync or async) returning False, or raising, gives 403 before the view
    runs.  Options (and `compress=`) are checked when the view is decorated.
    """
    checked_options(options)
    policy = compression_policy(compress)

    def decorate(view: View) -> Callable[..., Response]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Response:
            if not allowed(authorize, (request,)):
                return _plain(FORBIDDEN)
            result = view(*args, **kwargs)
            if isinstance(result, Response):
                return result
            return sse_response(result, compress=policy, **options)

        return wrapper

    if view is not None:
        return decorate(view)
    return decorate


def _plain(refused: Refuse) -> Response:
    return Response(refused.reason, refused.status, refused.headers, mimetype="text/plain")


def broker_view(
    broker: Broker,
    *,
    authorize: AuthorizeTopics[Request] | None = None,
    policy: SlowPolicy = "disconnect",
    compress: Compress = False,
    **options: Unpack[StreamOptionsDict],
) -> Callable[[str], Response]:
    """A view taking `topic` that streams `broker`'s events, resuming from `last_event_id()`.

    ```
    app.add_url_rule("/events/<path:topic>", view_func=broker_view(broker))
    ```

    `authorize(request, topics)` (sync or async) returning False, or raising, gives 403; an
    empty or too long topic, 400; a topic at its subscriber cap, 503.
    """
    endpoint = BrokerEndpoint[Request](
        broker, authorize=authorize, policy=policy, compress=compress, options=options
    )

    def view(topic: str) -> Response:
        answer = endpoint.respond(endpoint.decide(request, topic, last_event_id()))
        if isinstance(answer, Refuse):
            return _plain(answer)
        return sse_response(answer, compress=endpoint.compression)

    view.__name__ = f"ssekit_broker_{id(broker):x}"
    return view
