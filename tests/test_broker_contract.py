"""What both brokers promise alike (the `Broker` protocol), checked on each against the same input.

`MemoryBroker` and a `RedisBroker` on a real `redis-server` of the tests' own get the same odd
`Last-Event-ID` values, the same bad topic names and the same calls after `close()`, and must
answer identically: a `reset` (never an exception) for any id they cannot use, `InvalidTopic`
for any topic they cannot use, `BrokerClosed` once closed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis_server import RedisServer, running_redis

from ssekit import Event, EventParser, to_sse
from ssekit.broker import (
    MAX_TOPIC_LENGTH,
    RESET_EVENT,
    Broker,
    BrokerClosed,
    InvalidTopic,
    MemoryBroker,
    RedisBroker,
    Subscription,
)
from ssekit.memory import RedisMemory

pytestmark = pytest.mark.timeout(60)

KINDS = ["memory", "redis"]


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


def make_broker(kind: str, server: RedisServer) -> Broker:
    if kind == "memory":
        return MemoryBroker()
    return RedisBroker(server.url)


@pytest.fixture(params=KINDS)
def broker(request: pytest.FixtureRequest, redis_server: RedisServer) -> Iterator[Broker]:
    made = make_broker(request.param, redis_server)
    yield made
    made.close()


@pytest.fixture
def topic() -> str:
    return f"contract/{uuid.uuid4().hex}"


def queued(subscription: Subscription) -> list[bytes]:
    """What waits in the subscription's queue for its client (not taken)."""
    return list(subscription._handoff._items)


def outcome(subscription: Subscription) -> tuple[str, list[str]]:
    """("reset", [its id]) or ("resume", [ids replayed]), from what the subscription queued."""
    events = EventParser().feed(b"".join(queued(subscription)))
    if events and events[0].type == RESET_EVENT:
        return "reset", [events[0].last_event_id]
    return "resume", [event.last_event_id for event in events]


#: Ids no broker can use: beyond Python's int-conversion limit, past 64 bits, not numbers,
#: empty parts, whitespace, other shapes.
ODD_IDS = [
    "9" * 5000,
    "1-" + "9" * 5000,
    "9" * 5000 + "-1",
    f"{2**64}-0",
    f"0-{2**64}",
    f"{2**64 - 1}-{2**64 - 1}",
    "0" * 30 + "1-1",
    "garbage",
    "-",
    "-1",
    "1-",
    "--",
    "1--1",
    " 1-1",
    "1-1 ",
    " ",
    "\t",
    "1 -1",
    "1-1\n",
    "１-２",
    "1.5-2",
    "+1-2",
    "0x10-1",
    "é…😀",
    "\ud800",
]


@pytest.mark.parametrize("odd", ODD_IDS, ids=lambda odd: repr(odd)[:20])
def test_an_id_a_broker_cannot_use_gives_a_reset(broker: Broker, topic: str, odd: str) -> None:
    """Either broker answers such an id with a `reset` carrying the topic's newest id."""
    ids = [broker.publish(topic, n) for n in range(3)]
    subscription = broker.subscribe(topic, odd)
    try:
        assert outcome(subscription) == ("reset", [ids[-1]])
    finally:
        subscription.close()


def test_an_id_of_the_other_broker_gives_a_reset(redis_server: RedisServer, topic: str) -> None:
    """An id issued by one broker means nothing to another: a reset on both."""
    memory, shared = MemoryBroker(), RedisBroker(redis_server.url)
    try:
        memory_ids = [memory.publish(topic, n) for n in range(3)]
        redis_ids = [shared.publish(topic, n) for n in range(3)]
        for broker, foreign, own in (
            (memory, redis_ids, memory_ids),
            (shared, memory_ids, redis_ids),
        ):
            subscription = broker.subscribe(topic, foreign[0])
            assert outcome(subscription) == ("reset", [own[-1]])
            subscription.close()
    finally:
        memory.close()
        shared.close()


