"""Streaming from language models: the `Engine` protocol, an OpenAI-compatible engine, an offline
demo engine, and `relay()` for re-serving any upstream event stream.

```
engine = OpenAICompatibleEngine("https://api.example.com/v1", api_key=key, model="some-model")
return SSEResponse(engine.stream(messages), end="[DONE]")
```

An engine's `stream()` yields chunks such as `{"content": "Hel"}`, usable directly as a `to_sse()`
source.  When the client leaves, `to_sse()` closes the stream, which closes the upstream HTTP
response at once: the upstream model stops generating (and billing) for nobody.
Needs the `client` extra (httpx) for the HTTP engines.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, Protocol

from ssekit._errors import StreamError
from ssekit._event import Event
from ssekit._parse import EventParser, MessageEvent

__all__ = ["DemoEngine", "Engine", "OpenAICompatibleEngine", "redact_secrets", "relay"]

#: One chat message: {"role": "user" | "assistant" | "system", "content": str}.
ChatMessage = Mapping[str, Any]


class Engine(Protocol):
    """Anything that streams a reply to chat messages as chunks with a `content` string."""

    def stream(
        self, messages: Iterable[ChatMessage], **params: Any
    ) -> AsyncIterator[dict[str, Any]]: ...


#: Words that, followed by `:` or `=` (or a space and a long token), introduce a secret.
_SECRET_NAMES = (
    r"x-api-key|api[-_ ]?key|access[-_ ]?token|auth[-_ ]?token|refresh[-_ ]?token|"
    r"client[-_ ]?secret|secret[-_ ]?key|secret|password|passwd|token|key"
)
_SECRET_PATTERNS = [
    # "Bearer <token>", "Basic <credentials>" (an Authorization header echoed back).
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=\-]+", re.IGNORECASE), r"\1 [REDACTED]"),
    # api_key=..., "api-key": "...", x-api-key: ..., password=..., token: ...
    (
        re.compile(rf"\b({_SECRET_NAMES})([\"']?\s*[:=]\s*[\"']?)[^\s\"'&,;<>}}]+", re.IGNORECASE),
        r"\1\2[REDACTED]",
    ),
    # "key 3f2a...": a long hex or base64 token right after a key-ish word.
    (
        re.compile(rf"\b({_SECRET_NAMES})(\W{{1,3}})[A-Za-z0-9+/_\-]{{16,}}=*", re.IGNORECASE),
        r"\1\2[REDACTED]",
    ),
    # "sk-live-...", "sk-proj-...", "sk-ant-...": OpenAI/Anthropic-style keys anywhere.
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{4,}"), "sk-[REDACTED]"),
]
#: How much of an upstream error body is logged.
_LOGGED_BODY_LIMIT = 2000

logger = logging.getLogger("ssekit")
#: How the client's error messages name the upstream: "The model service answered 401."
_MODEL_SERVICE = "model service"
_UPSTREAM_STREAM = "upstream stream"


def redact_secrets(text: str) -> str:
    """`text` with anything that looks like a credential replaced by `[REDACTED]`.

    Covers `sk-...` keys, `Bearer ...`, `api_key=...` / `"api-key": "..."` / `x-api-key: ...`
    and other key-ish names (token, secret, password) followed by a value.  Used before an
    upstream's error body is logged or, when asked, shown.  A best effort, not a guarantee.
    """
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _excerpt(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "..."


def _upstream_detail(body: str) -> str:
    """The upstream's own error message (`error.message`), else an excerpt of its body."""
    try:
        payload = json.loads(body)
        message = payload.get("error", {}).get("message") or payload.get("message")
    except (ValueError, AttributeError):
        message = None
    return _excerpt(str(message) if message else body, 300) or "no details"


def _upstream_status_error(service: str, status: int, body: str, *, expose: bool) -> StreamError:
    """The `StreamError` for an upstream that answered `status`; its body is logged, redacted."""
    logger.warning(
        "ssekit: %s answered %d: %s",
        service,
        status,
        redact_secrets(_excerpt(body, _LOGGED_BODY_LIMIT)) or "(empty body)",
    )
    generic = f"The {service} answered {status}."
    if not expose:
        return StreamError(generic)
    return StreamError(f"The {service} answered {status}: {redact_secrets(_upstream_detail(body))}")


