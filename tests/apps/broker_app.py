"""A Starlette app serving a `RedisBroker`, one per uvicorn process, for the broker tests.

From the tests directory, with the test's Redis in the environment:

    SSEKIT_TEST_REDIS_URL=redis://127.0.0.1:P/0 \\
        python -m uvicorn apps.broker_app:create_app --factory --port Q

Routes:
    /health               200 "ok": the server is up
    /events/{topic:path}  the topic's events (`broker_route`), resuming from `Last-Event-ID`
    /stats/{topic:path}   JSON: this process's pid and live subscribers of the topic, the broker's
                          counters and its Redis reader threads

SIGTERM ends the open streams with a `retry:` hint (the registry), then the broker is closed.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from ssekit import StreamRegistry
from ssekit.adapters.starlette import broker_route
from ssekit.broker import RedisBroker

#: The environment variable naming the Redis server (a `redis://` URL).
REDIS_URL_ENV = "SSEKIT_TEST_REDIS_URL"
#: The heartbeat of the event streams (seconds).
HEARTBEAT = 1.0


def reader_threads() -> list[str]:
    """The names of this process's Redis reader threads (one per broker, whatever its topics)."""
    return [t.name for t in threading.enumerate() if t.name.startswith("ssekit-redis-")]


def create_app(url: str | None = None) -> Starlette:
    """The app, with a `RedisBroker` on `url` (default: the `SSEKIT_TEST_REDIS_URL` server)."""
    broker = RedisBroker(url or os.environ[REDIS_URL_ENV])
    registry = StreamRegistry(retry=500)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with registry.lifespan(app) as state:
            yield state
        await broker.aclose()

    async def health(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def stats(request: Request) -> JSONResponse:
        topic = request.path_params["topic"]
        return JSONResponse(
            {
                "pid": os.getpid(),
                "subscribers": len(broker.subscribers(topic)),
                "counters": broker.counters,
                "readers": reader_threads(),
            }
        )

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/stats/{topic:path}", stats),
            broker_route("/events/{topic:path}", broker, heartbeat=HEARTBEAT),
        ],
        lifespan=lifespan,
    )
