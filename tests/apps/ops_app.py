"""A Flask app for the gunicorn operations tests: `apps.ops_app:app`, run from `tests/`.

It is the README's Flask setup: `init_app(app, StreamRegistry(farewell=..., retry=...))`, served
by gunicorn with `-c python:ssekit.gunicorn`.  `SSEKIT_TEST_MAX_STREAMS` (if set) gives the
registry a `max_streams` of its own; otherwise the gunicorn hook's default applies.

Routes:
    /health                           200 "ok"
    /plain                            200 "plain": an ordinary view
    /stream?kind=sync|async&interval  0, 1, 2, ... one event every `interval` seconds, forever
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator

from flask import Flask, Response, request

from ssekit import StreamRegistry
from ssekit.adapters.flask import init_app, sse_response

#: The registry's farewell and reconnection hint, checked by the tests.
FAREWELL = "worker stopping"
FAREWELL_RETRY = 500
#: The environment variable that sets the registry's own `max_streams`.
MAX_STREAMS_ENV = "SSEKIT_TEST_MAX_STREAMS"


def ticks_sync(interval: float) -> Iterator[int]:
    n = 0
    while True:
        yield n
        n += 1
        time.sleep(interval)


async def ticks_async(interval: float) -> AsyncIterator[int]:
    n = 0
    while True:
        yield n
        n += 1
        await asyncio.sleep(interval)


def create_app() -> Flask:
    app = Flask(__name__)
    cap = os.environ.get(MAX_STREAMS_ENV)
    registry = StreamRegistry(
        farewell=FAREWELL, retry=FAREWELL_RETRY, max_streams=int(cap) if cap else None
    )
    init_app(app, registry)

    @app.get("/health")
    def health() -> str:
        return "ok"

    @app.get("/plain")
    def plain() -> str:
        return "plain"

    @app.get("/stream")
    def stream() -> Response:
        interval = float(request.args.get("interval", "0.1"))
        kind = request.args.get("kind", "sync")
        source = ticks_sync(interval) if kind == "sync" else ticks_async(interval)
        return sse_response(source, heartbeat=1.0)

    return app


app = create_app()
