"""`Channel`: push chunks from threads and tasks; bounded; closed when over or abandoned."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest

from ssekit import Channel, ChannelClosed, EventParser, MessageEvent, StreamError, to_sse
from ssekit._writer import GENERIC_ERROR_MESSAGE

pytestmark = pytest.mark.timeout(30)

#: Deadline for anything the tests wait for (far more than needed).
WAIT = 10.0


def parse(chunks: list[bytes]) -> list[MessageEvent]:
    parser = EventParser()
    return [event for chunk in chunks for event in parser.feed(chunk)]


def start(target: Callable[[], Any]) -> threading.Thread:
    thread = threading.Thread(target=target)
    thread.start()
    return thread


# -- send, end, errors ---------------------------------------------------------------------------


def test_send_and_end_from_a_thread_sync_consumer() -> None:
    channel = Channel()

    def producer() -> None:
        for i in range(100):
            channel.send({"i": i})
        assert channel.end() is True

    stream = to_sse(channel, heartbeat=None, end="[DONE]")
    thread = start(producer)
    events = parse(list(stream))
    thread.join(WAIT)
    assert [e.data for e in events[:-1]] == [f'{{"i":{i}}}' for i in range(100)]
    assert events[-1].data == "[DONE]"


def test_asend_and_aend_from_a_task_async_consumer() -> None:
    async def main() -> list[bytes]:
        channel = Channel(maxsize=2)

        async def producer() -> None:
            for i in range(100):
                await channel.asend(f"item {i}")
            assert await channel.aend() is True

        task = asyncio.create_task(producer())
        chunks = [chunk async for chunk in to_sse(channel, heartbeat=None)]
        await task
        return chunks

    assert [e.data for e in parse(asyncio.run(main()))] == [f"item {i}" for i in range(100)]


def test_send_from_a_thread_async_consumer() -> None:
    async def main() -> list[bytes]:
        channel = Channel(maxsize=4)

        def producer() -> None:
            for i in range(200):
                channel.send(i)
            channel.end()

        thread = start(producer)
        chunks = [chunk async for chunk in to_sse(channel, heartbeat=None)]
        thread.join(WAIT)
        return chunks

    assert [e.data for e in parse(asyncio.run(main()))] == [str(i) for i in range(200)]


def test_asend_from_another_threads_event_loop() -> None:
    """The producer awaits on its own loop, the consumer reads on another: wake-ups cross."""
    channel = Channel(maxsize=1)

    def producer() -> None:
        async def produce() -> None:
            for i in range(100):
                await channel.asend(i)
            await channel.aend()

        asyncio.run(produce())

    async def main() -> list[bytes]:
        thread = start(producer)
        chunks = [chunk async for chunk in to_sse(channel, heartbeat=None)]
        thread.join(WAIT)
        return chunks

    assert [e.data for e in parse(asyncio.run(main()))] == [str(i) for i in range(100)]


@pytest.mark.parametrize("consumer", ["sync", "async"])
def test_send_error_with_a_message(consumer: str, caplog: pytest.LogCaptureFixture) -> None:
    channel = Channel()
    channel.send("a")
    assert channel.send_error("upstream timed out") is True
    with caplog.at_level(logging.ERROR, logger="ssekit"):
        if consumer == "sync":
            chunks = list(to_sse(channel, end="[DONE]"))
        else:

            async def main() -> list[bytes]:
                return [chunk async for chunk in to_sse(channel, end="[DONE]")]

            chunks = asyncio.run(main())
    events = parse(chunks)
    assert [e.type for e in events] == ["message", "error"]
    assert json.loads(events[1].data) == {"message": "upstream timed out"}
    assert not caplog.records


def test_send_error_with_exceptions(caplog: pytest.LogCaptureFixture) -> None:
    channel = Channel()
    channel.send_error(StreamError("shown to the client"))
    events = parse(list(to_sse(channel)))
    assert json.loads(events[-1].data) == {"message": "shown to the client"}

    channel = Channel()
    secret = ConnectionError("10.0.0.7 refused")
    channel.send_error(secret)
    with caplog.at_level(logging.ERROR, logger="ssekit"):
        chunks = list(to_sse(channel))
    assert b"10.0.0.7" not in b"".join(chunks)
    assert json.loads(parse(chunks)[-1].data) == {"message": GENERIC_ERROR_MESSAGE}
    assert [r.exc_info[1] for r in caplog.records if r.exc_info] == [secret]

    with pytest.raises(TypeError):
        Channel().send_error(42)  # type: ignore[arg-type]


def test_asend_error() -> None:
    async def main() -> list[bytes]:
        channel = Channel()
        await channel.asend("a")
        assert await channel.asend_error("bad") is True
        assert await channel.asend_error("again") is False
        return [chunk async for chunk in to_sse(channel)]

    events = parse(asyncio.run(main()))
    assert [(e.type, e.data) for e in events] == [("message", "a"), ("error", '{"message":"bad"}')]


def test_end_and_send_error_return_false_when_already_over() -> None:
    channel = Channel()
    assert not channel.closed
    assert channel.end() is True
    assert channel.closed
    assert channel.end() is False
    assert channel.send_error("late") is False

    channel = Channel()
    assert channel.send_error("first") is True
    assert channel.end() is False
    assert channel.send_error("second") is False

    async def main() -> None:
        channel = Channel()
        assert await channel.aend() is True
        assert await channel.aend() is False
        assert await channel.asend_error("x") is False

    asyncio.run(main())


def test_send_after_end_raises_channel_closed() -> None:
    channel = Channel()
    channel.end()
    with pytest.raises(ChannelClosed, match="ended"):
        channel.send("late")

    async def main() -> None:
        channel = Channel()
        await channel.aend()
        with pytest.raises(ChannelClosed):
            await channel.asend("late")

    asyncio.run(main())
    assert issubclass(ChannelClosed, RuntimeError)


@pytest.mark.parametrize("consumer", ["sync", "async"])
def test_send_after_the_consumer_left_raises_channel_closed(consumer: str) -> None:
    channel = Channel()
    channel.send("a")
    stream = to_sse(channel, heartbeat=None)
    if consumer == "sync":
        iterator = iter(stream)
        while not parse([next(iterator)]):
            pass
        stream.close()
    else:

        async def main() -> None:
            iterator = aiter(stream)
            while not parse([await anext(iterator)]):
                pass
            await stream.aclose()

        asyncio.run(main())
    assert channel.closed
    with pytest.raises(ChannelClosed, match="gone away"):
        channel.send("b")
    assert channel.end() is False
    assert channel.send_error("x") is False

    async def asend() -> None:
        with pytest.raises(ChannelClosed):
            await channel.asend("c")

    asyncio.run(asend())


def test_the_stream_ending_closes_the_channel() -> None:
    channel = Channel()
    channel.send("a")
    channel.end()
    list(to_sse(channel))
    with pytest.raises(ChannelClosed):
        channel.send("b")


# -- many producers ------------------------------------------------------------------------------

PRODUCERS = 4
PER_PRODUCER = 300


def check_exactly_once_in_order(events: list[MessageEvent]) -> None:
    received: dict[int, list[int]] = {p: [] for p in range(PRODUCERS)}
    for event in events:
        item = event.json()
        received[item["p"]].append(item["i"])
    for p in range(PRODUCERS):
        assert received[p] == list(range(PER_PRODUCER)), f"producer {p}"


@pytest.mark.parametrize("maxsize", [1, 8, 1000])
def test_several_producer_threads_sync_consumer(maxsize: int) -> None:
    channel = Channel(maxsize=maxsize)

    def producer(p: int) -> None:
        for i in range(PER_PRODUCER):
            channel.send({"p": p, "i": i})

    threads = [threading.Thread(target=producer, args=(p,)) for p in range(PRODUCERS)]

    def coordinator() -> None:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT * 2)
        channel.end()

    thread = start(coordinator)
    events = parse(list(to_sse(channel, heartbeat=None)))
    thread.join(WAIT)
    assert len(events) == PRODUCERS * PER_PRODUCER
    check_exactly_once_in_order(events)


@pytest.mark.parametrize("maxsize", [1, 8])
def test_threads_and_tasks_produce_together_async_consumer(maxsize: int) -> None:
    async def main() -> list[bytes]:
        channel = Channel(maxsize=maxsize)

        def thread_producer(p: int) -> None:
            for i in range(PER_PRODUCER):
                channel.send({"p": p, "i": i})

        async def task_producer(p: int) -> None:
            for i in range(PER_PRODUCER):
                await channel.asend({"p": p, "i": i})

        threads = [threading.Thread(target=thread_producer, args=(p,)) for p in (0, 1)]
        for thread in threads:
            thread.start()
        tasks = [asyncio.create_task(task_producer(p)) for p in (2, 3)]

        async def finish() -> None:
            await asyncio.gather(*tasks)
            for thread in threads:
                await asyncio.to_thread(thread.join, WAIT * 2)
            await channel.aend()

        finisher = asyncio.create_task(finish())
        chunks = [chunk async for chunk in to_sse(channel, heartbeat=None)]
        await finisher
        return chunks

    events = parse(asyncio.run(main()))
    assert len(events) == PRODUCERS * PER_PRODUCER
    check_exactly_once_in_order(events)


# -- bounded -------------------------------------------------------------------------------------


def test_a_full_channel_blocks_send_until_the_consumer_reads() -> None:
    channel = Channel(maxsize=2)
    channel.send("a")
    channel.send("b")
    about_to_block = threading.Event()
    sent = threading.Event()

    def producer() -> None:
        about_to_block.set()
        channel.send("c")
        sent.set()
        channel.end()

    thread = start(producer)
    assert about_to_block.wait(WAIT)
    # Nobody reads yet: the producer stays blocked (a short look; it can only prove blocking).
    assert not sent.wait(0.2)
    assert thread.is_alive()
    events = parse(list(to_sse(channel, heartbeat=None)))  # reading releases it
    assert sent.wait(WAIT)
    thread.join(WAIT)
    assert [e.data for e in events] == ["a", "b", "c"]


def test_send_timeout_raises_timeout_error() -> None:
    channel = Channel(maxsize=1)
    channel.send("a", timeout=0.01)  # room: no waiting
    with pytest.raises(TimeoutError):
        channel.send("b", timeout=0.05)

    async def main() -> None:
        with pytest.raises(TimeoutError):
            await channel.asend("b", timeout=0.05)

    asyncio.run(main())
    channel.end()
    assert [e.data for e in parse(list(to_sse(channel)))] == ["a"]  # nothing half-sent


def test_a_full_channel_makes_asend_wait_until_the_consumer_reads() -> None:
    async def main() -> list[str]:
        channel = Channel(maxsize=1)
        order: list[str] = []
        await channel.asend("a")
        waiting = asyncio.Event()

        async def producer() -> None:
            waiting.set()
            await channel.asend("b")
            order.append("b sent")
            await channel.aend()

        task = asyncio.create_task(producer())
        await waiting.wait()
        for _ in range(10):
            await asyncio.sleep(0)  # let it run: it must still be waiting
        assert not task.done()
        order.append("reading")
        events = parse([chunk async for chunk in to_sse(channel, heartbeat=None)])
        await task
        assert [e.data for e in events] == ["a", "b"]
        return order

    assert asyncio.run(main()) == ["reading", "b sent"]


def test_a_blocked_sender_is_released_when_the_consumer_leaves() -> None:
    channel = Channel(maxsize=1)
    channel.send("a")
    outcome: list[BaseException] = []
    about_to_block = threading.Event()

    def producer() -> None:
        about_to_block.set()
        try:
            channel.send("b")  # full until the stream reads "a" ...
            channel.send("c")  # ... then full again: the stream never reads it
        except BaseException as exc:
            outcome.append(exc)

    thread = start(producer)
    assert about_to_block.wait(WAIT)
    stream = to_sse(channel, heartbeat=None, flush="each")
    iterator = iter(stream)
    while not parse([next(iterator)]):
        pass
    stream.close()
    thread.join(WAIT)
    assert not thread.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], ChannelClosed)


# -- one stream per channel, validation -----------------------------------------------------------


def test_a_channel_feeds_only_one_stream() -> None:
    channel = Channel()
    first = to_sse(channel, heartbeat=None)
    iterator = iter(first)
    next(iterator)  # the opening: the channel is now attached
    second = to_sse(channel, heartbeat=None)
    with pytest.raises(RuntimeError, match="one stream"):
        list(second)
    second.close()  # does not take the channel away from the first stream

    async def amain() -> None:
        third = to_sse(channel, heartbeat=None)
        with pytest.raises(RuntimeError, match="one stream"):
            async for _ in third:
                pass
        await third.aclose()

    asyncio.run(amain())
    channel.send("still works")
    channel.end()
    assert [e.data for e in parse(list(iterator))] == ["still works"]


@pytest.mark.parametrize("maxsize", [0, -1, 1.5, True, "8", None])
def test_invalid_maxsize_is_a_value_error(maxsize: Any) -> None:
    with pytest.raises(ValueError, match="maxsize"):
        Channel(maxsize=maxsize)


def test_maxsize_default_and_one() -> None:
    channel = Channel()
    for i in range(64):
        channel.send(i, timeout=0.01)
    with pytest.raises(TimeoutError):
        channel.send(64, timeout=0.01)
    single = Channel(maxsize=1)
    single.send(0)
    with pytest.raises(TimeoutError):
        single.send(1, timeout=0.01)
