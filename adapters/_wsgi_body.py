"""The body of a WSGI stream response, shared by the raw WSGI and the Flask adapters.

It iterates the stream, checks that the client is still there before each write where the
server shares the client's socket, and closes the stream (and so its source) when the server
calls `close()`; with compression on, it is wrapped once more, in a body that compresses and
flushes each write batch.  Also here: what every WSGI stream response decides first (admission
to the registry, headers, coding), a whole stream response (`respond`), a refusal as a
plain-text response, and the warning for gunicorn's sync worker.
"""

from __future__ import annotations

import _socket
import contextlib
import contextvars
import logging
import socket
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from http import HTTPStatus
from typing import Any

from ssekit._registry import StreamRegistry
from ssekit._stream import SSEStream
from ssekit.adapters._core import (
    Compress,
    Encoding,
    Refuse,
    admit,
    compression_policy,
    merge_headers,
    negotiate_encoding,
    stream_headers,
    track,
    warn_once,
)

__all__ = [
    "Environ",
    "StartResponse",
    "StreamBody",
    "admit_unless_head",
    "client_socket",
    "encoding_of",
    "open_body",
    "peer_closed",
    "refusal",
    "respond",
    "response_headers",
    "warn_if_blocking_worker",
]

logger = logging.getLogger("ssekit")

StartResponse = Callable[..., Any]
Environ = Mapping[str, Any]


def client_socket(environ: Environ) -> _socket.socket | None:
    """The connection's socket, where the server shares it (werkzeug, gunicorn)."""
    found = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
    found = getattr(found, "_sock", found)  # gevent's socket wraps the real one
    # The C socket type: under the stdlib's socket class, and under gevent's (whose patching
    # replaces socket.socket and _socket.socket, but not this).
    return found if isinstance(found, _socket.socket) else None


def peer_closed(connection: _socket.socket) -> bool:
    """True when the client has closed its end: the socket reads as end-of-file.

    A peek that never blocks; pending request bytes (a pipelined request) are not an EOF.
    """
    if _PEEK_FLAGS is None:
        return False
    try:
        return connection.recv(1, _PEEK_FLAGS) == b""
    except (BlockingIOError, InterruptedError):
        return False  # nothing to read: the client is still there
    except (OSError, ValueError):
        return False  # e.g. a TLS socket, which cannot peek: leave it to the next write


_DONTWAIT = getattr(socket, "MSG_DONTWAIT", None)
_PEEK_FLAGS = None if _DONTWAIT is None else socket.MSG_PEEK | _DONTWAIT


class StreamBody:
    """A WSGI response body: iterates the stream; `close()` closes it and untracks it.

    Given the client's socket, it checks before each write that the client is still there.
    A server learns that a client left only when a write fails, and the first write after the
    client left often succeeds (into the kernel's buffer), so without the check a stream could
    run for two heartbeats for nobody.
    """

    def __init__(
        self,
        stream: SSEStream,
        registry: StreamRegistry | None,
        connection: _socket.socket | None = None,
        context: contextvars.Context | None = None,
    ) -> None:
        self.stream = stream
        self._connection = connection
        #: Where the source starts (e.g. a copy of a Flask view's context, which Flask pops
        #: before the server reads the body); None: the reading thread's.
        self._context = context
        self._registry = registry
        self._untrack = track(registry, stream)

    def __iter__(self) -> Iterator[bytes]:
        chunks = iter(self.stream)
        if self._connection is not None:
            chunks = self._while_connected(chunks, self._connection)
        if self._context is None:
            return chunks
        return self._first_in_context(chunks, self._context)

    @staticmethod
    def _first_in_context(chunks: Iterator[bytes], context: contextvars.Context) -> Iterator[bytes]:
        try:
            first = context.run(next, chunks)  # the source starts in this first step
        except StopIteration:
            return
        yield first
        yield from chunks

    @staticmethod
    def _while_connected(chunks: Iterator[bytes], connection: _socket.socket) -> Iterator[bytes]:
        for chunk in chunks:
            if peer_closed(connection):
                return  # the server then calls close(), which closes the source
            yield chunk

    def close(self) -> None:
        try:
            self.stream.close()
        finally:
            self._untrack()
            registry, connection = self._registry, self._connection
            if connection is not None and registry is not None and registry.closing:
                _end_connection(connection)


