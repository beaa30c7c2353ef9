"""Starlette + ssekit: a job's progress that a client can resume, and a ticking clock.

Run (from the repository root):
    uvicorn examples.starlette_app:app

See it:
    open http://127.0.0.1:8000/ in a browser (a page that shows the progress stream), or
    curl -N http://127.0.0.1:8000/progress
    curl -N 'http://127.0.0.1:8000/progress?lastEventId=7'   # resumes after step 7
    curl -N http://127.0.0.1:8000/ticks

Ctrl+C ends open streams first, with the registry's farewell and a retry hint, so uvicorn exits at
once instead of waiting for streams that never end.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from ssekit import Event, StreamRegistry
from ssekit.adapters.starlette import SSEResponse, last_event_id, sse_route

STEPS = 10
PAGE = """<!doctype html>
<title>ssekit + Starlette</title>
<pre id="log"></pre>
<script>
  const log = document.getElementById("log");
  const source = new EventSource("/progress");
  source.onmessage = (e) => { log.textContent += `step ${e.lastEventId}: ${e.data}\\n`; };
  source.addEventListener("done", () => { log.textContent += "done\\n"; source.close(); });
</script>
"""

registry = StreamRegistry(farewell="server restarting", retry=1000)


async def job(after: int) -> AsyncIterator[Event]:
    """A slow job: one event per step, its id the step, so a client can resume after it."""
    for step in range(after + 1, STEPS + 1):
        await asyncio.sleep(0.2)  # the work
        yield Event(json.dumps({"percent": step * 100 // STEPS}), id=str(step))


async def clock() -> AsyncIterator[dict[str, int]]:
    for n in range(60):
        yield {"tick": n}
        await asyncio.sleep(1)


async def index(request: Request) -> Response:
    return HTMLResponse(PAGE)


async def progress(request: Request) -> Response:
    resume = last_event_id(request) or "0"  # sent by the browser when it reconnects
    if not resume.isdigit():
        return PlainTextResponse("Last-Event-ID must be a step number", status_code=400)
    return SSEResponse(job(int(resume)), end=Event("finished", event="done"))


app = Starlette(
    routes=[
        Route("/", index),
        Route("/progress", progress),
        sse_route("/ticks", lambda request: clock(), heartbeat=5),
    ],
    lifespan=registry.lifespan,
)
