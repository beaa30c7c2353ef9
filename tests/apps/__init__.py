"""Applications for the end-to-end adapter tests, importable in-process and by gunicorn.

Every adapter's app (`wsgi_app`, `flask_app`, `asgi_app`, `starlette_app`, `fastapi_app`) serves
the same contract routes with the same sources (query parameters: `kind` picks the source's
flavour, `tag` names one request in the event log):

    /health          200 "ok": the server is up
    /sample          the `SAMPLE` chunks, then the end (`kind`: sync or async)
    /resume          one event: {"last_event_id": ..., "method": ...} as the app saw them
    /post            like /resume, with POST allowed too
    /options         `OPTIONS_SOURCE` with `OPTIONS` (retry hint, end event)
    /hold            "ready", then open until the client leaves (`HOLD_KINDS`; logs "closed")
    /slow            nothing until the test logs "release" for the tag, then "late"
    /subscription    a `Subscription` source (logs "iterated"/"closed")
    /broken          the factory or view raises `SECRET` before returning a source

gunicorn serves them in a subprocess (`--chdir` to the tests directory), so a source cannot
report to the test through memory: it appends a line `<kind> <tag> <unix time>` to an event log,
a file whose path the test gives (`create_app(path)` in-process, the `SSEKIT_TEST_EVENTS`
environment variable for gunicorn).  The test polls that file with a deadline, and writes to it
too ("release <tag>" lets a `slow` source go on).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from ssekit import Event, MessageEvent

#: The environment variable naming the event log of a gunicorn-served app.
EVENTS_ENV = "SSEKIT_TEST_EVENTS"
#: The heartbeat of every stream the test apps serve: clients that left are noticed within it.
HEARTBEAT = 0.5
#: How often a "hold" sync source yields: it can only learn that its client left when it yields.
TICK = 0.5
#: How long a "slow" source waits for its release at most.
SLOW_DEADLINE = 10.0
#: How often a "slow" source looks for its release.
SLOW_POLL = 0.02
#: What the failing factories raise: it must never reach a client.
SECRET = "secret detail: the factory failed before returning a source"
#: The `to_sse()` options of /options, and what it streams.
OPTIONS: dict[str, Any] = {"retry": 2500, "end": "[DONE]"}
OPTIONS_SOURCE = ["a"]
#: The flavours of /hold: a sync source blocked in `next()` between ticks, an async one that
#: stays silent (only heartbeats are written), and sync and async ones that never pause.
HOLD_KINDS = ("sync", "async", "sync-busy", "async-busy")

#: What the sample sources send: str, JSON, events with type and id, multi-line data (LF, CRLF),
#: a leading space, unicode, empty data, bytes.
SAMPLE: list[Any] = [
    "hello",
    {"n": 1, "text": "café ☕", "list": [1, 2.5, None]},
    Event("line 1\nline 2\r\nline 3", event="update", id="42"),
    Event(" leading space and unicode é", event="other"),
    "",
    b"bytes are data",
    "a\nb\r\nc",
]
#: The `SAMPLE` chunks on the wire, after the preamble, heartbeats left out...
SAMPLE_WIRE = (
    b"data: hello\n\n"
    b'data: {"n":1,"text":"caf\xc3\xa9 \xe2\x98\x95","list":[1,2.5,null]}\n\n'
    b"event: update\nid: 42\ndata: line 1\ndata: line 2\ndata: line 3\n\n"
    b"event: other\ndata:  leading space and unicode \xc3\xa9\n\n"
    b"data: \n\n"
    b"data: bytes are data\n\n"
    b"data: a\ndata: b\ndata: c\n\n"
)
#: ...and as an `EventSource` dispatches them.
SAMPLE_EVENTS = [
    MessageEvent("message", "hello", ""),
    MessageEvent("message", '{"n":1,"text":"café ☕","list":[1,2.5,null]}', ""),
    MessageEvent("update", "line 1\nline 2\nline 3", "42"),
    MessageEvent("other", " leading space and unicode é", "42"),
    MessageEvent("message", "", "42"),
    MessageEvent("message", "bytes are data", "42"),
    MessageEvent("message", "a\nb\nc", "42"),
]


def events_path(path: str | None) -> str:
    """The event log: `path`, else the one named by the environment (gunicorn)."""
    return path if path is not None else os.environ[EVENTS_ENV]


def record(path: str, kind: str, tag: str) -> None:
    """Append `<kind> <tag> <time>` to the event log (one short write: lines never interleave)."""
    with open(path, "a", encoding="utf-8") as log:
        log.write(f"{kind} {tag} {time.time():.6f}\n")


def logged(path: str, kind: str, tag: str) -> bool:
    """Whether `<kind> <tag>` is in the event log."""
    with open(path, encoding="utf-8") as log:
        return any(line.startswith(f"{kind} {tag} ") for line in log)


def sample_sync() -> Iterator[Any]:
    yield from SAMPLE


async def sample_async() -> AsyncIterator[Any]:
    for chunk in SAMPLE:
        await asyncio.sleep(0)
        yield chunk


def sample(kind: str) -> Iterator[Any] | AsyncIterator[Any]:
    """The sample chunks from a sync or an async generator."""
    return sample_async() if kind == "async" else sample_sync()


def resume(
    log: str, tag: str | None, last_event_id: str | None, method: str
) -> list[dict[str, Any]]:
    """The one event of /resume and /post; logs "called" for `tag` (if given) first."""
    if tag is not None:
        record(log, "called", tag)
    return [{"last_event_id": last_event_id, "method": method}]


def hold_sync(log: str, tag: str, tick: float | None) -> Iterator[str]:
    """Say "ready", then tick every `tick` seconds (None: without pause) until closed."""
    try:
        yield "ready"
        while True:
            if tick is not None:
                time.sleep(tick)
            yield "tick"
    finally:
        record(log, "closed", tag)


async def hold_async(log: str, tag: str, busy: bool) -> AsyncIterator[str]:
    """Say "ready", then stay silent until cancelled (busy: tick without ever suspending)."""
    try:
        yield "ready"
        if not busy:
            await asyncio.sleep(3600)
        while True:
            yield "tick"
    finally:
        record(log, "closed", tag)


def hold(kind: str, log: str, tag: str) -> Iterator[str] | AsyncIterator[str]:
    """The /hold source of flavour `kind` (one of `HOLD_KINDS`)."""
    if kind.startswith("async"):
        return hold_async(log, tag, busy=kind == "async-busy")
    return hold_sync(log, tag, None if kind == "sync-busy" else TICK)


def slow_sync(log: str, tag: str) -> Iterator[str]:
    """Block in `next()` until the test logs "release" for `tag`, then say "late"."""
    try:
        deadline = time.monotonic() + SLOW_DEADLINE
        while not logged(log, "release", tag) and time.monotonic() < deadline:
            time.sleep(SLOW_POLL)
        yield "late"
    finally:
        record(log, "closed", tag)


async def slow_async(log: str, tag: str) -> AsyncIterator[str]:
    try:
        deadline = time.monotonic() + SLOW_DEADLINE
        while not logged(log, "release", tag) and time.monotonic() < deadline:
            await asyncio.sleep(SLOW_POLL)
        yield "late"
    finally:
        record(log, "closed", tag)


def slow(kind: str, log: str, tag: str) -> Iterator[str] | AsyncIterator[str]:
    return slow_async(log, tag) if kind == "async" else slow_sync(log, tag)


def raw_routes(log: str) -> dict[str, tuple[Any, dict[str, Any]]]:
    """The contract routes of the raw adapters: path -> (factory of a request, stream options).

    A factory reads the request's `query`, `last_event_id` and `method` (`SSEWSGIApp` and
    `SSEApp` hand it the same request object).
    """

    def answer(request: Any) -> list[dict[str, Any]]:
        return resume(log, request.query.get("tag"), request.last_event_id, request.method)

    def broken(request: Any) -> list[str]:
        raise ValueError(SECRET)

    beat = {"heartbeat": HEARTBEAT}
    return {
        "/sample": (lambda r: sample(r.query["kind"]), beat),
        "/resume": (answer, beat),
        "/post": (answer, {**beat, "methods": ("post",)}),  # any case is fine
        "/options": (lambda r: list(OPTIONS_SOURCE), {**beat, **OPTIONS}),
        "/hold": (lambda r: hold(r.query["kind"], log, r.query["tag"]), beat),
        "/slow": (lambda r: slow(r.query["kind"], log, r.query["tag"]), beat),
        "/subscription": (lambda r: Subscription(log, r.query["tag"]), beat),
        "/broken": (broken, beat),
    }


class Subscription:
    """A source holding a resource (as a pub/sub subscription does), released by `close()`.

    It logs "iterated" when it is first read and "closed" when closed, so a test can tell that
    a HEAD request released it without ever running it.
    """

    def __init__(self, log: str, tag: str) -> None:
        self.log = log
        self.tag = tag
        self.started = False

    def __iter__(self) -> Subscription:
        return self

    def __next__(self) -> str:
        if not self.started:
            self.started = True
            record(self.log, "iterated", self.tag)
            return "subscribed"
        raise StopIteration

    def close(self) -> None:
        record(self.log, "closed", self.tag)
