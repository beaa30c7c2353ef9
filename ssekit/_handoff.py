"""A bounded, thread-safe handoff of chunks from one producer to one consumer.

Either side may be a thread that blocks or an asyncio task that awaits, so the same object connects
a sync source running in a worker thread to an event loop, an async source on a helper loop to a
WSGI thread, and a `Channel` to whoever serves it.  Nobody polls: a side that must wait registers a
waiter and the other side wakes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import weakref
from collections.abc import Callable
from typing import Any

from ssekit import _timers
from ssekit._errors import ChannelClosed
from ssekit._writer import SourceEnded, SourceFailed, SourceFinished

__all__ = ["Handoff", "HandoffSource", "LoopWaiter"]


class _Waiter:
    """One parked side, for one wait: a `threading.Event` for threads, a future for tasks."""

    __slots__ = ("_event", "_future", "_loop", "_thread")

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self._loop = loop
        self._thread = threading.get_ident()
        self._future: asyncio.Future[bool] | None = loop.create_future() if loop else None
        self._event: threading.Event | None = None if loop else threading.Event()

    def wake(self) -> None:
        if self._event is not None:
            self._event.set()
            return
        assert self._loop is not None
        assert self._future is not None
        _wake(self._future, self._loop, self._thread)

    def expire(self) -> None:
        """The wait's deadline passed (`_timers`): it returns False."""
        assert self._future is not None
        _resolve(self._future, False)

    def wait(self, timeout: float | None) -> bool:
        assert self._event is not None
        return self._event.wait(timeout)

    async def wait_async(self, timeout: float | None) -> bool:
        future, loop = self._future, self._loop
        assert future is not None
        assert loop is not None
        # The future is this waiter's own, so awaiting it directly is safe (a cancelled waiter
        # cancels nothing else); a timer resolves it with False.  Lighter than asyncio.wait(),
        # which builds a set, callbacks and a second future for every wait of every stream.
        # Long waits share one timer per loop and deadline bucket (`_timers`).
        if timeout is None:
            return await future
        timer = _timers.schedule(loop, loop.time() + timeout, self)
        try:
            return await future
        finally:
            _timers.cancel(timer, self)


class LoopWaiter:
    """An async consumer's waiter, kept for the life of its stream: a fresh future per wait.

    A stream waits between deliveries until its next heartbeat.  Deliveries move that deadline
    later, so the timer set for an earlier wait still serves the next one: when it fires before
    the current wait's deadline, it is set again for that deadline without waking the consumer.
    A delivery costs no timer at all, and nothing lives on between two waits but the future.
    """

    __slots__ = ("_due", "_foreign", "_future", "_loop", "_thread", "_timer", "_timer_at")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.get_ident()
        self._foreign = _ForeignWakes.of(loop)
        self._future: asyncio.Future[bool] | None = None
        self._timer: _timers.Token | None = None
        #: When the armed timer is due (the loop's time), or infinity with none armed.
        self._timer_at = math.inf
        #: When the current wait must end (the loop's time), or infinity: when woken.
        self._due = math.inf

    def wake(self) -> None:
        future = self._future
        if future is None:
            return
        if threading.get_ident() == self._thread:
            if not future.done():
                future.set_result(True)
        else:
            self._foreign.add(future)

    def due_by(self, deadline: float, now: float) -> None:
        """The current wait ends by the loop's time `deadline` (infinity: only when woken)."""
        self._due = deadline
        if deadline < self._timer_at:  # else the armed timer comes first and sets itself again
            self._set_timer(deadline, now)

    def expire(self) -> None:
        """The armed timer fired: end the wait if it is due, else set the timer for its deadline."""
        self._timer, self._timer_at = None, math.inf
        future = self._future
        if future is None or future.done():
            return  # the consumer is stepping: its next wait sets what it needs
        due = self._due
        if due == math.inf:
            return
        now = self._loop.time()
        if due > now:
            self._set_timer(due, now)
        else:
            future.set_result(False)

    def _set_timer(self, deadline: float, now: float) -> None:
        if self._timer is not None:
            _timers.cancel(self._timer, self)
        self._timer = _timers.schedule(self._loop, deadline, self, now)
        self._timer_at = deadline

    def disarm(self) -> None:
        """Forget the armed timer (the stream ended).  On the loop's thread."""
        if self._timer is not None:
            _timers.cancel(self._timer, self)
            self._timer, self._timer_at = None, math.inf
        self._future = None


