"""`EventSource` and `AsyncEventSource` against real servers on 127.0.0.1.

Two kinds of server:

- ssekit's own adapters: a Starlette app under uvicorn and a Flask app under werkzeug's server,
  both in threads of this process, streaming numbered events that resume from `Last-Event-ID`
  and answering 204 once everything has been sent;
- `raw_sse_server`: a plain-socket HTTP/1.1 server whose handlers write every byte by hand and
  cut the stream where they like, drop the connection mid-event, stall, or answer with the
  wrong status or Content-Type.  It records each request, so the tests check what the client
  sent when it reconnected.

What is proved: messages (`type`, `data`, `last_event_id`, `json()`) come out as the browser's
`EventSource` would dispatch them, each as soon as its blank line has arrived; `Last-Event-ID`
(UTF-8) is sent on every reconnection; the delay follows `retry:` and backs off (jittered,
capped) while failures repeat; `ready_state` follows the connection; redirects are followed;
HTTP 204 stops for good; a non-2xx status or another Content-Type raises `SSEResponseError`
with the status and the start of the body (without waiting for the rest); network errors
reconnect; custom headers, auth, parameters, bodies, timeouts and an existing httpx client are
used; `close()` from another thread or task ends a blocked read, a wait for the response
headers or a reconnection delay promptly.  How promptly is measured by
`benchmarks/bench_latency.py`.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from flask import Flask
from flask import Response as FlaskResponse
from flask import request as flask_request
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from support.asgi_servers import SAMPLE_CHUNKS, SAMPLE_EVENTS, uvicorn_server
from support.raw_sse_server import (
    RawConnection,
    RawSSEServer,
    by_connection,
    no_content,
    raw_sse_server,
    stream,
)
from support.waiting import wait_until
from support.wsgi_servers import werkzeug_server

from ssekit import Event, MessageEvent, ParseLimitExceeded
from ssekit.adapters.flask import last_event_id as flask_last_event_id
from ssekit.adapters.flask import sse_response
from ssekit.adapters.starlette import SSEResponse
from ssekit.adapters.starlette import last_event_id as starlette_last_event_id
from ssekit.client import AsyncEventSource, EventSource, ReadyState, SSEResponseError

pytestmark = pytest.mark.timeout(30)

#: How long a test waits for something that takes far less (an event, a reconnection, a stop).
DEADLINE = 10.0
#: A reconnection delay short enough to keep the tests fast (ms).
FAST_RETRY = 10


def messages(events: list[MessageEvent]) -> list[tuple[str, str, str]]:
    return [(m.type, m.data, m.last_event_id) for m in events]


class Consumer:
    """Iterates an `EventSource` in a thread of its own; the test waits on what arrives."""

    def __init__(self, source: EventSource) -> None:
        self.source = source
        self.events: list[MessageEvent] = []
        self.error: BaseException | None = None
        self.ended_at: float | None = None
        self._changed = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="event-source-consumer")
        self.thread.start()

    def _run(self) -> None:
        try:
            for message in self.source:
                with self._changed:
                    self.events.append(message)
                    self._changed.notify_all()
        except BaseException as exc:
            self.error = exc
        finally:
            with self._changed:
                self.ended_at = time.monotonic()
                self._changed.notify_all()

    def wait_events(self, n: int, timeout: float = DEADLINE) -> list[MessageEvent]:
        """Wait until `n` messages have arrived; return them all."""
        with self._changed:
            ok = self._changed.wait_for(
                lambda: len(self.events) >= n or self.ended_at is not None, timeout
            )
            assert ok, f"{len(self.events)} of {n} messages in {timeout} s: {self.events}"
            assert len(self.events) >= n, f"iteration ended: {self.events}, {self.error!r}"
            return list(self.events)

    def join(self, timeout: float = DEADLINE) -> float:
        """Wait until iteration has ended; return when it did (monotonic seconds)."""
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"iteration did not end within {timeout} s"
        assert self.ended_at is not None
        return self.ended_at


# -- ssekit's adapters: Starlette under uvicorn, Flask under werkzeug ---------------------------


@dataclass
class AdapterServer:
    name: str
    url: str
    #: The Last-Event-ID of every /numbers request, by its `tag` parameter.
    resumes: dict[str, list[str | None]] = field(default_factory=dict)

    def record(self, tag: str, resume: str | None) -> None:
        self.resumes.setdefault(tag, []).append(resume)


def numbers_after(resume: str | None, total: int, per: int) -> range:
    """The numbers one /numbers response sends: `per` of them after the resumed id."""
    start = int(resume) + 1 if resume else 0
    return range(start, min(start + per, total))


def number_events(numbers: range) -> Iterator[Event]:
    for n in numbers:
        yield Event(json.dumps({"n": n}), event="number", id=str(n))


def starlette_app(server: AdapterServer) -> Starlette:
    async def numbers(request: Request) -> Response:
        params = request.query_params
        resume = starlette_last_event_id(request)
        server.record(params["tag"], resume)
        todo = numbers_after(resume, int(params["total"]), int(params["per"]))
        if not todo:
            return Response(status_code=204)
        return SSEResponse(number_events(todo), retry=FAST_RETRY, heartbeat=None)

    async def samples(request: Request) -> Response:
        return SSEResponse(iter(SAMPLE_CHUNKS), heartbeat=None)

    async def hold(request: Request) -> Response:
        async def ready_then_wait() -> AsyncIterator[str]:
            yield "ready"
            await asyncio.Event().wait()  # until the client leaves (the task is cancelled)

        return SSEResponse(ready_then_wait(), heartbeat=None)

    async def not_a_stream(request: Request) -> Response:
        return JSONResponse({"error": "this is JSON"})

    return Starlette(
        routes=[
            Route("/numbers", numbers),
            Route("/samples", samples),
            Route("/hold", hold),
            Route("/json", not_a_stream),
        ]
    )


def flask_app(server: AdapterServer) -> Flask:
    app = Flask(__name__)

    @app.get("/numbers")
    def numbers() -> FlaskResponse:
        args = flask_request.args
        resume = flask_last_event_id()
        server.record(args["tag"], resume)
        todo = numbers_after(resume, int(args["total"]), int(args["per"]))
        if not todo:
            return FlaskResponse(status=204)
        return sse_response(number_events(todo), retry=FAST_RETRY, heartbeat=None)

    @app.get("/samples")
    def samples() -> FlaskResponse:
        return sse_response(iter(SAMPLE_CHUNKS), heartbeat=None)

    @app.get("/json")
    def not_a_stream() -> FlaskResponse:
        return FlaskResponse('{"error": "this is JSON"}', mimetype="application/json")

    return app


@pytest.fixture(scope="module", params=["uvicorn", "werkzeug"])
def adapter(request: pytest.FixtureRequest) -> Iterator[AdapterServer]:
    """The Starlette app under uvicorn, or the Flask app under werkzeug, for the module."""
    server = AdapterServer(request.param, "")
    if request.param == "uvicorn":
        with uvicorn_server(starlette_app(server)) as url:
            server.url = url
            yield server
    else:
        with werkzeug_server(flask_app(server)) as url:
            server.url = url
            yield server


@pytest.fixture(scope="module")
def starlette_url() -> Iterator[str]:
    """The Starlette app alone under uvicorn (for what only an async source can do)."""
    with uvicorn_server(starlette_app(AdapterServer("uvicorn", ""))) as url:
        yield url


def test_follows_an_adapter_stream_across_reconnects_until_204(adapter: AdapterServer) -> None:
    """Seven events, three per response: the client reconnects with the last id each time,
    gets every event exactly once in order, and stops when the server answers 204."""
    tag = f"sync-{adapter.name}"
    url = f"{adapter.url}/numbers?tag={tag}&total=7&per=3"
    with EventSource(url) as source:
        got = list(source)
        assert source.ready_state is ReadyState.CLOSED
        assert source.last_event_id == "6"
        assert source.retry_ms == FAST_RETRY
    assert [(m.type, m.json(), m.last_event_id) for m in got] == [
        ("number", {"n": n}, str(n)) for n in range(7)
    ]
    assert adapter.resumes[tag] == [None, "2", "5", "6"]


def test_async_follows_an_adapter_stream_across_reconnects_until_204(
    adapter: AdapterServer,
) -> None:
    """The same with `AsyncEventSource`."""
    tag = f"async-{adapter.name}"
    url = f"{adapter.url}/numbers?tag={tag}&total=7&per=3"

    async def main() -> list[MessageEvent]:
        async with AsyncEventSource(url) as source:
            got = [message async for message in source]
            assert source.ready_state is ReadyState.CLOSED
            assert source.last_event_id == "6"
            return got

    got = asyncio.run(main())
    assert [(m.type, m.json(), m.last_event_id) for m in got] == [
        ("number", {"n": n}, str(n)) for n in range(7)
    ]
    assert adapter.resumes[tag] == [None, "2", "5", "6"]


def test_parses_every_kind_of_chunk_from_an_adapter(adapter: AdapterServer) -> None:
    """Strings, JSON, multi-line data, event types, ids, empty data and bytes, as sent by the
    adapter, come out as the browser would dispatch them; `json()` decodes the data."""
    with EventSource(f"{adapter.url}/samples") as source:
        got = []
        for message in source:
            got.append(message)
            if len(got) == len(SAMPLE_EVENTS):
                break
    assert got == SAMPLE_EVENTS
    assert got[1].json() == {"n": 1, "text": "café ☕", "list": [1, 2.5, None]}


def test_a_json_response_from_an_adapter_raises(adapter: AdapterServer) -> None:
    """A 200 that is not `text/event-stream` raises `SSEResponseError` with the body excerpt,
    without reconnecting (reconnecting would not help)."""
    with EventSource(f"{adapter.url}/json") as source, pytest.raises(SSEResponseError) as info:
        list(source)
    error = info.value
    assert error.status_code == 200
    assert error.content_type.startswith("application/json")
    assert json.loads(error.body) == {"error": "this is JSON"}
    assert "this is JSON" in str(error)
    assert source.ready_state is ReadyState.CLOSED


def test_a_404_from_an_adapter_raises(adapter: AdapterServer) -> None:
    """A missing route is a 404: `SSEResponseError` carries the status and the server's body."""
    with EventSource(f"{adapter.url}/missing") as source, pytest.raises(SSEResponseError) as info:
        next(iter(source))
    assert info.value.status_code == 404
    assert "Not Found" in info.value.body


