"""Sync sources and their threads: waits that end with the stream, and the lingering count.

A sync source runs in a thread of its own, and a thread cannot be interrupted.  A source that waits
with `ssekit.sleep`/`ssekit.get_item` (or is a `queue.Queue` or a `Channel`) gives its thread back
as soon as its stream closes; one blocked elsewhere is counted by `ssekit.lingering_threads()`.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import ssekit
from ssekit import ChannelClosed, EventParser, MessageEvent, StreamRegistry, _producers, to_sse

pytestmark = pytest.mark.timeout(60)

#: Deadline for anything the tests wait for (far more than needed).
WAIT = 10.0
#: The issue's bound: threads back to the baseline this long after the last client left.
THREADS_BACK_WITHIN = 2.0
CYCLES = 1000


def parse(chunks: list[bytes]) -> list[MessageEvent]:
    parser = EventParser()
    return [event for chunk in chunks for event in parser.feed(chunk)]


def first_data(chunks: Iterator[bytes]) -> str:
    parser = EventParser()
    for chunk in chunks:
        events = parser.feed(chunk)
        if events:
            return events[0].data
    raise AssertionError("the stream ended without data")


def wait_for(condition: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return condition()
        time.sleep(0.005)
    return True


# -- the waits themselves --------------------------------------------------------------------------


def test_outside_a_stream_they_are_the_plain_waits() -> None:
    ssekit.sleep(0)
    with pytest.raises(ValueError, match="non-negative"):
        ssekit.sleep(-1)
    jobs: queue.Queue[str] = queue.Queue()
    jobs.put("a")
    assert ssekit.get_item(jobs) == "a"
    with pytest.raises(queue.Empty):
        ssekit.get_item(jobs, timeout=0.01)


def test_get_item_inside_a_stream_gets_items_and_times_out_like_get() -> None:
    jobs: queue.Queue[str] = queue.Queue()

    def source() -> Iterator[str]:
        try:
            ssekit.get_item(jobs, timeout=0.01)
        except queue.Empty:
            yield "(nothing yet)"
        jobs.put("job")
        yield ssekit.get_item(jobs, timeout=WAIT)

    stream = to_sse(source(), heartbeat=None, flush="each")
    chunks = iter(stream)
    parser = EventParser()
    seen: list[str] = []
    while len(seen) < 2:
        seen += [e.data for e in parser.feed(next(chunks))]
    stream.close()
    assert seen[:2] == ["(nothing yet)", "job"]


@pytest.mark.parametrize("wait", ["sleep", "get_item"])
@pytest.mark.parametrize("consumer", ["sync", "async"])
def test_a_waiting_source_ends_as_soon_as_its_stream_closes(
    wait: str, consumer: str, threads_back: Callable[[], None]
) -> None:
    closed = threading.Event()
    outcome: list[BaseException] = []
    never: queue.Queue[str] = queue.Queue()

    def source() -> Iterator[str]:
        try:
            yield "first"
            if wait == "sleep":
                ssekit.sleep(3600)
            else:
                ssekit.get_item(never)
        except BaseException as exc:
            outcome.append(exc)
            raise
        finally:
            closed.set()

    stream = to_sse(source(), heartbeat=3600)
    if consumer == "sync":
        assert first_data(iter(stream)) == "first"
        stream.close()
    else:

        async def main() -> None:
            parser = EventParser()
            async for chunk in stream:
                if parser.feed(chunk):
                    break
            await stream.aclose()

        asyncio.run(main())
    assert closed.wait(WAIT)
    assert len(outcome) == 1
    assert isinstance(outcome[0], ChannelClosed)
    threads_back()


@pytest.mark.parametrize("consumer", ["sync", "async"])
def test_a_queue_is_a_source(consumer: str, threads_back: Callable[[], None]) -> None:
    jobs: queue.Queue[Any] = queue.Queue()
    for item in ["a", {"b": 1}]:
        jobs.put(item)
    stream = to_sse(jobs, heartbeat=None, flush="each")
    seen: list[str] = []
    if consumer == "sync":
        parser = EventParser()
        for chunk in stream:
            seen += [e.data for e in parser.feed(chunk)]
            if len(seen) == 2:
                jobs.put("c")  # arrives while the stream waits on the queue
            if len(seen) == 3:
                break
        stream.close()
    else:

        async def main() -> None:
            parser = EventParser()
            async for chunk in stream:
                seen.extend(e.data for e in parser.feed(chunk))
                if len(seen) == 2:
                    jobs.put("c")
                if len(seen) == 3:
                    break
            await stream.aclose()

        asyncio.run(main())
    assert seen == ["a", '{"b":1}', "c"]
    threads_back()
    jobs.put("after")  # the queue is the app's: it stays usable, the item stays for others
    assert jobs.get_nowait() == "after"


def test_max_duration_releases_a_waiting_source(threads_back: Callable[[], None]) -> None:
    closed = threading.Event()
    never: queue.Queue[str] = queue.Queue()

    def source() -> Iterator[str]:
        try:
            yield "first"
            while True:
                yield ssekit.get_item(never)
        finally:
            closed.set()

    chunks = list(to_sse(source(), heartbeat=None, max_duration=0.05))
    assert chunks[-1] == b"retry: 1000\n\n"
    assert closed.wait(WAIT)
    threads_back()


# -- connect/disconnect churn ----------------------------------------------------------------------


def settle(baseline: int) -> int:
    """The thread count once it is back within 2 of `baseline`, or after the bound passed."""
    wait_for(lambda: threading.active_count() <= baseline + 2, THREADS_BACK_WITHIN)
    return threading.active_count()


def test_a_thousand_sync_clients_come_and_go_and_leave_no_thread(
    threads_back: Callable[[], None],
) -> None:
    jobs: queue.Queue[str] = queue.Queue()

    def source() -> Iterator[str]:  # the usual "wait for the next item" source
        yield "hello"
        while True:
            yield ssekit.get_item(jobs)

    baseline = threading.active_count()
    lingering = ssekit.lingering_threads()
    for _ in range(CYCLES):
        stream = to_sse(source(), heartbeat=15)
        assert first_data(iter(stream)) == "hello"
        stream.close()
    assert settle(baseline) <= baseline + 2
    assert wait_for(lambda: ssekit.lingering_threads() <= lingering, THREADS_BACK_WITHIN)
    threads_back()


def test_a_thousand_async_clients_of_sync_sources_come_and_go_and_leave_no_thread(
    threads_back: Callable[[], None],
) -> None:
    def ticks() -> Iterator[int]:
        n = 0
        while True:
            yield n
            n += 1
            ssekit.sleep(1.0)

    async def main() -> None:
        for i in range(CYCLES):
            stream = to_sse(queue.Queue() if i % 2 else ticks(), heartbeat=15)
            if i % 2:
                assert parse([await anext(stream)]) == []  # the opening, then leave
            else:
                parser = EventParser()
                async for chunk in stream:
                    if parser.feed(chunk):
                        break
            await stream.aclose()

    baseline = threading.active_count()
    asyncio.run(main())
    assert settle(baseline) <= baseline + 2
    threads_back()


# -- sources blocked elsewhere: counted ------------------------------------------------------------


def stuck_source(release: threading.Event, entered: threading.Event) -> Iterator[str]:
    yield "first"
    entered.set()
    release.wait()  # arbitrary blocking code: nothing can interrupt it


def test_a_blocked_source_is_counted_until_it_returns(threads_back: Callable[[], None]) -> None:
    release = threading.Event()
    entered = threading.Event()
    registry = StreamRegistry()
    before = ssekit.lingering_threads()
    stream = to_sse(stuck_source(release, entered), heartbeat=None)
    try:
        assert first_data(iter(stream)) == "first"
        assert entered.wait(WAIT)
        assert ssekit.lingering_threads() == before  # its stream is open: not lingering
        stream.close()
        assert ssekit.lingering_threads() == before + 1
        assert registry.lingering_threads == before + 1
    finally:
        release.set()
    assert wait_for(lambda: ssekit.lingering_threads() == before)
    threads_back()


def test_one_warning_when_lingering_threads_pass_the_bound(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    threads_back: Callable[[], None],
) -> None:
    before = ssekit.lingering_threads()
    monkeypatch.setattr(_producers, "LINGERING_WARN_AT", before + 2)
    monkeypatch.setattr(_producers, "_warned", threading.Event())  # not yet warned
    release = threading.Event()
    try:
        with caplog.at_level(logging.WARNING, logger="ssekit"):
            for _ in range(5):
                entered = threading.Event()
                stream = to_sse(stuck_source(release, entered), heartbeat=None)
                first_data(iter(stream))
                assert entered.wait(WAIT)
                stream.close()
        warnings = [r for r in caplog.records if "still running after" in r.getMessage()]
        assert len(warnings) == 1
        assert f"{before + 3} sync sources" in warnings[0].getMessage()  # as it passed the bound
    finally:
        release.set()
    assert wait_for(lambda: ssekit.lingering_threads() == before)
    threads_back()
