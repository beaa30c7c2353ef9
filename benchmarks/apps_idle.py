"""The servers of `bench_idle.py`: idle event streams with a heartbeat, one app per library.

    python -m uvicorn apps_idle:ssekit_async --port 8000      # run from benchmarks/

Every app serves `GET /events` as a stream whose source never yields: only heartbeats flow, one
per `SSEKIT_IDLE_INTERVAL` seconds (default 1).  `GET /stats` answers JSON: the pid, the number
of `/events` requests being served (`open`), of sources started and not yet closed (`sources`)
and of asyncio tasks (`tasks`).

- `ssekit_async`: `SSEApp` over an async generator that awaits an `asyncio.Event` never set.
- `ssekit_sync`: `SSEApp` over a sync generator that blocks the documented way.  Today that is a
  `threading.Event().wait()`; `SSEKIT_IDLE_SYNC_SOURCE=module:function` names another factory of
  a sync source (called with no argument), for a future interruptible wait or queue source.
- `starlette_hand`: Starlette's `StreamingResponse` over an async generator that yields
  `: ping` and sleeps, the hand-written reference.
- `sse_starlette`: sse-starlette's `EventSourceResponse(ping=interval)`.

Profiling (`SSEKIT_IDLE_PROFILE=1`): the event loop's `call_soon`/`call_at` are counted by
callback.  `GET /profile/mark` (before the streams open) counts live objects by type and starts
tracemalloc; `GET /profile/memory` (all open) takes a snapshot and stops tracing, so that the
timed window runs untraced; `GET /profile/window` starts counting callbacks; `GET
/profile/report` answers, as text, per open stream: the allocation sites still held, the object
types added, and the callbacks scheduled per second over the window.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import importlib
import json
import os
import resource
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from typing import Any, ClassVar

from ssekit.adapters.asgi import SSEApp

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

INTERVAL = float(os.environ.get("SSEKIT_IDLE_INTERVAL", "1"))
PROFILE = os.environ.get("SSEKIT_IDLE_PROFILE") == "1"
SYNC_SOURCE_ENV = "SSEKIT_IDLE_SYNC_SOURCE"


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


_raise_fd_limit()

_open = 0  # /events requests being served
_sources = 0  # sources started and not yet closed (a sync one may outlive its request)
_sources_lock = threading.Lock()
#: Set when the process ends, so that sync sources blocked the default way let their threads go.
_sync_release = threading.Event()


def _source_started() -> None:
    global _sources
    with _sources_lock:
        _sources += 1


def _source_ended() -> None:
    global _sources
    with _sources_lock:
        _sources -= 1


# -- sources -----------------------------------------------------------------------------------

_forever: asyncio.Event | None = None


async def _async_idle() -> AsyncIterator[str]:
    """Wait forever (until the server stops), yielding nothing."""
    global _forever
    if _forever is None:
        _forever = asyncio.Event()
    _source_started()
    try:
        await _forever.wait()
        nothing: tuple[str, ...] = ()
        for item in nothing:  # never runs: makes this an async generator that yields nothing
            yield item
    finally:
        _source_ended()


def _event_wait_source() -> Iterator[str]:
    """The sync source as written today: block the thread on an event nobody sets."""
    _source_started()
    try:
        _sync_release.wait()
        yield from ()
    finally:
        _source_ended()


def _sync_source_factory() -> Callable[[], Any]:
    name = os.environ.get(SYNC_SOURCE_ENV)
    if not name:
        return _event_wait_source
    module, _, attr = name.partition(":")
    factory: Callable[[], Any] = getattr(importlib.import_module(module), attr)
    return factory


async def _hand_pings() -> AsyncIterator[bytes]:
    _source_started()
    try:
        while True:
            await asyncio.sleep(INTERVAL)
            yield b": ping\n\n"
    finally:
        _source_ended()


# -- the wrapper: /stats, /profile, counting -------------------------------------------------


async def _send_text(send: Send, body: bytes, content_type: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _wrap(inner: ASGIApp) -> ASGIApp:
    """`inner` serves /events; /stats and /profile are answered here, the same for every app."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        global _open
        if scope["type"] != "http":
            await inner(scope, receive, send)
            return
        path = scope["path"]
        if path == "/stats":
            stats = {
                "pid": os.getpid(),
                "open": _open,
                "sources": _sources,
                "tasks": len(asyncio.all_tasks()),
            }
            await _send_text(send, json.dumps(stats).encode(), b"application/json")
        elif path.startswith("/profile/"):
            await _send_text(send, _profile(path[len("/profile/") :]).encode(), b"text/plain")
        else:
            _Counting.install()
            _open += 1
            try:
                await inner(scope, receive, send)
            finally:
                _open -= 1

    return app


# -- profiling ---------------------------------------------------------------------------------


