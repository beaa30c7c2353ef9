"""What only the Django adapter has, end to end: `@sse` on sync and async views, the async
`authorize` hook, `broker_view`, Chromium reading its streams, how soon a departed client's source
is closed, and the registry's farewell when the server gets SIGTERM.  What every adapter shares
is checked by `test_adapter_contract.py` (which serves `django` and `django_asgi` too).

The project is `apps.django_project`: under werkzeug and gunicorn's gthread and gevent workers
(WSGI, `apps.django_app`) and under uvicorn and hypercorn (ASGI, `apps.django_asgi_app`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from apps import EVENTS_ENV, HEARTBEAT, SAMPLE_EVENTS, SECRET, TICK, django_app, django_project
from apps.django_project import FAREWELL, FAREWELL_RETRY, UNICODE_ID
from playwright.sync_api import Browser
from support.chromium import BROWSER_MARKS, launch_chromium
from support.contract import Pair, pair_params, served_pair
from support.sse_reader import SSEReader
from support.waiting import free_port, wait_until
from support.wsgi_servers import (
    TESTS_DIR,
    EventLog,
    assert_sse_headers,
    client,
    gunicorn_server,
    new_tag,
    werkzeug_server,
)

from ssekit import EventParser, MessageEvent
from ssekit.adapters import django as django_adapter

pytestmark = pytest.mark.timeout(60)

#: How long a source may take to be closed after its client left (far more than it needs).
CLOSE_BOUND = HEARTBEAT + TICK + 10.0
#: How long a server may take to exit after SIGTERM (far more than it needs).
EXIT_BOUND = 15.0
#: Disconnects measured per pair and source kind.
ROUNDS = 5


@pytest.fixture(scope="module", params=pair_params("django", "django_asgi"))
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    yield from served_pair(request, tmp_path_factory)


# -- the decorator ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/decorated", "/decorated-async"])
def test_sse_decorator_with_options(pair: Pair, path: str) -> None:
    """`@sse(end="[DONE]")` on a sync view and on an `async def` view (returning a sync and an
    async source) streams the source, then the end event."""
    with client() as http, http.stream("GET", pair.url(path)) as response:
        assert_sse_headers(response)
        events = SSEReader(response).rest()
    assert events == [*SAMPLE_EVENTS, MessageEvent("message", "[DONE]", "42")]


@pytest.mark.parametrize("path", ["/compressed", "/compressed-async"])
def test_compressed_stream_is_gzip_and_decodes_to_the_same_events(pair: Pair, path: str) -> None:
    """`@sse(compress=...)` with a gzip `Accept-Encoding`: `Content-Encoding: gzip`, `Vary`,
    and the body decodes to exactly the uncompressed stream's events; HEAD gets the same
    headers; a client that offers no coding gets the plain stream."""
    gzip_only = {"Accept-Encoding": "gzip"}
    with client() as http, http.stream("GET", pair.url(path), headers=gzip_only) as response:
        assert response.headers["content-encoding"] == "gzip"
        assert "accept-encoding" in response.headers["vary"].lower()
        raw = b"".join(response.iter_raw())
    body = zlib.decompressobj(wbits=31).decompress(raw)
    parser = EventParser()
    assert [*parser.feed(body)] == [*SAMPLE_EVENTS, MessageEvent("message", "[DONE]", "42")]
    with client() as http:
        head = http.head(pair.url(path), headers=gzip_only)
        assert head.headers["content-encoding"] == "gzip"
        assert head.content == b""
        plain = http.get(pair.url(path), headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers
        assert plain.text.startswith(": ok")


def test_sse_decorator_passes_a_response_through(pair: Pair) -> None:
    """An `@sse` view that returns an HttpResponse (here a redirect) is not made a stream."""
    with client() as http:
        response = http.get(pair.url("/decorated-redirect"))
    assert response.status_code == 302
    assert response.headers["location"] == "/health"


def test_sse_decorated_view_exception_is_a_real_500(pair: Pair) -> None:
    """An `@sse` view that raises before returning a source gets Django's own 500."""
    with client() as http:
        response = http.get(pair.url("/decorated-broken"))
    assert response.status_code == 500
    assert not response.headers["content-type"].startswith("text/event-stream")
    assert SECRET not in response.text


