"""`EventSource` and `AsyncEventSource`: spec-exact SSE clients over httpx, with reconnect.

```
from ssekit.client import EventSource

with EventSource("http://127.0.0.1:8000/events") as source:
    for message in source:                       # MessageEvent(type, data, last_event_id)
        print(message.type, message.json())
```

They behave as a browser's `EventSource` does: bytes go to `ssekit.EventParser` as they arrive;
redirects are followed; after a dropped connection they wait the server's `retry:` delay (with
jitter, backing off while failures repeat, up to a cap) and reconnect with `Last-Event-ID` (sent
as UTF-8); HTTP 204 ends the stream for good; any other status than 2xx, or a Content-Type other
than `text/event-stream`, raises `SSEResponseError` (with the start of the body), because
retrying would not help.  A line or an event's data longer than `max_line_size` /
`max_event_size` (8 MiB each by default, `None` for no limit) raises `ssekit.ParseLimitExceeded`
and closes the source: reconnecting would only fetch the same stream again.  Needs the `client`
extra (httpx).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from itertools import chain
from types import TracebackType
from typing import Any, Generic, TypeVar

import httpx

from ssekit._errors import ParseLimitExceeded
from ssekit._parse import DEFAULT_MAX_EVENT_SIZE, DEFAULT_MAX_LINE_SIZE, EventParser, MessageEvent

__all__ = ["AsyncEventSource", "EventSource", "ReadyState", "SSEResponseError"]

#: The reconnection delay before the server sets one with `retry:` (ms), as browsers use.
DEFAULT_RETRY_MS = 3000
#: The longest wait between reconnection attempts while failures repeat (ms).
MAX_RETRY_MS = 30_000
_BODY_EXCERPT_BYTES = 512
#: The most bytes handed to the parser at once.  The events of one feed all live until they
#: have been consumed; at most a few hundred of them (fewer than the 700 allocations after which
#: CPython's garbage collector runs) are freed before it ever looks at them, instead of being
#: promoted, thousands at a time, to older generations: that cost about a fifth of the client's
#: time on a stream of small events read in 64 KiB chunks (benchmarks/bench_client.py).
_FEED_BYTES = 4096
#: httpcore trace events whose `return_value` is the new connection's network stream.
_CONNECTED = frozenset(
    {"connection.connect_tcp.complete", "connection.connect_unix_socket.complete"}
)


class SSEResponseError(Exception):
    """The server answered, but not with an event stream: reconnecting would not help."""

    def __init__(self, message: str, *, status_code: int, content_type: str, body: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.content_type = content_type
        #: The start of the response body, for the error's reader.
        self.body = body


class ReadyState(enum.Enum):
    """Where an event source is, as in the browser's `readyState`."""

    CONNECTING = 0
    OPEN = 1
    CLOSED = 2


ClientT = TypeVar("ClientT", httpx.Client, httpx.AsyncClient)


