"""Stopping early: the source is closed, its `finally` runs, its thread or helper loop ends.

Sources report their cleanup through `threading.Event`s that the tests wait on with a deadline;
thread counts are checked by joining the threads a test started (see `threads_back` in conftest).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import pytest

import ssekit
from ssekit import Channel, ChannelClosed, EventParser, MessageEvent, SSEStream, StreamState, to_sse
from ssekit.broker import MemoryBroker

pytestmark = pytest.mark.timeout(30)

#: Deadline for anything the tests wait for (far more than needed).
WAIT = 10.0


def parse(chunks: list[bytes]) -> list[MessageEvent]:
    parser = EventParser()
    return [event for chunk in chunks for event in parser.feed(chunk)]


class Probe:
    """What a source reports: how far it got and whether its `finally` ran."""

    def __init__(self) -> None:
        self.closed = threading.Event()
        self.produced = 0

    def sync_source(self) -> Iterator[int]:
        try:
            while True:
                yield self.produced
                self.produced += 1
        finally:
            self.closed.set()

    async def async_source(self) -> AsyncIterator[int]:
        try:
            while True:
                yield self.produced
                self.produced += 1
                await asyncio.sleep(0.001)
        finally:
            self.closed.set()


def first_data(chunks: Iterator[bytes]) -> MessageEvent:
    parser = EventParser()
    for chunk in chunks:
        events = parser.feed(chunk)
        if events:
            return events[0]
    raise AssertionError("the stream ended without data")


async def afirst_data(chunks: AsyncIterator[bytes]) -> MessageEvent:
    parser = EventParser()
    async for chunk in chunks:
        events = parser.feed(chunk)
        if events:
            return events[0]
    raise AssertionError("the stream ended without data")


# -- sync consumer ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_close_closes_the_source_and_ends_its_thread(
    kind: str, threads_back: Callable[[], None]
) -> None:
    probe = Probe()
    source = probe.sync_source() if kind == "sync" else probe.async_source()
    stream = to_sse(source, heartbeat=None)
    assert first_data(iter(stream)).data == "0"
    assert stream.state is StreamState.STREAMING
    stream.close()
    assert stream.state is StreamState.CLOSED
    assert probe.closed.wait(WAIT)
    threads_back()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_breaking_out_of_a_for_loop_then_closing(
    kind: str, threads_back: Callable[[], None]
) -> None:
    probe = Probe()
    source = probe.sync_source() if kind == "sync" else probe.async_source()
    stream = to_sse(source, heartbeat=None, flush="each")
    seen = []
    parser = EventParser()
    for chunk in stream:
        seen += parser.feed(chunk)
        if len(seen) >= 5:
            break
    stream.close()
    assert [e.data for e in seen[:5]] == ["0", "1", "2", "3", "4"]
    assert probe.closed.wait(WAIT)
    assert stream.state is StreamState.CLOSED
    threads_back()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_generator_exit_through_the_iterator(kind: str, threads_back: Callable[[], None]) -> None:
    """A WSGI server may close the iterator it got from `iter()` rather than the stream."""
    probe = Probe()
    source = probe.sync_source() if kind == "sync" else probe.async_source()
    stream = to_sse(source, heartbeat=None)
    iterator = iter(stream)
    first_data(iterator)
    iterator.close()  # type: ignore[attr-defined]  # GeneratorExit inside the stream
    assert probe.closed.wait(WAIT)
    assert stream.state is StreamState.CLOSED
    threads_back()


def test_an_async_source_is_closed_before_close_returns() -> None:
    """For a sync consumer, close() waits for the helper loop: the source's finally has run."""
    probe = Probe()
    stream = to_sse(probe.async_source(), heartbeat=None)
    first_data(iter(stream))
    stream.close()
    assert probe.closed.is_set()
    assert not [t for t in threading.enumerate() if t.name == "ssekit-loop"]


