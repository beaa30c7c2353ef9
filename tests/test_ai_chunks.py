"""The one chunk shape: `OpenAICompatibleEngine` over real HTTP against a fake that streams
reasoning, text, two parallel tool calls in many fragments and the usage chunk; the tool-call
assembler; and `record()` keeping whole tool calls with the reply."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ai_script import (
    INPUT_TOKENS,
    OUTPUT_TOKENS,
    REASONING_DELTAS,
    TEXT_DELTAS,
    TOOL_CALLS,
)
from fake_openai_tools import FakeOpenAITools
from support.fake_upstreams import collect, of_kind, serve_fake

from ssekit._ai_chunks import OpenAIChunkReader
from ssekit.ai import OpenAICompatibleEngine, ToolCallAssembler
from ssekit.memory import SQLiteMemory

pytestmark = pytest.mark.timeout(30)

MESSAGES = [{"role": "user", "content": "Weather in Paris and Tokyo?"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAITools]:
    yield from serve_fake(FakeOpenAITools())


def engine_for(fake: FakeOpenAITools, **defaults: Any) -> OpenAICompatibleEngine:
    base_url = fake.base_url  # type: ignore[attr-defined]
    return OpenAICompatibleEngine(base_url, api_key="sk-test", model="tools", **defaults)


def test_openai_engine_yields_every_kind_of_chunk(fake: FakeOpenAITools) -> None:
    """Reasoning, text, two tool calls whose arguments came in 11+ fragments each, the finish
    reason and the usage: the chunks reassemble exactly what the upstream sent; every chunk
    has a `content` string (text only in text chunks) and at most one other key; every
    fragment carries its call's id and name; tools and other parameters reach the upstream
    as given, with `stream_options.include_usage`."""
    chunks = asyncio.run(collect(engine_for(fake).stream(MESSAGES, tools=TOOLS, seed=7)))
    assert all(isinstance(chunk["content"], str) and len(chunk) <= 2 for chunk in chunks)
    assert "".join(of_kind(chunks, "reasoning")) == "".join(REASONING_DELTAS)
    assert "".join(chunk["content"] for chunk in chunks) == "".join(TEXT_DELTAS)
    assert of_kind(chunks, "reasoning") == REASONING_DELTAS  # one chunk per upstream delta
    fragments = of_kind(chunks, "tool_call")
    for index, call in enumerate(TOOL_CALLS):
        mine = [f for f in fragments if f["index"] == index]
        assert len([f for f in mine if f["arguments"]]) >= 10
        assert {(f["id"], f["name"]) for f in mine} == {(call["id"], call["name"])}
    assembler = ToolCallAssembler()
    for chunk in chunks:
        assembler.feed(chunk)
    assert assembler.calls == TOOL_CALLS
    assert [json.loads(call["arguments"]) for call in assembler.calls][1]["city"] == "東京"
    assert of_kind(chunks, "finish_reason") == ["tool_calls"]
    assert of_kind(chunks, "usage") == [
        {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS}
    ]
    assert chunks[-2:] == [
        {"content": "", "finish_reason": "tool_calls"},
        {"content": "", "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS}},
    ]
    body = fake.last_call().body
    assert body["tools"] == TOOLS
    assert body["seed"] == 7
    assert body["stream_options"] == {"include_usage": True}


def test_stream_options_none_leaves_the_usage_request_out(fake: FakeOpenAITools) -> None:
    """For servers that refuse `stream_options`: `stream_options=None` sends none, and then no
    usage chunk arrives (the fake, like OpenAI, sends usage only when asked)."""
    chunks = asyncio.run(collect(engine_for(fake, stream_options=None).stream(MESSAGES)))
    assert "stream_options" not in fake.last_call().body
    assert of_kind(chunks, "usage") == []
    assert of_kind(chunks, "finish_reason") == ["tool_calls"]


def test_reader_takes_the_reasoning_key_of_other_servers() -> None:
    """Servers name the reasoning delta `reasoning_content` or `reasoning`: both are read; a
    tool call without an index is numbered in order; a usage chunk with no counts gives 0s."""
    reader = OpenAIChunkReader()
    assert reader.chunks({"choices": [{"delta": {"reasoning": "hmm"}}]}) == [
        {"content": "", "reasoning": "hmm"}
    ]
    first = {"id": "c1", "function": {"name": "f", "arguments": "{"}}
    assert reader.chunks({"choices": [{"delta": {"tool_calls": [first]}}]}) == [
        {"content": "", "tool_call": {"index": 0, "id": "c1", "name": "f", "arguments": "{"}}
    ]
    assert reader.chunks({"choices": [], "usage": {}}) == [
        {"content": "", "usage": {"input_tokens": 0, "output_tokens": 0}}
    ]


def test_assembler_rejects_a_fragment_without_an_index() -> None:
    with pytest.raises(ValueError, match="tool_call index must be an int"):
        ToolCallAssembler().feed({"content": "", "tool_call": {"id": "x"}})


def test_record_stores_the_text_and_the_whole_tool_calls_once(
    fake: FakeOpenAITools, tmp_path: Path
) -> None:
    """`record()` over the engine: one assistant message with the text and both calls, whole;
    the history then goes back to the upstream with the calls in OpenAI's shape."""
    memory = SQLiteMemory(str(tmp_path / "chat.sqlite3"), parent=("ChatSession", "t"))
    memory.add_user_message(MESSAGES[0]["content"])
    engine = engine_for(fake)
    asyncio.run(collect(memory.record(engine.stream(memory.get_messages()))))
    stored = memory.get_messages()
    assert stored == [
        MESSAGES[0],
        {"role": "assistant", "content": "".join(TEXT_DELTAS), "tool_calls": TOOL_CALLS},
    ]
    asyncio.run(collect(engine.stream(stored)))
    sent = fake.last_call().body["messages"][1]
    assert sent["tool_calls"][0] == {
        "id": TOOL_CALLS[0]["id"],
        "type": "function",
        "function": {"name": "get_weather", "arguments": TOOL_CALLS[0]["arguments"]},
    }


