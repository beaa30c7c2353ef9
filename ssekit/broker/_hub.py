"""The in-process half of every broker: topics, subscriptions, replay and fan-out.

A published event is framed once; the same bytes go into each subscriber's bounded queue.  A queue
that is full means a slow client, and the subscription's policy decides: `disconnect` ends that
stream with a `retry:` hint (the client resumes from its last id and loses nothing the history
holds), `drop_oldest` makes room by dropping its oldest pending event (counted).

The hub keeps only topics that have a subscriber or retained history; `max_topics` bounds them.
Its lock is its own: brokers publish through `Hub.publish()` (ids they issue) or `Hub.deliver()`
(ids from elsewhere, e.g. Redis), and read history kept elsewhere through a `Replay`.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from ssekit._errors import ChannelClosed
from ssekit._event import Event
from ssekit._frame import Encoded, with_id
from ssekit._handoff import Handoff, HandoffSource

__all__ = [
    "MAX_TOPIC_LENGTH",
    "RESET_EVENT",
    "UNAVAILABLE_RETRY_MS",
    "BrokerClosed",
    "BrokerUnavailable",
    "Clock",
    "ComposeId",
    "ComposedSubscription",
    "Hub",
    "HubBroker",
    "InvalidTopic",
    "Replay",
    "SlowPolicy",
    "StreamId",
    "Subscription",
    "TooManySubscribers",
    "TooManyTopics",
    "check_topic",
    "farewell_bytes",
    "format_id",
    "parse_id",
    "topic_names",
]

#: What a subscription does when its client falls `queue_size` events behind.
SlowPolicy = Literal["disconnect", "drop_oldest"]

#: The event type sent first when a resume cannot be served from history: refetch your state.
RESET_EVENT = "reset"

#: The reconnection hint (ms) a slow client gets when it is disconnected.
SLOW_CLIENT_RETRY_MS = 1000
#: The reconnection hint (ms) given while the broker's store is unreachable (or it closed).
UNAVAILABLE_RETRY_MS = 2000

#: An event id: (milliseconds, sequence), written "<ms>-<n>" as Redis Streams write theirs.
StreamId = tuple[int, int]

#: Seconds from an arbitrary start, never going back (`time.monotonic` unless a test injects one).
Clock = Callable[[], float]

#: Writes the id of a multi-topic subscription's event from its position in each of its topics.
ComposeId = Callable[[Sequence[str], Mapping[str, StreamId]], str]

#: Each part of an id is an unsigned 64-bit number (Redis' rule): at most 20 digits.
_ID_PART_DIGITS = 20
_ID_PART_LIMIT = 2**64


class Replay(Protocol):
    """History kept outside the hub (Redis): the events of `topic` after `after`, in id order.

    None when `after` is not an id of that history (unknown, or trimmed away): a gap.
    """

    def __call__(self, topic: str, after: StreamId) -> list[tuple[StreamId, Encoded]] | None: ...


def parse_id(value: str) -> StreamId | None:
    """Parse an id "<milliseconds>-<sequence>" (two unsigned 64-bit numbers); None if it is not one.

    Any text is safe to pass: a client's `Last-Event-ID` is checked here and never raises.
    """
    first, dash, second = value.partition("-")
    if not (
        dash
        and 0 < len(first) <= _ID_PART_DIGITS
        and 0 < len(second) <= _ID_PART_DIGITS
        and first.isascii()
        and first.isdigit()
        and second.isascii()
        and second.isdigit()
    ):
        return None
    parsed = int(first), int(second)
    if parsed[0] >= _ID_PART_LIMIT or parsed[1] >= _ID_PART_LIMIT:
        return None
    return parsed


def format_id(value: StreamId) -> str:
    return f"{value[0]}-{value[1]}"


#: How many freed topics the hub remembers the newest id of (a few dozen bytes each), so that
#: a resume into one of them is exact; older ones raise a floor, below which a resume into a
#: topic the hub does not hold is a `reset`.
_MAX_FORGOTTEN = 10_000

#: The longest topic name, in characters: a name is a key in memory and in Redis.
MAX_TOPIC_LENGTH = 256


class InvalidTopic(ValueError):
    """A topic name the broker cannot use: empty, too long, or not a str (a client error: 400)."""


class TooManySubscribers(RuntimeError):
    """The topic (or process) has as many subscribers as it allows."""


class TooManyTopics(TooManySubscribers):
    """The broker keeps `max_topics` topics and every one of them has subscribers (a 503)."""


class BrokerClosed(RuntimeError):
    """The broker was closed: it publishes and subscribes no more."""


class BrokerUnavailable(ConnectionError):
    """The broker's backing store (Redis) cannot be reached right now; try again shortly.

    The adapter helpers answer it with an empty stream carrying a `retry:` hint, so browsers
    come back by themselves (a non-200 answer would make `EventSource` give up for good).
    """


def check_topic(name: object) -> str:
    """The one rule for a topic name: a non-empty str of at most `MAX_TOPIC_LENGTH` characters."""
    if not isinstance(name, str) or not name:
        raise InvalidTopic(f"A topic must be a non-empty str, not {name!r:.80}.")
    if len(name) > MAX_TOPIC_LENGTH:
        raise InvalidTopic(
            f"A topic name has at most {MAX_TOPIC_LENGTH} characters, not {len(name)}."
        )
    return name


def topic_names(topics: str | Sequence[str]) -> tuple[str, ...]:
    """One topic or several, checked, as a tuple (InvalidTopic if there is none)."""
    if isinstance(topics, str):
        return (check_topic(topics),)
    try:
        names = tuple(topics)
    except TypeError:
        raise InvalidTopic(f"Topics are a str or a sequence of str, not {topics!r:.80}.") from None
    if not names:
        raise InvalidTopic("subscribe() needs at least one topic.")
    return tuple(check_topic(name) for name in names)


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

    __slots__ = ("_delivered", "_dropped", "_hub", "_skipping", "last_ids", "policy", "topics")

    def __init__(
        self, hub: Hub, topics: tuple[str, ...], *, queue_size: int, policy: SlowPolicy
    ) -> None:
        super().__init__(Handoff(queue_size, on_close=self._on_close))
        self.topics = topics
        self.policy: SlowPolicy = policy
        self._delivered = self._dropped = 0
        self._hub = hub
        #: Per topic, the id at or below which live events are skipped: the replay's newest, or
        #: the topic's newest when this subscription began (a composed one: the client's
        #: position, kept up to date).
        self.last_ids: dict[str, StreamId] = {}
        #: Whether `last_ids` holds anything to skip: checked per event without the dict.
        self._skipping = True

    @property
    def stats(self) -> SubscriptionStats:
        """Counters of this subscription, as they are now."""
        return SubscriptionStats(delivered=self._delivered, dropped=self._dropped)

    def _offer(self, topic: str, id_: StreamId, data: Encoded) -> bool:
        """Queue one event; False when this subscription is over and must be dropped."""
        if self._skipping:
            skip_to = self.last_ids.get(topic)
            if skip_to is not None:
                if id_ <= skip_to:
                    return True  # queued by the replay already, or older than this subscription
                # Each topic's events come in id order from here on: nothing more to skip.
                # (Kept, the entry would be a new tuple in a dict per delivery for the
                # collector to chase.)
                del self.last_ids[topic]
            self._skipping = bool(self.last_ids)
        return self._queue(data)

    def _queue(self, data: Encoded) -> bool:
        """Hand one event to the stream, or apply the slow-client policy; False once over."""
        handoff = self._handoff
        try:
            if not handoff.try_put(data):
                if self.policy == "drop_oldest":
                    self._dropped += handoff.put_dropping_oldest(data)
                else:
                    handoff.finish(ending=Event(retry=SLOW_CLIENT_RETRY_MS).encode())
                    self._hub.count("disconnected_slow")
                    return False
        except ChannelClosed:
            return False
        self._delivered += 1
        return True

    def end(self, ending: bytes = b"") -> None:
        """End this subscription's stream after what is queued (with `ending` bytes last)."""
        self._handoff.finish(ending=ending or None)

    def _begin(self, reset: Encoded | None, replay: list[tuple[StreamId, str, Encoded]]) -> None:
        """Queue what comes before the live events: a `reset`, or the replay in id order.

        The replay is queued whole: it is bounded by the history, and cutting it off at
        `queue_size` would make a client that was away a while catch up one queue at a time.
        """
        if reset is not None:
            self._handoff.try_put(reset)
        if replay:
            self._handoff.put_batch([data for _, _, data in replay])
            self._delivered += len(replay)
            for id_, name, _ in replay:
                self.last_ids[name] = id_

    def _on_close(self) -> None:
        self._hub.remove(self)

    def __repr__(self) -> str:
        return f"Subscription(topics={self.topics!r}, policy={self.policy!r})"


