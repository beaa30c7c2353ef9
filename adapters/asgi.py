"""Serve event streams from any ASGI server (uvicorn, hypercorn, ...), with no framework.

`SSEApp(factory)` is an ASGI application: each request calls `factory(request)` for a source.
`SSEMiddleware(app)` wraps any other ASGI app and serves streams and broker topics under given
paths.  `serve_stream()` is the part every ASGI adapter shares: headers, compression, the body,
disconnects, a send timeout, and the application's `StreamRegistry`.  Runs on asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

from ssekit._registry import STATE_KEY, StreamRegistry
from ssekit._stream import SSEStream
from ssekit.adapters._common import SSE_HEADERS, SSERequest
from ssekit.adapters._core import (
    AsyncBody,
    Authorize,
    AuthorizeTopics,
    BrokerEndpoint,
    Compress,
    Factory,
    Refuse,
    StreamEndpoint,
    admit,
    compression_policy,
    merge_headers,
    negotiate_encoding,
    track,
)
from ssekit.adapters._mount import Mounts
from ssekit.broker import Broker, SlowPolicy

if TYPE_CHECKING:
    from ssekit.adapters._core import StreamOptionsDict, Unpack

__all__ = ["DEFAULT_SEND_TIMEOUT", "SSEApp", "SSEMiddleware", "send_refusal", "serve_stream"]

logger = logging.getLogger("ssekit")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Seconds one write may take before the client is deemed gone (it stopped reading).
DEFAULT_SEND_TIMEOUT = 60.0
#: Seconds a stream may keep writing without letting the event loop run.  A server's `send()`
#: rarely suspends, and uvicorn learns that a client left (and then ignores sends) only when the
#: loop runs: a source that keeps up with the writes would otherwise hold the loop, and go on
#: producing for nobody, until it happened to fall behind.
MAX_BUSY_SECONDS = 0.005

_SSE_RAW_HEADERS = [(name.lower().encode(), value.encode()) for name, value in SSE_HEADERS]


def registry_of(scope: Scope) -> StreamRegistry | None:
    """The registry a lifespan put in the app's state (see `StreamRegistry.lifespan`)."""
    state = scope.get("state")
    registry = state.get(STATE_KEY) if isinstance(state, dict) else None
    return registry if isinstance(registry, StreamRegistry) else None


