"""`RedisBroker` at scale: 1,000 subscribers on 1,000 topics in one process, across a restart.

The process's threads and Redis connections stay within a small constant of what they were
before the broker existed (one reader thread, one reading connection, a small pool), however
many topics it follows; every subscriber gets its topic's events once, in order, also when
`redis-server` is killed (SIGKILL) mid-stream and started again (AOF on).  Subscribers are
in-process subscriptions whose queues the test reads (1,000 HTTP clients would measure the
HTTP stack, not the broker).  Figures are printed (`pytest -s`).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis_server import RedisServer, running_redis
from support.waiting import wait_until

from ssekit import EventParser
from ssekit.broker import RedisBroker, Subscription

pytestmark = pytest.mark.timeout(120)

TOPICS = 1000
#: Events per topic before the kill, and after the restart.
BEFORE = 3
AFTER = 3
#: How long Redis stays down (the reader keeps trying meanwhile).
OUTAGE = 0.5
DEADLINE = 60.0
#: The most threads and Redis connections the broker may add, whatever its topics.
MAX_ADDED = 5


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


def os_threads() -> int:
    """The process's threads as the kernel counts them (Python's and any other)."""
    for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return threading.active_count()  # pragma: no cover - not Linux


def connections(admin: redis.Redis) -> int:
    """Clients connected to the server (the admin's own included, in every count alike)."""
    return len(admin.client_list())


def queued(subscription: Subscription) -> int:
    return len(subscription._handoff._items)


def publish(broker: RedisBroker, topic: str, n: int) -> str:
    """Publish event n; after the restart a pooled connection may be stale: try once more."""
    try:
        return broker.publish(topic, {"n": n})
    except redis.ConnectionError:
        return broker.publish(topic, {"n": n})


def test_a_thousand_topics_cost_a_constant_and_survive_a_restart(
    redis_server: RedisServer,
) -> None:
    admin = redis_server.client()
    try:
        base = (threading.active_count(), os_threads(), connections(admin))
        broker = RedisBroker(redis_server.url, queue_size=BEFORE + AFTER + 1)
        try:
            run = uuid.uuid4().hex
            topics = [f"scale/{run}/{n}" for n in range(TOPICS)]
            began = time.monotonic()
            subscriptions = [broker.subscribe(topic) for topic in topics]
            subscribed = time.monotonic() - began
            published: dict[str, list[str]] = {topic: [] for topic in topics}
            for n in range(BEFORE - 1):
                for topic in topics:
                    published[topic].append(publish(broker, topic, n))
            held = (threading.active_count(), os_threads(), connections(admin))
            # The last round at once, as `publish()` writes it, and Redis killed at once: the
            # reader is in the middle of it.
            pipe = admin.pipeline(transaction=False)
            for topic in topics:
                pipe.xadd(broker.prefix + topic, {b"b": b'data: {"n":%d}\n\n' % (BEFORE - 1)})
                pipe.xadd(broker._pulse_key, {b"t": topic.encode()})
            for topic, entry_id in zip(topics, pipe.execute()[::2], strict=True):
                published[topic].append(entry_id.decode())
            delivered_at_kill = sum(map(queued, subscriptions))
            redis_server.kill()
            time.sleep(OUTAGE)  # Redis stays down this long: not a wait for anything
            redis_server.start()
            for n in range(BEFORE, BEFORE + AFTER):
                for topic in topics:
                    published[topic].append(publish(broker, topic, n))
            total = BEFORE + AFTER
            wait_until(
                lambda: all(queued(s) >= total for s in subscriptions),
                "every event delivered",
                timeout=DEADLINE,
            )
            after_restart = (threading.active_count(), os_threads(), connections(admin))
            lost = duplicated = 0
            for topic, subscription in zip(topics, subscriptions, strict=True):
                events = EventParser().feed(b"".join(subscription._handoff._items))
                numbers = [e.json()["n"] for e in events]
                lost += len(set(range(total)) - set(numbers))
                duplicated += len(numbers) - len(set(numbers))
                assert numbers == list(range(total)), topic
                assert [e.last_event_id for e in events] == published[topic]
            counters = broker.counters
        finally:
            broker.close()
        wait_until(lambda: connections(admin) <= base[2], "the broker's connections closed")
        after_close = (threading.active_count(), os_threads(), connections(admin))
    finally:
        admin.close()
    summary = (
        f"{TOPICS} topics: subscribed in {subscribed:.2f} s; {delivered_at_kill} of "
        f"{TOPICS * BEFORE} events delivered when Redis was killed; lost {lost}, "
        f"duplicated {duplicated}; counters {counters}\n"
        f"(python threads, OS threads, Redis clients): before {base}, held {held}, "
        f"after the restart {after_restart}, after close {after_close}"
    )
    assert (lost, duplicated) == (0, 0), summary
    assert counters.get("reconnects", 0) >= 1, summary
    for measured in (held, after_restart):
        assert all(now - before <= MAX_ADDED for now, before in zip(measured, base, strict=True))
    assert after_close[0] == base[0]