def test_a_sync_source_blocked_in_next_is_closed_as_soon_as_next_returns(
    threads_back: Callable[[], None],
) -> None:
    entered = threading.Event()
    release = threading.Event()
    closed = threading.Event()
    went_on = threading.Event()

    def source() -> Iterator[str]:
        try:
            yield "first"
            entered.set()
            release.wait(WAIT)
            yield "second"  # handed to a closed stream: the source is closed right here
            went_on.set()
            yield "third"
        finally:
            closed.set()

    stream = to_sse(source(), heartbeat=None)
    iterator = iter(stream)
    assert first_data(iterator).data == "first"
    assert entered.wait(WAIT)
    stream.close()  # returns at once, though the source is stuck inside next()
    assert stream.state is StreamState.CLOSED
    assert not closed.is_set()  # still blocked: nothing can close it yet
    release.set()
    assert closed.wait(WAIT)
    assert not went_on.is_set()
    threads_back()


def test_a_channel_is_closed_when_its_sync_consumer_leaves() -> None:
    channel = Channel(maxsize=1)
    stream = to_sse(channel, heartbeat=None)
    channel.send("a")
    assert first_data(iter(stream)).data == "a"
    channel.send("b")  # fills the channel
    outcome: list[BaseException] = []
    blocked = threading.Event()

    def producer() -> None:
        blocked.set()
        try:
            channel.send("c")  # blocks: the channel is full
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=producer)
    thread.start()
    assert blocked.wait(WAIT)
    stream.close()
    thread.join(WAIT)
    assert not thread.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], ChannelClosed)
    assert channel.closed
    with pytest.raises(ChannelClosed):
        channel.send("d")


def test_a_source_whose_cleanup_raises_is_still_closed(caplog: pytest.LogCaptureFixture) -> None:
    closing = threading.Event()

    def source() -> Iterator[int]:
        try:
            while True:
                yield 1
        finally:
            closing.set()
            raise RuntimeError("cleanup failed")

    with caplog.at_level(logging.ERROR, logger="ssekit"):
        stream = to_sse(source(), heartbeat=None, flush="each")
        first_data(iter(stream))
        stream.close()
        assert closing.wait(WAIT)
        for thread in threading.enumerate():
            if thread.name == "ssekit-source":
                thread.join(WAIT)
    assert any(r.exc_info and isinstance(r.exc_info[1], RuntimeError) for r in caplog.records), (
        caplog.records
    )


# -- async consumer ------------------------------------------------------------------------------


def run(main: Callable[[], Any]) -> Any:
    return asyncio.run(main())


@pytest.mark.parametrize("kind", ["sync", "async", "channel"])
def test_aclose_closes_the_source(kind: str, threads_back: Callable[[], None]) -> None:
    probe = Probe()
    channel = Channel()

    async def main() -> SSEStream:
        if kind == "channel":
            source: Any = channel
            await channel.asend("0")
        else:
            source = probe.sync_source() if kind == "sync" else probe.async_source()
        stream = to_sse(source, heartbeat=None)
        assert (await afirst_data(aiter(stream))).data == "0"
        await stream.aclose()
        assert stream.state is StreamState.CLOSED
        if kind == "async":
            assert probe.closed.is_set()  # the source's task was awaited
        return stream

    run(main)
    if kind == "channel":
        assert channel.closed
        with pytest.raises(ChannelClosed):
            channel.send("x")
    else:
        assert probe.closed.wait(WAIT)
    threads_back()


