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
import weakref
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
    Encoding,
    admit,
    compression_policy,
    merge_headers,
    negotiate_encoding,
)

__all__ = ["DEFAULT_SEND_TIMEOUT", "SSEApp", "SSEMiddleware", "send_refusal", "serve_stream"]

logger = logging.getLogger("ssekit")

#: Seconds a stream may keep writing without letting the event loop run.  A server's `send()`
#: rarely suspends, and uvicorn learns that a client left (and then ignores sends) only when the
#: loop runs: a source that keeps up with the writes would otherwise hold the loop, and go on
#: producing for nobody, until it happened to fall behind.
MAX_BUSY_SECONDS = 0.005

_SSE_RAW_HEADERS = [(name.lower().encode(), value.encode()) for name, value in SSE_HEADERS]


def _registry_of(scope: Scope) -> StreamRegistry | None:
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
    # not `registry or ...`: an empty registry is falsy (it has __len__)
    tracked = _registry_of(scope) if registry is None else registry
    if scope.get("method") != "HEAD":
        refused = admit(tracked, stream)  # tracks it: forgotten once it ends, below
        if refused is not None:  # at the registry's max_streams: 503, at once
            await stream.aclose()
            await send_refusal(send, refused)
            return
    raw_headers, encoding = _response_head(scope, headers, compress)
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    del raw_headers  # this frame lives as long as the stream: it keeps no more than it needs
    if scope.get("method") == "HEAD":
        await stream.aclose()
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    body: AsyncBody = stream if encoding is None else encoding.abody(stream)
    # The stream is written by a task of its own, whose await chain is short (every event
    # resumes it), while this task, deep in the server's and framework's calls, waits for
    # `http.disconnect`: two tasks in all, and no third racing them with `asyncio.wait()`.
    watchdog = _SendWatchdog(stream, None, send_timeout, send)
    pump = asyncio.get_running_loop().create_task(_pump(stream, body, watchdog))
    watchdog.task = pump
    try:
        ended = await _watch_client(pump, receive, watchdog)
    finally:
        if tracked is not None:
            tracked.discard(stream)
    if ended:
        await _send_quietly(send, {"type": "http.response.body", "body": b"", "more_body": False})


def _response_head(
    scope: Scope, headers: Sequence[tuple[bytes, bytes]], compress: Compress
) -> tuple[list[tuple[bytes, bytes]], Encoding | None]:
    """The response's headers (ours, then the app's), and the coding chosen if compressing."""
    names = {name.lower() for name, _ in headers}
    raw_headers = [h for h in _SSE_RAW_HEADERS if h[0] not in names] + list(headers)
    policy = compression_policy(compress)
    if not policy.enabled:
        return raw_headers, None
    text_headers = _text_headers(raw_headers)
    encoding = negotiate_encoding(policy, _header(scope, b"accept-encoding"), text_headers)
    return _raw(merge_headers(text_headers, encoding.headers)), encoding


async def _watch_client(
    pump: asyncio.Task[bool], receive: Receive, watchdog: _SendWatchdog
) -> bool:
    """Wait for the client to leave while `pump` writes; return the pump's result once it ends.

    When the pump ends first (the stream ended), it cancels this wait for `http.disconnect`, a
    cancellation taken back here.  The wait is over before the response ends: a server may
    reuse the connection (keep-alive) then, and the next request's messages are not ours.
    """
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("serve_stream() runs in an asyncio task (as an ASGI server calls it).")
    watchdog.listener = task
    pump.add_done_callback(watchdog.pump_ended)
    try:
        while not pump.done():
            try:
                message = await receive()
            except asyncio.CancelledError:
                if watchdog.woke_listener and _take_back_cancel(task):
                    break
                raise
            except Exception:  # a failing receive() also means the client is gone
                message = {"type": "http.disconnect"}
            if message["type"] == "http.disconnect":
                watchdog.listener = None
                watchdog.client_left()
                break
    except BaseException:  # cancelled from outside (a server stopping): stop writing first
        watchdog.listener = None
        watchdog.interrupt()
        with contextlib.suppress(BaseException):
            await asyncio.wait((pump,))
        raise
    finally:
        watchdog.listener = None
    return await pump


def _take_back_cancel(task: asyncio.Task[Any]) -> bool:
    """Take back our own `cancel()` of `task`; False if someone else cancelled it too."""
    uncancel = getattr(task, "uncancel", None)  # Python 3.11+
    return uncancel is None or uncancel() == 0


