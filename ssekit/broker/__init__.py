"""Publish/subscribe with `Last-Event-ID` resume: `MemoryBroker` (one process) and `RedisBroker`.

```
broker = MemoryBroker()
broker.publish("jobs/42", {"percent": 50})            # -> its id, e.g. "1732400000000-7"
to_sse(broker.subscribe("jobs/42", last_event_id))    # replay after that id, then live
```

A resume is exclusive (events *after* the id, never a repeat).  When the history no longer holds
the id (or never did), the stream starts with a `reset` event (data `{"reason": ...}`, carrying
the newest id): the client must refetch its state instead of silently missing events.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from ssekit._event import Event
from ssekit.broker._hub import (
    MAX_TOPIC_LENGTH,
    RESET_EVENT,
    UNAVAILABLE_RETRY_MS,
    BrokerClosed,
    BrokerUnavailable,
    InvalidTopic,
    SlowPolicy,
    Subscription,
    SubscriptionStats,
    TooManySubscribers,
    TooManyTopics,
)
from ssekit.broker._memory import MemoryBroker

__all__ = [
    "MAX_TOPIC_LENGTH",
    "RESET_EVENT",
    "UNAVAILABLE_RETRY_MS",
    "Broker",
    "BrokerClosed",
    "BrokerUnavailable",
    "InvalidTopic",
    "MemoryBroker",
    "RedisBroker",
    "SlowPolicy",
    "Subscription",
    "SubscriptionStats",
    "TooManySubscribers",
    "TooManyTopics",
]


class Broker(Protocol):
    """What every broker offers; adapters and applications depend on this only.

    Both brokers behave alike: ids "<ms>-<n>"; a topic is a non-empty str of at most
    `MAX_TOPIC_LENGTH` characters (else `InvalidTopic`); any `Last-Event-ID` they cannot use
    gives a `reset` event, never an error; after `close()`/`aclose()`, which end every
    subscription with a `retry:` hint, `publish`/`apublish`/`subscribe` raise `BrokerClosed`.
    """

    def publish(self, topic: str, chunk: Any, *, event: str | None = None) -> str: ...

    async def apublish(self, topic: str, chunk: Any, *, event: str | None = None) -> str: ...

    def subscribe(
        self,
        topics: str | Sequence[str],
        last_event_id: str | None = None,
        *,
        policy: SlowPolicy = "disconnect",
        queue_size: int | None = None,
    ) -> Subscription: ...

    def subscribers(self, topic: str) -> list[Subscription]: ...

    def subscriber_count(self, topic: str) -> int: ...

    def close_topic(self, topic: str, *, farewell: str | Event | None = None) -> int: ...

    @property
    def counters(self) -> dict[str, int]:
        """A copy of the broker's counters (published, resets, disconnected_slow, ...)."""
        ...

    @property
    def closed(self) -> bool: ...

    def close(self) -> None: ...

    async def aclose(self) -> None: ...


def __getattr__(name: str) -> Any:
    if name == "RedisBroker":  # imported on demand: it needs the `redis` extra
        from ssekit.broker._redis import RedisBroker

        return RedisBroker
    raise AttributeError(f"module 'ssekit.broker' has no attribute {name!r}")
