"""`to_sse()` end to end: sources, consumers, chunks, heartbeats, flushing, opening, errors.

Every test synchronises on observations (events set by the source or by the consumer), never on
wall-clock sleeps; where a source waits for the test it waits with a long timeout and then yields
a marker ("timed out") instead of hanging, so a broken stream fails an assertion, not the run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import enum
import json
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from ssekit import Channel, Event, EventParser, MessageEvent, SSEStream, StreamError, to_sse
from ssekit._stream import PULL_AHEAD
from ssekit._writer import GENERIC_ERROR_MESSAGE, MAX_BATCH_BYTES

pytestmark = pytest.mark.timeout(60)

#: How long a source waits for the test before giving up (far longer than any test needs).
WAIT = 30.0

CONSUMERS = ["sync", "async"]


def parse(chunks: list[bytes]) -> list[MessageEvent]:
    parser = EventParser()
    return [event for chunk in chunks for event in parser.feed(chunk)]


def consume(stream: SSEStream, consumer: str) -> list[bytes]:
    """Every bytes object the stream writes, read with `for` or `async for`."""
    if consumer == "sync":
        return list(stream)

    async def main() -> list[bytes]:
        return [chunk async for chunk in stream]

    return asyncio.run(main())


def data_of(chunks: list[bytes]) -> list[str]:
    return [event.data for event in parse(chunks)]


def heartbeats_in(chunk: bytes) -> int:
    return chunk.split(b"\n").count(b": ping")


def make_source(kind: str, items: list[Any]) -> Any:
    if kind == "list":
        return list(items)
    if kind == "generator":
        return (item for item in items)
    if kind == "async generator":

        async def agen() -> AsyncIterator[Any]:
            for item in items:
                await asyncio.sleep(0)
                yield item

        return agen()
    assert kind == "channel"
    channel = Channel(maxsize=len(items) + 1)
    for item in items:
        channel.send(item)
    channel.end()
    return channel


SOURCE_KINDS = ["list", "generator", "async generator", "channel"]


# -- 1. any source, any consumer ------------------------------------------------------------------


@pytest.mark.parametrize("consumer", CONSUMERS)
@pytest.mark.parametrize("kind", SOURCE_KINDS)
def test_every_source_kind_with_every_consumer(kind: str, consumer: str) -> None:
    items = ["a", b"b", Event("c", event="custom", id="3"), {"d": [1, None]}]
    stream = to_sse(make_source(kind, items), heartbeat=None)
    events = parse(consume(stream, consumer))
    assert events == [
        MessageEvent("message", "a", ""),
        MessageEvent("message", "b", ""),
        MessageEvent("custom", "c", "3"),
        MessageEvent("message", '{"d":[1,null]}', "3"),
    ]


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_many_chunks_arrive_in_order(consumer: str) -> None:
    items = [f"chunk {i}" for i in range(5000)]
    assert data_of(consume(to_sse(iter(items)), consumer)) == items


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_many_async_chunks_arrive_in_order(consumer: str) -> None:
    async def source() -> AsyncIterator[int]:
        for i in range(3000):
            if i % 7 == 0:
                await asyncio.sleep(0)
            yield i

    assert data_of(consume(to_sse(source()), consumer)) == [str(i) for i in range(3000)]


def test_sync_source_under_async_for_runs_in_a_worker_thread() -> None:
    seen: list[threading.Thread] = []

    def source() -> Iterator[str]:
        seen.append(threading.current_thread())
        yield "x"

    async def main() -> list[bytes]:
        return [chunk async for chunk in to_sse(source())]

    assert data_of(asyncio.run(main())) == ["x"]
    assert seen[0] is not threading.main_thread()
    assert seen[0].name == "ssekit-source"


def test_async_source_under_for_runs_on_a_helper_loop_thread() -> None:
    seen: list[tuple[threading.Thread, asyncio.AbstractEventLoop]] = []

    async def source() -> AsyncIterator[str]:
        seen.append((threading.current_thread(), asyncio.get_running_loop()))
        await asyncio.sleep(0)
        yield "x"

    assert data_of(list(to_sse(source()))) == ["x"]
    thread, loop = seen[0]
    assert thread is not threading.main_thread()
    assert thread.name == "ssekit-loop"
    assert loop.is_closed()  # the helper loop is gone with its thread


def test_a_blocked_sync_source_leaves_the_event_loop_responsive() -> None:
    """While the sync source blocks in `next()`, another task keeps running on the loop.

    The other task is what releases the source: if the source blocked the loop, the task could
    not run and the source would give up waiting and yield "timed out".
    """
    release = threading.Event()

    async def main() -> tuple[list[bytes], int]:
        loop = asyncio.get_running_loop()
        source_blocked = asyncio.Event()
        ticks = 0

        def source() -> Iterator[str]:
            yield "first"
            loop.call_soon_threadsafe(source_blocked.set)
            yield "released" if release.wait(WAIT) else "timed out"

        async def ticker() -> None:
            nonlocal ticks
            await source_blocked.wait()
            for _ in range(20):
                await asyncio.sleep(0.001)
                ticks += 1
            release.set()

        task = asyncio.create_task(ticker())
        chunks = [chunk async for chunk in to_sse(source(), heartbeat=None)]
        await task
        return chunks, ticks

    chunks, ticks = asyncio.run(main())
    assert data_of(chunks) == ["first", "released"]
    assert ticks == 20


def test_a_sync_source_is_pulled_ahead_of_an_async_consumer_in_batches() -> None:
    ahead_by = min(200, PULL_AHEAD)

    async def main() -> list[bytes]:
        loop = asyncio.get_running_loop()
        ahead = asyncio.Event()

        def source() -> Iterator[int]:
            for i in range(1000):
                if i == ahead_by - 1:
                    loop.call_soon_threadsafe(ahead.set)
                yield i

        iterator = aiter(to_sse(source(), heartbeat=None))
        chunks = [await anext(iterator)]  # the opening: the consumer asks for nothing more...
        await asyncio.wait_for(ahead.wait(), WAIT)  # ...yet the source runs ahead
        chunks += [chunk async for chunk in iterator]
        return chunks

    chunks = asyncio.run(main())
    assert data_of(chunks) == [str(i) for i in range(1000)]
    # What the source produced ahead comes out together, not one write per chunk.
    assert len(parse(chunks[:2])) >= ahead_by - 1


@pytest.mark.parametrize("source", ["text", b"bytes", Event("e"), 42, None, object()], ids=repr)
def test_to_sse_refuses_what_is_not_a_source(source: Any) -> None:
    with pytest.raises(TypeError, match="to_sse"):
        to_sse(source)


# -- 2. chunks ------------------------------------------------------------------------------------


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Item:
    name: str
    color: Color
    when: datetime.date
    children: list[Item] = dataclasses.field(default_factory=list)


class ModelLike:
    def model_dump(self, *, mode: str = "python") -> dict[str, Any]:
        assert mode == "json"
        return {"model": True}


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_chunk_kinds(consumer: str) -> None:
    chunks: list[Any] = [
        Event("as is", event="kind", id="id-1", retry=500),
        "text",
        "two\nlines",
        "crlf\r\nand cr\rend",
        "caf\u00e9 \u2028 inside",
        b"utf-8 bytes caf\xc3\xa9",
        bytearray(b"bytearray"),
        {"compact": [1, 2], "none": None},
        [1, "two"],
        Item(
            "parent",
            Color.RED,
            datetime.date(2024, 1, 2),
            [Item("child", Color.RED, datetime.date(2024, 1, 3))],
        ),
        Color.RED,
        datetime.datetime(2024, 1, 2, 3, 4, 5),
        ModelLike(),
        7,
        None,
    ]
    events = parse(consume(to_sse(chunks, heartbeat=None), consumer))
    assert events[0] == MessageEvent("kind", "as is", "id-1")
    assert [e.data for e in events[1:7]] == [
        "text",
        "two\nlines",
        "crlf\nand cr\nend",
        "caf\u00e9 \u2028 inside",
        "utf-8 bytes caf\u00e9",
        "bytearray",
    ]
    assert events[7].data == '{"compact":[1,2],"none":null}'  # compact: no spaces
    assert [e.json() for e in events[8:]] == [
        [1, "two"],
        {
            "name": "parent",
            "color": "red",
            "when": "2024-01-02",
            "children": [{"name": "child", "color": "red", "when": "2024-01-03", "children": []}],
        },
        "red",
        "2024-01-02T03:04:05",
        {"model": True},
        7,
        None,
    ]


def test_a_real_pydantic_model_is_a_chunk() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Reply(pydantic.BaseModel):  # type: ignore[name-defined,misc]
        text: str
        at: datetime.datetime

    when = datetime.datetime(2024, 1, 2, tzinfo=datetime.timezone.utc)
    events = parse(list(to_sse([Reply(text="hi", at=when)])))
    assert events[0].json() == {"text": "hi", "at": "2024-01-02T00:00:00Z"}


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_pluggable_serializer(consumer: str) -> None:
    seen: list[Any] = []

    def serializer(value: Any) -> str | bytes:
        seen.append(value)
        return f"<{value}>" if isinstance(value, int) else b"bytes\nout"

    stream = to_sse([1, "text stays text", (2, 3), Event("event stays")], serializer=serializer)
    assert data_of(consume(stream, consumer)) == [
        "<1>",
        "text stays text",
        "bytes\nout",
        "event stays",
    ]
    assert seen == [1, (2, 3)]


def assert_whole_events(chunks: list[bytes]) -> None:
    """Every write ends at an event boundary: no half event is ever on the wire."""
    assert all(chunk.endswith(b"\n\n") for chunk in chunks), chunks


BAD_CHUNKS = [
    pytest.param(b"\xff\xfe not utf-8", ValueError, id="invalid-utf8"),
    pytest.param({"thing": object()}, TypeError, id="unserializable"),
    pytest.param({1, 2}, TypeError, id="set"),
    pytest.param("lone \ud800 surrogate", ValueError, id="surrogate"),
]


@pytest.mark.parametrize("flush", ["auto", "each"])
@pytest.mark.parametrize("consumer", CONSUMERS)
@pytest.mark.parametrize(("bad", "error"), BAD_CHUNKS)
def test_a_chunk_that_cannot_be_sent_ends_the_stream_with_an_error_event(
    bad: Any,
    error: type[Exception],
    consumer: str,
    flush: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = ["before", {"ok": True}, bad, "after"]
    with caplog.at_level(logging.ERROR, logger="ssekit"):
        chunks = consume(to_sse(source, flush=flush, end="[DONE]"), consumer)
    assert_whole_events(chunks)
    events = parse(chunks)
    assert [e.type for e in events] == ["message", "message", "error"]
    assert events[0].data == "before"
    assert json.loads(events[2].data) == {"message": GENERIC_ERROR_MESSAGE}
    logged = [r.exc_info[1] for r in caplog.records if r.exc_info]
    assert len(logged) == 1
    assert isinstance(logged[0], error)


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_nan_and_infinity_are_sent_as_null_not_as_invalid_json(consumer: str) -> None:
    """NaN/Infinity are not JSON: the default serializer writes null (as JSON.stringify does)."""
    chunks = [{"a": float("nan")}, [float("inf"), float("-inf"), 1.5], float("nan")]
    events = parse(consume(to_sse(chunks), consumer))
    assert [e.data for e in events] == ['{"a":null}', "[null,null,1.5]", "null"]


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_a_failing_custom_serializer_ends_the_stream_with_an_error_event(consumer: str) -> None:
    def serializer(value: Any) -> str:
        if value == 2:
            raise StreamError("cannot serialize 2")
        if value == 3:
            return 3  # type: ignore[return-value]
        return str(value)

    events = parse(consume(to_sse([1, 2, 3], serializer=serializer), consumer))
    assert [(e.type, e.data) for e in events] == [
        ("message", "1"),
        ("error", '{"message":"cannot serialize 2"}'),
    ]
    events = parse(consume(to_sse([1, 3], serializer=serializer), consumer))
    assert [e.type for e in events] == ["message", "error"]


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_a_serializer_runs_once_per_chunk(consumer: str) -> None:
    """After a failure the good chunks are not framed again (a serializer may have effects)."""
    calls: list[int] = []

    def serializer(value: int) -> str:
        calls.append(value)
        if value == 3:
            raise StreamError("no threes")
        return str(value)

    events = parse(consume(to_sse([1, 2, 3, 4, 5], serializer=serializer), consumer))
    assert [(e.type, e.data) for e in events] == [
        ("message", "1"),
        ("message", "2"),
        ("error", '{"message":"no threes"}'),
    ]
    assert calls == [1, 2, 3]


# -- 3. heartbeats --------------------------------------------------------------------------------

BEATS = 50
BEAT = 0.02


def test_heartbeat_defaults_and_none() -> None:
    assert to_sse([]).options.heartbeat == 15.0
    assert to_sse([], heartbeat=None).options.heartbeat is None
    chunks = list(to_sse(["a", "b"], heartbeat=None))
    assert not any(heartbeats_in(chunk) for chunk in chunks)


@pytest.mark.parametrize("value", [0, -1, "15", True])
def test_invalid_heartbeat(value: Any) -> None:
    with pytest.raises(ValueError, match="heartbeat"):
        to_sse([], heartbeat=value)


def test_heartbeats_while_a_sync_source_is_blocked_in_next_sync_consumer() -> None:
    release = threading.Event()

    def source() -> Iterator[str]:
        yield "a"
        yield "released" if release.wait(WAIT) else "timed out"
        yield "c"

    chunks: list[bytes] = []
    beats = 0
    for chunk in to_sse(source(), heartbeat=BEAT):
        chunks.append(chunk)
        beats += heartbeats_in(chunk)
        if beats >= BEATS:
            release.set()
    assert beats >= BEATS
    assert data_of(chunks) == ["a", "released", "c"]


def test_heartbeats_while_a_sync_source_is_blocked_in_next_async_consumer() -> None:
    release = threading.Event()

    def source() -> Iterator[str]:
        yield "a"
        yield "released" if release.wait(WAIT) else "timed out"
        yield "c"

    async def main() -> tuple[list[bytes], int]:
        chunks: list[bytes] = []
        beats = 0
        async for chunk in to_sse(source(), heartbeat=BEAT):
            chunks.append(chunk)
            beats += heartbeats_in(chunk)
            if beats >= BEATS:
                release.set()
        return chunks, beats

    chunks, beats = asyncio.run(main())
    assert beats >= BEATS
    assert data_of(chunks) == ["a", "released", "c"]


def test_a_slow_async_generator_survives_50_heartbeats_async_consumer() -> None:
    async def main() -> tuple[list[bytes], int]:
        release = asyncio.Event()

        async def source() -> AsyncIterator[str]:
            for i in range(3):
                yield f"early {i}"
            try:
                await asyncio.wait_for(release.wait(), WAIT)
                yield "released"
            except TimeoutError:
                yield "timed out"
            for i in range(3):
                yield f"late {i}"

        chunks: list[bytes] = []
        beats = 0
        async for chunk in to_sse(source(), heartbeat=BEAT):
            chunks.append(chunk)
            beats += heartbeats_in(chunk)
            if beats >= BEATS:
                release.set()
        return chunks, beats

    chunks, beats = asyncio.run(main())
    assert beats >= BEATS
    assert data_of(chunks) == [
        "early 0",
        "early 1",
        "early 2",
        "released",
        "late 0",
        "late 1",
        "late 2",
    ]


def test_a_slow_async_generator_survives_50_heartbeats_sync_consumer() -> None:
    """The async source runs on the helper loop; the test releases it through that loop."""
    waiting = threading.Event()
    holder: dict[str, Any] = {}

    async def source() -> AsyncIterator[str]:
        yield "early"
        release = asyncio.Event()
        holder["loop"], holder["release"] = asyncio.get_running_loop(), release
        waiting.set()
        try:
            await asyncio.wait_for(release.wait(), WAIT)
            yield "released"
        except TimeoutError:
            yield "timed out"
        yield "late"

    chunks: list[bytes] = []
    beats = 0
    for chunk in to_sse(source(), heartbeat=BEAT):
        chunks.append(chunk)
        beats += heartbeats_in(chunk)
        if beats >= BEATS and "release" in holder:
            assert waiting.is_set()
            holder["loop"].call_soon_threadsafe(holder.pop("release").set)
    assert beats >= BEATS
    assert data_of(chunks) == ["early", "released", "late"]


# -- 4. flushing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("consumer", CONSUMERS)
@pytest.mark.parametrize("kind", SOURCE_KINDS)
def test_flush_each_writes_one_bytes_object_per_event(kind: str, consumer: str) -> None:
    items = [f"item {i}" for i in range(50)]
    chunks = consume(to_sse(make_source(kind, items), flush="each", heartbeat=None), consumer)
    opening, *writes = chunks
    assert parse([opening]) == []
    assert [len(parse([chunk])) for chunk in writes] == [1] * 50
    assert data_of(writes) == items


@pytest.mark.parametrize("consumer", CONSUMERS)
@pytest.mark.parametrize("size", [5, 300])
def test_flush_auto_coalesces_a_list_source_into_few_writes(consumer: str, size: int) -> None:
    items = [f"{i:04d}" + "x" * size for i in range(1000)]
    frame = len(f"data: {items[0]}\n\n")
    chunks = consume(to_sse(items, heartbeat=None), consumer)
    writes = chunks[1:]
    assert data_of(writes) == items
    # "Few": a thread hand-off may split what is ready, but nowhere near one write per chunk.
    assert len(writes) <= 100, [len(w) for w in writes]
    assert all(len(w) <= MAX_BATCH_BYTES + frame for w in writes)
    assert_whole_events(writes)


def test_flush_auto_writes_everything_ready_at_once_in_64_kib_batches() -> None:
    """A channel filled before streaming starts: all of it is ready at the first look."""
    items = [f"{i:04d}" + "y" * 300 for i in range(1000)]
    frame = len(f"data: {items[0]}\n\n")
    channel = Channel(maxsize=1000)
    for item in items:
        channel.send(item)
    channel.end()
    writes = list(to_sse(channel))[1:]
    per_batch = MAX_BATCH_BYTES // frame
    assert len(writes) == -(-1000 // per_batch)
    assert all(len(w) <= MAX_BATCH_BYTES for w in writes)
    assert data_of(writes) == items


@pytest.mark.parametrize("consumer", CONSUMERS)
@pytest.mark.parametrize("kind", ["generator", "async generator"])
def test_flush_budget_batches_what_arrives_within_it(kind: str, consumer: str) -> None:
    """With an hour's budget, nothing is written until the source ends: one batch."""
    items = ["a", "b", "c", "d"]
    chunks = consume(to_sse(make_source(kind, items), flush=3600.0, heartbeat=None), consumer)
    _opening, *writes = chunks
    assert len(writes) == 1
    assert data_of(writes) == items


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_flush_budget_writes_early_when_a_batch_fills(consumer: str) -> None:
    release = threading.Event()
    payload = "z" * 1024
    count = MAX_BATCH_BYTES // 1024 + 10

    def source() -> Iterator[str]:
        yield from [payload] * count
        yield "released" if release.wait(WAIT) else "timed out"

    async def areader(stream: SSEStream) -> list[bytes]:
        out = []
        async for chunk in stream:
            out.append(chunk)
            if parse(out):
                release.set()
        return out

    stream = to_sse(source(), flush=3600.0, heartbeat=None)
    if consumer == "sync":
        chunks = []
        for chunk in stream:
            chunks.append(chunk)
            if parse(chunks):  # data came out long before the budget: the batch was full
                release.set()
    else:
        chunks = asyncio.run(areader(stream))
    assert data_of(chunks) == [payload] * count + ["released"]


