"""`MemoryBroker`: ids, exclusive resume, explicit gaps, bounded queues, subscriber management.

Subscriptions are read the way a server reads them, through `to_sse()`, and parsed back with
`EventParser`.  What a subscription holds *before* anyone reads it (its queue) is looked at
directly where that is the point: the queue's bound, and the bytes shared by all subscribers.
"""

from __future__ import annotations

import asyncio
import gc
import json
import threading
import tracemalloc
from typing import Any

import pytest

from ssekit import Event, EventParser, MessageEvent, to_sse
from ssekit._frame import Encoded
from ssekit.broker import (
    RESET_EVENT,
    Broker,
    BrokerClosed,
    MemoryBroker,
    Subscription,
    TooManySubscribers,
    TooManyTopics,
)
from ssekit.testing import read_events

pytestmark = pytest.mark.timeout(30)

#: How long a read waits for events that are already queued (far more than it needs).
DEADLINE = 5.0


def read(subscription: Subscription, n: int) -> list[MessageEvent]:
    """The first `n` events of a stream of `subscription` (the stream is closed afterwards)."""
    return read_events(to_sse(subscription, heartbeat=None), n, timeout=DEADLINE)


def read_to_end(subscription: Subscription) -> tuple[list[MessageEvent], bytes]:
    """Every event of a subscription that has been ended, and the raw bytes of its stream."""
    assert subscription._handoff.finished, "the subscription is still open: this would block"
    raw = b"".join(to_sse(subscription, heartbeat=None))
    parser = EventParser()
    return parser.feed(raw), raw


def queued(subscription: Subscription) -> list[Any]:
    """What waits in the subscription's queue for its client (not taken)."""
    return list(subscription._handoff._items)


def numbers(events: list[MessageEvent]) -> list[Any]:
    return [event.json() for event in events]


def parse_id(text: str) -> tuple[int, int]:
    first, _, second = text.partition("-")
    return int(first), int(second)


# -- ids and resume ----------------------------------------------------------------------------


def test_it_is_a_broker() -> None:
    """`MemoryBroker` offers what the `Broker` protocol promises (checked by mypy here)."""
    broker: Broker = MemoryBroker()
    assert callable(broker.publish)
    assert callable(broker.apublish)


def test_ids_increase_and_are_the_events_ids() -> None:
    """`publish()` returns "<ms>-<n>" ids that increase; each is the `id:` of its event."""
    broker = MemoryBroker()
    subscription = broker.subscribe("jobs")
    ids = [broker.publish("jobs", {"n": n}) for n in range(5)]
    parsed = [parse_id(id_) for id_ in ids]
    assert parsed == sorted(set(parsed)), ids
    events = read(subscription, 5)
    assert [e.last_event_id for e in events] == ids
    assert numbers(events) == [{"n": n} for n in range(5)]
    assert broker.counters["published"] == 5


def test_ids_increase_across_topics() -> None:
    """One counter for the broker: ids increase across topics too."""
    broker = MemoryBroker()
    ids = [broker.publish("a" if n % 2 else "b", n) for n in range(6)]
    assert [parse_id(i) for i in ids] == sorted(parse_id(i) for i in ids)
    assert len(set(ids)) == 6


def test_resume_is_exclusive() -> None:
    """A resume from id k replays the events after k, never k itself, then goes on live."""
    broker = MemoryBroker()
    ids = [broker.publish("t", n) for n in range(10)]
    subscription = broker.subscribe("t", ids[3])
    broker.publish("t", "live")
    events = read(subscription, 7)
    assert [e.data for e in events] == [*map(str, range(4, 10)), "live"]
    assert [e.last_event_id for e in events[:6]] == ids[4:]


def test_resume_from_the_newest_id_replays_nothing() -> None:
    """A client that has everything gets only what is published afterwards."""
    broker = MemoryBroker()
    ids = [broker.publish("t", n) for n in range(3)]
    subscription = broker.subscribe("t", ids[-1])
    assert queued(subscription) == []
    live_id = broker.publish("t", "live")
    [event] = read(subscription, 1)
    assert (event.data, event.last_event_id) == ("live", live_id)


