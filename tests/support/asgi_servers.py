"""Real ASGI servers for end-to-end tests of the ASGI adapters, and what those tests share.

- `uvicorn_server(app)` / `hypercorn_server(app)`: the server serving `app` on 127.0.0.1 on a
  port of the OS's choosing, in a thread of its own; yields the base URL and stops the server
  (and joins its thread) when the block ends.  `ASGI_SERVERS` names them for parametrising.
- `Probe` / `Probes`: what a test source reports (it started, its `finally` ran, when), to wait
  on with a deadline from the test thread; one probe per request, by tag.
- `ticks()` / `aticks()`: endless sync and async sources that report to a probe.
- `SAMPLE_CHUNKS` / `SAMPLE_EVENTS`: chunks of every kind and the events a client must parse
  (`apps.SAMPLE`, the contract suite's).
- `StreamReader`: reads an httpx streaming response chunk by chunk, parsing events as they come;
  `client(url)`: an httpx client for a server's base URL.
- `latency_summary()`: median and maximum of measured figures, for benchmarks' reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import statistics
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import uvicorn
from apps import SAMPLE as SAMPLE_CHUNKS
from apps import SAMPLE_EVENTS

from support.sse_reader import SSEReader
from support.waiting import DEADLINE, wait_until

__all__ = [
    "ASGI_SERVERS",
    "DEADLINE",
    "SAMPLE_CHUNKS",
    "SAMPLE_EVENTS",
    "Probe",
    "Probes",
    "StreamReader",
    "aticks",
    "client",
    "hypercorn_server",
    "latency_summary",
    "serve_asgi",
    "ticks",
    "uvicorn_server",
    "wait_until",
]

#: How long a server may take to start or to stop (far more than it needs).
START_DEADLINE = 15.0
STOP_DEADLINE = 15.0


@contextlib.contextmanager
def uvicorn_server(app: Any, **config: Any) -> Iterator[str]:
    """Serve `app` with uvicorn in a background thread; yield its base URL (`http://127.0.0.1:N`).

    The port is chosen by the OS (port 0).  Signal handlers are not installed (uvicorn only does
    that on the main thread).  On exit the server is asked to stop (`should_exit`) and its thread
    is joined; open streams should be closed by then (uvicorn waits for them, at most
    `timeout_graceful_shutdown` seconds, before it cancels them).
    """
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "log_config": None,  # leave the test process's logging alone
        "log_level": "warning",
        "access_log": False,
        "timeout_graceful_shutdown": 5,
        **config,
    }
    server = uvicorn.Server(uvicorn.Config(app, **settings))
    thread = threading.Thread(target=server.run, name="uvicorn-server", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + START_DEADLINE
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("uvicorn exited before it started serving")
            if time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start within {START_DEADLINE} s")
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(STOP_DEADLINE)
        assert not thread.is_alive(), f"uvicorn did not stop within {STOP_DEADLINE} s"


@contextlib.contextmanager
def hypercorn_server(app: Any) -> Iterator[str]:
    """Serve `app` with hypercorn (asyncio) in a background thread; yield its base URL.

    The listening socket is bound here (port 0) and handed to hypercorn, which owns (and closes)
    it from then on, so the port is known without a race.  On exit hypercorn's shutdown trigger
    fires and its thread is joined; open streams get its graceful timeout before they are
    cancelled.
    """
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{listener.detach()}"]
    config.graceful_timeout = 5.0
    config.accesslog = None
    config.errorlog = None
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    started = threading.Event()
    failed: list[BaseException] = []

    async def main() -> None:
        started.set()
        await serve(app, config, shutdown_trigger=stop.wait)

    def run() -> None:
        try:
            loop.run_until_complete(main())
        except BaseException as error:  # reported to the test thread
            failed.append(error)
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="hypercorn-server", daemon=True)
    thread.start()
    try:
        assert started.wait(START_DEADLINE), "hypercorn's loop did not start"
        url = f"http://127.0.0.1:{port}"
        _wait_answering(url, thread, "hypercorn")
        yield url
    finally:
        if not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended on its own
                loop.call_soon_threadsafe(stop.set)
        thread.join(STOP_DEADLINE)
        assert not thread.is_alive(), f"hypercorn did not stop within {STOP_DEADLINE} s"
        assert not failed, f"hypercorn failed: {failed[0]!r}"


def _wait_answering(url: str, thread: threading.Thread, name: str) -> None:
    """Connect until the server accepts (its thread must stay alive meanwhile)."""
    host, port = url.removeprefix("http://").split(":")
    deadline = time.monotonic() + START_DEADLINE
    while True:
        if not thread.is_alive():
            raise RuntimeError(f"{name} exited before it started serving")
        try:
            with socket.create_connection((host, int(port)), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start within {START_DEADLINE} s") from None
            time.sleep(0.01)


#: The ASGI servers the contract suite runs every ASGI adapter under.
ASGI_SERVERS: dict[str, Callable[[Any], contextlib.AbstractContextManager[str]]] = {
    "uvicorn": uvicorn_server,
    "hypercorn": hypercorn_server,
}


def serve_asgi(name: str, app: Any) -> contextlib.AbstractContextManager[str]:
    """Serve `app` with the ASGI server called `name` ("uvicorn" or "hypercorn")."""
    return ASGI_SERVERS[name](app)


class Probe:
    """What a source reports from its thread or task: started, items produced, finally ran."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.closed = threading.Event()
        #: `time.monotonic()` when the source's `finally` ran.
        self.closed_at: float | None = None
        #: Whatever the source wants to record (e.g. the Last-Event-ID it was given).
        self.seen: list[Any] = []
        #: How many chunks the source has produced, for sources that count them.
        self.produced = 0
        #: Set by the test to let a source that waits for it go on.
        self.release = threading.Event()

    def close(self) -> None:
        """Call it in the source's `finally`."""
        self.closed_at = time.monotonic()
        self.closed.set()

    def wait_closed(self, timeout: float = DEADLINE) -> float:
        """Wait until the source's `finally` has run; return when it ran (monotonic seconds)."""
        assert self.closed.wait(timeout), f"the source was not closed within {timeout} s"
        assert self.closed_at is not None
        return self.closed_at


