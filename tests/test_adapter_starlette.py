"""`SSEResponse`, `sse_route` and FastAPI end to end: a real uvicorn server, real httpx clients.

The contract suite (`test_adapter_contract.py`) checks an `SSEResponse` returned by a Starlette
route and by a FastAPI endpoint declared with `response_class=SSEResponse`, under uvicorn and
hypercorn.  Here the same core checks run against the other ways of serving a stream (`CASES`):
`sse_route()` with a sync and an async factory, a FastAPI endpoint returning `SSEResponse(...)`
without `response_class`, and FastAPI generator endpoints (`yield`) declared with
`response_class=SSEResponse`; then what only Starlette and FastAPI have (their own headers, the
lifespan registry, `send_timeout` on `SSEResponse`).

What does not work, pinned by the last tests: a FastAPI endpoint that *returns* a generator
(rather than being one) with `response_class=SSEResponse`.  FastAPI only streams endpoints that
are generator functions; anything else it returns goes through `jsonable_encoder`, which drains a
sync generator into a list (on the event loop) before the response starts, and fails with a 500
on an async generator.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
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

from ssekit import Event, EventParser, MessageEvent, StreamRegistry
from ssekit.adapters.starlette import SSEResponse, last_event_id, sse_route

pytestmark = pytest.mark.timeout(30)

#: Trials per case of the disconnect checks.
TRIALS = 3
#: The chunk of a source that floods a client.
BIG_CHUNK = "x" * 16384


# -- sources ----------------------------------------------------------------------------------


def sample_sync(probe: Probe) -> Iterator[Any]:
    probe.started.set()
    try:
        yield from SAMPLE_CHUNKS
    finally:
        probe.close()


async def sample_async(probe: Probe) -> AsyncIterator[Any]:
    probe.started.set()
    try:
        for chunk in SAMPLE_CHUNKS:
            yield chunk
    finally:
        probe.close()


def late_sync(probe: Probe) -> Iterator[str]:
    """Blocks in `next()` until released (at most 5 s) before its first chunk."""
    probe.started.set()
    try:
        probe.release.wait(5.0)
        yield "late"
    finally:
        probe.close()


async def late_async(probe: Probe) -> AsyncIterator[str]:
    probe.started.set()
    try:
        await asyncio.sleep(5.0)
        yield "late"
    finally:
        probe.close()


async def flood_async(probe: Probe) -> AsyncIterator[str]:
    probe.started.set()
    try:
        while True:
            yield BIG_CHUNK
            await asyncio.sleep(0)
    finally:
        probe.close()


def source_for(request: Request, probes: Probes) -> Any:
    """The source a request asks for: `mode`, `kind` (sync/async), `interval`, `tag`."""
    params = request.query_params
    probe = probes[params.get("tag", "default")]
    probe.seen.append(last_event_id(request))
    asynchronous = params.get("kind", "sync") == "async"
    mode = params.get("mode", "ticks")
    if mode == "sample":
        return sample_async(probe) if asynchronous else sample_sync(probe)
    if mode == "late":
        return late_async(probe) if asynchronous else late_sync(probe)
    if mode == "flood":
        return flood_async(probe)
    if mode == "generator":  # kept by the probe, to check its state after a HEAD request
        generator = ticks(probe)
        probe.seen.append(generator)
        return generator
    interval = float(params["interval"]) if "interval" in params else None
    return aticks(probe, interval) if asynchronous else ticks(probe, interval)


# -- the apps ---------------------------------------------------------------------------------


def build_starlette(probes: Probes, registry: StreamRegistry | None = None) -> Starlette:
    async def response(request: Request) -> Response:
        timeout = request.query_params.get("send_timeout")
        return SSEResponse(
            source_for(request, probes), send_timeout=float(timeout) if timeout else 60.0
        )

    async def custom_headers(request: Request) -> Response:
        headers = {"X-Custom": "yes", "Cache-Control": "no-store"}
        return SSEResponse(["a"], headers=headers)

    async def async_factory(request: Request) -> Any:
        await asyncio.sleep(0)
        return source_for(request, probes)

    def failing_factory(request: Request) -> Any:
        raise RuntimeError("the job does not exist")

    return Starlette(
        routes=[
            Route("/response", response),
            Route("/response/custom-headers", custom_headers),
            sse_route("/route", lambda request: source_for(request, probes)),
            sse_route("/route/async", async_factory),
            sse_route("/route/post", lambda request: [request.method], methods=("POST",)),
            sse_route("/route/fail", failing_factory),
        ],
        lifespan=registry.lifespan if registry is not None else None,
    )


def build_fastapi(probes: Probes, registry: StreamRegistry | None = None) -> FastAPI:
    app = FastAPI(lifespan=registry.lifespan if registry is not None else None)

    @app.get("/returns")
    async def returns(request: Request) -> SSEResponse:
        return SSEResponse(source_for(request, probes))

    @app.get("/yields/sync", response_class=SSEResponse)
    def yields_sync(request: Request, mode: str = "ticks", tag: str = "default") -> Iterator[Any]:
        probe = probes[tag]
        probe.seen.append(last_event_id(request))
        probe.started.set()
        try:
            if mode == "sample":
                yield from SAMPLE_CHUNKS
            elif mode == "late":
                probe.release.wait(5.0)
                yield "late"
            else:
                interval = request.query_params.get("interval")
                n = 0
                while True:
                    yield n
                    n += 1
                    if interval is not None:
                        time.sleep(float(interval))
        finally:
            probe.close()

    @app.get("/yields/async", response_class=SSEResponse)
    async def yields_async(
        request: Request, mode: str = "ticks", tag: str = "default"
    ) -> AsyncIterator[Any]:
        probe = probes[tag]
        probe.seen.append(last_event_id(request))
        probe.started.set()
        try:
            if mode == "sample":
                for chunk in SAMPLE_CHUNKS:
                    yield chunk
            elif mode == "late":
                await asyncio.sleep(5.0)
                yield "late"
            else:
                interval = request.query_params.get("interval")
                n = 0
                while True:
                    yield n
                    n += 1
                    if interval is not None:
                        await asyncio.sleep(float(interval))
        finally:
            probe.close()

    @app.get("/returns-generator", response_class=SSEResponse)
    def returns_generator(tag: str = "default") -> Any:
        probe = probes[tag]

        def generator() -> Iterator[str]:
            probe.started.set()
            try:
                yield "first"
                probe.release.wait(5.0)
                yield "second"
            finally:
                probe.close()

        return generator()

    @app.get("/returns-async-generator", response_class=SSEResponse)
    async def returns_async_generator() -> Any:
        async def generator() -> AsyncIterator[str]:
            yield "first"

        return generator()

    return app


BUILDERS: dict[str, Callable[..., Any]] = {"starlette": build_starlette, "fastapi": build_fastapi}


@dataclass(frozen=True)
class Case:
    """One way of serving a stream: which app, which path, which kind of source."""

    name: str
    app: str
    path: str
    kind: str

    def url(self, **params: Any) -> str:
        return f"{self.path}?{urlencode({'kind': self.kind, **params})}"

    def __str__(self) -> str:
        return self.name


#: `SSEResponse` from a Starlette route (sync and async sources) and FastAPI's
#: `response_class=SSEResponse` returning `SSEResponse` are in the contract suite.
CASES = {
    case.name: case
    for case in [
        Case("sse_route sync", "starlette", "/route", "sync"),
        Case("sse_route async factory+source", "starlette", "/route/async", "async"),
        Case("FastAPI returns SSEResponse sync", "fastapi", "/returns", "sync"),
        Case("FastAPI returns SSEResponse async", "fastapi", "/returns", "async"),
        Case("FastAPI response_class, yields sync", "fastapi", "/yields/sync", "sync"),
        Case("FastAPI response_class, yields async", "fastapi", "/yields/async", "async"),
    ]
}
every_case = pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())


@contextlib.contextmanager
def serve(
    case_or_app: Case | str, registry: StreamRegistry | None = None
) -> Iterator[tuple[httpx.Client, Probes]]:
    """Build the case's app, serve it with uvicorn, yield a client for it and its probes."""
    name = case_or_app.app if isinstance(case_or_app, Case) else case_or_app
    probes = Probes()
    app = BUILDERS[name](probes, registry)
    with uvicorn_server(app) as url, client(url) as http:
        yield http, probes