@pytest.mark.parametrize("kind", ["sync", "async", "channel"])
def test_cancelling_the_consumer_task_closes_the_source(
    kind: str, threads_back: Callable[[], None]
) -> None:
    probe = Probe()
    channel = Channel()
    release = threading.Event()

    def blocking() -> Iterator[str]:
        try:
            yield "0"
            release.wait(WAIT)
            yield "never"
        finally:
            probe.closed.set()

    async def main() -> None:
        got_one = asyncio.Event()
        if kind == "channel":
            source: Any = channel
            await channel.asend("0")
        else:
            source = blocking() if kind == "sync" else probe.async_source()
        stream = to_sse(source, heartbeat=None)

        async def consumer() -> None:
            async for chunk in stream:
                if parse([chunk]):
                    got_one.set()

        task = asyncio.create_task(consumer())
        await asyncio.wait_for(got_one.wait(), WAIT)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert stream.state is StreamState.CLOSED
        if kind == "async":
            assert probe.closed.is_set()

    run(main)
    release.set()
    if kind == "channel":
        assert channel.closed
    else:
        assert probe.closed.wait(WAIT)
    threads_back()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_break_then_aclose_and_generator_exit(kind: str) -> None:
    probes = [Probe(), Probe()]

    async def main() -> None:
        def source(probe: Probe) -> Any:
            return probe.sync_source() if kind == "sync" else probe.async_source()

        stream = to_sse(source(probes[0]), heartbeat=None)
        async for chunk in stream:
            if parse([chunk]):
                break
        await stream.aclose()
        assert stream.state is StreamState.CLOSED

        stream = to_sse(source(probes[1]), heartbeat=None)
        iterator = aiter(stream)
        await afirst_data(iterator)
        await iterator.aclose()  # type: ignore[attr-defined]  # GeneratorExit inside the stream
        assert stream.state is StreamState.CLOSED

    run(main)
    assert all(probe.closed.wait(WAIT) for probe in probes)


def test_an_async_source_awaiting_forever_is_cancelled_on_aclose() -> None:
    closed = threading.Event()
    cancelled = threading.Event()

    async def source() -> AsyncIterator[str]:
        try:
            yield "first"
            await asyncio.Event().wait()  # never set
            yield "never"
        except asyncio.CancelledError:
            cancelled.set()
            raise
        finally:
            closed.set()

    async def main() -> None:
        stream = to_sse(source(), heartbeat=None)
        iterator = aiter(stream)
        assert (await afirst_data(iterator)).data == "first"
        await stream.aclose()
        assert closed.is_set()
        assert cancelled.is_set()

    run(main)


def test_a_sync_source_blocked_in_next_under_an_async_consumer() -> None:
    release = threading.Event()
    closed = threading.Event()
    went_on = threading.Event()

    def source() -> Iterator[str]:
        try:
            yield "first"
            release.wait(WAIT)
            yield "second"
            went_on.set()
        finally:
            closed.set()

    async def main() -> None:
        stream = to_sse(source(), heartbeat=None)
        await afirst_data(aiter(stream))
        await stream.aclose()  # does not wait for the blocked thread
        assert not closed.is_set()

    run(main)
    release.set()
    assert closed.wait(WAIT)
    assert not went_on.is_set()


def test_a_timeout_around_reading_closes_the_source() -> None:
    probe = Probe()
    release = threading.Event()

    def source() -> Iterator[str]:
        try:
            release.wait(WAIT)
            yield "late"
        finally:
            probe.closed.set()

    async def main() -> None:
        stream = to_sse(source(), heartbeat=None)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(afirst_data(aiter(stream)), 0.05)
        assert stream.state is StreamState.CLOSED

    run(main)
    release.set()
    assert probe.closed.wait(WAIT)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_an_anyio_cancel_scope_closes_the_source(
    kind: str, threads_back: Callable[[], None]
) -> None:
    probe = Probe()

    async def main() -> None:
        source_done = asyncio.Event()

        async def async_source() -> AsyncIterator[int]:
            try:
                async for i in probe.async_source():
                    yield i
            finally:
                source_done.set()

        source = probe.sync_source() if kind == "sync" else async_source()
        stream = to_sse(source, heartbeat=None)
        with anyio.CancelScope() as scope:
            async for chunk in stream:
                if parse([chunk]):
                    scope.cancel()
        await stream.aclose()
        assert stream.state is StreamState.CLOSED
        if kind == "async":
            # Cancelled by scope, the stream may not wait for its source's task; the task still
            # ends on this loop, without the loop having to shut down first.
            with anyio.fail_after(WAIT):
                await source_done.wait()

    anyio.run(main)
    assert probe.closed.wait(WAIT)
    threads_back()


# -- state and reuse -----------------------------------------------------------------------------


