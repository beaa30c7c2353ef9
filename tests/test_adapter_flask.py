"""What only the Flask adapter has, end to end: `@sse`, `last_event_id()` while a generator view
streams, `stream_with_context`, and the `init_app` registry, under werkzeug and gunicorn's gthread
and gevent workers.  What every adapter shares is checked by `test_adapter_contract.py`.

The app is `apps.flask_app`; in gunicorn it runs in another process, so its sources report their
`finally` through an event log file (see `apps`).  One server per kind per module.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from apps import SAMPLE_EVENTS, SECRET
from apps.flask_app import FAREWELL, FAREWELL_RETRY, create_app
from support.contract import Pair, pair_params, served_pair
from support.sse_reader import SSEReader
from support.waiting import wait_until
from support.wsgi_servers import EventLog, assert_sse_headers, client, new_tag, werkzeug_server

from ssekit import MessageEvent
from ssekit.adapters.flask import registry

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module", params=pair_params("flask"))
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    yield from served_pair(request, tmp_path_factory)


def test_sse_decorator_with_options(pair: Pair) -> None:
    """`@sse(end="[DONE]")` on a view returning a source streams it, then the end event."""
    with client() as http, http.stream("GET", pair.url("/decorated")) as response:
        assert_sse_headers(response)
        events = SSEReader(response).rest()
    assert events == [*SAMPLE_EVENTS, MessageEvent("message", "[DONE]", "42")]


def test_sse_decorator_passes_a_response_through(pair: Pair) -> None:
    """An `@sse` view that returns a Response (here a redirect) is not turned into a stream."""
    with client() as http:
        response = http.get(pair.url("/decorated-redirect"))
    assert response.status_code == 302
    assert response.headers["location"] == "/health"


def test_sse_decorated_view_exception_is_a_real_500(pair: Pair) -> None:
    """An `@sse` view that raises before returning a source gives Flask's 500."""
    with client() as http:
        response = http.get(pair.url("/decorated-broken"))
    assert response.status_code == 500
    assert not response.headers["content-type"].startswith("text/event-stream")
    assert SECRET not in response.text


@pytest.mark.parametrize("path", ["/decorated-gen", "/decorated-async-gen"])
def test_last_event_id_in_a_generator_view(pair: Pair, path: str) -> None:
    """An `@sse` generator view (sync or async) reads `last_event_id()` in its body, which runs
    while the response streams, after Flask has popped the view's request context."""
    headers = {"Last-Event-ID": "99"}
    with client() as http, http.stream("GET", pair.url(path), headers=headers) as response:
        events = SSEReader(response).rest()
    assert [(e.type, e.data) for e in events] == [("message", '{"last_event_id":"99"}')]


def test_stream_with_context_reads_the_request_while_streaming(pair: Pair) -> None:
    """A `stream_with_context` generator reads `flask.request` at every step of the stream."""
    url = pair.url("/context", q="needle")
    with client() as http, http.stream("GET", url, headers={"X-Probe": "p1"}) as response:
        events = SSEReader(response).rest()
    assert [e.json() for e in events] == [
        {"step": step, "q": "needle", "probe": "p1"} for step in range(3)
    ]


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
