"""The Django example (`examples/django_app/`) runs: served in a subprocess (Django's settings
belong to a process) by Django's `runserver`, gunicorn's gthread worker and uvicorn, and read
with httpx.  Its progress stream resumes from `Last-Event-ID`, its async view ticks, and a
SIGTERM ends an open stream with the registry's farewell."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.sse_reader import SSEReader
from support.waiting import free_port

from ssekit.testing import read_events

pytestmark = pytest.mark.timeout(60)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "django_app"
ROOT = EXAMPLE.parent.parent
TIMEOUT = 10.0  # for reads: the example emits an event every 0.2 to 1 s
START_DEADLINE = 30.0


def command(server: str, port: int) -> list[str]:
    bind = f"127.0.0.1:{port}"
    if server == "runserver":
        return [sys.executable, "app.py", "runserver", "--noreload", bind]
    if server == "gthread":
        return [
            *(sys.executable, "-m", "gunicorn", "--bind", bind, "-k", "gthread"),
            *("--threads", "8", "--graceful-timeout", "5", "wsgi:application"),
        ]
    return [
        *(sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port)),
        *("--timeout-graceful-shutdown", "5", "asgi:application"),
    ]


@contextlib.contextmanager
def serve(server: str, workdir: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """The example under `server` in a subprocess; its process and base URL."""
    port = free_port()
    stderr_path = workdir / "server.stderr"
    stderr = stderr_path.open("wb")
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    process = subprocess.Popen(
        command(server, port),
        cwd=EXAMPLE,
        env={**os.environ, "PYTHONPATH": path},
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_DEADLINE
        while True:
            assert process.poll() is None, stderr_path.read_text()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, f"{server} did not start"
            time.sleep(0.05)
        yield process, url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(15)
        stderr.close()


def get_events(url: str, n: int, headers: dict[str, str] | None = None) -> list[tuple[str, ...]]:
    """The first `n` events of the stream at `url`, as (type, data, last event id)."""
    with (
        httpx.Client(timeout=TIMEOUT) as client,
        client.stream("GET", url, headers=headers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        return [(e.type, e.data, e.last_event_id) for e in read_events(response, n, timeout=20)]


@pytest.mark.parametrize("server", ["runserver", "gthread", "uvicorn"])
def test_the_example_streams_resumes_and_ticks(server: str, tmp_path: Path) -> None:
    """/progress counts steps from 1 and resumes after the Last-Event-ID (header or query
    parameter) with a `done` event at the end; a bad id is a 400; the page is served; /ticks
    (an async `@sse` view) streams its dicts as JSON."""
    with serve(server, tmp_path) as (_, url):
        assert get_events(f"{url}/progress", 2) == [
            ("message", '{"percent": 10}', "1"),
            ("message", '{"percent": 20}', "2"),
        ]
        resumed = [
            ("message", '{"percent": 90}', "9"),
            ("message", '{"percent": 100}', "10"),
            ("done", "finished", "10"),
        ]
        assert get_events(f"{url}/progress", 3, {"Last-Event-ID": "8"}) == resumed
        assert get_events(f"{url}/progress?lastEventId=8", 3) == resumed
        assert get_events(f"{url}/ticks", 2) == [
            ("message", '{"tick":0}', ""),
            ("message", '{"tick":1}', ""),
        ]
        with httpx.Client(timeout=TIMEOUT) as client:
            assert client.get(f"{url}/progress", headers={"Last-Event-ID": "x"}).status_code == 400
            page = client.get(f"{url}/")
        assert 'new EventSource("/progress")' in page.text


@pytest.mark.parametrize("server", ["gthread", "uvicorn"])
def test_sigterm_ends_an_open_stream_with_the_farewell(server: str, tmp_path: Path) -> None:
    """SIGTERM while /ticks streams: the stream ends with the registry's farewell and its
    `retry:` hint, and the server exits."""
    with (
        serve(server, tmp_path) as (process, url),
        httpx.Client(timeout=TIMEOUT) as client,
        client.stream("GET", f"{url}/ticks") as response,
    ):
        reader = SSEReader(response)
        assert [e.data for e in reader.events(1)] == ['{"tick":0}']
        process.send_signal(signal.SIGTERM)
        assert reader.rest()[-1].data == "server restarting"
        assert reader.raw.endswith(b"data: server restarting\n\nretry: 1000\n\n")
        assert process.wait(15) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