class _SendWatchdog:
    """One stream's pump as others see it: the request task waiting for the client to leave,
    and the loop's send check.

    A client is dropped when one send has been stuck for `timeout` seconds (it stopped reading).
    The check is one timer per loop and timeout value, looking at the timestamps of every
    stream pumping there (`_SendChecks`), rather than a timer per stream.
    """

    __slots__ = (
        *("busy_until", "finished", "fired", "gone", "listener", "loop", "send"),
        *("sending_since", "stream", "task", "timeout", "woke_listener"),
    )

    def __init__(
        self, stream: SSEStream, task: asyncio.Task[Any] | None, timeout: float | None, send: Send
    ):
        self.stream = stream
        #: The task whose sends this watches (set once created, when the watchdog comes first).
        self.task = task
        self.timeout = timeout
        self.send = send
        self.loop = asyncio.get_running_loop()
        self.busy_until = 0.0
        #: When the send under way started, or None between sends.
        self.sending_since: float | None = None
        self.fired = False  # this cancelled the task, which must not leave `_pump`
        self.gone = False  # the client left
        self.finished = False  # the pump has returned
        #: The request task while it waits for `http.disconnect` (`_watch_client`).
        self.listener: asyncio.Task[Any] | None = None
        self.woke_listener = False  # the pump ended and cancelled that wait

    def pump_ended(self, _: object) -> None:
        """The pump's task is done: end the request task's wait for `http.disconnect`."""
        listener = self.listener
        if listener is not None:
            self.woke_listener = True
            listener.cancel()

    def client_left(self) -> None:
        """`http.disconnect` came (or `receive()` failed): stop the stream."""
        if self.finished or self.gone:
            return
        self.gone = True
        stop = getattr(self.stream, "_stop_from_elsewhere", None)
        if self.sending_since is not None or stop is None:
            self.interrupt()  # a send that may never return (or a stream that cannot be told)
        else:
            # Waiting, or between writes: the writer stops at its next poll and a parked wait
            # wakes; the pump then closes the source.
            stop()

    async def write(self, data: bytes, now: float | None = None) -> None:
        """Send one piece of the body; `_ClientGone` once the client has left.

        `now`: the loop's time of the stream's step that wrote it, when the driver knows it.
        """
        if self.gone:
            raise _ClientGone
        loop = self.loop
        if now is None:
            now = loop.time()
        self.sending_since = now
        await self.send({"type": "http.response.body", "body": data, "more_body": True})
        self.sending_since = None
        if now >= self.busy_until:
            # The busy budget runs from when the stream last let the loop run (it waited for
            # its source, or this yielded): a stream that keeps writing yields at last.
            rested = self.stream._rested_at
            if now - rested < MAX_BUSY_SECONDS:
                self.busy_until = rested + MAX_BUSY_SECONDS
            else:
                await asyncio.sleep(0)
                self.busy_until = loop.time() + MAX_BUSY_SECONDS

    def watch(self) -> None:
        """Have the loop's send check look at this stream's sends (with a send timeout)."""
        if self.timeout is not None:
            checks = _send_checks.get(self.loop)
            if checks is None:
                checks = _send_checks[self.loop] = _SendChecks()
            checks.add(self.loop, self)

    def unwatch(self) -> None:
        """The stream no longer sends: the loop's send check forgets it."""
        self.sending_since = None
        checks = _send_checks.get(self.loop)
        if checks is not None:
            checks.discard(self)

    def interrupt(self) -> None:
        """Cancel the pump's task; `_pump` takes that as "the client is gone", not further."""
        if not self.fired and not self.finished and self.task is not None:
            self.fired = self.gone = True
            self.task.cancel()


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


class _SendChecks:
    """Every pumping stream of one loop with a send timeout, checked by one timer per timeout."""

    __slots__ = ("armed", "streams")

    def __init__(self) -> None:
        self.streams: dict[float, set[_SendWatchdog]] = {}
        self.armed: set[float] = set()

    def add(self, loop: asyncio.AbstractEventLoop, watchdog: _SendWatchdog) -> None:
        timeout = watchdog.timeout
        assert timeout is not None
        self.streams.setdefault(timeout, set()).add(watchdog)
        if timeout not in self.armed:
            self.armed.add(timeout)
            loop.call_later(timeout / 4, self._check, loop, timeout)

    def discard(self, watchdog: _SendWatchdog) -> None:
        streams = None if watchdog.timeout is None else self.streams.get(watchdog.timeout)
        if streams is not None:
            streams.discard(watchdog)

    def _check(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        streams = self.streams.get(timeout)
        if not streams:  # nobody left: the next stream arms it again
            self.streams.pop(timeout, None)
            self.armed.discard(timeout)
            return
        now = loop.time()
        for watchdog in list(streams):
            since = watchdog.sending_since
            if since is not None and now - since >= timeout:
                logger.info("ssekit: a client stopped reading for %s s; dropping it", timeout)
                watchdog.interrupt()
        loop.call_later(timeout / 4, self._check, loop, timeout)


# A weak key: the checks never hold their loop (a pending timer does, from the loop's side).
_send_checks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _SendChecks] = (
    weakref.WeakKeyDictionary()
)


class _ClientGone(Exception):
    """Raised by a write once the client has left: it ends the stream's driver."""


async def _pump(stream: SSEStream, body: AsyncBody, watchdog: _SendWatchdog) -> bool:
    """Write the stream (as `body`, compressed or not); True if it ended by itself, False if the
    client went away."""
    watchdog.watch()
    write = watchdog.write
    try:
        drive = getattr(body, "_drive_async", None)  # the stream itself, uncompressed
        if drive is not None:
            await drive(write)  # no async generator between the stream's steps and the sends
        else:
            async for data in body:
                await write(data)
        return not watchdog.gone
    except (_ClientGone, OSError):  # OSError: a server that reports a gone client so
        return False
    except asyncio.CancelledError:
        if watchdog.fired and watchdog.task is not None and _take_back_cancel(watchdog.task):
            return False
        raise
    finally:
        watchdog.finished = True
        watchdog.unwatch()
        if body is not stream:
            await body.aclose()  # a compressed body closes the stream inside it
        await stream.aclose()


async def _send_quietly(send: Send, message: Message) -> None:
    with contextlib.suppress(OSError):
        await send(message)
