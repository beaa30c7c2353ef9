"""The output formats, served over real HTTP from engines reading the fake upstreams:

- the AI SDK UI message stream, read by the `ai` npm package's own client code in Node
  (`tests/node/read_ui_stream.mjs`: useChat's transport chunk check, then `readUIMessageStream`),
  for the current `ai` 5 release and for 5.0.0 (whose chunk schema refuses unknown keys);
- OpenAI's chat-completion chunks, read back by `OpenAICompatibleEngine` (an Anthropic upstream
  fronted as an OpenAI-compatible endpoint gives the same chunks).

Node and the `ai` package: `npm ci --prefix tests/node` installs them (the tests run it when
`tests/node/node_modules` is missing); without `node` on PATH these tests are skipped.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from ai_script import (
    INPUT_TOKENS,
    OUTPUT_TOKENS,
    REASONING_DELTAS,
    TEXT_DELTAS,
    TOOL_CALLS,
)
from fake_anthropic import ERROR_MID_DELTAS, FakeAnthropic
from fake_openai_tools import FakeOpenAITools
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from support.asgi_servers import DEADLINE, StreamReader, uvicorn_server

from ssekit import StreamError
from ssekit.adapters.starlette import SSEResponse
from ssekit.ai import (
    UI_MESSAGE_STREAM_HEADERS,
    AnthropicEngine,
    OpenAICompatibleEngine,
    ToolCallAssembler,
    openai_chunk_stream,
    ui_message_stream,
)

pytestmark = pytest.mark.timeout(120)

NODE_DIR = Path(__file__).parent / "node"
NODE = shutil.which("node")
MESSAGES = [{"role": "user", "content": "Weather in Paris and Tokyo?"}]
#: The `ai` packages the stream is checked with (package.json installs both).
AI_PACKAGES = ["ai", "ai-5.0.0"]


@pytest.fixture(scope="module")
def node_ai() -> str:
    """The `node` binary, with tests/node's packages installed (`npm ci` when missing)."""
    if NODE is None:
        pytest.skip("node is not on PATH (CI installs it)")
    if not (NODE_DIR / "node_modules" / "ai" / "package.json").exists():
        npm = shutil.which("npm")
        assert npm is not None, "node is installed but npm is not"
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, timeout=300
        )
    return NODE


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """`/ui/{vendor}/{model}`: the engine's chunks as a UI message stream;
    `/openai/{vendor}/{model}/chat/completions`: as OpenAI chat-completion chunks."""
    fake_openai, fake_anthropic = FakeOpenAITools(), FakeAnthropic()
    with (
        uvicorn_server(fake_openai.app) as openai_url,
        uvicorn_server(fake_anthropic.app) as anthropic_url,
    ):
        engines: dict[str, Any] = {
            "openai": OpenAICompatibleEngine(f"{openai_url}/v1", model="tools"),
            "anthropic": AnthropicEngine(f"{anthropic_url}/v1", api_key="k", model="tools"),
        }

        def chunks(request: Request) -> AsyncIterator[Any]:
            engine = engines[request.path_params["vendor"]]
            return engine.stream(MESSAGES, model=request.path_params["model"])  # type: ignore[no-any-return]

        async def ui(request: Request) -> Response:
            source = ui_message_stream(chunks(request), message_id="msg-1")
            return SSEResponse(source, headers=UI_MESSAGE_STREAM_HEADERS)

        async def openai(request: Request) -> Response:
            return SSEResponse(openai_chunk_stream(chunks(request), model="fronted"))

        routes = [
            Route("/ui/{vendor}/{model}", ui),
            Route("/openai/{vendor}/{model}/chat/completions", openai, methods=["POST"]),
        ]
        with uvicorn_server(Starlette(routes=routes)) as url:
            yield url