#: Random header values: any text, and digit strings around the shapes of an id.
_DIGITS = st.text(alphabet="0123456789", min_size=0, max_size=60)
RANDOM_IDS = st.one_of(
    st.text(max_size=80),
    st.builds(lambda a, b: f"{a}-{b}", _DIGITS, _DIGITS),
    st.builds(
        lambda a, sep, b: f"{a}{sep}{b}", _DIGITS, st.sampled_from(["-", "--", " - ", ""]), _DIGITS
    ),
    st.integers(min_value=0, max_value=2**70).map(str),
)


@pytest.fixture(scope="module")
def both(redis_server: RedisServer) -> Iterator[dict[str, tuple[Broker, str, list[str]]]]:
    """Each broker with a topic of two events, followed by a subscription that stays open (so
    the Redis reader keeps running between examples)."""
    made = {}
    for kind in KINDS:
        broker = make_broker(kind, redis_server)
        topic = f"property/{uuid.uuid4().hex}"
        broker.subscribe(topic)  # open until the broker closes
        made[kind] = (broker, topic, [broker.publish(topic, n) for n in range(2)])
    yield made
    for broker, _, _ in made.values():
        broker.close()


@pytest.mark.timeout(120)
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(value=RANDOM_IDS)
def test_any_client_id_resumes_or_resets_never_raises(
    value: str, both: dict[str, tuple[Broker, str, list[str]]]
) -> None:
    """Whatever the client sends, `subscribe()` answers a reset or a resume, on both brokers;
    an id neither broker issued is a reset on both."""
    results = {}
    for kind, (broker, topic, ids) in both.items():
        subscription = broker.subscribe(topic, value)
        result, carried = outcome(subscription)
        subscription.close()
        if value in ids:
            assert result == "resume"
        elif value:
            assert (result, carried) == ("reset", [ids[-1]])
        else:  # no id at all: a fresh start
            assert (result, carried) == ("resume", [])
        results[kind] = result
    if value:
        assert results["memory"] == results["redis"] == "reset"


BAD_TOPICS: list[Any] = ["", "x" * (MAX_TOPIC_LENGTH + 1), None, 5, b"bytes", [], ["ok", ""], [7]]


@pytest.mark.parametrize("bad", BAD_TOPICS, ids=lambda bad: repr(bad)[:20])
def test_a_topic_a_broker_cannot_use_is_invalid(broker: Broker, bad: Any) -> None:
    """Subscribing (and, for a single name, publishing) raises `InvalidTopic`, a ValueError."""
    with pytest.raises(InvalidTopic):
        broker.subscribe(bad)
    if not isinstance(bad, list):
        with pytest.raises(InvalidTopic):
            broker.publish(bad, "x")


def test_the_longest_topic_is_fine(broker: Broker) -> None:
    name = "t" * MAX_TOPIC_LENGTH
    subscription = broker.subscribe(name)
    broker.publish(name, "x")
    _wait_for(subscription, 1)
    assert [e.data for e in EventParser().feed(b"".join(queued(subscription)))] == ["x"]
    subscription.close()


def test_an_empty_event_type_writes_no_event_line(broker: Broker, topic: str) -> None:
    """`event=""` means `message`: no `event:` line, for data and for a published `Event`."""
    subscription = broker.subscribe(topic)
    broker.publish(topic, "a", event="")
    broker.publish(topic, Event("b", event="typed"), event="")
    broker.publish(topic, "c", event="named")
    _wait_for(subscription, 3)
    raw = b"".join(queued(subscription))
    assert raw.count(b"event:") == 1
    events = EventParser().feed(raw)
    assert [(e.type, e.data) for e in events] == [
        ("message", "a"),
        ("message", "b"),
        ("named", "c"),
    ]
    subscription.close()


def _wait_for(subscription: Subscription, n: int) -> None:
    """Wait until `n` events are queued (Redis delivers them from a reader thread)."""
    deadline = time.monotonic() + 15
    while len(queued(subscription)) < n:
        assert time.monotonic() < deadline, f"{len(queued(subscription))} of {n} events queued"
        time.sleep(0.01)


