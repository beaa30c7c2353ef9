"""Runs over real HTTP: a model call that outlives its client, resumed with `Last-Event-ID`,
stopped (the upstream closed within 1 s, measured at the fake server; the partial reply stored
once), limited per session and per process, timed out; with `RedisBroker`, a run started in
one process is followed, resumed and stopped from another.

    fake OpenAI upstream <- Runs task (uvicorn app) -> broker topic -> follow() -> httpx client
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_openai_tools import SLOW_COUNT, FakeOpenAITools
from redis_server import RedisServer, running_redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from support.asgi_servers import DEADLINE, StreamReader, uvicorn_server, wait_until
from support.fake_upstreams import serve_fake

from ssekit import EventParser, MessageEvent, to_sse
from ssekit.adapters.starlette import SSEResponse, last_event_id
from ssekit.ai import OpenAICompatibleEngine
from ssekit.broker import MemoryBroker
from ssekit.memory import SQLiteMemory
from ssekit.runs import RunLimitReached, RunNotFound, Runs

pytestmark = pytest.mark.timeout(60)

UPSTREAM_CLOSE_LIMIT = 1.0
#: What a follower of a whole `"slow"` run receives: the numbered chunks, the finish, the usage,
#: then the end event.
SLOW_EVENTS: list[tuple[str, Any]] = [
    *[("message", {"content": f"<{n}>"}) for n in range(SLOW_COUNT)],
    ("message", {"content": "", "finish_reason": "stop"}),
    ("message", {"content": "", "usage": {"input_tokens": 123, "output_tokens": 45}}),
    ("done", {"outcome": "done"}),
]
SLOW_TEXT = "".join(f"<{n}>" for n in range(SLOW_COUNT))


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAITools]:
    yield from serve_fake(FakeOpenAITools())


class RunsApp:
    """`POST /runs {"session", "model"}` -> `{"run"}` (429 past a limit); `GET /runs/{id}`
    follows it (Last-Event-ID honoured); `POST /runs/{id}/stop`."""

    def __init__(self, fake: FakeOpenAITools, database: Path, **options: Any) -> None:
        self.engine = OpenAICompatibleEngine(fake.base_url, model="slow")  # type: ignore[attr-defined]
        self.database = str(database)
        self.runs = Runs(MemoryBroker(), **options)
        self.app = Starlette(
            routes=[
                Route("/runs", self.start, methods=["POST"]),
                Route("/runs/{run}", self.follow),
                Route("/runs/{run}/stop", self.stop, methods=["POST"]),
            ]
        )

    def memory(self, session: str) -> SQLiteMemory:
        return SQLiteMemory(self.database, parent=("ChatSession", session))

    async def start(self, request: Request) -> Response:
        payload = await request.json()
        memory = self.memory(payload["session"])
        memory.add_user_message("count, slowly")
        try:
            run = self.runs.start(self.engine, memory=memory, model=payload["model"])
        except RunLimitReached as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return JSONResponse({"run": run.id})

    async def follow(self, request: Request) -> Response:
        try:
            source = self.runs.follow(request.path_params["run"], last_event_id(request))
        except RunNotFound as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return SSEResponse(source, heartbeat=5)

    async def stop(self, request: Request) -> Response:
        return JSONResponse({"stopped": self.runs.stop(request.path_params["run"])})


@pytest.fixture
def served(fake: FakeOpenAITools, tmp_path: Path) -> Iterator[tuple[RunsApp, str]]:
    app = RunsApp(fake, tmp_path / "chat.sqlite3", timeout=20)
    with uvicorn_server(app.app) as url:
        yield app, url


def start(client: httpx.Client, url: str, session: str, model: str) -> httpx.Response:
    return client.post(f"{url}/runs", json={"session": session, "model": model})


def decoded(events: list[MessageEvent]) -> list[tuple[str, Any]]:
    return [(event.type, json.loads(event.data)) for event in events]


def assistant_replies(memory: SQLiteMemory) -> list[dict[str, Any]]:
    return [m for m in memory.get_messages() if m["role"] == "assistant"]


def test_a_run_survives_its_first_client_leaving(
    fake: FakeOpenAITools, served: tuple[RunsApp, str]
) -> None:
    """Client 1 reads 5 events and leaves; the run goes on to the end (the upstream is read to
    its end, the reply stored once, whole).  Client 2 resuming with client 1's last event id
    receives exactly the rest, then the stream ends; a follower from the start gets it all."""
    app, url = served
    with httpx.Client(timeout=DEADLINE) as client:
        fake.slow_gate.clear()  # the upstream holds the reply after SLOW_GATE_AT chunks
        try:
            run_id = start(client, url, "s1", "slow").json()["run"]
            with client.stream("GET", f"{url}/runs/{run_id}") as response:
                first = StreamReader(response).events(5)
            call = fake.last_call()
            assert app.runs.get(run_id) is not None  # client 1 left a run in the middle
        finally:
            fake.slow_gate.set()
        wait_until(lambda: app.runs.get(run_id) is None, what="the run's end")
        assert call.finished.wait(DEADLINE)
        assert call.chunks_sent == SLOW_COUNT + 3  # the upstream was read to its end
        headers = {"Last-Event-ID": first[-1].last_event_id}
        with client.stream("GET", f"{url}/runs/{run_id}", headers=headers) as response:
            rest = StreamReader(response).rest()
        with client.stream("GET", f"{url}/runs/{run_id}") as response:
            whole = StreamReader(response).rest()
    assert decoded(first) == SLOW_EVENTS[:5]
    assert decoded(rest) == SLOW_EVENTS[5:]
    assert decoded(whole) == SLOW_EVENTS
    assert len({e.last_event_id for e in first + rest}) == len(SLOW_EVENTS)  # no repeats
    assert assistant_replies(app.memory("s1")) == [{"role": "assistant", "content": SLOW_TEXT}]


def test_stop_closes_the_upstream_within_a_second_and_keeps_the_partial_reply_once(
    fake: FakeOpenAITools, served: tuple[RunsApp, str]
) -> None:
    """An endless reply, followed; Stop: the fake sees its request closed well within 1 s, the
    follower gets `done` with `stopped` and the stream ends; the memory holds one partial reply
    with exactly the text the follower received."""
    app, url = served
    with httpx.Client(timeout=DEADLINE) as client:
        run_id = start(client, url, "s2", "endless").json()["run"]
        with client.stream("GET", f"{url}/runs/{run_id}") as response:
            reader = StreamReader(response)
            seen = reader.events(5)
            call = fake.last_call()
            stopped_at = time.monotonic()
            assert client.post(f"{url}/runs/{run_id}/stop").json() == {"stopped": True}
            seen += reader.rest()
        assert call.disconnected.wait(DEADLINE), "the upstream request was never closed"
        assert call.disconnected_at is not None
        latency = call.disconnected_at - stopped_at
        assert latency < UPSTREAM_CLOSE_LIMIT
        assert client.post(f"{url}/runs/{run_id}/stop").json() == {"stopped": False}
    events = decoded(seen)
    assert events[-1] == ("done", {"outcome": "stopped"})
    text = "".join(data["content"] for kind, data in events[:-1])
    assert text.startswith("<0><1><2><3><4>")
    wait_until(lambda: app.runs.get(run_id) is None, what="the run's end")
    assert assistant_replies(app.memory("s2")) == [
        {"role": "assistant", "content": text, "partial": True}
    ]


def test_limits_per_session_and_unknown_runs(served: tuple[RunsApp, str]) -> None:
    """One run per session by default: a second start answers 429 until the first ends; other
    sessions are not held up.  A malformed run id is a 404."""
    app, url = served
    with httpx.Client(timeout=DEADLINE) as client:
        first = start(client, url, "s3", "endless").json()["run"]
        refused = start(client, url, "s3", "endless")
        assert refused.status_code == 429
        assert refused.json() == {"error": "This session already has 1 running reply."}
        other = start(client, url, "s4", "endless").json()["run"]
        for run_id in (first, other):
            client.post(f"{url}/runs/{run_id}/stop")
        wait_until(lambda: not app.runs.running(), what="both runs' end")
        assert start(client, url, "s3", "slow").status_code == 200
        assert client.get(f"{url}/runs/nope").status_code == 404


def test_process_limit_and_timeout(fake: FakeOpenAITools, tmp_path: Path) -> None:
    """`max_runs` refuses a run beyond it; `timeout` stops a run that takes too long: the
    upstream is closed, the partial reply stored, the topic ends with `timeout`."""
    app = RunsApp(fake, tmp_path / "chat.sqlite3", max_runs=1, timeout=0.3)
    engine = OpenAICompatibleEngine(fake.base_url, model="endless")  # type: ignore[attr-defined]

    async def scenario() -> list[tuple[str, Any]]:
        memory = app.memory("t")
        memory.add_user_message("go on forever")
        run = app.runs.start(engine, memory=memory)
        with pytest.raises(RunLimitReached, match="running 1 replies"):
            app.runs.start(engine, [{"role": "user", "content": "x"}], session="u")
        events = await read_events(app.runs, run.id)
        assert await run.wait() == "timeout"
        return events

    events = asyncio.run(asyncio.wait_for(scenario(), DEADLINE))
    assert events[-1] == ("done", {"outcome": "timeout"})
    assert fake.last_call().disconnected.wait(DEADLINE)
    replies = assistant_replies(app.memory("t"))
    assert len(replies) == 1
    assert replies[0]["partial"] is True
    assert replies[0]["content"] == "".join(d["content"] for _, d in events[:-1])


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="timeout must be > 0"):
        Runs(MemoryBroker(), timeout=0)
    with pytest.raises(ValueError, match="format must be 'chunks' or 'ui'"):
        Runs(MemoryBroker(), format="xml")  # type: ignore[arg-type]
    with pytest.raises(RunNotFound):
        Runs(MemoryBroker()).follow("not-a-run")

    async def close_in_async_code() -> None:
        Runs(MemoryBroker()).close()

    with pytest.raises(TypeError, match=r"await runs\.aclose"):
        asyncio.run(close_in_async_code())


async def read_events(
    runs: Runs, run_id: str, last_id: str | None = None, limit: int | None = None
) -> list[tuple[str, Any]]:
    """The events of `runs.follow()` as a client parses them, until it ends (or `limit`)."""
    parser = EventParser()
    out: list[tuple[str, Any]] = []
    stream = to_sse(runs.follow(run_id, last_id), heartbeat=None)
    async with contextlib_aclosing(stream):
        async for data in stream:
            for message in parser.feed(data):
                out.append((message.type, json.loads(message.data)))
                read_events.last_id = message.last_event_id  # type: ignore[attr-defined]
                if limit is not None and len(out) == limit:
                    return out
    return out


def contextlib_aclosing(stream: Any) -> Any:
    import contextlib

    return contextlib.aclosing(stream) if hasattr(contextlib, "aclosing") else _Closing(stream)


class _Closing:
    def __init__(self, stream: Any) -> None:
        self.stream = stream

    async def __aenter__(self) -> Any:
        return self.stream

    async def __aexit__(self, *exc: object) -> None:
        await self.stream.aclose()


# -- across processes, with RedisBroker ----------------------------------------------------------

WORKER = Path(__file__).parent / "run_worker.py"


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


def start_worker(redis_url: str, fake: FakeOpenAITools, database: Path, model: str) -> Any:
    """A process that starts one run and exits once it has ended; returns it and the run id."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    base_url = fake.base_url  # type: ignore[attr-defined]
    args = [sys.executable, str(WORKER), redis_url, base_url, str(database), model]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, "the worker exited before starting its run"
    return process, json.loads(line)["run"]


