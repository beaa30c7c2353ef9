"""One timer per event loop and deadline bucket, shared by every waiter due about then.

Thousands of idle streams each wait for their next heartbeat.  A `call_later` per stream per
wait puts a `TimerHandle` in the loop's heap (whose comparisons run in Python) and costs two
callbacks per wake-up, the timer's and the task's.  Here a waiter joins the bucket of its
deadline rounded up to `RESOLUTION`; one `call_at` per bucket expires every waiter in it, so a
wake-up costs the task's callback alone and a set entry instead of a handle.  Short waits (a
latency budget, under `SHARED_FROM` seconds) keep their own exact timer.

A waiter is anything with `expire()`: a one-shot wait resolves its future there, a stream's
waiter (kept for the stream's life) wakes whichever wait is current.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from collections.abc import Callable
from typing import Protocol

__all__ = ["RESOLUTION", "SHARED_FROM", "Expiring", "Token", "cancel", "schedule"]

#: Deadlines are rounded up to a multiple of this many seconds: a wake-up is at most this late.
RESOLUTION = 0.01
#: Waits at least this long share a bucket; shorter ones get an exact timer of their own.
SHARED_FROM = 0.25


class Expiring(Protocol):
    """What a timer wakes: `expire()` is called on the loop once the deadline has passed."""

    def expire(self) -> None: ...


class _Buckets:
    """The waiters of one loop, by deadline bucket (the deadline // RESOLUTION, rounded up)."""

    __slots__ = ("__weakref__", "buckets")

    def __init__(self) -> None:
        self.buckets: dict[int, set[Expiring]] = {}

    def fire(self, key: int) -> None:
        for waiter in self.buckets.pop(key, ()):
            waiter.expire()


# The loop is a weak key: pending `call_at`s hold the buckets, never the loop's entry.
_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Buckets] = (
    weakref.WeakKeyDictionary()
)


def _no_loop() -> None:
    return None


# The last loop looked up, weakly, and its buckets: a process usually runs one loop.
_last: tuple[Callable[[], object], _Buckets] = (_no_loop, _Buckets())


#: What `schedule` returns, for `cancel`: an own timer, or the shared bucket joined.
Token = asyncio.TimerHandle | set[Expiring]


def schedule(
    loop: asyncio.AbstractEventLoop, when: float, waiter: Expiring, now: float | None = None
) -> Token:
    """Call `waiter.expire()` at the loop's time `when` (or up to `RESOLUTION` later).

    Returns a token for `cancel`.  `now`: the loop's time, when the caller has just read it.
    Call on the loop's thread.
    """
    if when - (loop.time() if now is None else now) < SHARED_FROM:
        return loop.call_at(when, waiter.expire)
    global _last
    last_loop, timers = _last
    if last_loop() is not loop:
        found = _by_loop.get(loop)
        if found is None:
            found = _by_loop[loop] = _Buckets()
        timers = found
        _last = (weakref.ref(loop), timers)
    key = math.ceil(when / RESOLUTION)
    bucket = timers.buckets.get(key)
    if bucket is None:
        bucket = timers.buckets[key] = set()
        # A hair past the bucket's time: a loop runs timers up to its clock's resolution early,
        # and a wake-up before the deadline would cost a second one.
        loop.call_at(key * RESOLUTION + 1e-6, timers.fire, key)
    bucket.add(waiter)
    return bucket


def cancel(token: Token, waiter: Expiring) -> None:
    """Forget the timer `schedule` returned `token` for (the waiter woke up first)."""
    if isinstance(token, set):
        token.discard(waiter)
    else:
        token.cancel()