def test_state_goes_idle_streaming_closed_sync() -> None:
    stream = to_sse(["a", "b"], heartbeat=None)
    assert stream.state is StreamState.IDLE
    iterator = iter(stream)
    assert stream.state is StreamState.STREAMING
    chunks = [next(iterator)]
    assert stream.state is StreamState.STREAMING
    chunks += list(iterator)
    assert stream.state is StreamState.CLOSED
    assert [e.data for e in parse(chunks)] == ["a", "b"]


def test_state_goes_idle_streaming_closed_async() -> None:
    async def source() -> AsyncIterator[str]:
        yield "a"

    async def main() -> None:
        stream = to_sse(source(), heartbeat=None)
        assert stream.state is StreamState.IDLE
        iterator = aiter(stream)
        assert stream.state is StreamState.STREAMING
        await anext(iterator)
        assert stream.state is StreamState.STREAMING
        rest = [chunk async for chunk in iterator]
        assert stream.state is StreamState.CLOSED
        assert [e.data for e in parse(rest)] == ["a"]

    run(main)


def test_next_on_the_stream_itself() -> None:
    stream = to_sse(["a"], heartbeat=None)
    assert stream.state is StreamState.IDLE
    assert parse([next(stream)]) == []  # the opening
    assert stream.state is StreamState.STREAMING
    assert [e.data for e in parse([next(stream)])] == ["a"]
    with pytest.raises(StopIteration):
        next(stream)
    assert stream.state is StreamState.CLOSED


def test_anext_on_the_stream_itself() -> None:
    async def main() -> None:
        stream = to_sse(["a"], heartbeat=None)
        assert parse([await anext(stream)]) == []
        assert [e.data for e in parse([await anext(stream)])] == ["a"]
        with pytest.raises(StopAsyncIteration):
            await anext(stream)
        assert stream.state is StreamState.CLOSED

    run(main)


@pytest.mark.parametrize(
    ("first", "second"),
    [("sync", "sync"), ("sync", "async"), ("async", "sync"), ("async", "async")],
)
def test_iterating_twice_raises(first: str, second: str) -> None:
    stream = to_sse(["a"], heartbeat=None)

    async def drain() -> None:
        async for _ in stream:
            pass

    if first == "sync":
        list(stream)
    else:
        run(drain)
    again: Callable[[], object] = (
        (lambda: iter(stream)) if second == "sync" else (lambda: aiter(stream))
    )
    with pytest.raises(RuntimeError, match="once"):
        again()


def test_iterating_while_streaming_raises() -> None:
    stream = to_sse(["a"], heartbeat=None)
    iterator = iter(stream)
    next(iterator)
    with pytest.raises(RuntimeError, match="once"):
        iter(stream)
    stream.close()


class ClosableSource:
    def __init__(self) -> None:
        self.closed = 0

    def __iter__(self) -> Iterator[str]:
        return iter(["a"])

    def close(self) -> None:
        self.closed += 1


def test_closing_an_unstarted_stream_closes_its_source() -> None:
    source = ClosableSource()
    stream = to_sse(source)
    stream.close()
    assert stream.state is StreamState.CLOSED
    assert source.closed == 1
    with pytest.raises(RuntimeError):
        iter(stream)

    channel = Channel()
    to_sse(channel).close()
    assert channel.closed
    with pytest.raises(ChannelClosed):
        channel.send("x")

    async def main() -> None:
        source = ClosableSource()
        stream = to_sse(source)
        await stream.aclose()
        assert stream.state is StreamState.CLOSED
        assert source.closed == 1

    run(main)


def test_closing_right_after_iter_closes_the_source() -> None:
    """`iter()` was called but nothing read yet: the source must still be closed."""
    source = ClosableSource()
    stream = to_sse(source)
    iter(stream)
    stream.close()
    assert stream.state is StreamState.CLOSED
    assert source.closed == 1

    channel = Channel()
    stream = to_sse(channel)

    async def main() -> None:
        aiter(stream)
        await stream.aclose()

    run(main)
    assert stream.state is StreamState.CLOSED
    assert channel.closed


