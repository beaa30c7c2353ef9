"""What only `SSEApp` has, end to end: a real uvicorn server on 127.0.0.1, real httpx clients
and raw sockets.  What every adapter shares is checked by `test_adapter_contract.py`.

Each test starts its own server (see `support.asgi_servers.uvicorn_server`), so the thread check
of `conftest.py` also proves that sources' worker threads end.  Sources report to `Probe`s; the
tests wait on them with generous deadlines.  Measurements live in `benchmarks/bench_adapters.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from support.asgi_servers import (
    DEADLINE,
    SAMPLE_CHUNKS,
    SAMPLE_EVENTS,
    Probe,
    Probes,
    StreamReader,
    aticks,
    client,
    ticks,
    uvicorn_server,
)
from support.waiting import wait_until

from ssekit import Event, MessageEvent, StreamRegistry, to_sse
from ssekit.adapters.asgi import SSEApp

pytestmark = pytest.mark.timeout(30)

#: How many streams the registry tests hold open at once.
STREAMS = 3
#: Chunks up to which a source may run ahead of a client that stopped reading: the stream's
#: pull-ahead (1,024 chunks) plus what the socket buffers hold (a bound, not an exact figure).
RUN_AHEAD_BOUND = 1024 + 4000


def tag_of(request: Any) -> str:
    tag: str = request.query.get("tag", "default")
    return tag


# -- the factory's shapes -----------------------------------------------------------------------


def sample_sync(request: Any) -> Iterator[Any]:
    yield from SAMPLE_CHUNKS


async def sample_from_async_factory(request: Any) -> list[Any]:
    await asyncio.sleep(0)
    return list(SAMPLE_CHUNKS)


#: Sync and async generators are in the contract suite; these are the other shapes.
FACTORIES: dict[str, Callable[[Any], Any]] = {
    "list": lambda request: list(SAMPLE_CHUNKS),
    "async factory": sample_from_async_factory,
    "ready SSEStream": lambda request: to_sse(sample_sync(request)),
}


@pytest.mark.parametrize("factory", FACTORIES.values(), ids=FACTORIES.keys())
def test_body_is_what_the_source_sent(factory: Callable[[Any], Any]) -> None:
    """A list, an async factory, an `SSEStream` made by the factory: parsed back exactly."""
    with (
        uvicorn_server(SSEApp(factory)) as url,
        client(url) as http,
        http.stream("GET", "/") as response,
    ):
        reader = StreamReader(response)
        events = reader.rest()
    assert events == SAMPLE_EVENTS
    assert reader.raw.startswith(b": ok\n")


async def failing_async(request: Any) -> list[str]:
    await asyncio.sleep(0)
    raise ValueError("no such job")


def test_async_factory_exception_is_a_500() -> None:
    """An exception raised by an async factory is a real 500, its text kept from the client."""
    with uvicorn_server(SSEApp(failing_async)) as url, client(url) as http:
        response = http.get("/")
    assert response.status_code == 500
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == "Internal Server Error"


# -- HEAD, methods --------------------------------------------------------------------------------


def test_head_closes_a_generator_without_starting_it() -> None:
    """HEAD: the headers only; a generator source is closed before it ever ran, and the stream
    leaves the registry.  (A source with `close()` is in the contract suite.)"""
    probe = Probe()
    generators: list[Iterator[int]] = []

    def factory(request: Any) -> Iterator[int]:
        generator = ticks(probe)
        generators.append(generator)
        return generator

    app = SSEApp(factory)
    with uvicorn_server(app) as url, client(url) as http:
        response = http.head("/")
        wait_until(
            lambda: inspect.getgeneratorstate(generators[0]) == inspect.GEN_CLOSED,
            "the HEAD request's generator is closed",
        )
        wait_until(lambda: len(app.registry) == 0, "the registry is empty")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.content == b""
    assert not probe.started.is_set()


def test_methods_are_case_insensitive_and_listed_in_order() -> None:
    """`methods=("post",)` serves POST; a 405 lists `GET, HEAD, POST` in that order."""
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


# -- the registry ---------------------------------------------------------------------------------


def test_registry_counts_open_streams_until_their_clients_leave() -> None:
    """Streams are in `SSEApp.registry` while open; sync sources blocked in `next()` (1 s
    between chunks) are closed once their clients leave, and the registry empties."""
    probes = Probes()
    app = SSEApp(lambda request: ticks(probes[tag_of(request)], interval=1.0), heartbeat=1.0)
    with uvicorn_server(app) as url, client(url) as http, contextlib.ExitStack() as stack:
        readers = []
        for n in range(STREAMS):
            response = stack.enter_context(http.stream("GET", f"/?tag=s{n}"))
            readers.append(StreamReader(response))
        for reader in readers:
            reader.events(1)
        assert len(app.registry) == STREAMS
        for reader in readers:
            reader.response.close()
        for n in range(STREAMS):
            probes[f"s{n}"].wait_closed()
        wait_until(lambda: len(app.registry) == 0, "the registry is empty")


def test_registry_close_all_ends_every_stream_with_a_farewell() -> None:
    """`SSEApp`'s registry counts open streams; `close_all()` ends each with farewell and retry."""
    probes = Probes()
    registry = StreamRegistry(farewell=Event("bye", event="shutdown"), retry=500)
    app = SSEApp(lambda request: aticks(probes[tag_of(request)], 0.2), registry=registry)
    with uvicorn_server(app) as url, client(url) as http, contextlib.ExitStack() as stack:
        readers = [
            StreamReader(stack.enter_context(http.stream("GET", f"/?tag=s{n}")))
            for n in range(STREAMS)
        ]
        for reader in readers:
            # The first event, not just the preamble: a source whose task has not run yet when
            # the stream ends is never started, and has no `finally` to run.
            reader.events(1)
        assert len(registry) == STREAMS
        assert registry.close_all() == STREAMS
        for n, reader in enumerate(readers):
            events = reader.rest()
            assert events[-1] == MessageEvent("shutdown", "bye", "")
            assert reader.parser.retry == 500
            probes[f"s{n}"].wait_closed()
        wait_until(lambda: len(registry) == 0, "the registry is empty")


# -- send_timeout ---------------------------------------------------------------------------------

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
        probe.wait_closed(timeout=15.0)
        wait_until(lambda: len(app.registry) == 0, "the registry is empty")


@pytest.mark.parametrize("make_source", [flood_sync, flood_async], ids=["sync", "async"])
def test_without_send_timeout_a_stalled_client_holds_the_source_back(
    make_source: Callable[[Probe], Any],
) -> None:
    """`send_timeout=None`: a client that stops reading is kept, and the source is held back.

    The control for the test above: the stall alone does not close the source.  The source
    runs ahead by a bounded number of chunks (the stream's pull-ahead plus what the socket
    buffers hold), not without bound; when the client leaves, the source is closed.
    """
    probe = Probe()
    app = SSEApp(lambda request: make_source(probe), send_timeout=None)
    with uvicorn_server(app) as url:
        with stalled_client(url):
            assert probe.started.wait(DEADLINE)
            assert not probe.closed.wait(3.0), "the source was closed although nothing failed"
            produced = probe.produced
            assert produced < RUN_AHEAD_BOUND, f"{produced} chunks of 16 KiB produced"
        probe.wait_closed()
