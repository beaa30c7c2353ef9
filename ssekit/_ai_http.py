"""What the HTTP model engines share: the constructor's checks and one streamed POST.

Each engine builds its request and turns the upstream's events into chunks; this part posts it,
parses the event stream with `EventParser` (bounded), turns upstream failures into the generic
`StreamError`s of `_ai_errors`, and closes the request however the stream ends.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import Any

from ssekit._ai_errors import MODEL_SERVICE, oversized_error, status_error, unreachable_error
from ssekit._errors import ParseLimitExceeded
from ssekit._parse import EventParser, MessageEvent

__all__ = ["HTTPEngine"]


class HTTPEngine:
    """A model API streamed over HTTP at `base_url` + `endpoint` (a subclass sets `endpoint`)."""

    #: The path after `base_url` that `stream()` posts to.
    endpoint = ""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        model: str,
        timeout: float,
        client: Any,
        expose_upstream_errors: bool,
        defaults: Mapping[str, Any],
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, not {base_url!r}.")
        self.url = base_url.rstrip("/") + self.endpoint
        self.api_key = api_key
        self.model = model
        self.timeout = timeout
        self.expose_upstream_errors = expose_upstream_errors
        self.defaults = dict(defaults)
        self._client = client

    async def _upstream_events(
        self, body: Mapping[str, Any], headers: Mapping[str, str]
    ) -> AsyncGenerator[MessageEvent, None]:
        """POST `body` and yield the upstream's events; use it under `contextlib.aclosing`."""
        import httpx

        expose = self.expose_upstream_errors
        owns_client = self._client is None
        client = self._client or httpx.AsyncClient(timeout=httpx.Timeout(self.timeout))
        try:
            async with client.stream("POST", self.url, json=body, headers=headers) as response:
                if response.status_code != 200:
                    text = (await response.aread()).decode("utf-8", "replace")
                    raise status_error(MODEL_SERVICE, response.status_code, text, expose=expose)
                parser = EventParser()
                async for data in response.aiter_bytes():
                    for message in parser.feed(data):
                        yield message
        except httpx.HTTPError as exc:
            raise unreachable_error(MODEL_SERVICE, exc, expose=expose) from exc
        except ParseLimitExceeded as exc:
            raise oversized_error(MODEL_SERVICE, exc) from exc
        finally:
            if owns_client:
                await client.aclose()
