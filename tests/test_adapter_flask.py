"""The Flask adapter end to end: `sse_response`, `@sse`, `last_event_id()`, `stream_with_context`
and the `init_app` registry, under real servers (werkzeug's, gunicorn's gthread and gevent
workers) on 127.0.0.1 with real httpx clients, the bytes parsed as a browser would.

The app is `apps.flask_app`; in gunicorn it runs in another process, so its sources report their
`finally` through an event log file (see `apps`).  One server per kind per module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from apps import EVENTS_ENV, HEARTBEAT, TICK
from apps.flask_app import FAREWELL, FAREWELL_RETRY, create_app
from wsgi_servers import (
    PREAMBLE,
    SERVERS,
    SSE_HEADERS,
    EventLog,
    Server,
    SSEReader,
    assert_sse_headers,
    client,
    gunicorn_server,
    measure_disconnects,
    measure_first_bytes,
    new_tag,
    report,
    serve,
    sync_worker_warnings,
    wait_until,
    werkzeug_server,
)

from ssekit.adapters.flask import registry

pytestmark = pytest.mark.timeout(60)

TARGET = "apps.flask_app:create_app()"
#: Generous bounds (a loaded 2-core machine): the measured figures are printed.
DISCONNECT_BOUND = HEARTBEAT + 3.0
FIRST_BYTES_BOUND = 1.5
#: What the sample sources send, as an `EventSource` dispatches it: (type, data, lastEventId).
SAMPLE_EVENTS = [
    ("message", "hello", ""),
    ("message", '{"n":1,"text":"héllo"}', ""),
    ("update", "line 1\nline 2", "42"),
    ("message", "a\nb\nc", "42"),
]


@pytest.fixture(scope="module", params=SERVERS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp(f"flask-{request.param}")
    with serve(request.param, TARGET, create_app, workdir) as running:
        yield running


def test_stream_headers(server: Server) -> None:
    """A stream has the SSE headers, no Content-Length, and no Connection header of ours."""
    with client() as http, http.stream("GET", f"{server.url}/sample?kind=sync") as response:
        assert response.status_code == 200
        assert_sse_headers(response)
        SSEReader(response).rest()


def test_app_passes_exactly_the_sse_headers(tmp_path: Path) -> None:
    """The headers the Flask app hands the server are the SSE three: no Connection, no length."""
    seen: list[list[tuple[str, str]]] = []
    inner = create_app(str(EventLog(tmp_path / "events.log").path))

    def recording(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        def spy(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
            seen.append(headers)
            return start_response(status, headers, *args)

        return inner(environ, spy)

    with werkzeug_server(recording) as url, client() as http:
        assert http.get(f"{url}/sample?kind=sync").status_code == 200
    assert {name.lower(): value for name, value in seen[0]} == SSE_HEADERS


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_sse_response_body_is_what_the_source_sent(server: Server, kind: str) -> None:
    """`sse_response()` of a sync or an async generator: every chunk arrives as sent."""
    with client() as http, http.stream("GET", f"{server.url}/sample?kind={kind}") as response:
        reader = SSEReader(response)
        events = reader.rest()
    assert reader.raw.startswith(PREAMBLE)
    assert [(e.type, e.data, e.last_event_id) for e in events] == SAMPLE_EVENTS


def test_sse_decorator_with_options(server: Server) -> None:
    """`@sse(end="[DONE]")` on a view returning a source streams it, then the end event."""
    with client() as http, http.stream("GET", f"{server.url}/decorated") as response:
        assert_sse_headers(response)
        events = SSEReader(response).rest()
    assert [(e.type, e.data, e.last_event_id) for e in events] == [
        *SAMPLE_EVENTS,
        ("message", "[DONE]", "42"),
    ]


def test_sse_decorator_passes_a_response_through(server: Server) -> None:
    """An `@sse` view that returns a Response (here a redirect) is not turned into a stream."""
    with client() as http:
        response = http.get(f"{server.url}/decorated-redirect")
    assert response.status_code == 302
    assert response.headers["location"] == "/health"


@pytest.mark.parametrize(
    ("headers", "query", "expected"),
    [
        ({"Last-Event-ID": "41"}, "", "41"),
        ({}, "?lastEventId=17", "17"),
        ({"Last-Event-ID": "41"}, "?lastEventId=17", "41"),
        ({}, "", None),
    ],
    ids=["header", "query", "header-wins", "none"],
)
def test_last_event_id_in_the_view(
    server: Server, headers: dict[str, str], query: str, expected: str | None
) -> None:
    """`last_event_id()`: the `Last-Event-ID` header, else the `lastEventId` query parameter."""
    with (
        client() as http,
        http.stream("GET", f"{server.url}/resume{query}", headers=headers) as response,
    ):
        events = SSEReader(response).rest()
    assert [e.json() for e in events] == [{"last_event_id": expected}]


@pytest.mark.parametrize("path", ["/decorated-gen", "/decorated-async-gen"])
def test_last_event_id_in_a_generator_view(server: Server, path: str) -> None:
    """An `@sse` generator view (sync or async) reads `last_event_id()` in its body, which runs
    while the response streams, after Flask has popped the view's request context."""
    headers = {"Last-Event-ID": "99"}
    with client() as http, http.stream("GET", f"{server.url}{path}", headers=headers) as response:
        events = SSEReader(response).rest()
    assert [(e.type, e.data) for e in events] == [("message", '{"last_event_id":"99"}')]


def test_stream_with_context_reads_the_request_while_streaming(server: Server) -> None:
    """A `stream_with_context` generator reads `flask.request` at every step of the stream."""
    url = f"{server.url}/context?q=needle"
    with client() as http, http.stream("GET", url, headers={"X-Probe": "p1"}) as response:
        events = SSEReader(response).rest()
    assert [e.json() for e in events] == [
        {"step": step, "q": "needle", "probe": "p1"} for step in range(3)
    ]


