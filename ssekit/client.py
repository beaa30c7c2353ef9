"""`EventSource` and `AsyncEventSource`: spec-exact SSE clients over httpx, with reconnect.

```
from ssekit.client import EventSource

with EventSource("http://127.0.0.1:8000/events") as source:
    for message in source:                       # MessageEvent(type, data, last_event_id)
        print(message.type, message.json())
```

They behave as a browser's `EventSource` does: bytes go to `ssekit.EventParser` as they arrive;
after a dropped connection they wait the server's `retry:` delay (with jitter, backing off while
failures repeat, up to a cap) and reconnect with `Last-Event-ID`; HTTP 204 ends the stream for
good; any other status than 2xx, or a Content-Type other than `text/event-stream`, raises
`SSEResponseError`, because retrying would not help.  Needs the `client` extra (httpx).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
import socket
import threading
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping
from types import TracebackType
from typing import Any

import httpx

from ssekit._parse import EventParser, MessageEvent

__all__ = ["AsyncEventSource", "EventSource", "ReadyState", "SSEResponseError"]

#: The reconnection delay before the server sets one with `retry:` (ms), as browsers use.
DEFAULT_RETRY_MS = 3000
#: The longest wait between reconnection attempts while failures repeat (ms).
MAX_RETRY_MS = 30_000
_BODY_EXCERPT_BYTES = 512


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


class _Base:
    """State and rules the sync and async clients share."""

    def __init__(
        self,
        url: str,
        *,
        method: str,
        headers: Mapping[str, str] | None,
        params: Any,
        content: Any,
        json: Any,
        last_event_id: str,
        retry_ms: int,
        max_retry_ms: int,
        reconnect: bool,
        timeout: httpx.Timeout | float | None,
    ) -> None:
        self.url = url
        self.method = method
        self._headers = dict(headers or {})
        self._params = params
        self._content = content
        self._json = json
        self._parser = EventParser(last_event_id=last_event_id)
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

    def _request_headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache", **self._headers}
        if self._parser.last_event_id:
            headers["Last-Event-ID"] = self._parser.last_event_id
        return headers

    def _request_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"headers": self._request_headers(), "params": self._params}
        if self._content is not None:
            kwargs["content"] = self._content
        if self._json is not None:
            kwargs["json"] = self._json
        if self._timeout is not None:
            kwargs["timeout"] = self._timeout
        return kwargs

    def _check(self, response: httpx.Response, body: bytes) -> bool:
        """Apply the browser's rules to a response; False means "204: stop for good"."""
        if response.status_code == 204:
            return False
        content_type = response.headers.get("content-type", "")
        mime = content_type.split(";", 1)[0].strip().lower()
        if response.is_success and mime == "text/event-stream":
            return True
        excerpt = body[:_BODY_EXCERPT_BYTES].decode("utf-8", "replace")
        if not response.is_success:
            message = f"The server answered {response.status_code} to {self.url}: {excerpt!r}"
        else:
            message = (
                f"{self.url} answered with Content-Type {content_type!r}, not text/event-stream"
                f" (is it an event stream endpoint?): {excerpt!r}"
            )
        raise SSEResponseError(
            message, status_code=response.status_code, content_type=content_type, body=excerpt
        )

    def _opened(self, response: httpx.Response) -> None:
        self.ready_state = ReadyState.OPEN
        self._failures = 0
        stream = response.extensions.get("network_stream")
        found = stream.get_extra_info("socket") if stream is not None else None
        # a socket.socket, or asyncio's TransportSocket wrapper: both can be shut down
        self._socket = found if callable(getattr(found, "shutdown", None)) else None
        if self._closed.is_set():
            self._interrupt()

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


class EventSource(_Base):
    """A synchronous event source: iterate it for `MessageEvent`s, `close()` from anywhere.

    Pass `client=` to reuse an `httpx.Client` (its auth, headers, transport, limits); otherwise
    one is made with `**client_options` and closed with the source.
    """

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
        client: httpx.Client | None = None,
        **client_options: Any,
    ) -> None:
        super().__init__(
            url,
            method=method,
            headers=headers,
            params=params,
            content=content,
            json=json,
            last_event_id=last_event_id,
            retry_ms=retry_ms,
            max_retry_ms=max_retry_ms,
            reconnect=reconnect,
            timeout=timeout,
        )
        self._owns_client = client is None
        if client is None:
            client_options.setdefault("timeout", httpx.Timeout(10.0, read=None))
        self._client = client if client is not None else httpx.Client(**client_options)

    def __iter__(self) -> Iterator[MessageEvent]:
        try:
            while not self._closed.is_set():
                try:
                    if not (yield from self._one_connection()):
                        return
                except httpx.TransportError:
                    if self._closed.is_set():
                        return
                finally:
                    self._socket = None
                    self._parser.end_of_stream()
                if not self._reconnect or self._closed.wait(self._next_delay()):
                    return
                self.ready_state = ReadyState.CONNECTING
        finally:
            self.ready_state = ReadyState.CLOSED

    def _one_connection(self) -> Generator[MessageEvent, None, bool]:
        """Read one response to its end; False when it said not to reconnect (204)."""
        request = self._client.build_request(self.method, self.url, **self._request_kwargs())
        response = self._client.send(request, stream=True)
        try:
            body = b"" if response.is_success else response.read()
            if not self._check(response, body):
                return False
            self._opened(response)
            feed = self._parser.feed
            for chunk in response.iter_bytes():
                yield from feed(chunk)
            return True
        finally:
            response.close()

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


class AsyncEventSource(_Base):
    """The async twin of `EventSource`: `async for message in source`, `close()` from anywhere.

    Pass `client=` to reuse an `httpx.AsyncClient`.
    """

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
        client: httpx.AsyncClient | None = None,
        **client_options: Any,
    ) -> None:
        super().__init__(
            url,
            method=method,
            headers=headers,
            params=params,
            content=content,
            json=json,
            last_event_id=last_event_id,
            retry_ms=retry_ms,
            max_retry_ms=max_retry_ms,
            reconnect=reconnect,
            timeout=timeout,
        )
        self._owns_client = client is None
        if client is None:
            client_options.setdefault("timeout", httpx.Timeout(10.0, read=None))
        self._client = client if client is not None else httpx.AsyncClient(**client_options)

    async def __aiter__(self) -> AsyncIterator[MessageEvent]:
        loop = asyncio.get_running_loop()
        woken = asyncio.Event()
        self._wake_async = lambda: loop.call_soon_threadsafe(woken.set)
        try:
            while not self._closed.is_set():
                request = self._client.build_request(
                    self.method, self.url, **self._request_kwargs()
                )
                try:
                    response = await self._client.send(request, stream=True)
                    try:
                        body = b"" if response.is_success else await response.aread()
                        if not self._check(response, body):
                            return
                        self._opened(response)
                        feed = self._parser.feed
                        async for chunk in response.aiter_bytes():
                            for message in feed(chunk):
                                yield message
                    finally:
                        await response.aclose()
                except httpx.TransportError:
                    if self._closed.is_set():
                        return
                finally:
                    self._socket = None
                    self._parser.end_of_stream()
                if not self._reconnect or self._closed.is_set():
                    return
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(woken.wait(), self._next_delay())
                self.ready_state = ReadyState.CONNECTING
        finally:
            self.ready_state = ReadyState.CLOSED

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
