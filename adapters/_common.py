"""What every adapter shares: response headers, the request view a source factory gets, errors."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from ssekit._stream import Source, SSEStream, to_sse

__all__ = [
    "LAST_EVENT_ID_QUERY",
    "SSE_HEADERS",
    "Factory",
    "SSERequest",
    "allowed_methods",
    "make_stream",
]

logger = logging.getLogger("ssekit")

#: The response headers of every stream.  No Content-Length (the body is open-ended) and no
#: Connection header (HTTP/2 forbids it; servers manage keep-alive themselves).
SSE_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Type", "text/event-stream; charset=utf-8"),
    ("Cache-Control", "no-cache"),
    ("X-Accel-Buffering", "no"),
)

#: The query parameter read when a client cannot send the `Last-Event-ID` header.
LAST_EVENT_ID_QUERY = "lastEventId"


class SSERequest:
    """The parts of an HTTP request a source factory needs, the same under WSGI and ASGI."""

    __slots__ = ("headers", "last_event_id", "method", "path", "query", "raw")

    def __init__(
        self,
        *,
        method: str,
        path: str,
        headers: Mapping[str, str],
        query: Mapping[str, str],
        raw: Any,
    ) -> None:
        #: The HTTP method, upper case.
        self.method = method
        #: The request path, without the query string.
        self.path = path
        #: Request headers, names in lower case.
        self.headers = headers
        #: Query parameters (the last value of each name).
        self.query = query
        #: The WSGI environ or the ASGI scope, for anything else.
        self.raw = raw
        #: Where the client wants to resume: the `Last-Event-ID` header, else the `lastEventId`
        #: query parameter, else None.
        self.last_event_id = headers.get("last-event-id", query.get(LAST_EVENT_ID_QUERY))

    @classmethod
    def from_wsgi(cls, environ: Mapping[str, Any]) -> SSERequest:
        headers = {
            key[5:].replace("_", "-").lower(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        return cls(
            method=environ.get("REQUEST_METHOD", "GET").upper(),
            path=environ.get("PATH_INFO", "/"),
            headers=headers,
            query=dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)),
            raw=environ,
        )

    @classmethod
    def from_asgi(cls, scope: Mapping[str, Any]) -> SSERequest:
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope.get("headers", ())
        }
        query_string = scope.get("query_string", b"").decode("latin-1")
        return cls(
            method=scope.get("method", "GET").upper(),
            path=scope.get("path", "/"),
            headers=headers,
            query=dict(parse_qsl(query_string, keep_blank_values=True)),
            raw=scope,
        )

    def __repr__(self) -> str:
        return f"SSERequest({self.method} {self.path}, last_event_id={self.last_event_id!r})"


#: Builds the source (or a ready `SSEStream`) for one request; may be a coroutine function.
Factory = Callable[[SSERequest], "Source | SSEStream | Awaitable[Source | SSEStream]"]


def allowed_methods(methods: Iterable[str]) -> frozenset[str]:
    """GET and HEAD are always allowed; `methods` may add others (e.g. POST)."""
    extra = {method.upper() for method in methods}
    return frozenset({"GET", "HEAD"} | extra)


def make_stream(source: Source | SSEStream, options: Mapping[str, Any]) -> SSEStream:
    """Wrap a source in a stream with `options`, or take a ready stream as it is."""
    if isinstance(source, SSEStream):
        if options:
            raise TypeError(
                "Stream options were given both to the adapter and to to_sse(); give them once."
            )
        return source
    return to_sse(source, **options)


async def call_factory(factory: Factory, request: SSERequest) -> Source | SSEStream:
    """Call a sync or async factory."""
    result = factory(request)
    if inspect.isawaitable(result):
        result = await result
    return result