def test_close_is_idempotent() -> None:
    probe = Probe()
    stream = to_sse(probe.sync_source(), heartbeat=None)
    first_data(iter(stream))
    stream.close()
    stream.close()
    assert probe.closed.wait(WAIT)

    async def main() -> None:
        stream = to_sse(["a"])
        _ = [chunk async for chunk in stream]
        await stream.aclose()
        await stream.aclose()
        assert stream.state is StreamState.CLOSED

    run(main)


def test_finished_streams_leave_no_threads(threads_back: Callable[[], None]) -> None:
    async def agen() -> AsyncIterator[int]:
        for i in range(3):
            yield i

    async def main() -> None:
        for source in ([1, 2], iter([1, 2]), agen()):
            _ = [chunk async for chunk in to_sse(source)]

    for _ in range(5):
        list(to_sse([1, 2]))
        list(to_sse(agen()))
        run(main)
    threads_back()


class _AsyncResource:
    """An async iterator holding a resource that only `aclose()` releases."""

    def __init__(self) -> None:
        self.closed = False

    def __aiter__(self) -> _AsyncResource:
        return self

    async def __anext__(self) -> str:
        return "chunk"

    async def aclose(self) -> None:
        self.closed = True


def test_aclose_before_iterating_awaits_the_async_sources_aclose() -> None:
    """A stream never iterated (a HEAD request) still releases an async source's resources."""
    source = _AsyncResource()

    async def main() -> None:
        await to_sse(source).aclose()

    asyncio.run(main())
    assert source.closed


def test_stream_closed_right_after_opening_closes_the_async_source() -> None:
    """Closing after the preamble, before the producer task ran, still closes the source."""
    source = _AsyncResource()

    async def main() -> None:
        iterator = to_sse(source, heartbeat=None).__aiter__()
        assert (await iterator.__anext__()).startswith(b": ok")
        await iterator.aclose()  # type: ignore[attr-defined]

    asyncio.run(main())
    assert source.closed


# -- close() and aclose(), whichever way the stream is consumed ----------------------------------


def waiting_source(kind: str, closed: threading.Event) -> Any:
    """A source that yields "0" and then waits until its stream closes, reporting its `finally`."""

    def sync_source() -> Iterator[str]:
        try:
            yield "0"
            ssekit.sleep(3600)  # ends at once when the stream closes
        finally:
            closed.set()

    async def async_source() -> AsyncIterator[str]:
        try:
            yield "0"
            await asyncio.sleep(3600)
        finally:
            closed.set()

    return sync_source() if kind == "sync" else async_source()