def test_a_closed_broker_refuses_and_ends_its_subscriptions(broker: Broker, topic: str) -> None:
    """After `close()`: every subscription ends with a `retry:` hint; publish, apublish and
    subscribe raise `BrokerClosed`; closing again is harmless."""
    subscription = broker.subscribe(topic)
    assert not broker.closed
    broker.close()
    assert broker.closed
    raw = b"".join(to_sse(subscription, heartbeat=None))
    assert raw.endswith(b"retry: 2000\n\n")
    with pytest.raises(BrokerClosed):
        broker.publish(topic, "x")
    with pytest.raises(BrokerClosed):
        asyncio.run(broker.apublish(topic, "x"))
    with pytest.raises(BrokerClosed):
        broker.subscribe(topic)
    broker.close()
    asyncio.run(broker.aclose())


def test_aclose_closes(broker: Broker, topic: str) -> None:
    asyncio.run(broker.aclose())
    with pytest.raises(BrokerClosed, match="closed"):
        broker.subscribe(topic)


def test_counters_are_a_copy(broker: Broker, topic: str) -> None:
    broker.publish(topic, "x")
    counters = broker.counters
    counters["published"] = 99
    assert broker.counters.get("published", 0) != 99


# -- Redis keys: topics and RedisMemory in namespaces that cannot collide ------------------------


def test_a_topic_named_like_a_chat_key_leaves_the_chat_alone(redis_server: RedisServer) -> None:
    """The topic "memory:4:chat:<id>" once made the key of `RedisMemory(parent=("chat", id))`
    (WRONGTYPE errors on both sides); topics now live under their own prefix."""
    ident = uuid.uuid4().hex
    memory = RedisMemory(redis_server.url, ("chat", ident))
    broker = RedisBroker(redis_server.url)
    try:
        memory.add_user_message("hello")
        topic = memory.key.removeprefix("ssekit:")  # the old broker prefix + topic = the chat key
        subscription = broker.subscribe(topic)
        broker.publish(topic, "event")
        _wait_for(subscription, 1)
        subscription.close()
        assert [m["content"] for m in memory.get_messages()] == ["hello"]
        client = redis_server.client()
        try:
            assert client.type(memory.key) == b"list"
            assert client.type(broker.prefix + topic) == b"stream"
        finally:
            client.close()
    finally:
        broker.close()
        memory.close()


@pytest.mark.parametrize("prefix", ["", "ssekit:", "ssekit:memory:", "ssekit:memory:x:"])
def test_a_broker_prefix_that_overlaps_the_memory_keys_is_refused(
    redis_server: RedisServer, prefix: str
) -> None:
    with pytest.raises(ValueError, match="prefix"):
        RedisBroker(redis_server.url, prefix=prefix)


@pytest.mark.parametrize("prefix", ["", "ssekit:", "ssekit:topic:", "ssekit:topic:chats:"])
def test_a_memory_prefix_that_overlaps_the_topics_is_refused(
    redis_server: RedisServer, prefix: str
) -> None:
    with pytest.raises(ValueError, match="prefix"):
        RedisMemory(redis_server.url, ("chat", "x"), prefix=prefix)


def test_keys_stay_apart_whatever_the_topic(redis_server: RedisServer) -> None:
    """No topic name maps to a key in the memory namespace."""
    broker = RedisBroker(redis_server.url)
    try:
        for name in ["memory:4:chat:x", "../memory:x", ":memory:", "*", "{x}"]:
            broker.publish(name, "x")
        client: redis.Redis = redis_server.client()
        try:
            keys = client.keys("ssekit:memory:*")
            assert all(b"ssekit:topic:" not in key for key in keys)
            assert client.exists(broker.prefix + "memory:4:chat:x")
        finally:
            client.close()
    finally:
        broker.close()
