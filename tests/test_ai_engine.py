"""`OpenAICompatibleEngine` and `relay()` over real HTTP, against a fake OpenAI-compatible server.

The fake (`fake_openai.FakeOpenAI`) runs under uvicorn on 127.0.0.1 and records each request and
when its client disconnected.  The engine talks to it with httpx; where the chain matters, the
engine's stream is served by `SSEResponse` under a second uvicorn and read by an httpx client:

    fake upstream <- OpenAICompatibleEngine <- SSEResponse (uvicorn) <- httpx client
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fake_openai import (
    ERROR_MID_DELTAS,
    ERROR_MID_MESSAGE,
    HTTP_ERRORS,
    LEAKED_KEY,
    LEAKED_TOKEN,
    REPLY_DELTAS,
    REPLY_TEXT,
    UNAUTHORIZED_BODY,
    FakeOpenAI,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from support.asgi_servers import DEADLINE, StreamReader, uvicorn_server
from support.fake_upstreams import serve_fake

from ssekit import EventParser, MessageEvent, StreamError
from ssekit.adapters.starlette import SSEResponse
from ssekit.ai import OpenAICompatibleEngine, redact_secrets, relay
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
    yield from serve_fake(FakeOpenAI())


def engine_for(fake: FakeOpenAI, **defaults: Any) -> OpenAICompatibleEngine:
    """An engine on the fake, with the fake's model and a key of its own (`sk-test`)."""
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
    only (the upstream's message is not shown by default); through `SSEResponse` the client gets
    it as the stream's only event, `event: error`, and no `[DONE]`."""
    status, _ = HTTP_ERRORS[model]
    expected = f"The model service answered {status}."
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
    yielded, then a `StreamError` with a generic message, which the client receives as an
    `error` event after the content (and no `[DONE]`)."""
    seen: list[dict[str, Any]] = []

    async def run() -> None:
        async for chunk in engine_for(fake).stream(MESSAGES, model="error-mid"):
            seen.append(chunk)  # noqa: PERF401 (the chunks before the error are the point)

    with pytest.raises(StreamError) as raised:
        asyncio.run(asyncio.wait_for(run(), DEADLINE))
    expected = "The model service reported an error."
    assert str(raised.value) == expected
    assert seen == [{"content": delta} for delta in ERROR_MID_DELTAS]
    events = read_all_events(f"{chat_server}/chat?model=error-mid")
    assert [(event.type, json.loads(event.data)) for event in events] == [
        *[("message", {"content": delta}) for delta in ERROR_MID_DELTAS],
        ("error", {"message": expected}),
    ]


def test_an_oversized_upstream_line_is_a_stable_stream_error(fake: FakeOpenAI) -> None:
    """An upstream line past the parser's limit (8 MiB) ends the reply with a `StreamError` of
    our own words, after the text that came before it: not a parser error and no upstream text."""
    seen: list[Any] = []

    async def run() -> None:
        async for chunk in engine_for(fake).stream(MESSAGES, model="oversized"):
            seen.append(chunk)  # noqa: PERF401 (the chunk before the long line is the point)

    with pytest.raises(StreamError) as raised:
        asyncio.run(asyncio.wait_for(run(), DEADLINE))
    assert str(raised.value) == "The model service sent an event larger than this server accepts."
    assert [chunk["content"] for chunk in seen] == ["Hel"]


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
    1 s of that (the model stops generating for nobody)."""
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
    assert max(figures) < UPSTREAM_CLOSE_LIMIT, figures


# -- upstream errors never leak ---------------------------------------------------------------

#: What the client sees for each leaking upstream answer of the fake.
LEAK_CASES = {
    "http-401-key": [("error", "The model service answered 401.")],
    "http-502-html": [("error", "The model service answered 502.")],
    "error-mid-key": [
        *[("message", delta) for delta in ERROR_MID_DELTAS],
        ("error", "The model service reported an error."),
    ],
}


def read_raw(url: str) -> bytes:
    """Every byte of the response at `url`, as the client receives it."""
    with httpx.Client(timeout=DEADLINE) as client, client.stream("GET", url) as response:
        assert response.status_code == 200
        return b"".join(response.iter_bytes())


def events_of(raw: bytes) -> list[tuple[str, str]]:
    """(type, message or content) of each event in `raw`."""
    parser = EventParser()
    events = list(parser.feed(raw))
    parser.end_of_stream()
    shown = []
    for event in events:
        payload = json.loads(event.data)
        shown.append((event.type, payload.get("message", payload.get("content"))))
    return shown


def ssekit_log(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.name == "ssekit")


@pytest.mark.parametrize("model", sorted(LEAK_CASES))
def test_upstream_secrets_never_reach_the_client_and_are_redacted_in_the_log(
    chat_server: str, caplog: pytest.LogCaptureFixture, model: str
) -> None:
    """An upstream 401 whose message echoes the key, a proxy's 502 HTML page with a token in it,
    and a mid-stream error payload echoing the key: the bytes the client receives hold neither
    the key nor the token, only a generic message with the status; the `ssekit` log has the
    upstream's body with the secret redacted."""
    caplog.set_level(logging.WARNING, logger="ssekit")
    raw = read_raw(f"{chat_server}/chat?model={model}")
    assert LEAKED_KEY.encode() not in raw
    assert b"sk-live" not in raw
    assert LEAKED_TOKEN.encode() not in raw
    assert events_of(raw) == LEAK_CASES[model]
    logged = ssekit_log(caplog)
    assert "[REDACTED]" in logged, logged
    assert LEAKED_KEY not in logged
    assert LEAKED_TOKEN not in logged
    if model == "http-502-html":
        assert "502 Bad Gateway" in logged  # the body is there, for whoever runs the server


def test_expose_upstream_errors_shows_the_redacted_upstream_message(fake: FakeOpenAI) -> None:
    """With `expose_upstream_errors=True` the client's message carries the upstream's own
    message, still with credentials redacted."""
    engine = engine_for(fake, expose_upstream_errors=True)
    status, message = HTTP_ERRORS["http-429"]
    with pytest.raises(StreamError) as raised:
        asyncio.run(collect(engine.stream(MESSAGES, model="http-429")))
    assert str(raised.value) == f"The model service answered {status}: {message}"
    with pytest.raises(StreamError) as raised:
        asyncio.run(collect(engine.stream(MESSAGES, model="http-401-key")))
    assert str(raised.value).startswith(
        "The model service answered 401: Incorrect API key provided: sk-[REDACTED]."
    )
    assert LEAKED_KEY not in str(raised.value)
    with pytest.raises(StreamError) as raised:
        asyncio.run(collect(engine.stream(MESSAGES, model="error-mid")))
    assert str(raised.value) == f"The model service reported an error: {ERROR_MID_MESSAGE}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Incorrect API key provided: sk-live-abc123XYZ.",
            "Incorrect API key provided: sk-[REDACTED].",
        ),
        ("Authorization: Bearer abc.def-ghi", "Authorization: Bearer [REDACTED]"),
        ("GET /v1?api_key=abcd1234&x=1", "GET /v1?api_key=[REDACTED]&x=1"),
        ('{"api-key": "zzzz", "n": 1}', '{"api-key": "[REDACTED]", "n": 1}'),
        ("x-api-key: qwerty123", "x-api-key: [REDACTED]"),
        ("API-KEY=Q1W2", "API-KEY=[REDACTED]"),
        ("secret key 0123456789abcdef0123456789abcdef", "secret key [REDACTED]"),
        ("token: dGhpcyBpcyBhIHNlY3JldA==", "token: [REDACTED]"),
        ('password="hunter2"', 'password="[REDACTED]"'),
        ("<h1>502 Bad Gateway</h1>", "<h1>502 Bad Gateway</h1>"),
        ("the monkey has 3 keys and a token", "the monkey has 3 keys and a token"),
    ],
)
def test_redact_secrets(text: str, expected: str) -> None:
    """Credentials in their usual shapes are replaced; text without any is left alone."""
    assert redact_secrets(text) == expected


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
    `/relay-missing` relays a URL that answers 404, `/relay-401` one that answers 401 with a body
    echoing a key, `/relay-401-exposed` the same with `expose_upstream_errors=True`."""

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

    async def unauthorized(request: Request) -> Response:
        return JSONResponse(UNAUTHORIZED_BODY, status_code=401)

    async def relayed_401(request: Request) -> Response:
        base = str(request.base_url).rstrip("/")
        expose = request.url.path.endswith("exposed")
        return SSEResponse(relay(f"{base}/unauthorized", expose_upstream_errors=expose))

    app = Starlette(
        routes=[
            Route("/upstream", upstream),
            Route("/relay", relayed),
            Route("/relay-missing", relayed_missing),
            Route("/unauthorized", unauthorized),
            Route("/relay-401", relayed_401),
            Route("/relay-401-exposed", relayed_401),
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


def test_relay_of_an_upstream_401_does_not_leak_its_body(
    relay_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An upstream answering 401 with a body that echoes the key: the client receives only "The
    upstream stream answered 401." (not the key, in any byte); the log has the body, redacted.
    With `expose_upstream_errors=True` the upstream's message is shown, still redacted."""
    caplog.set_level(logging.WARNING, logger="ssekit")
    raw = read_raw(f"{relay_server}/relay-401")
    assert LEAKED_KEY.encode() not in raw
    assert b"sk-live" not in raw
    assert events_of(raw) == [("error", "The upstream stream answered 401.")]
    logged = ssekit_log(caplog)
    assert "sk-[REDACTED]" in logged
    assert LEAKED_KEY not in logged
    exposed = events_of(read_raw(f"{relay_server}/relay-401-exposed"))
    assert exposed == [
        (
            "error",
            "The upstream stream answered 401: Incorrect API key provided: sk-[REDACTED]. "
            "You can find your API key at ...",
        )
    ]