async def serve_stream(
    stream: SSEStream,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    status: int = 200,
    headers: Sequence[tuple[bytes, bytes]] = (),
    send_timeout: float | None = DEFAULT_SEND_TIMEOUT,
    registry: StreamRegistry | None = None,
    compress: Compress = False,
) -> None:
    """Send `stream` as the response, until it ends or the client leaves; then close it.

    The client is gone when `http.disconnect` arrives, when a send fails, or when one send takes
    longer than `send_timeout` seconds (a client that stopped reading).  Either way the stream is
    closed, which closes its source.  With `compress=` (see `CompressionPolicy`) the coding is
    chosen from the request's `Accept-Encoding` and every write batch is compressed and flushed.
    """
    if scope.get("method") != "HEAD":
        # not `registry or ...`: an empty registry is falsy (it has __len__)
        refused = admit(registry_of(scope) if registry is None else registry, stream)
        if refused is not None:  # at the registry's max_streams: 503, at once
            await stream.aclose()
            await send_refusal(send, refused)
            return
    names = {name.lower() for name, _ in headers}
    raw_headers = [h for h in _SSE_RAW_HEADERS if h[0] not in names] + list(headers)
    policy = compression_policy(compress)
    encoding = None
    if policy.enabled:
        text_headers = _text_headers(raw_headers)
        encoding = negotiate_encoding(policy, _header(scope, b"accept-encoding"), text_headers)
        raw_headers = _raw(merge_headers(text_headers, encoding.headers))
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    if scope.get("method") == "HEAD":
        await stream.aclose()
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    body: AsyncBody = stream if encoding is None else encoding.abody(stream)
    # not `registry or ...`: an empty registry is falsy (it has __len__)
    untrack = track(registry_of(scope) if registry is None else registry, stream)
    loop = asyncio.get_running_loop()
    pump = loop.create_task(_pump(body, send, send_timeout))
    watcher = loop.create_task(_wait_for_disconnect(receive))
    try:
        await asyncio.wait((pump, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not pump.done():
            pump.cancel()  # the client left: the pump's stream.aclose() closes the source
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait((pump, watcher))
        untrack()
    if pump.done() and not pump.cancelled() and pump.exception() is None and pump.result():
        await _send_quietly(send, {"type": "http.response.body", "body": b"", "more_body": False})


class _SendWatchdog:
    """Cancels the pump when one send has been stuck for `timeout` seconds.

    One timer per stream, checking a timestamp, rather than a timer armed and cancelled around
    every write (which cost more than the write itself).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any], timeout: float):
        self.loop = loop
        self.task = task
        self.timeout = timeout
        #: When the send under way started, or None between sends.
        self.sending_since: float | None = None
        self.fired = False
        self._timer = loop.call_later(timeout / 4, self._check)

    def _check(self) -> None:
        since = self.sending_since
        if since is not None and self.loop.time() - since >= self.timeout:
            self.fired = True
            self.task.cancel()
            return
        self._timer = self.loop.call_later(self.timeout / 4, self._check)

    def stop(self) -> None:
        self._timer.cancel()


def _header(scope: Scope, name: bytes) -> str | None:
    """A request header's value (the last one), or None."""
    found = None
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            found = value
    return None if found is None else bytes(found).decode("latin-1")


def _text_headers(raw: Sequence[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in raw]


def _raw(headers: Sequence[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]


async def _pump(stream: AsyncBody, send: Send, send_timeout: float | None) -> bool:
    """Write the stream; True if it ended by itself, False if the client went away."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    watchdog = _SendWatchdog(loop, task, send_timeout) if send_timeout is not None else None
    busy_until = loop.time() + MAX_BUSY_SECONDS
    try:
        async for data in stream:
            if watchdog is not None:
                watchdog.sending_since = loop.time()
            try:
                await send({"type": "http.response.body", "body": data, "more_body": True})
            except OSError:
                return False  # a server that reports a vanished client by failing the send
            if watchdog is not None:
                watchdog.sending_since = None
            if loop.time() >= busy_until:
                await asyncio.sleep(0)
                busy_until = loop.time() + MAX_BUSY_SECONDS
        return True
    except asyncio.CancelledError:
        if watchdog is not None and watchdog.fired:
            logger.info("ssekit: a client stopped reading for %s s; dropping it", send_timeout)
            return False
        raise
    finally:
        if watchdog is not None:
            watchdog.stop()
        await stream.aclose()


async def _wait_for_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _send_quietly(send: Send, message: Message) -> None:
    with contextlib.suppress(OSError):
        await send(message)


async def send_refusal(send: Send, refused: Refuse) -> None:
    """Answer with the refusal's status and its short reason as plain text."""
    body = refused.reason.encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        *((name.lower().encode(), value.encode()) for name, value in refused.headers),
    ]
    await send({"type": "http.response.start", "status": refused.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class SSEApp:
    """An ASGI application that streams `factory(request)` to every request.

    ```
    app = SSEApp(lambda request: ticks(after=request.last_event_id), heartbeat=10)
    ```

    GET and HEAD are served (`methods=` adds others); `authorize(request)`, sync or async,
    returning False or raising gives 403.  When it is the top-level app it also handles the
    lifespan: the registry's signal handlers are chained while serving, so a server's shutdown
    first ends the streams with the registry's farewell.  Other keyword arguments are `to_sse()`
    options, checked here.
    """

    def __init__(
        self,
        factory: Factory[SSERequest],
        *,
        methods: Iterable[str] = (),
        registry: StreamRegistry | None = None,
        send_timeout: float | None = DEFAULT_SEND_TIMEOUT,
        authorize: Authorize[SSERequest] | None = None,
        compress: Compress = False,
        **options: Unpack[StreamOptionsDict],
    ) -> None:
        self.endpoint = StreamEndpoint(
            factory, methods=methods, authorize=authorize, compress=compress, options=options
        )
        self.registry = registry if registry is not None else StreamRegistry()
        self.send_timeout = send_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise ValueError(f"SSEApp serves HTTP, not {scope['type']!r}.")
        request = SSERequest.from_asgi(scope)
        stream = await self.endpoint.aopen(request, request.method)
        if isinstance(stream, Refuse):
            await send_refusal(send, stream)
            return
        await serve_stream(
            stream,
            scope,
            receive,
            send,
            send_timeout=self.send_timeout,
            registry=self.registry,
            compress=self.endpoint.compression,
        )

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await _registry_lifespan(self.registry, receive, send)


async def _registry_lifespan(registry: StreamRegistry, receive: Receive, send: Send) -> None:
    """A lifespan of its own: the registry's signal handlers while serving, streams ended after."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            registry.install_signal_handlers()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            registry.close_all()
            registry.restore_signal_handlers()
            await send({"type": "lifespan.shutdown.complete"})
            return


class SSEMiddleware:
    """Wraps any ASGI app and serves ssekit streams under given paths; the rest goes to `app`.

    ```
    app = SSEMiddleware(litestar_app)
    app.add_broker("/events", broker, authorize=may_follow)  # GET /events/<topic>
    app.add_stream("/clock", lambda request: ticks(), heartbeat=10)
    ```

    A mounted path behaves as `SSEApp` and Starlette's `broker_route` do (405 with `Allow`,
    400 for a bad topic, 403 when `authorize` says no, 503 at a topic's cap, `Last-Event-ID`
    resume, HEAD, `compress=`); factories and hooks get an `SSERequest`.  Every other request,
    websocket and lifespan messages included, reaches `app` untouched.  The lifespan is also
    where the middleware chains the registry's SIGINT/SIGTERM handlers (after `app`'s startup
    completes) and ends open streams (when the shutdown arrives, before `app` sees it); an app
    that refuses lifespan scopes gets them answered by the middleware instead.
    """

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        *,
        registry: StreamRegistry | None = None,
        send_timeout: float | None = DEFAULT_SEND_TIMEOUT,
    ) -> None:
        self.app = app
        self.registry = registry if registry is not None else StreamRegistry()
        self.send_timeout = send_timeout
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
        """Serve `factory(request)` (sync or async) at exactly `path`; options checked here."""
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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        found = self._mounts.match(scope.get("path", "")) if scope["type"] == "http" else None
        if found is None:
            await self.app(scope, receive, send)
            return
        request = SSERequest.from_asgi(scope)
        if found.stream is not None:
            answer = await found.stream.aopen(request, request.method)
            compression = found.stream.compression
        else:
            assert found.broker is not None
            answer = await self._broker(found.broker, request, found.topic)
            compression = found.broker.compression
        if isinstance(answer, Refuse):
            await send_refusal(send, answer)
            return
        await serve_stream(
            answer,
            scope,
            receive,
            send,
            send_timeout=self.send_timeout,
            registry=self.registry,
            compress=compression,
        )

    @staticmethod
    async def _broker(
        endpoint: BrokerEndpoint[SSERequest], request: SSERequest, topic: str
    ) -> SSEStream | Refuse:
        if request.method not in ("GET", "HEAD"):
            return Refuse(405, "Method Not Allowed", (("Allow", "GET, HEAD"),))
        decision = await endpoint.adecide(request, topic, request.last_event_id)
        return endpoint.respond(decision)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        received = False

        async def app_receive() -> Message:
            nonlocal received
            message = await receive()
            received = True
            if message["type"] == "lifespan.shutdown":
                self.registry.close_all()  # the streams end first, so the server can stop
            return message

        async def app_send(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                self.registry.install_signal_handlers()
            elif message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                self.registry.restore_signal_handlers()
            await send(message)

        try:
            await self.app(scope, app_receive, app_send)
        except Exception:
            if received:
                raise
            # The app takes no lifespan (Django's ASGI handler raises for it): answer it here.
            logger.debug("ssekit: the wrapped app refused the lifespan scope; handling it here")
            await _registry_lifespan(self.registry, receive, send)
