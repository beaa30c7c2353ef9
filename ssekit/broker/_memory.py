"""`MemoryBroker`: publish/subscribe with replay inside one process, no dependency."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from ssekit._serialize import Serializer
from ssekit.broker._hub import (
    Hub,
    HubBroker,
    SlowPolicy,
    Subscription,
    format_id,
    frame_body,
    with_id,
)

__all__ = ["MemoryBroker"]


class MemoryBroker(HubBroker):
    """Topics for the subscribers of this process, with a replay history per topic.

    Ids have the form "<epoch ms>-<n>": one counter for the whole broker, so they increase across
    topics, and an id from an earlier run (another epoch) is recognised as unknown and answered
    with a `reset` event instead of being silently misread.
    """

    def __init__(
        self,
        *,
        history_size: int = 1000,
        history_seconds: float | None = None,
        queue_size: int = 256,
        max_subscribers_per_topic: int | None = None,
        serializer: Serializer | None = None,
    ) -> None:
        self._hub = Hub(
            history_size=history_size,
            history_seconds=history_seconds,
            queue_size=queue_size,
            max_subscribers_per_topic=max_subscribers_per_topic,
        )
        self._serializer = serializer
        self._epoch = time.time_ns() // 1_000_000
        self._sequence = 0

    def publish(self, topic: str, chunk: Any, *, event: str | None = None) -> str:
        """Send `chunk` to every subscriber of `topic`; return its id."""
        body = frame_body(chunk, event, self._serializer)  # the costly part, outside the lock
        with self._hub._lock:  # an id and its delivery are one step, so ids arrive in order
            self._sequence += 1
            id_ = (self._epoch, self._sequence)
            text_id = format_id(id_)
            self._hub.deliver(topic, id_, with_id(body, text_id))
        return text_id

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

        An id that the history no longer holds (or never held) gives a `reset` event first.
        """
        names = (topics,) if isinstance(topics, str) else tuple(topics)
        return self._hub.subscribe(names, last_event_id, policy=policy, queue_size=queue_size)

    async def aclose(self) -> None:
        """Nothing to release; present so every broker can be closed the same way."""
        await asyncio.sleep(0)

    def close(self) -> None:
        """Nothing to release; present so every broker can be closed the same way."""
