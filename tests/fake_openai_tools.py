"""`FakeOpenAI` with the shapes of tool-calling, reasoning and usage, for the chunk and run tests.

Models added to `fake_openai.FakeOpenAI`'s:

- `"tools"`: `ai_script`'s reply as OpenAI streams it: a role delta, `reasoning_content` deltas,
  content deltas, two tool calls (id, type and name in each call's first fragment, then its
  `function.arguments` in `ai_script.FRAGMENTS` pieces), a `finish_reason: "tool_calls"` chunk,
  the usage chunk with empty `choices` (only when the request asked for it with
  `stream_options.include_usage`, as OpenAI does), then `data: [DONE]`.
- `"slow"`: `SLOW_COUNT` numbered content chunks `"<n>"`, one every `SLOW_INTERVAL` seconds, then
  a finish, the usage and `[DONE]`.  After `SLOW_GATE_AT` chunks it waits until `slow_gate` is
  set (it is, unless a test clears it to hold the reply in the middle).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

from ai_script import (
    INPUT_TOKENS,
    OUTPUT_TOKENS,
    REASONING_DELTAS,
    TEXT_DELTAS,
    TOOL_CALLS,
    fragments,
)
from fake_openai import Call, FakeOpenAI, _chunk, _EventStream
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

#: The chunks of `"slow"`, and the seconds between them.
SLOW_COUNT = 40
SLOW_INTERVAL = 0.02
SLOW_GATE_AT = 10


class FakeOpenAITools(FakeOpenAI):
    """`FakeOpenAI` that also answers the models `"tools"` and `"slow"`."""

    def __init__(self) -> None:
        super().__init__()
        self.slow_gate = threading.Event()
        self.slow_gate.set()
        self.app.router.routes[:] = [
            Route("/v1/chat/completions", self._chat_more, methods=["POST"])
        ]

    async def _chat_more(self, request: Request) -> Response:
        body = await request.json()
        model = body.get("model")
        if model not in ("tools", "slow") or body.get("stream") is not True:
            return await self._chat(request)
        call = Call(dict(request.headers), body)
        with self._lock:
            self.calls.append(call)
        usage = bool((body.get("stream_options") or {}).get("include_usage"))
        script = _tools(usage) if model == "tools" else _slow(usage, self.slow_gate)
        return _EventStream(call, script, hold_open=False)


def _usage_chunk() -> bytes:
    payload = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-fake",
        "choices": [],
        "usage": {
            "prompt_tokens": INPUT_TOKENS,
            "completion_tokens": OUTPUT_TOKENS,
            "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS,
        },
    }
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def _tool_delta(index: int, **fields: Any) -> dict[str, Any]:
    return {"tool_calls": [{"index": index, **fields}]}


async def _tools(usage: bool) -> AsyncIterator[bytes]:
    yield _chunk({"role": "assistant", "content": None})
    for piece in REASONING_DELTAS:
        yield _chunk({"reasoning_content": piece})
    for piece in TEXT_DELTAS:
        yield _chunk({"content": piece})
    for index, call in enumerate(TOOL_CALLS):
        function = {"name": call["name"], "arguments": ""}
        yield _chunk(_tool_delta(index, id=call["id"], type="function", function=function))
        for piece in fragments(call["arguments"]):
            yield _chunk(_tool_delta(index, function={"arguments": piece}))
    yield _chunk({}, finish_reason="tool_calls")
    if usage:
        yield _usage_chunk()
    yield b"data: [DONE]\n\n"


async def _slow(usage: bool, gate: threading.Event) -> AsyncIterator[bytes]:
    for n in range(SLOW_COUNT):
        if n == SLOW_GATE_AT:
            while not gate.is_set():  # a threading.Event, set from the test's thread
                await asyncio.sleep(0.005)
        yield _chunk({"content": f"<{n}>"})
        await asyncio.sleep(SLOW_INTERVAL)
    yield _chunk({}, finish_reason="stop")
    if usage:
        yield _usage_chunk()
    yield b"data: [DONE]\n\n"
