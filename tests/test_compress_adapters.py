"""`compress=` through every adapter, over real servers: raw WSGI, Flask, the WSGI middleware
(werkzeug), raw ASGI, Starlette, the ASGI middleware (uvicorn).

Each event is checked to be decodable as soon as it is on the wire: the source yields the next
event only once the client has decoded the previous one from the raw (still compressed) bytes,
so a compressor that held an event back would stall the stream and fail the test, whatever the
machine's speed.  Also: the headers (`Content-Encoding`, `Vary` merged with the app's), HEAD,
heartbeats, identity when the client does not ask, build-time validation, and Chromium with its
own `Accept-Encoding` (directly and through nginx; latency printed with `pytest -s`).
"""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask
from playwright.sync_api import Browser
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route
from support.asgi_servers import uvicorn_server
from support.chromium import BROWSER_MARKS, launch_chromium
from support.wsgi_servers import werkzeug_server
from test_compress import (
    AVAILABLE,
    LATE,
    NGINX,
    PAGE,
    decompressor,
    nginx_proxy,
    whole,
)

from ssekit import EventParser, MessageEvent
from ssekit._compress import CompressionPolicy
from ssekit.adapters import asgi as asgi_adapter
from ssekit.adapters import flask as flask_adapter
from ssekit.adapters import starlette as starlette_adapter
from ssekit.adapters import wsgi as wsgi_adapter
from ssekit.broker import MemoryBroker

ADAPTERS = ("wsgi", "flask", "wsgi-middleware", "asgi", "starlette", "asgi-middleware")
#: How long the source waits for the client to decode the previous event (far more than needed).
GATE = 10.0


class Gated:
    """A source whose next event waits until the client says it decoded the previous one."""

    def __init__(self, n: int = 4, *, gated: bool = True, interval: float = 0.0) -> None:
        self.n = n
        self.gated = gated
        self.interval = interval
        self.acks: queue.Queue[None] = queue.Queue()
        self.started = 0

    def __call__(self, request: Any = None) -> Iterator[dict[str, Any]]:
        return self.events()

    def events(self) -> Iterator[dict[str, Any]]:
        self.started += 1
        for i in range(self.n):
            if i and self.gated:
                self.acks.get(timeout=GATE)
            elif i and self.interval:
                time.sleep(self.interval)
            yield {"i": i, "t": time.time() * 1000, "last": i == self.n - 1, "pad": "token " * 4}


