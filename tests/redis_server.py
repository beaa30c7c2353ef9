"""A `redis-server` of the tests' own: a free port on 127.0.0.1, AOF persistence, restartable.

    redis-server --port P --bind 127.0.0.1 --dir <tmp>
                 --appendonly yes --appendfsync always --save ""

Every write is on disk before Redis answers it, so a server killed with SIGKILL and started
again on the same directory and port comes back with every entry it acknowledged.  The test
modules wrap it in fixtures (`running_redis()`); Redis tests are skipped only when `redis-server`
is not on PATH (CI installs it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from support.processes import stop_process
from support.waiting import free_port

#: The server binary, or None when it is not installed.
REDIS_SERVER = shutil.which("redis-server")
#: How long the server may take to answer PING after it is started (far more than it needs).
START_DEADLINE = 20.0
STOP_DEADLINE = 10.0
#: How often to try PING while it starts.
POLL_INTERVAL = 0.02


class PortTaken(RuntimeError):
    """Something else took the port between `free_port()` and the server's start."""


class RedisServer:
    """One `redis-server` process; `kill()` then `start()` brings it back on the same port and
    directory (with the data its append-only file kept)."""

    def __init__(self, directory: Path) -> None:
        if REDIS_SERVER is None:
            raise RuntimeError("redis-server is not on PATH")
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        #: How many times the server has been started.
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A new client (the caller closes it)."""
        return redis.Redis.from_url(self.url, socket_connect_timeout=2, socket_timeout=5)

    def start(self) -> None:
        """Start the server and wait until it answers PING (its AOF loaded)."""
        assert REDIS_SERVER is not None
        assert self.process is None or self.process.poll() is not None, "already running"
        self.starts += 1
        log = (self.directory / f"redis-{self.starts}.log").open("wb")
        with log:
            self.process = subprocess.Popen(
                [
                    REDIS_SERVER,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(self.directory),
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "always",
                    "--save",
                    "",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_DEADLINE
        client = self.client()
        try:
            while True:
                if self.process.poll() is not None:
                    log = self.log()
                    if "Address already in use" in log:
                        raise PortTaken(log)
                    raise RuntimeError(f"redis-server exited at start:\n{log}")
                with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                    if client.ping():  # a server still loading its AOF answers LOADING
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not answer in {START_DEADLINE} s")
                time.sleep(POLL_INTERVAL)
        finally:
            client.close()

    def log(self) -> str:
        path = self.directory / f"redis-{self.starts}.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown, no save; what Redis answered is on disk already."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(STOP_DEADLINE)

    def stop(self) -> None:
        """SIGTERM (SIGKILL if it will not go), and wait."""
        stop_process(self.process, STOP_DEADLINE)


@contextlib.contextmanager
def running_redis(directory: Path) -> Iterator[RedisServer]:
    """A started `RedisServer` until the block ends; skips the test if Redis is not installed."""
    if REDIS_SERVER is None:
        if os.environ.get("CI"):  # CI installs it: its absence there is a failure, not a skip
            pytest.fail("redis-server is not on PATH")
        pytest.skip("redis-server is not on PATH")
    server = RedisServer(directory)
    try:
        for attempt in range(3):
            try:
                server.start()
                break
            except PortTaken:
                if attempt == 2:
                    raise
                server.port = free_port()
        yield server
    finally:
        server.stop()
