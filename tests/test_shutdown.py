"""Shutdown end to end, with nothing patched: a real server process, a real SIGINT.

`apps.shutdown_server` runs in a subprocess: a Starlette app under `uvicorn.Server.run()`
(`lifespan=registry.lifespan`), or an `SSEWSGIApp` under werkzeug's threaded server inside
`registry.serving()`, with `StreamRegistry(farewell="server going away", retry=500)`.  The server
installs its own signal handlers and the registry chains its handlers in front of them, as in
production.  The tests open many concurrent streams, send SIGINT, and check that every client got
the farewell and the `retry:` hint, that the stream ended cleanly, and that the process exited
promptly; then that a second server started in the same process afterwards streams normally.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from apps.shutdown_server import FAREWELL, FAREWELL_RETRY

from ssekit import EventParser, MessageEvent

pytestmark = pytest.mark.timeout(90)

TESTS_DIR = Path(__file__).resolve().parent
#: Concurrent streams open when the SIGINT arrives.
STREAMS = 50
#: The process (or the round's server) must be gone this soon after the SIGINT.
EXIT_BOUND = 2.0
#: How long the test waits for things that take far less (start-up, first events, the end).
DEADLINE = 20.0
SERVERS = ("uvicorn", "werkzeug")


class ServerProcess:
    """`python -m apps.shutdown_server ...` with its stdout lines in a queue, stderr in a file."""

    def __init__(self, args: list[str], workdir: Path) -> None:
        self.stderr_path = workdir / "server.stderr"
        self._stderr = self.stderr_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "apps.shutdown_server", *args],
            cwd=TESTS_DIR,  # `-m` puts the working directory first on sys.path
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, name="server-stdout", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, prefix: str, timeout: float = DEADLINE) -> str:
        """The next stdout line, which must start with `prefix`; return the rest of it."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"no {prefix!r} line within {timeout} s; stderr: {self.stderr()}"
            ) from None
        self.seen.append(line)
        assert line.startswith(prefix), f"expected {prefix!r}, got {line!r}: {self.stderr()}"
        return line[len(prefix) :].strip()

    def url(self) -> str:
        """The next round's base URL, once it answers `/health`."""
        url = f"http://127.0.0.1:{int(self.expect('port'))}"
        response = httpx.get(f"{url}/health", timeout=DEADLINE)
        assert response.text == "ok"
        return url

    def interrupt(self) -> float:
        """Send SIGINT; return when (monotonic seconds)."""
        sent_at = time.monotonic()
        self.process.send_signal(signal.SIGINT)
        return sent_at

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(DEADLINE)
        self._reader.join(DEADLINE)
        self._stderr.close()
        assert self.process.stdout is not None
        self.process.stdout.close()


