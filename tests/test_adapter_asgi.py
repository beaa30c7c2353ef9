"""`SSEApp` end to end: a real uvicorn server on 127.0.0.1, real httpx clients and raw sockets.

Each test starts its own server (see `asgi_servers.uvicorn_server`), so the thread check of
`conftest.py` also proves that sources' worker threads end.  Sources report to `Probe`s; the
tests wait on them with deadlines.  Latency figures are printed (run with `-s` to see them); the
assertions use bounds far above them, so a loaded machine does not make the tests flaky.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from asgi_servers import (
    DEADLINE,
    SAMPLE_CHUNKS,
    SAMPLE_EVENTS,
    Probe,
    Probes,
    StreamReader,
    aticks,
    latency_summary,
    ticks,
    uvicorn_server,
    wait_until,
)

from ssekit import Event, MessageEvent, StreamRegistry, to_sse
from ssekit._stream import PULL_AHEAD
from ssekit.adapters._common import SSERequest
from ssekit.adapters.asgi import SSEApp

pytestmark = pytest.mark.timeout(30)

#: The client's timeouts: a stream that stops sending fails the read instead of hanging.
CLIENT_TIMEOUT = httpx.Timeout(5.0)
#: Trials per case of the disconnect measurements.
TRIALS = 10


def client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=CLIENT_TIMEOUT)


def tag_of(request: SSERequest) -> str:
    return request.query.get("tag", "default")


# -- headers and body --------------------------------------------------------------------------


def test_headers() -> None:
    """A stream is a 200 with the event-stream headers, once each, no length, no Connection."""
    app = SSEApp(lambda request: ["one"])
    with uvicorn_server(app) as url, client(url) as http:
        response = http.get("/")
    assert response.status_code == 200
    headers = response.headers
    assert headers.get_list("content-type") == ["text/event-stream; charset=utf-8"]
    assert headers.get_list("cache-control") == ["no-cache"]
    assert headers.get_list("x-accel-buffering") == ["no"]
    assert "content-length" not in headers
    assert "connection" not in headers
    assert headers["transfer-encoding"] == "chunked"


def sample_sync(request: SSERequest) -> Iterator[Any]:
    yield from SAMPLE_CHUNKS


async def sample_async(request: SSERequest) -> AsyncIterator[Any]:
    for chunk in SAMPLE_CHUNKS:
        yield chunk
        await asyncio.sleep(0)


async def sample_from_async_factory(request: SSERequest) -> list[Any]:
    await asyncio.sleep(0)
    return list(SAMPLE_CHUNKS)


FACTORIES: dict[str, Callable[[SSERequest], Any]] = {
    "list": lambda request: list(SAMPLE_CHUNKS),
    "sync generator": sample_sync,
    "async generator": sample_async,
    "async factory": sample_from_async_factory,
    "ready SSEStream": lambda request: to_sse(sample_sync(request)),
}


@pytest.mark.parametrize("factory", FACTORIES.values(), ids=FACTORIES.keys())
def test_body_is_what_the_source_sent(factory: Callable[[SSERequest], Any]) -> None:
    """Strings, JSON, events with type and id, multi-line data, bytes: parsed back exactly."""
    with (
        uvicorn_server(SSEApp(factory)) as url,
        client(url) as http,
        http.stream("GET", "/") as response,
    ):
        reader = StreamReader(response)
        events = reader.rest()
    assert events == SAMPLE_EVENTS
    assert reader.raw.startswith(b": ok\n")


def test_stream_options_reach_the_stream() -> None:
    """Keyword arguments of `SSEApp` are `to_sse()` options (here `retry` and `end`)."""
    app = SSEApp(lambda request: ["a"], retry=2500, end="[DONE]")
    with uvicorn_server(app) as url, client(url) as http, http.stream("GET", "/") as response:
        reader = StreamReader(response)
        events = reader.rest()
    assert [event.data for event in events] == ["a", "[DONE]"]
    assert reader.parser.retry == 2500


# -- Last-Event-ID ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "query", "expected"),
    [
        ({"Last-Event-ID": "41"}, "", "41"),
        ({}, "?lastEventId=17", "17"),
        ({"Last-Event-ID": "from-header"}, "?lastEventId=from-query", "from-header"),
        ({}, "", None),
    ],
    ids=["header", "query", "header wins", "none"],
)
def test_last_event_id_reaches_the_factory(
    headers: dict[str, str], query: str, expected: str | None
) -> None:
    """The factory's request carries `Last-Event-ID`, else the `lastEventId` query parameter."""
    seen: list[str | None] = []

    def factory(request: SSERequest) -> list[Any]:
        seen.append(request.last_event_id)
        return [Event(repr(request.last_event_id))]

    with (
        uvicorn_server(SSEApp(factory)) as url,
        client(url) as http,
        http.stream("GET", "/" + query, headers=headers) as response,
    ):
        events = StreamReader(response).rest()
    assert seen == [expected]
    assert [event.data for event in events] == [repr(expected)]