@pytest.mark.parametrize("path", ["/decorated-gen", "/decorated-async-gen"])
def test_last_event_id_in_a_generator_view(pair: Pair, path: str) -> None:
    """An `@sse` generator view (sync or async) reads `last_event_id(request)` in its body,
    which runs while the response streams."""
    headers = {"Last-Event-ID": "99"}
    with client() as http, http.stream("GET", pair.url(path), headers=headers) as response:
        events = SSEReader(response).rest()
    assert [(e.type, e.data) for e in events] == [("message", '{"last_event_id":"99"}')]


# -- authorization and the broker view ---------------------------------------------------------


@pytest.mark.parametrize("path", ["/guarded-stream", "/guarded/news"])
def test_async_authorize_hook(pair: Pair, path: str) -> None:
    """An async `authorize` hook (on `@sse` and on `broker_view`) lets `X-User: ann` in and
    turns anyone else away with a plain 403, under WSGI as under ASGI."""
    with client() as http:
        refused = http.get(pair.url(path), headers={"X-User": "bob"})
        with http.stream("GET", pair.url(path), headers={"X-User": "ann"}) as response:
            assert response.status_code == 200
            assert_sse_headers(response)
            SSEReader(response).read_until(b": ok\n\n")
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("text/plain")
    assert refused.text == "Forbidden"


def test_broker_view_refuses_other_methods(pair: Pair) -> None:
    """`broker_view` serves GET and HEAD: anything else is a 405 naming them."""
    with client() as http:
        response = http.post(pair.url("/events/news"))
        head = http.head(pair.url("/events/news"))
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert head.status_code == 200
    assert_sse_headers(head)
    assert head.content == b""


# -- compression middleware -------------------------------------------------------------------


def test_ssekit_gzip_middleware_leaves_streams_alone(pair: Pair) -> None:
    """Behind `ssekit.adapters.django.GZipMiddleware`, a client accepting gzip gets the stream
    uncompressed and its events as they come."""
    tag = new_tag()
    url = pair.url("/gzip-exempt", kind="async", tag=tag)
    with (
        client() as http,
        http.stream("GET", url, headers={"Accept-Encoding": "gzip"}) as response,
    ):
        assert_sse_headers(response)
        assert "content-encoding" not in response.headers
        assert [e.data for e in SSEReader(response).events(1)] == ["ready"]
    pair.events.wait_for("closed", tag, CLOSE_BOUND)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_middleware_replacing_the_body_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Django's `GZipMiddleware` (here through `gzip_page`) replaces the stream's body: ssekit
    logs a warning naming the remedy (once per process)."""
    django_adapter._warned_replaced.clear()
    events = EventLog(tmp_path / "events.log")
    tag = new_tag()
    previous_log = list(django_project._log)  # the module's pairs may still serve with theirs
    try:
        with werkzeug_server(django_app.create_app(str(events.path))) as url, client() as http:
            gzip = {"Accept-Encoding": "gzip"}
            path = f"/gzipped?kind=async&tag={tag}"
            with http.stream("GET", url + path, headers=gzip) as response:
                assert response.headers["content-encoding"] == "gzip"
            # The stream ends (its source may not have started: nothing was sent but gzip's
            # header, which the middleware writes before it reads the stream).
            wait_until(lambda: len(django_adapter.registry()) == 0, "the stream is still open")
    finally:
        django_project._log[:] = previous_log
    replaced = [r for r in caplog.records if "replaced an event stream's body" in r.message]
    assert len(replaced) == 1
    assert "ssekit.adapters.django.GZipMiddleware" in replaced[0].message


# -- departures -------------------------------------------------------------------------------


def leave_and_measure(pair: Pair, path: str, kind: str) -> float:
    """Open `path` (a /hold source of `kind`), read "ready", leave; seconds until its `finally`."""
    tag = new_tag()
    with client() as http, http.stream("GET", pair.url(path, kind=kind, tag=tag)) as response:
        assert response.status_code == 200
        reader = SSEReader(response)
        assert [e.data for e in reader.events(1)] == ["ready"]
        left_at = time.time()
    return pair.events.wait_for("closed", tag, CLOSE_BOUND) - left_at


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("path", ["/hold", "/async-hold"], ids=["sync-view", "async-view"])
def test_departure_closes_the_source(pair: Pair, path: str, kind: str) -> None:
    """A client that leaves has its source closed, from a sync and an `async def` view, for a
    sync source (ticking every `TICK` s) and a silent async one: under ASGI, Django cancels the
    response on `http.disconnect`; under WSGI the departure is noticed before the next write (a
    tick or a heartbeat).  `benchmarks/bench_adapters.py` measures how soon."""
    figures = [leave_and_measure(pair, path, kind) for _ in range(ROUNDS)]
    assert all(figure < CLOSE_BOUND for figure in figures), f"closed after (s): {figures}"


# -- Chromium ---------------------------------------------------------------------------------


def browser_test(test: Callable[..., None]) -> Callable[..., None]:
    """Mark `test` as a browser test (skipped without Chromium, outside CI)."""
    for mark in BROWSER_MARKS:
        test = mark(test)
    return test


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_chromium()


def seen_in_chromium(browser: Browser, pair: Pair, src: str, n: int) -> list[list[str]]:
    """What Chromium's `EventSource` dispatched for `src` (its first `n` events)."""
    page = browser.new_page()
    try:
        page.goto(pair.url("/page") + "?" + urlencode({"src": src, "n": str(n)}))
        page.wait_for_function(f"window.seen.length >= {n}", timeout=20_000)
        seen: list[list[str]] = page.evaluate("window.seen")
    finally:
        page.close()
    return seen