# -- headers and body --------------------------------------------------------------------------


@every_case
def test_headers(case: Case) -> None:
    """200 with the event-stream headers, once each; no Content-Length, no Connection header."""
    with serve(case) as (http, _), http.stream("GET", case.url(mode="sample")) as response:
        StreamReader(response).rest()
    assert response.status_code == 200
    headers = response.headers
    assert headers.get_list("content-type") == ["text/event-stream; charset=utf-8"]
    assert headers.get_list("cache-control") == ["no-cache"]
    assert headers.get_list("x-accel-buffering") == ["no"]
    assert "content-length" not in headers
    assert "connection" not in headers


def test_sse_response_keeps_the_user_headers() -> None:
    """Headers given to `SSEResponse` are sent, and win over the defaults they name."""
    with serve("starlette") as (http, _):
        response = http.get("/response/custom-headers")
    assert response.status_code == 200
    assert response.headers["x-custom"] == "yes"
    assert response.headers.get_list("cache-control") == ["no-store"]
    assert response.headers.get_list("x-accel-buffering") == ["no"]
    assert response.headers.get_list("content-type") == ["text/event-stream; charset=utf-8"]


@every_case
def test_body_is_what_the_source_sent(case: Case) -> None:
    """Strings, JSON, events with type and id, multi-line data, bytes: parsed back exactly."""
    with serve(case) as (http, probes):
        with http.stream("GET", case.url(mode="sample")) as response:
            reader = StreamReader(response)
            events = reader.rest()
        probes["default"].wait_closed()
    assert events == SAMPLE_EVENTS
    assert reader.raw.startswith(b": ok\n")


