"""The applications the browser tests load in headless Chromium: Starlette and Flask, same routes.

Routes (query parameter `tag` names one scenario of one test in the `Journal`):
    /            a tiny HTML page; `startStream(url, types)` opens `new EventSource(url)` and
                 records every event it dispatches in `window.seen`
    /tricky      the `TRICKY` chunks, then a "done" event (the page then closes the
                 EventSource), then silence until the client leaves
    /resume      first connection: events with ids 1, 2, 3 and the end (with `retry: 200`);
                 reconnection with `Last-Event-ID: 3`: events 4 and 5, then "done"
    /farewell    first connection: event 1, then silence (the test calls the registry's
                 `close_all()`); reconnection with `Last-Event-ID: 1`: event 2, then "done"

Each stream request records the `Last-Event-ID` it came with, and each source's end is recorded
too, in the `Journal` the test reads.  Sources are async generators: silence costs no thread, and
they are cancelled as soon as the client is gone.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from ssekit import Event, StreamRegistry

#: The heartbeat of every stream: a browser that left is noticed within it (WSGI).
HEARTBEAT = 0.5
#: The reconnection delay the /resume stream and the registry's farewell ask for.
RETRY_MS = 200
#: The registry's farewell.
FAREWELL = "server going away"

#: The chunks of /tricky and, for each, what the browser must dispatch: (type, data,
#: lastEventId), or None for a chunk that dispatches nothing.
BOM = "\ufeffa BOM that is not at the start of the stream"
BIG = "x" * 100_000 + "é" * 20_000 + "😀" * 5_000
TRICKY: list[tuple[Any, tuple[str, str, str] | None]] = [
    ("plain", ("message", "plain", "")),
    (Event("line 1\rline 2\nline 3\r\nline 4"), ("message", "line 1\nline 2\nline 3\nline 4", "")),
    ("\r\n\r\n", ("message", "\n\n", "")),
    ("ends with a line break\n", ("message", "ends with a line break\n", "")),
    ("\r", ("message", "\n", "")),
    ("  two leading spaces", ("message", "  two leading spaces", "")),
    (" one leading space", ("message", " one leading space", "")),
    ("trailing spaces  ", ("message", "trailing spaces  ", "")),
    ("\tleading tab", ("message", "\tleading tab", "")),
    (
        "emoji 😀🎉, U+2028 [\u2028] U+2029 [\u2029] NEL [\u0085] VT [\x0b] FF [\x0c]",
        (
            "message",
            "emoji 😀🎉, U+2028 [\u2028] U+2029 [\u2029] NEL [\u0085] VT [\x0b] FF [\x0c]",
            "",
        ),
    ),
    (
        "combining: e\u0301 a\u0308 \U0001f469\u200d\U0001f4bb ZWJ",
        ("message", "combining: e\u0301 a\u0308 \U0001f469\u200d\U0001f4bb ZWJ", ""),
    ),
    ("NUL [\x00] inside", ("message", "NUL [\x00] inside", "")),
    (BOM, ("message", BOM, "")),  # only a BOM at the start of the stream is stripped
    ("data: fake\n\nevent: injected", ("message", "data: fake\n\nevent: injected", "")),
    ("colon: value", ("message", "colon: value", "")),
    ("", ("message", "", "")),
    (Event("typed", event="update", id="1"), ("update", "typed", "1")),
    (Event(id="2"), None),  # an id-only event dispatches nothing...
    (Event("after an id-only event"), ("message", "after an id-only event", "2")),  # ...but counts
    (Event(comment="a comment\nover two lines"), None),
    (
        Event("custom type with unicode", event="ünï-cøde"),
        ("ünï-cøde", "custom type with unicode", "2"),
    ),
    (Event("explicit message type", event="message"), ("message", "explicit message type", "2")),
    (Event("unicode id", id="é-🙂"), ("message", "unicode id", "é-🙂")),
    (Event("an empty id resets it", id=""), ("message", "an empty id resets it", "")),
    (
        {"json": ["a", 1, None], "text": "é\n"},
        ("message", '{"json":["a",1,null],"text":"é\\n"}', ""),
    ),
    (b"bytes chunk \xc3\xa9", ("message", "bytes chunk é", "")),
    (BIG, ("message", BIG, "")),
]
#: The event types the page must listen to (besides "message").
TRICKY_TYPES = ["update", "ünï-cøde"]

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>ssekit browser test</title></head>
<body>
<script>
window.seen = [];
window.startStream = (url, types) => {
  const source = new EventSource(url);
  window.source = source;
  const at = () => performance.now();
  const message = (event) => {
    const {type, data, lastEventId} = event;
    window.seen.push({kind: "message", type, data, lastEventId, at: at()});
  };
  source.onmessage = message;
  for (const type of types) source.addEventListener(type, message);
  source.addEventListener("open", () => window.seen.push({kind: "open", at: at()}));
  source.addEventListener("error", () =>
    window.seen.push({kind: "error", readyState: source.readyState, at: at()}));
  source.addEventListener("done", () => {
    source.close();
    window.seen.push({kind: "done", at: at()});
  });
};
</script>
</body></html>
"""


