"""`OpenAICompatibleEngine` and `relay()` over real HTTP, against a fake OpenAI-compatible server.

The fake (`fake_openai.FakeOpenAI`) runs under uvicorn on 127.0.0.1 and records each request and
when its client disconnected.  The engine talks to it with httpx; where the chain matters, the
engine's stream is served by `SSEResponse` under a second uvicorn and read by an httpx client:

    fake upstream <- OpenAICompatibleEngine <- SSEResponse (uvicorn) <- httpx client

Measured figures (how long after our client left the upstream request was closed) are printed
(`pytest -s` shows them).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from asgi_servers import DEADLINE, StreamReader, latency_summary, uvicorn_server
from fake_openai import (
    ERROR_MID_DELTAS,
    ERROR_MID_MESSAGE,
    HTTP_ERRORS,
    REPLY_DELTAS,
    REPLY_TEXT,
    FakeOpenAI,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ssekit import EventParser, MessageEvent, StreamError
from ssekit.adapters.starlette import SSEResponse
from ssekit.ai import OpenAICompatibleEngine, relay
from ssekit.client import EventSource

pytestmark = pytest.mark.timeout(30)

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Say hello ☕"},
]
#: What the engine yields for the fake's scripted reply: empty deltas dropped, the finish kept.
SCRIPT_CHUNKS = [{"content": delta} for delta in REPLY_DELTAS if delta] + [
    {"content": "", "finish_reason": "stop"}
]
#: The most the upstream request may stay open after our client left (the issue's criterion).
UPSTREAM_CLOSE_LIMIT = 1.0


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    with uvicorn_server(fake.app) as url:
        fake.base_url = f"{url}/v1"  # type: ignore[attr-defined]
        yield fake


def engine_for(fake: FakeOpenAI, **defaults: Any) -> OpenAICompatibleEngine:
    return OpenAICompatibleEngine(
        fake.base_url,  # type: ignore[attr-defined]
        api_key="sk-test",
        model="gpt-fake",
        timeout=10,
        **defaults,
    )


@pytest.fixture(scope="module")
def chat_server(fake: FakeOpenAI) -> Iterator[str]:
    """Our side: `GET /chat?model=M` serves the engine's stream with `SSEResponse`."""
    engine = engine_for(fake)

    async def chat(request: Request) -> Response:
        model = request.query_params.get("model", "gpt-fake")
        return SSEResponse(engine.stream(MESSAGES, model=model), end="[DONE]")

    with uvicorn_server(Starlette(routes=[Route("/chat", chat)])) as url:
        yield url