@every_case
def test_last_event_id_reaches_the_source(case: Case) -> None:
    """`last_event_id(request)` reads `Last-Event-ID`, else the `lastEventId` query parameter."""
    with serve(case) as (http, probes):
        for tag, headers, params in [
            ("header", {"Last-Event-ID": "41"}, {}),
            ("query", {}, {"lastEventId": "17"}),
            ("both", {"Last-Event-ID": "from-header"}, {"lastEventId": "from-query"}),
            ("none", {}, {}),
        ]:
            url = case.url(mode="sample", tag=tag, **params)
            with http.stream("GET", url, headers=headers) as response:
                StreamReader(response).rest()
    assert [probes[tag].seen for tag in ("header", "query", "both", "none")] == [
        ["41"],
        ["17"],
        ["from-header"],
        [None],
    ]


# -- methods and failures ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/response", "/route"], ids=["SSEResponse", "sse_route"])
def test_head_gets_headers_only_and_closes_the_source(path: str) -> None:
    """HEAD: the stream's headers, no body; the source is closed without ever being started."""
    with serve("starlette") as (http, probes):
        response = http.head(f"{path}?mode=generator&tag=head")
        probe = probes["head"]
        [generator] = [seen for seen in probe.seen if inspect.isgenerator(seen)]
        wait_until(
            lambda: inspect.getgeneratorstate(generator) == inspect.GEN_CLOSED,
            what="the HEAD request's generator is closed",
        )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert response.content == b""
    assert not probe.started.is_set()


def test_sse_route_refuses_other_methods_and_methods_enables_post() -> None:
    """`sse_route` serves GET and HEAD; POST is a 405 with `Allow`, unless `methods` adds it."""
    with serve("starlette") as (http, _):
        refused = http.post("/route")
        with http.stream("POST", "/route/post", content=b"{}") as response:
            status = response.status_code
            events = StreamReader(response).rest()
    assert refused.status_code == 405
    assert set(refused.headers["allow"].split(", ")) == {"GET", "HEAD"}  # Starlette's order
    assert status == 200
    assert [event.data for event in events] == ["POST"]


def test_an_exception_in_the_sse_route_factory_is_a_500() -> None:
    """An exception in `sse_route`'s factory is a real 500, not a 200 with an empty stream.
    (An exception in a Starlette or FastAPI endpoint is in the contract suite.)"""
    with serve("starlette") as (http, _):
        response = http.get("/route/fail")
    assert response.status_code == 500
    assert "text/event-stream" not in response.headers["content-type"]
    assert "the job does not exist" not in response.text


# -- disconnects and first bytes --------------------------------------------------------------


@every_case
@pytest.mark.parametrize("interval", [0.2, None], ids=["waiting", "continuous"])
def test_disconnect_closes_the_source(case: Case, interval: float | None) -> None:
    """When the client closes the response, the source's `finally` runs."""
    params = {} if interval is None else {"interval": interval}
    with serve(case) as (http, probes):
        for n in range(TRIALS):
            with http.stream("GET", case.url(tag=f"trial-{n}", **params)) as response:
                reader = StreamReader(response)  # kept: dropping it would close the response
                reader.events(1)
                response.close()
            probes[f"trial-{n}"].wait_closed()


FIRST_BYTES_CASES = {
    name: CASES[name]
    for name in ("FastAPI response_class, yields sync", "FastAPI response_class, yields async")
}


@pytest.mark.parametrize("case", FIRST_BYTES_CASES.values(), ids=FIRST_BYTES_CASES.keys())
def test_headers_and_preamble_come_before_a_slow_first_chunk(case: Case) -> None:
    """Headers and the `: ok` comment arrive while the source has not yielded (it waits up to
    5 s)."""
    with serve(case) as (http, probes):
        probe = probes["late"]
        try:
            with http.stream("GET", case.url(mode="late", tag="late")) as response:
                reader = StreamReader(response)
                reader.read_until(b": ok\n")
                assert b"data:" not in reader.raw
                assert not probe.closed.is_set()
                assert probe.started.wait(DEADLINE)
            probe.release.set()  # a sync source blocked in next() is closed once it returns
            probe.wait_closed()
        finally:
            probe.release.set()
    assert response.status_code == 200


