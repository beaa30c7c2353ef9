"""The servers of `bench_fanout.py`: fan-out apps and idle-stream apps, chosen by name.

    SSEKIT_BENCH_BROKER=memory python -m uvicorn apps_fanout:broker_app --factory --port 8000
    SSEKIT_BENCH_BROKER=redis SSEKIT_BENCH_REDIS_URL=redis://127.0.0.1:6379/0 \\
        python -m uvicorn apps_fanout:broker_app --factory --port 8000
    python -m uvicorn apps_fanout:sse_starlette_idle --port 8000      # run from benchmarks/

Fan-out apps (factories: `--factory`):

    GET  /events/{topic}   the topic's events
    POST /publish/{topic}  publish the request body (UTF-8 text) as one event's data
    GET  /stats/{topic}    JSON {"pid": ..., "open": live subscribers of the topic}

- `broker_app()`: `broker_route("/events/{topic}", broker)`, the broker named by
  `SSEKIT_BENCH_BROKER` ("memory": a `MemoryBroker`; "redis": a `RedisBroker` on
  `SSEKIT_BENCH_REDIS_URL`); publishing calls `broker.apublish()` and answers the event's id.
- `starlette_hand_fanout()`: the reference, an `asyncio.Queue` per subscriber and a
  `StreamingResponse`.

The idle apps (`ssekit_idle`, `sse_starlette_idle`, `starlette_hand_idle`) serve `GET /events/x`
as a stream that sends one comment (sse-starlette: nothing) and then waits forever, and
`GET /stats/x` with the number of open streams: the per-connection memory of each library.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from ssekit.adapters.starlette import SSEResponse, broker_route
from ssekit.broker import Broker, MemoryBroker

#: Which broker `broker_app()` serves: "memory" or "redis".
BROKER_ENV = "SSEKIT_BENCH_BROKER"
#: The Redis server of the "redis" broker (a `redis://` URL).
REDIS_URL_ENV = "SSEKIT_BENCH_REDIS_URL"


def broker_app() -> Starlette:
    """The fan-out app, with the broker named by `SSEKIT_BENCH_BROKER` (default: memory)."""
    kind = os.environ.get(BROKER_ENV, "memory")
    broker: Broker
    if kind == "memory":
        broker = MemoryBroker()
    elif kind == "redis":
        from ssekit.broker import RedisBroker

        broker = RedisBroker(os.environ[REDIS_URL_ENV])
    else:
        raise SystemExit(f"{BROKER_ENV} must be 'memory' or 'redis', not {kind!r}")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(broker.close)

    async def publish(request: Request) -> Response:
        body = await request.body()
        id_ = await broker.apublish(request.path_params["topic"], body.decode())
        return PlainTextResponse(id_)

    async def stats(request: Request) -> Response:
        topic = request.path_params["topic"]
        return JSONResponse({"pid": os.getpid(), "open": len(broker.subscribers(topic))})

    return Starlette(
        routes=[
            broker_route("/events/{topic}", broker),
            Route("/publish/{topic}", publish, methods=["POST"]),
            Route("/stats/{topic}", stats),
        ],
        lifespan=lifespan,
    )


# -- the floor: a hand-written fan-out ---------------------------------------------------------


def starlette_hand_fanout() -> Starlette:
    """The least a Starlette app can do: an `asyncio.Queue` per subscriber, events framed once.

    No history, ids, resume, slow-client policy, heartbeats or send timeout: a reference for
    what uvicorn and Starlette cost, not a peer.
    """
    topics: dict[str, set[asyncio.Queue[bytes]]] = {}

    async def stream(topic: str, queue: asyncio.Queue[bytes]) -> AsyncIterator[bytes]:
        try:
            yield b": ok\n\n"
            while True:
                yield await queue.get()
        finally:
            topics[topic].discard(queue)

    async def events(request: Request) -> Response:
        topic = request.path_params["topic"]
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        topics.setdefault(topic, set()).add(queue)
        return StreamingResponse(stream(topic, queue), media_type="text/event-stream")

    async def publish(request: Request) -> Response:
        data = b"data: " + await request.body() + b"\n\n"
        for queue in topics.get(request.path_params["topic"], ()):
            queue.put_nowait(data)
        return PlainTextResponse("ok")

    async def stats(request: Request) -> Response:
        return JSONResponse(
            {"pid": os.getpid(), "open": len(topics.get(request.path_params["topic"], ()))}
        )

    return Starlette(
        routes=[
            Route("/events/{topic}", events),
            Route("/publish/{topic}", publish, methods=["POST"]),
            Route("/stats/{topic}", stats),
        ]
    )


# -- idle streams, for the memory comparison ---------------------------------------------------

#: Set only when the server stops: the idle streams wait on it.
_forever: asyncio.Event | None = None
_open = 0


async def _wait_forever(first: Any | None) -> AsyncIterator[Any]:
    """Yield `first` (if any), then wait until the process ends; counted while open."""
    global _forever, _open
    if _forever is None:
        _forever = asyncio.Event()
    _open += 1
    try:
        if first is not None:
            yield first
        await _forever.wait()
    finally:
        _open -= 1


async def _stats(request: Request) -> Response:
    return JSONResponse({"pid": os.getpid(), "open": _open})


def _idle_app(make_response: Any) -> Starlette:
    async def events(request: Request) -> Response:
        response: Response = make_response()
        return response

    return Starlette(routes=[Route("/events/{topic}", events), Route("/stats/{topic}", _stats)])


def _sse_starlette_response() -> Response:
    from sse_starlette import EventSourceResponse

    return EventSourceResponse(_wait_forever(None), ping=15)


#: ssekit's `SSEResponse` over an async generator (not a broker subscription).
ssekit_idle = _idle_app(lambda: SSEResponse(_wait_forever(None)))
#: sse-starlette's `EventSourceResponse` over an async generator (pings every 15 s).
sse_starlette_idle = _idle_app(_sse_starlette_response)
#: Starlette's `StreamingResponse` over an async generator that yields one comment.
starlette_hand_idle = _idle_app(
    lambda: StreamingResponse(_wait_forever(b": ok\n\n"), media_type="text/event-stream")
)
