"""`RedisBroker` against a real `redis-server` of the tests' own (see `redis_server.py`).

In-process tests use brokers in this process, one topic each.  The end-to-end tests run what a
deployment runs: two uvicorn worker processes (`apps.broker_app`, each with its own
`RedisBroker`) serving one topic, a publisher in a third process (`apps.broker_publisher`)
publishing numbered events at a steady pace, and HTTP clients that follow the topic as an
`EventSource` does: a client that leaves process A mid-stream and comes back to process B with
`Last-Event-ID` gets every event exactly once, in order, even when `redis-server` is killed
(SIGKILL) and restarted in the middle.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from redis_server import RedisServer, running_redis
from support.processes import BrokerApp
from support.waiting import wait_until as support_wait_until

from ssekit import EventParser, MessageEvent, to_sse
from ssekit._frame import Encoded
from ssekit.broker import RESET_EVENT, Broker, RedisBroker, Subscription, TooManySubscribers
from ssekit.testing import read_events

pytestmark = pytest.mark.timeout(60)

TESTS_DIR = Path(__file__).resolve().parent
#: How long a test waits for something that takes far less (delivery, start-up, a stop).
DEADLINE = 15.0
#: The end-to-end runs: events published, and the publisher's pace (seconds between events).
EVENTS = 150
INTERVAL = 0.02
#: How long Redis stays down in the restart test (the publisher keeps failing meanwhile).
OUTAGE = 0.5


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One server for the module (the restart test restarts it); topics keep tests apart."""
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def topic() -> str:
    return f"test/{uuid.uuid4().hex}"


@pytest.fixture
def broker(redis_server: RedisServer) -> Iterator[RedisBroker]:
    broker = RedisBroker(redis_server.url, queue_size=64)
    yield broker
    broker.close()