@contextlib.contextmanager
def server_process(args: list[str], workdir: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(args, workdir)
    try:
        yield server
    finally:
        server.stop()


async def wait_exit(process: subprocess.Popen[str], sent_at: float) -> tuple[int, float]:
    """Poll (without blocking the loop) until `process` exits; its status and the seconds since
    `sent_at`."""
    deadline = sent_at + DEADLINE
    while process.poll() is None:
        assert time.monotonic() < deadline, f"the process did not exit within {DEADLINE} s"
        await asyncio.sleep(0.005)
    return process.returncode, time.monotonic() - sent_at


async def wait_line(server: ServerProcess, prefix: str, sent_at: float) -> tuple[str, float]:
    """Wait for the stdout line starting with `prefix`; return the rest of it and the seconds
    since `sent_at`."""
    rest = await asyncio.to_thread(server.expect, prefix)
    return rest, time.monotonic() - sent_at


@dataclass
class Stream:
    """One client's stream: the events it received, how it ended."""

    first: asyncio.Event = field(default_factory=asyncio.Event)
    events: list[MessageEvent] = field(default_factory=list)
    retry: int | None = None
    #: The exception the client saw, if the stream did not end cleanly.
    error: BaseException | None = None
    ended: bool = False


async def read_stream(client: httpx.AsyncClient, url: str, stream: Stream) -> None:
    """Read a stream to its end, parsing events as they come."""
    parser = EventParser()
    try:
        async with client.stream("GET", url) as response:
            assert response.status_code == 200
            async for chunk in response.aiter_raw():
                stream.events.extend(parser.feed(chunk))
                if stream.events:
                    stream.first.set()
        parser.end_of_stream()
        stream.retry = parser.retry
        stream.ended = True
    except Exception as exc:
        stream.error = exc
        stream.first.set()  # do not let the test wait for a first event that cannot come


def async_client(connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(timeout=httpx.Timeout(DEADLINE), limits=limits)


async def open_streams(
    client: httpx.AsyncClient, url: str, count: int
) -> tuple[list[Stream], list[asyncio.Task[None]]]:
    """Open `count` streams; return once each has received its first event."""
    streams = [Stream() for _ in range(count)]
    tasks = [asyncio.create_task(read_stream(client, url, stream)) for stream in streams]
    await asyncio.wait_for(asyncio.gather(*(s.first.wait() for s in streams)), DEADLINE)
    for stream in streams:
        assert stream.error is None, f"a stream failed before the shutdown: {stream.error!r}"
    return streams, tasks


def assert_farewell(streams: list[Stream]) -> None:
    """Every stream ticked, then got the farewell and `retry: 500`, then ended cleanly."""
    for number, stream in enumerate(streams):
        assert stream.error is None, f"stream {number} did not end cleanly: {stream.error!r}"
        assert stream.ended
        *ticks, last = stream.events
        assert last == MessageEvent("message", FAREWELL, ""), f"stream {number}: {last}"
        assert ticks, f"stream {number} got no tick before the farewell"
        assert [event.data for event in ticks] == [str(n) for n in range(len(ticks))]
        assert stream.retry == FAREWELL_RETRY, f"stream {number} got retry {stream.retry}"


@pytest.mark.parametrize("kind", ["async", "sync"])
@pytest.mark.parametrize("server_name", SERVERS)
def test_sigint_ends_every_stream_with_the_farewell_and_the_process_exits(
    server_name: str, kind: str, tmp_path: Path
) -> None:
    """50 open streams, one SIGINT: each client gets "server going away" and `retry: 500`
    before a clean end of its response, and the process exits within 2 s, with status 0."""

    async def scenario(server: ServerProcess) -> tuple[int, float]:
        url = f"{server.url()}/stream?kind={kind}&interval=0.1"
        async with async_client(STREAMS + 5) as client:
            streams, tasks = await open_streams(client, url, STREAMS)
            sent_at = server.interrupt()
            returncode, exit_seconds = await wait_exit(server.process, sent_at)
            await asyncio.wait_for(asyncio.gather(*tasks), DEADLINE)
        assert_farewell(streams)
        return returncode, exit_seconds

    with server_process(["--server", server_name], tmp_path) as server:
        returncode, exit_seconds = asyncio.run(scenario(server))
        assert returncode == 0, server.stderr()
        assert exit_seconds < EXIT_BOUND
        assert server.expect("stopped") == "1"
        assert server.expect("exit") == ""
        assert "Traceback" not in server.stderr()


@pytest.mark.parametrize("server_name", SERVERS)
def test_a_second_server_in_the_same_process_streams_normally(
    server_name: str, tmp_path: Path
) -> None:
    """After SIGINT ended a first server (its streams got the farewell), a second server with
    the same app and registry, started in the same process, streams normally: many events, no
    farewell; a second SIGINT ends it the same way and the process exits."""

    async def first_round(server: ServerProcess) -> float:
        url = f"{server.url()}/stream?interval=0.1"
        async with async_client(10) as client:
            streams, tasks = await open_streams(client, url, 5)
            sent_at = server.interrupt()
            stopped, stopped_after = await wait_line(server, "stopped", sent_at)
            await asyncio.wait_for(asyncio.gather(*tasks), DEADLINE)
        assert stopped == "1"
        assert_farewell(streams)
        return stopped_after

    async def second_round(server: ServerProcess) -> tuple[int, float]:
        url = f"{server.url()}/stream?interval=0.05"
        async with async_client(10) as client:
            stream = Stream()
            task = asyncio.create_task(read_stream(client, url, stream))
            deadline = time.monotonic() + DEADLINE
            while len(stream.events) < 10:
                assert not stream.ended, f"the stream ended early: {stream.events}"
                assert stream.error is None, repr(stream.error)
                assert time.monotonic() < deadline, "no 10 events from the second server"
                await asyncio.sleep(0.01)
            assert [e.data for e in stream.events[:10]] == [str(n) for n in range(10)]
            assert not stream.ended
            sent_at = server.interrupt()
            returncode, exit_seconds = await wait_exit(server.process, sent_at)
            await asyncio.wait_for(task, DEADLINE)
        assert_farewell([stream])
        return returncode, exit_seconds

    with server_process(["--server", server_name, "--rounds", "2"], tmp_path) as server:
        stopped_after = asyncio.run(first_round(server))
        assert stopped_after < EXIT_BOUND
        returncode, exit_seconds = asyncio.run(second_round(server))
        assert returncode == 0, server.stderr()
        assert exit_seconds < EXIT_BOUND
        assert server.expect("stopped") == "2"
        assert server.expect("exit") == ""
        assert "Traceback" not in server.stderr()
