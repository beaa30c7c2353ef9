"""`Handoff`: the bounded, thread-safe hand-over between one producer side and one consumer side.

Either side may be a thread that blocks or a task that awaits; the tests drive each combination
directly, without a stream around it.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import pytest

from ssekit import ChannelClosed
from ssekit._handoff import Handoff, LoopWaiter, _foreign_by_loop
from ssekit._writer import SourceEnded, SourceFailed, SourceFinished

pytestmark = pytest.mark.timeout(30)

WAIT = 10.0


def start(target: Callable[[], Any]) -> threading.Thread:
    thread = threading.Thread(target=target)
    thread.start()
    return thread


def test_items_come_out_in_order_and_take_returns_everything() -> None:
    handoff = Handoff(3)
    assert handoff.take() == []
    assert handoff.try_put("a") is True
    handoff.put("b")
    assert handoff.take() == ["a", "b"]
    assert handoff.take() == []


def test_try_put_refuses_when_full() -> None:
    handoff = Handoff(2)
    assert handoff.try_put(1)
    assert handoff.try_put(2)
    assert handoff.try_put(3) is False
    assert handoff.take() == [1, 2]
    assert handoff.try_put(3)


def test_put_timeout() -> None:
    handoff = Handoff(1)
    handoff.put(1)
    with pytest.raises(TimeoutError):
        handoff.put(2, timeout=0.02)
    assert handoff.take() == [1]


def test_aput_timeout() -> None:
    async def main() -> None:
        handoff = Handoff(1)
        await handoff.aput(1)
        with pytest.raises(TimeoutError):
            await handoff.aput(2, timeout=0.02)
        assert handoff.take() == [1]

    asyncio.run(main())


def test_repeated_put_timeouts_leave_no_waiters_behind() -> None:
    handoff = Handoff(1)
    handoff.put(0)
    for _ in range(20):
        with pytest.raises(TimeoutError):
            handoff.put(1, timeout=0.001)
    assert handoff._producers == []


@pytest.mark.parametrize("maxsize", [0, -3])
def test_maxsize_must_be_positive(maxsize: int) -> None:
    with pytest.raises(ValueError, match="maxsize"):
        Handoff(maxsize)


def test_finish_drained_and_error() -> None:
    handoff = Handoff(4)
    handoff.put("a")
    error = ValueError("x")
    assert handoff.finish(error) is True
    assert handoff.finished
    assert not handoff.drained  # "a" is still waiting
    assert handoff.outcome == SourceFailed(error)
    assert handoff.finish() is False
    with pytest.raises(ChannelClosed, match="ended"):
        handoff.put("late")
    assert handoff.take() == ["a"]
    assert handoff.drained


def test_the_outcome_says_how_the_producer_ended() -> None:
    """The handoff records how; what that means on the wire is the writer's to decide."""
    handoff = Handoff(1)
    assert handoff.outcome is None
    handoff.finish()
    assert handoff.outcome == SourceFinished()
    handoff = Handoff(1)
    handoff.finish(ending=b"retry: 5\n\n")
    assert handoff.outcome == SourceEnded(b"retry: 5\n\n")
    handoff = Handoff(1)
    handoff.close()
    assert handoff.finish() is False
    assert handoff.outcome is None  # closed by the consumer: nothing to report to it


def test_a_nudge_before_the_wait_is_not_lost() -> None:
    handoff = Handoff(1)
    handoff.nudge()  # nobody waits yet
    assert handoff.wait(WAIT) is True  # returns at once
    assert handoff.wait(0.01) is False  # the nudge was used up


def test_close_from_elsewhere_wakes_the_waiting_consumer() -> None:
    handoff = Handoff(1)
    woke = threading.Event()

    def consume() -> None:
        handoff.wait(None)
        woke.set()

    thread = start(consume)
    deadline = time.monotonic() + WAIT
    while handoff._consumer is None and time.monotonic() < deadline:  # parked: now close it
        time.sleep(0.001)
    handoff.close()
    assert woke.wait(WAIT)
    thread.join(WAIT)
    assert handoff.wait(None) is True  # closed: never blocks again


def test_close_drops_items_and_refuses_more() -> None:
    handoff = Handoff(4)
    handoff.put("a")
    handoff.close()
    assert handoff.closed
    assert handoff.take() == []
    with pytest.raises(ChannelClosed, match="gone away"):
        handoff.put("b")
    with pytest.raises(ChannelClosed):
        handoff.try_put("b")
    assert handoff.finish() is False


# -- blocking producer, thread side ---------------------------------------------------------------


def test_a_blocked_producer_thread_resumes_when_the_consumer_takes() -> None:
    handoff = Handoff(1)
    handoff.put(1)
    about_to_block = threading.Event()
    done = threading.Event()

    def producer() -> None:
        about_to_block.set()
        handoff.put(2)
        done.set()

    thread = start(producer)
    assert about_to_block.wait(WAIT)
    assert not done.wait(0.1)  # full: it waits (a short look can only prove waiting)
    assert handoff.take() == [1]
    assert done.wait(WAIT)
    thread.join(WAIT)
    assert handoff.take() == [2]