@browser_test
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_chromium_dispatches_the_events_exactly(browser: Browser, pair: Pair, kind: str) -> None:
    """Chromium's `EventSource` dispatches exactly the sample events, sync and async sources."""
    seen = seen_in_chromium(browser, pair, f"/sample?kind={kind}", len(SAMPLE_EVENTS))
    expected = [
        [("" if e.type == "message" else f"{e.type}:") + e.data, e.last_event_id]
        for e in SAMPLE_EVENTS
    ]
    assert seen == expected


@browser_test
def test_chromium_resumes_with_the_last_event_id(browser: Browser, pair: Pair) -> None:
    """The stream ends after an event with a non-ASCII id and `retry: 100`; Chromium reconnects
    by itself, sending the id, which `last_event_id(request)` reads back exactly."""
    seen = seen_in_chromium(browser, pair, "/resume-once", 2)
    assert seen[0] == ["first", UNICODE_ID]
    assert json.loads(seen[1][0]) == {"read": UNICODE_ID}


# -- shutdown ---------------------------------------------------------------------------------


Readers = dict[tuple[str, str], SSEReader]


def open_holds(url: str, stack: contextlib.ExitStack, http: httpx.Client) -> Readers:
    """A sync and an async /hold stream, each past its "ready", by (kind, tag)."""
    readers = {}
    for kind in ("sync", "async"):
        tag = new_tag()
        response = stack.enter_context(http.stream("GET", f"{url}/hold?kind={kind}&tag={tag}"))
        readers[kind, tag] = SSEReader(response)
        assert [e.data for e in readers[kind, tag].events(1)] == ["ready"]
    return readers


def assert_farewell(readers: Readers, events: EventLog, closed: tuple[str, ...]) -> None:
    """Each stream ended with the registry's farewell and `retry:` hint; the sources of the
    `closed` kinds had their `finally` run."""
    for (kind, tag), reader in readers.items():
        rest = reader.rest()
        assert [e.data for e in rest] == ["tick"] * (len(rest) - 1) + [FAREWELL]
        assert reader.raw.endswith(b"data: %s\n\nretry: %d\n\n" % (FAREWELL.encode(), 500))
        assert reader.parser.retry == FAREWELL_RETRY
        if kind in closed:
            events.wait_for("closed", tag)