@pytest.fixture
def admin(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A plain client, to look at what Redis holds."""
    client = redis_server.client()
    yield client
    client.close()


#: The support package's polling, with this file's longer deadline (Redis restarts are slow).
wait_until = functools.partial(support_wait_until, timeout=DEADLINE)


def read(subscription: Subscription, n: int) -> list[MessageEvent]:
    """The first `n` events of a stream of `subscription` (the stream is closed afterwards)."""
    return read_events(to_sse(subscription, heartbeat=None), n, timeout=DEADLINE)


def queued(subscription: Subscription) -> list[Any]:
    """What waits in the subscription's queue for its client (not taken)."""
    return list(subscription._handoff._items)


def readers() -> list[threading.Thread]:
    """This process's Redis reader threads."""
    return [t for t in threading.enumerate() if t.name.startswith("ssekit-redis-")]


def id_key(text: str) -> tuple[int, int]:
    first, _, second = text.partition("-")
    return int(first), int(second)


# -- in-process --------------------------------------------------------------------------------


def test_it_is_a_broker(broker: RedisBroker) -> None:
    """`RedisBroker` offers what the `Broker` protocol promises (checked by mypy here)."""
    typed: Broker = broker
    assert callable(typed.apublish)


def test_ids_are_the_stream_entry_ids(broker: RedisBroker, admin: redis.Redis, topic: str) -> None:
    """Each publish is one entry of the topic's stream; its entry id is the event's `id:`,
    strictly increasing; a live subscriber gets the events with those ids."""
    subscription = broker.subscribe(topic)
    ids = [broker.publish(topic, {"n": n}) for n in range(5)]
    assert [id_key(i) for i in ids] == sorted({id_key(i) for i in ids})
    stored: Any = admin.xrange(broker.prefix + topic)
    assert [entry_id.decode() for entry_id, _fields in stored] == ids
    events = read(subscription, 5)
    assert [(e.json(), e.last_event_id) for e in events] == [({"n": n}, ids[n]) for n in range(5)]


def test_an_event_is_encoded_once_for_every_subscriber(broker: RedisBroker, topic: str) -> None:
    """The reader hands the same bytes object to every local subscriber."""
    first, second = broker.subscribe(topic), broker.subscribe(topic)
    id_ = broker.publish(topic, {"x": 1}, event="update")
    wait_until(lambda: queued(first) and queued(second), "delivery to both subscriptions")
    [one], [two] = queued(first), queued(second)
    assert one is two
    assert isinstance(one, Encoded)
    assert one == b"id: " + id_.encode() + b'\nevent: update\ndata: {"x":1}\n\n'


def test_apublish(broker: RedisBroker, topic: str) -> None:
    """`apublish()` publishes from a coroutine (the round trip runs in a thread)."""
    subscription = broker.subscribe(topic)
    id_ = asyncio.run(broker.apublish(topic, "async"))
    [event] = read(subscription, 1)
    assert (event.data, event.last_event_id) == ("async", id_)


def test_publish_from_another_broker_with_just_the_url(
    redis_server: RedisServer, broker: RedisBroker, topic: str
) -> None:
    """Any other broker on the same URL (another process, another host) publishes to the topic."""
    subscription = broker.subscribe(topic)
    other = RedisBroker(redis_server.url)
    try:
        id_ = other.publish(topic, "from elsewhere")
    finally:
        other.close()
    [event] = read(subscription, 1)
    assert (event.data, event.last_event_id) == ("from elsewhere", id_)


def test_resume_is_exclusive(broker: RedisBroker, topic: str) -> None:
    """A resume from id k replays the entries after k (never k), then goes on live."""
    ids = [broker.publish(topic, n) for n in range(10)]
    subscription = broker.subscribe(topic, ids[3])
    live = broker.publish(topic, "live")
    events = read(subscription, 7)
    assert [e.data for e in events] == [*map(str, range(4, 10)), "live"]
    assert [e.last_event_id for e in events] == [*ids[4:], live]


def test_resume_from_the_newest_id_replays_nothing(broker: RedisBroker, topic: str) -> None:
    """A client that has everything gets what is published afterwards, nothing before."""
    ids = [broker.publish(topic, n) for n in range(3)]
    subscription = broker.subscribe(topic, ids[-1])
    assert queued(subscription) == []
    broker.publish(topic, "live")
    assert [e.data for e in read(subscription, 1)] == ["live"]


def test_a_resume_from_a_trimmed_id_starts_with_a_reset(
    redis_server: RedisServer, admin: redis.Redis, topic: str
) -> None:
    """`MAXLEN ~` trims the stream; a resume from an id it no longer holds gets `reset` first,
    carrying the stream's newest id, then live events."""
    broker = RedisBroker(redis_server.url, max_length=10)
    try:
        ids = [broker.publish(topic, n) for n in range(300)]
        key = broker.prefix + topic
        assert admin.xlen(key) < 300  # approximate trimming: whole nodes of entries
        assert admin.xrange(key, min=ids[0], max=ids[0]) == []
        subscription = broker.subscribe(topic, ids[0])
        live = broker.publish(topic, "live")
        reset, event = read(subscription, 2)
        assert reset.type == RESET_EVENT
        assert json.loads(reset.data) == {"reason": "history unavailable"}
        assert reset.last_event_id == ids[-1]
        assert (event.data, event.last_event_id) == ("live", live)
        assert broker.counters["resets"] == 1
    finally:
        broker.close()


@pytest.mark.parametrize("bad_id", ["garbage", "1-2-3", "", "0-1", "future"])
def test_an_unknown_or_malformed_id_starts_with_a_reset(
    broker: RedisBroker, topic: str, bad_id: str
) -> None:
    """Malformed ids, ids the stream never held (before it, from the future): reset first.
    An empty id is no id: a fresh start, no reset."""
    ids = [broker.publish(topic, n) for n in range(3)]
    if bad_id == "future":
        ms, sequence = id_key(ids[-1])
        bad_id = f"{ms + 60_000}-{sequence}"
    subscription = broker.subscribe(topic, bad_id)
    broker.publish(topic, "live")
    if bad_id == "":
        assert [e.data for e in read(subscription, 1)] == ["live"]
        return
    reset, live = read(subscription, 2)
    assert (reset.type, reset.last_event_id) == (RESET_EVENT, ids[-1])
    assert live.data == "live"


def test_one_reader_and_connection_for_every_topic(
    broker: RedisBroker, admin: redis.Redis, topic: str
) -> None:
    """One reader thread and one reading connection serve 1 topic or 30 (and 30 subscribers of
    one topic); a topic whose subscribers left is dropped from the reader's read."""
    first = broker.subscribe(topic)
    broker.publish(topic, "warm-up")
    wait_until(lambda: queued(first), "delivery")  # the reader is connected and delivering
    one_topic = len(admin.client_list())
    assert len(readers()) == 1

    topics = [f"{topic}/{n}" for n in range(30)]
    subscriptions = [first] + [broker.subscribe(name) for name in topics]
    subscriptions += [broker.subscribe(topic) for _ in range(29)]
    for name in [topic, *topics]:
        broker.publish(name, "to all")
    wait_until(lambda: all(len(queued(s)) >= 1 for s in subscriptions), "delivery to all")
    thirty_topics = len(admin.client_list())
    assert len(readers()) == 1
    assert thirty_topics == one_topic

    for subscription in subscriptions:
        subscription.close()
    assert broker.subscribers(topic) == []
    wait_until(lambda: not broker._following_topics(), "topics without subscribers dropped")
    assert len(readers()) == 1
    assert len(admin.client_list()) == one_topic


def test_several_topics_resume_exactly(broker: RedisBroker, topic: str) -> None:
    """A subscription to two topics gets both, each event with a composite id: the client's
    position in both topics.  A resume from any of those ids (topics in any order) replays
    exactly what followed in each topic; an id that lacks a topic is a reset."""
    other = topic + "/other"
    subscription = broker.subscribe([topic, other])
    a = [broker.publish(topic, f"a{n}") for n in range(3)]
    b = [broker.publish(other, f"b{n}") for n in range(2)]
    events = read(subscription, 5)
    assert sorted(e.data for e in events) == ["a0", "a1", "a2", "b0", "b1"]
    assert events[-1].last_event_id == f"{topic}={a[-1]}&{other}={b[-1]}"  # "/" unquoted
    # Resume after "a0" and before any "b": a1, a2, b0, b1 (each topic in order), then live.
    after_a0 = f"{topic}={a[0]}&{other}=0-0"
    resumed = broker.subscribe([other, topic], after_a0)
    live = broker.publish(other, "b2")
    got = read(resumed, 5)
    data = [e.data for e in got]
    assert [d for d in data if d[0] == "a"] == ["a1", "a2"]
    assert [d for d in data if d[0] == "b"] == ["b0", "b1", "b2"]
    assert got[-1].last_event_id == f"{other}={live}&{topic}={a[-1]}"
    # From the last id, nothing is replayed; a plain id, or one topic missing: a reset.
    again = broker.subscribe([topic, other], got[-1].last_event_id)
    assert queued(again) == []
    again.close()
    for partial in (a[-1], f"{topic}={a[-1]}"):
        reset = broker.subscribe([topic, other], partial)
        [first] = read(reset, 1)
        assert first.type == RESET_EVENT
        assert first.last_event_id == f"{topic}={a[-1]}&{other}={live}"


def test_entries_written_without_a_pulse_arrive_too(
    broker: RedisBroker, admin: redis.Redis, topic: str
) -> None:
    """An entry appended by other means than `publish()` (no pulse names its topic) reaches the
    subscribers through the reader's sweep, in order with the published ones."""
    subscription = broker.subscribe(topic)
    first = broker.publish(topic, "published")
    raw: Any = admin.xadd(broker.prefix + topic, {b"b": b"data: appended\n\n"})
    events = read(subscription, 2)
    assert [(e.data, e.last_event_id) for e in events] == [
        ("published", first),
        ("appended", raw.decode()),
    ]


def test_a_reader_survives_a_read_error(
    broker: RedisBroker, admin: redis.Redis, topic: str
) -> None:
    """A read that fails for another reason than the connection (here WRONGTYPE: the key is
    not a stream) is logged and retried; the subscribers get the topic once it is readable."""
    key = broker.prefix + topic
    admin.set(key, "not a stream")
    subscription = broker.subscribe(topic)
    wait_until(lambda: broker.counters.get("read_errors", 0) >= 1, "a failed read")
    admin.delete(key)
    event_id = broker.publish(topic, "after the error")
    [event] = read(subscription, 1)
    assert (event.data, event.last_event_id) == ("after the error", event_id)


def test_a_stalled_subscription_stays_bounded(broker: RedisBroker, topic: str) -> None:
    """A subscription nobody reads: its queue never exceeds `queue_size` (64); then it is
    disconnected (counted), while a `drop_oldest` one stays, counting what it dropped, and a
    reading client gets everything."""
    stalled = broker.subscribe(topic)
    dropping = broker.subscribe(topic, policy="drop_oldest", queue_size=8)
    reader = broker.subscribe(topic, queue_size=1000)
    for n in range(200):
        broker.publish(topic, n)
    wait_until(lambda: len(queued(reader)) == 200, "delivery of 200 events")
    assert len(queued(stalled)) == 64
    assert len(queued(dropping)) == 8
    assert dropping.stats.dropped == 192
    assert broker.counters["disconnected_slow"] == 1
    assert set(broker.subscribers(topic)) == {dropping, reader}
    assert [e.data for e in read(reader, 200)] == [str(n) for n in range(200)]


def test_subscriber_cap_and_close_topic(redis_server: RedisServer, topic: str) -> None:
    """`max_subscribers_per_topic` refuses one more; `close_topic()` ends all of them."""
    broker = RedisBroker(redis_server.url, max_subscribers_per_topic=2)
    try:
        first, second = broker.subscribe(topic), broker.subscribe(topic)
        with pytest.raises(TooManySubscribers):
            broker.subscribe(topic)
        broker.publish(topic, "last")
        wait_until(lambda: queued(first) and queued(second), "delivery")
        assert broker.close_topic(topic, farewell="closed") == 2
        assert broker.subscribers(topic) == []
        for subscription in (first, second):
            raw = b"".join(to_sse(subscription, heartbeat=None))
            assert [e.data for e in EventParser().feed(raw)] == ["last", "closed"]
        broker.subscribe(topic).close()  # room again
    finally:
        broker.close()


def test_a_reader_survives_a_redis_restart(
    redis_server: RedisServer, broker: RedisBroker, topic: str
) -> None:
    """Redis killed (SIGKILL) and started again: the reader reconnects and goes on from the
    last id it delivered; nothing Redis kept is lost, nothing is repeated."""
    subscription = broker.subscribe(topic, queue_size=100)
    before = [broker.publish(topic, n) for n in range(5)]
    wait_until(lambda: len(queued(subscription)) == 5, "delivery before the restart")
    redis_server.kill()
    time.sleep(OUTAGE)  # Redis stays down this long: not a wait for anything
    redis_server.start()
    after = [broker.publish(topic, n) for n in range(5, 10)]
    wait_until(lambda: len(queued(subscription)) == 10, "delivery after the restart")
    events = read(subscription, 10)
    assert [e.data for e in events] == [str(n) for n in range(10)]
    assert [e.last_event_id for e in events] == before + after


# -- end to end: two uvicorn processes, a publisher process, HTTP clients ------------------------


@pytest.fixture(scope="module")
def apps(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[BrokerApp, BrokerApp]]:
    """Processes A and B: the same app, each with its own `RedisBroker`, one Redis."""
    workdir = tmp_path_factory.mktemp("apps")
    started = [BrokerApp(name, redis_server.url, workdir) for name in ("A", "B")]
    try:
        for app in started:
            app.start()
        yield started[0], started[1]
    finally:
        stopped = [app.stop() for app in started]
    assert all(stopped), "an app did not stop on SIGTERM"


class Publisher:
    """`apps.broker_publisher` in a subprocess: events 0..count-1 at a steady pace."""

    def __init__(self, url: str, topic: str, count: int = EVENTS) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "apps.broker_publisher",
                "--url",
                url,
                "--topic",
                topic,
                "--count",
                str(count),
                "--interval",
                str(INTERVAL),
            ],
            cwd=TESTS_DIR,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def finish(self) -> tuple[list[str], int]:
        """Wait for it; return the ids it published (in order) and its failed Redis calls."""
        try:
            out, err = self.process.communicate(timeout=DEADLINE * 2)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, err = self.process.communicate()
            raise AssertionError(f"the publisher did not finish:\n{out}\n{err}") from None
        assert self.process.returncode == 0, err
        lines = out.splitlines()
        ids = [line.split()[2] for line in lines if line.startswith("published ")]
        done = lines[-1].split()
        assert done[0] == "done", out
        return ids, int(done[2])

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


