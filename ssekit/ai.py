"""Streaming from language models: the `Engine` protocol, the OpenAI-compatible and Anthropic
engines, an offline demo engine, the output formats, and `relay()` for re-serving any upstream
event stream.

```
engine = OpenAICompatibleEngine("https://api.example.com/v1", api_key=key, model="some-model")
return SSEResponse(engine.stream(messages), end="[DONE]")
```

An engine's `stream()` yields `Chunk`s such as `{"content": "Hel"}` (and reasoning, tool-call
fragments, the finish reason and the usage, each with `content` too), usable directly as a
`to_sse()` source, or through `ui_message_stream()` / `openai_chunk_stream()`.  When the client
leaves, `to_sse()` closes the stream, which closes the upstream HTTP response at once: the
upstream model stops generating (and billing) for nobody.
Needs the `client` extra (httpx) for the HTTP engines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, Protocol

from ssekit._ai_anthropic import ANTHROPIC_VERSION, AnthropicEngine
from ssekit._ai_chunks import (
    FINISH_REASONS,
    Chunk,
    OpenAIChunkReader,
    ToolCall,
    ToolCallAssembler,
    ToolCallDelta,
    Usage,
    openai_messages,
)
from ssekit._ai_errors import (
    MODEL_SERVICE,
    UPSTREAM_STREAM,
    oversized_error,
    redact_secrets,
    reported_error,
    status_error,
    unreachable_error,
)
from ssekit._ai_formats import UI_MESSAGE_STREAM_HEADERS, openai_chunk_stream, ui_message_stream
from ssekit._ai_http import HTTPEngine
from ssekit._errors import ParseLimitExceeded, StreamError
from ssekit._event import Event
from ssekit._parse import EventParser, MessageEvent

__all__ = [
    "ANTHROPIC_VERSION",
    "FINISH_REASONS",
    "UI_MESSAGE_STREAM_HEADERS",
    "AnthropicEngine",
    "Chunk",
    "DemoEngine",
    "Engine",
    "OpenAICompatibleEngine",
    "ToolCall",
    "ToolCallAssembler",
    "ToolCallDelta",
    "Usage",
    "openai_chunk_stream",
    "redact_secrets",
    "relay",
    "ui_message_stream",
]

#: One chat message: {"role": "user" | "assistant" | "system", "content": str}.
ChatMessage = Mapping[str, Any]


class Engine(Protocol):
    """Anything that streams a reply to chat messages as chunks with a `content` string
    (the built-in engines yield `Chunk`s)."""

    def stream(
        self, messages: Iterable[ChatMessage], **params: Any
    ) -> AsyncIterator[Mapping[str, Any]]: ...


class OpenAICompatibleEngine(HTTPEngine):
    """Streams chat completions from an OpenAI-compatible `/chat/completions` endpoint.

    `defaults` (temperature, max_tokens, ...) go into every request; `stream(messages, **params)`
    overrides them per call.  Upstream HTTP errors and `error` payloads become `StreamError`s
    with a generic message the client may see ("The model service answered 401."); the upstream's
    body, which can echo a key, goes to the `ssekit` logger with credentials redacted.
    `expose_upstream_errors=True` adds the upstream's (redacted) message to the client's text.
    Pass `client=` to reuse an `httpx.AsyncClient` bound to the event loop that will run the
    streams; by default each stream opens its own.
    """

    endpoint = "/chat/completions"

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        model: str = "gpt-4o-mini",
        timeout: float = 60.0,
        client: Any = None,
        expose_upstream_errors: bool = False,
        **defaults: Any,
    ) -> None:
        super().__init__(
            base_url,
            api_key,
            model=model,
            timeout=timeout,
            client=client,
            expose_upstream_errors=expose_upstream_errors,
            defaults=defaults,
        )

    async def stream(self, messages: Iterable[ChatMessage], **params: Any) -> AsyncIterator[Chunk]:
        body = {"model": self.model, **self.defaults, **params}
        body["messages"] = openai_messages(messages)
        body["stream"] = True
        # Ask for the final usage chunk (`stream_options=None` leaves it out, for servers that
        # refuse it).
        body.setdefault("stream_options", {"include_usage": True})
        if body["stream_options"] is None:
            del body["stream_options"]
        headers = {"Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        reader, expose = OpenAIChunkReader(), self.expose_upstream_errors
        async with contextlib.aclosing(self._upstream_events(body, headers)) as upstream:
            async for message in upstream:
                if message.data == "[DONE]":
                    return
                for chunk in _content_chunk(message, reader, expose=expose):
                    yield chunk


def _content_chunk(
    message: MessageEvent, reader: OpenAIChunkReader, *, expose: bool
) -> list[Chunk]:
    """The chunks of one upstream message (text, reasoning, tool calls, finish, usage)."""
    try:
        payload = json.loads(message.data)
    except ValueError:
        raise StreamError("The model service sent a message that is not JSON.") from None
    if not isinstance(payload, dict):
        return []
    error = payload.get("error")
    if error:
        shown = error.get("message") if isinstance(error, dict) else error
        raise reported_error(MODEL_SERVICE, message.data, shown, expose=expose)
    return reader.chunks(payload)


_TOKEN = re.compile(r"\s*\S+")


class DemoEngine:
    """An offline, deterministic engine: no network, no model files.

    It answers with a fixed kind of reply built from the last user message, one word-sized token
    every `delay` seconds, so demos and tests see a reply arrive token by token.
    """

    def __init__(self, *, delay: float = 0.05, reply: str | None = None) -> None:
        if delay < 0:
            raise ValueError(f"delay must be >= 0 seconds, not {delay!r}.")
        self.delay = delay
        self.reply = reply

    def answer(self, messages: Iterable[ChatMessage]) -> str:
        """The whole reply `stream()` would send for these messages."""
        if self.reply is not None:
            return self.reply
        history = list(messages)
        asked = next(
            (str(m.get("content", "")) for m in reversed(history) if m.get("role") == "user"), ""
        )
        turn = sum(1 for m in history if m.get("role") == "user")
        return (
            f"You said: “{asked.strip()}”. This reply comes from ssekit's offline demo engine, "
            f"streamed token by token over Server-Sent Events (turn {turn} of this chat). "
            "Set --base-url to stream from an OpenAI-compatible model instead."
        )

    async def stream(
        self, messages: Iterable[ChatMessage], **params: Any
    ) -> AsyncIterator[dict[str, Any]]:
        for token in _TOKEN.findall(self.answer(messages)):
            if self.delay:
                await asyncio.sleep(self.delay)
            yield {"content": token}


async def relay(
    url: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    client: Any = None,
    expose_upstream_errors: bool = False,
    **request: Any,
) -> AsyncIterator[Event]:
    """Re-serve an upstream event stream: the same event types, ids, data and `retry`.

    Yields `Event`s for `to_sse()`.  The upstream response is closed as soon as our consumer
    leaves.  An upstream status other than 200 becomes a `StreamError` with a generic message
    ("The upstream stream answered 401."); the upstream's body is logged with credentials
    redacted, and shown (redacted) only with `expose_upstream_errors=True`.
    """
    import httpx

    owns_client = client is None
    client = client or httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None))
    sent_headers = {"Accept": "text/event-stream", **(headers or {})}
    try:
        async with client.stream(method, url, headers=sent_headers, **request) as response:
            if response.status_code != 200:
                text = (await response.aread()).decode("utf-8", "replace")
                raise status_error(
                    UPSTREAM_STREAM, response.status_code, text, expose=expose_upstream_errors
                )
            parser = EventParser()
            last_id, retry = "", None
            async for data in response.aiter_bytes():
                for message in parser.feed(data):
                    if parser.retry != retry:
                        retry = parser.retry
                        yield Event(retry=retry)
                    new_id = message.last_event_id if message.last_event_id != last_id else None
                    last_id = message.last_event_id
                    kind = None if message.type == "message" else message.type
                    yield Event(message.data, event=kind, id=new_id)
                # A `retry:` or an `id:` in a block without data dispatches no event: pass it on.
                if parser.retry != retry:
                    retry = parser.retry
                    yield Event(retry=retry)
                if parser.last_event_id != last_id:
                    last_id = parser.last_event_id
                    yield Event(id=last_id)
    except httpx.HTTPError as exc:
        raise unreachable_error(UPSTREAM_STREAM, exc, expose=expose_upstream_errors) from exc
    except ParseLimitExceeded as exc:
        raise oversized_error(UPSTREAM_STREAM, exc) from exc
    finally:
        if owns_client:
            await client.aclose()
