"""gunicorn operations end to end: `-c python:ssekit.gunicorn`, real gunicorn, real signals.

`apps.ops_app:app` (Flask, `init_app(app, StreamRegistry(farewell=..., retry=500))`) runs under
gunicorn in a subprocess, one worker of `gthread` or `gevent`, with gunicorn's own graceful
timeout (30 s) left as it is:

- 20 open streams and a SIGTERM (or SIGINT, gunicorn's quick shutdown) to the master: every
  client gets the farewell and `retry: 500`, its response ends cleanly, and gunicorn (worker and
  master) is gone well before the graceful timeout could be what ended it.  The exact figures
  are `benchmarks/bench_shutdown.py`'s.
- With the registry at `max_streams` (the hook's default from `--threads`, or the app's own), the
  next stream request gets 503 with `Retry-After` at once, an ordinary view still answers 200,
  and once a client leaves, a stream is admitted again.
- ssekit imported before gevent's patching (as the master does for the `-c` setup): async
  streams started at once by many greenlets all finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from apps.ops_app import FAREWELL, FAREWELL_RETRY, MAX_STREAMS_ENV
from support.waiting import free_port, wait_until

from ssekit import EventParser, MessageEvent

pytestmark = pytest.mark.timeout(120)

TESTS_DIR = Path(__file__).resolve().parent
WORKERS = ("gthread", "gevent")
#: Streams open when the SIGTERM arrives.
STREAMS = 20
#: gunicorn must be gone this soon after the SIGTERM: far above what it takes (well under 2 s,
#: see benchmarks/bench_shutdown.py), far below the 30 s graceful timeout it replaces.
EXIT_BOUND = 10.0
#: How long the test waits for what takes far less (start-up, first events, answers).
DEADLINE = 30.0


class Gunicorn:
    """`python -m gunicorn -c python:ssekit.gunicorn ... apps.ops_app:app`, stderr in a file."""

    def __init__(
        self, worker: str, workdir: Path, *, threads: int = 32, env: dict[str, str] | None = None
    ) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.stderr_path = workdir / f"gunicorn-{worker}.stderr"
        command = [
            sys.executable, "-m", "gunicorn",
            "-c", "python:ssekit.gunicorn",
            "--bind", self.url.removeprefix("http://"),
            "--worker-class", worker,
            "--workers", "1",
            "--threads", str(threads),
            "--graceful-timeout", "30",
            "--log-level", "warning",
            "apps.ops_app:app",
        ]  # fmt: skip
        self._stderr = self.stderr_path.open("wb")
        self.process = subprocess.Popen(
            command,
            cwd=TESTS_DIR,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            env={**os.environ, **(env or {})},
        )

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_ready(self) -> None:
        def answers() -> bool:
            assert self.process.poll() is None, f"gunicorn exited:\n{self.stderr()}"
            with contextlib.suppress(httpx.TransportError):
                return httpx.get(f"{self.url}/health", timeout=2.0).status_code == 200
            return False

        wait_until(answers, "gunicorn answers /health", timeout=DEADLINE)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(DEADLINE)
        self._stderr.close()


@contextlib.contextmanager
def gunicorn(worker: str, workdir: Path, **kwargs: Any) -> Iterator[Gunicorn]:
    server = Gunicorn(worker, workdir, **kwargs)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


class Client:
    """One stream's client: the events it got, its `retry`, how it ended."""

    def __init__(self) -> None:
        self.first = asyncio.Event()
        self.events: list[MessageEvent] = []
        self.retry: int | None = None
        self.error: BaseException | None = None
        self.ended = False

    async def read(self, client: httpx.AsyncClient, url: str) -> None:
        parser = EventParser()
        try:
            async with client.stream("GET", url) as response:
                assert response.status_code == 200, response.status_code
                async for chunk in response.aiter_raw():
                    self.events.extend(parser.feed(chunk))
                    if self.events:
                        self.first.set()
            parser.end_of_stream()
            self.retry = parser.retry
            self.ended = True
        except Exception as exc:
            self.error = exc
            self.first.set()  # nothing more will come