def test_head_sends_headers_only_and_closes_the_source(server: Server) -> None:
    """HEAD: the SSE headers, no body; the source is closed without ever being read."""
    tag = new_tag()
    with client() as http:
        response = http.head(f"{server.url}/subscription?tag={tag}")
    assert response.status_code == 200
    assert_sse_headers(response)
    assert response.content == b""
    server.events.wait_for("closed", tag)
    assert server.events.find("iterated", tag) is None


@pytest.mark.parametrize("path", ["/broken", "/decorated-broken"])
def test_view_exception_is_a_real_500(server: Server, path: str) -> None:
    """A view (plain or `@sse`) that raises before returning a source gives Flask's 500."""
    with client() as http:
        response = http.get(f"{server.url}{path}")
    assert response.status_code == 500
    assert not response.headers["content-type"].startswith("text/event-stream")


def test_concurrent_async_sources(server: Server) -> None:
    """Two async sources stream at once from Flask views (helper loops; shared under gevent)."""
    firsts: dict[str, str] = {}
    with client() as http, ExitStack() as streams:
        for _ in range(2):
            tag = new_tag()
            response = streams.enter_context(
                http.stream("GET", f"{server.url}/hold?kind=async&tag={tag}")
            )
            firsts[tag] = SSEReader(response).events(1)[0].data
    for tag, first in firsts.items():  # closed once the clients left (also when failing)
        if first == "ready":
            server.events.wait_for("closed", tag, DISCONNECT_BOUND + 5.0)
    assert list(firsts.values()) == ["ready", "ready"]


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_disconnect_closes_the_source(server: Server, kind: str) -> None:
    """After the client leaves, the source's finally runs within about a heartbeat.

    The server notices at its next write: a heartbeat for the silent async source, a tick for
    the sync one (which can only be closed when it yields, every `TICK` s).
    """
    latencies = measure_disconnects(server, kind, bound=DISCONNECT_BOUND + 5.0)
    what = f"flask disconnect->finally [{server.name}/{kind}]"
    report(f"{what} (heartbeat {HEARTBEAT} s, tick {TICK} s)", latencies)
    assert max(latencies) < DISCONNECT_BOUND


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_first_bytes_arrive_before_a_slow_source_yields(server: Server, kind: str) -> None:
    """Headers and the `: ok` preamble arrive at once, though the source waits 5 s to yield.

    An async source is closed (cancelled) soon after the client leaves.  A sync one is closed
    only once its sleep returns: not waited for here (the disconnect tests cover sync sources;
    in-process, the thread-leak check waits for its thread).
    """
    tag = new_tag()
    headers_after, preamble_after, received = measure_first_bytes(
        server, f"/slow?kind={kind}&tag={tag}"
    )
    report(
        f"flask first bytes [{server.name}/{kind}] headers, preamble",
        [headers_after, preamble_after],
        "ms",
    )
    assert received == PREAMBLE
    assert preamble_after < FIRST_BYTES_BOUND
    if kind == "async":
        server.events.wait_for("closed", tag, DISCONNECT_BOUND + 5.0)


def test_no_sync_worker_warning_elsewhere(server: Server) -> None:
    """The warning is for the sync worker only: gthread and gevent stay quiet."""
    if server.name == "werkzeug":
        pytest.skip("in-process: no stderr of its own to look at")
    assert sync_worker_warnings(server.stderr()) == []


def test_gunicorn_sync_worker_streams_and_warns_once(tmp_path: Path) -> None:
    """gunicorn's sync worker serves a Flask stream, and ssekit warns about that worker once."""
    env = {EVENTS_ENV: str(EventLog(tmp_path / "events.log").path)}
    with gunicorn_server(TARGET, "sync", workdir=tmp_path, env=env) as gunicorn, client() as http:
        for _ in range(2):
            with http.stream("GET", f"{gunicorn.url}/decorated") as response:
                assert response.status_code == 200
                assert len(SSEReader(response).rest()) == len(SAMPLE_EVENTS) + 1
        stderr = gunicorn.stderr()
    # Logged once on the `ssekit` logger (warnings.warn() shows it once more, as a RuntimeWarning).
    assert len(sync_worker_warnings(stderr)) == 1, stderr


def test_registry_close_all_ends_open_streams_with_the_farewell(tmp_path: Path) -> None:
    """`init_app(app, StreamRegistry(farewell="bye", retry=500))`: `close_all()` ends every open
    stream with the farewell event and a `retry:` hint; the sources are closed, the registry
    empties."""
    events = EventLog(tmp_path / "events.log")
    app = create_app(str(events.path))
    with app.app_context():
        streams = registry()
    assert streams is not None
    with werkzeug_server(app) as url, client() as http, ExitStack() as stack:
        readers: dict[str, SSEReader] = {}
        for kind in ("sync", "async"):
            tag = new_tag()
            response = stack.enter_context(http.stream("GET", f"{url}/hold?kind={kind}&tag={tag}"))
            readers[tag] = SSEReader(response)
            assert [e.data for e in readers[tag].events(1)] == ["ready"]
        assert len(streams) == 2
        assert streams.close_all() == 2
        for tag, reader in readers.items():
            rest = reader.rest()  # the server ends each response
            assert [e.data for e in rest] == ["tick"] * (len(rest) - 1) + [FAREWELL]
            assert reader.raw.endswith(
                b"data: %s\n\nretry: %d\n\n" % (FAREWELL.encode(), FAREWELL_RETRY)
            )
            assert reader.parser.retry == FAREWELL_RETRY
            events.wait_for("closed", tag)
    wait_until(lambda: len(streams) == 0, "the registry still holds streams")
