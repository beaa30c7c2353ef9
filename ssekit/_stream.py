"""`to_sse()` and `SSEStream`: any source of chunks, served as event-stream bytes, sync or async.

A source runs where it can run without blocking the consumer: an async source on the consumer's
loop (or, for a sync consumer, on a helper loop in a thread of its own), a sync source in a worker
thread of its own.  It hands chunks over through a bounded `Handoff`; the consumer side feeds them
to a `StreamWriter`, which decides what to write and when.  A dedicated thread per sync stream,
rather than a pool, because streams are long-lived: a pool (asyncio's default executor holds
min(32, CPUs + 4) threads, anyio's limiter 40) would stall every stream past its size.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import inspect
import logging
import sys
import threading
import time
import traceback
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Iterator,
)
from typing import TYPE_CHECKING, Any

from ssekit._errors import ChannelClosed
from ssekit._event import Event
from ssekit._handoff import Handoff, HandoffSource
from ssekit._options import StreamOptions, StreamOptionsDict
from ssekit._writer import StreamWriter, opening_bytes

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from typing import Unpack
    else:
        from typing_extensions import Unpack

__all__ = ["SSEStream", "Source", "StreamState", "to_sse"]

#: What `to_sse()` accepts: an iterable or async iterable of chunks, a `Channel`, a subscription.
Source = Iterable[Any] | AsyncIterable[Any] | HandoffSource

logger = logging.getLogger("ssekit")

#: How many chunks a source may run ahead of the consumer.
PULL_AHEAD = 1024
#: How many chunks an async source hands over at once when it yields without pausing.
ASYNC_BATCH = 64
#: How long closing a stream waits for an async source's task or helper loop to finish.
PRODUCER_CLOSE_SECONDS = 5.0


class StreamState(enum.Enum):
    """Where an `SSEStream` is in its life."""

    #: Built, not iterated yet.
    IDLE = "idle"
    #: Being iterated.
    STREAMING = "streaming"
    #: Finished or closed; its source has been closed.
    CLOSED = "closed"


class SSEStream:
    """Event-stream bytes from a source: iterate it with `for` (WSGI) or `async for` (ASGI).

    It can be iterated once.  Stopping early (`close()`/`aclose()`, a cancelled task, a server's
    `close()` call) closes the source, so its `finally` blocks run and its thread or loop ends.
    """

    def __init__(self, source: Source, options: StreamOptions) -> None:
        if not isinstance(source, (Iterable, AsyncIterable, HandoffSource)):
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
        #: One field for the whole life cycle: idle, streaming or closed.
        self.state = StreamState.IDLE
        self._sync_gen: Generator[bytes, None, None] | None = None
        self._async_gen: AsyncGenerator[bytes, None] | None = None
        self._handoff: Handoff | None = None
        self._farewell: bytes | None = None  # set by end_now(), from any thread

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
        parts = [] if farewell is None else [_ending_event(farewell).encode()]
        if retry is not None:
            parts.append(Event(retry=retry).encode())
        self._farewell = b"".join(parts)
        handoff = self._handoff
        if handoff is not None:
            handoff.nudge()

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
        """Stop streaming and close the source (WSGI servers call this when the client leaves)."""
        if self._sync_gen is not None:
            self._sync_gen.close()
        elif self._async_gen is not None:
            return
        if self.state is not StreamState.CLOSED:  # never started its source (not even iter'd)
            self.state = StreamState.CLOSED
            _close_unstarted(self._source)

    def _run_sync(self) -> Generator[bytes, None, None]:
        handoff, stop = self._start_producer_for_sync()
        self._handoff = handoff
        writer = StreamWriter(self.options, time.monotonic())
        try:
            yield opening_bytes(self.options)
            while True:
                now = time.monotonic()
                _collect(handoff, writer, now)
                if self._farewell is not None:
                    writer.interrupt(self._farewell)
                out, wait = writer.poll(now)
                yield from out
                if writer.done:
                    return
                if not out:
                    handoff.wait(wait)
        finally:
            self.state = StreamState.CLOSED
            handoff.close()
            stop()

    def _start_producer_for_sync(self) -> tuple[Handoff, Callable[[], None]]:
        """Start the source for a sync consumer; return its handoff and how to stop it."""
        source = self._source
        if isinstance(source, HandoffSource):
            return source._attach(), _noop
        handoff = Handoff(PULL_AHEAD)
        if isinstance(source, AsyncIterable) and not isinstance(source, Iterable):
            if _threads_are_greenlets():
                return handoff, _SharedLoop.start(source, handoff)
            return handoff, _start_helper_loop(source, handoff)
        _start_worker_thread(source, handoff)
        return handoff, _noop

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
        """Stop streaming and close the source (ASGI adapters call this on disconnect)."""
        if self._async_gen is not None:
            await self._async_gen.aclose()
        elif self._sync_gen is not None:
            self._sync_gen.close()
        if self.state is not StreamState.CLOSED:  # never started its source (not even aiter'd)
            self.state = StreamState.CLOSED
            aclose = getattr(self._source, "aclose", None)
            if callable(aclose) and not isinstance(self._source, HandoffSource):
                await aclose()  # an async source holding resources releases them too
            else:
                _close_unstarted(self._source)

    async def _run_async(self) -> AsyncGenerator[bytes, None]:
        handoff, producer = self._start_producer_for_async()
        self._handoff = handoff
        loop = asyncio.get_running_loop()
        writer = StreamWriter(self.options, loop.time())
        try:
            yield opening_bytes(self.options)
            while True:
                now = loop.time()
                _collect(handoff, writer, now)
                if self._farewell is not None:
                    writer.interrupt(self._farewell)
                out, wait = writer.poll(now)
                for data in out:
                    yield data
                if writer.done:
                    return
                if not out:
                    await handoff.wait_async(wait)
        finally:
            self.state = StreamState.CLOSED
            handoff.close()
            if producer is not None:
                if not producer.done():
                    # Let a task that has not run yet start, so that its source is opened and
                    # then closed (a task cancelled before it starts never runs its finally).
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.sleep(0)
                producer.cancel()
                # Cancelled again while closing (anyio cancels by scope)? The task ends anyway.
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait((producer,), timeout=PRODUCER_CLOSE_SECONDS)

    def _start_producer_for_async(self) -> tuple[Handoff, asyncio.Task[None] | None]:
        """Start the source for an async consumer; return its handoff and its task, if any."""
        source = self._source
        if isinstance(source, HandoffSource):
            return source._attach(), None
        handoff = Handoff(PULL_AHEAD)
        if isinstance(source, AsyncIterable):
            task = asyncio.get_running_loop().create_task(_pump_async(source, handoff))
            return handoff, task
        _start_worker_thread(source, handoff)
        return handoff, None


def to_sse(source: Source, **options: Unpack[StreamOptionsDict]) -> SSEStream:
    """Serve `source` as `text/event-stream` bytes.

    Chunks: an `Event` is sent as is, `str` and UTF-8 `bytes` as data, anything else through
    `serializer` (compact JSON by default).  `heartbeat`: seconds of silence before a comment keeps
    the connection alive (None: never).  `flush`: "each" writes every event on its own (lowest
    latency), "auto" writes whatever is ready together (highest throughput), a number of seconds
    waits up to that long to fill a batch.  `retry`: the reconnection delay (ms) sent up front.
    `padding`: bytes of comment padding for buffering proxies.  `end`: a final event after the
    source is exhausted (e.g. "[DONE]").  `on_error`: the client's message for a source's
    exception.  `max_duration`: seconds after which the stream ends with a `retry:` hint.
    """
    return SSEStream(source, StreamOptions(**options))


def _ending_event(value: str | Event) -> Event:
    return value if isinstance(value, Event) else Event(value)


def _collect(handoff: Handoff, writer: StreamWriter, now: float) -> None:
    """Move what the producer has ready into the writer, and its ending once it is drained."""
    items = handoff.take()
    if items:
        writer.add(items, now)
    if handoff.drained:
        if handoff.error is not None:
            writer.fail(handoff.error)
        elif handoff.ending is not None:
            writer.interrupt(handoff.ending)
        else:
            writer.finish()


def _noop() -> None:
    pass


def _close_unstarted(source: object) -> None:
    """Close a source that was never iterated, so its resources are released all the same."""
    if isinstance(source, HandoffSource) and source._attached:
        return  # it feeds another stream, which closes it when that stream ends
    close = getattr(source, "close", None)
    if callable(close) and not inspect.iscoroutinefunction(close):
        close()


# -- producers ---------------------------------------------------------------------------------


def _pump_sync(source: Iterable[Any], handoff: Handoff) -> None:
    """Worker thread body: pull chunks ahead of the consumer until done or told to stop."""
    iterator: Iterator[Any] | None = None
    try:
        iterator = iter(source)  # inside the try: a source failing to start is a failed source
        for chunk in iterator:
            handoff.put(chunk)
    except ChannelClosed:
        pass  # the consumer left
    except Exception as exc:
        handoff.finish(exc)
    except BaseException as exc:  # e.g. SystemExit in the source: reported like an error
        handoff.finish(exc)
    else:
        handoff.finish()
    finally:
        close = getattr(iterator, "close", None)
        if callable(close):
            try:
                close()
            except Exception:
                logger.exception("ssekit: closing the stream's source failed")


def _start_worker_thread(source: Iterable[Any], handoff: Handoff) -> None:
    context = contextvars.copy_context()  # e.g. Flask's request context travels with the source
    thread = threading.Thread(
        target=context.run, args=(_pump_sync, source, handoff), name="ssekit-source", daemon=True
    )
    thread.start()


async def _pump_async(source: AsyncIterable[Any], handoff: Handoff) -> None:
    """Task body: pull chunks from an async source until done, told to stop, or cancelled.

    Chunks are handed over in batches: up to `ASYNC_BATCH` at once while the source yields
    without pausing, and whatever is pending as soon as it pauses (a `call_soon` callback runs
    exactly then), so a fast source pays no lock per chunk and a slow one delays nothing.
    """
    iterator: AsyncIterator[Any] | None = None
    loop = asyncio.get_running_loop()
    batch: list[Any] = []
    scheduled = False

    def hand_over() -> None:
        nonlocal batch
        if batch:
            ready, batch = batch, []
            handoff.put_batch(ready)

    def hand_over_on_pause() -> None:
        nonlocal scheduled
        scheduled = False
        with contextlib.suppress(ChannelClosed):  # the producer will learn it on its own
            hand_over()

    try:
        iterator = aiter(source)  # inside the try: a source failing to start is a failed source
        async for chunk in iterator:
            batch.append(chunk)
            if not scheduled:
                scheduled = True
                loop.call_soon(hand_over_on_pause)
            if len(batch) >= ASYNC_BATCH:
                hand_over()
            # Checked for every chunk: a source that pauses between chunks has them handed over
            # on each pause, never in a full batch, and must be held back all the same.
            if handoff.full:
                await handoff.wait_for_room()
        hand_over()
    except ChannelClosed:
        pass
    except asyncio.CancelledError as exc:
        # The cancelled task keeps this traceback in a reference cycle, and with it the frames
        # of a source the cancellation ended: a wrapper that does not close the iterator it
        # wraps (FastAPI's, around a generator endpoint) would leave that one alive, unclosed,
        # until the cyclic GC ran.  Cleared, the wrapped iterator is finalized at once.
        traceback.clear_frames(exc.__traceback__)
        raise
    except Exception as exc:
        with contextlib.suppress(ChannelClosed):
            hand_over()  # what the source yielded before it failed still goes out
        handoff.finish(exc)
    else:
        handoff.finish()
    finally:
        aclose = getattr(iterator, "aclose", None)
        if callable(aclose):
            try:
                await aclose()
            except Exception:
                logger.exception("ssekit: closing the stream's source failed")


def _start_helper_loop(source: AsyncIterable[Any], handoff: Handoff) -> Callable[[], None]:
    """Run an async source on a private event loop in a thread, for a sync consumer."""
    ready = threading.Event()
    holder: dict[str, Any] = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        try:
            task = loop.create_task(_pump_async(source, handoff))
            holder["loop"], holder["task"] = loop, task
            ready.set()
            try:
                loop.run_until_complete(task)
            except BaseException as exc:
                if not isinstance(exc, asyncio.CancelledError):
                    handoff.finish(exc)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            ready.set()
            loop.close()

    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(run,), name="ssekit-loop", daemon=True)
    thread.start()
    ready.wait()

    def stop() -> None:
        loop, task = holder.get("loop"), holder.get("task")
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already finished
                loop.call_soon_threadsafe(task.cancel)
        if thread is not threading.current_thread():
            thread.join(PRODUCER_CLOSE_SECONDS)

    return stop


def _threads_are_greenlets() -> bool:
    """True under gevent's monkey-patching, where a "thread" is a greenlet of one OS thread."""
    monkey = sys.modules.get("gevent.monkey")
    is_patched = getattr(monkey, "is_module_patched", None)
    return bool(is_patched and is_patched("threading"))


