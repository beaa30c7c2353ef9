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

from flask import Request, Response, current_app, request

from ssekit._stream import Source, SSEStream
from ssekit.adapters._common import wsgi_last_event_id
from ssekit.adapters._core import (
    FORBIDDEN,
    Authorize,
    AuthorizeTopics,
    BrokerEndpoint,
    Compress,
    Refuse,
    allowed,
    checked_options,
    compression_policy,
    make_stream,
)
from ssekit.adapters._flask_registry import init_app, registry
from ssekit.adapters._wsgi_body import admit_unless_head, open_body, response_headers
from ssekit.broker import Broker, SlowPolicy

if TYPE_CHECKING:
    from ssekit.adapters._core import StreamOptionsDict, Unpack

__all__ = ["broker_view", "init_app", "last_event_id", "registry", "sse", "sse_response"]


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
    refused = admit_unless_head(request.environ, registry(), stream)
    if refused is not None:  # at the registry's max_streams: 503, at once
        return _plain(refused)
    all_headers, encoding = response_headers(request.environ, policy, headers)
    # Flask pops the request and app contexts before the server reads the body: the source
    # starts in a copy of the view's, and sees `request`, `g` and `last_event_id()` as it did.
    body = open_body(stream, request.environ, encoding, registry(), contextvars.copy_context())
    return current_app.response_class(body, status=status, headers=all_headers)


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