class Follower(threading.Thread):
    """An HTTP client that follows a topic as `EventSource` does, until event `last`.

    It connects to `urls[0]`; after `switch_after` events it disconnects and resumes on the next
    URL with `Last-Event-ID`.  When a stream ends or a connection fails it reconnects (to the
    same URL, with its last id) after `RETRY` seconds.
    """

    RETRY = 0.1

    def __init__(
        self, urls: list[str], topic: str, last: int, switch_after: int | None = None
    ) -> None:
        super().__init__(name=f"follower-{urls[0]}")
        self.urls = urls
        self.topic = topic
        self.last = last
        self.switch_after = switch_after
        self.events: list[MessageEvent] = []
        #: (url, the Last-Event-ID sent, events received before) for every stream opened.
        self.connections: list[tuple[str, str | None, int]] = []
        #: Failed attempts (status codes or exception names).
        self.failures: list[str] = []
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            self._follow()
        except BaseException as exc:
            self.error = exc

    def _follow(self) -> None:
        index = 0
        last_id: str | None = None
        deadline = time.monotonic() + DEADLINE * 3
        with httpx.Client(timeout=httpx.Timeout(10.0)) as client:
            while not self.stop.is_set():
                assert time.monotonic() < deadline, "the follower ran out of time"
                url = self.urls[index]
                headers = {"Last-Event-ID": last_id} if last_id else {}
                try:
                    with client.stream(
                        "GET", f"{url}/events/{self.topic}", headers=headers
                    ) as response:
                        if response.status_code != 200:
                            self.failures.append(str(response.status_code))
                            time.sleep(self.RETRY)
                            continue
                        self.connections.append((url, last_id, len(self.events)))
                        parser = EventParser()
                        for chunk in response.iter_bytes():
                            for event in parser.feed(chunk):
                                self.events.append(event)
                                last_id = event.last_event_id or last_id
                                if event.type == "message" and event.json()["n"] == self.last:
                                    return
                            if self.stop.is_set():
                                return
                            if self._switch_now(index):
                                index += 1
                                break
                except httpx.TransportError as exc:
                    self.failures.append(type(exc).__name__)
                    time.sleep(self.RETRY)

    def _switch_now(self, index: int) -> bool:
        return (
            self.switch_after is not None
            and index + 1 < len(self.urls)
            and len(self.events) >= self.switch_after
        )

    def numbers(self) -> list[int]:
        return [e.json()["n"] for e in self.events if e.type == "message"]

    def finish(self) -> None:
        self.join(DEADLINE * 3)
        if self.is_alive():
            self.stop.set()
            self.join(DEADLINE)
            raise AssertionError(f"the follower did not finish; it got {self.numbers()}")
        if self.error is not None:
            raise self.error


