"""What every adapter checks when an app, view, response or route is built, not per request.

- A misspelt stream option is a `TypeError` naming it, at build time, and mypy flags the call.
- `SSEWSGIApp` refuses an `async def` factory when built; a sync factory that returns an
  awaitable is a 500 with a clear log, and no "coroutine was never awaited" warning.
- Routes built by `sse_route`/`broker_route` without `name=` have distinct names.
"""

from __future__ import annotations

import gc
import logging
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask
from starlette.applications import Starlette
from support.wsgi_servers import werkzeug_server

from ssekit.adapters.asgi import SSEApp
from ssekit.adapters.flask import broker_view, sse, sse_response
from ssekit.adapters.starlette import SSEResponse, broker_route, sse_route
from ssekit.adapters.wsgi import SSEWSGIApp
from ssekit.broker import MemoryBroker

REPO = Path(__file__).resolve().parent.parent


def _source(request: Any) -> list[str]:
    return ["x"]


def _flask_sse_response() -> Any:
    with Flask(__name__).test_request_context("/"):
        return sse_response(["x"], heartbeet=1)


BUILDERS: dict[str, Callable[[], Any]] = {
    "SSEApp": lambda: SSEApp(_source, heartbeet=1),
    "SSEWSGIApp": lambda: SSEWSGIApp(_source, heartbeet=1),
    "SSEResponse": lambda: SSEResponse(["x"], heartbeet=1),
    "sse_route": lambda: sse_route("/s", _source, heartbeet=1),
    "broker_route": lambda: broker_route("/b/{topic}", MemoryBroker(), heartbeet=1),
    "broker_view": lambda: broker_view(MemoryBroker(), heartbeet=1),
    "sse": lambda: sse(heartbeet=1),
    "sse_response": _flask_sse_response,
}


@pytest.mark.parametrize("name", BUILDERS)
def test_an_unknown_option_is_refused_when_built(name: str) -> None:
    with pytest.raises(TypeError, match="heartbeet"):
        BUILDERS[name]()


def test_an_invalid_option_value_is_refused_when_built() -> None:
    with pytest.raises(ValueError, match="heartbeat"):
        SSEWSGIApp(_source, heartbeat=-1)
    with pytest.raises(ValueError, match="heartbeat"):
        broker_route("/b/{topic}", MemoryBroker(), heartbeat=-1)


SNIPPET = """
from ssekit.adapters.asgi import SSEApp
from ssekit.adapters.flask import broker_view, sse, sse_response
from ssekit.adapters.starlette import SSEResponse, broker_route, sse_route
from ssekit.adapters.wsgi import SSEWSGIApp
from ssekit.broker import MemoryBroker

def source(request: object) -> list[str]:
    return ["x"]

SSEApp(source, heartbeet=1)
SSEWSGIApp(source, heartbeet=1)
SSEResponse(["x"], heartbeet=1)
sse_route("/s", source, heartbeet=1)
broker_route("/b/{topic}", MemoryBroker(), heartbeet=1)
broker_view(MemoryBroker(), heartbeet=1)
sse(heartbeet=1)
sse_response(["x"], heartbeet=1)
SSEApp(source, heartbeat=1.5, end="[DONE]")
"""


@pytest.mark.timeout(600)
def test_mypy_flags_an_unknown_option(tmp_path: Path) -> None:
    """Every adapter's options are typed: mypy reports the misspelt name on each call."""
    snippet = tmp_path / "snippet.py"
    snippet.write_text(textwrap.dedent(SNIPPET), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(snippet)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=580,
        check=False,
    )
    flagged = {
        int(line.split(":")[1])
        for line in result.stdout.splitlines()
        if line.startswith(str(snippet)) and "heartbeet" in line
    }
    calls = [n for n, line in enumerate(SNIPPET.splitlines(), 1) if "heartbeet" in line]
    assert flagged == set(calls), result.stdout + result.stderr
    assert f"{snippet}:{calls[-1] + 1}:" not in result.stdout  # the well-typed call passes


class _AsyncCallable:
    async def __call__(self, request: Any) -> list[str]:
        return ["x"]


async def _async_factory(request: Any) -> list[str]:
    return ["x"]


@pytest.mark.parametrize("factory", [_async_factory, _AsyncCallable()])
def test_wsgi_refuses_an_async_factory_when_built(factory: Any) -> None:
    with pytest.raises(TypeError, match="sync factory"):
        SSEWSGIApp(factory)


def test_wsgi_factory_returning_an_awaitable_is_a_clean_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Detected only at request time: a 500, the reason logged, no never-awaited warning."""
    app = SSEWSGIApp(lambda request: _async_factory(request))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with caplog.at_level(logging.ERROR, logger="ssekit"), werkzeug_server(app) as url:
            response = httpx.get(url, timeout=10.0)
        gc.collect()
    assert (response.status_code, response.text) == (500, "Internal Server Error")
    assert any("returned an awaitable" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)
    assert not [w for w in caught if "never awaited" in str(w.message)]


def test_routes_without_a_name_get_distinct_names() -> None:
    """`url_path_for` finds each route built without `name=` (they are not all "endpoint")."""
    broker = MemoryBroker()
    app = Starlette(
        routes=[
            sse_route("/ticks", _source),
            sse_route("/tocks", _source),
            broker_route("/events/{topic:path}", broker),
            broker_route("/news/{topic:path}", broker),
            sse_route("/named", _source, name="named"),
        ]
    )
    assert app.url_path_for("sse:/ticks") == "/ticks"
    assert app.url_path_for("sse:/tocks") == "/tocks"
    assert app.url_path_for("broker:/events/{topic:path}", topic="a/b") == "/events/a/b"
    assert app.url_path_for("broker:/news/{topic:path}", topic="x") == "/news/x"
    assert app.url_path_for("named") == "/named"
    names = [route.name for route in app.routes]  # type: ignore[attr-defined]
    assert len(set(names)) == len(names)