def test_an_empty_last_event_id_is_a_fresh_start() -> None:
    """`Last-Event-ID: ""` means no id (what a browser has before its first id): no reset."""
    broker = MemoryBroker()
    broker.publish("t", "old")
    subscription = broker.subscribe("t", "")
    broker.publish("t", "live")
    assert [e.data for e in read(subscription, 1)] == ["live"]
    assert broker.counters.get("resets", 0) == 0


def test_a_resume_older_than_history_size_starts_with_a_reset() -> None:
    """History keeps the last N events; a resume from before them gets `reset` first, carrying
    the newest id, then live events; a resume from that id needs no reset."""
    broker = MemoryBroker(history_size=5)
    ids = [broker.publish("t", n) for n in range(10)]
    subscription = broker.subscribe("t", ids[2])
    live_id = broker.publish("t", "live")
    reset, live = read(subscription, 2)
    assert reset.type == RESET_EVENT
    assert reset.last_event_id == ids[-1]
    assert json.loads(reset.data) == {"reason": "history unavailable"}
    assert (live.data, live.last_event_id) == ("live", live_id)
    assert broker.counters["resets"] == 1

    again = broker.subscribe("t", ids[-1])
    broker.publish("t", "next")
    assert [(e.type, e.data) for e in read(again, 2)] == [("message", "live"), ("message", "next")]
    assert broker.counters["resets"] == 1


def test_the_oldest_event_in_history_still_resumes() -> None:
    """History of 5: a resume from the oldest id held replays the 4 after it, without a reset."""
    broker = MemoryBroker(history_size=5)
    ids = [broker.publish("t", n) for n in range(10)]
    subscription = broker.subscribe("t", ids[5])
    assert numbers(read(subscription, 4)) == [6, 7, 8, 9]
    assert broker.counters.get("resets", 0) == 0


def test_without_history_only_the_newest_id_resumes() -> None:
    """`history_size=0`: a resume from the newest id needs nothing; any older one is a gap."""
    broker = MemoryBroker(history_size=0)
    ids = [broker.publish("t", n) for n in range(3)]
    assert queued(broker.subscribe("t", ids[-1])) == []
    [reset] = read(broker.subscribe("t", ids[1]), 1)
    assert (reset.type, reset.last_event_id) == (RESET_EVENT, ids[-1])