def test_close_from_another_thread_ends_a_read_blocked_on_uvicorn(starlette_url: str) -> None:
    """A client blocked reading a stream that sends nothing more returns at once when another
    thread calls `close()`."""
    with EventSource(f"{starlette_url}/hold") as source:
        consumer = Consumer(source)
        assert [m.data for m in consumer.wait_events(1)] == ["ready"]
        closed_at = time.monotonic()
        source.close()
        ended = consumer.join() - closed_at
    assert consumer.error is None
    assert source.ready_state is ReadyState.CLOSED
    assert ended < 2.0


def test_async_close_from_another_task_ends_a_read_blocked_on_uvicorn(starlette_url: str) -> None:
    """The same for `AsyncEventSource`, closed from another task."""

    async def main() -> float:
        source = AsyncEventSource(f"{starlette_url}/hold")
        first = asyncio.Event()

        async def consume() -> list[str]:
            got = []
            async for message in source:
                got.append(message.data)
                first.set()
            return got

        task = asyncio.create_task(consume())
        await asyncio.wait_for(first.wait(), DEADLINE)
        closed_at = time.monotonic()
        source.close()
        assert await asyncio.wait_for(task, DEADLINE) == ["ready"]
        ended = time.monotonic() - closed_at
        assert source.ready_state is ReadyState.CLOSED
        await source.aclose()
        return ended

    ended = asyncio.run(main())
    assert ended < 2.0


