"""Real WSGI servers for end-to-end tests, and what the tests need to talk to them.

- `werkzeug_server(app)`: werkzeug's threaded development server in a thread, on a free port.
- `gunicorn_server(target, worker_class, ...)`: gunicorn in a subprocess (`python -m gunicorn`)
  on a free port, `--chdir` to the tests directory so `apps.*` is importable; ready once
  `/health` answers, stopped with SIGTERM.
- `serve(name, ...)`: either of them, as a `Server` (what the module-scoped fixtures yield).
- `EventLog`: the file a gunicorn-served source reports to (see `apps`), polled with a deadline.
- `assert_sse_headers`, `sync_worker_warnings`: checks the adapter tests share.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from apps import EVENTS_ENV
from werkzeug.serving import make_server

from support.waiting import free_port, wait_healthy

#: The directory gunicorn runs in, so that `apps.wsgi_app` and `apps.flask_app` import.
TESTS_DIR = Path(__file__).resolve().parent.parent
#: How long a server may take to start or to stop (far more than it needs).
START_DEADLINE = 30.0
STOP_DEADLINE = 15.0
#: How often the event log is read again.
POLL_INTERVAL = 0.02


class EventLog:
    """The lines `<kind> <tag> <unix time>` that the test apps' sources append to a file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()

    def entries(self) -> list[tuple[str, str, float]]:
        """Every complete line so far (one being written is left for the next look)."""
        found = []
        for line in self.path.read_text(encoding="utf-8").split("\n")[:-1]:
            kind, tag, stamp = line.split(" ")
            found.append((kind, tag, float(stamp)))
        return found

    def find(self, kind: str, tag: str) -> float | None:
        """When `kind` was logged for `tag` (unix time), or None if it has not been."""
        for found_kind, found_tag, stamp in self.entries():
            if (found_kind, found_tag) == (kind, tag):
                return stamp
        return None

    def record(self, kind: str, tag: str) -> None:
        """Append `<kind> <tag> <time>` (e.g. "release", which lets a slow source go on)."""
        with self.path.open("a", encoding="utf-8") as log:
            log.write(f"{kind} {tag} {time.time():.6f}\n")

    def wait_for(self, kind: str, tag: str, timeout: float = 10.0) -> float:
        """Poll until `kind` is logged for `tag`; return its time, or fail after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            stamp = self.find(kind, tag)
            if stamp is not None:
                return stamp
            if time.monotonic() > deadline:
                raise AssertionError(f"{kind!r} was not logged for {tag!r} within {timeout} s")
            time.sleep(POLL_INTERVAL)


@dataclass
class Server:
    """A running server as the tests see it."""

    #: "werkzeug", or the gunicorn worker class.
    name: str
    url: str
    events: EventLog
    #: The server's stderr so far (gunicorn only).
    stderr: Callable[[], str] = field(default=lambda: "")


@contextlib.contextmanager
def werkzeug_server(app: Any) -> Iterator[str]:
    """Serve `app` with werkzeug's threaded server in a thread; yield its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="werkzeug-server"
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(STOP_DEADLINE)
        assert not thread.is_alive(), "werkzeug's server thread did not stop"


class Gunicorn:
    """gunicorn in a subprocess: one worker of `worker_class`, its stderr in a file."""

    def __init__(
        self,
        target: str,
        worker_class: str,
        *,
        workdir: Path,
        env: Mapping[str, str] | None = None,
        threads: int = 16,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stderr_path = workdir / f"gunicorn-{worker_class}-{self.port}.stderr"
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--worker-class",
            worker_class,
            "--workers",
            "1",
            "--chdir",
            str(TESTS_DIR),
            "--graceful-timeout",
            "5",
            "--log-level",
            "warning",
        ]
        if worker_class == "gthread":
            command += ["--threads", str(threads)]
        command.append(target)
        self._stderr = self.stderr_path.open("wb")
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            env={**os.environ, **(env or {})},
            cwd=TESTS_DIR,  # `-m` puts the working directory first on sys.path
        )

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self) -> None:
        """Poll `/health` until it answers 200; fail if gunicorn exits or the deadline passes."""
        wait_healthy(self.process, f"{self.url}/health", "gunicorn", self.stderr, START_DEADLINE)

    def stop(self) -> None:
        """SIGTERM, then wait (SIGKILL if it will not go)."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(STOP_DEADLINE)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(STOP_DEADLINE)
                    raise AssertionError(
                        f"gunicorn did not stop on SIGTERM within {STOP_DEADLINE} s"
                    ) from None
        finally:
            self._stderr.close()


@contextlib.contextmanager
def gunicorn_server(
    target: str,
    worker_class: str,
    *,
    workdir: Path,
    env: Mapping[str, str] | None = None,
) -> Iterator[Gunicorn]:
    """Run gunicorn serving `target` (e.g. "apps.flask_app:create_app()") until the block ends."""
    server = Gunicorn(target, worker_class, workdir=workdir, env=env)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def serve(
    name: str, target: str, create_app: Callable[[str], Any], workdir: Path
) -> Iterator[Server]:
    """Serve an app under `name`: "werkzeug" in-process (`create_app(log)`), else gunicorn
    with that worker class (`target`, the log path in the environment)."""
    events = EventLog(workdir / "events.log")
    if name == "werkzeug":
        app = create_app(str(events.path))
        with werkzeug_server(app) as url:
            yield Server(name, url, events)
        return
    env = {EVENTS_ENV: str(events.path)}
    with gunicorn_server(target, name, workdir=workdir, env=env) as gunicorn:
        yield Server(name, gunicorn.url, events, stderr=gunicorn.stderr)


# -- what the adapter tests check --------------------------------------------------------------

#: What every stream starts with.
PREAMBLE = b": ok\n\n"
#: The headers of every stream (names in lower case).
SSE_HEADERS = {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
}


def client() -> httpx.Client:
    """An httpx client whose reads give up after 10 s (the test apps' heartbeat is far shorter)."""
    return httpx.Client(timeout=httpx.Timeout(10.0))


def new_tag() -> str:
    return uuid.uuid4().hex


def assert_sse_headers(response: httpx.Response) -> None:
    """The SSE headers once each, no Content-Length, at most the server's own Connection header."""
    for name, value in SSE_HEADERS.items():
        assert response.headers.get_list(name) == [value], name
    assert "content-length" not in response.headers
    # werkzeug and gunicorn add a Connection header of their own; ours would make a second
    # (werkzeug) or be dropped (gunicorn): the contract suite checks what the app hands over.
    assert len(response.headers.get_list("connection")) <= 1


def sync_worker_warnings(stderr: str) -> list[str]:
    """The lines ssekit logged about gunicorn's sync worker (not the RuntimeWarning copies)."""
    return [
        line
        for line in stderr.splitlines()
        if "gunicorn's sync worker" in line and "RuntimeWarning" not in line
    ]