class _SharedLoop:
    """One helper event loop for all sync-consumed async sources of a process, under gevent.

    asyncio allows one running loop per OS thread, and gevent runs every "thread" on one: a loop
    per stream would fail from the second stream on.  The shared loop runs while at least one
    such stream does, each source a task on it.
    """

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _users = 0

    @classmethod
    def start(cls, source: AsyncIterable[Any], handoff: Handoff) -> Callable[[], None]:
        new_thread = None
        with cls._lock:
            if cls._loop is None:
                cls._loop = asyncio.new_event_loop()
                cls._thread = new_thread = threading.Thread(
                    target=cls._loop.run_forever, name="ssekit-shared-loop", daemon=True
                )
            cls._users += 1
            loop = cls._loop
        # Started outside the lock: starting a "thread" switches greenlets, and the lock may be
        # a real one (ssekit imported before gevent's patching, e.g. by gunicorn's master for
        # `-c python:ssekit.gunicorn`), which another greenlet would then wait on for ever.
        if new_thread is not None:
            new_thread.start()
        context = contextvars.copy_context()  # e.g. Flask's request context, for the source
        started: list[asyncio.Task[None]] = []
        done = threading.Event()

        def create() -> None:  # on the loop: a task made inside `context` runs in a copy of it
            task = context.run(loop.create_task, _pump_async(source, handoff))
            task.add_done_callback(lambda _: done.set())
            started.append(task)

        def cancel() -> None:
            for task in started:
                task.cancel()

        loop.call_soon_threadsafe(create)

        def stop() -> None:
            loop.call_soon_threadsafe(cancel)
            done.wait(PRODUCER_CLOSE_SECONDS)
            cls._release()

        return stop

    @classmethod
    def _release(cls) -> None:
        with cls._lock:
            cls._users -= 1
            if cls._users or cls._loop is None:
                return
            loop, thread = cls._loop, cls._thread
            cls._loop = cls._thread = None
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None and thread is not threading.current_thread():
            thread.join(PRODUCER_CLOSE_SECONDS)
        loop.close()
