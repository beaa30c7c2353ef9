"""`SSEResponse`: a Starlette `Response` that serves an event stream with `serve_stream()`.

Tracked in the registry the app's lifespan provides (or the one given), compressed when asked,
and closed (its source with it) when the client leaves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ssekit._registry import StreamRegistry
from ssekit._stream import Source, SSEStream
from ssekit.adapters._core import Compress, compression_policy, make_stream
from ssekit.adapters.asgi import DEFAULT_SEND_TIMEOUT, serve_stream

if TYPE_CHECKING:
    from ssekit.adapters._core import StreamOptionsDict, Unpack

__all__ = ["SSEResponse"]


class SSEResponse(Response):
    """A `text/event-stream` response for a source (any chunk iterable) or an `SSEStream`.

    Keyword arguments beyond Starlette's are `to_sse()` options (checked here), plus
    `send_timeout` (seconds one write may take before the client is deemed gone), `registry`
    (defaults to the one the app's lifespan provides) and `compress` (True or a tuple of codings:
    compressed when the request's `Accept-Encoding` allows, every write batch flushed).
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        content: Source | SSEStream,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
        *,
        send_timeout: float | None = DEFAULT_SEND_TIMEOUT,
        registry: StreamRegistry | None = None,
        compress: Compress = False,
        **options: Unpack[StreamOptionsDict],
    ) -> None:
        self.compression = compression_policy(compress)
        self.stream = make_stream(content, options)
        self.status_code = status_code
        self.media_type = self.media_type if media_type is None else media_type
        self.background = background
        self.send_timeout = send_timeout
        self.registry = registry
        self.init_headers(headers)
        self.headers.setdefault("cache-control", "no-cache")
        self.headers.setdefault("x-accel-buffering", "no")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await serve_stream(
            self.stream,
            scope,
            receive,
            send,
            status=self.status_code,
            headers=self.raw_headers,
            send_timeout=self.send_timeout,
            registry=self.registry,
            compress=self.compression,
        )
        if self.background is not None:
            await self.background()
