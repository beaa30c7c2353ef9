"""A fake OpenAI-compatible chat-completions server, for testing engines over real HTTP.

`FakeOpenAI().app` is a small Starlette app: `POST /v1/chat/completions` with `"stream": true`
answers like OpenAI does, `data: {"choices":[{"delta":{"content":"..."}}]}` chunks then
`data: [DONE]`.  What it does is chosen by the request's `model`:

- `"script"` (any model not below): `REPLY_DELTAS` in OpenAI's shape (a role-only first delta, a
  keep-alive comment, an empty delta, a final `finish_reason` chunk), `data: [DONE]`, and then it
  keeps the response open until the client leaves: a client that stops at `[DONE]` ends it, one
  that waits for the end of the body hangs.
- `"http-429"`, `"http-500"`: that status with an OpenAI-style `{"error": {"message": ...}}` body.
- `"http-401-key"`: 401 whose error message echoes the key (`LEAKED_KEY`), as OpenAI's does.
- `"http-502-html"`: a proxy's 502 HTML page that mentions a token (`LEAKED_TOKEN`).
- `"error-mid"`: two content chunks, then an `{"error": {...}}` payload, then the body ends.
- `"error-mid-key"`: the same, with an error message that echoes `LEAKED_KEY`.
- `"endless"`: a numbered content chunk every `ENDLESS_INTERVAL` seconds until the client leaves.

Every request is recorded as a `Call` (headers, JSON body) with a `threading.Event` that is set
when the client disconnects (`http.disconnect`) and another when the streaming code's `finally`
has run, each with its `time.monotonic()`, so tests on other threads can wait on them.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

#: The content deltas of the scripted reply (unicode, a line break, an empty string)...
REPLY_DELTAS = ["Hel", "lo", "", ", wörld ☕", "\n", "second line", " — done."]
#: ...and the text they make.
REPLY_TEXT = "".join(REPLY_DELTAS)
#: The content deltas `"error-mid"` sends before its error payload, and that error's message.
ERROR_MID_DELTAS = ["Partial ", "answer"]
ERROR_MID_MESSAGE = "The server had an error while processing your request."
#: The messages of the HTTP error answers.
HTTP_ERRORS = {
    "http-429": (429, "Rate limit reached for gpt-fake in organization org-test."),
    "http-500": (500, "The server had an error processing your request."),
}
#: A key an upstream echoes back in its errors, and a token in a proxy's error page: neither may
#: reach a client, and both are redacted in the logs.
LEAKED_KEY = "sk-live-4f9a2b7c1d0e8f3a6b5c9d8e7f6a"
LEAKED_TOKEN = "9f8e7d6c5b4a39281706f5e4d3c2b1a0"
UNAUTHORIZED_BODY = {
    "error": {
        "message": f"Incorrect API key provided: {LEAKED_KEY}. You can find your API key at ...",
        "type": "invalid_request_error",
        "code": "invalid_api_key",
    }
}
BAD_GATEWAY_PAGE = (
    "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1>"
    f"<p>upstream rejected api_key={LEAKED_TOKEN} from 10.0.0.7</p></body></html>"
)
#: Seconds between the chunks of `"endless"`.
ENDLESS_INTERVAL = 0.02


class Call:
    """One request the fake received, and what became of its response."""

    def __init__(self, headers: dict[str, str], body: Any) -> None:
        self.headers = headers
        self.body = body
        #: Set when uvicorn reports `http.disconnect` while the response is streaming.
        self.disconnected = threading.Event()
        self.disconnected_at: float | None = None
        #: Set when the streaming code's `finally` has run (however the response ended).
        self.finished = threading.Event()
        self.finished_at: float | None = None
        #: How many body chunks were sent.
        self.chunks_sent = 0

    def mark_disconnected(self) -> None:
        self.disconnected_at = time.monotonic()
        self.disconnected.set()

    def mark_finished(self) -> None:
        self.finished_at = time.monotonic()
        self.finished.set()


class FakeOpenAI:
    """The fake server's state (its `Call`s) and its Starlette `app`."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])

    def last_call(self) -> Call:
        with self._lock:
            assert self.calls, "the fake server has received no request"
            return self.calls[-1]

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        call = Call(dict(request.headers), body)
        with self._lock:
            self.calls.append(call)
        if body.get("stream") is not True:
            return JSONResponse({"error": {"message": "only streaming is faked"}}, 400)
        model = body.get("model")
        if model in HTTP_ERRORS:
            status, message = HTTP_ERRORS[model]
            call.mark_finished()
            error = {"message": message, "type": "fake_error", "code": None}
            return JSONResponse({"error": error}, status_code=status)
        if model == "http-401-key":
            call.mark_finished()
            return JSONResponse(UNAUTHORIZED_BODY, status_code=401)
        if model == "http-502-html":
            call.mark_finished()
            return HTMLResponse(BAD_GATEWAY_PAGE, status_code=502)
        if model == "error-mid":
            return _EventStream(call, _error_mid(ERROR_MID_MESSAGE), hold_open=False)
        if model == "error-mid-key":
            message = f"Invalid authentication: Bearer {LEAKED_KEY}"
            return _EventStream(call, _error_mid(message), hold_open=False)
        if model == "endless":
            return _EventStream(call, _endless(), hold_open=False)
        if model == "oversized":
            return _EventStream(call, _oversized(), hold_open=False)
        return _EventStream(call, _script(), hold_open=True)