class Probes:
    """One `Probe` per tag (e.g. the `tag` query parameter of a request), created on first use."""

    def __init__(self) -> None:
        self._probes: dict[str, Probe] = {}
        self._lock = threading.Lock()

    def __getitem__(self, tag: str) -> Probe:
        with self._lock:
            return self._probes.setdefault(tag, Probe())

    def __len__(self) -> int:
        with self._lock:
            return len(self._probes)


def ticks(probe: Probe, interval: float | None = None) -> Iterator[int]:
    """Yield 0, 1, 2... forever, blocking `interval` s in `next()` after each (None: never)."""
    probe.started.set()
    try:
        n = 0
        while True:
            yield n
            n += 1
            if interval is not None:
                time.sleep(interval)
    finally:
        probe.close()


async def aticks(probe: Probe, interval: float | None = None) -> AsyncIterator[int]:
    """Yield 0, 1, 2... forever, awaiting `interval` s after each (None: never suspends)."""
    probe.started.set()
    try:
        n = 0
        while True:
            yield n
            n += 1
            if interval is not None:
                await asyncio.sleep(interval)
    finally:
        probe.close()


def client(base_url: str) -> httpx.Client:
    """An httpx client for `base_url` whose reads give up after 5 s (rather than hang)."""
    return httpx.Client(base_url=base_url, timeout=httpx.Timeout(5.0))


#: The reader the ASGI tests use (the same as the WSGI tests' `SSEReader`).
StreamReader = SSEReader


def latency_summary(name: str, seconds: list[float]) -> str:
    """`name: n=10 median 3.1 ms max 7.9 ms`, for a benchmark's report."""
    median = statistics.median(seconds) * 1000
    worst = max(seconds) * 1000
    return f"{name}: n={len(seconds)} median {median:.1f} ms max {worst:.1f} ms"
