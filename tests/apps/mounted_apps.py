"""Apps of other frameworks with ssekit mounted by the middleware: Bottle (WSGI), Litestar (ASGI).

Each app has routes of its own, checked to answer the same with and without the middleware:

    GET  /              "home" (text/plain)
    GET  /items/<n>     {"item": n} (JSON)
    POST /echo          the request body, echoed
    GET  /page          an HTML page (the browser tests' page: an EventSource on /events/room)
    GET  /events        the app's own route (the broker answers only under /events/)
    WS   /ws            (Litestar) echoes each text message, upper-cased

and the middleware serves:

    /events/<topic>     `broker`'s topic, resuming from `Last-Event-ID`; topics starting with
                        "private" are refused (403); `compress=True`
    /capped/<topic>     `capped`'s topic (one subscriber per topic: the second gets 503)
    /whoami             one event: the `Last-Event-ID` and method as the middleware read them
    /clock              sync (Bottle) or async (Litestar) ticks, forever, every `interval` s;
                        the time its source is closed is appended to `Mounted.closed`

`python -m apps.mounted_apps` (from `tests/`) serves the Litestar app with uvicorn on the main
thread, so the middleware's lifespan chains the registry's signal handlers in front of
uvicorn's; it prints `port <n>` when listening.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from ssekit import StreamRegistry
from ssekit.adapters import asgi as asgi_adapter
from ssekit.adapters import wsgi as wsgi_adapter
from ssekit.adapters._common import SSERequest
from ssekit.broker import MemoryBroker

#: The farewell and reconnection hint of the middleware's registry.
FAREWELL = "server going away"
FAREWELL_RETRY = 200
#: The brokers' heartbeat: a WSGI server learns that a client left at the next write.
HEARTBEAT = 0.5

PAGE = """<!doctype html><meta charset="utf-8"><title>mounted</title><script>
window.seen = [];
window.opened = 0;
window.wsEcho = null;
window.follow = (url) => {
  const source = new EventSource(url);
  source.onopen = () => { window.opened += 1; };
  source.onmessage = (m) => { window.seen.push([m.data, m.lastEventId]); };
  window.source = source;
};
window.echo = (url, text) => {
  const ws = new WebSocket(url);
  ws.onopen = () => ws.send(text);
  ws.onmessage = (m) => { window.wsEcho = m.data; ws.close(); };
};
</script>"""


class Mounted:
    """The brokers, the hook's log and the registry one app's middleware uses."""

    def __init__(self) -> None:
        self.broker = MemoryBroker()
        self.capped = MemoryBroker(max_subscribers_per_topic=1)
        #: (topics, Last-Event-ID) of every request the hook was asked about.
        self.asked: list[tuple[list[str], str | None]] = []
        self.registry = StreamRegistry(farewell=FAREWELL, retry=FAREWELL_RETRY)
        #: What the wrapped app's lifespan did (Litestar).
        self.lifespan: list[str] = []
        #: When (time.monotonic()) each /clock source was closed.
        self.closed: list[float] = []

    def sync_clock(self, request: SSERequest) -> Iterator[int]:
        interval = float(request.query.get("interval", "0.05"))
        n = 0
        try:
            while True:
                yield n
                n += 1
                time.sleep(interval)
        finally:
            self.closed.append(time.monotonic())

    async def async_clock(self, request: SSERequest) -> AsyncIterator[int]:
        interval = float(request.query.get("interval", "0.05"))
        n = 0
        try:
            while True:
                yield n
                n += 1
                await asyncio.sleep(interval)
        finally:
            self.closed.append(time.monotonic())

    def may_follow(self, request: SSERequest, topics: list[str]) -> bool:
        self.asked.append((topics, request.last_event_id))
        return not any(topic.startswith("private") for topic in topics)

    async def amay_follow(self, request: SSERequest, topics: list[str]) -> bool:
        await asyncio.sleep(0)
        return self.may_follow(request, topics)


def whoami(request: SSERequest) -> list[str]:
    return [json.dumps({"last_event_id": request.last_event_id, "method": request.method})]


# -- Bottle (WSGI) -------------------------------------------------------------------------------


def bottle_app() -> Any:
    import bottle

    app = bottle.Bottle()

    @app.get("/")
    def home() -> str:
        bottle.response.content_type = "text/plain; charset=utf-8"
        return "home"

    @app.get("/items/<n:int>")
    def item(n: int) -> dict[str, int]:
        return {"item": n}

    @app.post("/echo")
    def echo() -> bytes:
        bottle.response.content_type = "application/octet-stream"
        return bottle.request.body.read()  # type: ignore[no-any-return]

    @app.get("/page")
    def page() -> str:
        return PAGE

    @app.get("/events")
    def events() -> str:
        return "the app's own /events"

    return app


def mounted_bottle(state: Mounted) -> wsgi_adapter.SSEMiddleware:
    middleware = wsgi_adapter.SSEMiddleware(bottle_app(), registry=state.registry)
    middleware.add_broker(
        "/events", state.broker, authorize=state.may_follow, compress=True, heartbeat=HEARTBEAT
    )
    middleware.add_broker("/capped", state.capped, heartbeat=HEARTBEAT)
    middleware.add_stream("/whoami", whoami, methods=["POST"])
    middleware.add_stream("/clock", state.sync_clock, heartbeat=None)
    return middleware


# -- Litestar (ASGI) -----------------------------------------------------------------------------


def litestar_app(state: Mounted) -> Any:
    from litestar import Litestar, MediaType, Request, get, post, websocket
    from litestar.connection import WebSocket
    from litestar.params import FromPath

    @get("/", media_type=MediaType.TEXT)
    async def home() -> str:
        return "home"

    @get("/items/{n:int}")
    async def item(n: FromPath[int]) -> dict[str, int]:
        return {"item": n}

    @post("/echo", media_type="application/octet-stream", status_code=200)
    async def echo(request: Request[Any, Any, Any]) -> bytes:
        return await request.body()

    @get("/page", media_type=MediaType.HTML)
    async def page() -> str:
        return PAGE

    @get("/events", media_type=MediaType.TEXT)
    async def events() -> str:
        return "the app's own /events"

    @websocket("/ws")
    async def ws(socket: WebSocket[Any, Any, Any]) -> None:
        await socket.accept()
        text = await socket.receive_text()
        await socket.send_text(text.upper())
        await socket.close()

    return Litestar(
        route_handlers=[home, item, echo, page, events, ws],
        on_startup=[lambda: state.lifespan.append("startup")],
        on_shutdown=[lambda: state.lifespan.append("shutdown")],
        logging_config=None,  # its default starts a log-queue thread per app
    )


def mounted_litestar(state: Mounted) -> asgi_adapter.SSEMiddleware:
    middleware = asgi_adapter.SSEMiddleware(litestar_app(state), registry=state.registry)
    middleware.add_broker(
        "/events", state.broker, authorize=state.amay_follow, compress=True, heartbeat=HEARTBEAT
    )
    middleware.add_broker("/capped", state.capped, heartbeat=HEARTBEAT)
    middleware.add_stream("/whoami", whoami, methods=["POST"])
    middleware.add_stream("/clock", state.async_clock, heartbeat=None)
    return middleware


def main() -> None:
    """Serve the mounted Litestar app with uvicorn on the main thread (real signal handling)."""
    import uvicorn

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    print(f"port {listener.getsockname()[1]}", flush=True)
    config = uvicorn.Config(
        mounted_litestar(Mounted()), log_level="warning", timeout_graceful_shutdown=10
    )
    uvicorn.Server(config).run(sockets=[listener])
    print("exit", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
