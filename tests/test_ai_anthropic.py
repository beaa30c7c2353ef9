"""`AnthropicEngine` over real HTTP against a fake Messages API that streams Anthropic's named
events: the chunks, the request, errors kept from the client, and the upstream request closed
when the client leaves (measured at the fake server)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
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
from fake_anthropic import (
    ERROR_MID_DELTAS,
    ERROR_MID_MESSAGE,
    HTTP_ERRORS,
    REPLY_DELTAS,
    FakeAnthropic,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from support.asgi_servers import DEADLINE, StreamReader, uvicorn_server
from support.fake_upstreams import collect, of_kind, serve_fake

from ssekit import StreamError
from ssekit.adapters.starlette import SSEResponse
from ssekit.ai import ANTHROPIC_VERSION, AnthropicEngine, ToolCallAssembler

pytestmark = pytest.mark.timeout(30)

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris and Tokyo?"},
]
UPSTREAM_CLOSE_LIMIT = 1.0


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    yield from serve_fake(FakeAnthropic())


def engine_for(fake: FakeAnthropic, **options: Any) -> AnthropicEngine:
    base_url = fake.base_url  # type: ignore[attr-defined]
    return AnthropicEngine(base_url, api_key="sk-ant-test", model="tools", **options)


def test_the_named_events_become_the_common_chunks(fake: FakeAnthropic) -> None:
    """Thinking, text, two `tool_use` blocks with their input in 11+ `input_json_delta`s,
    `stop_reason: tool_use` and the usage: the chunks are the same shape the OpenAI engine
    yields, the calls reassemble exactly (ids, names, JSON text), tool indexes count calls
    (not content blocks), `tool_use` reads as `tool_calls`, and the usage carries the
    upstream's counts (input from `message_start`, output from `message_delta`)."""
    chunks = asyncio.run(collect(engine_for(fake).stream(MESSAGES)))
    assert all(isinstance(chunk["content"], str) and len(chunk) <= 2 for chunk in chunks)
    assert of_kind(chunks, "reasoning") == REASONING_DELTAS
    assert [chunk["content"] for chunk in chunks if chunk["content"]] == TEXT_DELTAS
    fragments = of_kind(chunks, "tool_call")
    assert {f["index"] for f in fragments} == {0, 1}
    for i in (0, 1):  # the opening fragment (id, name), then >= 10 pieces of arguments
        assert len([f for f in fragments if f["index"] == i and f["arguments"]]) >= 10
    assembler = ToolCallAssembler()
    for chunk in chunks:
        assembler.feed(chunk)
    assert assembler.calls == TOOL_CALLS
    assert chunks[-2:] == [
        {"content": "", "finish_reason": "tool_calls"},
        {"content": "", "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS}},
    ]


def test_the_request_is_anthropics(fake: FakeAnthropic) -> None:
    """System messages go to `system`; the key in `x-api-key`; `anthropic-version` set;
    `max_tokens` always (Anthropic requires it); OpenAI-style tools converted; stored tool
    calls and tool results become `tool_use` / `tool_result` blocks; parameters pass through."""
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city.",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    history = [
        *MESSAGES,
        {"role": "assistant", "content": "", "tool_calls": TOOL_CALLS[:1], "partial": True},
        {"role": "tool", "tool_call_id": TOOL_CALLS[0]["id"], "content": "21 °C"},
    ]
    engine = engine_for(fake, max_tokens=100, temperature=0.2)
    asyncio.run(collect(engine.stream(history, model="script", tools=tools)))
    call = fake.last_call()
    assert call.headers["x-api-key"] == "sk-ant-test"
    assert call.headers["anthropic-version"] == ANTHROPIC_VERSION
    assert "authorization" not in call.headers
    assert call.body == {
        "model": "script",
        "max_tokens": 100,
        "temperature": 0.2,
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": "Weather in Paris and Tokyo?"},
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": TOOL_CALLS[0]["id"],
                        "name": "get_weather",
                        "input": json.loads(TOOL_CALLS[0]["arguments"]),
                    }
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": TOOL_CALLS[0]["id"],
                        "content": "21 °C",
                    }
                ],
            },
        ],
        "tools": [
            {
                "name": "get_weather",
                "input_schema": tools[0]["function"]["parameters"],
                "description": "Weather for a city.",
            }
        ],
        "stream": True,
    }


