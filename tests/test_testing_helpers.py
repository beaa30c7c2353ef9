"""`ssekit.testing.read_events` / `aread_events`: a few events, with a deadline, never a hang."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from ssekit import MessageEvent, to_sse
from ssekit.testing import aread_events, read_events

pytestmark = pytest.mark.timeout(30)

WAIT = 10.0


def endless(closed: threading.Event) -> Iterator[int]:
    try:
        yield from itertools.count()
    finally:
        closed.set()


async def aendless(closed: threading.Event) -> AsyncIterator[int]:
    try:
        for i in itertools.count():
            yield i
            await asyncio.sleep(0)
    finally:
        closed.set()


# -- read_events ----------------------------------------------------------------------------------


def test_read_events_returns_the_first_n_and_closes_the_stream() -> None:
    closed = threading.Event()
    events = read_events(to_sse(endless(closed)), 3)
    assert events == [MessageEvent("message", str(i), "") for i in range(3)]
    assert closed.wait(WAIT)


def test_read_events_of_an_async_source() -> None:
    closed = threading.Event()
    events = read_events(to_sse(aendless(closed)), 5)
    assert [e.data for e in events] == ["0", "1", "2", "3", "4"]
    assert closed.wait(WAIT)


def test_read_events_from_plain_bytes_split_anywhere() -> None:
    raw = b"event: a\ndata: one\n\ndata: two\r\n\r\n: comment\ndata: three\n\n"
    pieces = [raw[i : i + 3] for i in range(0, len(raw), 3)]
    events = read_events(pieces, 3)
    assert [(e.type, e.data) for e in events] == [
        ("a", "one"),
        ("message", "two"),
        ("message", "three"),
    ]


@pytest.mark.parametrize("heartbeat", [0.05, None])
def test_read_events_times_out_on_a_silent_endless_stream(heartbeat: float | None) -> None:
    release = threading.Event()
    closed = threading.Event()

    def silent() -> Iterator[str]:
        try:
            release.wait(WAIT)  # silent until the test is over
            yield "late"
        finally:
            closed.set()

    start = time.monotonic()
    with pytest.raises(TimeoutError, match="Fewer than 1 events"):
        read_events(to_sse(silent(), heartbeat=heartbeat), 1, timeout=0.3)
    assert time.monotonic() - start < 5.0  # it returned at its deadline, not at the source's
    release.set()  # lets the source (and so the reader) finish
    assert closed.wait(WAIT)


def test_read_events_times_out_on_a_blocked_plain_iterable() -> None:
    release = threading.Event()

    def blocked() -> Iterator[bytes]:
        yield b"data: one\n\n"
        release.wait(WAIT)
        yield b"data: late\n\n"

    with pytest.raises(TimeoutError):
        read_events(blocked(), 2, timeout=0.2)
    release.set()


def test_read_events_reports_a_stream_that_ends_too_soon() -> None:
    with pytest.raises(AssertionError, match="ended after 2 of 3"):
        read_events(to_sse(["a", "b"]), 3)


def test_read_events_reraises_the_sources_error() -> None:
    def broken() -> Iterator[bytes]:
        yield b"data: one\n\n"
        raise ConnectionResetError("gone")

    with pytest.raises(ConnectionResetError, match="gone"):
        read_events(broken(), 2)


def test_read_events_refuses_what_is_not_bytes_to_read() -> None:
    with pytest.raises(TypeError):
        read_events(42, 1)


class FakeResponse:
    """What read_events uses of an httpx response opened with stream=True."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def iter_bytes(self) -> Iterator[bytes]:
        yield from self.chunks

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


def test_read_events_of_a_response_like_object() -> None:
    response = FakeResponse([b"data: a\n\n", b"data: b\n\n"])
    assert [e.data for e in read_events(response, 2)] == ["a", "b"]


def test_read_events_through_httpx_and_wsgi() -> None:
    httpx = pytest.importorskip("httpx")
    closed = threading.Event()

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "text/event-stream")])
        return to_sse(endless(closed))

    client = httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://test")
    with client, client.stream("GET", "/") as response:
        events = read_events(response, 3)
    assert [e.data for e in events] == ["0", "1", "2"]
    assert closed.wait(WAIT)


# -- aread_events ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_aread_events_returns_the_first_n_and_closes_the_stream(kind: str) -> None:
    closed = threading.Event()

    async def main() -> list[MessageEvent]:
        source = endless(closed) if kind == "sync" else aendless(closed)
        return await aread_events(to_sse(source), 4)

    assert [e.data for e in asyncio.run(main())] == ["0", "1", "2", "3"]
    assert closed.wait(WAIT)


@pytest.mark.parametrize("heartbeat", [0.05, None])
def test_aread_events_times_out_on_a_silent_endless_stream(heartbeat: float | None) -> None:
    closed = threading.Event()

    async def silent() -> AsyncIterator[str]:
        try:
            await asyncio.Event().wait()  # never set
            yield "never"
        finally:
            closed.set()

    async def main() -> None:
        start = time.monotonic()
        with pytest.raises(TimeoutError, match="Fewer than 2 events"):
            await aread_events(to_sse(silent(), heartbeat=heartbeat), 2, timeout=0.3)
        assert time.monotonic() - start < 5.0
        assert closed.is_set()  # the stream and its source were closed on the way out

    asyncio.run(main())


def test_aread_events_times_out_on_a_blocked_sync_source() -> None:
    release = threading.Event()

    def blocked() -> Iterator[str]:
        release.wait(WAIT)
        yield "late"

    async def main() -> None:
        with pytest.raises(TimeoutError):
            await aread_events(to_sse(blocked(), heartbeat=None), 1, timeout=0.2)

    asyncio.run(main())
    release.set()


def test_aread_events_reports_a_stream_that_ends_too_soon() -> None:
    async def main() -> None:
        with pytest.raises(AssertionError, match="ended after 1 of 2"):
            await aread_events(to_sse(["a"]), 2)

    asyncio.run(main())


def test_aread_events_of_plain_async_bytes_and_response_like_objects() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"data: a\n"
        yield b"\ndata: b\n\n"

    async def main() -> None:
        assert [e.data for e in await aread_events(chunks(), 2)] == ["a", "b"]
        response = FakeResponse([b"data: x\n\n"])
        assert [e.data for e in await aread_events(response, 1)] == ["x"]
        with pytest.raises(TypeError):
            await aread_events([b"data: sync\n\n"], 1)

    asyncio.run(main())