# -- the raw server: bytes as they arrive ------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "rest"),
    [
        (b"data: first\n\n", b"data: second\n\n"),
        (b"data: first\r\n\r\n", b"data: second\r\n\r\n"),
        # A CR-only blank line dispatches at once; the LF that then starts the next send
        # completes the CRLF (it is not another blank line, nor part of the next line).
        (b"data: first\r\r", b"\ndata: second\r\n\r\n"),
    ],
    ids=["lf", "crlf", "cr-then-lf-in-next-send"],
)
def test_an_event_is_yielded_as_soon_as_its_blank_line_arrives(first: bytes, rest: bytes) -> None:
    """The server sends one event and then waits for a gate that the test opens only after the
    client has yielded that event: a client that waited for more bytes would never get it."""
    gate = threading.Event()

    def handler(conn: RawConnection) -> None:
        conn.send_head()
        conn.send_pieces([first])
        if not conn.wait(gate):
            raise AssertionError("the client did not yield the event before more bytes came")
        conn.send_pieces([rest])

    with raw_sse_server(by_connection(handler)) as server:
        with EventSource(server.url, retry_ms=FAST_RETRY) as source:
            events = iter(source)
            first_message = next(events)
            gate.set()
            rest_messages = list(events)
        assert messages([first_message, *rest_messages]) == [
            ("message", "first", ""),
            ("message", "second", ""),
        ]


def test_async_an_event_is_yielded_as_soon_as_its_blank_line_arrives() -> None:
    """The same gate with `AsyncEventSource`."""
    gate = threading.Event()

    def handler(conn: RawConnection) -> None:
        conn.send_head()
        conn.send_pieces([b"data: first\r\r"])
        if not conn.wait(gate):
            raise AssertionError("the client did not yield the event before more bytes came")
        conn.send_pieces([b"\ndata: second\n\n"])

    async def main(url: str) -> list[MessageEvent]:
        async with AsyncEventSource(url, retry_ms=FAST_RETRY) as source:
            events = aiter(source)
            got = [await anext(events)]
            gate.set()
            got += [message async for message in events]
            return got

    with raw_sse_server(by_connection(handler)) as server:
        got = asyncio.run(main(server.url))
    assert messages(got) == [("message", "first", ""), ("message", "second", "")]