def _unreachable_error(service: str, exc: Exception, *, expose: bool) -> StreamError:
    """The `StreamError` for an upstream that could not be reached or read; the cause is logged."""
    detail = redact_secrets(f"{type(exc).__name__}: {exc}")
    logger.warning("ssekit: the %s could not be reached or read: %s", service, detail)
    if not expose:
        return StreamError(f"The {service} could not be reached.")
    return StreamError(f"The {service} could not be reached: {detail}")


class OpenAICompatibleEngine:
    """Streams chat completions from an OpenAI-compatible `/chat/completions` endpoint.

    `defaults` (temperature, max_tokens, ...) go into every request; `stream(messages, **params)`
    overrides them per call.  Upstream HTTP errors and `error` payloads become `StreamError`s
    with a generic message the client may see ("The model service answered 401."); the upstream's
    body, which can echo a key, goes to the `ssekit` logger with credentials redacted.
    `expose_upstream_errors=True` adds the upstream's (redacted) message to the client's text.
    Pass `client=` to reuse an `httpx.AsyncClient` bound to the event loop that will run the
    streams; by default each stream opens its own.
    """

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
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, not {base_url!r}.")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.api_key = api_key
        self.model = model
        self.timeout = timeout
        self.defaults = defaults
        self.expose_upstream_errors = expose_upstream_errors
        self._client = client

    async def stream(
        self, messages: Iterable[ChatMessage], **params: Any
    ) -> AsyncIterator[dict[str, Any]]:
        import httpx

        body = {"model": self.model, **self.defaults, **params}
        body["messages"] = [dict(message) for message in messages]
        body["stream"] = True
        headers = {"Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        owns_client = self._client is None
        client = self._client or httpx.AsyncClient(timeout=httpx.Timeout(self.timeout))
        expose = self.expose_upstream_errors
        try:
            async with client.stream("POST", self.url, json=body, headers=headers) as response:
                if response.status_code != 200:
                    text = (await response.aread()).decode("utf-8", "replace")
                    raise _upstream_status_error(
                        _MODEL_SERVICE, response.status_code, text, expose=expose
                    )
                parser = EventParser()
                async for data in response.aiter_bytes():
                    for message in parser.feed(data):
                        if message.data == "[DONE]":
                            return
                        chunk = _content_chunk(message, expose=expose)
                        if chunk is not None:
                            yield chunk
        except httpx.HTTPError as exc:
            raise _unreachable_error(_MODEL_SERVICE, exc, expose=expose) from exc
        finally:
            if owns_client:
                await client.aclose()


def _content_chunk(message: MessageEvent, *, expose: bool) -> dict[str, Any] | None:
    """The `{"content": ...}` chunk of one upstream message, None when it carries no text."""
    try:
        payload = json.loads(message.data)
    except ValueError:
        raise StreamError("The model service sent a message that is not JSON.") from None
    if not isinstance(payload, dict):
        return None
    error = payload.get("error")
    if error:
        detail = redact_secrets(_excerpt(message.data, _LOGGED_BODY_LIMIT))
        logger.warning("ssekit: the %s reported an error mid-stream: %s", _MODEL_SERVICE, detail)
        if not expose:
            raise StreamError(f"The {_MODEL_SERVICE} reported an error.")
        shown = error.get("message") if isinstance(error, dict) else error
        raise StreamError(
            f"The {_MODEL_SERVICE} reported an error: {redact_secrets(_excerpt(str(shown), 300))}"
        )
    choices = payload.get("choices") or []
    if not choices:
        return None
    choice = choices[0]
    content = (choice.get("delta") or {}).get("content")
    finish = choice.get("finish_reason")
    if not content and not finish:
        return None
    chunk: dict[str, Any] = {"content": content or ""}
    if finish:
        chunk["finish_reason"] = finish
    return chunk


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
                raise _upstream_status_error(
                    _UPSTREAM_STREAM, response.status_code, text, expose=expose_upstream_errors
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
        raise _unreachable_error(_UPSTREAM_STREAM, exc, expose=expose_upstream_errors) from exc
    finally:
        if owns_client:
            await client.aclose()
