"""Output formats for a chunk stream: the Vercel AI SDK's UI message stream, and OpenAI's
chat-completion chunks (to front any engine with an OpenAI-compatible endpoint).

Both take the chunks any engine yields and give a `to_sse()` source (dicts, then the `"[DONE]"`
text), sync for a sync source and async for an async one.  A `StreamError` from the source
becomes the format's own error message; any other exception is logged and reported with a
generic text, as `to_sse()` does.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from typing import Any

from ssekit._ai_chunks import parse_arguments
from ssekit._errors import StreamError

__all__ = [
    "UI_MESSAGE_STREAM_HEADERS",
    "openai_chunk_stream",
    "ui_message_stream",
]

#: The header that tells the AI SDK's `useChat` it is reading a UI message stream (protocol v1).
UI_MESSAGE_STREAM_HEADERS = {"x-vercel-ai-ui-message-stream": "v1"}
#: What the client is told when a source fails with anything but a `StreamError`.
_GENERIC_ERROR = "The stream failed."
#: ssekit's finish reasons in the AI SDK's words.
_UI_FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool-calls",
    "content_filter": "content-filter",
    "error": "error",
}

logger = logging.getLogger("ssekit")


def _error_text(exc: Exception) -> str:
    if isinstance(exc, StreamError):
        return exc.message
    logger.exception("ssekit: a chunk source failed", exc_info=exc)
    return _GENERIC_ERROR


def _drive(
    source: Iterable[Any] | AsyncIterable[Any], translator: _Translator
) -> Iterator[Any] | AsyncIterator[Any]:
    if isinstance(source, AsyncIterable):
        return _drive_async(source, translator)
    return _drive_sync(source, translator)


def _drive_sync(source: Iterable[Any], translator: _Translator) -> Iterator[Any]:
    yield from translator.begin()
    iterator = iter(source)
    try:
        for chunk in iterator:
            yield from translator.feed(chunk)
    except Exception as exc:
        yield from translator.fail(_error_text(exc))
        return
    finally:
        close = getattr(iterator, "close", None)
        if callable(close):
            close()
    yield from translator.end()


async def _drive_async(source: AsyncIterable[Any], translator: _Translator) -> AsyncIterator[Any]:
    for part in translator.begin():
        yield part
    iterator = aiter(source)
    try:
        async for chunk in iterator:
            for part in translator.feed(chunk):
                yield part
    except Exception as exc:
        for part in translator.fail(_error_text(exc)):
            yield part
        return
    finally:
        aclose = getattr(iterator, "aclose", None)
        if callable(aclose):
            await aclose()
    for part in translator.end():
        yield part


class _Translator:
    """Sans-IO: chunks in, the format's messages out."""

    def begin(self) -> list[Any]:
        raise NotImplementedError

    def feed(self, chunk: Any) -> list[Any]:
        raise NotImplementedError

    def fail(self, text: str) -> list[Any]:
        raise NotImplementedError

    def end(self) -> list[Any]:
        raise NotImplementedError


# -- AI SDK UI message stream ---------------------------------------------------------------------


def ui_message_stream(
    source: Iterable[Any] | AsyncIterable[Any],
    *,
    message_id: str | None = None,
    metadata: bool = True,
) -> Any:
    """The chunks as the AI SDK's UI message stream (v5 `useChat`), ending with `[DONE]`.

    Serve it with `to_sse()` (or an adapter's response) and the `UI_MESSAGE_STREAM_HEADERS`.
    Parts: `start`, `start-step`, `text-*` / `reasoning-*` (with an id per block),
    `tool-input-start` / `-delta` / `-available` per tool call, `finish-step`, `finish`; a
    failed source ends with an `error` part.  With `metadata`, `finish` carries
    `messageMetadata: {"finishReason", "usage": {"inputTokens", "outputTokens"}}` when known.
    """
    return _drive(source, UIParts(message_id, metadata))