BOM = b"\xef\xbb\xbf"
AWKWARD = [
    # (pieces, each sent on its own; the messages they must give)
    pytest.param(
        [b"\xef", b"\xbb", b"\xbf" + b"data: after a split BOM\n\n"],
        [("message", "after a split BOM", "")],
        id="bom-split",
    ),
    pytest.param(
        [BOM + b"data: 1\n\n" + BOM, b"data: 2\n\ndata: 3\n\n"],
        [("message", "1", ""), ("message", "3", "")],  # a second BOM is not stripped
        id="bom-only-at-start",
    ),
    pytest.param(
        [b"data: caf\xc3", b"\xa9 \xe2\x80", b"\xa6 \xf0\x9f", b"\x98", b"\x80\n\n"],
        [("message", "café … 😀", "")],
        id="utf8-split",
    ),
    pytest.param(
        [b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"],
        [("message", "a\nb", "")],
        id="crlf-split-after-cr",
    ),
    pytest.param(
        [b"data: a\rdata: b\r\rid: 7\r", b"data: c\r\r"],
        [("message", "a\nb", ""), ("message", "c", "7")],
        id="cr-only-lines",
    ),
    pytest.param(
        [b"id: 1\ndata: a\n\nid: x\x00y\ndata: b\n\nid: \x00\n", b"data: c\n\n"],
        [("message", "a", "1"), ("message", "b", "1"), ("message", "c", "1")],
        id="nul-ids-ignored",
    ),
    pytest.param(
        [b": comment\n", b'event: tick\ndata: {"a": ', b"1}\n", b"\n"],
        [("tick", '{"a": 1}', "")],
        id="comment-and-split-data",
    ),
]


@pytest.mark.parametrize(("pieces", "expected"), AWKWARD)
@pytest.mark.parametrize("how", ["pieces", "bytewise", "chunked"])
def test_bytes_split_at_awkward_places(
    pieces: list[bytes], expected: list[tuple[str, str, str]], how: str
) -> None:
    """Each piece leaves in a send of its own (TCP_NODELAY), or every byte does, or each piece
    is an HTTP chunk: the messages are the same as if the stream had come in one piece."""

    def handler(conn: RawConnection) -> None:
        conn.send_head(chunked=how == "chunked")
        if how == "bytewise":
            conn.send_bytewise(b"".join(pieces))
        else:
            conn.send_pieces(pieces, pause=0.01)
        conn.end_chunked()

    with raw_sse_server(by_connection(handler)) as server:
        with EventSource(server.url, retry_ms=FAST_RETRY) as source:
            got = list(source)
        assert messages(got) == expected
        assert server.connections == 2  # the stream, then 204


# -- reconnection ----------------------------------------------------------------------------


def test_last_event_id_is_sent_on_every_reconnect() -> None:
    """Each response ends; the client reconnects with the last event id it has seen: the id
    persists across responses without one, and an empty `id` clears it (no header then)."""
    handler = by_connection(
        stream(b"retry: 10\nid: 1\ndata: a\n\n"),
        stream(b"id: 2\ndata: b\n\n"),
        stream(b"data: c\n\n"),
        stream(b"id\ndata: d\n\n"),
        stream(b"id: \xe2\x80\xa6 x\ndata: e\n\n"),
    )
    with raw_sse_server(handler) as server:
        with EventSource(server.url, last_event_id="0") as source:
            got = list(source)
        sent = [request.header("last-event-id") for request in server.requests]
    assert messages(got) == [
        ("message", "a", "1"),
        ("message", "b", "2"),
        ("message", "c", "2"),
        ("message", "d", ""),
        ("message", "e", "… x"),
    ]
    # The header is the id encoded as UTF-8, as browsers send it.
    assert sent == ["0", "1", "2", "2", None, "… x"]


def test_async_last_event_id_is_sent_on_every_reconnect() -> None:
    """The same with `AsyncEventSource`."""
    handler = by_connection(
        stream(b"retry: 10\nid: 1\ndata: a\n\n"),
        stream(b"data: b\n\n"),
        stream(b"id: 3\ndata: c\n\n"),
    )

    async def main(url: str) -> list[MessageEvent]:
        async with AsyncEventSource(url) as source:
            return [message async for message in source]

    with raw_sse_server(handler) as server:
        got = asyncio.run(main(server.url))
        sent = [request.header("last-event-id") for request in server.requests]
    assert messages(got) == [("message", "a", "1"), ("message", "b", "1"), ("message", "c", "3")]
    assert sent == [None, "1", "1", "3"]


def abort_after(data: bytes) -> Callable[[RawConnection], None]:
    """A stream that sends `data` and then drops the connection with a TCP reset."""

    def handler(conn: RawConnection) -> None:
        conn.send_head()
        conn.send_pieces([data])
        conn.abort()

    return handler


def chunked_cut_after(data: bytes) -> Callable[[RawConnection], None]:
    """A chunked stream that sends `data` and closes without the last chunk."""

    def handler(conn: RawConnection) -> None:
        conn.send_head(chunked=True)
        conn.send_pieces([data])

    return handler


@pytest.mark.parametrize(
    "dying",
    [
        pytest.param(stream, id="close"),
        pytest.param(abort_after, id="reset"),
        pytest.param(chunked_cut_after, id="chunked-cut"),
    ],
)
def test_a_server_dying_mid_event_drops_it_and_the_client_reconnects(
    dying: Callable[[bytes], Callable[[RawConnection], None]],
) -> None:
    """The connection ends (orderly close, TCP reset, or a chunked body cut short) in the middle
    of an event: the unterminated event is never dispatched, and the client reconnects with the
    id of the last complete event."""
    handler = by_connection(
        dying(b"retry: 10\nid: 1\ndata: complete\n\nid: 2\ndata: never dispatched"),
        stream(b"data: next\n\n"),
    )
    with raw_sse_server(handler) as server:
        with EventSource(server.url) as source:
            got = list(source)
        sent = [request.header("last-event-id") for request in server.requests]
    assert messages(got) == [("message", "complete", "1"), ("message", "next", "1")]
    assert sent == [None, "1", "1"]


def close_without_response(conn: RawConnection) -> None:
    """Read the request, answer nothing, close."""


def reset_without_response(conn: RawConnection) -> None:
    conn.abort()


def headers_cut_short(conn: RawConnection) -> None:
    conn.sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Ty")


@pytest.mark.parametrize("source_class", ["sync", "async"])
def test_network_errors_reconnect(source_class: str) -> None:
    """A connection closed before any response, one reset, one cut in the middle of the
    headers: network errors, so the client tries again (they are not `SSEResponseError`)."""
    handler = by_connection(
        close_without_response,
        reset_without_response,
        headers_cut_short,
        stream(b"data: at last\n\n"),
    )

    async def consume_async(url: str) -> list[MessageEvent]:
        async with AsyncEventSource(url, retry_ms=FAST_RETRY) as source:
            return [message async for message in source]

    with raw_sse_server(handler) as server:
        if source_class == "sync":
            with EventSource(server.url, retry_ms=FAST_RETRY) as source:
                got = list(source)
        else:
            got = asyncio.run(consume_async(server.url))
        assert server.connections == 5
    assert messages(got) == [("message", "at last", "")]


def test_connection_refused_is_retried_until_the_server_listens() -> None:
    """Nothing listens on the port at first (connections are refused); once it does, the
    client connects: a refused connection is a network error like any other."""
    attempts: list[float] = []

    def count(request: httpx.Request) -> None:
        attempts.append(time.monotonic())

    with raw_sse_server(by_connection(stream(b"data: hello\n\n")), listen=False) as server:
        client = httpx.Client(event_hooks={"request": [count]}, timeout=5.0)
        with client, EventSource(server.url, client=client, retry_ms=FAST_RETRY) as source:
            consumer = Consumer(source)
            wait_until(lambda: len(attempts) >= 3, "two refused connection attempts")
            server.listen()
            got = consumer.wait_events(1)
            consumer.join()
        assert consumer.error is None
    assert messages(got) == [("message", "hello", "")]


def test_a_read_timeout_reconnects() -> None:
    """`timeout=` applies to every request: a stream that stalls longer than the read timeout
    is a network error, and the client reconnects with the last id."""
    stalled = threading.Event()

    def stall(conn: RawConnection) -> None:
        conn.send_head()
        conn.send_pieces([b"id: 1\ndata: before the stall\n\n"])
        conn.wait(stalled)

    handler = by_connection(stall, stream(b"data: after\n\n"))
    try:
        with raw_sse_server(handler) as server:
            timeout = httpx.Timeout(5.0, read=0.3)
            with EventSource(server.url, timeout=timeout, retry_ms=FAST_RETRY) as source:
                got = list(source)
            sent = [request.header("last-event-id") for request in server.requests]
    finally:
        stalled.set()
    assert messages(got) == [("message", "before the stall", "1"), ("message", "after", "1")]
    assert sent == [None, "1", "1"]


def test_retry_sets_the_reconnection_delay_and_only_valid_forms_count() -> None:
    """`retry:` with only ASCII digits (one leading space removed) sets the delay; other forms
    are ignored.  The gap between the first connection's end and the next request is at least
    the delay minus its jitter (20%)."""
    closed: list[float] = []

    def first(conn: RawConnection) -> None:
        conn.send_head()
        conn.send_pieces(
            [b"retry: 400\nretry:  50\nretry: 5x\nretry: -1\nretry: \xd9\xa1\ndata: a\n\n"]
        )
        closed.append(time.monotonic())

    with raw_sse_server(by_connection(first, stream(b"data: b\n\n"))) as server:
        with EventSource(server.url, retry_ms=5000) as source:
            got = list(source)
            assert source.retry_ms == 400
        gap = server.requests_at[1] - closed[0]
    assert [m.data for m in got] == ["a", "b"]
    assert 0.8 * 0.4 - 0.01 <= gap < 5.0 * 0.8  # not the 5000 ms default, nor 50 ms


def test_repeated_failures_back_off_with_jitter_up_to_a_cap() -> None:
    """Connections that fail one after another wait `retry`, then twice that, four times...
    up to `max_retry_ms`, each wait jittered (+-20%)."""
    with raw_sse_server(by_connection(*[close_without_response] * 6)) as server:
        with EventSource(server.url, retry_ms=100, max_retry_ms=200) as source:
            assert list(source) == []
        arrivals = server.requests_at
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    expected = [0.1, 0.2, 0.2, 0.2, 0.2, 0.2]
    ratios = [gap / delay for gap, delay in zip(gaps, expected, strict=True)]
    for ratio in ratios:
        assert ratio >= 0.8 - 0.05
    # Uncapped, the fourth to sixth waits would be at least 0.64 s, 1.28 s and 2.56 s.
    assert max(gaps[3:]) < 0.6
    # Jitter spreads the waits over +-20%: six equal delays without it would all be alike.
    assert max(ratios) - min(ratios) > 0.05


def test_a_successful_connection_resets_the_backoff() -> None:
    """After failures (100, 200, 400 ms), a connection that opens brings the delay back to
    `retry`: the wait after it is 100 ms, not 800 ms."""
    failing = [close_without_response] * 3
    with raw_sse_server(by_connection(*failing, stream(b"data: ok\n\n"))) as server:
        with EventSource(server.url, retry_ms=100) as source:
            assert [m.data for m in source] == ["ok"]
        arrivals = server.requests_at
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert len(gaps) == 4
    for gap, delay in zip(gaps, [0.1, 0.2, 0.4, 0.1], strict=True):
        assert gap >= 0.8 * delay - 0.005
    assert gaps[3] < 0.5  # without the reset: at least 0.64 s


def test_ready_state_follows_the_connection() -> None:
    """CONNECTING before the first response, OPEN while it streams, CONNECTING again while
    waiting to reconnect, CLOSED after `close()`."""
    gate = threading.Event()

    def first(conn: RawConnection) -> None:
        conn.send_head()
        conn.send_pieces([b"retry: 60000\ndata: a\n\n"])
        conn.wait(gate)

    with raw_sse_server(by_connection(first)) as server, EventSource(server.url) as source:
        states = [source.ready_state]
        consumer = Consumer(source)
        consumer.wait_events(1)
        states.append(source.ready_state)
        gate.set()  # the server ends the response; the client waits 60 s to reconnect
        wait_until(lambda: source.ready_state is ReadyState.CONNECTING, "CONNECTING")
        source.close()
        consumer.join()
        states.append(source.ready_state)
        assert server.connections == 1
    assert states == [ReadyState.CONNECTING, ReadyState.OPEN, ReadyState.CLOSED]


# -- the browser's failure rules -------------------------------------------------------------


def test_204_stops_reconnecting() -> None:
    """204 No Content ends the stream for good: no events, no reconnection, CLOSED."""
    with raw_sse_server(no_content) as server:
        with EventSource(server.url, retry_ms=FAST_RETRY) as source:
            assert list(source) == []
            assert source.ready_state is ReadyState.CLOSED
        assert server.connections == 1


@pytest.mark.parametrize(
    "content_type",
    [
        "text/event-stream",
        "text/event-stream; charset=utf-8",
        "Text/Event-Stream ;charset=UTF-8",
    ],
)
def test_event_stream_content_types_are_accepted(content_type: str) -> None:
    """The MIME type is compared without its parameters and case-insensitively."""

    def handler(conn: RawConnection) -> None:
        conn.send_head(content_type=content_type)
        conn.send(b"data: ok\n\n")

    with (
        raw_sse_server(by_connection(handler)) as server,
        EventSource(server.url, retry_ms=FAST_RETRY) as source,
    ):
        assert [m.data for m in source] == ["ok"]


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/html; charset=utf-8", b"<html>login page</html>"),
        ("application/json", b'{"events": []}'),
        (None, b"data: no content type\n\n"),
        ("text/event-streams", b"data: almost\n\n"),
    ],
)
def test_a_wrong_content_type_raises(content_type: str | None, body: bytes) -> None:
    """A 2xx with another Content-Type (or none) raises `SSEResponseError` with the status, the
    Content-Type and the start of the body, and never reconnects."""

    def handler(conn: RawConnection) -> None:
        conn.respond(200, "OK", body, content_type=content_type)

    with raw_sse_server(handler) as server:
        with EventSource(server.url, retry_ms=FAST_RETRY) as source:
            with pytest.raises(SSEResponseError) as info:
                list(source)
            assert source.ready_state is ReadyState.CLOSED
        assert server.connections == 1
    error = info.value
    assert error.status_code == 200
    assert error.content_type == (content_type or "")
    assert error.body == body.decode()
    assert repr(error.body) in str(error)