@pytest.mark.parametrize("value", ["never", "EACH", 0, -0.5, True, None, "0.5"])
def test_invalid_flush_is_a_value_error_naming_flush(value: Any) -> None:
    with pytest.raises(ValueError, match="flush"):
        to_sse([], flush=value)


# -- 5. opening and ending ------------------------------------------------------------------------


@pytest.mark.parametrize("consumer", CONSUMERS)
@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, b": ok\n\n"),
        ({"retry": 2500}, b": ok\nretry: 2500\n\n"),
        ({"padding": 2048, "retry": 0}, b": ok\n:" + b" " * 2048 + b"\nretry: 0\n\n"),
    ],
)
def test_the_opening_comes_before_a_slow_source_yields(
    consumer: str, options: dict[str, Any], expected: bytes
) -> None:
    release = threading.Event()

    def source() -> Iterator[str]:
        yield "released" if release.wait(WAIT) else "timed out"

    stream = to_sse(source(), heartbeat=None, **options)
    if consumer == "sync":
        iterator = iter(stream)
        first = next(iterator)  # returns while the source is still blocked
        release.set()
        rest = list(iterator)
    else:

        async def main() -> tuple[bytes, list[bytes]]:
            iterator = aiter(stream)
            first = await anext(iterator)
            release.set()
            return first, [chunk async for chunk in iterator]

        first, rest = asyncio.run(main())
    assert first == expected  # the exact preamble is the point here
    parser = EventParser()
    assert parser.feed(first) == []
    assert parser.retry == options.get("retry")
    assert data_of(rest) == ["released"]


