"""`to_sse()` and `SSEStream`: any source of chunks, served as event-stream bytes, sync or async.

`SSEStream` starts its source where it can run without blocking the consumer (`_producers`),
takes chunks from its `Handoff` and feeds them, with the clock, to a `StreamWriter`, which decides
what to write, when, and how the stream ends.  The two drivers here, one for `for` and one for
`async for`, only move chunks and bytes between those two.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import inspect
import math
import queue
import sys
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
)
from typing import TYPE_CHECKING, Any

from ssekit._event import Event
from ssekit._frame import farewell_bytes
from ssekit._handoff import Handoff, HandoffSource, LoopWaiter
from ssekit._options import StreamOptions, StreamOptionsDict
from ssekit._producers import (
    PULL_AHEAD,
    start_for_async_consumer,
    start_for_sync_consumer,
    stop_task,
)
from ssekit._writer import ConsumerClosed, EndRequested, StreamWriter, WriterState

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from typing import Unpack
    else:
        from typing_extensions import Unpack

__all__ = ["PULL_AHEAD", "SSEStream", "Source", "StreamState", "to_sse"]

_DONE = WriterState.DONE

#: What `to_sse()` accepts: an iterable or async iterable of chunks, a `queue.Queue`, a
#: `Channel`, a broker subscription.
Source = Iterable[Any] | AsyncIterable[Any] | HandoffSource | queue.Queue[Any]


class StreamState(enum.Enum):
    """Where an `SSEStream` is in its life as an iterable (its output's is `StreamWriter.state`)."""

    #: Built, not iterated yet.
    IDLE = "idle"
    #: Being iterated.
    STREAMING = "streaming"
    #: Finished or closed; its source has been closed (or is closing, if closed from elsewhere).
    CLOSED = "closed"


class SSEStream:
    """Event-stream bytes from a source: iterate it with `for` (WSGI) or `async for` (ASGI).

    It can be iterated once.  Stopping early (`close()`/`aclose()`, a cancelled task, a server's
    `close()` call) closes the source, so its `finally` blocks run and its thread or loop ends.
    """

    __slots__ = (
        *("__weakref__", "_async_gen", "_handoff", "_live", "_rested_at", "_source"),
        *("_sync_gen", "_task", "_writer", "options", "state"),
    )

    def __init__(self, source: Source, options: StreamOptions) -> None:
        if not isinstance(source, (Iterable, AsyncIterable, HandoffSource, queue.Queue)):
            raise TypeError(
                f"to_sse() needs an iterable or async iterable of chunks, not "
                f"{type(source).__name__}."
            )
        if isinstance(source, (str, bytes, Event)):
            raise TypeError(
                "to_sse() needs an iterable of chunks; wrap a single chunk in a list: [chunk]."
            )
        self._source = source
        self.options = options
        #: One field for the life of the iteration: idle, streaming or closed.
        self.state = StreamState.IDLE
        self._writer = StreamWriter(options)  # the one place that knows how the stream ends
        self._sync_gen: Generator[bytes, None, None] | None = None
        self._async_gen: AsyncGenerator[bytes, None] | None = None
        self._live = False  # a driver has started (or is starting) the source
        self._handoff: Handoff | None = None
        self._task: asyncio.Task[None] | None = None  # an async source's, for `async for`
        #: The loop's time when `async for` last came back from waiting (it let the loop run):
        #: a server adapter counts its busy budget from there.
        self._rested_at = 0.0

    def _start(self) -> None:
        if self.state is not StreamState.IDLE:
            raise RuntimeError(
                "An SSEStream can be iterated only once; call to_sse() again for a new stream."
            )
        self.state = StreamState.STREAMING

    def end_now(self, *, farewell: str | Event | None = None, retry: int | None = None) -> None:
        """Ask the stream to end soon: write what is pending, `farewell`, a `retry:` hint, stop.

        Safe from any thread (a shutdown handler's, say); it does not wait.  The consumer writes
        the ending and closes the source as its next step.
        """
        if retry is not None:
            Event(retry=retry)  # the field's own rule: a non-negative int
        if farewell is not None and not isinstance(farewell, (str, Event)):
            raise TypeError(f"farewell must be a str, an Event or None, not {type(farewell)}.")
        self._writer.request(EndRequested(farewell_bytes(farewell, retry)))
        handoff = self._handoff
        if handoff is not None:
            handoff.nudge()

    def _stop_from_elsewhere(self) -> None:
        """Stop a stream whose consumer is busy elsewhere (another thread, or `async for`).

        Nothing here waits: the writer ends at its next poll, the closed handoff releases the
        producer (a sync source's waits end) and wakes the consumer, an async source's task is
        cancelled; the consumer's own `finally` does the rest.
        """
        self._writer.request(ConsumerClosed())
        handoff = self._handoff
        if handoff is not None:
            handoff.close()
        task = self._task
        if task is not None and not task.done():
            with contextlib.suppress(RuntimeError):  # its loop has closed: it never runs again
                task.get_loop().call_soon_threadsafe(task.cancel)

    # -- sync consumer -------------------------------------------------------------------------

    def __iter__(self) -> Iterator[bytes]:
        self._start()
        self._sync_gen = self._run_sync()
        return self._sync_gen

    def __next__(self) -> bytes:
        if self._sync_gen is None:
            iter(self)
        assert self._sync_gen is not None
        return next(self._sync_gen)

    def close(self) -> None:
        """Stop streaming and close the source, however the stream is being consumed.

        Called where the `for` loop runs (a WSGI server does when the client leaves), it returns
        once the source is closed.  While another thread is inside `next()`, or while an
        `async for` consumes the stream, it cannot wait: it stops the stream at once, releases
        the source and returns; the consumer finishes the closing as it wakes.
        """
        sync_gen = self._sync_gen
        if sync_gen is not None and not _running(sync_gen):
            sync_gen.close()
        elif self._live and self.state is StreamState.STREAMING:
            self._stop_from_elsewhere()
            self.state = StreamState.CLOSED
            return
        if self.state is not StreamState.CLOSED:  # never started its source
            self.state = StreamState.CLOSED
            _close_unstarted(self._source)

    def _run_sync(self) -> Generator[bytes, None, None]:
        self._live = True
        handoff, stop = start_for_sync_consumer(self._source)
        self._handoff = handoff
        writer = self._writer
        try:
            yield writer.opening(time.monotonic())
            while True:
                now = time.monotonic()
                _collect(handoff, writer, now)
                out, wait = writer.poll(now)
                yield from out
                if writer.state is _DONE:
                    return
                if not out:
                    handoff.wait(wait)
        finally:
            self.state = StreamState.CLOSED
            handoff.close()
            stop()

    # -- async consumer ------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[bytes]:
        self._start()
        self._async_gen = self._run_async()
        return self._async_gen

    async def __anext__(self) -> bytes:
        if self._async_gen is None:
            self.__aiter__()
        assert self._async_gen is not None
        return await self._async_gen.__anext__()

    async def aclose(self) -> None:
        """Stop streaming and close the source, however the stream is being consumed.

        Called by the task that runs the `async for` (an ASGI adapter does on disconnect), it
        returns once the source is closed.  While another task or thread is consuming it, it
        stops the stream at once, as `close()` does, without waiting.
        """
        async_gen, sync_gen = self._async_gen, self._sync_gen
        if async_gen is not None and not _running(async_gen):
            await async_gen.aclose()
        elif sync_gen is not None and not _running(sync_gen):
            sync_gen.close()
        elif self._live and self.state is StreamState.STREAMING:
            self._stop_from_elsewhere()
            self.state = StreamState.CLOSED
            return
        if self.state is not StreamState.CLOSED:  # never started its source (not even aiter'd)
            self.state = StreamState.CLOSED
            aclose = getattr(self._source, "aclose", None)
            if callable(aclose) and not isinstance(self._source, HandoffSource):
                await aclose()  # an async source holding resources releases them too
            else:
                _close_unstarted(self._source)

    async def _run_async(self) -> AsyncGenerator[bytes, None]:
        if self.state is StreamState.CLOSED:
            return  # closed by `close()` before the first step: the source was closed then
        handoff, task, loop = self._start_async()
        writer = self._writer
        waiter = LoopWaiter(loop)
        try:
            yield writer.opening(loop.time())
            rested = False
            while True:
                now = loop.time()
                out, wait = self._step(handoff, now, rested)
                for data in out:
                    yield data
                del out  # not kept through the wait
                if writer.state is _DONE:
                    return
                rest = self._rest(handoff, waiter, now, wait)
                rested = rest is not None
                if rest is not None:
                    await rest
        finally:
            await self._end_async(handoff, task, waiter)

    async def _drive_async(self, write: Callable[[bytes, float], Awaitable[object]]) -> None:
        """`async for` + `await write(data, now)`, without an async generator between the two.

        `now` is the loop's time of the step that wrote `data`.

        For a server adapter's pump, which writes every piece: the steps of `_run_async`, one
        generator's resumptions fewer per write.  Closing works as for a stream consumed by
        another task: `aclose()` stops it, the driver's `finally` closes the source.
        """
        self._start()
        if self.state is StreamState.CLOSED:
            return
        handoff, task, loop = self._start_async()
        writer = self._writer
        waiter = LoopWaiter(loop)
        try:
            now = loop.time()
            await write(writer.opening(now), now)
            rested = False
            while True:
                now = loop.time()
                out, wait = self._step(handoff, now, rested)
                for data in out:
                    await write(data, now)
                del out  # not kept through the wait
                if writer.state is _DONE:
                    return
                rest = self._rest(handoff, waiter, now, wait)
                rested = rest is not None
                if rest is not None:
                    await rest
        finally:
            await self._end_async(handoff, task, waiter)

    def _start_async(self) -> tuple[Handoff, asyncio.Task[None] | None, asyncio.AbstractEventLoop]:
        """Start the source for an async consumer: its handoff, its task (if any), the loop."""
        self._live = True
        handoff, task = start_for_async_consumer(self._source)
        self._handoff, self._task = handoff, task
        return handoff, task, asyncio.get_running_loop()

    def _step(self, handoff: Handoff, now: float, rested: bool) -> tuple[list[bytes], float | None]:
        """Take what the source has ready and ask the writer what to write, and how long to wait."""
        if rested:
            self._rested_at = now
        _collect(handoff, self._writer, now)
        return self._writer.poll(now)

    @staticmethod
    def _rest(
        handoff: Handoff, waiter: LoopWaiter, now: float, wait: float | None
    ) -> asyncio.Future[bool] | None:
        """The wait before the next step (a future to await), or None to step again at once.

        Parked straight away, even after writing: whatever would change the next poll (items,
        the source's end, a nudge, a close) ends the wait at once, and the deadline is the
        poll's, however long the writes took.  A plain function, not a coroutine: between two
        deliveries a stream holds its future and nothing else.
        """
        future = handoff.park_async(waiter)
        if future is not None:
            waiter.due_by(math.inf if wait is None else now + wait, now)
        return future

    async def _end_async(
        self, handoff: Handoff, task: asyncio.Task[None] | None, waiter: LoopWaiter
    ) -> None:
        waiter.disarm()
        self.state = StreamState.CLOSED
        handoff.close()
        if task is not None:
            await stop_task(task)


def to_sse(source: Source, **options: Unpack[StreamOptionsDict]) -> SSEStream:
    """Serve `source` as `text/event-stream` bytes.

    `source`: an iterable or async iterable of chunks, a `queue.Queue` (its items, until the
    client leaves), a `Channel` or a broker subscription.  Chunks: an `Event` is sent as is,
    `str` and UTF-8 `bytes` as data, anything else through `serializer` (compact JSON by
    default).  `heartbeat`: seconds of silence before a comment keeps the connection alive
    (None: never).  `flush`: "each" writes every event on its own (lowest latency), "auto"
    writes whatever is ready together (highest throughput), a number of seconds waits up to that
    long to fill a batch.  `retry`: the reconnection delay (ms) sent up front.  `padding`: bytes
    of comment padding for buffering proxies.  `end`: a final event after the source is
    exhausted (e.g. "[DONE]").  `on_error`: the client's message for a source's exception.
    `max_duration`: seconds after which the stream ends with a `retry:` hint.
    """
    return SSEStream(source, StreamOptions(**options) if options else _default_options())


@functools.cache
def _default_options() -> StreamOptions:
    """The options of `to_sse(source)` without any, shared: they are never changed."""
    return StreamOptions()


def _collect(handoff: Handoff, writer: StreamWriter, now: float) -> None:
    """Move what the producer has ready into the writer, and how it ended once it is drained."""
    items = handoff.take()
    if items:
        writer.add(items, now)
    if not handoff.ended:
        return
    if handoff.drained:
        outcome = handoff.outcome
        assert outcome is not None  # set with `finished`, under the same lock
        writer.end(outcome)
    elif handoff.closed:  # the source was dropped from elsewhere (`subscription.close()`)
        writer.end(ConsumerClosed())


def _running(generator: object) -> bool:
    """True while a generator's or async generator's step is under way (elsewhere, then)."""
    return bool(getattr(generator, "gi_running", False) or getattr(generator, "ag_running", False))


def _close_unstarted(source: object) -> None:
    """Close a source that was never iterated, so its resources are released all the same."""
    if isinstance(source, HandoffSource) and source._attached:
        return  # it feeds another stream, which closes it when that stream ends
    close = getattr(source, "close", None)
    if callable(close) and not inspect.iscoroutinefunction(close):
        close()