@pytest.mark.parametrize("kind", ["sync", "async", "channel"])
def test_close_stops_an_async_for_under_way_and_closes_the_source(
    kind: str, threads_back: Callable[[], None]
) -> None:
    """`close()` (not `aclose()`) while another task is inside `async for`: both end promptly."""
    closed = threading.Event()
    channel = Channel()

    async def main() -> None:
        if kind == "channel":
            source: Any = channel
            await channel.asend("0")
        else:
            source = waiting_source(kind, closed)
        stream = to_sse(source, heartbeat=None)
        got_one = asyncio.Event()
        seen: list[MessageEvent] = []

        async def consumer() -> None:
            async for chunk in stream:
                seen.extend(parse([chunk]))
                if seen:
                    got_one.set()

        task = asyncio.create_task(consumer())
        await asyncio.wait_for(got_one.wait(), WAIT)
        stream.close()  # the consumer is parked inside `async for`
        assert stream.state is StreamState.CLOSED
        await asyncio.wait_for(task, WAIT)  # its loop ended by itself, without an error
        assert [e.data for e in seen] == ["0"]  # nothing written after the close
        if kind == "async":
            assert closed.is_set()  # the consumer's `finally` awaited the source's task

    run(main)
    if kind == "channel":
        assert channel.closed
        with pytest.raises(ChannelClosed):
            channel.send("x")
    else:
        assert closed.wait(WAIT)
    threads_back()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_close_between_async_steps_closes_the_source_without_another_step(
    kind: str, threads_back: Callable[[], None]
) -> None:
    """The consuming task calls the sync `close()` and never iterates again: still closed."""
    closed = threading.Event()

    async def main() -> None:
        stream = to_sse(waiting_source(kind, closed), heartbeat=None)
        iterator = aiter(stream)
        assert (await afirst_data(iterator)).data == "0"
        stream.close()
        assert stream.state is StreamState.CLOSED
        with anyio.fail_after(WAIT):
            while not closed.is_set():  # an async source's task is cancelled on this loop
                await asyncio.sleep(0.005)
        with pytest.raises(StopAsyncIteration):  # a later step ends, writing nothing
            await anext(iterator)

    run(main)
    assert closed.wait(WAIT)
    threads_back()


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("closer", ["close", "aclose"])
def test_closing_from_another_thread_stops_a_for_loop_under_way(
    kind: str, closer: str, threads_back: Callable[[], None]
) -> None:
    """A thread is blocked inside `next()`; `close()`/`aclose()` elsewhere ends its loop."""
    closed = threading.Event()
    stream = to_sse(waiting_source(kind, closed), heartbeat=None)
    got_one = threading.Event()
    seen: list[MessageEvent] = []
    errors: list[BaseException] = []

    def consume() -> None:
        try:
            for chunk in stream:
                seen.extend(parse([chunk]))
                if seen:
                    got_one.set()
        except BaseException as exc:
            errors.append(exc)

    consumer = threading.Thread(target=consume)
    consumer.start()
    assert got_one.wait(WAIT)
    if closer == "close":
        stream.close()
    else:
        run(stream.aclose)
    consumer.join(WAIT)
    assert not consumer.is_alive()
    assert errors == []
    assert [e.data for e in seen] == ["0"]
    assert stream.state is StreamState.CLOSED
    assert closed.wait(WAIT)
    threads_back()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_aclose_on_a_stream_consumed_with_for_on_the_same_thread(kind: str) -> None:
    """`for` consumer between steps, `aclose()` from a loop on the same thread: closed at once."""
    closed = threading.Event()
    stream = to_sse(waiting_source(kind, closed), heartbeat=None)
    assert first_data(iter(stream)).data == "0"
    run(stream.aclose)
    assert stream.state is StreamState.CLOSED
    assert closed.wait(WAIT)
    with pytest.raises(StopIteration):
        next(stream)


def test_close_before_the_first_async_step_closes_the_source() -> None:
    source = ClosableSource()
    stream = to_sse(source)

    async def main() -> None:
        iterator = aiter(stream)
        stream.close()  # nothing started yet: the source is closed here and never started
        assert source.closed == 1
        with pytest.raises(StopAsyncIteration):
            await anext(iterator)

    run(main)
    assert stream.state is StreamState.CLOSED
    assert source.closed == 1


def test_a_subscription_closed_from_another_thread_ends_its_sync_stream() -> None:
    """`subscription.close()` drops the source from elsewhere: the stream consumed with `for`
    (blocked waiting, no heartbeat) ends at once instead of waking and waiting again."""
    subscription = MemoryBroker().subscribe("topic")
    stream = to_sse(subscription, heartbeat=None)
    chunks = iter(stream)
    assert next(chunks) == b": ok\n\n"
    done = threading.Event()

    def consume() -> None:
        for _ in chunks:
            pass
        done.set()

    consumer = threading.Thread(target=consume)
    consumer.start()
    subscription.close()
    assert done.wait(5), "the stream went on after its subscription was closed"
    consumer.join(5)
    assert stream.state is StreamState.CLOSED


def test_a_subscription_closed_from_elsewhere_ends_its_async_stream() -> None:
    """The same for `async for`: the consumer task finishes instead of spinning."""

    async def run() -> list[bytes]:
        subscription = MemoryBroker().subscribe("topic")
        stream = to_sse(subscription, heartbeat=None)
        chunks = stream.__aiter__()
        first = await chunks.__anext__()
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, subscription.close)
        rest = [chunk async for chunk in chunks]
        return [first, *rest]

    assert asyncio.run(asyncio.wait_for(run(), 5)) == [b": ok\n\n"]
