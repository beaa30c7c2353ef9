"""A fake Anthropic Messages API (`POST /v1/messages`, `"stream": true`), over real HTTP.

It streams named events as Anthropic does (`message_start`, `content_block_start`,
`content_block_delta`, `content_block_stop`, `message_delta`, `message_stop`, `ping`, `error`;
no `[DONE]`).  What it does is chosen by the request's `model`:

- `"tools"`: `ai_script`'s reply: a thinking block (`thinking_delta`s and a `signature_delta`), a
  text block, two `tool_use` blocks whose `input_json_delta`s carry the arguments in
  `ai_script.FRAGMENTS` pieces, `stop_reason: "tool_use"` and the usage.
- `"script"` (any other model): a text reply `REPLY_DELTAS` ending with `end_turn`.
- `"http-429"`, `"http-401"`: that status with an Anthropic error body (the 401's echoes the key).
- `"error-mid"`: two text deltas, then an `error` event (`overloaded_error`), then the body ends.
- `"endless"`: a numbered text delta every `ENDLESS_INTERVAL` seconds until the client leaves.

Requests are recorded as `fake_openai.Call`s (headers, body, when the client disconnected).
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
from fake_openai import Call, _EventStream
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

REPLY_DELTAS = ["Bon", "jour", " ☕", "\n", "from the fake."]
ERROR_MID_DELTAS = ["Partial ", "answer"]
#: The upstream texts that must never reach a client by default.
HTTP_ERRORS = {
    "http-429": (429, "rate_limit_error", "Number of request tokens has exceeded your limit."),
    "http-401": (401, "authentication_error", "invalid x-api-key: sk-ant-secret-123456"),
}
ERROR_MID_MESSAGE = "Overloaded: upstream detail that stays on the server"
ENDLESS_INTERVAL = 0.02


class FakeAnthropic:
    """The fake server's state (its `Call`s) and its Starlette `app`."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route("/v1/messages", self._messages, methods=["POST"])])

    def last_call(self) -> Call:
        with self._lock:
            assert self.calls, "the fake server has received no request"
            return self.calls[-1]

    async def _messages(self, request: Request) -> Response:
        body = await request.json()
        call = Call(dict(request.headers), body)
        with self._lock:
            self.calls.append(call)
        if body.get("stream") is not True or "max_tokens" not in body:
            error = {"type": "invalid_request_error", "message": "stream and max_tokens needed"}
            return JSONResponse({"type": "error", "error": error}, 400)
        model = body.get("model")
        if model in HTTP_ERRORS:
            status, kind, message = HTTP_ERRORS[model]
            call.mark_finished()
            error = {"type": kind, "message": message}
            return JSONResponse({"type": "error", "error": error}, status_code=status)
        script = {"tools": _tools, "error-mid": _error_mid, "endless": _endless}.get(model, _script)
        return _EventStream(call, script(), hold_open=False)


def _event(kind: str, **data: Any) -> bytes:
    payload = json.dumps({"type": kind, **data}, ensure_ascii=False)
    return f"event: {kind}\ndata: {payload}\n\n".encode()


def _message_start() -> bytes:
    message = {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": "claude-fake",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": 1},
    }
    return _event("message_start", message=message)


def _text_block(index: int, pieces: list[str]) -> list[bytes]:
    out = [_event("content_block_start", index=index, content_block={"type": "text", "text": ""})]
    for piece in pieces:
        delta = {"type": "text_delta", "text": piece}
        out.append(_event("content_block_delta", index=index, delta=delta))
    out.append(_event("content_block_stop", index=index))
    return out


def _end(stop_reason: str) -> list[bytes]:
    return [
        _event(
            "message_delta",
            delta={"stop_reason": stop_reason, "stop_sequence": None},
            usage={"output_tokens": OUTPUT_TOKENS},
        ),
        _event("message_stop"),
    ]


async def _script() -> AsyncIterator[bytes]:
    yield _message_start()
    yield _event("ping")
    for piece in _text_block(0, REPLY_DELTAS):
        yield piece
    for piece in _end("end_turn"):
        yield piece


async def _tools() -> AsyncIterator[bytes]:
    yield _message_start()
    block = {"type": "thinking", "thinking": ""}
    yield _event("content_block_start", index=0, content_block=block)
    for piece in REASONING_DELTAS:
        delta = {"type": "thinking_delta", "thinking": piece}
        yield _event("content_block_delta", index=0, delta=delta)
    delta = {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3h"}
    yield _event("content_block_delta", index=0, delta=delta)
    yield _event("content_block_stop", index=0)
    yield _event("ping")
    for piece in _text_block(1, TEXT_DELTAS):
        yield piece
    for offset, call in enumerate(TOOL_CALLS):
        index = 2 + offset
        block = {"type": "tool_use", "id": call["id"], "name": call["name"], "input": {}}
        yield _event("content_block_start", index=index, content_block=block)
        for piece in fragments(call["arguments"]):
            delta = {"type": "input_json_delta", "partial_json": piece}
            yield _event("content_block_delta", index=index, delta=delta)
        yield _event("content_block_stop", index=index)
    for piece in _end("tool_use"):
        yield piece


async def _error_mid() -> AsyncIterator[bytes]:
    yield _message_start()
    yield _event("content_block_start", index=0, content_block={"type": "text", "text": ""})
    for piece in ERROR_MID_DELTAS:
        yield _event("content_block_delta", index=0, delta={"type": "text_delta", "text": piece})
    error = {"type": "overloaded_error", "message": ERROR_MID_MESSAGE}
    yield _event("error", error=error)


async def _endless() -> AsyncIterator[bytes]:
    yield _message_start()
    yield _event("content_block_start", index=0, content_block={"type": "text", "text": ""})
    n = 0
    while True:
        delta = {"type": "text_delta", "text": f"<{n}>"}
        yield _event("content_block_delta", index=0, delta=delta)
        n += 1
        await asyncio.sleep(ENDLESS_INTERVAL)
