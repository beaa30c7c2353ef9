"""Conversation memory for AI chats: the messages of one parent (e.g. `("ChatSession", id)`).

```
memory = SQLiteMemory("chat.sqlite3", parent=("ChatSession", session_id))
memory.add_user_message(text)
reply = memory.record(engine.stream(memory.get_messages()))   # a to_sse() source
```

`record()` passes chunks through untouched and stores the assistant's reply once, whole, when the
stream ends; if the client left or the source failed, what was streamed is stored marked
`partial`.  Tool calls the reply made (see `ssekit.ai.Chunk`) are stored with it, whole, as the
message's `tool_calls`.  `SQLiteMemory` (stdlib `sqlite3`, WAL, safe across threads and
processes) is the default; `RedisMemory` serves several hosts.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Any, ClassVar, Protocol

from ssekit._ai_chunks import ToolCall, ToolCallAssembler

__all__ = ["ROLES", "BaseMemory", "Memory", "RedisMemory", "SQLiteMemory", "record"]

#: The roles a message may have.
ROLES = ("system", "user", "assistant")

Parent = tuple[str, str]


class Memory(Protocol):
    """The messages of one conversation, oldest first."""

    parent: Parent

    def get_messages(self) -> list[dict[str, Any]]: ...

    def add_message(self, role: str, content: str, *, partial: bool = False) -> None: ...

    def add_user_message(self, content: str) -> None: ...

    def add_assistant_message(
        self, content: str, *, partial: bool = False, tool_calls: list[ToolCall] | None = None
    ) -> None: ...

    def clear(self) -> None: ...


def _check_parent(parent: object) -> Parent:
    if (
        not isinstance(parent, tuple)
        or len(parent) != 2
        or not all(isinstance(part, str) for part in parent)
    ):
        raise TypeError(f"parent must be a (type, id) tuple of two str, not {parent!r}.")
    kind, ident = parent
    if not kind or not ident:
        raise ValueError(f"parent type and id must be non-empty, not {parent!r}.")
    return kind, ident


def _check_tool_calls(role: str, calls: object) -> None:
    if role != "assistant":
        raise ValueError(f"only assistant messages have tool_calls, not {role!r} ones.")
    if not isinstance(calls, list) or not all(
        isinstance(call, dict)
        and all(isinstance(call.get(key), str) for key in ("id", "name", "arguments"))
        for call in calls
    ):
        raise TypeError("tool_calls must be a list of {'id', 'name', 'arguments'} dicts of str.")


def _check_message(role: object, content: object) -> None:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}.")
    if not isinstance(content, str):
        raise TypeError(f"message content must be a str, not {type(content).__name__}.")


class BaseMemory:
    """The parts every memory shares: validation, the role helpers, `record()`."""

    def __init__(self, parent: Parent) -> None:
        #: Whose conversation this is: (type, id), e.g. ("ChatSession", "42").
        self.parent = _check_parent(parent)

    def add_message(
        self,
        role: str,
        content: str,
        *,
        partial: bool = False,
        tool_calls: list[ToolCall] | None = None,
    ) -> None:
        _check_message(role, content)
        if tool_calls:
            _check_tool_calls(role, tool_calls)
            self._store(role, content, partial, tool_calls)
        else:
            self._store(role, content, partial)

    def add_user_message(self, content: str) -> None:
        self.add_message("user", content)

    def add_assistant_message(
        self, content: str, *, partial: bool = False, tool_calls: list[ToolCall] | None = None
    ) -> None:
        self.add_message("assistant", content, partial=partial, tool_calls=tool_calls)

    def _store(
        self, role: str, content: str, partial: bool, tool_calls: list[ToolCall] | None = None
    ) -> None:
        raise NotImplementedError

    def get_messages(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def clear(self) -> None:
        raise NotImplementedError

    def record(self, source: Iterable[Any] | AsyncIterable[Any]) -> Any:
        """Wrap a chunk source: chunks pass through; the reply is stored once at the end."""
        return record(self, source)


def _content_of(chunk: Any) -> str:
    if isinstance(chunk, dict):
        content = chunk.get("content")
        return content if isinstance(content, str) else ""
    if isinstance(chunk, str):
        return chunk
    return ""


def record(memory: Memory, source: Iterable[Any] | AsyncIterable[Any]) -> Any:
    """Pass `source`'s chunks through, storing the assistant's accumulated `content` once.

    The reply is stored whole when the source is exhausted; marked partial, with what was
    streamed, when the consumer stops early or the source fails (nothing, if nothing was).
    A sync source gives a sync generator, an async source an async one.
    """
    if isinstance(source, AsyncIterable):
        return _record_async(memory, source)
    return _record_sync(memory, source)


class _Reply:
    """What `record()` has seen of a reply: its text, and its tool calls until the last finish."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.tools = ToolCallAssembler()
        self.finished_calls: list[ToolCall] = []

    def take(self, chunk: Any) -> None:
        self.parts.append(_content_of(chunk))
        if isinstance(chunk, dict) and len(chunk) > 1:
            self.tools.feed(chunk)
            if chunk.get("finish_reason"):
                self.finished_calls = self.tools.calls

    def store(self, memory: Memory, complete: bool) -> None:
        # A tool call is stored once it is whole: the reply finished (a call cut off mid-arguments
        # is no call).  A reply cut off before its first token leaves nothing worth storing.
        text = "".join(self.parts)
        calls = self.tools.calls if complete else self.finished_calls
        if calls:
            memory.add_assistant_message(text, partial=not complete, tool_calls=calls)
        elif complete or text:
            memory.add_assistant_message(text, partial=not complete)


