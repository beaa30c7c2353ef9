"""A browser's reconnect with a non-ASCII `Last-Event-ID`, through every adapter.

Chromium's `EventSource` gets one event with id 'é…😀' and `retry: 100`; the stream ends, the
browser reconnects by itself sending the id as UTF-8, and the endpoint answers with the id as
the adapter read it: raw WSGI and Flask under werkzeug, raw ASGI and Starlette under uvicorn.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

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

from ssekit import Event
from ssekit.adapters import flask as flask_adapter
from ssekit.adapters import starlette as starlette_adapter
from ssekit.adapters._common import SSERequest
from ssekit.adapters.asgi import SSEApp
from ssekit.adapters.wsgi import SSEWSGIApp

pytestmark = BROWSER_MARKS

UNICODE_ID = "é…😀"
RETRY_MS = 100
PAGE = """<!doctype html><meta charset="utf-8"><script>
window.seen = [];
const source = new EventSource("/events");
source.onmessage = (message) => {
  window.seen.push([message.data, message.lastEventId]);
  if (window.seen.length === 2) source.close();
};
</script>"""


def resume(last_id: str | None) -> list[Any]:
    """First connection: one event carrying the id; a reconnect: the id the server read."""
    if last_id is None:
        return [Event("first", id=UNICODE_ID)]
    return [json.dumps({"read": last_id})]


def _sse_request_resume(request: SSERequest) -> list[Any]:
    return resume(request.last_event_id)


WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Any]


def _with_page(events: Any) -> WSGIApp:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ["PATH_INFO"] == "/events":
            return events(environ, start_response)
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [PAGE.encode()]

    return app


def _asgi_with_page(events: Any) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] == "/events":
            await events(scope, receive, send)
            return
        await HTMLResponse(PAGE)(scope, receive, send)

    return app


@contextlib.contextmanager
def serve(adapter: str) -> Iterator[str]:
    if adapter == "wsgi":
        app = _with_page(SSEWSGIApp(_sse_request_resume, retry=RETRY_MS))
        with werkzeug_server(app) as url:
            yield url
    elif adapter == "flask":
        flask_app = Flask(__name__)
        flask_app.add_url_rule("/", view_func=lambda: PAGE)

        @flask_app.get("/events")
        def events() -> Any:
            return flask_adapter.sse_response(resume(flask_adapter.last_event_id()), retry=RETRY_MS)

        with werkzeug_server(flask_app) as url:
            yield url
    elif adapter == "asgi":
        with uvicorn_server(_asgi_with_page(SSEApp(_sse_request_resume, retry=RETRY_MS))) as url:
            yield url
    else:

        async def page(request: Request) -> HTMLResponse:
            return HTMLResponse(PAGE)

        def starlette_resume(request: Request) -> list[Any]:
            return resume(starlette_adapter.last_event_id(request))

        route = starlette_adapter.sse_route("/events", starlette_resume, retry=RETRY_MS)
        with uvicorn_server(Starlette(routes=[Route("/", page), route])) as url:
            yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_chromium()


@pytest.mark.parametrize("adapter", ["wsgi", "flask", "asgi", "starlette"])
def test_the_browser_resumes_with_a_unicode_id(browser: Browser, adapter: str) -> None:
    page = browser.new_page()
    try:
        with serve(adapter) as url:
            page.goto(url + "/")
            page.wait_for_function("window.seen.length === 2", timeout=20_000)
            seen = page.evaluate("window.seen")
            page.close()
    finally:
        if not page.is_closed():
            page.close()
    assert seen[0] == ["first", UNICODE_ID]
    assert json.loads(seen[1][0]) == {"read": UNICODE_ID}
