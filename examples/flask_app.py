"""Flask + ssekit: a job's progress that a client can resume, and a ticking clock.

Run (from the repository root):
    flask --app examples/flask_app run

See it:
    open http://127.0.0.1:5000/ in a browser (a page that shows the progress stream), or
    curl -N http://127.0.0.1:5000/progress
    curl -N -H 'Last-Event-ID: 7' http://127.0.0.1:5000/progress   # resumes after step 7
    curl -N http://127.0.0.1:5000/ticks

Flask's development server is threaded, so a stream does not block other requests.  In
production use gunicorn's gthread (or gevent) worker, never its default sync worker:
    gunicorn -k gthread --threads 32 examples.flask_app:app
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

from flask import Flask, Response, abort

from ssekit import Event
from ssekit.adapters.flask import init_app, last_event_id, sse, sse_response

STEPS = 10
PAGE = """<!doctype html>
<title>ssekit + Flask</title>
<pre id="log"></pre>
<script>
  const log = document.getElementById("log");
  const source = new EventSource("/progress");
  source.onmessage = (e) => { log.textContent += `step ${e.lastEventId}: ${e.data}\\n`; };
  source.addEventListener("done", () => { log.textContent += "done\\n"; source.close(); });
</script>
"""

app = Flask(__name__)
init_app(app)  # a registry that ends open streams at shutdown


def job(after: int) -> Iterator[Event]:
    """A slow job: one event per step, its id the step, so a client can resume after it."""
    for step in range(after + 1, STEPS + 1):
        time.sleep(0.2)  # the work
        yield Event(json.dumps({"percent": step * 100 // STEPS}), id=str(step))


@app.get("/")
def index() -> str:
    return PAGE


@app.get("/progress")
def progress() -> Response:
    resume = last_event_id() or "0"  # sent by the browser when it reconnects
    if not resume.isdigit():
        abort(400)  # checked before the stream starts, so it is still a real 400
    return sse_response(job(int(resume)), end=Event("finished", event="done"))


@app.get("/ticks")
@sse(heartbeat=5)  # the view is the source: each yielded dict becomes a JSON event
def ticks() -> Iterator[dict[str, int]]:
    for n in range(60):
        yield {"tick": n}
        time.sleep(1)
