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

import functools
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from flask import Flask, Response, current_app, request

from ssekit._registry import StreamRegistry
from ssekit._stream import Source, SSEStream
from ssekit.adapters._common import LAST_EVENT_ID_QUERY, SSE_HEADERS, make_stream
from ssekit.adapters.wsgi import StreamBody, warn_if_blocking_worker

__all__ = ["init_app", "last_event_id", "registry", "sse", "sse_response"]

_EXTENSION = "ssekit"
F = TypeVar("F", bound=Callable[..., Any])


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
    response = current_app.response_class(
        StreamBody(stream, registry()), status=status, headers=list(SSE_HEADERS)
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def sse(view: F | None = None, **options: Any) -> Any:
    """Turn a view that returns (or is) a source into a stream response: `@sse` or `@sse(...)`.

    A view that returns a `Response` (a redirect, an error) is passed through untouched.
    """

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = view(*args, **kwargs)
            if isinstance(result, Response):
                return result
            return sse_response(result, **options)

        return wrapper  # type: ignore[return-value]

    if view is not None:
        return decorate(view)
    return decorate