def read_with_node(node: str, url: str, package: str) -> subprocess.CompletedProcess[str]:
    script = str(NODE_DIR / "read_ui_stream.mjs")
    return subprocess.run(
        [node, script, url, package], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("package", AI_PACKAGES)
@pytest.mark.parametrize("vendor", ["openai", "anthropic"])
def test_the_ai_package_reads_the_ui_message_stream(
    node_ai: str, server: str, vendor: str, package: str
) -> None:
    """The `ai` package's reader accepts every part with no validation error, and the message it
    assembles holds the reasoning, the text and both tool calls with their inputs; the header
    is there; `finish` carries the finish reason and the upstream's token counts."""
    result = read_with_node(node_ai, f"{server}/ui/{vendor}/tools", package)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["header"] == "v1"
    message = out["message"]
    assert message["id"] == "msg-1"
    assert message["role"] == "assistant"
    kinds = [part["type"] for part in message["parts"]]
    assert kinds == [
        "step-start",
        "reasoning",
        "text",
        "tool-get_weather",
        "tool-get_weather",
    ]
    reasoning, text, *tools = message["parts"][1:]
    assert reasoning["text"] == "".join(REASONING_DELTAS)
    assert text["text"] == "".join(TEXT_DELTAS)
    assert [(t["toolCallId"], t["state"], t["input"]) for t in tools] == [
        (call["id"], "input-available", json.loads(call["arguments"])) for call in TOOL_CALLS
    ]
    assert message["metadata"] == {
        "finishReason": "tool-calls",
        "usage": {"inputTokens": INPUT_TOKENS, "outputTokens": OUTPUT_TOKENS},
    }
    deltas = [c for c in out["chunks"] if c["type"] == "tool-input-delta"]
    assert len(deltas) >= 20  # both calls' arguments arrived in >= 10 pieces each


def test_an_upstream_error_becomes_an_error_part(node_ai: str, server: str) -> None:
    """Text, then the upstream's error: the stream carries the text, an `error` part with the
    generic message (no upstream text), then `[DONE]`; the `ai` reader reports that error."""
    with (
        httpx.Client(timeout=DEADLINE) as client,
        client.stream("GET", f"{server}/ui/anthropic/error-mid") as response,
    ):
        events = StreamReader(response).rest()
    data = [event.data for event in events]
    assert data[-1] == "[DONE]"
    parts = [json.loads(item) for item in data[:-1]]
    assert [p["delta"] for p in parts if p["type"] == "text-delta"] == ERROR_MID_DELTAS
    assert parts[-2:] == [
        {"type": "text-end", "id": parts[-3]["id"]},
        {"type": "error", "errorText": "The model service reported an error."},
    ]
    result = read_with_node(node_ai, f"{server}/ui/anthropic/error-mid", "ai")
    assert result.returncode == 1
    assert "The model service reported an error." in result.stderr


@pytest.mark.parametrize("vendor", ["openai", "anthropic"])
def test_openai_chunk_format_reads_back_through_the_openai_engine(server: str, vendor: str) -> None:
    """Any engine fronted with `openai_chunk_stream`: `OpenAICompatibleEngine` pointed at it gets
    the same chunks as from the upstream directly (reasoning, text, both calls, finish, usage)."""

    async def run() -> list[dict[str, Any]]:
        fronted = OpenAICompatibleEngine(f"{server}/openai/{vendor}/tools", model="fronted")
        return [dict(chunk) async for chunk in fronted.stream(MESSAGES)]

    got = asyncio.run(asyncio.wait_for(run(), DEADLINE))
    assert [c["reasoning"] for c in got if "reasoning" in c] == REASONING_DELTAS
    assert [c["content"] for c in got if c["content"]] == TEXT_DELTAS
    calls = ToolCallAssembler()
    for chunk in got:
        calls.feed(chunk)
    assert calls.calls == TOOL_CALLS
    assert got[-2:] == [
        {"content": "", "finish_reason": "tool_calls"},
        {"content": "", "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS}},
    ]


def test_openai_chunk_format_shape_and_error() -> None:
    """The wire shape in full for a tiny sync source, and a failing source's error payload."""

    def source() -> Iterator[dict[str, Any]]:
        yield {"content": "Hi"}
        yield {"content": "", "tool_call": {"index": 0, "id": "c", "name": "f", "arguments": "{"}}
        yield {"content": "", "tool_call": {"index": 0, "id": "c", "name": "f", "arguments": "}"}}
        raise StreamError("Quota exceeded.")

    out = list(openai_chunk_stream(source(), model="m", completion_id="chatcmpl-1"))
    deltas = [item["choices"][0]["delta"] for item in out[:-1]]
    assert deltas == [
        {"role": "assistant", "content": ""},
        {"content": "Hi"},
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "c",
                    "type": "function",
                    "function": {"name": "f", "arguments": "{"},
                }
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": "}"}}]},
    ]
    assert {(item["id"], item["object"], item["model"]) for item in out[:-1]} == {
        ("chatcmpl-1", "chat.completion.chunk", "m")
    }
    assert out[-1] == {"error": {"message": "Quota exceeded.", "type": "server_error"}}


def test_ui_stream_hides_an_unexpected_error() -> None:
    """A source failing with anything but a `StreamError`: a generic `error` part, never the
    exception's text; `[DONE]` still ends the stream."""

    def source() -> Iterator[dict[str, Any]]:
        yield {"content": "a"}
        raise RuntimeError("secret internals")

    out = list(ui_message_stream(source()))
    assert out[-2:] == [{"type": "error", "errorText": "The stream failed."}, "[DONE]"]
    assert "secret" not in json.dumps(out)


def test_a_ui_format_run_is_read_by_the_ai_package(node_ai: str) -> None:
    """`Runs(format="ui")`: the run's topic is the UI message stream; followed over HTTP, the
    `ai` package reads it whole (the `done` event's `[DONE]` included) and the stream ends."""
    from ssekit.adapters.starlette import last_event_id
    from ssekit.broker import MemoryBroker
    from ssekit.runs import Runs

    fake = FakeAnthropic()
    runs = Runs(MemoryBroker(), format="ui")
    with uvicorn_server(fake.app) as upstream:
        engine = AnthropicEngine(f"{upstream}/v1", api_key="k", model="tools")

        async def start(request: Request) -> Response:
            run = runs.start(engine, MESSAGES)
            return Response(run.id)

        async def follow(request: Request) -> Response:
            source = runs.follow(request.path_params["run"], last_event_id(request))
            return SSEResponse(source, headers=UI_MESSAGE_STREAM_HEADERS)

        routes = [Route("/runs", start, methods=["POST"]), Route("/runs/{run}", follow)]
        with uvicorn_server(Starlette(routes=routes)) as url:
            run_id = httpx.post(f"{url}/runs", timeout=DEADLINE).text
            result = read_with_node(node_ai, f"{url}/runs/{run_id}", "ai-5.0.0")
    assert result.returncode == 0, result.stderr
    message = json.loads(result.stdout)["message"]
    assert message["id"] == run_id
    assert [part["type"] for part in message["parts"]][1:] == [
        "reasoning",
        "text",
        "tool-get_weather",
        "tool-get_weather",
    ]
    assert [part.get("input") for part in message["parts"][3:]] == [
        json.loads(call["arguments"]) for call in TOOL_CALLS
    ]
