"""`AnthropicEngine`: Anthropic's Messages API streamed into ssekit's one chunk shape.

Anthropic streams named events and no `[DONE]`:
https://docs.anthropic.com/en/api/messages-streaming
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from ssekit._ai_chunks import (
    Chunk,
    finish_chunk,
    parse_arguments,
    reasoning_chunk,
    text_chunk,
    tool_call_chunk,
    usage_chunk,
)
from ssekit._ai_errors import (
    MODEL_SERVICE,
    reported_error,
)
from ssekit._ai_http import HTTPEngine
from ssekit._errors import StreamError

__all__ = ["ANTHROPIC_VERSION", "AnthropicEngine"]

#: The `anthropic-version` header sent with every request.
ANTHROPIC_VERSION = "2023-06-01"

#: Anthropic's stop reasons in ssekit's (OpenAI's) words; others pass through unchanged.
_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

logger = logging.getLogger("ssekit")


class AnthropicEngine(HTTPEngine):
    """Streams replies from Anthropic's Messages API (`POST {base_url}/messages`) as `Chunk`s.

    The key comes from `api_key`, else the `ANTHROPIC_API_KEY` environment variable.  `system`
    messages become the request's `system` text; stored tool calls become `tool_use` blocks;
    OpenAI-style `tools` (`{"type": "function", "function": {...}}`) are converted, Anthropic
    ones pass through.  `defaults` (temperature, tools, thinking, ...) go into every request;
    `stream(messages, **params)` overrides them.  Upstream errors reach the client as a generic
    `StreamError` ("The model service answered 429."), their text only in the `ssekit` log,
    unless `expose_upstream_errors=True`.  Closing the stream closes the upstream request.
    """

    endpoint = "/messages"

    def __init__(
        self,
        base_url: str = "https://api.anthropic.com/v1",
        api_key: str | None = None,
        *,
        model: str = "claude-sonnet-4-5",
        max_tokens: int = 4096,
        timeout: float = 60.0,
        client: Any = None,
        expose_upstream_errors: bool = False,
        **defaults: Any,
    ) -> None:
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(f"max_tokens must be a positive int, not {max_tokens!r}.")
        super().__init__(
            base_url,
            api_key if api_key is not None else os.environ.get("ANTHROPIC_API_KEY"),
            model=model,
            timeout=timeout,
            client=client,
            expose_upstream_errors=expose_upstream_errors,
            defaults=defaults,
        )
        self.max_tokens = max_tokens

    def request_body(self, messages: Iterable[Mapping[str, Any]], **params: Any) -> dict[str, Any]:
        """The JSON body `stream()` sends for these messages and parameters."""
        body: dict[str, Any] = {"model": self.model, "max_tokens": self.max_tokens}
        body.update(self.defaults)
        body.update(params)
        system, converted = anthropic_messages(messages)
        if system and "system" not in body:
            body["system"] = system
        body["messages"] = converted
        if isinstance(body.get("tools"), list):
            body["tools"] = [_anthropic_tool(tool) for tool in body["tools"]]
        body["stream"] = True
        return body

    async def stream(
        self, messages: Iterable[Mapping[str, Any]], **params: Any
    ) -> AsyncIterator[Chunk]:
        body = self.request_body(messages, **params)
        headers = {
            "Accept": "text/event-stream",
            "anthropic-version": ANTHROPIC_VERSION,
        }
        if self.api_key:
            headers["x-api-key"] = self.api_key
        reader = _EventReader(expose=self.expose_upstream_errors)
        async with contextlib.aclosing(self._upstream_events(body, headers)) as upstream:
            async for message in upstream:
                for chunk in reader.chunks(message.type, message.data):
                    yield chunk
                if reader.stopped:
                    return


class _EventReader:
    """The state of one Messages stream: which content block is which tool call, the usage."""

    def __init__(self, *, expose: bool) -> None:
        self.expose = expose
        self.stopped = False
        self._tools: dict[int, tuple[int, str, str]] = {}  # block index -> (call index, id, name)
        self._input_tokens = 0

    def chunks(self, event: str, data: str) -> list[Chunk]:
        try:
            payload = json.loads(data)
        except ValueError:
            raise StreamError("The model service sent a message that is not JSON.") from None
        if not isinstance(payload, dict):
            return []
        kind = payload.get("type", event)
        if kind == "error":
            error = payload.get("error")
            detail = error.get("message") if isinstance(error, dict) else None
            raise reported_error(MODEL_SERVICE, data, detail or data, expose=self.expose)
        if kind == "message_start":
            usage = (payload.get("message") or {}).get("usage") or {}
            self._input_tokens = _int(usage.get("input_tokens"))
        elif kind == "content_block_start":
            return self._block_start(payload)
        elif kind == "content_block_delta":
            return self._block_delta(payload)
        elif kind == "message_delta":
            return self._message_delta(payload)
        elif kind == "message_stop":
            self.stopped = True
        return []  # ping, content_block_stop, and event types added later

    def _block_start(self, payload: dict[str, Any]) -> list[Chunk]:
        block = payload.get("content_block") or {}
        kind = block.get("type")
        if kind == "tool_use":
            call = (len(self._tools), str(block.get("id", "")), str(block.get("name", "")))
            self._tools[_int(payload.get("index"))] = call
            return [tool_call_chunk(*call, "")]
        if kind == "text" and block.get("text"):
            return [text_chunk(str(block["text"]))]
        if kind == "thinking" and block.get("thinking"):
            return [reasoning_chunk(str(block["thinking"]))]
        return []

    def _block_delta(self, payload: dict[str, Any]) -> list[Chunk]:
        delta = payload.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            return [text_chunk(str(delta["text"]))]
        if kind == "thinking_delta" and delta.get("thinking"):
            return [reasoning_chunk(str(delta["thinking"]))]
        if kind == "input_json_delta":
            call = self._tools.get(_int(payload.get("index")))
            if call is not None and delta.get("partial_json"):
                return [tool_call_chunk(*call, str(delta["partial_json"]))]
        return []  # signature_delta and others carry nothing for the client

    def _message_delta(self, payload: dict[str, Any]) -> list[Chunk]:
        out: list[Chunk] = []
        reason = (payload.get("delta") or {}).get("stop_reason")
        if isinstance(reason, str) and reason:
            out.append(finish_chunk(_STOP_REASONS.get(reason, reason)))
        usage = payload.get("usage")
        if isinstance(usage, dict):
            if "input_tokens" in usage:
                self._input_tokens = _int(usage.get("input_tokens"))
            out.append(usage_chunk(self._input_tokens, _int(usage.get("output_tokens"))))
        return out


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def anthropic_messages(
    messages: Iterable[Mapping[str, Any]],
) -> tuple[str, list[dict[str, Any]]]:
    """The `system` text and the `messages` Anthropic takes for OpenAI-style chat messages."""
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for message in messages:
        role, content = message.get("role"), message.get("content", "")
        if role == "system":
            system.append(str(content))
        elif role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": str(message.get("tool_call_id", "")),
                "content": content,
            }
            out.append({"role": "user", "content": [block]})
        elif role == "assistant" and message.get("tool_calls"):
            blocks: list[dict[str, Any]] = [{"type": "text", "text": content}] if content else []
            for call in message["tool_calls"]:
                function = call.get("function", call)
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": call.get("id", ""),
                        "name": function.get("name", ""),
                        "input": parse_arguments(str(function.get("arguments", ""))),
                    }
                )
            out.append({"role": "assistant", "content": blocks})
        else:
            out.append({"role": role, "content": content})
    return "\n\n".join(system), out


def _anthropic_tool(tool: Any) -> Any:
    """An OpenAI-style function tool as Anthropic declares tools; anything else as it is."""
    if isinstance(tool, Mapping) and tool.get("type") == "function":
        function = tool.get("function") or {}
        converted = {
            "name": function.get("name", ""),
            "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
        }
        if function.get("description"):
            converted["description"] = function["description"]
        return converted
    return tool
