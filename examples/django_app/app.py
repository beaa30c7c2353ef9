"""Django + ssekit in one file: settings, views and URLs; a job's progress that a client can
resume, and a ticking clock from an async view.

Run (from this directory):
    python app.py runserver                                         # Django's development server
    gunicorn -k gthread --threads 32 wsgi:application               # WSGI in production
    uvicorn asgi:application                                        # ASGI

See it:
    open http://127.0.0.1:8000/ in a browser (a page that shows the progress stream), or
    curl -N http://127.0.0.1:8000/progress
    curl -N -H 'Last-Event-ID: 7' http://127.0.0.1:8000/progress   # resumes after step 7
    curl -N http://127.0.0.1:8000/ticks

`wsgi.py` and `asgi.py` use ssekit's `get_wsgi_application()` / `get_asgi_application()`, which
chain the registry's SIGINT/SIGTERM handlers, so a shutdown ends open streams with the farewell.
Under gunicorn, never use its default sync worker for streams (use gthread or gevent).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Iterator

import django
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseBase
from django.urls import path

from ssekit import Event, StreamRegistry
from ssekit.adapters.django import last_event_id, sse, sse_response

settings.configure(
    DEBUG=False,
    SECRET_KEY="example only: set your own",
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[
        "django.middleware.security.SecurityMiddleware",
        "django.middleware.common.CommonMiddleware",
        # Instead of Django's GZipMiddleware, which would hold the events back:
        "ssekit.adapters.django.GZipMiddleware",
    ],
    # The open streams of this process; a shutdown ends each with this farewell.
    SSEKIT_REGISTRY=StreamRegistry(farewell="server restarting", retry=1000),
)
django.setup()

STEPS = 10
PAGE = """<!doctype html>
<title>ssekit + Django</title>
<pre id="log"></pre>
<script>
  const log = document.getElementById("log");
  const source = new EventSource("/progress");
  source.onmessage = (e) => { log.textContent += `step ${e.lastEventId}: ${e.data}\\n`; };
  source.addEventListener("done", () => { log.textContent += "done\\n"; source.close(); });
</script>
"""


def job(after: int) -> Iterator[Event]:
    """A slow job: one event per step, its id the step, so a client can resume after it."""
    for step in range(after + 1, STEPS + 1):
        time.sleep(0.2)  # the work
        yield Event(json.dumps({"percent": step * 100 // STEPS}), id=str(step))


def index(request: HttpRequest) -> HttpResponse:
    return HttpResponse(PAGE)


def progress(request: HttpRequest) -> HttpResponseBase:
    resume = last_event_id(request) or "0"  # sent by the browser when it reconnects
    if not resume.isdigit():
        return HttpResponseBadRequest("bad Last-Event-ID")  # before the stream: a real 400
    return sse_response(request, job(int(resume)), end=Event("finished", event="done"))


@sse(heartbeat=5)  # the view is the source: each yielded dict becomes a JSON event
async def ticks(request: HttpRequest) -> AsyncIterator[dict[str, int]]:
    for n in range(60):
        yield {"tick": n}
        await asyncio.sleep(1)


urlpatterns = [path("", index), path("progress", progress), path("ticks", ticks)]

if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