#: How many MiB the endless line of the `oversized` model sends before giving up.
OVERSIZED_MIB = 12


def _chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
    payload = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-fake",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


async def _script() -> AsyncIterator[bytes]:
    yield _chunk({"role": "assistant", "content": ""})
    yield b": OPENROUTER PROCESSING\n\n"
    for delta in REPLY_DELTAS:
        yield _chunk({"content": delta})
    yield _chunk({}, finish_reason="stop")
    yield b"data: [DONE]\n\n"


async def _error_mid(message: str) -> AsyncIterator[bytes]:
    for delta in ERROR_MID_DELTAS:
        yield _chunk({"content": delta})
    error = {"error": {"message": message, "type": "server_error"}}
    yield b"data: " + json.dumps(error).encode() + b"\n\n"


async def _endless() -> AsyncIterator[bytes]:
    n = 0
    while True:
        yield _chunk({"content": f"<{n}>"})
        n += 1
        await asyncio.sleep(ENDLESS_INTERVAL)


async def _oversized() -> AsyncIterator[bytes]:
    """One delta, then a line that never ends: a broken or hostile upstream."""
    yield _chunk({"content": "Hel"})
    yield b"data: "
    for _ in range(OVERSIZED_MIB * 16):
        yield b"x" * (64 * 1024)


class _EventStream(Response):
    """Streams `body`; watches `receive()` for `http.disconnect` the whole time (and records it).

    With `hold_open`, the response stays open after the body until the client leaves, as a
    server might after `[DONE]`: only a client that stops at `[DONE]` ends it.
    """

    def __init__(self, call: Call, body: AsyncIterator[bytes], *, hold_open: bool) -> None:
        self.call = call
        self.body_iterator = body
        self.hold_open = hold_open
        self.status_code = 200
        self.background = None
        self.media_type = "text/event-stream"
        self.init_headers({"cache-control": "no-cache"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        watcher = loop.create_task(self._watch(receive))
        streamer = loop.create_task(self._stream(send))
        try:
            await asyncio.wait({watcher, streamer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            streamer.cancel()
            watcher.cancel()
            await asyncio.gather(streamer, watcher, return_exceptions=True)
            self.call.mark_finished()

    async def _watch(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.call.mark_disconnected()
                return

    async def _stream(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        try:
            async for data in self.body_iterator:
                await send({"type": "http.response.body", "body": data, "more_body": True})
                self.call.chunks_sent += 1
        finally:
            await self.body_iterator.aclose()  # type: ignore[attr-defined]
        if self.hold_open:
            await asyncio.Event().wait()  # until the watcher sees the client leave
        await send({"type": "http.response.body", "body": b"", "more_body": False})