def test_gunicorn_sigterm_says_farewell(tmp_path: Path) -> None:
    """gunicorn (gthread) gets SIGTERM: the worker's chained handler (installed by
    `get_wsgi_application()`) ends the open streams with the farewell, and gunicorn exits."""
    events = EventLog(tmp_path / "events.log")
    env = {EVENTS_ENV: str(events.path)}
    target = "apps.django_app:create_app()"
    with (
        gunicorn_server(target, "gthread", workdir=tmp_path, env=env) as gunicorn,
        client() as http,
        contextlib.ExitStack() as stack,
    ):
        readers = open_holds(gunicorn.url, stack, http)
        gunicorn.process.send_signal(signal.SIGTERM)
        # As under uvicorn: the worker exits within moments of the farewell, so a sync source
        # asleep in `time.sleep` (not `ssekit.sleep`) may never resume to run its `finally`.
        assert_farewell(readers, events, closed=("async",))
        assert gunicorn.process.wait(EXIT_BOUND) == 0


@contextlib.contextmanager
def server_process(
    command: list[str], events: EventLog, workdir: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """An ASGI server (`command`, given `{port}`) in a subprocess from `tests/`; its base URL."""
    port = free_port()
    stderr_path = workdir / "server.stderr"
    stderr = stderr_path.open("wb")
    env = {**os.environ, EVENTS_ENV: str(events.path)}
    command = [part.format(port=port) for part in command]
    process = subprocess.Popen(command, cwd=TESTS_DIR, env=env, stderr=stderr)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, stderr_path.read_text()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, f"{command[2]} did not start"
            time.sleep(0.05)
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(EXIT_BOUND)
        stderr.close()


UVICORN = [
    *(sys.executable, "-m", "uvicorn", "apps.django_asgi_app:create_app", "--factory"),
    *("--host", "127.0.0.1", "--port", "{port}", "--lifespan", "on"),
    *("--log-level", "warning", "--timeout-graceful-shutdown", "5"),
]
DAPHNE = [
    *(sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", "{port}", "-v", "0"),
    "apps.django_daphne:application",
]


def test_uvicorn_sigterm_says_farewell(tmp_path: Path) -> None:
    """uvicorn gets SIGTERM: the handler chained at lifespan startup (`get_asgi_application()`)
    ends the open streams with the farewell first, and uvicorn exits without waiting them out."""
    events = EventLog(tmp_path / "events.log")
    with (
        server_process(UVICORN, events, tmp_path) as (process, url),
        client() as http,
        contextlib.ExitStack() as stack,
    ):
        readers = open_holds(url, stack, http)
        process.send_signal(signal.SIGTERM)
        # A sync source sleeping in its thread when the process exits never resumes to run its
        # `finally` (its thread is a daemon); the async one is cancelled on the loop.
        assert_farewell(readers, events, closed=("async",))
        assert process.wait(EXIT_BOUND) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal


@pytest.mark.skipif(importlib.util.find_spec("daphne") is None, reason="daphne is not installed")
def test_daphne_streams_and_closes_on_departure(tmp_path: Path) -> None:
    """Under daphne: the sample events exactly, from sync and async sources; HEAD has headers
    only; a departed client's async source is closed."""
    events = EventLog(tmp_path / "events.log")
    with server_process(DAPHNE, events, tmp_path) as (_, url), client() as http:
        for kind in ("sync", "async"):
            with http.stream("GET", f"{url}/sample?kind={kind}") as response:
                assert_sse_headers(response)
                assert SSEReader(response).rest() == SAMPLE_EVENTS
        head = http.head(f"{url}/sample?kind=sync")
        assert head.status_code == 200
        assert head.content == b""
        tag = new_tag()
        with http.stream("GET", f"{url}/hold?kind=async&tag={tag}") as response:
            reader = SSEReader(response)  # kept: dropping it would close the response
            assert [e.data for e in reader.events(1)] == ["ready"]
            left_at = time.time()
        closed_after = events.wait_for("closed", tag, CLOSE_BOUND) - left_at
    assert closed_after < CLOSE_BOUND
