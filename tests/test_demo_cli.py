"""`python -m ssekit demo`, the README's first command, run as a process of its own.

It must come up, answer `GET /api/ask?q=hello` (what `curl -N` reads) with its first event within
a second of the request, and stop promptly on SIGINT (Ctrl+C), even with a stream open: the
open reply ends (its partial text is kept) instead of holding the server.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fake_anthropic import REPLY_DELTAS, FakeAnthropic
from support.asgi_servers import StreamReader, uvicorn_server
from support.waiting import free_port

from ssekit.ai import DemoEngine
from ssekit.demo import SESSION_COOKIE
from ssekit.memory import SQLiteMemory

pytestmark = pytest.mark.timeout(60)

#: How long the process may take to start listening, and to exit (far more than it needs).
START_DEADLINE = 30.0
EXIT_DEADLINE = 10.0
#: The issue's criterion: the first event within a second of the request.
FIRST_EVENT_LIMIT = 1.0


class DemoProcess:
    """`python -m ssekit demo --port P --db D` started in `directory` (`env` added to its
    environment)."""

    def __init__(self, directory: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.database = directory / "demo.sqlite3"
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "ssekit", "demo", "--port", str(self.port)]
        command += ["--db", str(self.database), *args]
        self.process = subprocess.Popen(
            command,
            cwd=directory,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )

    def wait_listening(self) -> float:
        """Wait until the port accepts connections; return how long that took from now."""
        started = time.monotonic()
        deadline = started + START_DEADLINE
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"the demo exited at start:\n{self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return time.monotonic() - started
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("the demo did not listen in time") from None
                time.sleep(0.05)

    def interrupt(self) -> float:
        """SIGINT, as Ctrl+C sends; return how long the process took to exit."""
        sent = time.monotonic()
        self.process.send_signal(signal.SIGINT)
        self.process.wait(EXIT_DEADLINE)
        return time.monotonic() - sent

    def output(self) -> str:
        if self.process.poll() is None:
            return "(still running)"
        assert self.process.stdout is not None
        return self.process.stdout.read().decode("utf-8", "replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(EXIT_DEADLINE)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def start_demo(tmp_path: Path) -> Iterator[Callable[..., DemoProcess]]:
    """Starts demo processes in `tmp_path`; kills any still running after the test."""
    started: list[DemoProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> DemoProcess:
        demo = DemoProcess(tmp_path, *args, env=env)
        started.append(demo)
        return demo

    yield start
    for demo in started:
        demo.stop()


def test_the_demo_streams_its_first_event_within_a_second(
    start_demo: Callable[..., DemoProcess],
) -> None:
    """The demo comes up; `GET /api/ask?q=hello` is an event stream whose first event arrives
    within 1 s of the request, whose messages make the demo engine's reply, ending with a `done`
    event; SIGINT then stops the process promptly, with exit status 0."""
    demo = start_demo()
    demo.wait_listening()
    with httpx.Client(timeout=10) as client:
        requested = time.monotonic()
        with client.stream("GET", f"{demo.url}/api/ask?q=hello") as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
            reader = StreamReader(response)
            first = reader.events(1)
            first_event = time.monotonic() - requested
            events = first + reader.rest()
    assert [event.type for event in events[:-1]] == ["message"] * (len(events) - 1)
    reply = "".join(json.loads(event.data)["content"] for event in events[:-1])
    assert reply == DemoEngine().answer([{"role": "user", "content": "hello"}])
    assert (events[-1].type, events[-1].data) == ("done", "[DONE]")
    demo.interrupt()
    assert first_event < FIRST_EVENT_LIMIT
    assert demo.process.returncode == 0, demo.output()
    assert f"ssekit demo on {demo.url}/" in demo.output()


def test_sigint_with_a_stream_open_ends_it_and_exits_promptly(
    start_demo: Callable[..., DemoProcess],
) -> None:
    """A slow reply (0.5 s per token, ~18 s in all) is streaming when SIGINT arrives: the stream
    ends at once (the client's response finishes), the process exits well before the reply
    would have, with status 0, and what was streamed is kept as a partial reply."""
    demo = start_demo("--delay", "0.5")
    demo.wait_listening()
    with (
        httpx.Client(timeout=10) as client,
        client.stream("GET", f"{demo.url}/api/ask?q=hello") as response,
    ):
        session = response.cookies[SESSION_COOKIE]
        reader = StreamReader(response)
        received = [json.loads(event.data)["content"] for event in reader.events(2)]
        took = demo.interrupt()
        rest = reader.rest()
    assert took < EXIT_DEADLINE
    assert demo.process.returncode == 0, demo.output()
    assert all(event.type == "message" for event in rest)
    received += [json.loads(event.data)["content"] for event in rest]
    messages = SQLiteMemory(str(demo.database), parent=("ChatSession", session)).get_messages()
    assert messages[0] == {"role": "user", "content": "hello"}
    assert messages[1]["partial"] is True
    assert messages[1]["content"].startswith("".join(received))
    assert len(messages) == 2


def test_allowed_host_adds_a_name_the_demo_answers_to(
    start_demo: Callable[..., DemoProcess],
) -> None:
    """`--allowed-host chat.example` serves requests for that name; another name (a DNS-rebound
    one) gets 400, while 127.0.0.1 and localhost are always served."""
    demo = start_demo("--allowed-host", "chat.example")
    demo.wait_listening()
    with httpx.Client(timeout=10) as client:
        for host, status in [
            ("chat.example", 200),
            ("localhost", 200),
            (f"127.0.0.1:{demo.port}", 200),
            ("evil.example", 400),
        ]:
            assert client.get(f"{demo.url}/", headers={"Host": host}).status_code == status, host
    demo.interrupt()
    assert demo.process.returncode == 0, demo.output()


def test_provider_anthropic_chats_through_anthropic_s_api(
    start_demo: Callable[..., DemoProcess],
) -> None:
    """`--provider anthropic --base-url <fake Anthropic>`: a chat through the demo (page cookie,
    `POST /api/chat`, the reply's stream) shows the fake's streamed text, which the chat then
    stores; the fake was called with the key from `$ANTHROPIC_API_KEY`, the `--model`, and the
    chat's message."""
    fake = FakeAnthropic()
    with uvicorn_server(fake.app) as fake_url:
        demo = start_demo(
            "--provider", "anthropic", "--base-url", f"{fake_url}/v1", "--model", "claude-test",
            env={"ANTHROPIC_API_KEY": "sk-ant-test", "SSEKIT_BASE_URL": ""},
        )  # fmt: skip
        demo.wait_listening()
        with httpx.Client(timeout=10) as client:
            client.get(f"{demo.url}/")
            headers = {"Origin": demo.url}
            answer = client.post(f"{demo.url}/api/chat", json={"content": "Hi"}, headers=headers)
            assert answer.status_code == 200, answer.text
            with client.stream("GET", f"{demo.url}/api/replies/{answer.json()['reply']}") as reply:
                events = StreamReader(reply).rest()
            session = client.cookies[SESSION_COOKIE]
        demo.interrupt()
        call = fake.last_call()
    assert [event.type for event in events] == ["message"] * (len(events) - 1) + ["done"]
    text = "".join(json.loads(event.data)["content"] for event in events[:-1])
    assert text == "".join(REPLY_DELTAS)
    assert json.loads(events[-1].data) == {"outcome": "done"}
    assert call.headers["x-api-key"] == "sk-ant-test"
    assert call.body["model"] == "claude-test"
    assert call.body["messages"] == [{"role": "user", "content": "Hi"}]
    memory = SQLiteMemory(str(demo.database), parent=("ChatSession", session))
    assert memory.get_messages()[-1] == {"role": "assistant", "content": text}
    assert demo.process.returncode == 0, demo.output()


@pytest.mark.parametrize(
    ("args", "key", "reason"),
    [
        (["--provider", "anthropic"], "", "needs an API key in $ANTHROPIC_API_KEY"),
        (["--provider", "openai"], "", "needs --base-url"),
        (["--provider", "anthropic", "--base-url", "ftp://x"], "k", "must be an http(s) URL"),
    ],
)
def test_a_provider_without_what_it_needs_is_refused_at_start(
    start_demo: Callable[..., DemoProcess], args: list[str], key: str, reason: str
) -> None:
    """A provider missing its key or URL stops the demo at start (status 2) with the reason,
    instead of failing every reply later."""
    demo = start_demo(*args, env={"ANTHROPIC_API_KEY": key, "SSEKIT_BASE_URL": ""})
    assert demo.process.wait(EXIT_DEADLINE) == 2
    assert reason in demo.output()
