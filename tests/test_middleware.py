"""The mounting middlewares: ssekit inside a Bottle app (WSGI, werkzeug) and a Litestar app
(ASGI, uvicorn), with the apps of `apps.mounted_apps`.

The apps' own routes must answer exactly as without the middleware; the mounted broker must
behave as the other adapters do (resume, 400/403/405/503, HEAD, UTF-8 `Last-Event-ID`,
compression), streams must be tracked and closed when the client leaves (latency printed with
`pytest -s`), ASGI lifespan and websockets must reach the app, and SIGTERM must end streams with
the registry's farewell.  Also in headless Chromium: resume after the server ends a stream.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from apps.mounted_apps import (
    FAREWELL,
    Mounted,
    bottle_app,
    litestar_app,
    mounted_bottle,
    mounted_litestar,
)
from playwright.sync_api import Browser
from support.asgi_servers import uvicorn_server
from support.chromium import BROWSER_MARKS, launch_chromium
from support.waiting import wait_until
from support.wsgi_servers import werkzeug_server

from ssekit import EventParser, MessageEvent
from ssekit.adapters import asgi as asgi_adapter
from ssekit.adapters import wsgi as wsgi_adapter
from ssekit.broker import MAX_TOPIC_LENGTH, MemoryBroker

FRAMEWORKS = ("bottle", "litestar")
TESTS = Path(__file__).parent
UNICODE_ID = "é…😀"


@contextlib.contextmanager
def serve(framework: str, *, mounted: bool = True) -> Iterator[tuple[str, Mounted]]:
    """The framework's app (wrapped by the middleware, or not) on a real server."""
    state = Mounted()
    if framework == "bottle":
        with werkzeug_server(mounted_bottle(state) if mounted else bottle_app()) as url:
            yield url, state
    else:
        app = mounted_litestar(state) if mounted else litestar_app(state)
        with uvicorn_server(app, lifespan="on", ws="wsproto") as url:
            yield url, state


class Events:
    """The events of a streaming response (decoded by httpx), taken a few at a time."""

    def __init__(self, response: httpx.Response) -> None:
        self._chunks = response.iter_bytes()
        self._parser = EventParser()
        self._ready: list[MessageEvent] = []

    def take(self, n: int) -> list[MessageEvent]:
        """The next `n` events (fewer if the stream ends)."""
        while len(self._ready) < n:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._ready.extend(self._parser.feed(chunk))
        taken, self._ready = self._ready[:n], self._ready[n:]
        return taken

    def rest(self) -> list[MessageEvent]:
        """Every event until the stream ends."""
        return self.take(sys.maxsize)


# -- the app's own routes ------------------------------------------------------------------------

OWN_REQUESTS: list[tuple[str, str, bytes | None]] = [
    ("GET", "/", None),
    ("GET", "/items/7", None),
    ("GET", "/items/x", None),
    ("POST", "/echo", b"\x00raw \xff bytes"),
    ("GET", "/page", None),
    ("GET", "/events", None),
    ("GET", "/missing", None),
    ("GET", "/eventsroom", None),
    ("HEAD", "/", None),
]


def own_answers(url: str) -> list[tuple[int, str, bytes]]:
    answers = []
    with httpx.Client(base_url=url, timeout=10) as client:
        for method, path, body in OWN_REQUESTS:
            response = client.request(method, path, content=body)
            body = response.content.replace(url.encode(), b"<url>")  # Bottle's 404 names it
            answers.append((response.status_code, response.headers.get("content-type"), body))
    return answers


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_apps_own_routes_answer_unchanged(framework: str) -> None:
    with serve(framework, mounted=False) as (url, _):
        alone = own_answers(url)
    with serve(framework) as (url, _):
        wrapped = own_answers(url)
    assert wrapped == alone
    assert alone[0][0] == 200
    assert alone[0][2] == b"home"
    assert alone[3][2] == b"\x00raw \xff bytes"
    assert alone[5][2] == b"the app's own /events"
    assert alone[6][0] == 404