@pytest.mark.parametrize("consumer", CONSUMERS)
@pytest.mark.parametrize("kind", SOURCE_KINDS)
def test_end_done_is_the_final_event(kind: str, consumer: str) -> None:
    chunks = consume(to_sse(make_source(kind, ["a", "b"]), end="[DONE]"), consumer)
    assert data_of(chunks) == ["a", "b", "[DONE]"]


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_end_event_is_the_final_event(consumer: str) -> None:
    end = Event("bye", event="end", id="last")
    events = parse(consume(to_sse(iter(["a"]), end=end), consumer))
    assert events == [MessageEvent("message", "a", ""), MessageEvent("end", "bye", "last")]


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_end_event_of_an_empty_source(consumer: str) -> None:
    assert data_of(consume(to_sse([], end="[DONE]"), consumer)) == ["[DONE]"]


# -- 6. errors ------------------------------------------------------------------------------------


def failing_source(kind: str, error: BaseException) -> Any:
    if kind == "generator":

        def gen() -> Iterator[str]:
            yield "a"
            raise error

        return gen()

    async def agen() -> AsyncIterator[str]:
        yield "a"
        await asyncio.sleep(0)
        raise error

    return agen()


SOURCE_FUNCS = ["generator", "async generator"]


def error_message(event: MessageEvent) -> Any:
    assert event.type == "error"
    return json.loads(event.data)["message"]