def test_a_text_reply_ends_at_message_stop(fake: FakeAnthropic) -> None:
    chunks = asyncio.run(collect(engine_for(fake).stream(MESSAGES, model="script")))
    assert [c["content"] for c in chunks if c["content"]] == REPLY_DELTAS
    assert of_kind(chunks, "finish_reason") == ["stop"]


def test_the_key_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-from-env")
    assert AnthropicEngine().api_key == "sk-ant-from-env"
    assert AnthropicEngine(api_key="given").api_key == "given"
    with pytest.raises(ValueError, match="base_url must be an http"):
        AnthropicEngine("api.anthropic.com")
    with pytest.raises(ValueError, match="max_tokens must be a positive int"):
        AnthropicEngine(max_tokens=0)


@pytest.mark.parametrize("model", sorted(HTTP_ERRORS))
def test_an_upstream_http_error_stays_on_the_server(
    fake: FakeAnthropic, model: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A 429 or a 401 whose body echoes the key: the client's message names only the status;
    the upstream text is logged with the key redacted; `expose_upstream_errors=True` adds the
    (redacted) upstream message."""
    status, _, message = HTTP_ERRORS[model]
    caplog.set_level(logging.WARNING, logger="ssekit")
    with pytest.raises(StreamError) as raised:
        asyncio.run(collect(engine_for(fake).stream(MESSAGES, model=model)))
    assert str(raised.value) == f"The model service answered {status}."
    assert "sk-ant-secret" not in caplog.text
    assert message.split(":")[0] in caplog.text
    engine = engine_for(fake, expose_upstream_errors=True)
    with pytest.raises(StreamError) as exposed:
        asyncio.run(collect(engine.stream(MESSAGES, model=model)))
    assert str(exposed.value).startswith(f"The model service answered {status}: ")
    assert message.split(":")[0] in str(exposed.value)
    assert "sk-ant-secret" not in str(exposed.value)


@pytest.fixture(scope="module")
def chat_server(fake: FakeAnthropic) -> Iterator[str]:
    """Our side: `GET /chat?model=M` serves the engine's stream with `SSEResponse`."""
    engine = engine_for(fake)

    async def chat(request: Request) -> Response:
        model = request.query_params.get("model", "script")
        return SSEResponse(engine.stream(MESSAGES, model=model), end="[DONE]")

    with uvicorn_server(Starlette(routes=[Route("/chat", chat)])) as url:
        yield url


def test_an_error_event_mid_stream_reaches_the_client_generic(chat_server: str) -> None:
    """Text deltas, then Anthropic's `error` event: the client gets the text, then an `error`
    event saying only that the model service reported an error."""
    with (
        httpx.Client(timeout=DEADLINE) as client,
        client.stream("GET", f"{chat_server}/chat?model=error-mid") as response,
    ):
        events = StreamReader(response).rest()
    assert [(e.type, json.loads(e.data)) for e in events] == [
        *[("message", {"content": delta}) for delta in ERROR_MID_DELTAS],
        ("error", {"message": "The model service reported an error."}),
    ]
    assert ERROR_MID_MESSAGE not in str(events)


def test_a_client_leaving_closes_the_upstream_request(
    fake: FakeAnthropic, chat_server: str
) -> None:
    """An httpx client reads a few events of an endless reply and leaves: the fake upstream
    sees its request closed within 1 s."""
    with (
        httpx.Client(timeout=DEADLINE) as client,
        client.stream("GET", f"{chat_server}/chat?model=endless") as response,
    ):
        events = StreamReader(response).events(3)
        assert [json.loads(e.data)["content"] for e in events] == ["<0>", "<1>", "<2>"]
        call = fake.last_call()
        left_at = time.monotonic()
        response.close()
    assert call.disconnected.wait(DEADLINE), "the upstream request was never closed"
    assert call.disconnected_at is not None
    assert call.disconnected_at - left_at < UPSTREAM_CLOSE_LIMIT
