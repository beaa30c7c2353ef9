"""The example apps in `examples/` run: each is imported and served by a real server on a free
port (werkzeug's for Flask, uvicorn's for Starlette and FastAPI), and read with httpx."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from support.asgi_servers import uvicorn_server, wait_until
from support.wsgi_servers import werkzeug_server

from ssekit.testing import read_events

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TIMEOUT = 10.0  # for reads: the examples emit an event every 0.1 to 1 s


def load(name: str) -> ModuleType:
    """Import `examples/<name>.py` by its path (the examples directory is not a package)."""
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


flask_app, starlette_app, fastapi_app = (
    load(name) for name in ("flask_app", "starlette_app", "fastapi_app")
)


@contextlib.contextmanager
def serve(example: ModuleType) -> Iterator[str]:
    """The example's `app` on a real server; yields its base URL."""
    server = werkzeug_server if example is flask_app else uvicorn_server
    with server(example.app) as url:
        yield url


def get_events(url: str, n: int, headers: dict[str, str] | None = None) -> list[tuple[str, ...]]:
    """The first `n` events of the stream at `url`, as (type, data, last event id)."""
    with (
        httpx.Client(timeout=TIMEOUT) as client,
        client.stream("GET", url, headers=headers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        return [(e.type, e.data, e.last_event_id) for e in read_events(response, n, timeout=20)]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("example", [flask_app, starlette_app], ids=["flask", "starlette"])
def test_progress_streams_and_resumes(example: ModuleType) -> None:
    """/progress counts steps from 1, resumes after the Last-Event-ID (header or query
    parameter), ends with a `done` event, refuses a bad id with a 400, and serves its page."""
    with serve(example) as url:
        assert get_events(f"{url}/progress", 2) == [
            ("message", '{"percent": 10}', "1"),
            ("message", '{"percent": 20}', "2"),
        ]
        resumed = [
            ("message", '{"percent": 90}', "9"),
            ("message", '{"percent": 100}', "10"),
            ("done", "finished", "10"),
        ]
        assert get_events(f"{url}/progress", 3, {"Last-Event-ID": "8"}) == resumed
        assert get_events(f"{url}/progress?lastEventId=8", 3) == resumed
        with httpx.Client(timeout=TIMEOUT) as client:
            assert client.get(f"{url}/progress", headers={"Last-Event-ID": "x"}).status_code == 400
            page = client.get(f"{url}/")
            assert page.status_code == 200
            assert 'new EventSource("/progress")' in page.text


@pytest.mark.timeout(30)
@pytest.mark.parametrize("example", [flask_app, starlette_app], ids=["flask", "starlette"])
def test_ticks(example: ModuleType) -> None:
    """/ticks (Flask's @sse decorator, Starlette's sse_route) streams its dicts as JSON."""
    with serve(example) as url:
        assert get_events(f"{url}/ticks", 2) == [
            ("message", '{"tick":0}', ""),
            ("message", '{"tick":1}', ""),
        ]


@pytest.mark.timeout(30)
def test_fastapi_chat_streams_tokens_then_done() -> None:
    """The FastAPI endpoint returns an SSEResponse: the tokens, then [DONE]."""
    with serve(fastapi_app) as url:
        events = get_events(f"{url}/chat?prompt=tell+me", 5)
    assert [data for _, data, _ in events[:4]] == [
        json.dumps({"token": token}, separators=(",", ":"))
        for token in ("You", "said:", "tell", "me")
    ]
    assert events[4] == ("message", "[DONE]", "")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("example", [starlette_app, fastapi_app], ids=["starlette", "fastapi"])
def test_registry_lifespan_tracks_streams(example: ModuleType) -> None:
    """With `lifespan=registry.lifespan`, an open stream is in the example's registry, and
    leaves it when the client goes."""
    path = "/ticks" if example is starlette_app else "/chat?prompt=" + "+".join(["word"] * 50)
    registry = example.registry
    with (
        serve(example) as url,
        httpx.Client(timeout=TIMEOUT) as client,
    ):
        with client.stream("GET", f"{url}{path}") as response:
            read_events(response, 1, timeout=20)
            assert len(registry) == 1
        wait_until(lambda: len(registry) == 0, what="the stream left the registry")