# -- methods and failures ---------------------------------------------------------------------


class ClosableSource:
    """An iterable with a `close()`, which is called even when iteration never starts."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    def __iter__(self) -> Iterator[str]:
        self.probe.started.set()
        yield "never sent to a HEAD request"

    def close(self) -> None:
        self.probe.close()


def test_head_gets_headers_only_and_closes_the_source() -> None:
    """HEAD: the stream's headers, no body; the source is closed without being started."""
    probes = Probes()
    generators: list[Iterator[int]] = []

    def factory(request: SSERequest) -> Any:
        if request.query.get("kind") == "closable":
            return ClosableSource(probes["closable"])
        generator = ticks(probes["generator"])
        generators.append(generator)
        return generator

    app = SSEApp(factory)
    with uvicorn_server(app) as url, client(url) as http:
        closable = http.head("/?kind=closable")
        generator = http.head("/?kind=generator")
        probes["closable"].wait_closed()
        wait_until(
            lambda: inspect.getgeneratorstate(generators[0]) == inspect.GEN_CLOSED,
            what="the HEAD request's generator is closed",
        )
        assert len(app.registry) == 0
    for response in (closable, generator):
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["cache-control"] == "no-cache"
        assert response.content == b""
    assert not probes["closable"].started.is_set()
    assert not probes["generator"].started.is_set()


def test_other_methods_get_405_with_allow() -> None:
    """POST (or PUT, DELETE) is a 405 naming GET and HEAD; the factory is never called."""
    calls: list[SSERequest] = []

    def factory(request: SSERequest) -> list[str]:
        calls.append(request)
        return ["a"]

    with uvicorn_server(SSEApp(factory)) as url, client(url) as http:
        responses = [http.request(method, "/") for method in ("POST", "PUT", "DELETE")]
    for response in responses:
        assert response.status_code == 405
        assert response.headers["allow"] == "GET, HEAD"
        assert "text/event-stream" not in response.headers["content-type"]
    assert calls == []


def test_methods_enable_post() -> None:
    """`methods=("POST",)` serves POST as a stream too, and lists it in a 405's `Allow`."""
    app = SSEApp(lambda request: [request.method], methods=("post",))
    with uvicorn_server(app) as url, client(url) as http:
        with http.stream("POST", "/", content=b"ignored") as response:
            status = response.status_code
            events = StreamReader(response).rest()
        refused = http.delete("/")
    assert status == 200
    assert [event.data for event in events] == ["POST"]
    assert refused.status_code == 405
    assert refused.headers["allow"] == "GET, HEAD, POST"


def failing_sync(request: SSERequest) -> list[str]:
    raise ValueError("no such job")


async def failing_async(request: SSERequest) -> list[str]:
    await asyncio.sleep(0)
    raise ValueError("no such job")


@pytest.mark.parametrize("factory", [failing_sync, failing_async], ids=["sync", "async"])
def test_factory_exception_is_a_500(factory: Callable[[SSERequest], Any]) -> None:
    """An exception raised by the factory is a real 500, not a 200 with an empty stream."""
    with uvicorn_server(SSEApp(factory)) as url, client(url) as http:
        response = http.get("/")
    assert response.status_code == 500
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == "Internal Server Error"
    assert "no such job" not in response.text


# -- disconnects --------------------------------------------------------------------------------


