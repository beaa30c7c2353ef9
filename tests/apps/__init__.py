"""Applications for the end-to-end adapter tests, importable in-process and by gunicorn.

gunicorn serves them in a subprocess (`--chdir` to the tests directory), so a source cannot
report to the test through memory: it appends a line `<kind> <tag> <unix time>` to an event log,
a file whose path the test gives (`create_app(path)` in-process, the `SSEKIT_TEST_EVENTS`
environment variable for gunicorn).  The test polls that file with a deadline.

The sources here are shared by the raw WSGI and the Flask application.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from ssekit import Event

#: The environment variable naming the event log of a gunicorn-served app.
EVENTS_ENV = "SSEKIT_TEST_EVENTS"
#: The heartbeat of every stream the test apps serve: clients that left are noticed within it.
HEARTBEAT = 1.0
#: How often a "hold" sync source yields: it can only learn that its client left when it yields.
TICK = 0.5
#: How long a "slow" source waits before its first chunk.
SLOW_START = 5.0

#: What the sample sources send: a str, a dict, an Event with id and type, multi-line data.
SAMPLE: list[Any] = [
    "hello",
    {"n": 1, "text": "héllo"},
    Event("line 1\nline 2", event="update", id="42"),
    "a\nb\r\nc",
]


def events_path(path: str | None) -> str:
    """The event log: `path`, else the one named by the environment (gunicorn)."""
    return path if path is not None else os.environ[EVENTS_ENV]


def record(path: str, kind: str, tag: str) -> None:
    """Append `<kind> <tag> <time>` to the event log (one short write: lines never interleave)."""
    with open(path, "a", encoding="utf-8") as log:
        log.write(f"{kind} {tag} {time.time():.6f}\n")


def sample_sync() -> Iterator[Any]:
    yield from SAMPLE


async def sample_async() -> AsyncIterator[Any]:
    for chunk in SAMPLE:
        await asyncio.sleep(0)
        yield chunk


def sample(kind: str) -> Iterator[Any] | AsyncIterator[Any]:
    """The sample chunks from a sync or an async generator."""
    return sample_async() if kind == "async" else sample_sync()


def hold_sync(log: str, tag: str) -> Iterator[str]:
    """Say "ready", then tick every `TICK` seconds forever; the log learns when it is closed."""
    try:
        yield "ready"
        while True:
            time.sleep(TICK)
            yield "tick"
    finally:
        record(log, "closed", tag)


async def hold_async(log: str, tag: str) -> AsyncIterator[str]:
    """Say "ready", then stay silent (only heartbeats are written) until cancelled."""
    try:
        yield "ready"
        await asyncio.sleep(3600)
    finally:
        record(log, "closed", tag)


def hold(kind: str, log: str, tag: str) -> Iterator[str] | AsyncIterator[str]:
    return hold_async(log, tag) if kind == "async" else hold_sync(log, tag)


def slow_sync(log: str, tag: str) -> Iterator[str]:
    """Wait `SLOW_START` seconds before the first chunk."""
    try:
        time.sleep(SLOW_START)
        yield "late"
    finally:
        record(log, "closed", tag)


async def slow_async(log: str, tag: str) -> AsyncIterator[str]:
    try:
        await asyncio.sleep(SLOW_START)
        yield "late"
    finally:
        record(log, "closed", tag)


def slow(kind: str, log: str, tag: str) -> Iterator[str] | AsyncIterator[str]:
    return slow_async(log, tag) if kind == "async" else slow_sync(log, tag)


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