def _wake(future: asyncio.Future[bool], loop: asyncio.AbstractEventLoop, thread: int) -> None:
    """Resolve `future` with True, from its loop's thread or any other."""
    if threading.get_ident() == thread:
        if not future.done():
            future.set_result(True)
    else:
        with contextlib.suppress(RuntimeError):  # a closed loop has nobody waiting
            loop.call_soon_threadsafe(_resolve, future)


class _ForeignWakes:
    """Wake-ups of one loop's stream waiters from other threads, run in batches.

    A Redis reader thread handing one event to 5,000 subscribers would otherwise schedule 5,000
    callbacks with `call_soon_threadsafe`, each a write to the loop's self-pipe (a system call).
    Here the first wake-up of a batch schedules one callback, which resolves every future queued
    until it runs.
    """

    __slots__ = ("__weakref__", "_lock", "_pending")

    def __init__(self) -> None:  # it never holds its loop: it is that loop's value, held weakly
        self._lock = threading.Lock()
        self._pending: list[asyncio.Future[bool]] = []

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> _ForeignWakes:
        """The batches of `loop` (made on first use; the loop is held weakly)."""
        with _foreign_lock:
            found = _foreign_by_loop.get(loop)
            if found is None:
                found = _foreign_by_loop[loop] = cls()
            return found

    def add(self, future: asyncio.Future[bool]) -> None:
        """Resolve `future` with True soon, on its loop; from any other thread."""
        with self._lock:
            first = not self._pending
            self._pending.append(future)
        if first:
            try:
                future.get_loop().call_soon_threadsafe(self._run)
            except RuntimeError:  # a closed loop has nobody waiting
                with self._lock:
                    self._pending.clear()

    def _run(self) -> None:
        with self._lock:
            futures, self._pending = self._pending, []
        for future in futures:
            if not future.done():
                future.set_result(True)


_foreign_lock = threading.Lock()
# The loop is a weak key: the batches never keep a loop alive.
_foreign_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _ForeignWakes] = (
    weakref.WeakKeyDictionary()
)


def _resolve(future: asyncio.Future[bool], result: bool = True) -> None:
    if not future.done():
        future.set_result(result)


