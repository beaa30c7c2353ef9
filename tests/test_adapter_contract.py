"""The adapter contract: what every adapter sends under every server, checked by one suite.

Each adapter (raw WSGI, Flask, raw ASGI, Starlette, FastAPI, Django under WSGI and ASGI) serves
the same routes with the same sources (`apps`); the `pair` fixture serves one adapter with one
server (werkzeug, gunicorn's gthread and gevent workers; uvicorn, hypercorn), once per module,
and every test runs against every pair.  Real servers on 127.0.0.1, real httpx clients, the bytes
parsed as a browser would.  Sources report through the event log (gunicorn runs them in another
process); tests wait on it with generous deadlines and assert no speed.  Measurements live in
`benchmarks/`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from apps import (
    EVENTS_ENV,
    HEARTBEAT,
    HOLD_KINDS,
    OPTIONS,
    SAMPLE_EVENTS,
    SAMPLE_WIRE,
    SECRET,
    TICK,
)
from support.asgi_servers import uvicorn_server
from support.contract import (
    ADAPTERS,
    ANSWERS_ITSELF,
    WSGI_ADAPTERS,
    Pair,
    create_app,
    pair_params,
    served_pair,
)
from support.sse_reader import SSEReader
from support.wsgi_servers import (
    PREAMBLE,
    SSE_HEADERS,
    EventLog,
    assert_sse_headers,
    client,
    gunicorn_server,
    new_tag,
    sync_worker_warnings,
    werkzeug_server,
)

from ssekit import EventParser

pytestmark = pytest.mark.timeout(60)

#: How long a source may take to be closed after its client left: far more than it needs (the
#: server notices at its next write: a heartbeat, a tick, or at once under ASGI servers).
CLOSE_BOUND = HEARTBEAT + TICK + 10.0


@pytest.fixture(scope="module", params=pair_params())
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    yield from served_pair(request, tmp_path_factory)


def without_comments(raw: bytes) -> bytes:
    """The stream's bytes without comment-only blocks (the preamble, heartbeats)."""
    blocks = raw.split(b"\n\n")
    kept = [b for b in blocks[:-1] if not all(line.startswith(b":") for line in b.split(b"\n"))]
    return b"".join(block + b"\n\n" for block in kept) + blocks[-1]


def allowed(allow: str) -> set[str]:
    """The methods of an `Allow` header, without OPTIONS (which Flask adds on its own)."""
    return set(allow.replace(" ", "").split(",")) - {"OPTIONS"}


# -- headers and body --------------------------------------------------------------------------


