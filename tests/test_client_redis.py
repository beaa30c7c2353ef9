"""`EventSource` following a `RedisBroker` topic through server restarts, end to end.

uvicorn serves `apps.broker_app` (`broker_route("/events/{topic:path}", RedisBroker(url))`) in a
subprocess on a fixed port of its own; a publisher thread publishes numbered events to the topic
at a steady pace; an `EventSource` follows the topic.  The uvicorn process is killed (SIGKILL:
no farewell, no `retry:` hint, connections simply drop) and started again on the same port,
twice.  Each time the client reconnects by itself with `Last-Event-ID`, the new process replays
what it missed from Redis, and the client ends up with every number exactly once, in order.
The Redis server is the tests' own (`redis_server.py`); the tests are skipped without
`redis-server`.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_server import RedisServer, running_redis
from support.processes import BrokerApp
from support.waiting import wait_until

from ssekit import MessageEvent
from ssekit.broker import RedisBroker
from ssekit.client import EventSource, ReadyState

pytestmark = pytest.mark.timeout(90)

#: How long a test waits for what takes far less.
DEADLINE = 20.0
#: Seconds between two published events.
INTERVAL = 0.01
#: Events the client must receive live from each server before that server is killed.
LIVE_PER_SERVER = 30
#: Times the server is killed and started again.
RESTARTS = 2


class Publisher(threading.Thread):
    """Publishes {"n": 0}, {"n": 1}... to the topic every `INTERVAL` s until `stop()`."""

    def __init__(self, broker: RedisBroker, topic: str) -> None:
        super().__init__(name="publisher")
        self.broker = broker
        self.topic = topic
        self.published = 0
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            while not self._stop_event.is_set():
                self.broker.publish(self.topic, {"n": self.published})
                self.published += 1
                self._stop_event.wait(INTERVAL)
        except BaseException as exc:
            self.error = exc

    def stop(self) -> int:
        """Stop publishing; return how many events were published."""
        self._stop_event.set()
        self.join(DEADLINE)
        assert not self.is_alive()
        assert self.error is None, self.error
        return self.published


class Follower(threading.Thread):
    """Iterates the `EventSource`, keeping every message and when it arrived."""

    def __init__(self, source: EventSource) -> None:
        super().__init__(name="follower")
        self.source = source
        self.messages: list[MessageEvent] = []
        self.arrived: list[float] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for message in self.source:
                self.messages.append(message)
                self.arrived.append(time.monotonic())
        except BaseException as exc:
            self.error = exc

    def count(self) -> int:
        return len(self.messages)

    def wait_for(self, n: int, what: str) -> None:
        """Wait until `n` messages have arrived (failing after `DEADLINE`)."""
        wait_until(lambda: len(self.messages) >= n, what, timeout=DEADLINE)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def server(redis_server: RedisServer, tmp_path: Path) -> Iterator[BrokerApp]:
    server = BrokerApp("uvicorn", redis_server.url, tmp_path)
    try:
        yield server
    finally:
        server.stop()


def test_a_client_follows_a_topic_through_server_restarts_exactly_once(
    redis_server: RedisServer, server: BrokerApp
) -> None:
    """The uvicorn server is killed and restarted twice while events are published; the client
    reconnects with `Last-Event-ID` each time and receives every number once, in order."""
    topic = f"client/{uuid.uuid4().hex}"
    broker = RedisBroker(redis_server.url)
    try:
        # The client resumes after this marker from its first request: nothing published after
        # it can be missed, however the start-up races.
        marker = broker.publish(topic, "marker")
        server.start()
        url = f"{server.url}/events/{topic}"
        with EventSource(url, last_event_id=marker, retry_ms=100, max_retry_ms=500) as source:
            follower = Follower(source)
            follower.start()
            publisher = Publisher(broker, topic)
            publisher.start()
            try:
                missed: list[int] = []  # published while no server was up
                for _ in range(RESTARTS):
                    follower.wait_for(follower.count() + LIVE_PER_SERVER, "events from the server")
                    published_before = publisher.published
                    server.kill()
                    server.start()
                    missed.append(publisher.published - published_before)
                    follower.wait_for(follower.count() + 1, "events after the restart")
                follower.wait_for(follower.count() + LIVE_PER_SERVER, "events from the last server")
            finally:
                published = publisher.stop()
            follower.wait_for(published, "every published event")
            assert source.ready_state is ReadyState.OPEN
            source.close()
            follower.join(DEADLINE)
            assert not follower.is_alive()
    finally:
        broker.close()
    assert follower.error is None, follower.error
    numbers = [message.json()["n"] for message in follower.messages]
    assert numbers == list(range(published))
    assert {message.type for message in follower.messages} == {"message"}  # no "reset"
    assert follower.messages[-1].last_event_id == source.last_event_id
    assert server.starts == RESTARTS + 1
    assert min(missed) > 0  # so each new server had events to replay from Redis
