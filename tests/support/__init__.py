"""What the tests share: real servers, readers of their streams, and polling with one deadline.

- `waiting`: `free_port()`, `wait_until()`, `wait_healthy()` and the default `DEADLINE`.
- `sse_reader`: `SSEReader`, an open httpx stream read chunk by chunk, raw bytes and events.
- `asgi_servers`: uvicorn and hypercorn in a thread; `Probe`s a source reports to.
- `wsgi_servers`: werkzeug in a thread, gunicorn in a subprocess, the event log sources write.
- `contract`: one adapter served by one server (a `Pair`), for the adapter contract suite.
- `fake_upstreams`: a fake AI upstream served over HTTP, and the chunks an engine reads from it.
- `processes`, `raw_sse_server`, `chromium`: the broker app subprocess, a hand-written HTTP
  server for client tests, headless Chromium.
"""

from __future__ import annotations

from support.waiting import DEADLINE, free_port, wait_until

__all__ = ["DEADLINE", "free_port", "wait_until"]