def test_headers(pair: Pair) -> None:
    """200; each SSE header once; no Content-Length; chunked; no Connection header of ours."""
    with client() as http, http.stream("GET", pair.url("/sample", kind="sync")) as response:
        SSEReader(response).rest()
    assert response.status_code == 200
    assert_sse_headers(response)
    assert response.headers["transfer-encoding"] == "chunked"


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_app_hands_the_server_exactly_the_sse_headers(adapter: str, tmp_path: Path) -> None:
    """The headers the app itself passes to its server are the SSE three: no Connection, no
    Content-Length (the servers add their own Connection header, so the client cannot tell)."""
    seen: list[dict[str, str]] = []
    app = create_app(adapter, str(EventLog(tmp_path / "events.log").path))
    server: contextlib.AbstractContextManager[str]
    if adapter in WSGI_ADAPTERS:

        def wsgi_spy(
            environ: dict[str, Any], start_response: Callable[..., Any]
        ) -> Iterable[bytes]:
            def spy(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
                seen.append({name.lower(): value for name, value in headers})
                return start_response(status, headers, *args)

            return app(environ, spy)  # type: ignore[no-any-return]

        server = werkzeug_server(wsgi_spy)
    else:

        async def asgi_spy(scope: Any, receive: Any, send: Any) -> None:
            async def spy(message: Any) -> None:
                if message["type"] == "http.response.start":
                    headers = message.get("headers", [])
                    seen.append({k.decode().lower(): v.decode() for k, v in headers})
                await send(message)

            await app(scope, receive, spy)

        server = uvicorn_server(asgi_spy)
    with server as url, client() as http:
        assert http.get(f"{url}/sample?kind=sync").status_code == 200
    assert seen == [SSE_HEADERS]


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_body_is_byte_exact(pair: Pair, kind: str) -> None:
    """str, JSON, events with type and id, multi-line data, empty data, bytes: the preamble,
    then exactly these bytes (heartbeats may fall between events), parsed back exactly."""
    with client() as http, http.stream("GET", pair.url("/sample", kind=kind)) as response:
        reader = SSEReader(response)
        events = reader.rest()
    assert reader.raw.startswith(PREAMBLE)
    assert without_comments(reader.raw) == SAMPLE_WIRE
    assert events == SAMPLE_EVENTS


def test_stream_options_reach_the_stream(pair: Pair) -> None:
    """`to_sse()` options given to the adapter (here `retry` and `end`) shape the stream."""
    with client() as http, http.stream("GET", pair.url("/options")) as response:
        reader = SSEReader(response)
        events = reader.rest()
    assert [event.data for event in events] == ["a", OPTIONS["end"]]
    assert reader.parser.retry == OPTIONS["retry"]


# -- Last-Event-ID ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "query", "expected"),
    [
        ({"Last-Event-ID": "41"}, {}, "41"),
        ({}, {"lastEventId": "17"}, "17"),
        ({"Last-Event-ID": "from-header"}, {"lastEventId": "from-query"}, "from-header"),
        ({}, {}, None),
    ],
    ids=["header", "query", "header-wins", "none"],
)
def test_last_event_id_reaches_the_factory(
    pair: Pair, headers: dict[str, str], query: dict[str, str], expected: str | None
) -> None:
    """The `Last-Event-ID` header, else the `lastEventId` query parameter, reaches the app."""
    url = pair.url("/resume", **query)
    with client() as http, http.stream("GET", url, headers=headers) as response:
        events = SSEReader(response).rest()
    assert [e.json() for e in events] == [{"last_event_id": expected, "method": "GET"}]


# -- methods and failures ---------------------------------------------------------------------


def test_head_sends_headers_only_and_closes_the_source(pair: Pair) -> None:
    """HEAD: the SSE headers, no body; the source is closed without ever being read."""
    tag = new_tag()
    with client() as http:
        response = http.head(pair.url("/subscription", tag=tag))
    assert response.status_code == 200
    assert_sse_headers(response)
    assert response.content == b""
    pair.events.wait_for("closed", tag)
    assert pair.events.find("iterated", tag) is None


def test_other_methods_get_405_with_allow(pair: Pair) -> None:
    """POST, PUT, DELETE: 405 with an `Allow` naming GET and HEAD; the app is never called."""
    tag = new_tag()
    with client() as http:
        responses = [
            http.request(m, pair.url("/resume", tag=tag)) for m in ("POST", "PUT", "DELETE")
        ]
    for response in responses:
        assert response.status_code == 405
        assert allowed(response.headers["allow"]) == {"GET", "HEAD"}
        if pair.adapter in ANSWERS_ITSELF:
            assert response.headers["allow"] == "GET, HEAD"
        assert "text/event-stream" not in response.headers.get("content-type", "")
    assert pair.events.find("called", tag) is None


def test_methods_enable_post(pair: Pair) -> None:
    """A stream allowed POST serves POST (and GET still) as a stream; `Allow` then names it."""
    with client() as http:
        for method in ("POST", "GET"):
            with http.stream(method, pair.url("/post"), content=b"{}") as response:
                assert response.status_code == 200
                events = SSEReader(response).rest()
            assert [e.json() for e in events] == [{"last_event_id": None, "method": method}]
        refused = http.delete(pair.url("/post"))
    assert refused.status_code == 405
    assert allowed(refused.headers["allow"]) == {"GET", "HEAD", "POST"}


def test_factory_exception_is_a_real_500(pair: Pair) -> None:
    """A factory (or view) that raises before returning a source: a real 500, not a 200 stream,
    and neither the exception's text nor a traceback reaches the client."""
    with client() as http:
        response = http.get(pair.url("/broken"))
    assert response.status_code == 500
    assert "text/event-stream" not in response.headers.get("content-type", "")
    assert SECRET not in response.text
    assert "Traceback" not in response.text
    if pair.adapter in ANSWERS_ITSELF:
        assert response.headers["content-type"].startswith("text/plain")
        assert response.text == "Internal Server Error"


# -- disconnects, first bytes, heartbeats -----------------------------------------------------


