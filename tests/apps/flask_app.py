"""The contract routes (see `apps`) as Flask views, and every other part of
`ssekit.adapters.flask`.

gunicorn: `apps.flask_app:create_app()` with `SSEKIT_TEST_EVENTS` set to the event log.

Flask-only routes:
    /decorated            `@sse(end="[DONE]")` on a view returning a source
    /decorated-gen        `@sse` on a generator view that reads `last_event_id()` as it streams
    /decorated-async-gen  the same with an async generator view
    /decorated-redirect   `@sse` on a view returning a redirect: passed through
    /decorated-broken     an `@sse` view raises before returning a source
    /context              a `stream_with_context` generator reading `request` while streaming
    /guarded/<topic>      `broker_view` with an async `authorize` hook: only `X-User: ann` may in
    /guarded-stream       `@sse` with the same async hook
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from flask import Flask, Request, Response, redirect, request, stream_with_context

import apps
from ssekit import StreamRegistry
from ssekit.adapters.flask import broker_view, init_app, last_event_id, sse, sse_response
from ssekit.broker import MemoryBroker

#: The registry's farewell and reconnection hint, checked by the tests.
FAREWELL = "bye"
FAREWELL_RETRY = 500


def create_app(events: str | None = None) -> Flask:
    """The app; sources log to `events` (default: the `SSEKIT_TEST_EVENTS` file)."""
    log = apps.events_path(events)
    app = Flask(__name__)
    init_app(app, StreamRegistry(farewell=FAREWELL, retry=FAREWELL_RETRY))

    @app.get("/health")
    def health() -> str:
        return "ok"

    # -- the contract routes

    @app.get("/sample")
    def sample_view() -> Response:
        return sse_response(apps.sample(request.args["kind"]), heartbeat=apps.HEARTBEAT)

    @app.get("/resume")
    def resume_view() -> Response:
        answer = apps.resume(log, request.args.get("tag"), last_event_id(), request.method)
        return sse_response(answer, heartbeat=apps.HEARTBEAT)

    @app.route("/post", methods=["GET", "POST"])
    def post_view() -> Response:
        answer = apps.resume(log, request.args.get("tag"), last_event_id(), request.method)
        return sse_response(answer, heartbeat=apps.HEARTBEAT)

    @app.get("/options")
    def options_view() -> Response:
        return sse_response(list(apps.OPTIONS_SOURCE), heartbeat=apps.HEARTBEAT, **apps.OPTIONS)

    @app.get("/hold")
    def hold_view() -> Response:
        source = apps.hold(request.args["kind"], log, request.args["tag"])
        return sse_response(source, heartbeat=apps.HEARTBEAT)

    @app.get("/slow")
    def slow_view() -> Response:
        source = apps.slow(request.args["kind"], log, request.args["tag"])
        return sse_response(source, heartbeat=apps.HEARTBEAT)

    @app.get("/subscription")
    def subscription() -> Response:
        return sse_response(apps.Subscription(log, request.args["tag"]), heartbeat=apps.HEARTBEAT)

    @app.get("/broken")
    def broken() -> Response:
        raise ValueError(apps.SECRET)

    # -- Flask only

    @app.get("/decorated")
    @sse(end="[DONE]", heartbeat=apps.HEARTBEAT)
    def decorated() -> Iterator[Any]:
        return apps.sample_sync()

    @app.get("/decorated-gen")
    @sse(heartbeat=apps.HEARTBEAT)
    def decorated_gen() -> Iterator[Any]:
        yield {"last_event_id": last_event_id()}

    @app.get("/decorated-async-gen")
    @sse(heartbeat=apps.HEARTBEAT)
    async def decorated_async_gen() -> AsyncIterator[Any]:
        await asyncio.sleep(0)
        yield {"last_event_id": last_event_id()}

    @app.get("/decorated-redirect")
    @sse
    def decorated_redirect() -> Any:
        return redirect("/health")

    @app.get("/decorated-broken")
    @sse
    def decorated_broken() -> Iterator[Any]:
        raise ValueError(apps.SECRET)

    @app.get("/context")
    def context() -> Response:
        @stream_with_context
        def generate() -> Iterator[Any]:
            for step in range(3):
                time.sleep(0.05)  # well after the view has returned
                yield {"step": step, "q": request.args["q"], "probe": request.headers["X-Probe"]}

        return sse_response(generate(), heartbeat=apps.HEARTBEAT)

    async def only_ann(request: Request, topics: list[str] | None = None) -> bool:
        await asyncio.sleep(0)  # a real await: the hook must run on a loop
        return request.headers.get("X-User") == "ann"

    guarded = broker_view(MemoryBroker(), authorize=only_ann, heartbeat=apps.HEARTBEAT)
    app.add_url_rule("/guarded/<path:topic>", view_func=guarded)

    @app.get("/guarded-stream")
    @sse(authorize=only_ann, heartbeat=apps.HEARTBEAT)
    def guarded_stream() -> Iterator[Any]:
        return apps.sample_sync()

    return app