@contextlib.contextmanager
def following(followers: list[Follower]) -> Iterator[None]:
    """Run the followers; on the way out (also on failure) stop them and join them."""
    for follower in followers:
        follower.start()
    try:
        yield
    finally:
        for follower in followers:
            follower.stop.set()
            follower.join(DEADLINE)


def wait_subscribed(app: BrokerApp, topic: str, count: int) -> None:
    wait_until(
        lambda: app.stats(topic)["subscribers"] == count, f"{count} subscriber(s) on {app.name}"
    )


def assert_exactly_once(follower: Follower, published: list[str]) -> None:
    """Every event, once, in order, with the ids the publisher got; never a reset."""
    assert [e.type for e in follower.events] == ["message"] * len(follower.events)
    assert follower.numbers() == list(range(EVENTS))
    assert [e.last_event_id for e in follower.events] == published


def assert_moved(follower: Follower, a: BrokerApp, b: BrokerApp) -> None:
    """The follower read from A, left mid-stream, and resumed on B from the last id it had."""
    [(first, first_id, _), (second, resumed_from, received)] = follower.connections
    assert (first, first_id, second) == (a.url, None, b.url)
    assert follower.switch_after is not None
    assert follower.switch_after <= received < EVENTS
    assert resumed_from == follower.events[received - 1].last_event_id