class FakeClock:
    """A clock the test moves by hand (the broker's `clock=`): history ages without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_resume_older_than_history_seconds_starts_with_a_reset() -> None:
    """History keeps T seconds: the same resume replays at first, and gets a reset once the
    events it needs are older than T."""
    clock = FakeClock()
    broker = MemoryBroker(history_seconds=0.3, clock=clock)
    ids = [broker.publish("t", n) for n in range(3)]
    assert numbers(read(broker.subscribe("t", ids[0]), 2)) == [1, 2]
    clock.now += 0.29
    assert numbers(read(broker.subscribe("t", ids[0]), 2)) == [1, 2]
    clock.now += 0.02
    [reset] = read(broker.subscribe("t", ids[0]), 1)
    assert (reset.type, reset.last_event_id) == (RESET_EVENT, ids[-1])


@pytest.mark.parametrize(
    "bad_id",
    ["garbage", "17", "1-2-3", "-5", "1-", "１-２", "0-0", "1-1", "future"],
)
def test_an_unknown_or_malformed_id_starts_with_a_reset(bad_id: str) -> None:
    """Ids that are malformed, never issued (from the future), or from an earlier run of the
    broker (an older epoch) all give a `reset` first: a gap is never skipped silently."""
    broker = MemoryBroker()
    ids = [broker.publish("t", n) for n in range(3)]
    if bad_id == "future":
        epoch, sequence = parse_id(ids[-1])
        bad_id = f"{epoch}-{sequence + 100}"
    subscription = broker.subscribe("t", bad_id)
    broker.publish("t", "live")
    reset, live = read(subscription, 2)
    assert (reset.type, reset.last_event_id) == (RESET_EVENT, ids[-1])
    assert live.data == "live"


def test_a_resume_on_a_topic_never_published_to_is_a_reset() -> None:
    """An id for a topic the broker has no history of: reset, without an id to carry."""
    broker = MemoryBroker()
    subscription = broker.subscribe("empty", "1700000000000-1")
    [reset] = read(subscription, 1)
    assert reset.type == RESET_EVENT
    assert reset.last_event_id == ""


# -- what is published -------------------------------------------------------------------------


def test_an_event_is_encoded_once_for_every_subscriber() -> None:
    """Two subscriptions queue the very same bytes object: framed once, id included."""
    broker = MemoryBroker()
    first, second = broker.subscribe("t"), broker.subscribe("t")
    id_ = broker.publish("t", {"text": "héllo", "n": [1, 2]})
    [one], [two] = queued(first), queued(second)
    assert one is two
    assert isinstance(one, Encoded)
    assert one == b"id: " + id_.encode() + b'\ndata: {"text":"h\xc3\xa9llo","n":[1,2]}\n\n'


def test_event_types_and_published_events() -> None:
    """`event=` names the type; an `Event` is sent as is (its type, multi-line data)."""
    broker = MemoryBroker()
    subscription = broker.subscribe("t")
    ids = [
        broker.publish("t", {"percent": 50}, event="progress"),
        broker.publish("t", Event("line 1\nline 2", event="log")),
        broker.publish("t", Event("x"), event="renamed"),
        broker.publish("t", "plain"),
    ]
    events = read(subscription, 4)
    assert [(e.type, e.data, e.last_event_id) for e in events] == [
        ("progress", '{"percent":50}', ids[0]),
        ("log", "line 1\nline 2", ids[1]),
        ("renamed", "x", ids[2]),
        ("message", "plain", ids[3]),
    ]


def test_a_published_event_must_not_carry_an_id() -> None:
    """The broker assigns ids: an `Event` with its own id is refused, and nothing is sent."""
    broker = MemoryBroker()
    subscription = broker.subscribe("t")
    with pytest.raises(ValueError, match="id"):
        broker.publish("t", Event("x", id="7"))
    assert queued(subscription) == []


def test_apublish_from_async_code() -> None:
    """`apublish()` publishes from a coroutine and returns the id."""
    broker = MemoryBroker()
    subscription = broker.subscribe("t")

    async def main() -> list[str]:
        return [await broker.apublish("t", n, event="tick") for n in range(3)]

    ids = asyncio.run(main())
    events = read(subscription, 3)
    assert [(e.type, e.data, e.last_event_id) for e in events] == [
        ("tick", str(n), ids[n]) for n in range(3)
    ]


def test_concurrent_publishers_deliver_ids_in_order() -> None:
    """Four threads publishing at once: every subscriber sees every event, ids increasing."""
    broker = MemoryBroker(queue_size=1000)
    subscription = broker.subscribe("t")
    start = threading.Barrier(4)

    def publisher(name: int) -> None:
        start.wait()
        for n in range(200):
            broker.publish("t", {"p": name, "n": n})

    threads = [threading.Thread(target=publisher, args=(p,)) for p in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    events = EventParser().feed(b"".join(queued(subscription)))
    assert len(events) == 800
    ids = [parse_id(e.last_event_id) for e in events]
    assert ids == sorted(set(ids))
    for name in range(4):
        assert [e.json()["n"] for e in events if e.json()["p"] == name] == list(range(200))


# -- several topics ----------------------------------------------------------------------------


def test_one_subscription_to_several_topics() -> None:
    """A subscription to two topics gets both, in publish order, and nothing else."""
    broker = MemoryBroker()
    subscription = broker.subscribe(["a", "b"])
    broker.publish("a", "a1")
    broker.publish("other", "x")
    broker.publish("b", "b1")
    broker.publish("a", "a2")
    assert [e.data for e in read(subscription, 3)] == ["a1", "b1", "a2"]


def test_a_resume_over_several_topics() -> None:
    """A client of two topics resumes from the last id it saw (of either topic): it gets the
    later events of both, no reset."""
    broker = MemoryBroker()
    broker.publish("a", "a1")
    seen = broker.publish("b", "b1")
    broker.publish("a", "a2")
    broker.publish("b", "b2")
    subscription = broker.subscribe(["a", "b"], seen)
    assert [(e.type, e.data) for e in read(subscription, 2)] == [
        ("message", "a2"),
        ("message", "b2"),
    ]
    assert broker.counters.get("resets", 0) == 0


def test_subscribe_needs_topics() -> None:
    """No topic, or an empty one, is a ValueError."""
    broker = MemoryBroker()
    with pytest.raises(ValueError, match="topic"):
        broker.subscribe([])
    with pytest.raises(ValueError, match="topic"):
        broker.subscribe("")


# -- slow consumers ----------------------------------------------------------------------------


def test_a_slow_consumer_is_disconnected_and_resumes_without_loss() -> None:
    """Policy `disconnect` (the default): the queue never holds more than `queue_size`; when it
    is full the stream ends after what is queued, with a `retry:` hint; the client resumes from
    its last id and gets every later event, no reset."""
    broker = MemoryBroker(queue_size=4)
    subscription = broker.subscribe("t")  # nobody reads it
    for n in range(10):
        broker.publish("t", n)
        assert len(queued(subscription)) <= 4
    assert broker.subscribers("t") == []
    assert broker.counters["disconnected_slow"] == 1
    assert subscription.stats.delivered == 4

    events, raw = read_to_end(subscription)
    assert numbers(events) == [0, 1, 2, 3]
    assert raw.endswith(b"retry: 1000\n\n")
    # (A replay counts against the queue too: this client keeps up, so its queue is larger.)
    resumed = broker.subscribe("t", events[-1].last_event_id, queue_size=16)
    assert numbers(read(resumed, 6)) == [4, 5, 6, 7, 8, 9]
    assert broker.counters.get("resets", 0) == 0


def test_drop_oldest_keeps_the_newest_and_counts_the_rest() -> None:
    """Policy `drop_oldest`: the queue stays at `queue_size`, the oldest events make room and
    are counted in `stats.dropped`; the subscription stays subscribed."""
    broker = MemoryBroker(queue_size=4)
    subscription = broker.subscribe("t", policy="drop_oldest")
    for n in range(10):
        broker.publish("t", n)
        assert len(queued(subscription)) <= 4
    assert subscription.stats.dropped == 6
    assert broker.subscribers("t") == [subscription]
    assert broker.counters.get("disconnected_slow", 0) == 0
    assert numbers(read(subscription, 4)) == [6, 7, 8, 9]


def test_queue_size_per_subscription() -> None:
    """`subscribe(queue_size=...)` overrides the broker's bound for that subscription."""
    broker = MemoryBroker(queue_size=100)
    small = broker.subscribe("t", queue_size=2, policy="drop_oldest")
    large = broker.subscribe("t")
    for n in range(10):
        broker.publish("t", n)
    assert (len(queued(small)), small.stats.dropped) == (2, 8)
    assert len(queued(large)) == 10