# -- the mounted broker --------------------------------------------------------------------------


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_broker_streams_and_resumes(framework: str) -> None:
    with serve(framework) as (url, state):
        ids = [state.broker.publish("room", text) for text in ("a", "b", "c")]
        with httpx.stream(
            "GET", f"{url}/events/room", headers={"Last-Event-ID": ids[0]}, timeout=10
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-encoding"] == "gzip"
            assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
            events = Events(response)
            replayed = events.take(2)
            state.broker.publish("room", "d")
            live = events.take(1)
    assert [(e.data, e.last_event_id) for e in replayed] == [("b", ids[1]), ("c", ids[2])]
    assert [e.data for e in live] == ["d"]
    assert state.asked == [(["room"], ids[0])]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_topics_with_slashes_and_unicode(framework: str) -> None:
    with serve(framework) as (url, state):
        first = state.broker.publish("café/42", "x")
        state.broker.publish("café/42", "y")
        with httpx.stream(
            "GET", f"{url}/events/caf%C3%A9/42", params={"lastEventId": first}, timeout=10
        ) as response:
            events = Events(response).take(1)
    assert [e.data for e in events] == ["y"]
    assert state.asked[0][0] == ["café/42"]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_refusals_match_the_other_adapters(framework: str) -> None:
    with serve(framework) as (url, state), httpx.Client(base_url=url, timeout=10) as client:
        empty = client.get("/events/")
        long = client.get("/events/" + "x" * (MAX_TOPIC_LENGTH + 1))
        private = client.get("/events/private-room")
        post = client.post("/events/room")
        put = client.put("/whoami")
        with client.stream("GET", "/capped/t") as held:
            chunks = held.iter_bytes()  # kept: a dropped iterator closes the response
            next(chunks)  # the opening comment: the subscription exists
            full = client.get("/capped/t")
    assert (empty.status_code, empty.text) == (400, "The topic is empty.")
    assert long.status_code == 400
    assert "longer than" in long.text
    assert (private.status_code, private.text) == (403, "Forbidden")
    assert [topics for topics, _ in state.asked] == [["private-room"]]  # 400s ask nobody
    assert post.status_code == 405
    assert post.headers["allow"] == "GET, HEAD"
    assert put.status_code == 405
    assert put.headers["allow"] == "GET, HEAD, POST"
    assert full.status_code == 503
    assert full.headers["retry-after"] == "5"
    for refused in (empty, private, post, full):
        assert refused.headers["content-type"] == "text/plain; charset=utf-8"


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_head_gets_the_headers_and_no_body(framework: str) -> None:
    with serve(framework) as (url, state):
        head = httpx.head(f"{url}/events/room", headers={"Accept-Encoding": "gzip"}, timeout=10)
        plain = httpx.head(
            f"{url}/events/room", headers={"Accept-Encoding": "identity"}, timeout=10
        )
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert head.headers["content-encoding"] == "gzip"
    assert head.headers["vary"] == "Accept-Encoding"
    assert "content-encoding" not in plain.headers
    wait_until(lambda: len(state.registry) == 0, "no stream tracked for a HEAD")


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("how", ["header", "query"])
def test_last_event_id_is_read_as_utf8(framework: str, how: str) -> None:
    headers = {"Last-Event-ID": UNICODE_ID.encode()} if how == "header" else {}
    params = {"lastEventId": UNICODE_ID} if how == "query" else {}
    with serve(framework) as (url, _):
        response = httpx.post(f"{url}/whoami", headers=headers, params=params, timeout=10)
    [event] = EventParser().feed(response.content)
    assert json.loads(event.data) == {"last_event_id": UNICODE_ID, "method": "POST"}


# -- streams' lives ------------------------------------------------------------------------------


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_streams_are_tracked_and_ended_by_the_registry(framework: str) -> None:
    with serve(framework) as (url, state), httpx.stream("GET", f"{url}/clock", timeout=10) as r:
        events = Events(r)
        events.take(2)
        wait_until(lambda: len(state.registry) == 1, "the stream is tracked")
        assert state.registry.close_all() == 1
        rest = events.rest()
    assert rest[-1].data == FAREWELL
    wait_until(lambda: len(state.registry) == 0, "the stream is forgotten")
    wait_until(lambda: len(state.closed) == 1, "the source is closed")


DISCONNECT_ROUNDS = 5


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_client_leaving_closes_the_source(framework: str) -> None:
    """The source is closed soon after the client leaves (figures printed; bound generous)."""
    latencies = []
    with serve(framework) as (url, state):
        for round_ in range(DISCONNECT_ROUNDS):
            with httpx.stream("GET", f"{url}/clock", params={"interval": "0.02"}, timeout=10) as r:
                Events(r).take(1)
                left = time.monotonic()
            closed = round_ + 1
            wait_until(lambda: len(state.closed) == closed, "the source is closed")  # noqa: B023
            latencies.append((state.closed[-1] - left) * 1000)
    assert max(latencies) < 5000, f"disconnect -> source closed, ms: {latencies}"


# -- ASGI specifics ------------------------------------------------------------------------------


def test_the_asgi_apps_lifespan_runs_through_the_middleware() -> None:
    with serve("litestar") as (url, state):
        assert state.lifespan == ["startup"]
        assert httpx.get(f"{url}/", timeout=10).text == "home"
    assert state.lifespan == ["startup", "shutdown"]


def test_an_app_without_lifespan_gets_it_answered() -> None:
    """An app that raises on lifespan scopes (as Django's ASGI handler does): the middleware
    answers the lifespan itself, so uvicorn with `lifespan="on"` still starts."""

    async def http_only(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError("HTTP only")
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    middleware = asgi_adapter.SSEMiddleware(http_only).add_stream("/one", lambda r: ["x"])
    with uvicorn_server(middleware, lifespan="on") as url:
        assert httpx.get(f"{url}/other", timeout=10).status_code == 204
        [event] = EventParser().feed(httpx.get(f"{url}/one", timeout=10).content)
    assert event.data == "x"


def test_sigterm_ends_mounted_streams_with_the_farewell(tmp_path: Path) -> None:
    """uvicorn on the main thread of its own process: the middleware's lifespan chained the
    registry's handlers, so SIGTERM ends the open stream with the farewell and the server exits
    without waiting for the client."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}
    process = subprocess.Popen(
        [sys.executable, "-m", "apps.mounted_apps"],
        cwd=TESTS,
        env=env,
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "stderr").open("w"),
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("port "), line
        url = f"http://127.0.0.1:{line.split()[1]}"
        wait_until(lambda: _answers(url), "the server answers")
        with httpx.stream("GET", f"{url}/clock", params={"interval": "0.5"}, timeout=20) as r:
            events = Events(r)
            events.take(1)
            sent = time.monotonic()
            process.send_signal(signal.SIGTERM)
            rest = events.rest()
            ended = time.monotonic()
        code = process.wait(20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        if process.stdout is not None:
            process.stdout.close()
    assert rest[-1].data == FAREWELL
    # uvicorn re-raises the signal it caught once it has shut down: the default action ends it.
    assert code in (0, -signal.SIGTERM), (tmp_path / "stderr").read_text()
    assert "Traceback" not in (tmp_path / "stderr").read_text()
    assert ended - sent < 5, f"SIGTERM -> farewell received in {ended - sent:.3f} s"


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


# -- building ------------------------------------------------------------------------------------


def test_mounts_are_checked_when_added() -> None:
    broker = MemoryBroker()
    for middleware in (
        wsgi_adapter.SSEMiddleware(bottle_app()),
        asgi_adapter.SSEMiddleware(litestar_app(Mounted())),
    ):
        middleware.add_broker("/events", broker)
        with pytest.raises(ValueError, match="must be a string that starts with '/'"):
            middleware.add_stream("clock", lambda r: [])
        with pytest.raises(ValueError, match="must not end with '/'"):
            middleware.add_broker("/topics/", broker)
        with pytest.raises(ValueError, match="mounted already"):
            middleware.add_stream("/events", lambda r: [])
        with pytest.raises(ValueError, match="inside the broker prefix"):
            middleware.add_stream("/events/special", lambda r: [])
        with pytest.raises(TypeError, match="heartbeet"):
            middleware.add_stream("/x", lambda r: [], heartbeet=1)  # type: ignore[call-arg]


def test_the_wsgi_middleware_refuses_an_async_factory() -> None:
    async def factory(request: Any) -> list[str]:
        return []

    with pytest.raises(TypeError, match="needs a sync factory"):
        wsgi_adapter.SSEMiddleware(bottle_app()).add_stream("/x", factory)


# -- in a browser ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_chromium()


def chromium_test(test: Any) -> Any:
    for mark in BROWSER_MARKS:
        test = mark(test)
    return test


@chromium_test
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_chromium_follows_and_resumes(browser: Browser, framework: str) -> None:
    """Chromium on the app's own page follows `/events/room`; the server ends the stream (the
    registry's farewell, `retry: 200`); events published meanwhile arrive after the browser's
    own reconnect, which sends `Last-Event-ID`."""
    context = browser.new_context()
    try:
        page = context.new_page()
        with serve(framework) as (url, state):
            page.goto(f"{url}/page")
            page.evaluate("(url) => window.follow(url)", f"{url}/events/room")
            page.wait_for_function("window.opened === 1", timeout=20_000)
            first = [state.broker.publish("room", text) for text in ("a", "b")]
            page.wait_for_function("window.seen.length === 2", timeout=20_000)
            state.registry.close_all()
            wait_until(lambda: len(state.asked) == 2, "the browser has reconnected")
            later = [state.broker.publish("room", text) for text in ("c", "d")]
            page.wait_for_function("window.seen.length === 5", timeout=20_000)
            seen = page.evaluate("window.seen")
            websocket_echo = None
            if framework == "litestar":  # the app's websocket route, through the middleware
                page.evaluate(
                    "(url) => window.echo(url, 'hello')", f"{url.replace('http', 'ws')}/ws"
                )
                page.wait_for_function("window.wsEcho !== null", timeout=20_000)
                websocket_echo = page.evaluate("window.wsEcho")
            page.evaluate("window.source.close()")
    finally:
        context.close()
    assert seen == [
        ["a", first[0]],
        ["b", first[1]],
        [FAREWELL, first[1]],  # no id of its own: lastEventId stays
        ["c", later[0]],
        ["d", later[1]],
    ]
    assert state.asked[:2] == [(["room"], None), (["room"], first[1])]
    if framework == "litestar":
        assert websocket_echo == "HELLO"


# -- Django, through the same middlewares --------------------------------------------------------


@contextlib.contextmanager
def django_server(kind: str, workdir: Path) -> Iterator[str]:
    """`apps.mounted_django` in a process of its own (Django's settings are per process)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}
    stderr = workdir / "stderr"
    process = subprocess.Popen(
        [sys.executable, "-m", "apps.mounted_django", kind],
        cwd=TESTS,
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr.open("w"),
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("port "), stderr.read_text()
        url = f"http://127.0.0.1:{line.split()[1]}"
        wait_until(lambda: _answers(url), "Django answers")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_django_through_the_middleware(kind: str, tmp_path: Path) -> None:
    """Django's own views answer; the broker mounted beside them streams and resumes."""
    with django_server(kind, tmp_path) as url, httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/").text == "home"
        assert client.get("/missing").status_code == 404
        first = client.post("/publish/room", content=b"a").text
        client.post("/publish/room", content=b"b")
        with client.stream("GET", "/events/room", headers={"Last-Event-ID": first}) as response:
            events = Events(response)
            replayed = events.take(1)
            client.post("/publish/room", content=b"c")
            live = events.take(1)
        refused = client.get("/events/")
    assert [e.data for e in replayed] == ["b"]
    assert [e.data for e in live] == ["c"]
    assert refused.status_code == 400