def wait_no_subscriber(app: BrokerApp, topic: str) -> None:
    """The process has no subscriber of `topic` left, and its reader of the topic stopped."""

    def empty() -> bool:
        stats = app.stats(topic)
        return stats["subscribers"] == 0 and not any(topic in r for r in stats["readers"])

    wait_until(empty, f"{app.name} has no subscriber nor reader of the topic")


@pytest.mark.timeout(120)
def test_resume_on_another_process_gets_every_event_once(
    apps: tuple[BrokerApp, BrokerApp], redis_server: RedisServer, topic: str
) -> None:
    """A client reads from A, leaves mid-stream, resumes on B (which has not served the topic
    yet) with `Last-Event-ID`: every event of a publisher in a third process arrives exactly
    once, in order.  Afterwards neither process has a subscriber or a reader left."""
    a, b = apps
    switcher = Follower([a.url, b.url], topic, last=EVENTS - 1, switch_after=EVENTS // 2)
    with following([switcher]):
        wait_subscribed(a, topic, 1)
        assert b.stats(topic)["subscribers"] == 0
        publisher = Publisher(redis_server.url, topic)
        try:
            switcher.finish()
            published, failures = publisher.finish()
        finally:
            publisher.kill()
    assert failures == 0
    assert_exactly_once(switcher, published)
    assert_moved(switcher, a, b)
    for app in apps:
        wait_no_subscriber(app, topic)


@pytest.mark.timeout(120)
def test_resume_on_another_process_across_a_redis_restart(
    apps: tuple[BrokerApp, BrokerApp], redis_server: RedisServer, topic: str
) -> None:
    """As above while `redis-server` is killed (SIGKILL) after a third of the events and
    started again (AOF on, same directory and port): the processes' readers reconnect and go
    on from their last id, the publisher retries what failed, and both clients (one moving from
    A to B after two thirds) get every event exactly once, in order."""
    a, b = apps
    switcher = Follower([a.url, b.url], topic, last=EVENTS - 1, switch_after=2 * EVENTS // 3)
    stayer = Follower([b.url], topic, last=EVENTS - 1)
    with following([switcher, stayer]):
        wait_subscribed(a, topic, 1)
        wait_subscribed(b, topic, 1)
        publisher = Publisher(redis_server.url, topic)
        try:
            wait_until(lambda: len(switcher.events) >= EVENTS // 3, "a third of the events")
            redis_server.kill()
            got_then = len(switcher.events)
            time.sleep(OUTAGE)  # Redis stays down this long: not a wait for anything
            redis_server.start()
            wait_until(lambda: len(switcher.events) > got_then, "events after the restart")
            switcher.finish()
            stayer.finish()
            published, failures = publisher.finish()
        finally:
            publisher.kill()
    assert failures > 0  # the publisher did meet the outage
    for follower in (switcher, stayer):
        assert_exactly_once(follower, published)
    assert_moved(switcher, a, b)
    assert [url for url, _id, _n in stayer.connections] == [b.url]
    for app in apps:
        wait_no_subscriber(app, topic)


def test_a_resume_from_a_trimmed_id_over_http_gets_a_reset(
    apps: tuple[BrokerApp, BrokerApp], redis_server: RedisServer, topic: str
) -> None:
    """Process A, which has never served the topic, answers a resume from a trimmed id with a
    `reset` event that carries the stream's newest id, then live events."""
    a, _b = apps
    broker = RedisBroker(redis_server.url, max_length=10)
    try:
        ids = [broker.publish(topic, n) for n in range(300)]
        headers = {"Last-Event-ID": ids[0]}
        with (
            httpx.Client(timeout=10.0) as client,
            client.stream("GET", f"{a.url}/events/{topic}", headers=headers) as response,
        ):
            assert response.status_code == 200
            parser = EventParser()
            chunks = response.iter_bytes()
            events: list[MessageEvent] = []
            while not events:
                events += parser.feed(next(chunks))
            live = broker.publish(topic, "live")
            while len(events) < 2:
                events += parser.feed(next(chunks))
    finally:
        broker.close()
    reset, event = events[:2]
    assert (reset.type, reset.last_event_id) == (RESET_EVENT, ids[-1])
    assert (event.data, event.last_event_id) == ("live", live)


def test_close_topic_and_counts_reach_every_process(
    apps: tuple[BrokerApp, BrokerApp], redis_server: RedisServer, topic: str
) -> None:
    """A client on process A, one on B and a subscription here: `subscriber_count()` here sees
    all three; `close_topic()` here ends all three streams with the farewell, after the events
    published before it; then the count is 0 everywhere."""
    broker = RedisBroker(redis_server.url)
    try:
        with contextlib.ExitStack() as stack:
            client = stack.enter_context(httpx.Client(timeout=10.0))
            responses = [
                stack.enter_context(client.stream("GET", f"{app.url}/events/{topic}"))
                for app in apps
            ]
            for app in apps:
                wait_subscribed(app, topic, 1)
            local = broker.subscribe(topic)
            wait_until(lambda: broker.subscriber_count(topic) == 3, "three subscribers counted")
            broker.publish(topic, {"n": 0})
            wait_until(lambda: queued(local), "delivery here")
            assert broker.close_topic(topic, farewell="bye") == 1
            for response in responses:
                events = EventParser().feed(b"".join(response.iter_bytes()))  # ends
                assert [e.data for e in events] == ['{"n":0}', "bye"]
        events = EventParser().feed(b"".join(to_sse(local, heartbeat=None)))
        assert [e.data for e in events] == ['{"n":0}', "bye"]
        for app in apps:
            wait_subscribed(app, topic, 0)
        wait_until(lambda: broker.subscriber_count(topic) == 0, "no subscriber counted")
    finally:
        broker.close()