class Handoff:
    """Chunks in order from a producer to a consumer, at most `maxsize` waiting.

    The producer calls `put`/`aput` (blocking while full) and then `finish`; the consumer calls
    `take` and `wait`/`wait_async`, and `close` when it stops listening, after which `put` raises
    `ChannelClosed` so the producer learns to stop.
    """

    __slots__ = (
        *("_closed", "_consumer", "_finished", "_items", "_lock", "_maxsize", "_nudged"),
        *("_on_close", "_producers", "ended", "outcome"),
    )

    def __init__(self, maxsize: int, *, on_close: Callable[[], None] | None = None) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, not {maxsize!r}.")
        self._on_close = on_close
        #: How the producer ended, once it has (see `finish`); the stream's writer decides what
        #: that means on the wire.
        self.outcome: SourceFinished | SourceFailed | SourceEnded | None = None
        self._maxsize = maxsize
        # A list, not a deque: an idle stream's empty deque holds a 0.6 KiB block.
        self._items: list[Any] = []
        self._lock = threading.Lock()
        self._finished = False
        self._closed = False
        #: True once the producer finished or the consumer closed: the one flag a consumer's
        #: step reads to know whether to look further (`drained`, `closed`).
        self.ended = False
        self._nudged = False  # a nudge that found no consumer waiting: its next wait returns
        self._consumer: _Waiter | LoopWaiter | None = None
        #: Every parked producer: a `Channel` may have several blocked senders at once.
        #: Every parked producer (a `Channel` may have several blocked senders at once); an
        #: empty tuple, not a list, while there is none: most handoffs never have one.
        self._producers: list[_Waiter] | tuple[()] = ()

    # -- producer side -------------------------------------------------------------------------

    def try_put(self, item: Any) -> bool:
        """Add `item` if there is room, without waiting; raise `ChannelClosed` once closed."""
        # acquire/release rather than `with`: half the cost, on the path of every event.
        lock = self._lock
        lock.acquire()
        try:
            if self._closed or self._finished:
                raise ChannelClosed(self._why_closed())
            if len(self._items) >= self._maxsize:
                return False
            self._items.append(item)
            waiter, self._consumer = self._consumer, None
        finally:
            lock.release()
        if waiter is not None:
            waiter.wake()
        return True

    def put_batch(self, items: list[Any]) -> None:
        """Add `items` at once, even past `maxsize`: the caller bounds its batches."""
        with self._lock:
            if self._closed or self._finished:
                raise ChannelClosed(self._why_closed())
            self._items.extend(items)
            waiter, self._consumer = self._consumer, None
        if waiter is not None:
            waiter.wake()

    @property
    def full(self) -> bool:
        """True while `maxsize` or more items wait to be taken."""
        return len(self._items) >= self._maxsize

    async def wait_for_room(self) -> None:
        """Await until the handoff is no longer full (or closed)."""
        loop = asyncio.get_running_loop()
        while self.full and not self._closed:
            await self._park_producer(loop).wait_async(None)

    def put_dropping_oldest(self, item: Any) -> int:
        """Add `item`, dropping the oldest waiting items to make room; return how many dropped."""
        with self._lock:
            if self._closed or self._finished:
                raise ChannelClosed(self._why_closed())
            dropped = max(0, len(self._items) - self._maxsize + 1)
            if dropped:
                del self._items[:dropped]
            self._items.append(item)
            waiter, self._consumer = self._consumer, None
        if waiter is not None:
            waiter.wake()
        return dropped

    def put(self, item: Any, timeout: float | None = None) -> None:
        """Add `item`, blocking while full (at most `timeout` seconds, then `TimeoutError`)."""
        while not self.try_put(item):
            waiter = self._park_producer(None)
            if not waiter.wait(timeout):
                self._unpark_producer(waiter)
                raise TimeoutError(f"The consumer took nothing for {timeout} seconds.")

    async def aput(self, item: Any, timeout: float | None = None) -> None:
        """Add `item`, awaiting while full."""
        while not self.try_put(item):
            waiter = self._park_producer(asyncio.get_running_loop())
            if not await waiter.wait_async(timeout):
                self._unpark_producer(waiter)
                raise TimeoutError(f"The consumer took nothing for {timeout} seconds.")

    def _park_producer(self, loop: asyncio.AbstractEventLoop | None) -> _Waiter:
        waiter = _Waiter(loop)
        with self._lock:
            full = len(self._items) >= self._maxsize and not self._closed
            if full:
                self._producers = [*self._producers, waiter]
        if not full:
            waiter.wake()
        return waiter

    def _unpark_producer(self, waiter: _Waiter) -> None:
        with self._lock:
            self._producers = [parked for parked in self._producers if parked is not waiter]

    def _wake_producers(self, producers: list[_Waiter] | tuple[()]) -> None:
        for waiter in producers:  # each one retries; those that find no room park again
            waiter.wake()

    def finish(self, error: BaseException | None = None, *, ending: bytes | None = None) -> bool:
        """No more items will come; False if that was already so.

        `error` says the producer failed; `ending` replaces the stream's normal ending (e.g. a
        `retry:` hint for a client that is cut off and should come back).
        """
        outcome = (
            SourceFailed(error)
            if error is not None
            else SourceEnded(ending)
            if ending is not None
            else SourceFinished()
        )
        with self._lock:
            if self._finished or self._closed:
                return False
            self.outcome = outcome  # before `_finished`: whoever sees that finds this
            self._finished = self.ended = True
            waiter, self._consumer = self._consumer, None
        if waiter is not None:
            waiter.wake()
        return True

    @property
    def closed(self) -> bool:
        """True once the consumer has stopped listening."""
        return self._closed

    @property
    def finished(self) -> bool:
        """True once the producer has said it is done."""
        return self._finished

    def _why_closed(self) -> str:
        if self._closed:
            return "The stream's consumer has gone away (the client disconnected)."
        return "The channel has ended; nothing more can be sent."

    # -- consumer side -------------------------------------------------------------------------

    def take(self) -> list[Any]:
        """Return every item waiting now (possibly none), in order."""
        if not self._items:  # read unlocked: an item put after this wakes the consumer's wait
            return []
        lock = self._lock
        lock.acquire()
        try:
            # Copied and cleared rather than swapped for a new list: the copy is gone after the
            # consumer's step, and nothing new is left to outlive it (a stream's waits are long).
            items = self._items.copy()
            self._items.clear()
            producers = self._producers
            if producers:
                self._producers = ()
        finally:
            lock.release()
        if producers:
            self._wake_producers(producers)
        return items

    @property
    def drained(self) -> bool:
        """True when the producer has finished and every item has been taken."""
        return self._finished and not self._items

    def wait(self, timeout: float | None) -> bool:
        """Block until items arrive, the producer finishes, a nudge or a close; False on timeout."""
        waiter = self._park_consumer(None)
        return waiter is None or waiter.wait(timeout)

    async def wait_async(self, timeout: float | None) -> bool:
        """`wait` for a consumer that is an asyncio task."""
        waiter = self._park_consumer(asyncio.get_running_loop())
        return waiter is None or await waiter.wait_async(timeout)

    def _park_consumer(self, loop: asyncio.AbstractEventLoop | None) -> _Waiter | None:
        with self._lock:
            if self._items or self._finished or self._closed or self._nudged:
                self._nudged = False
                return None
            waiter = self._consumer = _Waiter(loop)
        return waiter

    def park_async(self, waiter: LoopWaiter) -> asyncio.Future[bool] | None:
        """Park an async consumer: the future to await, or None when there is something to do.

        `waiter` is the consumer's own, kept across its waits (see `LoopWaiter`).
        """
        lock = self._lock
        lock.acquire()
        try:
            if self._items or self._finished or self._closed or self._nudged:
                self._nudged = False
                return None
            self._consumer = waiter
            future = waiter._future = waiter._loop.create_future()  # the wait's own future
            return future
        finally:
            lock.release()

    def nudge(self) -> None:
        """Wake the consumer without giving it anything (it has something else to do).

        A consumer that is not waiting yet does not wait at its next `wait`: a nudge is never lost.
        """
        with self._lock:
            waiter, self._consumer = self._consumer, None
            self._nudged = waiter is None
        if waiter is not None:
            waiter.wake()

    def close(self) -> None:
        """The consumer stops listening: drop what is queued and release a blocked producer.

        Usually the consumer's own call; from elsewhere (a stream closed from another thread) it
        also wakes the consumer, whose next `wait` returns at once.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = self.ended = True
            self._items.clear()
            producers, self._producers = self._producers, ()
            consumer, self._consumer = self._consumer, None
        if consumer is not None:
            consumer.wake()
        self._wake_producers(producers)
        if self._on_close is not None:
            self._on_close()


class HandoffSource:
    """A source that hands chunks over itself (a `Channel`, a broker subscription).

    `to_sse()` reads its handoff directly: no thread or task between them.
    """

    __slots__ = ("_attached", "_handoff")

    def __init__(self, handoff: Handoff) -> None:
        self._handoff = handoff
        self._attached = False

    def _attach(self) -> Handoff:
        if self._attached:
            raise RuntimeError(f"A {type(self).__name__} can feed only one stream.")
        self._attached = True
        return self._handoff

    def close(self) -> None:
        """Drop the source without an ending (what an unserved stream's cleanup calls)."""
        self._handoff.close()