def test_a_run_is_followed_resumed_and_stopped_from_another_process(
    redis_server: RedisServer, fake: FakeOpenAITools, tmp_path: Path
) -> None:
    """A worker process runs the model call; this process follows it with its own
    `RedisBroker`, leaves after 7 events, and resumes through a fresh broker (another worker):
    0 events lost, 0 repeated, the reply stored once.  Then an endless run in a worker is
    stopped from here: its upstream closes within 1 s and one partial reply is stored."""
    from ssekit.broker import RedisBroker

    database = tmp_path / "chat.sqlite3"
    process, run_id = start_worker(redis_server.url, fake, database, "slow")
    try:
        first_broker, second_broker = RedisBroker(redis_server.url), RedisBroker(redis_server.url)
        try:
            first = asyncio.run(read_events(Runs(first_broker), run_id, limit=7))
            last_id = read_events.last_id  # type: ignore[attr-defined]
            rest = asyncio.run(read_events(Runs(second_broker), run_id, last_id))
        finally:
            first_broker.close()
            second_broker.close()
        assert process.wait(DEADLINE) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert first + rest == SLOW_EVENTS
    memory = SQLiteMemory(str(database), parent=("ChatSession", "worker"))
    assert assistant_replies(memory) == [{"role": "assistant", "content": SLOW_TEXT}]

    process, run_id = start_worker(redis_server.url, fake, tmp_path / "stop.sqlite3", "endless")
    broker = RedisBroker(redis_server.url)
    try:
        runs = Runs(broker)
        seen = asyncio.run(read_events(runs, run_id, limit=3))
        call = fake.last_call()
        stopped_at = time.monotonic()
        assert runs.stop(run_id) is True
        assert call.disconnected.wait(DEADLINE), "the upstream request was never closed"
        assert call.disconnected_at is not None
        assert call.disconnected_at - stopped_at < UPSTREAM_CLOSE_LIMIT
        seen += asyncio.run(read_events(runs, run_id, read_events.last_id))  # type: ignore[attr-defined]
        assert process.wait(DEADLINE) == 0
    finally:
        broker.close()
        if process.poll() is None:
            process.kill()
            process.wait()
    assert seen[-1] == ("done", {"outcome": "stopped"})
    memory = SQLiteMemory(str(tmp_path / "stop.sqlite3"), parent=("ChatSession", "worker"))
    text = "".join(data["content"] for _, data in seen[:-1])
    assert assistant_replies(memory) == [{"role": "assistant", "content": text, "partial": True}]


