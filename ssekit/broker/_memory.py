"""`MemoryBroker`: publish/subscribe with replay inside one process, no dependency."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ssekit._frame import frame_body
from ssekit._serialize import Serializer
from ssekit.broker._hub import (
    Clock,
    Hub,
    HubBroker,
    SlowPolicy,
    StreamId,
    Subscription,
    check_topic,
)

__all__ = ["DEFAULT_MAX_TOPICS", "MemoryBroker"]

#: How many topics a `MemoryBroker` keeps by default (each with up to `history_size` events).
DEFAULT_MAX_TOPICS = 100_000


class MemoryBroker(HubBroker):
    """Topics for the subscribers of this process, with a replay history per topic.

    Ids have the form "<epoch ms>-<n>": one counter for the whole broker, so they increase across
    topics, and an id from an earlier run (another epoch) is recognised as unknown and answered
    with a `reset` event instead of being silently misread.

    A topic is kept while it has a subscriber or retained history.  `history_seconds` is enforced
    whenever history is read and by a sweep of all topics at most once per `history_seconds`
    (run by the next publish or subscribe).  At `max_topics`, a new topic evicts the least
    recently active topic that has no subscriber (its history is lost: a resume into it gets a
    `reset`); when every topic has subscribers, `subscribe` raises `TooManyTopics` (a 503).
    `clock` (seconds, never going back) times the history; tests inject their own.
    """

    def __init__(
        self,
        *,
        history_size: int = 1000,
        history_seconds: float | None = None,
        queue_size: int = 256,
        max_subscribers_per_topic: int | None = None,
        max_topics: int | None = DEFAULT_MAX_TOPICS,
        serializer: Serializer | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self._hub = Hub(
            history_size=history_size,
            history_seconds=history_seconds,
            queue_size=queue_size,
            max_subscribers_per_topic=max_subscribers_per_topic,
            max_topics=max_topics,
            clock=clock,
        )
        self._serializer = serializer
        self._epoch = time.time_ns() // 1_000_000
        self._sequence = 0

    def _next_id(self) -> StreamId:
        self._sequence += 1  # called under the hub's lock
        return self._epoch, self._sequence

    def publish(self, topic: str, chunk: Any, *, event: str | None = None) -> str:
        """Send `chunk` to every subscriber of `topic`; return its id.

        `event` sets the event's type (`""` or None: `message`, written as no `event:` line).
        """
        self._hub.ensure_open()
        check_topic(topic)
        body = frame_body(chunk, event, self._serializer)  # the costly part, outside the lock
        return self._hub.publish(topic, body, self._next_id)

    async def apublish(self, topic: str, chunk: Any, *, event: str | None = None) -> str:
        """`publish()` for async code (it never waits for subscribers)."""
        return self.publish(topic, chunk, event=event)

    def subscribe(
        self,
        topics: str | Sequence[str],
        last_event_id: str | None = None,
        *,
        policy: SlowPolicy = "disconnect",
        queue_size: int | None = None,
    ) -> Subscription:
        """A source for `to_sse()`: events of `topics` after `last_event_id` (exclusive), then live.

        An id that the history no longer holds (or never held, or that is not an id at all)
        gives a `reset` event first; a client's id never makes this raise.
        """
        return self._hub.subscribe(topics, last_event_id, policy=policy, queue_size=queue_size)

    def close(self) -> None:
        """End every subscription (with a `retry:` hint); publish and subscribe raise after."""
        self._hub.close()

    async def aclose(self) -> None:
        """`close()` for async code."""
        self.close()
