"""ssekit imported before gevent's monkey-patching, as gunicorn's master does for
`-c python:ssekit.gunicorn`: then many greenlets start async-source streams at once.

`python -m apps.gevent_after_import N` prints "ok <events>" once N streams, each consumed by
`for` in a greenlet of its own, have all ended; a lock created at import (a real lock, not
gevent's) held across a greenlet switch would block the whole process instead.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import ssekit  # before the patching, on purpose

from gevent import monkey  # isort: skip

monkey.patch_all()

import gevent  # noqa: E402


async def three() -> AsyncIterator[int]:
    for n in range(3):
        await asyncio.sleep(0.01)
        yield n


def consume() -> int:
    return sum(chunk.count(b"data:") for chunk in ssekit.to_sse(three(), heartbeat=None))


def main(count: int) -> None:
    greenlets = [gevent.spawn(consume) for _ in range(count)]
    gevent.joinall(greenlets, raise_error=True)
    print("ok", sum(g.value for g in greenlets), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]))