def test_record_drops_a_tool_call_cut_off_mid_arguments(tmp_path: Path) -> None:
    """A reply stopped in the middle of a call's arguments is stored partial, without the call
    (half a JSON text is no call); a call finished before the stop is kept."""
    memory = SQLiteMemory(str(tmp_path / "chat.sqlite3"), parent=("ChatSession", "cut"))
    fragment = {"index": 0, "id": "c1", "name": "f", "arguments": '{"a": '}
    chunks: list[dict[str, Any]] = [
        {"content": "text"},
        {"content": "", "tool_call": fragment},
        {"content": "", "tool_call": {**fragment, "arguments": "1}"}},
        {"content": "", "finish_reason": "tool_calls"},
        {"content": "", "tool_call": {**fragment, "index": 1, "id": "c2"}},
    ]
    source = memory.record(iter(chunks))
    for _ in range(len(chunks)):
        next(source)
    source.close()
    assert memory.get_messages() == [
        {
            "role": "assistant",
            "content": "text",
            "partial": True,
            "tool_calls": [{"id": "c1", "name": "f", "arguments": '{"a": 1}'}],
        }
    ]


def test_memory_checks_tool_calls(tmp_path: Path) -> None:
    memory = SQLiteMemory(str(tmp_path / "chat.sqlite3"), parent=("ChatSession", "v"))
    with pytest.raises(ValueError, match="only assistant messages have tool_calls"):
        memory.add_message("user", "x", tool_calls=[{"id": "1", "name": "f", "arguments": ""}])
    with pytest.raises(TypeError, match="tool_calls must be a list"):
        memory.add_assistant_message("x", tool_calls=[{"id": 1}])  # type: ignore[list-item]


def test_an_older_database_gains_the_tool_calls_column(tmp_path: Path) -> None:
    """A file written before tool calls were kept is upgraded in place: old rows read back as
    before, new ones keep their calls."""
    import sqlite3

    path = str(tmp_path / "old.sqlite3")
    with sqlite3.connect(path) as connection:
        connection.executescript(
            "CREATE TABLE ssekit_messages (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " parent_type TEXT NOT NULL, parent_id TEXT NOT NULL, role TEXT NOT NULL,"
            " content TEXT NOT NULL, partial INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL);"
            "INSERT INTO ssekit_messages (parent_type, parent_id, role, content, created)"
            " VALUES ('ChatSession', 'old', 'user', 'hi', 0);"
        )
    connection.close()
    memory = SQLiteMemory(path, parent=("ChatSession", "old"))
    call = {"id": "c", "name": "f", "arguments": "{}"}
    memory.add_assistant_message("", tool_calls=[call])  # type: ignore[list-item]
    assert memory.get_messages() == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
    ]
