"""`StreamRegistry`'s cap and shutdown state, in-process, with real servers.

- `max_streams`: checked when built; `admit()` says no beyond it; every adapter answers a stream
  beyond it with 503, `Retry-After` and a short text, at once, and serves again once one ends.
- `shutdown()`: open streams get the farewell; a stream admitted afterwards gets it at once;
  serving again admits normally.
- `live_registries()`: the process's registries, held weakly.
"""

from __future__ import annotations

import gc
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from flask import Flask
from starlette.applications import Starlette
from starlette.routing import Route
from support.asgi_servers import uvicorn_server
from support.waiting import wait_until
from support.wsgi_servers import werkzeug_server

from ssekit import EventParser, MessageEvent, StreamRegistry, to_sse
from ssekit._registry import live_registries
from ssekit.adapters.asgi import SSEApp
from ssekit.adapters.flask import init_app, sse_response
from ssekit.adapters.starlette import SSEResponse
from ssekit.adapters.wsgi import SSEWSGIApp

pytestmark = pytest.mark.timeout(60)

DEADLINE = 10.0


def forever(stop: threading.Event) -> Iterator[str]:
    """A tick every 50 ms until `stop` is set (so no thread outlives the test)."""
    while not stop.wait(0.05):
        yield "tick"


@pytest.mark.parametrize(
    ("value", "error", "words"),
    [
        (0, ValueError, "max_streams must be at least 1"),
        (-3, ValueError, "max_streams must be at least 1"),
        (True, TypeError, "max_streams must be an int or None, not bool"),
        ("2", TypeError, "max_streams must be an int or None, not str"),
        (2.0, TypeError, "max_streams must be an int or None, not float"),
    ],
)
def test_max_streams_is_checked_when_built_and_when_set(
    value: Any, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        StreamRegistry(max_streams=value)
    registry = StreamRegistry()
    with pytest.raises(error, match=words):
        registry.max_streams = value
    assert registry.max_streams is None


def test_admit_refuses_beyond_the_cap_until_a_stream_is_discarded() -> None:
    registry = StreamRegistry(max_streams=2)
    streams = [to_sse(["a"]) for _ in range(3)]
    assert [registry.admit(s) for s in streams] == [True, True, False]
    assert len(registry) == 2
    registry.discard(streams[0])
    assert registry.admit(streams[2])
    assert registry.retry_after == 1  # retry 1000 ms
    assert StreamRegistry(retry=2500).retry_after == 3
    assert StreamRegistry(retry=0).retry_after == 1


def test_a_stream_admitted_while_shutting_down_gets_the_farewell_at_once() -> None:
    """After `shutdown()`, even beyond the cap, a new stream is admitted and ends at once with
    the farewell and `retry:`; serving again (`install_signal_handlers`) admits normally."""
    registry = StreamRegistry(farewell="bye", retry=700, max_streams=1)
    stop = threading.Event()
    try:
        held = to_sse(forever(stop), heartbeat=None)
        assert registry.admit(held)
        assert registry.shutdown() == 1
        assert registry.closing
        late = to_sse(forever(stop), heartbeat=None)
        assert registry.admit(late)  # beyond the cap, yet admitted: it only says goodbye
        parser = EventParser()
        events = [e for chunk in late for e in parser.feed(chunk)]
        assert events == [MessageEvent("message", "bye", "")]
        assert parser.retry == 700
        held.close()
        registry.discard(held)
        registry.discard(late)
        registry.install_signal_handlers()  # serving again
        try:
            assert not registry.closing
            again = to_sse(["x"], heartbeat=None)
            assert registry.admit(again)
            assert b"bye" not in b"".join(again)
        finally:
            registry.restore_signal_handlers()
    finally:
        stop.set()
    assert signal.getsignal(signal.SIGTERM) is not registry._on_signal


def test_serving_again_from_another_thread_admits_streams_normally() -> None:
    """A server run in a thread (no signal handlers there) that starts a shut-down registry's
    lifespan again: its streams are served, not ended at once with the farewell."""
    registry = StreamRegistry(farewell="bye")
    registry.shutdown()
    assert registry.closing
    started: list[bool] = []
    thread = threading.Thread(target=lambda: started.append(registry.install_signal_handlers()))
    thread.start()
    thread.join(DEADLINE)
    assert started == [False]  # no handlers off the main thread...
    assert not registry.closing  # ...but serving all the same
    stream = to_sse(["x"], heartbeat=None)
    assert registry.admit(stream)
    assert b"bye" not in b"".join(stream)


def test_live_registries_are_held_weakly() -> None:
    """The process's registries are listed while in use and never kept alive by the list.

    (`shutdown_all()`, which ends them all, is exercised by the gunicorn tests in a process of
    its own: here it would end the other tests' servers.)"""
    first, second = StreamRegistry(farewell="one"), StreamRegistry(farewell="two")
    assert {id(first), id(second)} <= {id(r) for r in live_registries()}
    gone = id(second)
    del second
    gc.collect()
    assert gone not in {id(r) for r in live_registries()}
    assert first in live_registries()  # still referenced here


def assert_503(response: httpx.Response) -> None:
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "Too many open streams; try again later."


def hold_one_then_refuse(url: str) -> None:
    """One stream held: the next is refused at once, HEAD is not counted, and once the held
    client leaves, a stream is served again."""
    with httpx.Client(timeout=DEADLINE) as http:
        with http.stream("GET", url) as held:
            assert held.status_code == 200
            chunks = held.iter_raw()
            next(chunks)
            started = time.monotonic()
            assert_503(http.get(url))
            assert time.monotonic() - started < DEADLINE
            assert http.head(url).status_code == 200
            held.close()  # the held client leaves

        def served() -> bool:
            with httpx.Client(timeout=DEADLINE) as other, other.stream("GET", url) as response:
                return response.status_code == 200

        wait_until(served, "a stream served once the held one ended")


def test_ssewsgiapp_beyond_max_streams_answers_503() -> None:
    stop = threading.Event()
    registry = StreamRegistry(max_streams=1)
    app = SSEWSGIApp(lambda request: forever(stop), registry=registry, heartbeat=0.2)
    try:
        with werkzeug_server(app) as url:
            hold_one_then_refuse(url)
    finally:
        stop.set()


def test_flask_init_app_max_streams_answers_503_and_plain_views_answer() -> None:
    stop = threading.Event()
    app = Flask(__name__)
    registry = init_app(app, max_streams=1)
    assert registry.max_streams == 1

    @app.get("/stream")
    def stream() -> Any:
        return sse_response(forever(stop), heartbeat=0.2)

    @app.get("/plain")
    def plain() -> str:
        return "plain"

    try:
        with werkzeug_server(app) as url:
            hold_one_then_refuse(f"{url}/stream")
            assert httpx.get(f"{url}/plain").text == "plain"
    finally:
        stop.set()
    with pytest.raises(TypeError, match="Give max_streams to the StreamRegistry"):
        init_app(Flask(__name__), StreamRegistry(), max_streams=2)


def test_asgi_adapters_beyond_max_streams_answer_503() -> None:
    stop = threading.Event()
    sse_app = SSEApp(
        lambda request: forever(stop), registry=StreamRegistry(max_streams=1), heartbeat=0.2
    )
    registry = StreamRegistry(max_streams=1)

    async def endpoint(request: Any) -> SSEResponse:
        return SSEResponse(forever(stop), heartbeat=0.2)

    starlette_app = Starlette(routes=[Route("/s", endpoint)], lifespan=registry.lifespan)
    try:
        with uvicorn_server(sse_app) as url:
            hold_one_then_refuse(url)
        with uvicorn_server(starlette_app) as url:
            hold_one_then_refuse(f"{url}/s")
    finally:
        stop.set()