class ComposedSubscription(Subscription):
    """A subscription to several topics whose events carry a composite id (see `ComposeId`):
    the client's position in every topic, so that a resume is exact whatever the order in which
    the topics' events arrived.  Each event is re-framed for it (its body is still shared).
    """

    __slots__ = ("_compose",)

    def __init__(
        self,
        hub: Hub,
        topics: tuple[str, ...],
        *,
        queue_size: int,
        policy: SlowPolicy,
        compose: ComposeId,
    ) -> None:
        super().__init__(hub, topics, queue_size=queue_size, policy=policy)
        self._compose = compose

    def _framed(self, data: Encoded, positions: Mapping[str, StreamId]) -> Encoded:
        """`data` with its id line replaced by the composite of `positions`."""
        body = data[data.index(b"\n") + 1 :] if data.startswith(b"id: ") else data
        return with_id(body, self._compose(self.topics, positions))

    def _offer(self, topic: str, id_: StreamId, data: Encoded) -> bool:
        last = self.last_ids.get(topic)
        if last is not None and id_ <= last:
            return True  # already queued by the replay
        if not self._queue(self._framed(data, {**self.last_ids, topic: id_})):
            return False
        self.last_ids[topic] = id_  # the client's position, for the next composite id
        return True

    def _begin(self, reset: Encoded | None, replay: list[tuple[StreamId, str, Encoded]]) -> None:
        framed = []
        for id_, name, data in replay:  # `last_ids` holds where the client resumes from
            self.last_ids[name] = id_
            framed.append((id_, name, self._framed(data, self.last_ids)))
        super()._begin(reset, framed)


