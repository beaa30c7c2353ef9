"""The authorization contract, the same in every adapter, over real servers.

`authorize` may be sync or async; False denies (403), True allows; a hook that raises denies
(403, logged), never allows and never gives a 500.  The hook is asked on every connection,
first connect and reconnect with `Last-Event-ID` alike.  Broker endpoints: Flask's
`broker_view` under werkzeug, Starlette's and FastAPI's `broker_route` under uvicorn.  Stream
endpoints: `SSEWSGIApp` and Flask's `@sse` under werkzeug, `SSEApp` and `sse_route` under
uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from apps import EVENTS_ENV
from fastapi import FastAPI
from flask import Flask
from starlette.applications import Starlette
from support.asgi_servers import uvicorn_server
from support.sse_reader import SSEReader
from support.wsgi_servers import gunicorn_server, werkzeug_server

from ssekit.adapters._common import SSERequest
from ssekit.adapters.asgi import SSEApp
from ssekit.adapters.flask import broker_view, last_event_id, sse
from ssekit.adapters.starlette import broker_route, sse_route
from ssekit.adapters.wsgi import SSEWSGIApp
from ssekit.broker import MemoryBroker

pytestmark = pytest.mark.timeout(60)

BROKER_ADAPTERS = ("flask", "starlette", "fastapi")
STREAM_ADAPTERS = ("wsgi", "flask", "asgi", "starlette")
HEARTBEAT = 0.2
#: The header a test client sends, which a hook reads through its framework's request.
USER_HEADER = "X-User"


class Hook:
    """A sync or async authorize hook that answers `verdict` (or raises) and records its calls."""

    def __init__(self, kind: str, verdict: bool | None) -> None:
        self.kind = kind
        #: True or False to answer, None to raise.
        self.verdict = verdict
        #: (the user header, the topics) of each call, as the hook saw them.
        self.calls: list[tuple[str | None, list[str] | None]] = []

    def _answer(self, request: Any, topics: list[str] | None) -> bool:
        self.calls.append((_user(request), topics))
        if self.verdict is None:
            raise RuntimeError("the hook's backend is down")
        return self.verdict

    def build(self) -> Callable[..., Any]:
        if self.kind == "sync":
            return lambda request, topics=None: self._answer(request, topics)

        async def hook(request: Any, topics: list[str] | None = None) -> bool:
            await asyncio.sleep(0)  # a real await: the hook must be run, not just called
            return self._answer(request, topics)

        return hook


def _user(request: Any) -> str | None:
    headers = request.headers
    value = headers.get(USER_HEADER.lower()) if isinstance(request, SSERequest) else None
    return value if value is not None else headers.get(USER_HEADER)


@contextlib.contextmanager
def serve_broker(adapter: str, broker: MemoryBroker, authorize: Any) -> Iterator[str]:
    options: dict[str, Any] = {"authorize": authorize, "heartbeat": HEARTBEAT}
    if adapter == "flask":
        app = Flask(__name__)
        app.add_url_rule("/events/<path:topic>", view_func=broker_view(broker, **options))
        with werkzeug_server(app) as url:
            yield url
        return
    route = broker_route("/events/{topic:path}", broker, **options)
    asgi_app: Any = Starlette(routes=[route]) if adapter == "starlette" else FastAPI()
    if adapter == "fastapi":
        asgi_app.router.routes.append(route)
    with uvicorn_server(asgi_app) as url:
        yield url


def _echo(request: Any) -> list[dict[str, Any]]:
    return [{"last_event_id": request.last_event_id}]


def _starlette_echo(request: Any) -> list[dict[str, Any]]:
    from ssekit.adapters.starlette import last_event_id

    return [{"last_event_id": last_event_id(request)}]


@contextlib.contextmanager
def serve_stream(adapter: str, authorize: Any) -> Iterator[str]:
    options: dict[str, Any] = {"authorize": authorize, "heartbeat": HEARTBEAT}
    if adapter == "wsgi":
        with werkzeug_server(SSEWSGIApp(_echo, **options)) as url:
            yield url
    elif adapter == "flask":
        app = Flask(__name__)

        @app.get("/events/<path:topic>")
        @sse(**options)
        def events(topic: str) -> list[dict[str, Any]]:
            return [{"last_event_id": last_event_id()}]

        with werkzeug_server(app) as url:
            yield url
    elif adapter == "asgi":
        with uvicorn_server(SSEApp(_echo, **options)) as url:
            yield url
    else:
        app = Starlette(routes=[sse_route("/events/{topic:path}", _starlette_echo, **options)])
        with uvicorn_server(app) as url:
            yield url


def _client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=httpx.Timeout(10.0))


@pytest.mark.parametrize("adapter", BROKER_ADAPTERS)
@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("verdict", [True, False])
def test_broker_endpoint_asks_the_hook_on_connect_and_reconnect(
    adapter: str, kind: str, verdict: bool
) -> None:
    """Allowed: the stream (and on reconnect, the replay after the id); denied: 403 both times."""
    broker = MemoryBroker()
    topic = f"room/{uuid.uuid4().hex}"
    ids = [broker.publish(topic, n) for n in range(3)]
    hook = Hook(kind, verdict)
    with serve_broker(adapter, broker, hook.build()) as url, _client(url) as http:
        first = {USER_HEADER: "ann"}
        again = {USER_HEADER: "bob", "Last-Event-ID": ids[0]}
        with http.stream("GET", f"/events/{topic}", headers=first) as response:
            assert response.status_code == (200 if verdict else 403)
            if not verdict:
                response.read()
                assert response.text == "Forbidden"
        with http.stream("GET", f"/events/{topic}", headers=again) as response:
            assert response.status_code == (200 if verdict else 403)
            if verdict:
                events = SSEReader(response).events(2)
                assert [(e.data, e.last_event_id) for e in events] == [("1", ids[1]), ("2", ids[2])]
    assert hook.calls == [("ann", [topic]), ("bob", [topic])]


@pytest.mark.parametrize("adapter", BROKER_ADAPTERS)
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_raising_broker_hook_denies(
    adapter: str, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A hook that raises is a 403 (and a logged traceback), never a 500 and never a stream."""
    broker = MemoryBroker()
    hook = Hook(kind, None)
    with (
        caplog.at_level(logging.ERROR, logger="ssekit"),
        serve_broker(adapter, broker, hook.build()) as url,
        _client(url) as http,
    ):
        response = http.get("/events/secret", headers={"Last-Event-ID": "0-0"})
    assert response.status_code == 403
    assert "backend is down" not in response.text
    assert len(hook.calls) == 1
    assert any("authorize hook raised" in r.getMessage() for r in caplog.records)
    assert broker.subscribers("secret") == []