def test_runs_from_a_sync_flask_app(fake: FakeOpenAITools, tmp_path: Path) -> None:
    """Flask views have no event loop: runs go on the `Runs`' own loop thread.  A run is
    followed whole, another stopped (upstream closed within 1 s); `close()` ends the thread."""
    from flask import Flask, request
    from support.wsgi_servers import werkzeug_server

    from ssekit.adapters.flask import last_event_id as flask_last_event_id
    from ssekit.adapters.flask import sse_response

    runs = Runs(MemoryBroker())
    engine = OpenAICompatibleEngine(fake.base_url, model="slow")  # type: ignore[attr-defined]
    database = str(tmp_path / "chat.sqlite3")
    app = Flask(__name__)

    @app.post("/runs")
    def start_run() -> Any:
        memory = SQLiteMemory(database, parent=("ChatSession", request.json["session"]))
        memory.add_user_message("count")
        return {"run": runs.start(engine, memory=memory, model=request.json["model"]).id}

    @app.get("/runs/<run_id>")
    def follow(run_id: str) -> Any:
        return sse_response(runs.follow(run_id, flask_last_event_id()))

    @app.post("/runs/<run_id>/stop")
    def stop(run_id: str) -> Any:
        return {"stopped": runs.stop(run_id)}

    try:
        with werkzeug_server(app) as url, httpx.Client(timeout=DEADLINE) as client:
            run_id = start(client, url, "f1", "slow").json()["run"]
            with client.stream("GET", f"{url}/runs/{run_id}") as response:
                assert decoded(StreamReader(response).rest()) == SLOW_EVENTS
            run_id = start(client, url, "f2", "endless").json()["run"]
            with client.stream("GET", f"{url}/runs/{run_id}") as response:
                reader = StreamReader(response)
                reader.events(3)
                call = fake.last_call()
                stopped_at = time.monotonic()
                assert client.post(f"{url}/runs/{run_id}/stop").json() == {"stopped": True}
                assert decoded(reader.rest())[-1] == ("done", {"outcome": "stopped"})
            assert call.disconnected.wait(DEADLINE)
            assert call.disconnected_at is not None
            assert call.disconnected_at - stopped_at < UPSTREAM_CLOSE_LIMIT
    finally:
        runs.close()
    memory = SQLiteMemory(database, parent=("ChatSession", "f1"))
    assert assistant_replies(memory) == [{"role": "assistant", "content": SLOW_TEXT}]


