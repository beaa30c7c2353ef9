"""The servers of `bench_e2e.py`: one module, several apps, chosen by name on the command line.

    python -m uvicorn apps_e2e:ssekit_async_auto --port 8000     # run from benchmarks/
    python -m gunicorn -k gthread --threads 4 -w 1 apps_e2e:flask_ssekit

Every app streams the same events for `GET /?n=N` (default 200,000): the small dict
`{"i": i, "token": "hello"}` for i in range(N), each as one `data:` line of compact JSON.  The
dicts are built as the stream runs, in every app.  JSON is encoded with orjson when it is
installed (ssekit uses it then, so the peers get it too), else with `json.dumps`.

ASGI apps (uvicorn):  `ssekit_async_auto`, `ssekit_async_each`, `ssekit_sync_auto`,
`sse_starlette`, `starlette_hand`.  WSGI apps (gunicorn):  `flask_ssekit`, `flask_hand`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from flask import Flask, Response
from flask import request as flask_request
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from ssekit.adapters.flask import sse_response
from ssekit.adapters.starlette import SSEResponse

try:
    import orjson

    def dumps(value: Any) -> bytes:
        return orjson.dumps(value)

except ImportError:  # pragma: no cover - optional

    def dumps(value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":")).encode()


DEFAULT_EVENTS = 200_000


# -- sources -----------------------------------------------------------------------------------


def sync_dicts(n: int) -> Iterator[dict[str, Any]]:
    for i in range(n):
        yield {"i": i, "token": "hello"}


async def async_dicts(n: int) -> AsyncIterator[dict[str, Any]]:
    for i in range(n):
        yield {"i": i, "token": "hello"}


async def async_json_strings(n: int) -> AsyncIterator[str]:
    """What sse-starlette is given: the same dicts, JSON-encoded to `str`."""
    for i in range(n):
        yield dumps({"i": i, "token": "hello"}).decode()


async def async_hand_framed(n: int) -> AsyncIterator[bytes]:
    """The floor: frame each event by hand, one body write per event."""
    for i in range(n):
        yield b"data: " + dumps({"i": i, "token": "hello"}) + b"\n\n"


def sync_hand_framed(n: int) -> Iterator[bytes]:
    for i in range(n):
        yield b"data: " + dumps({"i": i, "token": "hello"}) + b"\n\n"


# -- ASGI apps (uvicorn) -----------------------------------------------------------------------


def _events(request: Request) -> int:
    return int(request.query_params.get("n", DEFAULT_EVENTS))


def _starlette(endpoint: Callable[[Request], Any]) -> Starlette:
    async def wrapped(request: Request) -> Any:
        return endpoint(request)

    return Starlette(routes=[Route("/", wrapped)])


ssekit_async_auto = _starlette(lambda r: SSEResponse(async_dicts(_events(r)), flush="auto"))
ssekit_async_each = _starlette(lambda r: SSEResponse(async_dicts(_events(r)), flush="each"))
ssekit_sync_auto = _starlette(lambda r: SSEResponse(sync_dicts(_events(r)), flush="auto"))


def _sse_starlette(request: Request) -> Any:
    from sse_starlette import EventSourceResponse

    # sep="\n": the same bytes on the wire as the other apps (its default ends lines with CRLF).
    return EventSourceResponse(async_json_strings(_events(request)), ping=15, sep="\n")


sse_starlette = _starlette(_sse_starlette)
starlette_hand = _starlette(
    lambda r: StreamingResponse(async_hand_framed(_events(r)), media_type="text/event-stream")
)


# -- WSGI apps (gunicorn) ----------------------------------------------------------------------


def _flask_events() -> int:
    return int(flask_request.args.get("n", DEFAULT_EVENTS))


flask_ssekit = Flask("flask_ssekit")
flask_ssekit.add_url_rule(
    "/", "stream", lambda: sse_response(sync_dicts(_flask_events()), flush="auto")
)

flask_hand = Flask("flask_hand")
flask_hand.add_url_rule(
    "/",
    "stream",
    lambda: Response(sync_hand_framed(_flask_events()), mimetype="text/event-stream"),
)
