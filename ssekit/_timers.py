"""One timer per event loop and deadline bucket, shared by every task waiting that long.

Thousands of idle streams each wait for their next heartbeat.  A `call_later` per stream per
wait puts a `TimerHandle` in the loop's heap (whose comparisons run in Python) and costs two
callbacks per wake-up, the timer's and the task's.  Here a waiting future joins the bucket of its
deadline rounded up to `RESOLUTION`; one `call_at` per bucket resolves every future in it, so a
wake-up costs the task's callback alone and a set entry instead of a handle.  Short waits (a
latency budget, under `SHARED_FROM` seconds) keep their own exact timer.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from collections.abc import Callable

__all__ = ["RESOLUTION", "SHARED_FROM", "Token", "cancel", "resolve_after", "resolve_at"]

#: Deadlines are rounded up to a multiple of this many seconds: a wake-up is at most this late.
RESOLUTION = 0.01
#: Waits at least this long share a bucket; shorter ones get an exact timer of their own.
SHARED_FROM = 0.25


class _Buckets:
    """The waiting futures of one loop, by deadline bucket (the deadline // RESOLUTION, up)."""

    __slots__ = ("__weakref__", "buckets")

    def __init__(self) -> None:
        self.buckets: dict[int, set[asyncio.Future[bool]]] = {}

    def fire(self, key: int) -> None:
        for future in self.buckets.pop(key, ()):
            if not future.done():
                future.set_result(False)


# The loop is a weak key: pending `call_at`s hold the buckets, never the loop's entry.
_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Buckets] = (
    weakref.WeakKeyDictionary()
)


def _no_loop() -> None:
    return None


# The last loop looked up, weakly, and its buckets: a process usually runs one loop.
_last: tuple[Callable[[], object], _Buckets] = (_no_loop, _Buckets())


#: What `resolve_after` returns, for `cancel`: an own timer, or the shared bucket joined.
Token = asyncio.TimerHandle | set[asyncio.Future[bool]]


def resolve_after(
    loop: asyncio.AbstractEventLoop, delay: float, future: asyncio.Future[bool]
) -> Token:
    """Resolve `future` with False once `delay` seconds have passed (unless already done).

    Returns a token for `cancel`.  Call on the loop's thread.
    """
    return resolve_at(loop, loop.time() + delay, future)


def resolve_at(
    loop: asyncio.AbstractEventLoop,
    when: float,
    future: asyncio.Future[bool],
    now: float | None = None,
) -> Token:
    """Resolve `future` with False at the loop's time `when`: `resolve_after` for a deadline.

    `now`: the loop's time, when the caller has just read it.
    """
    if when - (loop.time() if now is None else now) < SHARED_FROM:
        return loop.call_at(when, _resolve_false, future)
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
    bucket.add(future)
    return bucket


def cancel(token: Token, future: asyncio.Future[bool]) -> None:
    """Forget the timer `resolve_after` returned `token` for (the future was resolved first)."""
    if isinstance(token, set):
        token.discard(future)
    else:
        token.cancel()


def _resolve_false(future: asyncio.Future[bool]) -> None:
    if not future.done():
        future.set_result(False)