def wsgi_page(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """The wrapped app of the WSGI middleware (and the page of the browser tests)."""
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
    return [PAGE]


async def asgi_page(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await HTMLResponse(PAGE)(scope, receive, send)


@contextlib.contextmanager
def serve(
    adapter: str, source: Gated, compress: Any = True, vary: str | None = None, **options: Any
) -> Iterator[str]:
    """`source` at `/events` (and a page at `/`) through `adapter` with `compress=`."""
    options.setdefault("heartbeat", None)
    headers = {} if vary is None else {"Vary": vary}
    if adapter in ("wsgi", "wsgi-middleware"):
        if adapter == "wsgi":
            events = wsgi_adapter.SSEWSGIApp(source, compress=compress, **options)

            def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
                if environ["PATH_INFO"] == "/events":
                    return events(environ, start_response)
                return wsgi_page(environ, start_response)

            wsgi: Any = app
        else:
            wsgi = wsgi_adapter.SSEMiddleware(wsgi_page)
            wsgi.add_stream("/events", source, compress=compress, **options)
        with werkzeug_server(wsgi) as url:
            yield url
    elif adapter == "flask":
        flask_app = Flask(__name__)
        flask_app.add_url_rule("/", view_func=lambda: PAGE)

        @flask_app.route("/events", methods=["GET", "HEAD"])
        def events() -> Any:
            return flask_adapter.sse_response(
                source(), compress=compress, headers=headers, **options
            )

        with werkzeug_server(flask_app) as url:
            yield url
    elif adapter == "asgi":
        sse_app = asgi_adapter.SSEApp(source, compress=compress, **options)

        async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "http" and scope["path"] == "/":
                await asgi_page(scope, receive, send)
            else:
                await sse_app(scope, receive, send)

        with uvicorn_server(asgi) as url:
            yield url
    elif adapter == "starlette":

        async def page(request: Request) -> HTMLResponse:
            return HTMLResponse(PAGE)

        async def events_view(request: Request) -> starlette_adapter.SSEResponse:
            return starlette_adapter.SSEResponse(
                source(), compress=compress, headers=headers, **options
            )

        routes = [Route("/", page), Route("/events", events_view, methods=["GET", "HEAD"])]
        with uvicorn_server(Starlette(routes=routes)) as url:
            yield url
    else:
        middleware = asgi_adapter.SSEMiddleware(asgi_page)
        middleware.add_stream("/events", source, compress=compress, **options)
        with uvicorn_server(middleware) as url:
            yield url


def read_raw(
    url: str, accept: str | None, source: Gated | None = None
) -> tuple[httpx.Headers, list[MessageEvent], bytes]:
    """Read `url` undecoded: decode each piece with the coding's own incremental decoder, and
    tell `source` each time an event has been decoded (so it yields the next)."""
    headers = {} if accept is None else {"Accept-Encoding": accept}
    parser = EventParser()
    events: list[MessageEvent] = []
    raw = b""
    with httpx.stream("GET", url, headers=headers, timeout=GATE + 5) as response:
        coding = response.headers.get("content-encoding")
        decode = decompressor(coding) if coding else (lambda data: data)
        for piece in response.iter_raw():
            raw += piece
            for event in parser.feed(decode(piece)):
                events.append(event)
                if source is not None:
                    source.acks.put(None)
        return response.headers, events, raw


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("coding", AVAILABLE)
def test_each_event_decodes_as_soon_as_it_is_sent(adapter: str, coding: str) -> None:
    source = Gated(4)
    with serve(adapter, source) as url:
        headers, events, raw = read_raw(f"{url}/events", coding, source)
    assert headers["content-encoding"] == coding
    assert headers["vary"] == "Accept-Encoding"
    assert headers["content-type"] == "text/event-stream; charset=utf-8"
    assert headers["x-accel-buffering"] == "no"
    assert "content-length" not in headers
    assert [e.json()["i"] for e in events] == [0, 1, 2, 3]
    assert EventParser().feed(whole(coding, raw)) == events  # the trailer ends the body


@pytest.mark.parametrize("adapter", ["flask", "starlette", "asgi-middleware"])
def test_httpx_decodes_the_stream_itself(adapter: str) -> None:
    source = Gated(5, gated=False, interval=0.05)
    parser = EventParser()
    events: list[MessageEvent] = []
    with (
        serve(adapter, source, compress=("gzip",)) as url,
        httpx.stream("GET", f"{url}/events", timeout=10) as response,
    ):  # httpx offers gzip (and br, zstd) and decodes it
        for data in response.iter_bytes():
            events.extend(parser.feed(data))
        encoding = response.headers["content-encoding"]
    assert encoding == "gzip"
    assert [e.json()["i"] for e in events] == list(range(5))


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("accept", [None, "", "identity", "deflate", "gzip;q=0"])
def test_uncompressed_when_the_client_does_not_offer_a_coding(
    adapter: str, accept: str | None
) -> None:
    source = Gated(3, gated=False)
    with serve(adapter, source) as url:
        if accept is None:  # no header at all: httpx always sends one unless told
            with httpx.Client(timeout=10) as client:
                client.headers.pop("accept-encoding")
                response = client.get(f"{url}/events")
            headers, events = response.headers, EventParser().feed(response.content)
        else:
            headers, events, _ = read_raw(f"{url}/events", accept)
    assert "content-encoding" not in headers
    assert headers["vary"] == "Accept-Encoding"
    assert [e.json()["i"] for e in events] == [0, 1, 2]


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_off_by_default(adapter: str) -> None:
    with serve(adapter, Gated(2, gated=False), compress=False) as url:
        headers, events, _ = read_raw(f"{url}/events", "gzip, br, zstd")
    assert "content-encoding" not in headers
    assert "vary" not in headers
    assert len(events) == 2


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_head_gets_the_same_headers_and_no_body(adapter: str) -> None:
    source = Gated(2)
    with serve(adapter, source) as url:
        head = httpx.head(f"{url}/events", headers={"Accept-Encoding": "gzip"}, timeout=10)
        get_headers, _, _ = read_raw(f"{url}/events", "gzip", source)
    assert head.status_code == 200
    assert head.content == b""
    for name in ("content-encoding", "vary", "content-type", "cache-control"):
        assert head.headers[name] == get_headers[name], name
    assert "content-length" not in head.headers or head.headers["content-length"] == "0"


@pytest.mark.parametrize("adapter", ["flask", "starlette"])
def test_vary_joins_the_apps(adapter: str) -> None:
    with serve(adapter, Gated(1, gated=False), vary="Cookie") as url:
        headers, events, _ = read_raw(f"{url}/events", "gzip")
    assert headers["vary"] == "Cookie, Accept-Encoding"
    assert headers["content-encoding"] == "gzip"
    assert len(events) == 1


@pytest.mark.parametrize("adapter", ["wsgi", "asgi", "asgi-middleware"])
def test_heartbeats_are_compressed_and_flushed(adapter: str) -> None:
    """A source that stays quiet until the client has decoded two heartbeats."""
    beats: queue.Queue[None] = queue.Queue()

    def quiet(request: Any) -> Iterator[str]:
        yield "first"
        beats.get(timeout=GATE)
        yield "after the heartbeats"

    pings = 0
    events: list[MessageEvent] = []
    parser = EventParser()
    accept = {"Accept-Encoding": "gzip"}
    with (
        serve(adapter, quiet, heartbeat=0.05) as url,  # type: ignore[arg-type]
        httpx.stream("GET", f"{url}/events", headers=accept, timeout=GATE + 5) as response,
    ):
        decode = decompressor(response.headers["content-encoding"])
        for piece in response.iter_raw():
            text = decode(piece)
            before, pings = pings, pings + text.count(b": ping\n\n")
            if before < 2 <= pings:
                beats.put(None)
            events.extend(parser.feed(text))
    assert [e.data for e in events] == ["first", "after the heartbeats"]
    assert pings >= 2


def test_compress_is_checked_when_the_endpoint_is_built() -> None:
    broker = MemoryBroker()
    builders: list[Callable[[Any], object]] = [
        lambda c: asgi_adapter.SSEApp(Gated(), compress=c),
        lambda c: wsgi_adapter.SSEWSGIApp(Gated(), compress=c),
        lambda c: flask_adapter.sse(compress=c),
        lambda c: flask_adapter.broker_view(broker, compress=c),
        lambda c: starlette_adapter.sse_route("/e", Gated(), compress=c),
        lambda c: starlette_adapter.broker_route("/e/{topic}", broker, compress=c),
        lambda c: starlette_adapter.SSEResponse([], compress=c),
        lambda c: asgi_adapter.SSEMiddleware(asgi_page).add_stream("/e", Gated(), compress=c),
        lambda c: wsgi_adapter.SSEMiddleware(wsgi_page).add_broker("/e", broker, compress=c),
    ]
    for build in builders:
        with pytest.raises(TypeError, match="compress must be True, False or a tuple"):
            build("gzip")
        with pytest.raises(ValueError, match="Unknown content coding 'deflate'"):
            build(("deflate",))
        build(CompressionPolicy(("gzip",), levels={"gzip": 1}))  # a ready policy is taken


def test_a_policy_with_levels_is_used() -> None:
    source = Gated(3)
    policy = CompressionPolicy(("gzip",), levels={"gzip": 9})
    with serve("asgi", source, compress=policy) as url:
        headers, events, _ = read_raw(f"{url}/events", "gzip", source)
    assert headers["content-encoding"] == "gzip"
    assert len(events) == 3


@pytest.mark.parametrize("adapter", ["starlette", "flask"])
def test_an_app_that_encodes_its_body_itself_is_left_alone(adapter: str) -> None:
    """A `Content-Encoding` the app set means the body is the app's: nothing is added."""
    if adapter == "starlette":

        async def view(request: Request) -> Any:
            return starlette_adapter.SSEResponse(
                ["x"], headers={"Content-Encoding": "identity"}, compress=True
            )

        app: Any = Starlette(routes=[Route("/events", view)])
        server = uvicorn_server(app)
    else:
        app = Flask(__name__)
        app.add_url_rule(
            "/events",
            view_func=lambda: flask_adapter.sse_response(
                ["x"], headers={"Content-Encoding": "identity"}, compress=True
            ),
        )
        server = werkzeug_server(app)
    with server as url:
        response = httpx.get(f"{url}/events", headers={"Accept-Encoding": "gzip"}, timeout=10)
    assert response.headers["content-encoding"] == "identity"
    assert "vary" not in response.headers
    assert b"data: x" in response.content


def test_broker_routes_compress() -> None:
    broker = MemoryBroker()
    first = broker.publish("room", "hello")
    broker.publish("room", "again")

    route = starlette_adapter.broker_route("/events/{topic}", broker, compress=True, heartbeat=None)
    with (
        uvicorn_server(Starlette(routes=[route])) as url,
        httpx.stream(
            "GET",
            f"{url}/events/room",
            headers={"Accept-Encoding": "gzip", "Last-Event-ID": first},
            timeout=10,
        ) as response,
    ):
        decode = decompressor(response.headers["content-encoding"])
        parser = EventParser()
        for piece in response.iter_raw():
            events = parser.feed(decode(piece))
            if events:
                break
    assert [e.data for e in events] == ["again"]


# -- in a browser ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_chromium()


N_BROWSER = 10


def browser_delays(browser: Browser, url: str) -> tuple[list[float], str]:
    """Chromium's EventSource on `url/events`; each event's delay (ms) and the Accept-Encoding."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{url}/")
        with page.expect_request(f"{url}/events") as request:
            page.evaluate("(url) => window.start(url)", f"{url}/events")
        accept = request.value.all_headers().get("accept-encoding", "")
        page.wait_for_function(f"window.arrivals.length >= {N_BROWSER}", timeout=20_000)
        arrivals: list[dict[str, float]] = page.evaluate("window.arrivals")
    finally:
        context.close()
    assert [a["i"] for a in arrivals] == list(range(N_BROWSER))
    return [a["delay"] for a in arrivals], accept


def chromium_test(test: Callable[..., None]) -> Callable[..., None]:
    for mark in BROWSER_MARKS:
        test = mark(test)
    return test


@chromium_test
@pytest.mark.parametrize("adapter", ["flask", "starlette", "wsgi-middleware", "asgi-middleware"])
def test_chromium_gets_each_event_promptly(browser: Browser, adapter: str) -> None:
    """`compress=True` with Chromium's own Accept-Encoding, one event every 200 ms."""
    source = Gated(N_BROWSER, gated=False, interval=0.2)
    with serve(adapter, source) as url:
        delays, accept = browser_delays(browser, url)
        check = httpx.head(f"{url}/events", headers={"Accept-Encoding": accept}, timeout=10)
    assert check.headers["content-encoding"] in AVAILABLE
    assert max(delays) < LATE * 1000, f"delays (ms): {delays}"


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (CI installs it)")
@chromium_test
@pytest.mark.parametrize("adapter", ["starlette", "flask"])
def test_chromium_through_nginx(browser: Browser, adapter: str, tmp_path: Path) -> None:
    source = Gated(N_BROWSER, gated=False, interval=0.2)
    with serve(adapter, source) as upstream, nginx_proxy(upstream, tmp_path) as url:
        delays, accept = browser_delays(browser, url)
        check = httpx.head(f"{url}/events", headers={"Accept-Encoding": accept}, timeout=10)
    assert check.headers["content-encoding"] in AVAILABLE
    assert max(delays) < LATE * 1000, f"delays (ms): {delays}"
