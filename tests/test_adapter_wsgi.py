"""`SSEWSGIApp` end to end: real servers (werkzeug's, gunicorn's gthread and gevent workers) on
127.0.0.1, real httpx clients, the bytes parsed as a browser would.

The app is `apps.wsgi_app`; in gunicorn it runs in another process, so its sources report their
`finally` through an event log file (see `apps`).  One server per kind per module.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from apps import EVENTS_ENV, HEARTBEAT, TICK
from apps.wsgi_app import create_app
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
    werkzeug_server,
)

pytestmark = pytest.mark.timeout(60)

TARGET = "apps.wsgi_app:create_app()"
#: Generous bounds (a loaded 2-core machine): the measured figures are printed.
DISCONNECT_BOUND = HEARTBEAT + 3.0
FIRST_BYTES_BOUND = 1.5


@pytest.fixture(scope="module", params=SERVERS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp(f"wsgi-{request.param}")
    with serve(request.param, TARGET, create_app, workdir) as running:
        yield running


def test_stream_headers(server: Server) -> None:
    """A stream has the SSE headers, no Content-Length, and no Connection header of ours."""
    with client() as http, http.stream("GET", f"{server.url}/sample?kind=sync") as response:
        assert response.status_code == 200
        assert_sse_headers(response)
        SSEReader(response).rest()


def test_app_passes_no_connection_header(tmp_path: Path) -> None:
    """The headers the app hands the server are exactly the SSE three: no Connection, no length."""
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
def test_body_is_what_the_source_sent(server: Server, kind: str) -> None:
    """str, dict, Event with id and type, multi-line data arrive as sent, from either source."""
    with client() as http, http.stream("GET", f"{server.url}/sample?kind={kind}") as response:
        reader = SSEReader(response)
        events = reader.rest()
    assert reader.raw.startswith(PREAMBLE)
    assert [(e.type, e.data, e.last_event_id) for e in events] == [
        ("message", "hello", ""),
        ("message", '{"n":1,"text":"héllo"}', ""),
        ("update", "line 1\nline 2", "42"),
        ("message", "a\nb\nc", "42"),
    ]


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
def test_last_event_id_reaches_the_factory(
    server: Server, headers: dict[str, str], query: str, expected: str | None
) -> None:
    """The `Last-Event-ID` header, else the `lastEventId` query parameter, reaches the factory."""
    with (
        client() as http,
        http.stream("GET", f"{server.url}/resume{query}", headers=headers) as response,
    ):
        events = SSEReader(response).rest()
    assert [e.json() for e in events] == [{"last_event_id": expected, "method": "GET"}]


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


def test_post_is_405_with_allow(server: Server) -> None:
    """A method that is not allowed gets 405 and an Allow header listing GET and HEAD."""
    with client() as http:
        response = http.post(f"{server.url}/sample?kind=sync")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


def test_methods_enables_post(server: Server) -> None:
    """`methods=("POST",)` lets POST stream (and GET still does)."""
    with client() as http:
        for method in ("POST", "GET"):
            with http.stream(method, f"{server.url}/post") as response:
                assert response.status_code == 200
                events = SSEReader(response).rest()
            assert [e.json() for e in events] == [{"last_event_id": None, "method": method}]


def test_factory_exception_is_a_real_500(server: Server) -> None:
    """A factory that raises before returning a source gives a 500, not a 200 stream."""
    with client() as http:
        response = http.get(f"{server.url}/broken")
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "Internal Server Error"


def test_concurrent_async_sources(server: Server) -> None:
    """Two async sources stream at once (each on its own helper loop; one shared under gevent)."""
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
    report(
        f"wsgi disconnect->finally [{server.name}/{kind}] (heartbeat {HEARTBEAT} s, tick {TICK} s)",
        latencies,
    )
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
        f"wsgi first bytes [{server.name}/{kind}] headers, preamble",
        [headers_after, preamble_after],
        "ms",
    )
    assert received == PREAMBLE
    assert preamble_after < FIRST_BYTES_BOUND
    if kind == "async":
        server.events.wait_for("closed", tag, DISCONNECT_BOUND + 5.0)


def test_gunicorn_sync_worker_streams_and_warns_once(tmp_path: Path) -> None:
    """gunicorn's sync worker serves a stream, and ssekit warns about that worker once."""
    env = {EVENTS_ENV: str(EventLog(tmp_path / "events.log").path)}
    with gunicorn_server(TARGET, "sync", workdir=tmp_path, env=env) as gunicorn, client() as http:
        for _ in range(2):
            with http.stream("GET", f"{gunicorn.url}/sample?kind=sync") as response:
                assert response.status_code == 200
                assert len(SSEReader(response).rest()) == 4
        stderr = gunicorn.stderr()
    # Logged once on the `ssekit` logger (warnings.warn() shows it once more, as a RuntimeWarning).
    assert len(sync_worker_warnings(stderr)) == 1, stderr


def test_no_sync_worker_warning_elsewhere(server: Server) -> None:
    """The warning is for the sync worker only: gthread and gevent stay quiet."""
    if server.name == "werkzeug":
        pytest.skip("in-process: no stderr of its own to look at")
    assert sync_worker_warnings(server.stderr()) == []


def test_peer_closed_tells_a_closed_client_from_a_quiet_one() -> None:
    """The check the body makes before each write: EOF means gone; silence or a pipelined
    request's bytes do not."""
    from ssekit.adapters.wsgi import peer_closed

    server_end, client_end = socket.socketpair()
    with server_end:
        assert not peer_closed(server_end)  # connected and quiet
        client_end.sendall(b"GET /next HTTP/1.1\r\n")
        assert not peer_closed(server_end)  # bytes waiting are not an end of file
        assert server_end.recv(64) == b"GET /next HTTP/1.1\r\n"  # and the peek consumed nothing
        client_end.close()
        assert peer_closed(server_end)