def test_sse_response_send_timeout_drops_a_client_that_stopped_reading() -> None:
    """`SSEResponse(send_timeout=1)`: a client that stops reading is dropped, its source closed."""
    with serve("starlette") as (http, probes):
        host, port = str(http.base_url).removeprefix("http://").rstrip("/").split(":")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect((host, int(port)))
            request = "GET /response?mode=flood&tag=stalled&send_timeout=1 HTTP/1.1\r\n"
            sock.sendall(f"{request}Host: {host}:{port}\r\n\r\n".encode())
            probes["stalled"].wait_closed(timeout=15.0)


# -- registry and shutdown --------------------------------------------------------------------


@pytest.mark.parametrize("app", ["starlette", "fastapi"])
def test_registry_close_all_ends_every_stream_with_a_farewell(app: str) -> None:
    """With `lifespan=registry.lifespan`, streams are counted; `close_all()` ends each one.

    Each client receives the farewell and `retry: 500`, then its response ends, and each
    source's `finally` runs; the registry is empty again.
    """
    registry = StreamRegistry(farewell="bye", retry=500)
    paths = {
        "starlette": ["/response?kind=sync", "/response?kind=async", "/route?kind=sync"],
        "fastapi": ["/returns?kind=sync", "/yields/sync?", "/yields/async?"],
    }[app]
    with serve(app, registry) as (http, probes), contextlib.ExitStack() as stack:
        readers = []
        for n in range(5):
            url = f"{paths[n % len(paths)]}&interval=0.1&tag=s{n}"
            reader = StreamReader(stack.enter_context(http.stream("GET", url)))
            reader.events(1)
            readers.append(reader)
        assert len(registry) == 5
        assert registry.close_all() == 5
        for n, reader in enumerate(readers):
            events = reader.rest()
            assert events[-1] == MessageEvent("message", "bye", "")
            assert all(event.data != "bye" for event in events[:-1])
            assert reader.parser.retry == 500
            assert reader.raw.endswith(b"data: bye\n\nretry: 500\n\n")
            probes[f"s{n}"].wait_closed()
        wait_until(lambda: len(registry) == 0, what="the registry is empty")


def test_registry_farewell_event() -> None:
    """A farewell `Event` keeps its type and id."""
    registry = StreamRegistry(farewell=Event("restarting", event="shutdown", id="end"))
    with serve("starlette", registry) as (http, probes):
        with http.stream("GET", "/response?kind=async&interval=0.1&tag=one") as response:
            reader = StreamReader(response)
            reader.events(1)
            assert registry.close_all() == 1
            events = reader.rest()
        probes["one"].wait_closed()
    assert events[-1] == MessageEvent("shutdown", "restarting", "end")
    assert reader.parser.retry == 1000


# -- what FastAPI does not stream --------------------------------------------------------------


def test_fastapi_drains_a_returned_generator_before_responding() -> None:
    """`response_class=SSEResponse` on an endpoint that *returns* a generator does not stream.

    FastAPI streams only endpoints that are generator functions; a returned generator goes
    through `jsonable_encoder`, which drains it into a list before the response starts, so not
    even the headers arrive while the generator waits.  Return `SSEResponse(generator)` instead.
    """
    with serve("fastapi") as (http, probes):
        probe = probes["drained"]
        try:
            with pytest.raises(httpx.ReadTimeout):
                http.get("/returns-generator?tag=drained", timeout=0.5)
            assert probe.started.is_set()
            assert not probe.closed.is_set()
            # It is drained on the event loop: nothing else is served meanwhile.
            with pytest.raises(httpx.ReadTimeout):
                http.get("/returns?mode=sample", timeout=0.5)
        finally:
            probe.release.set()
        probe.wait_closed()
        probes["after"].release.set()
        response = http.get("/returns-generator?tag=after", timeout=DEADLINE)
    assert response.status_code == 200
    assert [event.data for event in EventParser().feed(response.content)] == ["first", "second"]


def test_fastapi_cannot_serve_a_returned_async_generator() -> None:
    """An endpoint returning an async generator with `response_class=SSEResponse` is a 500."""
    with serve("fastapi") as (http, _):
        response = http.get("/returns-async-generator")
    assert response.status_code == 500