def async_client(connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(timeout=httpx.Timeout(DEADLINE), limits=limits)


async def signal_with_open_streams(
    server: Gunicorn, kind: str, signum: int
) -> tuple[list[Client], float]:
    """Open `STREAMS` streams, signal the master once each has ticked; the clients and the
    seconds from the signal to gunicorn's exit."""
    url = f"{server.url}/stream?kind={kind}&interval=0.1"
    clients = [Client() for _ in range(STREAMS)]
    async with async_client(STREAMS) as http:
        tasks = [asyncio.create_task(c.read(http, url)) for c in clients]
        await asyncio.wait_for(asyncio.gather(*(c.first.wait() for c in clients)), DEADLINE)
        assert [c.error for c in clients] == [None] * STREAMS
        sent_at = time.monotonic()
        server.process.send_signal(signum)
        while server.process.poll() is None:
            assert time.monotonic() - sent_at < DEADLINE, "gunicorn did not exit"
            await asyncio.sleep(0.005)
        exit_seconds = time.monotonic() - sent_at
        await asyncio.wait_for(asyncio.gather(*tasks), DEADLINE)
    return clients, exit_seconds


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("worker", WORKERS)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_gives_every_stream_its_farewell_and_the_worker_exits(
    signum: int, worker: str, kind: str, tmp_path: Path
) -> None:
    """20 streams, SIGTERM (graceful) or SIGINT (gunicorn's quick shutdown, `worker_int`):
    20/20 clients get the farewell and `retry: 500` after their ticks, their responses end
    cleanly, and gunicorn exits at once (status 0), not at the graceful timeout."""
    with gunicorn(worker, tmp_path) as server:
        clients, exit_seconds = asyncio.run(signal_with_open_streams(server, kind, signum))
        assert server.process.returncode == 0, server.stderr()
    for number, client in enumerate(clients):
        assert client.error is None, f"stream {number}: {client.error!r}"
        assert client.ended
        *ticks, last = client.events
        assert last == MessageEvent("message", FAREWELL, ""), f"stream {number}: {last}"
        assert [e.data for e in ticks] == [str(n) for n in range(len(ticks))]
        assert ticks, f"stream {number} got no tick"
        assert client.retry == FAREWELL_RETRY
    assert exit_seconds < EXIT_BOUND
    assert "Traceback" not in server.stderr()
    assert "graceful timeout" not in server.stderr().lower()


def hold_streams(
    server: Gunicorn, count: int, stack: contextlib.ExitStack
) -> list[tuple[httpx.Response, Iterator[bytes]]]:
    """Open `count` streams that stay open until `stack` closes; each has sent its preamble.

    Their body iterators are returned too: httpx closes the connection of one dropped midway.
    """
    held = []
    for _ in range(count):
        http = stack.enter_context(httpx.Client(timeout=DEADLINE))
        response = stack.enter_context(http.stream("GET", f"{server.url}/stream?interval=0.1"))
        assert response.status_code == 200
        chunks = response.iter_raw()
        next(chunks)  # the stream is open and tracked
        held.append((response, chunks))
    return held


def assert_refused_at_once(server: Gunicorn) -> None:
    """The next stream request: 503 with `Retry-After` and a short reason, not a wait."""
    response = httpx.get(f"{server.url}/stream?interval=0.1", timeout=DEADLINE)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"  # the registry's retry (500 ms), rounded up
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "Too many open streams; try again later."


@pytest.mark.parametrize(
    ("worker", "threads", "env", "cap"),
    [
        # the hook's default: 3/4 of the threads, so 2 of 8 stay for other routes and 503s
        ("gthread", 8, {}, 6),
        ("gthread", 16, {MAX_STREAMS_ENV: "3"}, 3),  # the app's own max_streams wins
        ("gevent", 1, {MAX_STREAMS_ENV: "5"}, 5),
    ],
    ids=["gthread-default", "gthread-own", "gevent-own"],
)
def test_beyond_max_streams_a_stream_gets_503_at_once_and_plain_routes_answer(
    worker: str, threads: int, env: dict[str, str], cap: int, tmp_path: Path
) -> None:
    """`cap` streams open: the next gets 503 + `Retry-After`, `/plain` answers 200 (repeatedly);
    when one client leaves, a new stream is admitted."""
    with gunicorn(worker, tmp_path, threads=threads, env=env) as server:
        with contextlib.ExitStack() as stack:
            held = hold_streams(server, cap, stack)
            for _ in range(3):
                assert_refused_at_once(server)
                plain = httpx.get(f"{server.url}/plain", timeout=DEADLINE)
                assert (plain.status_code, plain.text) == (200, "plain")
            response, _ = held.pop()
            response.close()  # one client leaves: the server notices before its next write

            def admitted() -> bool:
                url = f"{server.url}/stream?interval=0.1"
                with httpx.Client(timeout=DEADLINE) as http, http.stream("GET", url) as response:
                    return response.status_code == 200

            wait_until(admitted, "a stream admitted after a client left", timeout=DEADLINE)
        assert "Traceback" not in server.stderr()


def test_async_streams_under_gevent_with_ssekit_imported_before_the_patching() -> None:
    """gunicorn's master imports ssekit for `-c python:ssekit.gunicorn` before the gevent worker
    patches: a lock made at import is then a real one.  50 greenlets starting async-source
    streams at once must all finish (a real lock held across a greenlet switch would block the
    process for good)."""
    done = subprocess.run(
        [sys.executable, "-m", "apps.gevent_after_import", "50"],
        cwd=TESTS_DIR,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok", "150"]
