"""Serve event streams from any PEP 3333 WSGI server, with no framework and no dependency.

`SSEWSGIApp(factory)` is a WSGI application: each request calls `factory(request)` for a source.
The body starts with the stream's preamble at once, so servers that send headers with the first
body block (all of them) let the browser fire `open` before a slow source yields.  When the
client leaves, the body notices before its next write (it peeks at the client's socket where the
server shares it; otherwise the write fails) and the server calls `close()`, which closes the
source: the heartbeat bounds how long that takes.
"""

from __future__ import annotations

import _socket
import logging
import socket
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from ssekit._registry import StreamRegistry
from ssekit._stream import SSEStream
from ssekit.adapters._common import SSE_HEADERS, Factory, SSERequest, allowed_methods, make_stream

__all__ = ["SSEWSGIApp", "StreamBody", "client_socket", "peer_closed", "warn_if_blocking_worker"]

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
    ) -> None:
        self.stream = stream
        self._registry = registry
        self._connection = connection
        if registry is not None:
            registry.add(stream)

    def __iter__(self) -> Iterator[bytes]:
        if self._connection is None:
            return iter(self.stream)
        return self._while_connected(iter(self.stream), self._connection)

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
            if self._registry is not None:
                self._registry.discard(self.stream)


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
    _warned.set()
    message = (
        "ssekit: gunicorn's sync worker is serving an event stream. It blocks the worker for the "
        "stream's whole life and kills it at the worker timeout. Run gunicorn with "
        "--worker-class gthread --threads N (or --worker-class gevent) instead."
    )
    logger.warning(message)
    warnings.warn(message, RuntimeWarning, stacklevel=2)


def _gevent_patched() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    is_patched = getattr(monkey, "is_module_patched", None)
    return bool(is_patched and is_patched("socket"))


def _plain(
    start_response: StartResponse, status: str, text: str, extra: Iterable[tuple[str, str]] = ()
) -> list[bytes]:
    body = text.encode()
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        *extra,
    ]
    start_response(status, headers)
    return [body]


class SSEWSGIApp:
    """A WSGI application that streams `factory(request)` to every request.

    ```
    app = SSEWSGIApp(lambda request: ticks(after=request.last_event_id), heartbeat=10)
    ```

    GET and HEAD are served (`methods=` adds others); an exception raised by the factory gives a
    500 response.  Streams are tracked in `registry` (one per app unless given), whose
    `close_all()` ends them at shutdown.  Other keyword arguments are `to_sse()` options.
    """

    def __init__(
        self,
        factory: Factory,
        *,
        methods: Iterable[str] = (),
        registry: StreamRegistry | None = None,
        **options: Any,
    ) -> None:
        self.factory = factory
        self.methods = allowed_methods(methods)
        self.registry = registry if registry is not None else StreamRegistry()
        self.options = options

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        request = SSERequest.from_wsgi(environ)
        if request.method not in self.methods:
            allow = ", ".join(sorted(self.methods))
            return _plain(
                start_response, "405 Method Not Allowed", "Method Not Allowed", [("Allow", allow)]
            )
        try:
            source = self.factory(request)
            stream = make_stream(source, self.options)  # type: ignore[arg-type]
        except Exception:
            logger.exception("ssekit: the stream's source could not be created")
            return _plain(start_response, "500 Internal Server Error", "Internal Server Error")
        start_response("200 OK", list(SSE_HEADERS))
        if request.method == "HEAD":
            stream.close()
            return []
        warn_if_blocking_worker(environ)
        return StreamBody(stream, self.registry, client_socket(environ))