@pytest.mark.parametrize(
    ("status", "reason"),
    [(500, "Internal Server Error"), (404, "Not Found"), (401, "Unauthorized"), (418, "Teapot")],
)
def test_a_non_2xx_status_raises_with_a_body_excerpt(status: int, reason: str) -> None:
    """Any status other than 2xx (and 204) raises `SSEResponseError` at once, with the status
    and the first 512 bytes of the body (decoded, errors replaced), even with an event-stream
    Content-Type; it never reconnects."""
    body = ("x" + "é" * 300 + "tail").encode()  # 605 bytes: the excerpt cuts an "é" in two

    def handler(conn: RawConnection) -> None:
        conn.respond(status, reason, body, content_type="text/event-stream")

    with raw_sse_server(handler) as server:
        with (
            EventSource(server.url, retry_ms=FAST_RETRY) as source,
            pytest.raises(SSEResponseError) as info,
        ):
            list(source)
        assert server.connections == 1
    error = info.value
    assert error.status_code == status
    assert error.body == body[:512].decode("utf-8", "replace")
    assert error.body.endswith("é\ufffd")
    assert str(status) in str(error)


@pytest.mark.parametrize("status", [200, 500])
def test_the_excerpt_does_not_wait_for_the_end_of_an_endless_body(status: int) -> None:
    """A rejected response whose body never ends (an HTML page streamed by a proxy, a 500 that
    stalls) raises as soon as the excerpt has arrived, not when the body ends."""
    client_left = threading.Event()

    def handler(conn: RawConnection) -> None:
        conn.send_head(status, "Whatever", content_type="text/html")
        conn.send(b"<p>" + b"x" * 600)
        if conn.wait_closed_by_client():
            client_left.set()

    with raw_sse_server(handler) as server:
        with (
            EventSource(server.url, retry_ms=FAST_RETRY) as source,
            pytest.raises(SSEResponseError) as info,
        ):
            list(source)
        assert client_left.wait(DEADLINE)
    assert info.value.status_code == status
    assert info.value.body == "<p>" + "x" * 509