@pytest.mark.parametrize("adapter", STREAM_ADAPTERS)
@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("verdict", [True, False, None])
def test_stream_endpoint_hook(adapter: str, kind: str, verdict: bool | None) -> None:
    """`authorize(request)` on a stream endpoint: allow streams, deny or raise is a 403."""
    hook = Hook(kind, verdict)
    with serve_stream(adapter, hook.build()) as url, _client(url) as http:
        for user, last_id in (("ann", None), ("bob", "41")):
            headers = {USER_HEADER: user} | ({"Last-Event-ID": last_id} if last_id else {})
            response = http.get("/events/t", headers=headers)
            if verdict:
                assert response.status_code == 200
                expected = json.dumps({"last_event_id": last_id}, separators=(",", ":"))
                assert f"data: {expected}\n" in response.text
            else:
                assert (response.status_code, response.text) == (403, "Forbidden")
    assert hook.calls == [("ann", None), ("bob", None)]


@pytest.mark.skipif(importlib.util.find_spec("gevent") is None, reason="needs gevent")
def test_async_hooks_run_under_gunicorn_gevent(tmp_path: Path) -> None:
    """Under gevent every "thread" shares one OS thread, where the loop of a stream's async
    source counts as running: an async hook must still run (not deny everyone)."""
    env = {EVENTS_ENV: str(tmp_path / "events.log")}
    with (
        gunicorn_server("apps.flask_app:create_app()", "gevent", workdir=tmp_path, env=env) as app,
        _client(app.url) as http,
        http.stream("GET", "/hold", params={"kind": "async", "tag": "loop"}) as held,
    ):
        SSEReader(held).read_until(b"ready")  # an async source: the shared helper loop runs
        for path in ("/guarded/room/1", "/guarded-stream"):
            with http.stream("GET", path, headers={USER_HEADER: "ann"}) as response:
                assert response.status_code == 200, app.stderr()
            denied = http.get(path, headers={USER_HEADER: "bob"})
            assert (denied.status_code, denied.text) == (403, "Forbidden")
