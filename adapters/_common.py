"""What every adapter shares about a request: its text, `Last-Event-ID`, the `SSERequest` view."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from ssekit.adapters._core import SSE_HEADERS, warn_once  # the response side, importable here too

__all__ = [
    "LAST_EVENT_ID_QUERY",
    "SSE_HEADERS",
    "SSERequest",
    "asgi_last_event_id",
    "warn_once",
    "wsgi_last_event_id",
    "wsgi_text",
]

#: The query parameter read when a client cannot send the `Last-Event-ID` header.
LAST_EVENT_ID_QUERY = "lastEventId"


def _text(raw: bytes) -> str:
    """UTF-8, as browsers and ssekit's client send it; Latin-1 only for bytes that are not UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _raw(value: str) -> bytes:
    """The bytes behind a WSGI (PEP 3333: Latin-1-decoded) string."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:  # a server that decoded it already
        return value.encode("utf-8", "surrogatepass")


def wsgi_text(value: str) -> str:
    """A WSGI environ string (PEP 3333: bytes read as Latin-1) as the UTF-8 text it carries."""
    return _text(_raw(value))


def _resume_point(header: bytes | None, query_string: bytes) -> str | None:
    """The one rule: the `Last-Event-ID` header, else the last `lastEventId` query parameter."""
    if header is not None:
        return _text(header)
    query = dict(parse_qsl(query_string.decode("latin-1"), True, encoding="latin-1"))
    found = query.get(LAST_EVENT_ID_QUERY)  # the last one given: a dict keeps the last value
    return None if found is None else _text(found.encode("latin-1"))


def wsgi_last_event_id(environ: Mapping[str, Any]) -> str | None:
    """Where the client wants to resume, from a WSGI environ."""
    header = environ.get("HTTP_LAST_EVENT_ID")
    return _resume_point(
        None if header is None else _raw(header), _raw(environ.get("QUERY_STRING", ""))
    )


def asgi_last_event_id(scope: Mapping[str, Any]) -> str | None:
    """Where the client wants to resume, from an ASGI scope."""
    header = next((v for k, v in scope.get("headers", ()) if k.lower() == b"last-event-id"), None)
    return _resume_point(header, scope.get("query_string", b""))


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
        last_event_id: str | None = None,
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
        #: Where the client wants to resume (`Last-Event-ID`, else `lastEventId`), or None.
        self.last_event_id = last_event_id

    @classmethod
    def from_wsgi(cls, environ: Mapping[str, Any]) -> SSERequest:
        return cls(
            method=environ.get("REQUEST_METHOD", "GET").upper(),
            path=environ.get("PATH_INFO", "/"),
            headers={
                k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k[:5] == "HTTP_"
            },
            query=dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)),
            raw=environ,
            last_event_id=wsgi_last_event_id(environ),
        )

    @classmethod
    def from_asgi(cls, scope: Mapping[str, Any]) -> SSERequest:
        return cls(
            method=scope.get("method", "GET").upper(),
            path=scope.get("path", "/"),
            headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]},
            query=dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), True)),
            raw=scope,
            last_event_id=asgi_last_event_id(scope),
        )

    def __repr__(self) -> str:
        return f"SSERequest({self.method} {self.path}, last_event_id={self.last_event_id!r})"