class UIParts(_Translator):
    """Sans-IO: ssekit chunks in, UI message stream parts out (also used by runs)."""

    def __init__(self, message_id: str | None, metadata: bool) -> None:
        self.message_id = message_id
        self.metadata = metadata
        self._prefix = secrets.token_hex(4)
        self._blocks = 0
        self._open: tuple[str, str] | None = None  # ("text" | "reasoning", id)
        self._tools: dict[int, tuple[str, str, list[str]]] = {}  # index -> id, name, arguments
        self._finish_reason: str | None = None
        self._usage: dict[str, int] | None = None

    def begin(self) -> list[Any]:
        start: dict[str, Any] = {"type": "start"}
        if self.message_id is not None:
            start["messageId"] = self.message_id
        return [start, {"type": "start-step"}]

    def _close_block(self) -> list[Any]:
        if self._open is None:
            return []
        kind, id_ = self._open
        self._open = None
        return [{"type": f"{kind}-end", "id": id_}]

    def _delta(self, kind: str, text: str) -> list[Any]:
        parts: list[Any] = []
        if self._open is None or self._open[0] != kind:
            parts += self._close_block()
            self._blocks += 1
            self._open = (kind, f"{kind}-{self._prefix}-{self._blocks}")
            parts.append({"type": f"{kind}-start", "id": self._open[1]})
        parts.append({"type": f"{kind}-delta", "id": self._open[1], "delta": text})
        return parts

    def _close_tools(self) -> list[Any]:
        parts = []
        for index in sorted(self._tools):
            id_, name, arguments = self._tools[index]
            available = {
                "type": "tool-input-available",
                "toolCallId": id_,
                "toolName": name,
                "input": parse_arguments("".join(arguments)),
            }
            parts.append(available)
        self._tools.clear()
        return parts

    def feed(self, chunk: Any) -> list[Any]:
        if isinstance(chunk, str):
            return self._delta("text", chunk) if chunk else []
        if not isinstance(chunk, Mapping):
            return []
        parts: list[Any] = []
        content = chunk.get("content")
        if isinstance(content, str) and content:
            parts += self._delta("text", content)
        reasoning = chunk.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            parts += self._delta("reasoning", reasoning)
        call = chunk.get("tool_call")
        if isinstance(call, Mapping):
            parts += self._tool_fragment(call)
        reason = chunk.get("finish_reason")
        if isinstance(reason, str) and reason:
            self._finish_reason = reason
            parts += self._close_block() + self._close_tools()
        usage = chunk.get("usage")
        if isinstance(usage, Mapping):
            self._usage = {
                "inputTokens": int(usage.get("input_tokens") or 0),
                "outputTokens": int(usage.get("output_tokens") or 0),
            }
        return parts

    def _tool_fragment(self, call: Mapping[str, Any]) -> list[Any]:
        parts: list[Any] = []
        index = call.get("index")
        if not isinstance(index, int):
            return parts
        if index not in self._tools:
            parts += self._close_block()
            id_ = str(call.get("id") or f"call-{self._prefix}-{index}")
            name = str(call.get("name") or "")
            self._tools[index] = (id_, name, [])
            parts.append({"type": "tool-input-start", "toolCallId": id_, "toolName": name})
        id_, _, arguments = self._tools[index]
        fragment = call.get("arguments")
        if isinstance(fragment, str) and fragment:
            arguments.append(fragment)
            parts.append(
                {"type": "tool-input-delta", "toolCallId": id_, "inputTextDelta": fragment}
            )
        return parts

    def interrupt(self) -> list[Any]:
        """The parts that close what is open when the stream is cut off (no tool input: it
        never became whole)."""
        self._tools.clear()
        return self._close_block()

    def fail(self, text: str) -> list[Any]:
        self._tools.clear()  # their input never became whole
        return [*self._close_block(), {"type": "error", "errorText": text}, "[DONE]"]

    def end(self) -> list[Any]:
        parts = [*self._close_block(), *self._close_tools(), {"type": "finish-step"}]
        finish: dict[str, Any] = {"type": "finish"}
        meta: dict[str, Any] = {}
        if self._finish_reason is not None:
            meta["finishReason"] = _UI_FINISH_REASONS.get(self._finish_reason, "other")
        if self._usage is not None:
            meta["usage"] = self._usage
        if self.metadata and meta:
            finish["messageMetadata"] = meta
        return [*parts, finish, "[DONE]"]


# -- OpenAI chat-completion chunks --------------------------------------------------------------


def openai_chunk_stream(
    source: Iterable[Any] | AsyncIterable[Any],
    *,
    model: str = "ssekit",
    completion_id: str | None = None,
    include_usage: bool = True,
) -> Any:
    """The chunks as OpenAI's `chat.completion.chunk` stream, ending with `[DONE]`.

    What an OpenAI client reading `stream=True` expects: a role delta first, `content`,
    `reasoning_content` and `tool_calls` deltas (id, type and name in each call's first
    fragment), a `finish_reason`, the usage chunk with empty `choices` (unless
    `include_usage=False`).  A failed source ends with OpenAI's `{"error": {"message", "type"}}`
    payload and no `[DONE]`.
    """
    return _drive(source, _OpenAIChunks(model, completion_id, include_usage))


class _OpenAIChunks(_Translator):
    def __init__(self, model: str, completion_id: str | None, include_usage: bool) -> None:
        self.model = model
        self.id = completion_id or f"chatcmpl-{secrets.token_hex(12)}"
        self.created = int(time.time())
        self.include_usage = include_usage
        self._tools: set[int] = set()

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        }

    def begin(self) -> list[Any]:
        return [self._chunk({"role": "assistant", "content": ""})]

    def feed(self, chunk: Any) -> list[Any]:
        if isinstance(chunk, str):
            return [self._chunk({"content": chunk})] if chunk else []
        if not isinstance(chunk, Mapping):
            return []
        out: list[Any] = []
        content = chunk.get("content")
        if isinstance(content, str) and content:
            out.append(self._chunk({"content": content}))
        reasoning = chunk.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            out.append(self._chunk({"reasoning_content": reasoning}))
        call = chunk.get("tool_call")
        if isinstance(call, Mapping) and isinstance(call.get("index"), int):
            out.append(self._chunk({"tool_calls": [self._tool_delta(call)]}))
        reason = chunk.get("finish_reason")
        if isinstance(reason, str) and reason:
            out.append(self._chunk({}, finish_reason=reason))
        usage = chunk.get("usage")
        if isinstance(usage, Mapping) and self.include_usage:
            prompt = int(usage.get("input_tokens") or 0)
            completion = int(usage.get("output_tokens") or 0)
            usage_chunk = self._chunk({})
            usage_chunk["choices"] = []
            usage_chunk["usage"] = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
            out.append(usage_chunk)
        return out

    def _tool_delta(self, call: Mapping[str, Any]) -> dict[str, Any]:
        index: int = call["index"]
        function: dict[str, Any] = {"arguments": str(call.get("arguments") or "")}
        delta: dict[str, Any] = {"index": index}
        if index not in self._tools:
            self._tools.add(index)
            delta["id"] = str(call.get("id") or "")
            delta["type"] = "function"
            function = {"name": str(call.get("name") or ""), **function}
        delta["function"] = function
        return delta

    def fail(self, text: str) -> list[Any]:
        return [{"error": {"message": text, "type": "server_error"}}]

    def end(self) -> list[Any]:
        return ["[DONE]"]