def test_a_redirect_is_followed_as_a_browser_does() -> None:
    """307 to another path: the stream is read from there (browsers follow redirects), and a
    reconnection starts again from the original URL."""

    def handler(conn: RawConnection) -> None:
        if conn.request.target == "/old":
            conn.respond(307, "Temporary Redirect", headers=[("Location", "/new")])
        elif conn.index == 1:
            stream(b"retry: 10\nid: 1\ndata: moved\n\n")(conn)
        else:
            no_content(conn)

    with raw_sse_server(handler) as server:
        with EventSource(f"{server.url}/old") as source:
            assert [m.data for m in source] == ["moved"]
        targets = [(r.target, r.header("last-event-id")) for r in server.requests]
    assert targets == [("/old", None), ("/new", None), ("/old", "1"), ("/new", "1")]


def test_async_failure_rules() -> None:
    """`AsyncEventSource` applies the same rules: 204 stops, a 503 raises with its body."""

    def handler(conn: RawConnection) -> None:
        if conn.request.target == "/gone":
            no_content(conn)
        else:
            conn.respond(503, "Service Unavailable", b"overloaded, try later")

    async def main(url: str) -> SSEResponseError:
        async with AsyncEventSource(f"{url}/gone", retry_ms=FAST_RETRY) as source:
            assert [message async for message in source] == []
            assert source.ready_state is ReadyState.CLOSED
        async with AsyncEventSource(f"{url}/busy", retry_ms=FAST_RETRY) as source:
            with pytest.raises(SSEResponseError) as info:
                [message async for message in source]
        return info.value

    with raw_sse_server(handler) as server:
        error = asyncio.run(main(server.url))
        assert server.connections == 2
    assert (error.status_code, error.body) == (503, "overloaded, try later")


# -- size limits: a hostile stream stops the source ----------------------------------------------

MiB = 1024 * 1024


