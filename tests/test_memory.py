"""`SQLiteMemory` and `RedisMemory`: concurrent writers, `record()` of whole and partial replies,
and refused input, each against a real store (a SQLite file; a `redis-server` of the tests' own).

Concurrent writers are two processes (multiprocessing, spawn) adding to one conversation at
once.  Partial replies are produced the way they happen in production: an httpx client leaving an
`SSEResponse` served by uvicorn mid-stream, and a source that raises under `to_sse()`.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis_server import RedisServer, running_redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from support.asgi_servers import DEADLINE, StreamReader, uvicorn_server, wait_until

from ssekit import EventParser, StreamError, to_sse
from ssekit.adapters.starlette import SSEResponse
from ssekit.memory import BaseMemory, RedisMemory, SQLiteMemory, record

pytestmark = pytest.mark.timeout(60)

#: Messages each writer process adds in the concurrency test.
WRITES = 200
#: Seconds between the tokens of the paced source the client leaves.
TOKEN_INTERVAL = 0.02


@dataclass
class Store:
    """One backend, as a test sees it: make a memory for a parent, count what is stored."""

    name: str
    #: SQLite file path, or Redis URL.
    location: str
    #: Redis key prefix (unique per test, so the test's keys are its own); "" for SQLite.
    prefix: str
    redis: RedisServer | None = None

    def memory(self, parent: Any) -> BaseMemory:
        return make_memory(self.name, self.location, self.prefix, parent)

    def stored(self) -> int:
        """How many messages the store holds for this test, whatever their parent."""
        if self.name == "sqlite":
            if not Path(self.location).exists():
                return 0
            connection = sqlite3.connect(self.location)
            try:
                tables = connection.execute(
                    "SELECT count(*) FROM sqlite_master WHERE name = 'ssekit_messages'"
                ).fetchone()[0]
                if not tables:
                    return 0
                count: int = connection.execute("SELECT count(*) FROM ssekit_messages").fetchone()[
                    0
                ]
                return count
            finally:
                connection.close()
        assert self.redis is not None
        client = self.redis.client()
        try:
            keys = client.keys(f"{self.prefix}*")
            return sum(int(client.llen(key)) for key in keys)
        finally:
            client.close()


def make_memory(name: str, location: str, prefix: str, parent: Any) -> BaseMemory:
    if name == "sqlite":
        return SQLiteMemory(location, parent=parent)
    return RedisMemory(location, parent=parent, prefix=prefix)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        return Store("sqlite", str(tmp_path / "chat.sqlite3"), "")
    server: RedisServer = request.getfixturevalue("redis_server")
    return Store("redis", server.url, f"test:{uuid.uuid4().hex}:", server)


def parent() -> tuple[str, str]:
    return ("ChatSession", uuid.uuid4().hex)


# -- concurrent writers --------------------------------------------------------------------


def content_of(writer: int, index: int) -> str:
    """The content writer `writer` gives its message `index`: tagged, multi-line, unicode, of
    varying length (up to ~8 KB), so a torn or mixed-up write shows."""
    body = f"w{writer} m{index:04d} «é☕\n\r\n\x00 \"quotes\" 'x' \u2028»" * (1 + index % 7)
    return f"{writer}:{index:04d}|" + body * (1 + (index % 5) * 8)


def role_of(index: int) -> str:
    return "user" if index % 2 == 0 else "assistant"


def write_messages(
    name: str, location: str, prefix: str, ident: str, writer: int, start: Any
) -> None:
    """A writer process: wait until both writers are ready, then add `WRITES` messages, one by
    one."""
    memory = make_memory(name, location, prefix, ("ChatSession", ident))
    start.wait(30)  # a barrier: the two writers start together
    for index in range(WRITES):
        partial = index % 10 == 9
        memory.add_message(role_of(index), content_of(writer, index), partial=partial)


def test_two_processes_writing_to_one_conversation(store: Store) -> None:
    """Two processes add `WRITES` messages each to the same parent at the same time: all of them
    are there, each exactly as written (content, role, partial flag), and each writer's messages
    in the order it wrote them."""
    ident = uuid.uuid4().hex
    store.memory(("ChatSession", ident))  # the schema exists before the race starts
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    writers = [
        context.Process(
            target=write_messages,
            args=(store.name, store.location, store.prefix, ident, writer, start),
        )
        for writer in (1, 2)
    ]
    for process in writers:
        process.start()
    try:
        for process in writers:
            process.join(45)
            assert process.exitcode == 0, f"a writer failed (exit code {process.exitcode})"
    finally:
        for process in writers:
            if process.is_alive():
                process.kill()
                process.join(5)
    messages = store.memory(("ChatSession", ident)).get_messages()
    assert len(messages) == 2 * WRITES
    order: dict[int, list[int]] = {1: [], 2: []}
    for message in messages:
        writer_text, _, rest = message["content"].partition(":")
        writer, index = int(writer_text), int(rest[:4])
        expected: dict[str, Any] = {"role": role_of(index), "content": content_of(writer, index)}
        if index % 10 == 9:
            expected["partial"] = True
        assert message == expected
        order[writer].append(index)
    assert order == {1: list(range(WRITES)), 2: list(range(WRITES))}


# -- record(): whole replies ---------------------------------------------------------------


def test_record_stores_a_complete_sync_reply_once(store: Store) -> None:
    """Chunks pass through untouched (the very objects); nothing is stored while they flow;
    at the end the reply (the `content` of dict chunks and str chunks joined) is stored once,
    not partial."""
    memory = store.memory(parent())
    memory.add_user_message("Hi")
    chunks: list[Any] = ["Hel", {"content": "lo"}, {"content": " wörld", "extra": 1}, {"x": 2}]
    passed: list[Any] = []
    for chunk in memory.record(iter(chunks)):
        passed.append(chunk)
        assert store.stored() == 1, "a chunk was stored on its own"
    assert all(a is b for a, b in zip(passed, chunks, strict=True))
    assert memory.get_messages() == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello wörld"},
    ]
    assert store.stored() == 2


def test_record_stores_a_complete_async_reply_once(store: Store) -> None:
    """The same for an async source: `record()` gives an async generator; the reply is stored
    once, whole, when it is exhausted."""
    memory = store.memory(parent())

    async def source() -> AsyncIterator[dict[str, str]]:
        for token in ["One", " two", " three"]:
            await asyncio.sleep(0)
            yield {"content": token}

    async def consume() -> list[Any]:
        seen = []
        async for chunk in memory.record(source()):
            seen.append(chunk)
            assert store.stored() == 0, "a chunk was stored on its own"
        return seen

    seen = asyncio.run(consume())
    assert seen == [{"content": "One"}, {"content": " two"}, {"content": " three"}]
    assert memory.get_messages() == [{"role": "assistant", "content": "One two three"}]


# -- record(): partial replies -------------------------------------------------------------


def test_record_stores_what_was_streamed_when_the_source_fails(store: Store) -> None:
    """A source that raises after two tokens, served with `to_sse()`: the client gets the two
    tokens and the error event; the memory holds the two tokens, marked partial (sync and async
    sources alike)."""

    def sync_source() -> Iterator[str]:
        yield "Hel"
        yield "lo"
        raise StreamError("model overloaded")

    async def async_source() -> AsyncIterator[str]:
        yield "Hel"
        await asyncio.sleep(0)
        yield "lo"
        raise StreamError("model overloaded")

    sources: list[Callable[[], Any]] = [sync_source, async_source]
    for make_source in sources:
        memory = store.memory(parent())
        parser = EventParser()
        events = [
            event for data in to_sse(memory.record(make_source())) for event in parser.feed(data)
        ]
        assert [(event.type, event.data) for event in events] == [
            ("message", "Hel"),
            ("message", "lo"),
            ("error", json.dumps({"message": "model overloaded"}, separators=(",", ":"))),
        ]
        assert memory.get_messages() == [{"role": "assistant", "content": "Hello", "partial": True}]


def test_record_stores_the_partial_reply_when_the_client_leaves(store: Store) -> None:
    """A paced reply served by `SSEResponse` under uvicorn; an httpx client reads a few events
    and leaves: the memory then holds one assistant message, partial, with what was streamed:
    at least what the client received, a prefix of the whole reply (sync and async sources)."""
    tokens = [f"t{n} " for n in range(2000)]
    full = "".join(tokens)

    def sync_source() -> Iterator[dict[str, str]]:
        for token in tokens:
            yield {"content": token}
            time.sleep(TOKEN_INTERVAL)

    async def async_source() -> AsyncIterator[dict[str, str]]:
        for token in tokens:
            yield {"content": token}
            await asyncio.sleep(TOKEN_INTERVAL)

    async def reply(request: Request) -> Response:
        memory = store.memory(("ChatSession", request.query_params["id"]))
        memory.add_user_message("go on")
        source = sync_source() if request.query_params["kind"] == "sync" else async_source()
        return SSEResponse(memory.record(source))

    with uvicorn_server(Starlette(routes=[Route("/reply", reply)])) as url:
        for kind in ("sync", "async"):
            ident = uuid.uuid4().hex
            with (
                httpx.Client(timeout=DEADLINE) as client,
                client.stream("GET", f"{url}/reply?kind={kind}&id={ident}") as response,
            ):
                received = "".join(
                    json.loads(event.data)["content"] for event in StreamReader(response).events(5)
                )
                response.close()
            memory = store.memory(("ChatSession", ident))

            def stored_both(memory: BaseMemory = memory) -> bool:
                return len(memory.get_messages()) == 2

            wait_until(stored_both, what="the partial reply")
            user, assistant = memory.get_messages()
            assert user == {"role": "user", "content": "go on"}
            assert assistant["role"] == "assistant"
            assert assistant["partial"] is True
            assert assistant["content"].startswith(received), (kind, received, assistant)
            assert full.startswith(assistant["content"])
            assert len(assistant["content"]) < len(full)


def test_record_function_and_method_agree(store: Store) -> None:
    """`ssekit.memory.record(memory, source)` is what `memory.record(source)` does."""
    memory = store.memory(parent())
    assert list(record(memory, ["a", "b"])) == ["a", "b"]
    assert memory.get_messages() == [{"role": "assistant", "content": "ab"}]


# -- refused input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "content", "error", "match"),
    [
        ("bot", "hi", ValueError, "role must be one of system, user, assistant, not 'bot'"),
        ("User", "hi", ValueError, "role must be one of"),
        ("", "hi", ValueError, "role must be one of"),
        (None, "hi", ValueError, "role must be one of"),
        ("user", 42, TypeError, "message content must be a str, not int"),
        ("user", None, TypeError, "message content must be a str, not NoneType"),
        ("assistant", b"bytes", TypeError, "message content must be a str, not bytes"),
        ("user", {"content": "hi"}, TypeError, "message content must be a str, not dict"),
    ],
)
def test_a_bad_message_is_refused_and_nothing_is_written(
    store: Store, role: Any, content: Any, error: type[Exception], match: str
) -> None:
    """An unknown role or non-string content raises a clear error, through `add_message()` and
    the role helpers alike, and the store is left untouched; the memory still works after."""
    memory = store.memory(parent())
    with pytest.raises(error, match=match):
        memory.add_message(role, content)
    if role == "user":
        with pytest.raises(error, match=match):
            memory.add_user_message(content)
    if role == "assistant":
        with pytest.raises(error, match=match):
            memory.add_assistant_message(content, partial=True)
    assert store.stored() == 0
    assert memory.get_messages() == []
    memory.add_user_message("fine")
    assert memory.get_messages() == [{"role": "user", "content": "fine"}]


@pytest.mark.parametrize(
    ("bad_parent", "error", "match"),
    [
        (("ChatSession", ""), ValueError, "parent type and id must be non-empty"),
        (("", "42"), ValueError, "parent type and id must be non-empty"),
        ("ChatSession:42", TypeError, r"parent must be a \(type, id\) tuple of two str"),
        (("ChatSession",), TypeError, r"parent must be a \(type, id\) tuple"),
        (("ChatSession", "42", "x"), TypeError, r"parent must be a \(type, id\) tuple"),
        (["ChatSession", "42"], TypeError, r"parent must be a \(type, id\) tuple"),
        (("ChatSession", 42), TypeError, r"parent must be a \(type, id\) tuple of two str"),
        (None, TypeError, r"parent must be a \(type, id\) tuple"),
    ],
)
def test_a_bad_parent_is_refused_and_nothing_is_written(
    store: Store, bad_parent: Any, error: type[Exception], match: str
) -> None:
    """An empty parent id or type, or a parent that is not a (str, str) tuple, is refused when
    the memory is made, with an error naming the rule, before anything is written (for SQLite,
    not even the file is created)."""
    with pytest.raises(error, match=match):
        store.memory(bad_parent)
    assert store.stored() == 0
    if store.name == "sqlite":
        assert not Path(store.location).exists()
