"""The one chunk shape every engine yields, and the assembler that turns tool-call fragments back
into whole calls.

Every chunk is a dict with a `content` string (the text delta, `""` when the chunk carries
something else), so `chunk["content"]` works on any chunk, as it always has; at most one other
key says what else it carries: `reasoning`, `tool_call`, `finish_reason` or `usage`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, TypedDict

__all__ = [
    "FINISH_REASONS",
    "Chunk",
    "ToolCall",
    "ToolCallAssembler",
    "ToolCallDelta",
    "Usage",
]

#: The finish reasons engines report (OpenAI's words; other vendors' are mapped onto them):
#: `stop` (the model ended its turn), `length` (a token limit), `tool_calls` (it wants tools
#: run), `content_filter` (refused or filtered).  An unknown upstream reason passes through as is.
FINISH_REASONS = ("stop", "length", "tool_calls", "content_filter")


class ToolCallDelta(TypedDict):
    """One fragment of a tool call: `arguments` is a piece of its JSON arguments text.

    `index` numbers the calls of one reply from 0; `id` and `name` are repeated on every
    fragment, so a consumer needs no state to know which call a fragment belongs to.
    """

    index: int
    id: str
    name: str
    arguments: str


class ToolCall(TypedDict):
    """A whole tool call: its `arguments` are the JSON text the model wrote (not parsed)."""

    id: str
    name: str
    arguments: str


class Usage(TypedDict):
    """Token counts of one model call, as the upstream reported them."""

    input_tokens: int
    output_tokens: int


class _ChunkContent(TypedDict):
    content: str


class Chunk(_ChunkContent, total=False):
    """One streamed piece of a reply: `content` always, plus at most one of the others."""

    reasoning: str
    tool_call: ToolCallDelta
    finish_reason: str
    usage: Usage


def text_chunk(text: str) -> Chunk:
    return {"content": text}


def reasoning_chunk(text: str) -> Chunk:
    return {"content": "", "reasoning": text}


def tool_call_chunk(index: int, id_: str, name: str, arguments: str) -> Chunk:
    delta: ToolCallDelta = {"index": index, "id": id_, "name": name, "arguments": arguments}
    return {"content": "", "tool_call": delta}


def finish_chunk(reason: str) -> Chunk:
    return {"content": "", "finish_reason": reason}


def usage_chunk(input_tokens: int, output_tokens: int) -> Chunk:
    return {"content": "", "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens}}


class ToolCallAssembler:
    """Collects `tool_call` fragments from a chunk stream into whole `ToolCall`s, in index order.

    ```
    calls = ToolCallAssembler()
    for chunk in chunks:
        calls.feed(chunk)
    calls.calls   # [{"id": ..., "name": ..., "arguments": '{"city": "Paris"}'}, ...]
    ```
    """

    def __init__(self) -> None:
        self._calls: dict[int, ToolCall] = {}

    def feed(self, chunk: Mapping[str, Any]) -> None:
        """Take one chunk; anything but a `tool_call` fragment is ignored."""
        delta = chunk.get("tool_call") if isinstance(chunk, Mapping) else None
        if not isinstance(delta, Mapping):
            return
        index = delta.get("index")
        if not isinstance(index, int):
            raise ValueError(f"tool_call index must be an int, not {index!r}.")
        call = self._calls.get(index)
        if call is None:
            call = self._calls[index] = {"id": "", "name": "", "arguments": ""}
        call["id"] = str(delta.get("id") or call["id"])
        call["name"] = str(delta.get("name") or call["name"])
        call["arguments"] += str(delta.get("arguments") or "")

    @property
    def calls(self) -> list[ToolCall]:
        """The calls seen so far, in index order (copies)."""
        return [ToolCall(**self._calls[index]) for index in sorted(self._calls)]

    def __bool__(self) -> bool:
        return bool(self._calls)


def parse_arguments(arguments: str) -> Any:
    """A tool call's arguments as JSON values; `{}` for empty text, the text itself if not JSON."""
    if not arguments.strip():
        return {}
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


# -- OpenAI-compatible chat-completion chunks ---------------------------------------------------


class OpenAIChunkReader:
    """Turns the JSON payloads of one OpenAI-compatible chat-completion stream into `Chunk`s.

    It remembers each tool call's id and name (sent only with its first fragment upstream) so
    that every fragment it yields carries both.  Error payloads are not its business: the engine
    checks them before handing a payload over.
    """

    def __init__(self) -> None:
        self._tools: dict[int, tuple[str, str]] = {}

    def chunks(self, payload: Mapping[str, Any]) -> list[Chunk]:
        out: list[Chunk] = []
        choices = payload.get("choices") or []
        choice = choices[0] if isinstance(choices, list) and choices else None
        if isinstance(choice, Mapping):
            delta = choice.get("delta") or {}
            if isinstance(delta, Mapping):
                reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                if isinstance(reasoning, str) and reasoning:
                    out.append(reasoning_chunk(reasoning))
                content = delta.get("content")
                if isinstance(content, str) and content:
                    out.append(text_chunk(content))
                for tool in delta.get("tool_calls") or ():
                    chunk = self._tool_chunk(tool)
                    if chunk is not None:
                        out.append(chunk)
            finish = choice.get("finish_reason")
            if isinstance(finish, str) and finish:
                out.append(finish_chunk(finish))
        usage = payload.get("usage")
        if isinstance(usage, Mapping):
            out.append(
                usage_chunk(_int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens")))
            )
        return out

    def _tool_chunk(self, tool: Any) -> Chunk | None:
        if not isinstance(tool, Mapping):
            return None
        index = tool.get("index", len(self._tools))
        if not isinstance(index, int):
            return None
        function = tool.get("function") or {}
        known_id, known_name = self._tools.get(index, ("", ""))
        id_ = tool.get("id") or known_id
        name = (function.get("name") if isinstance(function, Mapping) else None) or known_name
        self._tools[index] = (str(id_), str(name))
        arguments = function.get("arguments") if isinstance(function, Mapping) else None
        return tool_call_chunk(index, str(id_), str(name), str(arguments or ""))


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def openai_messages(messages: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Chat messages as OpenAI takes them: stored `tool_calls` (`ToolCall`s) in OpenAI's shape,
    the `partial` marker dropped."""
    out = []
    for message in messages:
        item = {key: value for key, value in message.items() if key != "partial"}
        calls = item.get("tool_calls")
        if isinstance(calls, list):
            item["tool_calls"] = [_openai_tool_call(call) for call in calls]
        out.append(item)
    return out


def _openai_tool_call(call: Any) -> Any:
    if isinstance(call, Mapping) and "function" not in call and "name" in call:
        return {
            "id": call.get("id", ""),
            "type": "function",
            "function": {"name": call["name"], "arguments": call.get("arguments", "")},
        }
    return call