def open_and_close(http: httpx.Client, tag: str, probes: Probes, registry: StreamRegistry) -> float:
    """Open a stream, read its first event, close it; return seconds from close to `finally`."""
    with http.stream("GET", f"/?tag={tag}") as response:
        assert response.status_code == 200
        reader = StreamReader(response)  # kept: dropping its iterator would close the response
        reader.events(1)
        assert len(registry) == 1
        closed_by_client = time.monotonic()
        response.close()
    closed = probes[tag].wait_closed() - closed_by_client
    wait_until(lambda: len(registry) == 0, what="the registry is empty")
    return closed


SOURCES: dict[str, Callable[[Probe], Any]] = {
    "async waiting": lambda probe: aticks(probe, interval=1.0),
    "async continuous": lambda probe: aticks(probe),
    "sync continuous": lambda probe: ticks(probe),
}


@pytest.mark.parametrize(("case", "make_source"), SOURCES.items(), ids=SOURCES.keys())
def test_disconnect_closes_the_source(case: str, make_source: Callable[[Probe], Any]) -> None:
    """When the client closes the response, the source's `finally` runs at once."""
    probes = Probes()
    app = SSEApp(lambda request: make_source(probes[tag_of(request)]))
    with uvicorn_server(app) as url, client(url) as http:
        latencies = [
            open_and_close(http, f"trial-{n}", probes, app.registry) for n in range(TRIALS)
        ]
    print("\n" + latency_summary(f"SSEApp disconnect -> finally, {case}", latencies))
    assert max(latencies) < 2.0


@pytest.mark.timeout(40)
def test_disconnect_closes_a_sync_source_blocked_in_next() -> None:
    """A sync source blocked inside `next()` is closed as soon as that call returns.

    The source blocks 1 s between chunks (heartbeat 1 s); all trials run at once, each client
    closing right after its first event, so each `finally` comes within about one interval.
    """
    probes = Probes()
    app = SSEApp(lambda request: ticks(probes[tag_of(request)], interval=1.0), heartbeat=1.0)
    latencies: list[float] = []
    with uvicorn_server(app) as url, client(url) as http, contextlib.ExitStack() as stack:
        readers = []
        for n in range(TRIALS):
            response = stack.enter_context(http.stream("GET", f"/?tag=trial-{n}"))
            readers.append((StreamReader(response), f"trial-{n}"))
        for reader, _ in readers:
            reader.events(1)
        assert len(app.registry) == TRIALS
        closed_by_client = {}
        for reader, tag in readers:
            reader.response.close()
            closed_by_client[tag] = time.monotonic()
        for tag, closed in closed_by_client.items():
            latencies.append(probes[tag].wait_closed(timeout=1.0 + 3.0) - closed)
        wait_until(lambda: len(app.registry) == 0, what="the registry is empty")
    print("\n" + latency_summary("SSEApp disconnect -> finally, sync blocked 1 s", latencies))
    assert max(latencies) < 1.0 + 3.0


# -- first bytes ------------------------------------------------------------------------------


def late_sync(probe: Probe) -> Iterator[str]:
    """Blocks up to 5 s in `next()` before its first chunk (the test releases it sooner)."""
    probe.started.set()
    try:
        probe.release.wait(5.0)
        yield "late"
    finally:
        probe.close()


async def late_async(probe: Probe) -> AsyncIterator[str]:
    """Sleeps 5 s before its first chunk (cancelled when the client leaves)."""
    probe.started.set()
    try:
        await asyncio.sleep(5.0)
        yield "late"
    finally:
        probe.close()


@pytest.mark.parametrize("make_source", [late_sync, late_async], ids=["sync", "async"])
def test_headers_and_preamble_come_before_a_slow_first_chunk(
    make_source: Callable[[Probe], Any],
) -> None:
    """Headers and the `: ok` comment reach the client at once, not when the source yields."""
    probe = Probe()
    app = SSEApp(lambda request: make_source(probe))
    try:
        with uvicorn_server(app) as url, client(url) as http:
            sent = time.monotonic()
            with http.stream("GET", "/") as response:
                headers_after = time.monotonic() - sent
                reader = StreamReader(response)
                reader.read_until(b": ok\n")
                preamble_after = time.monotonic() - sent
                assert not probe.closed.is_set()
                assert probe.started.wait(DEADLINE)
            probe.release.set()  # a sync source blocked in next() is closed once it returns
            probe.wait_closed()
    finally:
        probe.release.set()
    print(
        f"\nSSEApp {make_source.__name__}: headers after {headers_after * 1000:.1f} ms, "
        f"preamble after {preamble_after * 1000:.1f} ms"
    )
    assert response.status_code == 200
    assert preamble_after < 1.5


