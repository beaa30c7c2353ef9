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
from collections.abc import Sequence
from typing import Any

from ssekit._registry import STATE_KEY, StreamRegistry
from ssekit._stream import SSEStream
from ssekit.adapters._asgi_apps import SSEApp, SSEMiddleware
from ssekit.adapters._asgi_common import (
    DEFAULT_SEND_TIMEOUT,
    Message,
    Receive,
    Scope,
    Send,
    send_refusal,
)
from ssekit.adapters._core import (
    SSE_HEADERS,
    AsyncBody,
    Compress,
    admit,
    compression_policy,
    merge_headers,
    negotiate_encoding,
    track,
)

__all__ = ["DEFAULT_SEND_TIMEOUT", "SSEApp", "SSEMiddleware", "send_refusal", "serve_stream"]

logger = logging.getLogger("ssekit")

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