@dataclass
class _Topic:
    name: str
    #: (id, time published by the hub's clock, bytes), oldest first.
    history: deque[tuple[StreamId, float, Encoded]] = field(default_factory=deque)
    last_id: StreamId | None = None
    #: The newest id that is no longer in `history` (trimmed, or never kept).
    trimmed: StreamId | None = None
    subscribers: set[Subscription] = field(default_factory=set)


class Hub:
    """Topics with their recent history and local subscribers; thread-safe.

    A topic lives while it has a subscriber or retained history, then is freed; its newest id
    is remembered a while (then folded into a floor below which a resume into a topic the hub
    does not hold is a `reset`), so freeing a topic never turns a gap into a silent loss.
    """

    def __init__(
        self,
        *,
        history_size: int,
        history_seconds: float | None,
        queue_size: int,
        max_subscribers_per_topic: int | None,
        max_topics: int | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        if history_size < 0:
            raise ValueError(f"history_size must be >= 0, not {history_size!r}.")
        if history_seconds is not None and not history_seconds > 0:
            raise ValueError(f"history_seconds must be > 0 or None, not {history_seconds!r}.")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, not {queue_size!r}.")
        if max_topics is not None and max_topics < 1:
            raise ValueError(f"max_topics must be >= 1 or None, not {max_topics!r}.")
        self.history_size = history_size
        self.history_seconds = history_seconds
        self.queue_size = queue_size
        self.max_subscribers_per_topic = max_subscribers_per_topic
        self.max_topics = max_topics
        self._clock = clock
        #: Topics in order of last activity (oldest first): eviction takes the first idle one.
        self._topics: dict[str, _Topic] = {}
        #: The first and the newest id delivered (any topic): the range of ids that are ours.
        self._first_id: StreamId | None = None
        self._newest_id: StreamId | None = None
        #: The newest id of each recently freed topic (oldest first, at most `_MAX_FORGOTTEN`).
        self._forgotten: dict[str, StreamId] = {}
        #: The newest id of any topic freed and no longer in `_forgotten`.
        self._floor: StreamId | None = None
        #: When the next sweep of aged history is due (by `clock`).
        self._next_sweep = math.inf if history_seconds is None else clock() + history_seconds
        self._lock = threading.RLock()
        self._counters: dict[str, int] = {}
        self._closed = False

    # -- counters and life ------------------------------------------------------------------------

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counters[name] = self._counters.get(name, 0) + n

    def counters(self) -> dict[str, int]:
        """A copy of the counters: published, resets, disconnected_slow, topics_evicted, ..."""
        with self._lock:
            return dict(self._counters)

    def topic_count(self) -> int:
        """How many topics the hub keeps (with a subscriber or retained history)."""
        with self._lock:
            return len(self._topics)

    @property
    def closed(self) -> bool:
        return self._closed

    def ensure_open(self) -> None:
        """Raise `BrokerClosed` once `close()` was called."""
        if self._closed:
            raise BrokerClosed("This broker is closed.")

    def close(self) -> int:
        """Refuse publishing and subscribing from now on, and end every subscription.

        Each ends after what it has queued, with a `retry:` hint, so its client comes back
        (to another process, or to this one restarted).  Returns how many were ended.
        """
        ending = Event(retry=UNAVAILABLE_RETRY_MS).encode()
        with self._lock:
            self._closed = True
            subscriptions = {s for topic in self._topics.values() for s in topic.subscribers}
            self._topics.clear()
        for subscription in subscriptions:
            subscription.end(ending)
        return len(subscriptions)

    # -- publishing -------------------------------------------------------------------------------

    def publish(self, topic: str, body: bytes, next_id: Callable[[], StreamId]) -> str:
        """Deliver a framed `body` under an id from `next_id()`; return the id.

        `next_id` is called under the hub's lock, so ids are delivered in the order issued.
        """
        check_topic(topic)
        with self._lock:
            self.ensure_open()
            id_ = next_id()
            text_id = format_id(id_)
            self._deliver(topic, id_, with_id(body, text_id))
        return text_id

    def deliver(self, topic: str, id_: StreamId, data: Encoded) -> None:
        """Record an event whose id was issued elsewhere (Redis) and queue it for subscribers."""
        with self._lock:
            if not self._closed:
                self._deliver(topic, id_, data)

    def _deliver(self, name: str, id_: StreamId, data: Encoded) -> None:
        topic = self._topics.pop(name, None)  # and put back last: the most recently active
        if topic is None:
            topic = self._new_topic(name)
        self._topics[name] = topic
        topic.last_id = id_
        if self._first_id is None:
            self._first_id = id_
        if self._newest_id is None or id_ > self._newest_id:
            self._newest_id = id_
        if self.history_size:
            now = self._clock()
            topic.history.append((id_, now, data))
            self._trim(topic, now)
        else:
            topic.trimmed = id_
        if topic.subscribers:
            gone = [s for s in topic.subscribers if not s._offer(name, id_, data)]
            for subscription in gone:
                topic.subscribers.discard(subscription)
        self._counters["published"] = self._counters.get("published", 0) + 1
        self._release(topic)
        self._maybe_sweep()

    # -- topics -----------------------------------------------------------------------------------

    def _new_topic(self, name: str, keep: Collection[str] = ()) -> _Topic:
        """A topic the hub holds nothing of (making room for it, never by evicting `keep`)."""
        if self.max_topics is not None and len(self._topics) >= self.max_topics:
            self._make_room(keep)
        topic = _Topic(name)
        known = self._forgotten.pop(name, None)
        if known is not None:  # freed recently: nothing after its newest id was missed
            topic.last_id = topic.trimmed = known
        else:
            topic.trimmed = self._floor
        return topic

    def _topic(self, name: str, keep: Collection[str] = ()) -> _Topic:
        topic = self._topics.get(name)
        if topic is None:
            topic = self._topics[name] = self._new_topic(name, keep)
        return topic

    def _make_room(self, keep: Collection[str]) -> None:
        """Evict the least recently active topic without subscribers, or refuse."""
        self._sweep()
        assert self.max_topics is not None
        if len(self._topics) < self.max_topics:
            return
        for topic in self._topics.values():
            if not topic.subscribers and topic.name not in keep:
                self._forget(topic)
                self._counters["topics_evicted"] = self._counters.get("topics_evicted", 0) + 1
                return
        raise TooManyTopics(
            f"This broker keeps at most {self.max_topics} topics and each has subscribers."
        )

    def _release(self, topic: _Topic) -> None:
        """Free a topic that has neither subscribers nor retained history."""
        if not topic.subscribers and not topic.history and self._topics.get(topic.name) is topic:
            self._forget(topic)

    def _forget(self, topic: _Topic) -> None:
        del self._topics[topic.name]
        newest = topic.last_id or topic.trimmed
        if newest is None:
            return  # nothing was ever published to it: nothing to remember
        self._forgotten.pop(topic.name, None)
        self._forgotten[topic.name] = newest
        if len(self._forgotten) > _MAX_FORGOTTEN:
            oldest = self._forgotten.pop(next(iter(self._forgotten)))
            if self._floor is None or oldest > self._floor:
                self._floor = oldest

    # -- history by age ---------------------------------------------------------------------------

    def _trim(self, topic: _Topic, now: float) -> None:
        history = topic.history
        while len(history) > self.history_size:
            topic.trimmed = history.popleft()[0]
        if self.history_seconds is not None:
            oldest = now - self.history_seconds
            while history and history[0][1] < oldest:
                topic.trimmed = history.popleft()[0]

    def _maybe_sweep(self) -> None:
        """Trim aged history of every topic, at most once per `history_seconds` (cheap: lazy)."""
        if self._clock() >= self._next_sweep:
            self._sweep()

    def _sweep(self) -> None:
        if self.history_seconds is None:
            return
        now = self._clock()
        self._next_sweep = now + self.history_seconds
        for topic in list(self._topics.values()):
            self._trim(topic, now)
            self._release(topic)

    # -- subscribing ------------------------------------------------------------------------------

    def subscribe(
        self,
        topics: str | Sequence[str],
        last_event_id: str | None,
        *,
        policy: SlowPolicy,
        queue_size: int | None = None,
        replay: Replay | None = None,
        newest: Mapping[str, StreamId] | None = None,
        positions: Mapping[str, StreamId] | None = None,
        compose: ComposeId | None = None,
    ) -> Subscription:
        """Register a subscription, replaying what followed `last_event_id` (or a reset).

        Any `last_event_id` is accepted: one the hub cannot use gives a `reset` first, never an
        error.  `replay` reads history kept elsewhere; `newest` gives a topic's newest id known
        elsewhere (carried by a `reset`; a resume from it has nothing to replay).  With `compose`,
        a subscription to several topics gets composite ids (`ComposedSubscription`), and
        `positions` are what the broker read from `last_event_id`: where to resume each topic
        (a topic without one is a gap).
        """
        names = topic_names(topics)
        if last_event_id is not None and not isinstance(last_event_id, str):
            raise TypeError(f"last_event_id must be a str or None, not {last_event_id!r:.80}.")
        size = queue_size or self.queue_size
        subscription: Subscription
        if compose is not None and len(set(names)) > 1:
            subscription = ComposedSubscription(
                self, names, queue_size=size, policy=policy, compose=compose
            )
        else:
            compose = positions = None
            subscription = Subscription(self, names, queue_size=size, policy=policy)
        after = parse_id(last_event_id) if last_event_id else None
        with self._lock:
            self.ensure_open()
            self._maybe_sweep()
            try:
                found = [self._topic(name, keep=names) for name in names]
            except TooManyTopics:
                for name in names:
                    if name in self._topics:
                        self._release(self._topics[name])
                raise
            cap = self.max_subscribers_per_topic
            for topic in found:
                known = newest.get(topic.name) if newest else None
                if known is not None and (topic.last_id is None or topic.last_id < known):
                    topic.last_id = known
            for topic in found:
                if cap is not None and len(topic.subscribers) >= cap:
                    for other in found:
                        self._release(other)
                    raise TooManySubscribers(
                        f"Topic {topic.name!r} already has {cap} subscribers in this process."
                    )
            backlogs: dict[str, list[tuple[StreamId, Encoded]] | None] = {}
            if last_event_id:  # "" is no id at all: a fresh start, as without the header
                for topic in found:
                    start = after if positions is None else positions.get(topic.name)
                    backlogs[topic.name] = self._backlog(topic, start, replay)
            reset = None
            if any(backlog is None for backlog in backlogs.values()):
                # A gap: say so first, and carry the newest id so the next resume starts here.
                self._counters["resets"] = self._counters.get("resets", 0) + 1
                # A topic freed since knows no newer id than the floor (history kept here only).
                candidates = [t.last_id or (t.trimmed if replay is None else None) for t in found]
                latest = max((id_ for id_ in candidates if id_), default=None)
                if compose is not None:
                    newest_ids = {t.name: t.last_id for t in found if t.last_id is not None}
                    reset_id: str | None = compose(names, newest_ids)
                else:
                    reset_id = format_id(latest) if latest else None
                reset = Encoded(
                    Event(
                        '{"reason":"history unavailable"}', event=RESET_EVENT, id=reset_id
                    ).encode()
                )
                backlogs = {}
            replayed = sorted(
                (
                    (id_, name, data)
                    for name, backlog in backlogs.items()
                    for id_, data in backlog or ()
                ),
                key=lambda entry: entry[0],
            )
            if compose is not None:  # composite ids start from where the client is
                for topic in found:
                    start = None if positions is None or reset else positions.get(topic.name)
                    start = start or topic.last_id
                    if start is not None:
                        subscription.last_ids[topic.name] = start
            subscription._begin(reset, replayed)
            for topic in found:
                if topic.name not in subscription.last_ids and topic.last_id is not None:
                    subscription.last_ids[topic.name] = topic.last_id
                topic.subscribers.add(subscription)
        return subscription

    def _backlog(
        self, topic: _Topic, after: StreamId | None, replay: Replay | None
    ) -> list[tuple[StreamId, Encoded]] | None:
        """The events after `after`, or None when they cannot all be known (a gap)."""
        if after is None:
            return None  # not an id at all
        if topic.last_id is not None and after == topic.last_id:
            return []  # the client has everything
        if replay is not None:
            return replay(topic.name, after)
        # Ids are issued in order across topics, so any id of ours marks a point in every topic:
        # one from another topic (a client of several) resumes as well as one from this topic.
        first, newest = self._first_id, self._newest_id
        if first is None or newest is None or not first <= after <= newest:
            return None  # never ours: from the future, another broker or an earlier run
        self._trim(topic, self._clock())
        if topic.trimmed is not None and topic.trimmed > after:
            return None  # events after `after` have left the history
        return [(id_, data) for id_, _, data in topic.history if id_ > after]

    def remove(self, subscription: Subscription) -> None:
        with self._lock:
            for name in subscription.topics:
                topic = self._topics.get(name)
                if topic is not None:
                    topic.subscribers.discard(subscription)
                    self._release(topic)

    def subscribers(self, topic: str) -> list[Subscription]:
        """The live subscriptions of `topic` in this process."""
        with self._lock:
            found = self._topics.get(topic)
            return list(found.subscribers) if found else []

    def subscriber_counts(self, topics: Collection[str]) -> dict[str, int]:
        """How many live subscriptions each of `topics` has in this process (0 included)."""
        with self._lock:
            counts = {}
            for name in topics:
                found = self._topics.get(name)
                counts[name] = len(found.subscribers) if found else 0
            return counts

    def close_topic(self, topic: str, *, farewell: str | Event | None = None) -> int:
        """End every subscription of `topic` (e.g. when permissions change); return how many."""
        return self.end_topic(topic, farewell_bytes(farewell))

    def end_topic(self, topic: str, ending: bytes) -> int:
        """`close_topic()` with the farewell already encoded (as another process sent it)."""
        with self._lock:
            found = self._topics.get(topic)
            subscriptions = list(found.subscribers) if found else []
            if found:
                found.subscribers.clear()
                self._release(found)
        for subscription in subscriptions:
            subscription.end(ending)
        return len(subscriptions)


def _as_event(value: str | Event) -> Event:
    return value if isinstance(value, Event) else Event(value)


def farewell_bytes(farewell: str | Event | None) -> bytes:
    """The bytes a closed topic's subscriptions end with (none without a farewell)."""
    return b"" if farewell is None else _as_event(farewell).encode()


class HubBroker:
    """What every broker answers from its in-process hub: local subscribers and counters."""

    _hub: Hub

    def subscribers(self, topic: str) -> list[Subscription]:
        """The live subscriptions of `topic` in this process."""
        return self._hub.subscribers(topic)

    def close_topic(self, topic: str, *, farewell: str | Event | None = None) -> int:
        """End every subscription of `topic` in this process (say, when permissions change)."""
        return self._hub.close_topic(topic, farewell=farewell)

    def subscriber_count(self, topic: str) -> int:
        """How many subscriptions `topic` has (in this process; `RedisBroker`: in all)."""
        return self._hub.subscriber_counts((topic,))[topic]

    @property
    def counters(self) -> dict[str, int]:
        """published, resets, disconnected_slow, topics_evicted, reconnects (Redis), ..."""
        return self._hub.counters()

    @property
    def closed(self) -> bool:
        """Whether `close()` was called: publishing and subscribing raise `BrokerClosed`."""
        return self._hub.closed