@pytest.mark.parametrize("consumer", CONSUMERS)
@pytest.mark.parametrize("kind", SOURCE_FUNCS)
def test_an_exception_in_the_source_becomes_a_generic_error_event_and_is_logged(
    kind: str, consumer: str, caplog: pytest.LogCaptureFixture
) -> None:
    error = KeyError("database password is hunter2")
    stream = to_sse(failing_source(kind, error), end="[DONE]")
    with caplog.at_level(logging.ERROR, logger="ssekit"):
        chunks = consume(stream, consumer)  # the stream ends cleanly: nothing is raised
    assert b"hunter2" not in b"".join(chunks)
    events = parse(chunks)
    assert [e.type for e in events] == ["message", "error"]  # no [DONE] after an error
    assert json.loads(events[1].data) == {"message": GENERIC_ERROR_MESSAGE}
    records = [r for r in caplog.records if r.name == "ssekit" and r.levelno >= logging.ERROR]
    assert len(records) == 1
    assert records[0].exc_info is not None
    assert records[0].exc_info[1] is error
    assert records[0].exc_info[2] is not None  # with its traceback
    assert "hunter2" in caplog.text  # the server's log has the details
    assert stream.state.name == "CLOSED"


@pytest.mark.parametrize("consumer", CONSUMERS)
@pytest.mark.parametrize("kind", SOURCE_FUNCS)
def test_a_stream_error_message_reaches_the_client_and_is_not_logged(
    kind: str, consumer: str, caplog: pytest.LogCaptureFixture
) -> None:
    stream = to_sse(failing_source(kind, StreamError("quota exceeded: try later")))
    with caplog.at_level(logging.ERROR, logger="ssekit"):
        events = parse(consume(stream, consumer))
    assert [e.data for e in events[:1]] == ["a"]
    assert error_message(events[1]) == "quota exceeded: try later"
    assert len(events) == 2
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("consumer", CONSUMERS)
@pytest.mark.parametrize("kind", SOURCE_FUNCS)
def test_on_error_hook(kind: str, consumer: str, caplog: pytest.LogCaptureFixture) -> None:
    seen: list[BaseException] = []
    error = ValueError("internal")

    def as_text(exc: BaseException) -> str:
        seen.append(exc)
        return f"sorry: {type(exc).__name__}"

    events = parse(consume(to_sse(failing_source(kind, error), on_error=as_text), consumer))
    assert error_message(events[-1]) == "sorry: ValueError"
    assert seen == [error]

    custom = Event('{"code":42}', event="failure", id="err-1")
    events = parse(
        consume(to_sse(failing_source(kind, error), on_error=lambda e: custom), consumer)
    )
    assert events[-1] == MessageEvent("failure", '{"code":42}', "err-1")

    events = parse(consume(to_sse(failing_source(kind, error), on_error=lambda e: None), consumer))
    assert error_message(events[-1]) == GENERIC_ERROR_MESSAGE
    events = parse(
        consume(
            to_sse(failing_source(kind, StreamError("shown")), on_error=lambda e: None), consumer
        )
    )
    assert error_message(events[-1]) == "shown"