@dataclass(frozen=True)
class Entry:
    """One thing a stream reported: a request arrived (with its Last-Event-ID) or a source ended."""

    tag: str
    #: "request" or "end".
    kind: str
    last_event_id: str | None
    at: float


class Journal:
    """What the streams reported, from the server's threads, for the test to read."""

    def __init__(self) -> None:
        self._entries: list[Entry] = []
        self._lock = threading.Lock()

    def add(self, tag: str, kind: str, last_event_id: str | None = None) -> None:
        with self._lock:
            self._entries.append(Entry(tag, kind, last_event_id, time.monotonic()))

    def of(self, tag: str) -> list[Entry]:
        with self._lock:
            return [entry for entry in self._entries if entry.tag == tag]


async def hold() -> None:
    """Stay silent (heartbeats only) until the client leaves and the source is cancelled."""
    await asyncio.sleep(3600)


async def tricky(journal: Journal, tag: str) -> AsyncIterator[Any]:
    try:
        for chunk, _ in TRICKY:
            yield chunk
        yield Event("", event="done")
        await hold()
    finally:
        journal.add(tag, "end")


async def resume(journal: Journal, tag: str, last_event_id: str | None) -> AsyncIterator[Any]:
    try:
        if last_event_id is None:
            for n, word in enumerate(["one", "two", "three"], start=1):
                yield Event(word, id=str(n))
            return  # the response ends: the browser reconnects after `retry` ms
        if last_event_id == "3":
            yield Event("four", id="4")
            yield Event("five", id="5")
        yield Event(f"resumed after {last_event_id}", event="done")
        await hold()
    finally:
        journal.add(tag, "end")


async def farewell(journal: Journal, tag: str, last_event_id: str | None) -> AsyncIterator[Any]:
    try:
        if last_event_id is None:
            yield Event("before", id="1")
            await hold()  # until the registry's close_all() ends the stream
            return
        if last_event_id == "1":
            yield Event("after", id="2")
        yield Event(f"resumed after {last_event_id}", event="done")
        await hold()
    finally:
        journal.add(tag, "end")


Route = Callable[[Journal, str, "str | None"], AsyncIterator[Any]]
ROUTES: dict[str, Route] = {
    "/tricky": lambda journal, tag, last: tricky(journal, tag),
    "/resume": resume,
    "/farewell": farewell,
}
#: The stream options of each route.
OPTIONS: dict[str, dict[str, Any]] = {
    "/tricky": {"heartbeat": HEARTBEAT},
    "/resume": {"heartbeat": HEARTBEAT, "retry": RETRY_MS},
    "/farewell": {"heartbeat": HEARTBEAT},
}


def new_registry() -> StreamRegistry:
    return StreamRegistry(farewell=FAREWELL, retry=RETRY_MS)


def start_source(journal: Journal, path: str, tag: str, last: str | None) -> AsyncIterator[Any]:
    journal.add(tag, "request", last)
    return ROUTES[path](journal, tag, last)


def starlette_app(journal: Journal, registry: StreamRegistry) -> Any:
    """The Starlette app, its streams tracked by `registry` through the lifespan."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, Response
    from starlette.routing import Route as StarletteRoute

    from ssekit.adapters.starlette import SSEResponse, last_event_id

    async def page(request: Request) -> Response:
        return HTMLResponse(PAGE)

    def endpoint(path: str) -> Callable[[Request], Any]:
        async def stream(request: Request) -> Response:
            tag = request.query_params["tag"]
            source = start_source(journal, path, tag, last_event_id(request))
            return SSEResponse(source, **OPTIONS[path])

        return stream

    routes = [StarletteRoute("/", page)]
    routes += [StarletteRoute(path, endpoint(path)) for path in ROUTES]
    return Starlette(routes=routes, lifespan=registry.lifespan)


def flask_app(journal: Journal, registry: StreamRegistry) -> Any:
    """The Flask app, its streams tracked by `registry` (`init_app`)."""
    from flask import Flask, Response, request

    from ssekit.adapters.flask import init_app, last_event_id, sse_response

    app = Flask(__name__)
    init_app(app, registry)

    @app.get("/")
    def page() -> Response:
        return Response(PAGE, mimetype="text/html")

    def endpoint(path: str) -> Callable[[], Response]:
        def stream() -> Response:
            tag = request.args["tag"]
            source = start_source(journal, path, tag, last_event_id())
            return sse_response(source, **OPTIONS[path])

        return stream

    for path in ROUTES:
        app.add_url_rule(path, endpoint=path, view_func=endpoint(path))
    return app
