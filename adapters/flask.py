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

import _socket
import contextvars
import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any, overload

from flask import Flask, Request, Response, current_app, request

from ssekit._registry import StreamRegistry
from ssekit._stream import Source, SSEStream
from ssekit.adapters._common import LAST_EVENT_ID_QUERY, SSE_HEADERS, make_stream
from ssekit.adapters.wsgi import StreamBody, client_socket, warn_if_blocking_worker
from ssekit.broker import (
    UNAVAILABLE_RETRY_MS,
    Broker,
    BrokerUnavailable,
    SlowPolicy,
    TooManySubscribers,
)

__all__ = ["broker_view", "init_app", "last_event_id", "registry", "sse", "sse_response"]

_EXTENSION = "ssekit"


def init_app(app: Flask, registry: StreamRegistry | None = None) -> StreamRegistry:
    """Give `app` a registry of its open streams (see `StreamRegistry`) and return it."""
    registry = registry if registry is not None else StreamRegistry()
    app.extensions[_EXTENSION] = registry
    return registry


def registry() -> StreamRegistry | None:
    """The current app's registry, if `init_app()` gave it one."""
    found = current_app.extensions.get(_EXTENSION)
    return found if isinstance(found, StreamRegistry) else None


def last_event_id() -> str | None:
    """Where the client wants to resume: `Last-Event-ID`, else the `lastEventId` query parameter."""
    return request.headers.get("Last-Event-ID", request.args.get(LAST_EVENT_ID_QUERY))


class _ViewContextBody(StreamBody):
    """A stream body whose source starts in (a copy of) the view's context.

    Flask pops the request and app contexts as soon as the view returns, before the server reads
    the body, and a stream starts its source (copying the reading thread's context) only when
    it is first read: started in the view's context instead, the source sees `request`,
    `current_app`, `g` and `last_event_id()` as the view did.
    """

    def __init__(
        self,
        stream: SSEStream,
        registry: StreamRegistry | None,
        context: contextvars.Context,
        connection: _socket.socket | None,
    ) -> None:
        super().__init__(stream, registry, connection)
        self._context = context

    def __iter__(self) -> Iterator[bytes]:
        chunks = super().__iter__()
        try:
            first = self._context.run(next, chunks)  # the source starts in this first step
        except StopIteration:
            return
        yield first
        yield from chunks


def sse_response(
    source: Source | SSEStream,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    **options: Any,
) -> Response:
    """A streaming `Response` for `source`; keyword arguments are `to_sse()` options."""
    stream = make_stream(source, options)
    warn_if_blocking_worker(request.environ)
    connection = client_socket(request.environ)
    body = _ViewContextBody(stream, registry(), contextvars.copy_context(), connection)
    response = current_app.response_class(body, status=status, headers=list(SSE_HEADERS))
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


View = Callable[..., Any]


@overload
def sse(view: View, /) -> Callable[..., Response]: ...


@overload
def sse(view: None = None, /, **options: Any) -> Callable[[View], Callable[..., Response]]: ...


def sse(view: View | None = None, /, **options: Any) -> Any:
    """Turn a view that returns (or is) a source into a stream response: `@sse` or `@sse(...)`.

    A view that returns a `Response` (a redirect, an error) is passed through untouched.
    """

    def decorate(view: View) -> Callable[..., Response]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Response:
            result = view(*args, **kwargs)
            if isinstance(result, Response):
                return result
            return sse_response(result, **options)

        return wrapper

    if view is not None:
        return decorate(view)
    return decorate


def broker_view(
    broker: Broker,
    *,
    authorize: Callable[[Request, list[str]], bool] | None = None,
    policy: SlowPolicy = "disconnect",
    **options: Any,
) -> Callable[[str], Response]:
    """A view taking `topic` that streams `broker`'s events, resuming from `last_event_id()`.

    ```
    app.add_url_rule("/events/<path:topic>", view_func=broker_view(broker))
    ```

    `authorize(request, topics)` returning False gives 403; a topic at its subscriber cap, 503.
    """

    def view(topic: str) -> Response:
        if authorize is not None and not authorize(request, [topic]):
            return Response("Forbidden", status=403, mimetype="text/plain")
        try:
            subscription = broker.subscribe(topic, last_event_id(), policy=policy)
        except TooManySubscribers as exc:
            return Response(str(exc), status=503, mimetype="text/plain", headers=_RETRY_AFTER)
        except BrokerUnavailable:
            return sse_response([], retry=UNAVAILABLE_RETRY_MS, heartbeat=None)  # come back soon
        return sse_response(subscription, **options)

    view.__name__ = f"ssekit_broker_{id(broker):x}"
    return view


_RETRY_AFTER = {"Retry-After": "5"}