async def collect(source: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        return [chunk async for chunk in source]

    return await asyncio.wait_for(run(), DEADLINE)


def read_all_events(url: str) -> list[MessageEvent]:
    """Every event of the stream at `url`, until the server ends it."""
    with httpx.Client(timeout=DEADLINE) as client, client.stream("GET", url) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return StreamReader(response).rest()


def test_engine_streams_the_reply_exactly_and_stops_at_done(fake: FakeOpenAI) -> None:
    """The chunks are the upstream deltas exactly (unicode, a line break; role-only and empty
    deltas and comments skipped; the finish reason kept).  The fake keeps its response open after
    `data: [DONE]`, so the stream ending at all proves `[DONE]` ends it, and the upstream
    connection is then closed.  The request carries the messages, `stream: true`, a request for
    the usage chunk, the model, the engine's defaults overridden per call, and the API key."""
    engine = engine_for(fake, temperature=0.5, max_tokens=64)
    chunks = asyncio.run(collect(engine.stream(MESSAGES, temperature=0)))
    assert chunks == SCRIPT_CHUNKS
    assert "".join(chunk["content"] for chunk in chunks) == REPLY_TEXT
    call = fake.last_call()
    assert call.body == {
        "model": "gpt-fake",
        "temperature": 0,
        "max_tokens": 64,
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert call.headers["authorization"] == "Bearer sk-test"
    assert call.headers["accept"] == "text/event-stream"
    assert call.disconnected.wait(DEADLINE), "the upstream response was left open after [DONE]"


def test_the_reply_reaches_the_client_through_sse_response(chat_server: str) -> None:
    """Served by `SSEResponse(..., end="[DONE]")`, the client gets one message per chunk, with the
    content exact, then `[DONE]`, and the response ends."""
    events = read_all_events(f"{chat_server}/chat")
    assert [event.type for event in events] == ["message"] * (len(SCRIPT_CHUNKS) + 1)
    assert [json.loads(event.data) for event in events[:-1]] == SCRIPT_CHUNKS
    assert events[-1].data == "[DONE]"


@pytest.mark.parametrize("model", sorted(HTTP_ERRORS))
def test_an_upstream_http_error_becomes_an_error_event(
    fake: FakeOpenAI, chat_server: str, model: str
) -> None:
    """An upstream 429/500 with an OpenAI-style error body is a `StreamError` naming the status
    and the upstream message; through `SSEResponse` the client gets it as the stream's only
    event, `event: error`, and no `[DONE]`."""
    status, message = HTTP_ERRORS[model]
    expected = f"The model service answered {status}: {message}"
    with pytest.raises(StreamError) as raised:
        asyncio.run(collect(engine_for(fake).stream(MESSAGES, model=model)))
    assert str(raised.value) == expected
    events = read_all_events(f"{chat_server}/chat?model={model}")
    assert [(event.type, json.loads(event.data)) for event in events] == [
        ("error", {"message": expected})
    ]


def test_an_error_payload_mid_stream_becomes_an_error_event(
    fake: FakeOpenAI, chat_server: str
) -> None:
    """Upstream content chunks, then `{"error": {"message": ...}}`: the chunks before it are
    yielded, then a `StreamError` with its message, which the client receives as an `error`
    event after the content (and no `[DONE]`)."""
    seen: list[dict[str, Any]] = []

    async def run() -> None:
        async for chunk in engine_for(fake).stream(MESSAGES, model="error-mid"):
            seen.append(chunk)  # noqa: PERF401 (the chunks before the error are the point)

    with pytest.raises(StreamError) as raised:
        asyncio.run(asyncio.wait_for(run(), DEADLINE))
    expected = f"The model service failed: {ERROR_MID_MESSAGE}"
    assert str(raised.value) == expected
    assert seen == [{"content": delta} for delta in ERROR_MID_DELTAS]
    events = read_all_events(f"{chat_server}/chat?model=error-mid")
    assert [(event.type, json.loads(event.data)) for event in events] == [
        *[("message", {"content": delta}) for delta in ERROR_MID_DELTAS],
        ("error", {"message": expected}),
    ]


def test_an_unreachable_service_is_a_stream_error() -> None:
    """Nothing listening at the base URL: a `StreamError` saying the service could not be
    reached (the client would see that message), not an httpx exception."""
    import socket

    with socket.socket() as probe:  # a port nothing listens on: bound, never listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        engine = OpenAICompatibleEngine(f"http://127.0.0.1:{port}/v1", model="m", timeout=5)
        with pytest.raises(StreamError, match="could not be reached"):
            asyncio.run(collect(engine.stream(MESSAGES)))


def test_closing_the_engine_stream_closes_the_upstream_request(fake: FakeOpenAI) -> None:
    """`aclose()` on the engine's stream after a few chunks of an endless reply closes the
    upstream HTTP response: the fake sees its client disconnect."""

    async def run() -> float:
        stream = engine_for(fake).stream(MESSAGES, model="endless")
        received = [await stream.__anext__() for _ in range(3)]
        assert [chunk["content"] for chunk in received] == ["<0>", "<1>", "<2>"]
        closed_at = time.monotonic()
        await stream.aclose()  # type: ignore[attr-defined]
        return closed_at

    closed_at = asyncio.run(asyncio.wait_for(run(), DEADLINE))
    call = fake.last_call()
    assert call.disconnected.wait(DEADLINE), "the upstream request was not closed"
    assert call.disconnected_at is not None
    assert call.disconnected_at - closed_at < UPSTREAM_CLOSE_LIMIT


def test_a_client_leaving_closes_the_upstream_request_within_a_second(
    fake: FakeOpenAI, chat_server: str
) -> None:
    """The whole chain, five times: an httpx client reads a few events of an endless reply
    served by `SSEResponse` and leaves; the fake upstream sees its request closed well within
    1 s of that (the model stops generating for nobody).  The figures are printed."""
    figures: list[float] = []
    for _ in range(5):
        calls_before = len(fake.calls)
        with (
            httpx.Client(timeout=DEADLINE) as client,
            client.stream("GET", f"{chat_server}/chat?model=endless") as response,
        ):
            reader = StreamReader(response)
            events = reader.events(4)
            assert [json.loads(event.data)["content"] for event in events] == [
                "<0>",
                "<1>",
                "<2>",
                "<3>",
            ]
            call = fake.last_call()
            assert len(fake.calls) == calls_before + 1
            assert not call.disconnected.is_set()
            left_at = time.monotonic()
            response.close()
        assert call.disconnected.wait(DEADLINE), "the upstream request was never closed"
        assert call.disconnected_at is not None
        figures.append(call.disconnected_at - left_at)
    print("\n" + latency_summary("client left -> upstream request closed", figures))
    assert max(figures) < UPSTREAM_CLOSE_LIMIT, figures


# -- relay ---------------------------------------------------------------------------------

#: An upstream stream with every field in play, in pieces as they are written.
UPSTREAM_PIECES = [
    b"retry: 2500\n\n",  # a retry alone: nothing is dispatched
    b": a comment\n\n",
    b"data: first\n\n",
    b'event: token\nid: 1\ndata: {"content": "Hel"}\n\n',
    b"data: line 1\r\ndata: line 2\rdata:  leading space\n\n",
    b"id: 2\nevent: update\ndata: multi\ndata:\ndata: line\n\n",
    b"data\n\n",  # empty data, dispatched
    b"id: 3\ndata: id three\nretry: 1200\n\n",
    b"data: same id\n\n",
    b"id\ndata: id reset\n\n",
    b"event: message\ndata: explicitly a message\n\n",
    "data: café ☕ \u2028 after U+2028\n\n".encode(),
    b"id: 4\n\n",  # an id alone: no event, but the last event id changes
    b"data: after an id alone\n\n",
    b"event: done\ndata: [DONE]\n\n",
    b"retry: 700\n\n",  # a retry at the very end
    b"id: 5\n\n",  # an id at the very end
]


@pytest.fixture(scope="module")
def relay_server() -> Iterator[str]:
    """`/upstream` serves `UPSTREAM_PIECES`; `/relay` serves `relay()` of it via `SSEResponse`;
    `/relay-missing` relays a URL that answers 404."""

    async def upstream(request: Request) -> Response:
        async def pieces() -> AsyncIterator[bytes]:
            for piece in UPSTREAM_PIECES:
                yield piece
                await asyncio.sleep(0.002)

        return StreamingResponse(pieces(), media_type="text/event-stream")

    async def relayed(request: Request) -> Response:
        base = str(request.base_url).rstrip("/")
        return SSEResponse(relay(f"{base}/upstream"))

    async def relayed_missing(request: Request) -> Response:
        base = str(request.base_url).rstrip("/")
        return SSEResponse(relay(f"{base}/nowhere"))

    app = Starlette(
        routes=[
            Route("/upstream", upstream),
            Route("/relay", relayed),
            Route("/relay-missing", relayed_missing),
        ]
    )
    with uvicorn_server(app) as url:
        yield url


def parse_whole(url: str) -> tuple[list[MessageEvent], EventParser]:
    """The events of the stream at `url`, and the parser (its final `retry`, last event id)."""
    parser = EventParser()
    events: list[MessageEvent] = []
    with httpx.Client(timeout=DEADLINE) as client, client.stream("GET", url) as response:
        assert response.status_code == 200
        for data in response.iter_bytes():
            events.extend(parser.feed(data))
    parser.end_of_stream()
    return events, parser


def test_relay_preserves_types_ids_data_and_retry_exactly(relay_server: str) -> None:
    """Parsed, the relayed stream is the upstream stream: the same events (types, multi-line data,
    empty data, leading spaces, unicode, ids set, kept, reset), and the same `retry` and last
    event id at the end, even where upstream set them without an event after."""
    upstream_events, upstream = parse_whole(f"{relay_server}/upstream")
    relayed_events, relayed = parse_whole(f"{relay_server}/relay")
    assert len(upstream_events) == 12  # the fixture is what it claims to be
    assert {e.type for e in upstream_events} == {"message", "token", "update", "done"}
    assert any("\n" in e.data for e in upstream_events)
    assert relayed_events == upstream_events
    assert (relayed.retry, relayed.last_event_id) == (upstream.retry, upstream.last_event_id)
    assert (upstream.retry, upstream.last_event_id) == (700, "5")


def test_relay_serves_ssekit_client(relay_server: str) -> None:
    """`ssekit.client.EventSource` reading the relay receives the upstream events, in order, and
    its last event id follows the upstream ids (what it would resume from)."""
    upstream_events, _ = parse_whole(f"{relay_server}/upstream")
    received: list[MessageEvent] = []
    with EventSource(f"{relay_server}/relay") as source:
        for message in source:
            received.append(message)
            if message.type == "done":
                assert source.last_event_id == "4"
                break
    assert received == upstream_events


def test_relay_of_a_failing_upstream_is_an_error_event(relay_server: str) -> None:
    """An upstream answering 404 becomes a `StreamError`: the client gets one `error` event
    naming the status."""
    events = read_all_events(f"{relay_server}/relay-missing")
    assert [event.type for event in events] == ["error"]
    assert "404" in json.loads(events[0].data)["message"]