def test_close_releases_a_blocked_producer_thread() -> None:
    handoff = Handoff(1)
    handoff.put(1)
    outcome: list[BaseException] = []
    about_to_block = threading.Event()

    def producer() -> None:
        about_to_block.set()
        try:
            handoff.put(2)
        except BaseException as exc:
            outcome.append(exc)

    thread = start(producer)
    assert about_to_block.wait(WAIT)
    handoff.close()
    thread.join(WAIT)
    assert not thread.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], ChannelClosed)


def test_close_releases_every_blocked_producer_thread() -> None:
    handoff = Handoff(1)
    handoff.put(0)
    outcomes: list[BaseException] = []
    lock = threading.Lock()
    ready = threading.Barrier(5)

    def producer(i: int) -> None:
        ready.wait(WAIT)
        try:
            handoff.put(i)
        except BaseException as exc:
            with lock:
                outcomes.append(exc)

    threads = [threading.Thread(target=producer, args=(i,)) for i in range(1, 5)]
    for thread in threads:
        thread.start()
    ready.wait(WAIT)
    handoff.close()
    for thread in threads:
        thread.join(WAIT)
    assert not any(thread.is_alive() for thread in threads)
    assert len(outcomes) == 4
    assert all(isinstance(exc, ChannelClosed) for exc in outcomes)


def test_several_blocked_producers_all_get_through() -> None:
    """Each take() must wake every parked producer, not just the latest one."""
    handoff = Handoff(1)
    per_producer = 200

    def producer(p: int) -> None:
        for i in range(per_producer):
            handoff.put((p, i))

    threads = [threading.Thread(target=producer, args=(p,)) for p in range(4)]
    for thread in threads:
        thread.start()
    received: list[tuple[int, int]] = []
    while len(received) < 4 * per_producer:
        if not handoff.wait(WAIT):
            pytest.fail(f"stalled after {len(received)} items")
        received += handoff.take()
    for thread in threads:
        thread.join(WAIT)
    for p in range(4):
        assert [i for q, i in received if q == p] == list(range(per_producer))


# -- blocking producer, task side -----------------------------------------------------------------


def test_a_blocked_producer_task_resumes_when_a_thread_takes() -> None:
    async def main() -> None:
        handoff = Handoff(1)
        await handoff.aput(1)
        task = asyncio.create_task(handoff.aput(2))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not task.done()
        taken = await asyncio.to_thread(handoff.take)  # the wake-up crosses threads
        assert taken == [1]
        await asyncio.wait_for(task, WAIT)
        assert handoff.take() == [2]

    asyncio.run(main())


def test_close_releases_a_blocked_producer_task() -> None:
    async def main() -> None:
        handoff = Handoff(1)
        await handoff.aput(1)
        task = asyncio.create_task(handoff.aput(2))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not task.done()
        handoff.close()
        with pytest.raises(ChannelClosed):
            await asyncio.wait_for(task, WAIT)

    asyncio.run(main())


def test_close_from_another_thread_releases_a_blocked_producer_task() -> None:
    async def main() -> None:
        handoff = Handoff(1)
        await handoff.aput(1)
        task = asyncio.create_task(handoff.aput(2))
        for _ in range(5):
            await asyncio.sleep(0)
        await asyncio.to_thread(handoff.close)
        with pytest.raises(ChannelClosed):
            await asyncio.wait_for(task, WAIT)

    asyncio.run(main())


# -- consumer side --------------------------------------------------------------------------------


def test_wait_returns_at_once_when_there_is_something() -> None:
    handoff = Handoff(2)
    handoff.put(1)
    assert handoff.wait(None) is True
    handoff.take()
    handoff.finish()
    assert handoff.wait(None) is True


def test_wait_times_out_when_nothing_comes() -> None:
    handoff = Handoff(2)
    assert handoff.wait(0.01) is False

    async def main() -> None:
        assert await handoff.wait_async(0.01) is False

    asyncio.run(main())


def test_wait_is_woken_by_a_producer_thread() -> None:
    handoff = Handoff(2)
    parked = threading.Event()

    def producer() -> None:
        parked.wait(WAIT)
        handoff.put("x")

    thread = start(producer)
    parked.set()
    assert handoff.wait(WAIT) is True
    assert handoff.take() == ["x"]
    thread.join(WAIT)


def test_wait_is_woken_by_finish_from_a_thread() -> None:
    handoff = Handoff(2)
    thread = start(lambda: handoff.finish())
    assert handoff.wait(WAIT) is True
    assert handoff.drained
    thread.join(WAIT)