# -- connection management ---------------------------------------------------------------------


def test_subscribers_are_counted_until_their_streams_close() -> None:
    """`subscribers(topic)` lists the live subscriptions; closing a stream (or an unserved
    subscription) removes it, back to none."""
    broker = MemoryBroker()
    served = [broker.subscribe("t") for _ in range(2)]
    unserved = broker.subscribe("t")
    broker.subscribe("other")
    assert len(broker.subscribers("t")) == 3
    streams = [to_sse(s, heartbeat=None) for s in served]
    for stream in streams:
        assert next(stream).startswith(b":")  # the stream is being served
    streams[0].close()
    assert set(broker.subscribers("t")) == {served[1], unserved}
    unserved.close()
    streams[1].close()
    assert broker.subscribers("t") == []
    assert len(broker.subscribers("other")) == 1


def test_max_subscribers_per_topic() -> None:
    """At the cap, `subscribe()` raises `TooManySubscribers`; other topics are not affected,
    and a closed subscription makes room."""
    broker = MemoryBroker(max_subscribers_per_topic=2)
    first, _second = broker.subscribe("t"), broker.subscribe("t")
    with pytest.raises(TooManySubscribers):
        broker.subscribe("t")
    with pytest.raises(TooManySubscribers):
        broker.subscribe(["other", "t"])
    assert broker.subscribers("other") == []
    broker.subscribe("other")
    first.close()
    broker.subscribe("t")
    assert len(broker.subscribers("t")) == 2