@pytest.mark.parametrize("kind", HOLD_KINDS)
def test_disconnect_closes_the_source(pair: Pair, kind: str) -> None:
    """When the client leaves, the source's `finally` runs: for a sync source blocked in `next()`
    between ticks, a silent async one, and sources that never pause."""
    tag = new_tag()
    with client() as http, http.stream("GET", pair.url("/hold", kind=kind, tag=tag)) as response:
        assert response.status_code == 200
        reader = SSEReader(response)  # kept: dropping it would close the response
        assert [e.data for e in reader.events(1)] == ["ready"]
        assert pair.events.find("closed", tag) is None
    pair.events.wait_for("closed", tag, CLOSE_BOUND)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_first_bytes_arrive_before_a_slow_source_yields(pair: Pair, kind: str) -> None:
    """Headers and the `: ok` preamble arrive while the source has not yielded (it waits for the
    test's "release"); its first event follows once it does."""
    tag = new_tag()
    with client() as http, http.stream("GET", pair.url("/slow", kind=kind, tag=tag)) as response:
        assert response.status_code == 200
        assert_sse_headers(response)
        reader = SSEReader(response)
        reader.read_until(PREAMBLE)
        assert reader.raw.startswith(PREAMBLE)
        assert b"data:" not in reader.raw
        pair.events.record("release", tag)
        assert [e.data for e in reader.events(1)] == ["late"]
    pair.events.wait_for("closed", tag, CLOSE_BOUND)


def test_heartbeat_arrives(pair: Pair) -> None:
    """A silent source's stream carries heartbeat comments (which no client dispatches)."""
    tag = new_tag()
    url = pair.url("/hold", kind="async", tag=tag)
    with client() as http, http.stream("GET", url) as response:
        reader = SSEReader(response)
        assert [e.data for e in reader.events(1)] == ["ready"]
        after_ready = len(reader.raw)
        while b"\n\n" not in reader.raw[after_ready:]:
            reader.next_chunk()
        heartbeat = reader.raw[after_ready:].split(b"\n\n")[0]
        assert heartbeat.startswith(b":")
        assert list(EventParser().feed(heartbeat + b"\n\n")) == []
    pair.events.wait_for("closed", tag, CLOSE_BOUND)


def test_concurrent_async_sources(pair: Pair) -> None:
    """Two async sources stream at once (under WSGI each on a helper loop; shared under gevent)."""
    firsts: dict[str, str] = {}
    with client() as http, contextlib.ExitStack() as streams:
        for _ in range(2):
            tag = new_tag()
            response = streams.enter_context(
                http.stream("GET", pair.url("/hold", kind="async", tag=tag))
            )
            firsts[tag] = SSEReader(response).events(1)[0].data
    for tag, first in firsts.items():  # closed once the clients left (also when failing)
        if first == "ready":
            pair.events.wait_for("closed", tag, CLOSE_BOUND)
    assert list(firsts.values()) == ["ready", "ready"]


# -- gunicorn's workers -----------------------------------------------------------------------


def test_no_sync_worker_warning_under_gthread_or_gevent(pair: Pair) -> None:
    """ssekit's warning about gunicorn's sync worker stays quiet under gthread and gevent."""
    if not pair.is_gunicorn:
        pytest.skip("only gunicorn has workers to warn about")
    assert sync_worker_warnings(pair.server.stderr()) == []


@pytest.mark.parametrize("adapter", WSGI_ADAPTERS)
def test_gunicorn_sync_worker_streams_and_warns_once(adapter: str, tmp_path: Path) -> None:
    """gunicorn's sync worker serves streams, and ssekit warns about that worker once."""
    env = {EVENTS_ENV: str(EventLog(tmp_path / "events.log").path)}
    target = f"apps.{adapter}_app:create_app()"
    with gunicorn_server(target, "sync", workdir=tmp_path, env=env) as gunicorn, client() as http:
        for _ in range(2):
            with http.stream("GET", f"{gunicorn.url}/sample?kind=sync") as response:
                assert response.status_code == 200
                assert SSEReader(response).rest() == SAMPLE_EVENTS
        stderr = gunicorn.stderr()
    # Logged once on the `ssekit` logger (warnings.warn() shows it once more, as a RuntimeWarning).
    assert len(sync_worker_warnings(stderr)) == 1, stderr