class _Counting:
    """Counts the callbacks scheduled on the running loop, by callback name (profiling only)."""

    counts: ClassVar[collections.Counter[str]] = collections.Counter()
    installed = False

    @classmethod
    def install(cls) -> None:
        if not PROFILE or cls.installed:
            return
        cls.installed = True
        loop = asyncio.get_running_loop()
        counts = cls.counts
        call_soon, call_at = loop.call_soon, loop.call_at

        def name(callback: Any) -> str:
            owner = getattr(callback, "__self__", None)
            qual = getattr(callback, "__qualname__", type(callback).__name__)
            if isinstance(owner, asyncio.Task):
                coro = owner.get_coro()
                return f"task step: {getattr(coro, '__qualname__', type(coro).__name__)}"
            return str(qual)

        def counting_soon(callback: Any, *args: Any, **kwargs: Any) -> Any:
            counts["soon " + name(callback)] += 1
            return call_soon(callback, *args, **kwargs)

        def counting_at(when: float, callback: Any, *args: Any, **kwargs: Any) -> Any:
            counts["timer " + name(callback)] += 1
            return call_at(when, callback, *args, **kwargs)

        setattr(loop, "call_soon", counting_soon)  # noqa: B010 - an instance attribute, on purpose
        setattr(loop, "call_at", counting_at)  # noqa: B010


class _Mark:
    types: ClassVar[collections.Counter[str]] = collections.Counter()
    counts: ClassVar[collections.Counter[str]] = collections.Counter()
    time = 0.0
    open = 0
    memory = ""


def _type_counts() -> collections.Counter[str]:
    gc.collect()
    return collections.Counter(type(o).__qualname__ for o in gc.get_objects())


def _profile(what: str) -> str:
    """mark (streams about to open) -> memory (all open) -> window (timing starts) -> report."""
    if not PROFILE:
        return "profiling is off: set SSEKIT_IDLE_PROFILE=1\n"
    if what == "mark":
        _Mark.types = _type_counts()
        _Mark.open = _open
        tracemalloc.start(4)  # only what the streams allocate from now on is traced
        return "marked\n"
    if what == "memory":
        _Mark.memory = _memory_report()
        return "noted\n"
    if what == "window":
        _Mark.counts = collections.Counter(_Counting.counts)
        _Mark.time = time.monotonic()
        return "started\n"
    if what != "report":
        return "GET /profile/mark, /profile/memory, /profile/window, then /profile/report\n"
    n = max(1, _open - _Mark.open)
    seconds = time.monotonic() - _Mark.time
    counts = collections.Counter(_Counting.counts)
    counts.subtract(_Mark.counts)
    per = sum(counts.values()) / n / seconds
    lines = [
        _Mark.memory,
        f"loop callbacks scheduled per stream per second, over {seconds:.1f} s: {per:.2f}",
    ]
    lines.extend(
        f"  {count / n / seconds:6.3f}  {name}" for name, count in counts.most_common(25) if count
    )
    return "\n".join(lines) + "\n"


def _memory_report() -> str:
    """What the streams opened since the mark hold: traced allocations and objects, per stream."""
    n = max(1, _open - _Mark.open)
    snapshot = tracemalloc.take_snapshot()
    tracemalloc.stop()
    stats = snapshot.statistics("lineno")
    total = sum(s.size for s in stats)
    lines = [f"streams: {n}; traced memory held per stream: {total / n:.0f} B; top sites:"]
    for stat in stats[:30]:
        frame = stat.traceback[0]
        where = "/".join(frame.filename.split("/")[-2:])
        size, count = stat.size / n, stat.count / n
        lines.append(f"  {size:7.0f} B {count:6.2f} blocks  {where}:{frame.lineno}")
    types = _type_counts()
    types.subtract(_Mark.types)
    lines.append("gc-tracked objects per stream, by type:")
    lines.extend(f"  {k / n:6.2f}  {name}" for name, k in types.most_common(25) if k > 0)
    return "\n".join(lines) + "\n"


# -- the apps ----------------------------------------------------------------------------------


def _starlette_app(make_response: Callable[[], Any]) -> ASGIApp:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def events(request: Request) -> Response:
        response: Response = make_response()
        return response

    return _wrap(Starlette(routes=[Route("/events", events)]))


def _hand_response() -> Any:
    from starlette.responses import StreamingResponse

    return StreamingResponse(_hand_pings(), media_type="text/event-stream")


def _sse_starlette_response() -> Any:
    from sse_starlette import EventSourceResponse

    return EventSourceResponse(_async_idle(), ping=max(1, round(INTERVAL)))


_sync_factory = _sync_source_factory()

#: ssekit's `SSEApp` over an async source that waits forever.
ssekit_async = _wrap(SSEApp(lambda request: _async_idle(), heartbeat=INTERVAL))
#: ssekit's `SSEApp` over a sync source blocked the documented way (see SSEKIT_IDLE_SYNC_SOURCE).
ssekit_sync = _wrap(SSEApp(lambda request: _sync_factory(), heartbeat=INTERVAL))
#: A hand-written Starlette `StreamingResponse` that writes `: ping` every interval.
starlette_hand = _starlette_app(_hand_response)
#: sse-starlette's `EventSourceResponse` with `ping=interval`.
sse_starlette = _starlette_app(_sse_starlette_response)