def hostile(prefix: bytes, piece: bytes, total: int) -> Callable[[RawConnection], None]:
    """A stream that sends `prefix`, then `piece` over and over up to `total` bytes, then closes
    (a client that accepted it all would reconnect, and get 204)."""

    def handler(conn: RawConnection) -> None:
        conn.send_head()
        conn.send(prefix)
        for _ in range(total // len(piece)):
            conn.send(piece)

    return handler


def test_a_line_over_the_default_limit_stops_the_source_with_the_error() -> None:
    """9 MiB on one line, over the default 8 MiB: the iteration raises `ParseLimitExceeded` after
    the events before it, the source is closed, and it never reconnects into the same stream."""
    handler = by_connection(hostile(b"id: 1\ndata: ok\n\ndata: ", b"x" * 65536, 9 * MiB))
    got: list[MessageEvent] = []
    with raw_sse_server(handler) as server:
        with EventSource(server.url, retry_ms=FAST_RETRY) as source:
            with pytest.raises(ParseLimitExceeded) as info:
                got.extend(source)
            assert source.ready_state is ReadyState.CLOSED
            assert list(source) == []  # closed for good
        assert server.connections == 1
    assert messages(got) == [("message", "ok", "1")]
    assert (info.value.limit, info.value.value) == ("max_line_size", 8 * MiB)


def test_async_event_over_a_configured_limit_stops_the_source_with_the_error() -> None:
    """The limits are options of the source: an event of many short `data:` lines over
    `max_event_size` raises from the `async for`, and the source does not reconnect."""
    handler = by_connection(hostile(b"data: first\n\n", b"data: 0123456789\n" * 64, MiB))

    async def collect(source: AsyncEventSource, got: list[MessageEvent]) -> None:
        async for message in source:  # one by one: a comprehension would lose them on a raise
            got.append(message)  # noqa: PERF401

    async def main(url: str) -> tuple[list[MessageEvent], ParseLimitExceeded, ReadyState]:
        got: list[MessageEvent] = []
        async with AsyncEventSource(url, retry_ms=FAST_RETRY, max_event_size=64 * 1024) as source:
            with pytest.raises(ParseLimitExceeded) as info:
                await collect(source, got)
            assert [message async for message in source] == []  # closed for good
            return got, info.value, source.ready_state

    with raw_sse_server(handler) as server:
        got, error, state = asyncio.run(main(server.url))
        assert server.connections == 1
    assert messages(got) == [("message", "first", "")]
    assert (error.limit, error.value) == ("max_event_size", 64 * 1024)
    assert "max_event_size=65,536" in str(error)
    assert state is ReadyState.CLOSED


def test_limits_can_be_raised_or_removed() -> None:
    """With a larger limit (or None) the same long line is read as any event."""
    line = b"data: " + b"y" * (2 * MiB) + b"\n\n"
    with raw_sse_server(by_connection(then=stream(line))) as server:
        for limit in (4 * MiB, None):
            with EventSource(server.url, max_line_size=limit, reconnect=False) as source:
                assert [len(m.data) for m in source] == [2 * MiB]
        source = EventSource(server.url, max_line_size=MiB, reconnect=False)
        with source, pytest.raises(ParseLimitExceeded):
            list(source)


@pytest.mark.parametrize("name", ["max_line_size", "max_event_size"])
def test_a_bad_limit_is_refused_when_the_source_is_made(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        EventSource("http://127.0.0.1:9/", **{name: 0})


# -- what the client sends -------------------------------------------------------------------


def test_custom_headers_auth_params_and_defaults_are_sent_on_every_request() -> None:
    """Headers, query parameters and auth given to the source are sent on the first request and
    on every reconnection, with `Accept: text/event-stream` and `Cache-Control: no-cache`."""
    handler = by_connection(stream(b"retry: 10\nid: 1\ndata: a\n\n"), stream(b"data: b\n\n"))
    with raw_sse_server(handler) as server:
        with EventSource(
            f"{server.url}/events",
            headers={"X-Token": "secret"},
            params={"topic": "jobs/42"},
            auth=("user", "pw"),
        ) as source:
            assert [m.data for m in source] == ["a", "b"]
        requests = server.requests
    basic = "Basic " + base64.b64encode(b"user:pw").decode()
    assert len(requests) == 3
    for request in requests:
        assert request.method == "GET"
        assert request.target == "/events?topic=jobs%2F42"
        assert request.header("x-token") == "secret"
        assert request.header("authorization") == basic
        assert request.header("accept") == "text/event-stream"
        assert request.header("cache-control") == "no-cache"


def test_an_existing_client_is_used_and_left_open() -> None:
    """`client=` reuses an `httpx.Client` (its headers and auth); the source does not close it."""
    handler = by_connection(stream(b"retry: 10\nid: 1\ndata: a\n\n"), stream(b"data: b\n\n"))
    with raw_sse_server(handler) as server:
        client = httpx.Client(headers={"X-Client": "mine"}, auth=("c", "d"), timeout=5.0)
        with client:
            with EventSource(server.url, client=client) as source:
                assert [m.data for m in source] == ["a", "b"]
            assert not client.is_closed
            assert client.get(f"{server.url}/afterwards").status_code == 204
        requests = server.requests
    basic = "Basic " + base64.b64encode(b"c:d").decode()
    assert [r.header("x-client") for r in requests] == ["mine"] * 4
    assert [r.header("authorization") for r in requests] == [basic] * 4
    assert [r.header("last-event-id") for r in requests[:3]] == [None, "1", "1"]


def test_async_existing_client_and_post_body_on_every_request() -> None:
    """`AsyncEventSource(client=...)` with `method="POST"` and `json=`: the body is sent again
    on reconnection; the client is left open."""
    handler = by_connection(stream(b"retry: 10\nid: 1\ndata: a\n\n"), stream(b"data: b\n\n"))

    async def main(url: str) -> list[str]:
        async with httpx.AsyncClient(headers={"X-Client": "mine"}, timeout=5.0) as client:
            async with AsyncEventSource(
                url, client=client, method="POST", json={"question": "why?"}
            ) as source:
                got = [message.data async for message in source]
            assert not client.is_closed
            return got

    with raw_sse_server(handler) as server:
        assert asyncio.run(main(server.url)) == ["a", "b"]
        requests = server.requests
    assert [r.method for r in requests] == ["POST"] * 3
    assert [json.loads(r.body) for r in requests] == [{"question": "why?"}] * 3
    assert [r.header("x-client") for r in requests] == ["mine"] * 3
    assert [r.header("last-event-id") for r in requests] == [None, "1", "1"]


# -- close() from elsewhere --------------------------------------------------------------------


def test_close_from_another_thread_ends_a_blocked_read() -> None:
    """The client waits for bytes that never come; `close()` from another thread ends the
    iteration at once, and the server sees the connection closed."""
    client_left = threading.Event()

    def handler(conn: RawConnection) -> None:
        conn.send_head()
        conn.send_pieces([b"data: one\n\n"])
        if conn.wait_closed_by_client():
            client_left.set()

    with raw_sse_server(by_connection(handler)) as server, EventSource(server.url) as source:
        consumer = Consumer(source)
        consumer.wait_events(1)
        closed_at = time.monotonic()
        source.close()
        ended = consumer.join() - closed_at
        assert client_left.wait(DEADLINE)
        assert consumer.error is None
        assert server.connections == 1
    assert ended < 2.0


def test_close_ends_a_wait_for_response_headers() -> None:
    """The server accepted the connection and read the request but has not answered yet:
    `close()` from another thread still ends the iteration at once."""
    gate = threading.Event()

    def handler(conn: RawConnection) -> None:
        conn.wait(gate)

    try:
        with raw_sse_server(handler) as server, EventSource(server.url) as source:
            consumer = Consumer(source)
            server.wait_for_connections(1)
            closed_at = time.monotonic()
            source.close()
            ended = consumer.join() - closed_at
            assert consumer.error is None
            assert consumer.events == []
    finally:
        gate.set()
    assert ended < 2.0


def test_async_close_ends_a_wait_for_response_headers() -> None:
    """The same for `AsyncEventSource`: `close()` from another task while the server has not
    answered yet."""
    gate = threading.Event()

    def handler(conn: RawConnection) -> None:
        conn.wait(gate)

    async def main(server: RawSSEServer) -> float:
        async with AsyncEventSource(server.url) as source:
            task = asyncio.create_task(anext(aiter(source), None))
            await asyncio.to_thread(server.wait_for_connections, 1)
            closed_at = time.monotonic()
            source.close()
            assert await asyncio.wait_for(task, DEADLINE) is None
            return time.monotonic() - closed_at

    try:
        with raw_sse_server(handler) as server:
            ended = asyncio.run(main(server))
    finally:
        gate.set()
    assert ended < 2.0


def test_close_ends_the_wait_before_a_reconnection() -> None:
    """During a 60 s reconnection delay, `close()` from another thread ends it at once."""
    with raw_sse_server(by_connection(stream(b"retry: 60000\ndata: a\n\n"))) as server:
        with EventSource(server.url) as source:
            consumer = Consumer(source)
            consumer.wait_events(1)
            wait_until(lambda: source.ready_state is ReadyState.CONNECTING, "waiting to reconnect")
            closed_at = time.monotonic()
            source.close()
            ended = consumer.join() - closed_at
        assert server.connections == 1
    assert ended < 2.0


@pytest.mark.parametrize("where", ["task", "thread"])
def test_async_close_from_another_task_or_thread_ends_a_blocked_read(where: str) -> None:
    """`AsyncEventSource.close()` from another task, or from another thread, ends a read that
    waits for bytes that never come."""

    def handler(conn: RawConnection) -> None:
        conn.send_head()
        conn.send_pieces([b"data: one\n\n"])
        conn.wait_closed_by_client()

    async def main(url: str) -> float:
        source = AsyncEventSource(url)
        first = asyncio.Event()

        async def consume() -> list[str]:
            got = []
            async for message in source:
                got.append(message.data)
                first.set()
            return got

        task = asyncio.create_task(consume())
        await asyncio.wait_for(first.wait(), DEADLINE)
        closed_at = time.monotonic()
        if where == "task":
            source.close()
        else:
            closer = threading.Thread(target=source.close)
            closer.start()
            closer.join()
        assert await asyncio.wait_for(task, DEADLINE) == ["one"]
        ended = time.monotonic() - closed_at
        await source.aclose()
        return ended

    with raw_sse_server(by_connection(handler)) as server:
        ended = asyncio.run(main(server.url))
        assert server.connections == 1
    assert ended < 2.0


def test_async_close_ends_the_wait_before_a_reconnection() -> None:
    """During a 60 s reconnection delay, `close()` from another thread wakes the async source."""
    with raw_sse_server(by_connection(stream(b"retry: 60000\ndata: a\n\n"))) as server:

        async def main() -> float:
            source = AsyncEventSource(server.url)
            got: list[str] = []
            first = asyncio.Event()

            async def consume() -> None:
                async for message in source:
                    got.append(message.data)
                    first.set()

            task = asyncio.create_task(consume())
            await asyncio.wait_for(first.wait(), DEADLINE)
            await asyncio.to_thread(
                wait_until,
                lambda: source.ready_state is ReadyState.CONNECTING,
                "waiting to reconnect",
            )
            closed_at = time.monotonic()
            await asyncio.to_thread(source.close)
            await asyncio.wait_for(task, DEADLINE)
            await source.aclose()
            assert got == ["a"]
            return time.monotonic() - closed_at

        ended = asyncio.run(main())
        assert server.connections == 1
    assert ended < 2.0


def test_a_source_starts_no_thread(threads_back: Callable[[], None]) -> None:
    """A source starts no thread: after a full run (reconnects, 204) the thread count is back."""
    handler = by_connection(stream(b"retry: 10\ndata: a\n\n"), stream(b"data: b\n\n"))
    with raw_sse_server(handler) as server, EventSource(server.url) as source:
        assert [m.data for m in source] == ["a", "b"]
    threads_back()
