"""The in-process half of every broker: topics, subscriptions, replay and fan-out.

A published event is framed once; the same bytes go into each subscriber's bounded queue.  A queue
that is full means a slow client, and the subscription's policy decides: `disconnect` ends that
stream with a `retry:` hint (the client resumes from its last id and loses nothing the history
holds), `drop_oldest` makes room by dropping its oldest pending event (counted).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ssekit._errors import ChannelClosed
from ssekit._event import Event
from ssekit._frame import Encoded, make_framer
from ssekit._handoff import Handoff, HandoffSource
from ssekit._serialize import Serializer

__all__ = [
    "MAX_TOPIC_LENGTH",
    "RESET_EVENT",
    "UNAVAILABLE_RETRY_MS",
    "BrokerUnavailable",
    "Hub",
    "HubBroker",
    "InvalidTopic",
    "SlowPolicy",
    "Subscription",
    "TooManySubscribers",
    "format_id",
    "frame_body",
    "parse_id",
    "with_id",
]

#: What a subscription does when its client falls `queue_size` events behind.
SlowPolicy = Literal["disconnect", "drop_oldest"]

#: The event type sent first when a resume cannot be served from history: refetch your state.
RESET_EVENT = "reset"

#: The reconnection hint (ms) a slow client gets when it is disconnected.
SLOW_CLIENT_RETRY_MS = 1000
#: The reconnection hint (ms) given while the broker's store is unreachable.
UNAVAILABLE_RETRY_MS = 2000

StreamId = tuple[int, int]


def parse_id(value: str) -> StreamId | None:
    """Parse an id of the form "<milliseconds>-<sequence>" (Redis Streams' form); None if not."""
    first, dash, second = value.partition("-")
    if not (dash and first.isascii() and first.isdigit() and second.isascii() and second.isdigit()):
        return None
    return int(first), int(second)


def format_id(value: StreamId) -> str:
    return f"{value[0]}-{value[1]}"


def frame_body(chunk: Any, event: str | None, serializer: Serializer | None) -> bytes:
    """Frame a published chunk once, without its id: the id is the broker's to assign."""
    if isinstance(chunk, Event):
        if chunk.id is not None:
            raise ValueError("A published Event must not have an id: the broker assigns ids.")
        published = chunk if event is None else chunk.replace(event=event)
        return published.encode()
    framed = make_framer(serializer)(chunk)  # b"data: ...\n\n"
    if event is None:
        return framed
    return Event(event=event).encode()[:-1] + framed  # b"event: <type>\n" + data lines


def with_id(body: bytes, id_: str) -> Encoded:
    """The final bytes of a published event: its id line, then the framed body."""
    return Encoded(b"id: " + id_.encode() + b"\n" + body)


#: The longest topic name, in characters: a name is a key in memory and in Redis.
MAX_TOPIC_LENGTH = 256


class InvalidTopic(ValueError):
    """A topic name the broker cannot use: empty, too long, or not a str (a client error: 400)."""


class TooManySubscribers(RuntimeError):
    """The topic (or process) has as many subscribers as it allows."""


class BrokerUnavailable(ConnectionError):
    """The broker's backing store (Redis) cannot be reached right now; try again shortly.

    The adapter helpers answer it with an empty stream carrying a `retry:` hint, so browsers
    come back by themselves (a non-200 answer would make `EventSource` give up for good).
    """


@dataclass
class SubscriptionStats:
    """Counters of one subscription."""

    #: Events queued for the client (replayed or live).
    delivered: int = 0
    #: Events dropped by the `drop_oldest` policy.
    dropped: int = 0


class Subscription(HandoffSource):
    """One client's view of one or more topics: a source for `to_sse()`.

    Iterate it through `to_sse(subscription)`; closing the stream unsubscribes.
    """

    def __init__(
        self, hub: Hub, topics: tuple[str, ...], *, queue_size: int, policy: SlowPolicy
    ) -> None:
        super().__init__(Handoff(queue_size, on_close=self._on_close))
        self.topics = topics
        self.policy: SlowPolicy = policy
        self.stats = SubscriptionStats()
        self._hub = hub
        #: The newest id queued per topic: live events at or below it are duplicates of replay.
        self.last_ids: dict[str, StreamId] = {}

    def _offer(self, topic: str, id_: StreamId, data: Encoded) -> bool:
        """Queue one event; False when this subscription is over and must be dropped."""
        last = self.last_ids.get(topic)
        if last is not None and id_ <= last:
            return True  # already queued by the replay
        handoff = self._handoff
        try:
            if not handoff.try_put(data):
                if self.policy == "drop_oldest":
                    self.stats.dropped += handoff.put_dropping_oldest(data)
                else:
                    handoff.finish(ending=Event(retry=SLOW_CLIENT_RETRY_MS).encode())
                    self._hub.count("disconnected_slow")
                    return False
        except ChannelClosed:
            return False
        self.last_ids[topic] = id_
        self.stats.delivered += 1
        return True

    def end(self, ending: bytes = b"") -> None:
        """End this subscription's stream after what is queued (with `ending` bytes last)."""
        self._handoff.finish(ending=ending or None)

    def _on_close(self) -> None:
        self._hub.remove(self)

    def __repr__(self) -> str:
        return f"Subscription(topics={self.topics!r}, policy={self.policy!r})"


@dataclass
class _Topic:
    name: str
    history: deque[tuple[StreamId, float, Encoded]] = field(default_factory=deque)
    last_id: StreamId | None = None
    #: The newest id that is no longer in `history` (trimmed, or never kept).
    trimmed: StreamId | None = None
    subscribers: set[Subscription] = field(default_factory=set)


class Hub:
    """Topics with their recent history and local subscribers; thread-safe."""

    def __init__(
        self,
        *,
        history_size: int,
        history_seconds: float | None,
        queue_size: int,
        max_subscribers_per_topic: int | None,
    ) -> None:
        if history_size < 0:
            raise ValueError(f"history_size must be >= 0, not {history_size!r}.")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, not {queue_size!r}.")
        self.history_size = history_size
        self.history_seconds = history_seconds
        self.queue_size = queue_size
        self.max_subscribers_per_topic = max_subscribers_per_topic
        self._topics: dict[str, _Topic] = {}
        #: The first and the newest id delivered (any topic): the range of ids that are ours.
        self._first_id: StreamId | None = None
        self._newest_id: StreamId | None = None
        self._lock = threading.RLock()
        #: Broker-wide counters: published, disconnected_slow, resets, ...
        self.counters: dict[str, int] = {}

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def _topic(self, name: str) -> _Topic:
        topic = self._topics.get(name)
        if topic is None:
            topic = self._topics[name] = _Topic(name)
        return topic

    def deliver(self, topic_name: str, id_: StreamId, data: Encoded) -> None:
        """Record an event in the topic's history and queue it for every subscriber."""
        with self._lock:
            topic = self._topic(topic_name)
            topic.last_id = id_
            if self._first_id is None:
                self._first_id = id_
            if self._newest_id is None or id_ > self._newest_id:
                self._newest_id = id_
            if self.history_size:
                topic.history.append((id_, time.monotonic(), data))
                self._trim(topic)
            else:
                topic.trimmed = id_
            gone = [s for s in topic.subscribers if not s._offer(topic_name, id_, data)]
            for subscription in gone:
                topic.subscribers.discard(subscription)
            self.count("published")

    def _trim(self, topic: _Topic) -> None:
        history = topic.history
        while len(history) > self.history_size:
            topic.trimmed = history.popleft()[0]
        if self.history_seconds is not None:
            oldest = time.monotonic() - self.history_seconds
            while history and history[0][1] < oldest:
                topic.trimmed = history.popleft()[0]

    def subscribe(
        self,
        topics: Sequence[str],
        last_event_id: str | None,
        *,
        policy: SlowPolicy,
        queue_size: int | None = None,
        replay: Any = None,
    ) -> Subscription:
        """Register a subscription, replaying what followed `last_event_id` (or a reset).

        `replay(topic, after)`, when given, returns the history after an id from elsewhere (Redis),
        as a list of (id, bytes), or None when that id is unknown or trimmed away.
        """
        names = _check_topics(topics)
        subscription = Subscription(
            self, names, queue_size=queue_size or self.queue_size, policy=policy
        )
        after = parse_id(last_event_id) if last_event_id else None
        with self._lock:
            cap = self.max_subscribers_per_topic
            for name in names:
                topic = self._topic(name)
                if cap is not None and len(topic.subscribers) >= cap:
                    raise TooManySubscribers(
                        f"Topic {name!r} already has {cap} subscribers in this process."
                    )
            backlogs = {}
            if last_event_id:  # "" is no id at all: a fresh start, as without the header
                for name in names:
                    backlogs[name] = self._backlog(self._topic(name), after, replay)
            if any(backlog is None for backlog in backlogs.values()):
                # A gap: say so first, and carry the newest id so the next resume starts here.
                self.count("resets")
                newest = max(
                    (t.last_id for t in map(self._topic, names) if t.last_id), default=None
                )
                reset = Event(
                    '{"reason":"history unavailable"}',
                    event=RESET_EVENT,
                    id=format_id(newest) if newest else None,
                )
                subscription._handoff.try_put(Encoded(reset.encode()))
                backlogs = {}
            # The replay, in id order across topics, is queued whole: it is bounded by the
            # history, and cutting it off at `queue_size` would make a client that was away a
            # while catch up one queue at a time.
            replayed = sorted(
                (
                    (id_, name, data)
                    for name, found in backlogs.items()
                    for id_, data in found or ()
                ),
                key=lambda entry: entry[0],
            )
            if replayed:
                subscription._handoff.put_batch([data for _, _, data in replayed])
                subscription.stats.delivered += len(replayed)
                for id_, name, _ in replayed:
                    subscription.last_ids[name] = id_
            for name in names:
                topic = self._topic(name)
                if name not in subscription.last_ids and topic.last_id is not None:
                    subscription.last_ids[name] = topic.last_id
                topic.subscribers.add(subscription)
        return subscription

    def _backlog(
        self, topic: _Topic, after: StreamId | None, replay: Any
    ) -> list[tuple[StreamId, Encoded]] | None:
        """The events after `after`, or None when they cannot all be known (a gap)."""
        if after is None:
            return None  # not an id of ours
        if topic.last_id is not None and after == topic.last_id:
            return []  # the client has everything
        if replay is not None:
            found: list[tuple[StreamId, Encoded]] | None = replay(topic.name, after)
            return found
        # Ids are issued in order across topics, so any id of ours marks a point in every topic:
        # one from another topic (a client of several) resumes as well as one from this topic.
        first, newest = self._first_id, self._newest_id
        if first is None or newest is None or not first <= after <= newest:
            return None  # never ours: from the future, another broker or an earlier run
        self._trim(topic)
        if topic.trimmed is not None and topic.trimmed > after:
            return None  # events after `after` have left the history
        return [(id_, data) for id_, _, data in topic.history if id_ > after]

    def remove(self, subscription: Subscription) -> None:
        with self._lock:
            for name in subscription.topics:
                topic = self._topics.get(name)
                if topic is not None:
                    topic.subscribers.discard(subscription)

    def subscribers(self, topic: str) -> list[Subscription]:
        """The live subscriptions of `topic` in this process."""
        with self._lock:
            found = self._topics.get(topic)
            return list(found.subscribers) if found else []

    def close_topic(self, topic: str, *, farewell: str | Event | None = None) -> int:
        """End every subscription of `topic` (e.g. when permissions change); return how many."""
        ending = b"" if farewell is None else _as_event(farewell).encode()
        with self._lock:
            found = self._topics.get(topic)
            subscriptions = list(found.subscribers) if found else []
            if found:
                found.subscribers.clear()
        for subscription in subscriptions:
            subscription.end(ending)
        return len(subscriptions)

    def topic_names(self) -> list[str]:
        with self._lock:
            return [name for name, topic in self._topics.items() if topic.subscribers]


def _check_topics(topics: Sequence[str] | str) -> tuple[str, ...]:
    names = (topics,) if isinstance(topics, str) else tuple(topics)
    if not names:
        raise ValueError("subscribe() needs at least one topic.")
    for name in names:
        if not isinstance(name, str) or not name:
            raise InvalidTopic(f"A topic must be a non-empty str, not {name!r}.")
        if len(name) > MAX_TOPIC_LENGTH:
            raise InvalidTopic(
                f"A topic name has at most {MAX_TOPIC_LENGTH} characters, not {len(name)}."
            )
    return names


def _as_event(value: str | Event) -> Event:
    return value if isinstance(value, Event) else Event(value)


def check_topic_names(topics: Iterable[str]) -> tuple[str, ...]:
    return _check_topics(tuple(topics))


class HubBroker:
    """What every broker answers from its in-process hub: local subscribers and counters."""

    _hub: Hub

    def subscribers(self, topic: str) -> list[Subscription]:
        """The live subscriptions of `topic` in this process."""
        return self._hub.subscribers(topic)

    def close_topic(self, topic: str, *, farewell: str | Event | None = None) -> int:
        """End every subscription of `topic` in this process (say, when permissions change)."""
        return self._hub.close_topic(topic, farewell=farewell)

    @property
    def counters(self) -> dict[str, int]:
        """published, resets, disconnected_slow, reconnects (Redis), ..."""
        return dict(self._hub.counters)