def test_a_run_nobody_follows_is_abandoned(fake: FakeOpenAITools, tmp_path: Path) -> None:
    """`abandon_after`: an endless run with no follower in this process is stopped (upstream
    closed, partial reply stored); in the UI format its topic then ends with an `abort` part and
    the `done` event's `[DONE]`."""
    engine = OpenAICompatibleEngine(fake.base_url, model="endless")  # type: ignore[attr-defined]
    runs = Runs(MemoryBroker(), abandon_after=0.1, format="ui")
    memory = SQLiteMemory(str(tmp_path / "chat.sqlite3"), parent=("ChatSession", "a"))
    memory.add_user_message("anyone there?")

    async def scenario() -> list[MessageEvent]:
        run = runs.start(engine, memory=memory)
        assert await run.wait() == "abandoned"
        parser = EventParser()
        stream = to_sse(runs.follow(run.id), heartbeat=None)
        return [message async for data in stream for message in parser.feed(data)]

    events = asyncio.run(asyncio.wait_for(scenario(), DEADLINE))
    assert fake.last_call().disconnected.wait(DEADLINE)
    assert [(e.type, e.data) for e in events[-2:]] == [
        ("message", '{"type":"abort"}'),
        ("done", "[DONE]"),
    ]
    parts = [json.loads(e.data) for e in events[:-2]]
    assert [p["type"] for p in parts[:3]] == ["start", "start-step", "text-start"]
    text = "".join(p["delta"] for p in parts if p["type"] == "text-delta")
    assert assistant_replies(memory) == [{"role": "assistant", "content": text, "partial": True}]