@pytest.mark.parametrize("consumer", CONSUMERS)
@pytest.mark.parametrize("kind", SOURCE_FUNCS)
@pytest.mark.parametrize(
    ("error", "message"),
    [(ValueError("secret"), GENERIC_ERROR_MESSAGE), (StreamError("public"), "public")],
)
def test_an_on_error_hook_that_raises_is_logged_and_the_default_message_sent(
    kind: str,
    consumer: str,
    error: Exception,
    message: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def hook(exc: BaseException) -> str:
        raise RuntimeError("hook is broken")

    with caplog.at_level(logging.ERROR, logger="ssekit"):
        events = parse(consume(to_sse(failing_source(kind, error), on_error=hook), consumer))
    assert [e.type for e in events] == ["message", "error"]
    assert error_message(events[1]) == message
    hook_failures = [
        r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], RuntimeError)
    ]
    assert len(hook_failures) == 1


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_an_error_before_the_first_chunk(consumer: str) -> None:
    def source() -> Iterator[str]:
        raise StreamError("no data today")
        yield "never"

    events = parse(consume(to_sse(source()), consumer))
    assert [error_message(e) for e in events] == ["no data today"]


class BrokenIterable:
    def __iter__(self) -> Iterator[str]:
        raise StreamError("cannot start")