@pytest.mark.parametrize("how", ["put", "finish", "put_batch"])
def test_wait_async_is_woken_from_a_thread(how: str) -> None:
    async def main() -> None:
        handoff = Handoff(2)
        loop = asyncio.get_running_loop()

        def producer() -> None:
            if how == "put":
                handoff.put("x")
            elif how == "put_batch":
                handoff.put_batch(["x", "y", "z"])
            else:
                handoff.finish()

        waiting = asyncio.create_task(handoff.wait_async(WAIT))
        await asyncio.sleep(0)  # let it park
        await loop.run_in_executor(None, producer)
        assert await asyncio.wait_for(waiting, WAIT) is True

    asyncio.run(main())


def test_wait_async_is_woken_by_a_task_on_the_same_loop() -> None:
    async def main() -> None:
        handoff = Handoff(2)

        async def producer() -> None:
            await asyncio.sleep(0)
            await handoff.aput("x")

        task = asyncio.create_task(producer())
        assert await handoff.wait_async(WAIT) is True
        assert handoff.take() == ["x"]
        await task

    asyncio.run(main())


def test_async_producer_thread_consumer_stress() -> None:
    """A task producing on a helper loop, a thread consuming: 5000 items, in order."""
    handoff = Handoff(4)
    count = 5000

    def producer() -> None:
        async def produce() -> None:
            for i in range(count):
                await handoff.aput(i)
            handoff.finish()

        asyncio.run(produce())

    thread = start(producer)
    received: list[int] = []
    while not handoff.drained:
        assert handoff.wait(WAIT)
        received += handoff.take()
    thread.join(WAIT)
    assert received == list(range(count))


def test_thread_producer_async_consumer_stress() -> None:
    handoff = Handoff(4)
    count = 5000

    def producer() -> None:
        for i in range(count):
            handoff.put(i)
        handoff.finish()

    async def main() -> list[int]:
        thread = start(producer)
        received: list[int] = []
        while not handoff.drained:
            assert await handoff.wait_async(WAIT)
            received += handoff.take()
        await asyncio.to_thread(thread.join, WAIT)
        return received

    assert asyncio.run(main()) == list(range(count))


# -- a stream's own waiter: one timer across deliveries, batched wake-ups from threads ------------


def test_a_timer_armed_before_a_delivery_does_not_end_the_next_wait_early() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        handoff, waiter = Handoff(4), LoopWaiter(loop)
        start = loop.time()
        first = handoff.park_async(waiter)
        assert first is not None
        waiter.due_by(start + 0.3, start)  # the heartbeat as it stood
        handoff.try_put("event")  # a delivery wakes the wait...
        assert await first is True
        assert handoff.take() == ["event"]
        second = handoff.park_async(waiter)
        assert second is not None
        waiter.due_by(loop.time() + 30.0, loop.time())  # ...and moves the heartbeat later
        await asyncio.sleep(0.6)  # the first timer has fired meanwhile
        assert not second.done()  # without ending a wait that is due in 30 s
        waiter.due_by(loop.time() + 0.05, loop.time())  # a nearer deadline is kept too
        assert await second is False
        waiter.disarm()

    asyncio.run(main())


def test_wakes_from_another_thread_reach_the_loop_in_one_callback() -> None:
    class CountingLoop(asyncio.SelectorEventLoop):
        def __init__(self) -> None:
            super().__init__()
            self.threadsafe_calls = 0

        def call_soon_threadsafe(self, *args: Any, **kwargs: Any) -> Any:
            self.threadsafe_calls += 1
            return super().call_soon_threadsafe(*args, **kwargs)

    async def main(loop: CountingLoop) -> None:
        handoffs = [Handoff(4) for _ in range(200)]
        waiters = [LoopWaiter(loop) for _ in handoffs]
        futures = [h.park_async(w) for h, w in zip(handoffs, waiters, strict=True)]
        release = threading.Event()

        def deliver() -> None:  # as a Redis reader thread does, holding the loop's thread off
            for handoff in handoffs:
                handoff.try_put("event")
            release.set()

        loop.threadsafe_calls = 0
        thread = start(deliver)
        await loop.run_in_executor(None, release.wait)
        thread.join(WAIT)
        assert await asyncio.gather(*futures) == [True] * 200  # type: ignore[arg-type]
        # The executor's hand-back is one call; the 200 wake-ups, a few batches at most.
        assert loop.threadsafe_calls <= 10

    loop = CountingLoop()
    try:
        loop.run_until_complete(main(loop))
    finally:
        loop.close()


def test_the_batches_of_wake_ups_keep_no_loop_alive() -> None:
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loops.append(weakref.ref(loop))
        handoff = Handoff(4)
        future = handoff.park_async(LoopWaiter(loop))
        assert future is not None
        start(lambda: handoff.try_put("event")).join(WAIT)
        assert await future is True
        assert loop in _foreign_by_loop  # the wake-up came through a batch

    for _ in range(3):
        asyncio.run(main())
    gc.collect()
    assert [ref() for ref in loops] == [None, None, None]