class _Base(Generic[ClientT]):
    """State, options and rules the sync and async clients share."""

    #: The httpx client class made when none is passed in.
    _client_class: type[ClientT]

    def __init__(
        self,
        url: str,
        *,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        params: Any = None,
        content: Any = None,
        json: Any = None,
        last_event_id: str = "",
        retry_ms: int = DEFAULT_RETRY_MS,
        max_retry_ms: int = MAX_RETRY_MS,
        reconnect: bool = True,
        timeout: httpx.Timeout | float | None = None,
        max_line_size: int | None = DEFAULT_MAX_LINE_SIZE,
        max_event_size: int | None = DEFAULT_MAX_EVENT_SIZE,
        client: ClientT | None = None,
        **client_options: Any,
    ) -> None:
        # Made first: it checks the limits before a client is made.
        self._parser = EventParser(
            last_event_id=last_event_id, max_line_size=max_line_size, max_event_size=max_event_size
        )
        self._owns_client = client is None
        if client is None:
            client_options.setdefault("timeout", httpx.Timeout(10.0, read=None))
            client_options.setdefault("follow_redirects", True)  # as browsers do
            client = self._client_class(**client_options)
        self._client: ClientT = client
        self.url = url
        self.method = method
        self._headers = dict(headers or {})
        self._params = params
        self._content = content
        self._json = json
        self._default_retry_ms = retry_ms
        self._max_retry_ms = max_retry_ms
        self._reconnect = reconnect
        self._timeout = timeout
        self._failures = 0
        self._closed = threading.Event()
        self._socket: Any = None  # the connection's socket, to shut down from close()
        self._wake_async: Callable[[], object] | None = None  # wakes an async reconnect wait
        #: CONNECTING, OPEN or CLOSED.
        self.ready_state = ReadyState.CONNECTING

    @property
    def last_event_id(self) -> str:
        """The id sent as `Last-Event-ID` on the next reconnection."""
        return self._parser.last_event_id

    @property
    def retry_ms(self) -> int:
        """The current reconnection delay: the server's last `retry:`, else the default."""
        retry = self._parser.retry
        return self._default_retry_ms if retry is None else retry

    def _request_headers(self) -> dict[str, str | bytes]:
        headers: dict[str, str | bytes] = {
            "Accept": "text/event-stream",
            "Cache-Control": "no-cache",
            **self._headers,
        }
        # Sent encoded as UTF-8, as browsers do (httpx would refuse a non-ASCII str).  HTTP drops
        # the spaces and tabs around a header value (and h11 refuses to send them), so they go.
        last_event_id = self._parser.last_event_id.encode().strip(b" \t")
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        return headers

    def _request_kwargs(self, trace: Callable[..., Any]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "headers": self._request_headers(),
            "params": self._params,
            # Learn the socket as soon as it is connected, so that close() can also end a wait
            # for the response headers (a reused connection is only known with the response).
            "extensions": {"trace": trace},
        }
        if self._content is not None:
            kwargs["content"] = self._content
        if self._json is not None:
            kwargs["json"] = self._json
        if self._timeout is not None:
            kwargs["timeout"] = self._timeout
        return kwargs

    def _verdict(self, response: httpx.Response) -> bool | None:
        """Apply the browser's rules to a response: True to read it, False for "204: stop for
        good", None when it is to be rejected with `_error()`."""
        if response.status_code == 204:
            return False
        content_type = response.headers.get("content-type", "")
        mime = content_type.split(";", 1)[0].strip().lower()
        if response.is_success and mime == "text/event-stream":
            return True
        return None

    def _error(self, response: httpx.Response, body: bytes) -> SSEResponseError:
        """The error for a rejected response, with the start of its body."""
        content_type = response.headers.get("content-type", "")
        excerpt = body[:_BODY_EXCERPT_BYTES].decode("utf-8", "replace")
        if not response.is_success:
            message = f"The server answered {response.status_code} to {self.url}: {excerpt!r}"
        else:
            message = (
                f"{self.url} answered with Content-Type {content_type!r}, not text/event-stream"
                f" (is it an event stream endpoint?): {excerpt!r}"
            )
        return SSEResponseError(
            message, status_code=response.status_code, content_type=content_type, body=excerpt
        )

    def _opened(self, response: httpx.Response) -> None:
        self.ready_state = ReadyState.OPEN
        self._failures = 0
        self._use_stream(response.extensions.get("network_stream"))

    def _use_stream(self, stream: Any) -> None:
        """Remember the socket of the connection, to shut it down from `close()`."""
        found = stream.get_extra_info("socket") if stream is not None else None
        # a socket.socket, or asyncio's TransportSocket wrapper: both can be shut down
        self._socket = found if callable(getattr(found, "shutdown", None)) else None
        if self._closed.is_set():
            self._interrupt()

    def _traced(self, name: str, info: dict[str, Any]) -> None:
        """httpcore's trace: a new connection's socket is known once it is connected."""
        if name in _CONNECTED:
            self._use_stream(info.get("return_value"))

    def _next_delay(self) -> float:
        """Seconds to wait before reconnecting: `retry`, doubled per repeated failure, jittered."""
        base = self.retry_ms << min(self._failures, 10)
        capped = min(base, max(self._max_retry_ms, self.retry_ms))
        self._failures += 1
        return capped * random.uniform(0.8, 1.2) / 1000

    def _interrupt(self) -> None:
        """Wake a read blocked on the current connection: shut its socket down."""
        sock = self._socket
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Stop for good, from any thread or task: a blocked read returns, iteration ends."""
        self._closed.set()
        self.ready_state = ReadyState.CLOSED
        self._interrupt()
        if self._wake_async is not None:
            with contextlib.suppress(RuntimeError):  # its loop has already closed
                self._wake_async()


class EventSource(_Base[httpx.Client]):
    """A synchronous event source: iterate it for `MessageEvent`s, `close()` from anywhere.

    Pass `client=` to reuse an `httpx.Client` (its auth, headers, transport, limits); otherwise
    one is made with `**client_options` and closed with the source.  `max_line_size` and
    `max_event_size` are the parser's limits (characters; `None` for none): going over one raises
    `ssekit.ParseLimitExceeded` from the iteration and closes the source.
    """

    _client_class = httpx.Client

    def __iter__(self) -> Iterator[MessageEvent]:
        # The events come out of the parser's lists through C iterators: no generator frame of
        # ours to resume for each event, only for each piece of bytes read.
        return chain.from_iterable(self._batches())

    def _batches(self) -> Iterator[list[MessageEvent]]:
        """The events of each piece of bytes, as it arrives, across reconnections."""
        try:
            while not self._closed.is_set():
                try:
                    response = self._open()
                    if response is None:  # 204: stop for good
                        return
                    try:
                        yield from map(self._parser.feed, _pieces(response.iter_bytes()))
                    finally:
                        response.close()
                except ParseLimitExceeded:
                    self._closed.set()  # stop for good: a reconnection would read the same
                    raise
                except httpx.TransportError:
                    if self._closed.is_set():
                        return
                finally:
                    self._socket = None
                    self._parser.end_of_stream()
                if not self._reconnect or self._closed.is_set():
                    return
                self.ready_state = ReadyState.CONNECTING
                if self._closed.wait(self._next_delay()):
                    return
        finally:
            self.ready_state = ReadyState.CLOSED

    def _open(self) -> httpx.Response | None:
        """Send the request; return the event stream to read, or None for 204."""
        request = self._client.build_request(
            self.method, self.url, **self._request_kwargs(self._traced)
        )
        response = self._client.send(request, stream=True)
        try:
            verdict = self._verdict(response)
            if verdict is None:
                raise self._error(response, _read_excerpt(response))
        except BaseException:
            response.close()
            raise
        if not verdict:
            response.close()
            return None
        self._opened(response)
        return response

    def __enter__(self) -> EventSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        if self._owns_client:
            self._client.close()


class AsyncEventSource(_Base[httpx.AsyncClient]):
    """The async twin of `EventSource`: `async for message in source`, `close()` from anywhere.

    Pass `client=` to reuse an `httpx.AsyncClient`.
    """

    _client_class = httpx.AsyncClient

    async def __aiter__(self) -> AsyncIterator[MessageEvent]:
        loop = asyncio.get_running_loop()
        woken = asyncio.Event()
        self._wake_async = lambda: loop.call_soon_threadsafe(woken.set)
        try:
            while not self._closed.is_set():
                request = self._client.build_request(
                    self.method, self.url, **self._request_kwargs(self._atraced)
                )
                try:
                    response = await self._client.send(request, stream=True)
                    try:
                        verdict = self._verdict(response)
                        if verdict is None:
                            raise self._error(response, await _aread_excerpt(response))
                        if not verdict:
                            return
                        self._opened(response)
                        feed = self._parser.feed
                        async for chunk in response.aiter_bytes():
                            for piece in _pieces((chunk,)):
                                for message in feed(piece):
                                    yield message
                    finally:
                        await response.aclose()
                except ParseLimitExceeded:
                    self._closed.set()  # stop for good: a reconnection would read the same
                    raise
                except httpx.TransportError:
                    if self._closed.is_set():
                        return
                finally:
                    self._socket = None
                    self._parser.end_of_stream()
                if not self._reconnect or self._closed.is_set():
                    return
                self.ready_state = ReadyState.CONNECTING
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(woken.wait(), self._next_delay())
        finally:
            self.ready_state = ReadyState.CLOSED

    async def _atraced(self, name: str, info: dict[str, Any]) -> None:
        self._traced(name, info)

    async def aclose(self) -> None:
        """Stop for good and close the client if this source made it."""
        self.close()
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> AsyncEventSource:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _read_excerpt(response: httpx.Response) -> bytes:
    """The start of a rejected response's body, without waiting for the rest of it."""
    body = b""
    with contextlib.suppress(httpx.RequestError):  # what arrived before a failure will do
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) >= _BODY_EXCERPT_BYTES:
                break
    return body


async def _aread_excerpt(response: httpx.Response) -> bytes:
    """`_read_excerpt()` for the async client."""
    body = b""
    with contextlib.suppress(httpx.RequestError):
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) >= _BODY_EXCERPT_BYTES:
                break
    return body


def _pieces(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The chunks, the large ones cut in pieces of `_FEED_BYTES`."""
    for chunk in chunks:
        if len(chunk) <= _FEED_BYTES:
            yield chunk
        else:
            for start in range(0, len(chunk), _FEED_BYTES):
                yield chunk[start : start + _FEED_BYTES]