def test_close_topic_ends_every_subscriber() -> None:
    """`close_topic()` ends each subscription of the topic after what it has queued, with the
    farewell; it returns how many; other topics go on."""
    broker = MemoryBroker()
    subscriptions = [broker.subscribe("t") for _ in range(3)]
    other = broker.subscribe("other")
    broker.publish("t", "last")
    assert broker.close_topic("t", farewell=Event("revoked", event="bye")) == 3
    assert broker.subscribers("t") == []
    for subscription in subscriptions:
        events, _raw = read_to_end(subscription)
        assert [(e.type, e.data) for e in events] == [("message", "last"), ("bye", "revoked")]
    assert broker.subscribers("other") == [other]
    assert broker.close_topic("t") == 0


def test_close_topic_without_farewell_ends_cleanly() -> None:
    """Without a farewell the streams just end after what they had queued."""
    broker = MemoryBroker()
    subscription = broker.subscribe("t")
    broker.publish("t", "last")
    assert broker.close_topic("t") == 1
    events, _raw = read_to_end(subscription)
    assert [e.data for e in events] == ["last"]


# -- what the broker keeps: topics are freed, history ages, the number of topics is bounded --------


def test_a_topic_left_by_its_subscribers_and_without_history_is_freed() -> None:
    """Subscribing creates a topic; the last subscriber's leaving frees it unless it holds
    history (which keeps it until the history ages or the topic is evicted)."""
    broker = MemoryBroker()
    subscription = broker.subscribe(["a", "b"])
    assert broker._hub.topic_count() == 2
    subscription.close()
    assert broker._hub.topic_count() == 0
    broker.publish("kept", "x")
    assert broker._hub.topic_count() == 1
    assert broker.close_topic("kept") == 0
    assert broker._hub.topic_count() == 1  # its history is still there for resumes


@pytest.mark.timeout(120)
def test_many_topics_subscribed_and_left_leave_no_memory_behind() -> None:
    """100,000 distinct topics subscribed and left: traced memory returns to within 5 MB."""
    broker = MemoryBroker()
    broker.subscribe("warm-up").close()
    gc.collect()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        for n in range(100_000):
            broker.subscribe(f"topic/{n}").close()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    assert broker._hub.topic_count() == 0
    assert grown < 5 * 1024 * 1024, f"{grown / 1024 / 1024:.1f} MB more than before"


def test_history_seconds_replays_nothing_older_than_it() -> None:
    """`history_seconds=1`: a resume replays only events published within the last second,
    whether or not anything was published since (age is enforced when history is read)."""
    clock = FakeClock()
    broker = MemoryBroker(history_seconds=1, clock=clock)
    first = broker.publish("t", 0)  # at 0.0
    clock.now += 0.6
    broker.publish("t", 1)  # at 0.6
    clock.now += 0.5
    broker.publish("t", 2)  # at 1.1: event 0 is now older than 1 s
    clock.now += 0.2  # 1.3
    assert numbers(read(broker.subscribe("t", first), 2)) == [1, 2]
    clock.now += 0.35  # 1.65: event 1 is 1.05 s old, and nothing was published meanwhile
    [reset] = read(broker.subscribe("t", first), 1)
    assert reset.type == RESET_EVENT
    clock.now += 1  # 2.65: everything has aged out
    [reset] = read(broker.subscribe("t", first), 1)
    assert reset.type == RESET_EVENT


def test_a_sweep_frees_aged_topics_without_touching_each() -> None:
    """Topics whose history has aged out are freed by the next publish or subscribe after
    `history_seconds`, even if nobody reads them again."""
    clock = FakeClock()
    broker = MemoryBroker(history_seconds=1, clock=clock)
    for n in range(1000):
        broker.publish(f"t/{n}", n)
    assert broker._hub.topic_count() == 1000
    clock.now += 1.5
    broker.publish("fresh", "x")
    assert broker._hub.topic_count() == 1


def test_a_resume_into_a_freed_topic_is_a_reset_not_a_silent_gap() -> None:
    """A topic freed once its history aged out forgets its events; a client that missed them
    gets a reset (carrying an id it can resume from), never an empty replay."""
    clock = FakeClock()
    broker = MemoryBroker(history_seconds=1, clock=clock)
    seen = broker.publish("t", "seen")
    missed = broker.publish("t", "missed")
    clock.now += 2
    broker.publish("other", "x")  # the sweep frees "t"
    assert broker._hub.topic_count() == 1
    [reset] = read(broker.subscribe("t", seen), 1)
    assert (reset.type, reset.last_event_id) == (RESET_EVENT, missed)
    subscription = broker.subscribe("t", reset.last_event_id)
    assert queued(subscription) == []  # resuming from the reset's id: nothing missing
    broker.publish("t", "after")
    assert [e.data for e in read(subscription, 1)] == ["after"]