# -- send_timeout -----------------------------------------------------------------------------

BIG_CHUNK = "x" * 16384


def flood_sync(probe: Probe) -> Iterator[str]:
    probe.started.set()
    try:
        while True:
            yield BIG_CHUNK
            probe.produced += 1
    finally:
        probe.close()


async def flood_async(probe: Probe) -> AsyncIterator[str]:
    probe.started.set()
    try:
        while True:
            yield BIG_CHUNK
            probe.produced += 1
            await asyncio.sleep(0)
    finally:
        probe.close()


@contextlib.contextmanager
def stalled_client(url: str) -> Iterator[socket.socket]:
    """A raw socket that sends a GET and never reads (a tiny receive buffer fills at once)."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((host, int(port)))
        sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        yield sock
    finally:
        sock.close()


@pytest.mark.parametrize("make_source", [flood_sync, flood_async], ids=["sync", "async"])
def test_send_timeout_drops_a_client_that_stopped_reading(
    make_source: Callable[[Probe], Any],
) -> None:
    """With `send_timeout=1`, a client that stops reading is dropped and the source closed."""
    probe = Probe()
    app = SSEApp(lambda request: make_source(probe), send_timeout=1.0)
    with uvicorn_server(app) as url, stalled_client(url):
        sent = time.monotonic()
        closed = probe.wait_closed(timeout=15.0) - sent
        wait_until(lambda: len(app.registry) == 0, what="the registry is empty")
    print(f"\nSSEApp send_timeout=1, {make_source.__name__}: source closed after {closed:.2f} s")
    assert closed < 10.0


@pytest.mark.parametrize("make_source", [flood_sync, flood_async], ids=["sync", "async"])
def test_without_send_timeout_a_stalled_client_holds_the_source_back(
    make_source: Callable[[Probe], Any],
) -> None:
    """`send_timeout=None`: a client that stops reading is kept, and the source is held back.

    The control for the test above: the stall alone does not close the source.  The source
    runs ahead by at most `PULL_AHEAD` chunks (plus what the socket buffers hold), not without
    bound; when the client leaves, the source is closed.
    """
    probe = Probe()
    app = SSEApp(lambda request: make_source(probe), send_timeout=None)
    with uvicorn_server(app) as url:
        with stalled_client(url):
            assert probe.started.wait(DEADLINE)
            assert not probe.closed.wait(3.0), "the source was closed although nothing failed"
            produced = probe.produced
            assert produced < PULL_AHEAD + 4000, f"{produced} chunks of 16 KiB produced"
        left = time.monotonic()
        closed = probe.wait_closed() - left
    print(
        f"\nSSEApp send_timeout=None, {make_source.__name__}: {produced} chunks produced while "
        f"stalled; source closed {closed * 1000:.1f} ms after the client left"
    )


# -- registry ---------------------------------------------------------------------------------


def test_registry_close_all_ends_every_stream_with_a_farewell() -> None:
    """`SSEApp`'s registry counts open streams; `close_all()` ends each with farewell and retry."""
    probes = Probes()
    registry = StreamRegistry(farewell=Event("bye", event="shutdown"), retry=500)
    app = SSEApp(lambda request: aticks(probes[tag_of(request)], 0.2), registry=registry)
    with uvicorn_server(app) as url, client(url) as http, contextlib.ExitStack() as stack:
        readers = [
            StreamReader(stack.enter_context(http.stream("GET", f"/?tag=s{n}"))) for n in range(3)
        ]
        for reader in readers:
            # The first event, not just the preamble: a source whose task has not run yet when
            # the stream ends is never started, and has no `finally` to run.
            reader.events(1)
        assert len(registry) == 3
        assert registry.close_all() == 3
        for n, reader in enumerate(readers):
            events = reader.rest()
            assert events[-1] == MessageEvent("shutdown", "bye", "")
            assert reader.parser.retry == 500
            probes[f"s{n}"].wait_closed()
        wait_until(lambda: len(registry) == 0, what="the registry is empty")
