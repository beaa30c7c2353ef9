"""What an idle stream costs, by structure: tasks per served stream, shared heartbeat timers.

The figures (KiB and CPU per stream) are measured by `benchmarks/bench_idle.py`; these tests pin
the structure those figures come from, never a wall-clock speed: how many asyncio tasks a served
idle stream holds under a real uvicorn server, and that streams waiting for their heartbeats
share the loop's timers instead of arming one each.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from support.asgi_servers import DEADLINE, uvicorn_server

from ssekit import Channel, to_sse
from ssekit._frame import HEARTBEAT
from ssekit._handoff import Handoff
from ssekit._options import StreamOptions
from ssekit._timers import _by_loop
from ssekit._writer import StreamWriter
from ssekit.adapters.asgi import SSEApp

pytestmark = pytest.mark.timeout(60)

#: Idle streams held open at once by the task-count tests.
STREAMS = 8


class _Counting:
    """An ASGI app: `/tasks` answers the server loop's task count; anything else goes to `app`.

    `started` counts the sources that have begun waiting, so the test knows its streams are up.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.started = 0
        self.lock = threading.Lock()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/tasks":
            body = str(len(asyncio.all_tasks())).encode()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)

    def source_started(self) -> None:
        with self.lock:
            self.started += 1


def _task_count(http: httpx.Client, url: str) -> int:
    return int(http.get(f"{url}/tasks").text)


def _wait_for(predicate: Any) -> None:
    end = time.monotonic() + DEADLINE
    while not predicate():
        assert time.monotonic() < end, "the streams did not start in time"
        time.sleep(0.01)


@contextlib.contextmanager
def _idle_streams(url: str, n: int) -> Iterator[list[Any]]:
    """Open `n` streams and read their response heads; close them on exit."""
    with contextlib.ExitStack() as stack:
        http = stack.enter_context(httpx.Client(timeout=DEADLINE))
        responses = [stack.enter_context(http.stream("GET", f"{url}/events")) for _ in range(n)]
        for response in responses:
            assert response.status_code == 200
        yield responses


def _tasks_per_stream(counting: _Counting) -> float:
    with uvicorn_server(counting) as url, httpx.Client(timeout=DEADLINE) as http:
        before = _task_count(http, url)
        with _idle_streams(url, STREAMS):
            _wait_for(lambda: counting.started >= STREAMS)
            held = _task_count(http, url)
        return (held - before) / STREAMS


def test_an_idle_stream_of_an_async_source_holds_three_tasks() -> None:
    """The request's own task writes the stream; one task waits for the client's disconnect and
    one runs the source: no pump task of its own, no task racing the two."""
    counting: _Counting

    async def never(request: Any) -> AsyncIterator[str]:
        counting.source_started()
        await asyncio.Event().wait()
        yield "never"

    counting = _Counting(SSEApp(never, heartbeat=1))
    assert _tasks_per_stream(counting) <= 3


def test_an_idle_stream_of_a_channel_holds_two_tasks() -> None:
    """A source that hands chunks over itself (a Channel, a broker subscription) needs no task."""
    counting: _Counting
    channels: list[Channel] = []

    def open_channel(request: Any) -> Channel:
        channel = Channel()
        channels.append(channel)
        counting.source_started()
        return channel

    counting = _Counting(SSEApp(open_channel, heartbeat=1))
    assert _tasks_per_stream(counting) <= 2


def test_an_idle_stream_still_gets_its_heartbeats() -> None:
    """The shared timer wakes every stream: two idle streams both receive heartbeats."""

    async def never(request: Any) -> AsyncIterator[str]:
        await asyncio.Event().wait()
        yield "never"

    app = SSEApp(never, heartbeat=0.3)
    with uvicorn_server(app) as url, _idle_streams(url, 2) as responses:
        for response in responses:
            seen = b""
            for chunk in response.iter_raw():
                seen += chunk
                if seen.count(HEARTBEAT) >= 2:
                    break
            assert seen.count(HEARTBEAT) >= 2


# -- the loop's shared timers -------------------------------------------------------------------


def test_long_waits_share_one_timer_per_deadline_bucket() -> None:
    """Waits long enough to share (a heartbeat's) join a bucket of the loop's timers rather than
    each arming a timer; one woken early leaves its bucket; the rest time out together."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        handoffs = [Handoff(4) for _ in range(50)]
        waits = [asyncio.ensure_future(h.wait_async(0.5)) for h in handoffs]
        await asyncio.sleep(0)  # every wait is parked now
        buckets = _by_loop[loop].buckets
        assert 1 <= len(buckets) <= 2  # 50 waits begun within one step: one or two buckets
        assert sum(len(futures) for futures in buckets.values()) == 50
        handoffs[0].try_put("x")  # wakes the first wait, which leaves its bucket
        assert await waits[0] is True
        assert sum(len(futures) for futures in buckets.values()) == 49
        assert await asyncio.gather(*waits[1:]) == [False] * 49  # timed out, by the buckets
        assert not buckets  # each bucket went once it fired

    asyncio.run(main())


def test_a_shared_deadline_is_never_early() -> None:
    """A bucket fires at or after the deadlines it holds (rounded up), never before them."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        handoff = Handoff(4)
        begun = loop.time()
        assert await handoff.wait_async(0.3) is False
        assert loop.time() - begun >= 0.3

    asyncio.run(main())


def test_short_waits_keep_a_timer_of_their_own() -> None:
    """A wait shorter than the shared ones (a latency budget) is not rounded to a bucket."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        handoff = Handoff(4)
        wait = asyncio.ensure_future(handoff.wait_async(0.05))
        await asyncio.sleep(0)
        buckets = _by_loop.get(loop)
        assert buckets is None or not buckets.buckets
        assert await wait is False

    asyncio.run(main())


# -- heartbeats keep their phase ----------------------------------------------------------------


def test_a_late_heartbeat_does_not_make_the_next_one_late() -> None:
    """Due at 1, written at 1.05 (a busy moment): the next is still due at 2, not at 2.05; one
    written a tenth of an interval late or more starts afresh, so an overloaded loop sheds."""
    writer = StreamWriter(StreamOptions(heartbeat=1))
    writer.opening(0.0)
    assert writer.poll(1.05) == ([HEARTBEAT], pytest.approx(0.95))
    assert writer.poll(2.0) == ([HEARTBEAT], pytest.approx(1.0))
    assert writer.poll(3.5) == ([HEARTBEAT], pytest.approx(1.0))


def test_to_sse_heartbeats_of_an_idle_stream_come_from_the_shared_timer() -> None:
    """An idle `async for` over a stream parks on the loop's shared buckets between heartbeats."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        channel = Channel()
        stream = to_sse(channel, heartbeat=0.5)
        iterator = stream.__aiter__()
        await iterator.__anext__()  # the opening
        nxt = asyncio.ensure_future(iterator.__anext__())
        await asyncio.sleep(0)
        buckets = _by_loop[loop].buckets
        assert sum(len(futures) for futures in buckets.values()) == 1
        assert await nxt == HEARTBEAT
        await stream.aclose()

    asyncio.run(main())