class BrokenAsyncIterable:
    def __aiter__(self) -> AsyncIterator[str]:
        raise StreamError("cannot start")


@pytest.mark.timeout(20)
@pytest.mark.parametrize("consumer", CONSUMERS)
@pytest.mark.parametrize("source_type", [BrokenIterable, BrokenAsyncIterable])
def test_a_source_that_fails_to_start_ends_with_an_error_event(
    consumer: str, source_type: type
) -> None:
    stream = to_sse(source_type(), heartbeat=BEAT)
    events = parse(consume(stream, consumer))  # does not wait forever, pinging
    assert [error_message(e) for e in events] == ["cannot start"]


# -- 8. max_duration ------------------------------------------------------------------------------


@pytest.mark.parametrize("consumer", CONSUMERS)
@pytest.mark.parametrize(("retry", "hint"), [(None, 1000), (7000, 7000)])
def test_max_duration_ends_the_stream_with_a_retry_hint(
    consumer: str, retry: int | None, hint: int
) -> None:
    release = threading.Event()
    closed = threading.Event()

    def source() -> Iterator[str]:
        try:
            yield "a"
            release.wait(WAIT)  # endless as far as the stream can tell
            yield "never sent"
        finally:
            closed.set()

    stream = to_sse(source(), max_duration=0.2, retry=retry, heartbeat=None)
    chunks = consume(stream, consumer)
    release.set()  # let the source's thread finish
    parser = EventParser()
    events = [e for chunk in chunks for e in parser.feed(chunk)]
    assert [e.data for e in events] == ["a"]
    assert parser.retry == hint
    assert chunks[-1] == b"retry: %d\n\n" % hint
    assert closed.wait(WAIT)
    assert stream.state.name == "CLOSED"


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_max_duration_with_an_async_source_and_a_channel(consumer: str) -> None:
    async def endless() -> AsyncIterator[int]:
        i = 0
        while True:
            yield i
            i += 1
            await asyncio.sleep(0.001)

    chunks = consume(to_sse(endless(), max_duration=0.1, heartbeat=None), consumer)
    assert chunks[-1] == b"retry: 1000\n\n"
    events = parse(chunks)
    assert [e.data for e in events] == [str(i) for i in range(len(events))]

    channel = Channel()
    chunks = consume(to_sse(channel, max_duration=0.1, retry=10), consumer)
    assert chunks[-1] == b"retry: 10\n\n"
    assert channel.closed


def test_invalid_max_duration() -> None:
    with pytest.raises(ValueError, match="max_duration"):
        to_sse([], max_duration=0)
