"""Where a source runs: a worker thread for a sync source, a task or helper loop for an async one.

A source runs where it can run without blocking the consumer: an async source on the consumer's
loop (or, for a sync consumer, on a helper loop in a thread of its own), a sync source in a worker
thread of its own.  It hands chunks over through a bounded `Handoff`.  A dedicated thread per sync
stream, rather than a pool, because streams are long-lived: a pool (asyncio's default executor
holds min(32, CPUs + 4) threads, anyio's limiter 40) would stall every stream past its size.

A thread cannot be interrupted, so a sync source blocked in arbitrary code keeps its thread after
its stream has closed, until that code returns.  Sources that wait the documented way (`sleep`,
`get_item`, a `queue.Queue` or a `Channel` as the source) end as soon as the stream closes; the
others are counted (`lingering_threads()`), with one warning past `LINGERING_WARN_AT`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import queue
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import Any, TypeVar

from ssekit._errors import ChannelClosed
from ssekit._handoff import Handoff, HandoffSource

__all__ = [
    "get_item",
    "lingering_threads",
    "sleep",
    "start_for_async_consumer",
    "start_for_sync_consumer",
    "stop_task",
]

logger = logging.getLogger("ssekit")

T = TypeVar("T")

#: How many chunks a source may run ahead of the consumer.
PULL_AHEAD = 1024
#: How many chunks an async source hands over at once when it yields without pausing.
ASYNC_BATCH = 64
#: How long closing a stream waits for an async source's task or helper loop to finish.
PRODUCER_CLOSE_SECONDS = 5.0
#: Past this many lingering source threads, one warning is logged (again only once the count has
#: come back to zero).
LINGERING_WARN_AT = 100

_GONE = "The stream has closed (its client went away, or it ended); the source should stop."


# -- a sync source's view of its stream's end ------------------------------------------------------


class _Closing:
    """The end of one stream, as its sync source's thread sees it: waits in the source end on it.

    The consumer sets it when the stream closes; `sleep` and `get_item`, called by the source in
    the worker thread, find it through a context variable and return at once.
    """

    __slots__ = ("_event", "_lingering", "_queue", "_returned")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._queue: queue.Queue[Any] | None = None  # the queue `get_item` is waiting on
        self._returned = False  # guarded by _lingering_lock
        self._lingering = False  # guarded by _lingering_lock

    @property
    def closed(self) -> bool:
        return self._event.is_set()

    def stream_closed(self) -> None:
        """The consumer stopped (the handoff's `on_close`): wake the source's wait, if any."""
        self._event.set()
        waiting_on = self._queue
        if waiting_on is not None:
            with waiting_on.not_empty:  # get_item re-checks `closed` under this lock
                waiting_on.not_empty.notify_all()
        _count_if_lingering(self)

    def source_returned(self) -> None:
        """The worker thread is done with the source."""
        global _lingering
        with _lingering_lock:
            self._returned = True
            if self._lingering:
                self._lingering = False
                _lingering -= 1
                if _lingering == 0:
                    _warned.clear()


_current: contextvars.ContextVar[_Closing | None] = contextvars.ContextVar(
    "ssekit_closing", default=None
)
_lingering = 0
_lingering_lock = threading.Lock()
_warned = threading.Event()


def _count_if_lingering(closing: _Closing) -> None:
    global _lingering
    with _lingering_lock:
        if closing._returned or closing._lingering:
            return
        closing._lingering = True
        _lingering += 1
        count = _lingering
        warn = count > LINGERING_WARN_AT and not _warned.is_set()
        if warn:
            _warned.set()
    if warn:
        logger.warning(
            "ssekit: %d sync sources are still running after their streams closed, each holding "
            "a thread. Let them wait with ssekit.sleep() or ssekit.get_item(), or serve a "
            "queue.Queue or a Channel, so they end when the client leaves.",
            count,
        )


def lingering_threads() -> int:
    """How many sync sources of this process still run in a thread after their stream closed.

    Sources that wait the documented way leave this count within moments; one blocked in other
    code (a socket read, `time.sleep`, a lock) stays counted until that code returns.
    """
    return _lingering


def sleep(seconds: float) -> None:
    """Sleep like `time.sleep`, but raise `ChannelClosed` as soon as the stream closes.

    For sync sources (generators) served by `to_sse()`: the exception ends the generator, its
    `finally` blocks run and its thread is free at once.  Elsewhere it is `time.sleep`.
    """
    if seconds < 0:
        raise ValueError(f"sleep() needs a non-negative number of seconds, not {seconds!r}.")
    closing = _current.get()
    if closing is None:
        time.sleep(seconds)
    elif closing._event.wait(seconds):
        raise ChannelClosed(_GONE)


def get_item(source: queue.Queue[T], timeout: float | None = None) -> T:
    """`source.get(timeout=timeout)`, but raise `ChannelClosed` as soon as the stream closes.

    The usual "wait for the next item" of a sync source: `yield ssekit.get_item(jobs)`.  Like
    `queue.Queue.get` it raises `queue.Empty` after `timeout` seconds.  Elsewhere it is `get`.
    """
    closing = _current.get()
    if closing is None:
        return source.get(timeout=timeout)
    deadline = None if timeout is None else time.monotonic() + timeout
    closing._queue = source
    try:
        while True:
            with source.not_empty:  # the queue's own lock and condition, as `get` uses them
                while not source._qsize():
                    if closing.closed:
                        raise ChannelClosed(_GONE)
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise queue.Empty
                    source.not_empty.wait(remaining)
            with contextlib.suppress(queue.Empty):  # another consumer may have been quicker
                return source.get_nowait()
    finally:
        closing._queue = None


def _iter_queue(source: queue.Queue[Any]) -> Iterator[Any]:
    """A `queue.Queue` as a source: its items, until the stream closes."""
    while True:
        yield get_item(source)


# -- sync sources: a worker thread ----------------------------------------------------------------


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


def _run_worker(source: Iterable[Any], handoff: Handoff, closing: _Closing) -> None:
    _current.set(closing)  # in this thread's copy of the context: the source's waits find it
    try:
        _pump_sync(source, handoff)
    finally:
        closing.source_returned()


def _start_worker_thread(source: Iterable[Any]) -> Handoff:
    closing = _Closing()
    handoff = Handoff(PULL_AHEAD, on_close=closing.stream_closed)
    context = contextvars.copy_context()  # e.g. Flask's request context travels with the source
    thread = threading.Thread(
        target=context.run,
        args=(_run_worker, source, handoff, closing),
        name="ssekit-source",
        daemon=True,
    )
    thread.start()
    return handoff


# -- async sources: a task, or a helper loop for a sync consumer -----------------------------------


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


# -- what the drivers call -------------------------------------------------------------------------


def _noop() -> None:
    pass


def start_for_sync_consumer(source: object) -> tuple[Handoff, Callable[[], None]]:
    """Start `source` for a `for` consumer; return its handoff and how to stop it (blocking)."""
    if isinstance(source, HandoffSource):
        return source._attach(), _noop
    if isinstance(source, queue.Queue):
        source = _iter_queue(source)
    if isinstance(source, AsyncIterable) and not isinstance(source, Iterable):
        handoff = Handoff(PULL_AHEAD)
        if _threads_are_greenlets():
            return handoff, _SharedLoop.start(source, handoff)
        return handoff, _start_helper_loop(source, handoff)
    assert isinstance(source, Iterable)
    return _start_worker_thread(source), _noop


def start_for_async_consumer(source: object) -> tuple[Handoff, asyncio.Task[None] | None]:
    """Start `source` for an `async for` consumer; return its handoff and its task, if any."""
    if isinstance(source, HandoffSource):
        return source._attach(), None
    if isinstance(source, queue.Queue):
        source = _iter_queue(source)
    if isinstance(source, AsyncIterable):
        handoff = Handoff(PULL_AHEAD)
        task = asyncio.get_running_loop().create_task(_pump_async(source, handoff))
        return handoff, task
    assert isinstance(source, Iterable)
    return _start_worker_thread(source), None


async def stop_task(task: asyncio.Task[None]) -> None:
    """Cancel an async source's task and wait (a bounded time) for its `finally` to run."""
    if not task.done():
        # Let a task that has not run yet start, so that its source is opened and then closed
        # (a task cancelled before it starts never runs its finally).
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0)
    task.cancel()
    # Cancelled again while closing (anyio cancels by scope)? The task ends anyway.
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait((task,), timeout=PRODUCER_CLOSE_SECONDS)