def _end_connection(connection: _socket.socket) -> None:
    """End a kept-alive connection once a shutdown's farewell has been sent in full.

    The server closes `close()`-d responses' connections only if it was asked to before the
    response began; a stopping worker would otherwise wait for the idle connection (gunicorn: up
    to its keep-alive timeout) before it exits.  The server has written the whole response (its
    last chunk included) before it calls `close()`; its next read sees the end and it closes.
    """
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)


_warned = threading.Event()


def warn_if_blocking_worker(environ: Environ) -> None:
    """Warn once per process when gunicorn's sync worker serves a stream.

    That worker serves one request at a time and is killed at its timeout (30 s by default), so
    a stream blocks the worker and then dies.  Use `--worker-class gthread` (with `--threads`)
    or `gevent`.
    """
    if _warned.is_set() or not str(environ.get("SERVER_SOFTWARE", "")).startswith("gunicorn"):
        return
    if environ.get("wsgi.multithread") or _gevent_patched():
        return
    warn_once(
        _warned,
        "ssekit: gunicorn's sync worker is serving an event stream. It blocks the worker for the "
        "stream's whole life and kills it at the worker timeout. Run gunicorn with "
        "--worker-class gthread --threads N (or --worker-class gevent) instead.",
    )


def _gevent_patched() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    is_patched = getattr(monkey, "is_module_patched", None)
    return bool(is_patched and is_patched("socket"))


def refusal(start_response: StartResponse, refused: Refuse) -> list[bytes]:
    """Answer with the refusal's status and its short reason as plain text."""
    body = refused.reason.encode()
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        *refused.headers,
    ]
    start_response(f"{refused.status} {HTTPStatus(refused.status).phrase}", headers)
    return [body]


def encoding_of(
    environ: Environ, compress: Compress, headers: Iterable[tuple[str, str]] = ()
) -> Encoding:
    """The coding for this request's `Accept-Encoding` under `compress=` (see `Encoding`)."""
    return negotiate_encoding(
        compression_policy(compress), environ.get("HTTP_ACCEPT_ENCODING"), headers
    )


def response_headers(
    environ: Environ, compress: Compress, given: Mapping[str, str] | None = None
) -> tuple[list[tuple[str, str]], Encoding]:
    """A stream response's headers (the app's `given` ones win) and the coding they announce."""
    headers = stream_headers(given)
    encoding = encoding_of(environ, compress, headers)
    return merge_headers(headers, encoding.headers), encoding


def admit_unless_head(
    environ: Environ, registry: StreamRegistry | None, stream: SSEStream
) -> Refuse | None:
    """Track `stream` (a HEAD request's never starts); past `max_streams`, close it, and a 503."""
    if _is_head(environ):
        return None
    refused = admit(registry, stream)
    if refused is not None:
        stream.close()
    return refused


def _is_head(environ: Environ) -> bool:
    return str(environ.get("REQUEST_METHOD", "GET")).upper() == "HEAD"


def open_body(
    stream: SSEStream,
    environ: Environ,
    encoding: Encoding,
    registry: StreamRegistry | None,
    context: contextvars.Context | None = None,
) -> Iterable[bytes]:
    """The body of a stream response: a `StreamBody`, compressed as `encoding` says.

    Its `close()` closes the stream (a compressed body closes the `StreamBody` inside it).
    """
    warn_if_blocking_worker(environ)
    return encoding.body(StreamBody(stream, registry, client_socket(environ), context))


def respond(
    stream: SSEStream,
    environ: Environ,
    start_response: StartResponse,
    *,
    registry: StreamRegistry | None,
    compress: Compress = False,
) -> Iterable[bytes]:
    """Start a `200` stream response and return its body (none for HEAD: same headers).

    Past the registry's `max_streams`, a 503 with `Retry-After` instead, at once.
    """
    refused = admit_unless_head(environ, registry, stream)
    if refused is not None:
        return refusal(start_response, refused)
    headers, encoding = response_headers(environ, compress)
    start_response("200 OK", headers)
    if _is_head(environ):
        stream.close()
        return []
    return open_body(stream, environ, encoding, registry)