def _record_sync(memory: Memory, source: Iterable[Any]) -> Iterator[Any]:
    reply = _Reply()
    complete = False
    iterator = iter(source)
    try:
        for chunk in iterator:
            reply.take(chunk)
            yield chunk
        complete = True
    finally:
        close = getattr(iterator, "close", None)
        if callable(close):
            close()
        reply.store(memory, complete)


async def _record_async(memory: Memory, source: AsyncIterable[Any]) -> AsyncIterator[Any]:
    reply = _Reply()
    complete = False
    iterator = aiter(source)
    try:
        async for chunk in iterator:
            reply.take(chunk)
            yield chunk
        complete = True
    finally:
        aclose = getattr(iterator, "aclose", None)
        try:
            if callable(aclose):
                await aclose()
        finally:
            reply.store(memory, complete)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS ssekit_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    parent_type TEXT NOT NULL,
    parent_id TEXT NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    partial INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    tool_calls TEXT
);
CREATE INDEX IF NOT EXISTS ssekit_messages_parent ON ssekit_messages (parent_type, parent_id, seq);
"""
_COLUMNS = "PRAGMA table_info(ssekit_messages)"
_ADD_TOOL_CALLS = "ALTER TABLE ssekit_messages ADD COLUMN tool_calls TEXT"


class SQLiteMemory(BaseMemory):
    """Messages in a SQLite file (WAL mode): safe from many threads and processes at once.

    Each operation opens its own connection with a busy timeout, so threads share nothing and
    concurrent writers queue instead of failing; each message is one INSERT, all or nothing.
    """

    _initialised: ClassVar[set[str]] = set()  # files whose schema this process has made
    _init_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: str, parent: Parent, *, busy_timeout: float = 30.0) -> None:
        super().__init__(parent)
        self.path = str(path)
        self.busy_timeout = busy_timeout
        with self._init_lock:
            if self.path not in self._initialised:
                with self._connect() as connection:
                    connection.execute("PRAGMA journal_mode=WAL")
                    connection.executescript(_SCHEMA)
                    columns = {row[1] for row in connection.execute(_COLUMNS)}
                    if "tool_calls" not in columns:  # a file made before tool calls were kept
                        connection.execute(_ADD_TOOL_CALLS)
                self._initialised.add(self.path)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        connection = self._connect()
        try:
            with connection:  # one transaction
                return connection.execute(sql, args).fetchall()
        finally:
            connection.close()

    def get_messages(self) -> list[dict[str, Any]]:
        rows = self._run(
            "SELECT role, content, partial, tool_calls FROM ssekit_messages"
            " WHERE parent_type = ? AND parent_id = ? ORDER BY seq",
            self.parent,
        )
        return [
            _message(role, content, bool(partial), json.loads(calls) if calls else None)
            for role, content, partial, calls in rows
        ]

    def _store(
        self, role: str, content: str, partial: bool, tool_calls: list[ToolCall] | None = None
    ) -> None:
        self._run(
            "INSERT INTO ssekit_messages"
            " (parent_type, parent_id, role, content, partial, created, tool_calls)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                *self.parent,
                role,
                content,
                int(partial),
                time.time(),
                json.dumps(tool_calls) if tool_calls else None,
            ),
        )

    def clear(self) -> None:
        self._run(
            "DELETE FROM ssekit_messages WHERE parent_type = ? AND parent_id = ?", self.parent
        )


def _message(
    role: str, content: str, partial: bool, tool_calls: list[ToolCall] | None = None
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": role, "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    if partial:
        message["partial"] = True
    return message


class RedisMemory(BaseMemory):
    """Messages in a Redis list per parent, for deployments on several hosts (`redis` extra)."""

    def __init__(self, url: str, parent: Parent, *, prefix: str = "ssekit:memory:") -> None:
        # Broker topics live under "ssekit:topic:": a chat key must never be a topic's stream.
        if not prefix or "ssekit:topic:".startswith(prefix) or prefix.startswith("ssekit:topic:"):
            raise ValueError(
                f"prefix {prefix!r} would share keys with RedisBroker's 'ssekit:topic:': "
                "use a namespace of its own, such as the default 'ssekit:memory:'."
            )
        super().__init__(parent)
        import redis

        self._client = redis.Redis.from_url(url)
        kind, ident = self.parent
        self.key = f"{prefix}{len(kind)}:{kind}:{ident}"

    def get_messages(self) -> list[dict[str, Any]]:
        raw: Any = self._client.lrange(self.key, 0, -1)
        return [json.loads(item) for item in raw]

    def _store(
        self, role: str, content: str, partial: bool, tool_calls: list[ToolCall] | None = None
    ) -> None:
        self._client.rpush(self.key, json.dumps(_message(role, content, partial, tool_calls)))

    def clear(self) -> None:
        self._client.delete(self.key)

    def close(self) -> None:
        self._client.close()
