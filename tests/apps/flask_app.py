"""A Flask application using every part of `ssekit.adapters.flask`.

gunicorn: `apps.flask_app:create_app()` with `SSEKIT_TEST_EVENTS` set to the event log.

Routes (query parameters: `kind` is "sync" or "async", `tag` names a source in the event log):
    /health              200 "ok": the server is up
    /sample              `sse_response()` of the `SAMPLE` chunks
    /decorated           `@sse(end="[DONE]")` on a view returning a source
    /decorated-gen       `@sse` on a generator view that reads `last_event_id()` as it streams
    /decorated-async-gen  the same with an async generator view
    /decorated-redirect  `@sse` on a view returning a redirect: passed through
    /resume              one event: {"last_event_id": last_event_id()} read in the view
    /context             a `stream_with_context` generator reading `request` while streaming
    /hold                "ready", then open until the client leaves (logs "closed <tag>")
    /slow                the first chunk only after `SLOW_START` seconds (logs "closed <tag>")
    /subscription        a `Subscription` source (logs "iterated"/"closed")
    /broken              the view raises before returning a source
    /decorated-broken    an `@sse` view raises before returning a source
    /guarded/<topic>     `broker_view` with an async `authorize` hook: only `X-User: ann` may in
    /guarded-stream      `@sse` with the same async hook
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from flask import Flask, Request, Response, redirect, request, stream_with_context

from apps import HEARTBEAT, Subscription, events_path, hold, sample, sample_sync, slow
from ssekit import StreamRegistry
from ssekit.adapters.flask import broker_view, init_app, last_event_id, sse, sse_response
from ssekit.broker import MemoryBroker

#: The registry's farewell and reconnection hint, checked by the tests.
FAREWELL = "bye"
FAREWELL_RETRY = 500


def create_app(events: str | None = None) -> Flask:
    """The app; sources log to `events` (default: the `SSEKIT_TEST_EVENTS` file)."""
    log = events_path(events)
    app = Flask(__name__)
    init_app(app, StreamRegistry(farewell=FAREWELL, retry=FAREWELL_RETRY))

    @app.get("/health")
    def health() -> str:
        return "ok"

    @app.get("/sample")
    def sample_view() -> Response:
        return sse_response(sample(request.args["kind"]), heartbeat=HEARTBEAT)

    @app.get("/decorated")
    @sse(end="[DONE]", heartbeat=HEARTBEAT)
    def decorated() -> Iterator[Any]:
        return sample_sync()

    @app.get("/decorated-gen")
    @sse(heartbeat=HEARTBEAT)
    def decorated_gen() -> Iterator[Any]:
        yield {"last_event_id": last_event_id()}

    @app.get("/decorated-async-gen")
    @sse(heartbeat=HEARTBEAT)
    async def decorated_async_gen() -> AsyncIterator[Any]:
        await asyncio.sleep(0)
        yield {"last_event_id": last_event_id()}

    @app.get("/decorated-redirect")
    @sse
    def decorated_redirect() -> Any:
        return redirect("/health")

    @app.get("/resume")
    def resume() -> Response:
        return sse_response([{"last_event_id": last_event_id()}], heartbeat=HEARTBEAT)

    @app.get("/context")
    def context() -> Response:
        @stream_with_context
        def generate() -> Iterator[Any]:
            for step in range(3):
                time.sleep(0.05)  # well after the view has returned
                yield {"step": step, "q": request.args["q"], "probe": request.headers["X-Probe"]}

        return sse_response(generate(), heartbeat=HEARTBEAT)

    @app.get("/hold")
    def hold_view() -> Response:
        source = hold(request.args["kind"], log, request.args["tag"])
        return sse_response(source, heartbeat=HEARTBEAT)

    @app.get("/slow")
    def slow_view() -> Response:
        source = slow(request.args["kind"], log, request.args["tag"])
        return sse_response(source, heartbeat=HEARTBEAT)

    @app.get("/subscription")
    def subscription() -> Response:
        return sse_response(Subscription(log, request.args["tag"]), heartbeat=HEARTBEAT)

    @app.get("/broken")
    def broken() -> Response:
        raise ValueError("the view failed before returning a source")

    @app.get("/decorated-broken")
    @sse
    def decorated_broken() -> Iterator[Any]:
        raise ValueError("the view failed before returning a source")

    async def only_ann(request: Request, topics: list[str] | None = None) -> bool:
        await asyncio.sleep(0)  # a real await: the hook must run on a loop
        return request.headers.get("X-User") == "ann"

    guarded = broker_view(MemoryBroker(), authorize=only_ann, heartbeat=HEARTBEAT)
    app.add_url_rule("/guarded/<path:topic>", view_func=guarded)

    @app.get("/guarded-stream")
    @sse(authorize=only_ann, heartbeat=HEARTBEAT)
    def guarded_stream() -> Iterator[Any]:
        return sample_sync()

    return app