def test_max_topics_evicts_the_least_recently_active_idle_topic() -> None:
    """At `max_topics`, a new topic evicts the idle topic published to longest ago (counted);
    a resume into the evicted topic gets a reset."""
    broker = MemoryBroker(max_topics=3)
    a = broker.publish("a", 1)
    broker.publish("b", 1)
    broker.publish("c", 1)
    broker.publish("a", 2)  # "a" is now the most recently active
    broker.publish("d", 1)  # evicts "b"
    assert broker.counters["topics_evicted"] == 1
    assert broker._hub.topic_count() == 3
    [reset] = read(broker.subscribe("b", a), 1)
    assert reset.type == RESET_EVENT
    assert numbers(read(broker.subscribe("a", a), 1)) == [2]


def test_max_topics_with_every_topic_subscribed_refuses_a_new_one() -> None:
    """When every kept topic has a subscriber, a new topic is refused with `TooManyTopics` (a
    `TooManySubscribers`, so adapters answer 503); a subscriber leaving makes room."""
    broker = MemoryBroker(max_topics=2)
    first, _second = broker.subscribe("a"), broker.subscribe("b")
    with pytest.raises(TooManyTopics, match="2 topics"):
        broker.subscribe("c")
    with pytest.raises(TooManySubscribers):
        broker.subscribe(["a", "c"])
    with pytest.raises(TooManyTopics):
        broker.publish("c", "x")
    assert broker._hub.topic_count() == 2
    assert len(broker.subscribers("a")) == 1  # the refused subscription left nothing behind
    first.close()
    broker.subscribe("c").close()


def test_a_closed_memory_broker_refuses() -> None:
    broker = MemoryBroker()
    broker.close()
    with pytest.raises(BrokerClosed):
        broker.publish("t", "x")


@pytest.mark.parametrize(
    ("option", "value"),
    [("history_seconds", 0), ("history_seconds", -1), ("max_topics", 0), ("history_size", -1)],
)
def test_bad_limits_are_refused(option: str, value: float) -> None:
    with pytest.raises(ValueError, match=option):
        MemoryBroker(**{option: value})


def test_a_freed_topic_resumes_exactly_from_its_newest_id() -> None:
    """Without history, a topic is freed as soon as nobody follows it; a client that had its
    newest event resumes with nothing to replay, whatever other topics did meanwhile."""
    broker = MemoryBroker(history_size=0)
    subscription = broker.subscribe("a")
    newest = broker.publish("a", "x")
    subscription.close()
    for n in range(5):
        broker.publish(f"other/{n}", n)
    assert broker._hub.topic_count() == 0
    resumed = broker.subscribe("a", newest)
    assert queued(resumed) == []
    broker.publish("a", "live")
    assert [e.data for e in read(resumed, 1)] == ["live"]


def test_long_forgotten_topics_resume_with_a_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the number of freed topics the hub remembers, a resume into a forgotten topic from
    before the newest forgotten id is a reset (never an empty replay that could hide a gap)."""
    from ssekit.broker import _hub

    monkeypatch.setattr(_hub, "_MAX_FORGOTTEN", 2)
    broker = MemoryBroker(history_size=0)
    old = broker.publish("a", "x")
    for n in range(3):
        broker.publish(f"other/{n}", n)
    [reset] = read(broker.subscribe("a", old), 1)
    assert reset.type == RESET_EVENT


def test_a_subscription_to_several_new_topics_never_evicts_its_own() -> None:
    """Making room for one topic of a subscription never evicts another topic of it."""
    broker = MemoryBroker(max_topics=2)
    with pytest.raises(TooManyTopics):
        broker.subscribe(["x", "y", "z"])
    assert broker._hub.topic_count() == 0
    subscription = broker.subscribe(["x", "y"])
    broker.publish("x", 1)
    broker.publish("y", 2)
    assert numbers(read(subscription, 2)) == [1, 2]
