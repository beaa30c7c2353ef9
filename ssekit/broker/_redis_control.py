"""What the processes sharing a `RedisBroker` prefix tell each other: closed topics and counts.

Keys live under `ssekit:broker:`, a namespace no topic (`prefix` + name) and no `RedisMemory`
key can reach:

- `ssekit:broker:control:<prefix>`: a stream of commands every reader follows; `close_topic`
  appends one, and each process ends its own subscriptions of that topic with the farewell.
- `ssekit:broker:pulse:<prefix>`: a stream of topic names, one per publish (appended with the
  event, in the same round trip): the readers block on it, and then read just the topics named,
  so a publish costs a reader the same with 10 or 10,000 topics followed.
- `ssekit:broker:members:<prefix>`: a sorted set of live brokers, scored by when their
  presence expires (a process that died without a word drops out after `PRESENCE_TTL`).
- `ssekit:broker:counts:<broker id>`: a hash, topic -> that broker's local subscriber count,
  written by its reader (changes within about a second) and expiring with its presence.
- `ssekit:broker:wake:<broker id>`: the stream a subscription appends to, to wake the reader.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import Any

import redis

from ssekit.broker._hub import Hub

__all__ = [
    "CONTROL_MAX_LENGTH",
    "NAMESPACE",
    "PRESENCE_TTL",
    "PULSE_FIELD",
    "PULSE_MAX_LENGTH",
    "Presence",
    "close_command",
    "control_key",
    "ending_of",
    "pulse_key",
    "wake_key",
]

#: The root of every key a broker keeps besides its topics.
NAMESPACE = "ssekit:broker:"
#: How many commands the control stream keeps (approximately): a reader away longer than it
#: takes to append these misses the oldest (its subscribers reconnected meanwhile anyway).
CONTROL_MAX_LENGTH = 1000
#: How many pulses the stream keeps (approximately): a reader further behind than that catches
#: up through its sweep of every topic it follows (`SWEEP_INTERVAL`).
PULSE_MAX_LENGTH = 10_000
#: The pulse entry's single field: the topic published to.
PULSE_FIELD = b"t"
#: How long a broker's presence and counts outlive its last refresh (seconds).
PRESENCE_TTL = 30.0
#: Presence is refreshed this often; counts are written at most this often after a change.
PRESENCE_REFRESH = 5.0
COUNTS_INTERVAL = 1.0
COUNTS_MIN_GAP = 0.1


def control_key(prefix: str) -> str:
    return f"{NAMESPACE}control:{prefix}"


def pulse_key(prefix: str) -> str:
    return f"{NAMESPACE}pulse:{prefix}"


def wake_key(broker_id: str) -> str:
    return f"{NAMESPACE}wake:{broker_id}"


def close_command(topic: str, ending: bytes, origin: str) -> dict[bytes, bytes]:
    """The control stream entry that closes `topic` everywhere (`origin` has done it already)."""
    return {
        b"op": b"close",
        b"topic": topic.encode(),
        b"ending": ending,
        b"origin": origin.encode(),
    }


def ending_of(fields: dict[bytes, bytes], own: bytes) -> tuple[str, bytes] | None:
    """(topic, farewell bytes) of a close command from another broker, or None."""
    if fields.get(b"op") != b"close" or fields.get(b"origin") == own:
        return None
    try:
        return fields[b"topic"].decode(), fields.get(b"ending", b"")
    except (KeyError, UnicodeDecodeError):
        return None


class Presence:
    """This broker's entry among the live brokers of its prefix, with its subscriber counts."""

    def __init__(
        self, broker_id: str, prefix: str, hub: Hub, topics: Callable[[], Collection[str]]
    ) -> None:
        self._id = broker_id
        self._counts_key = f"{NAMESPACE}counts:{broker_id}"
        self._members_key = f"{NAMESPACE}members:{prefix}"
        self._hub = hub
        self._topics = topics
        #: The counts as last written to Redis.
        self._written: dict[str, int] = {}
        self._changed = True
        self._last = -float("inf")
        self._refreshed = -float("inf")

    def touch(self) -> None:
        """A subscription came: write the counts soon (departures are seen within a second)."""
        self._changed = True

    def lost(self) -> None:
        """Redis went away (maybe with its data): write everything again on the next sync."""
        self._written = {}
        self._changed = True
        self._refreshed = -float("inf")

    def sync(self, client: redis.Redis) -> None:
        """Write what changed in the local counts, and refresh the presence when it is due."""
        now = time.monotonic()
        if now < self._last + (COUNTS_MIN_GAP if self._changed else COUNTS_INTERVAL):
            return
        self._last = now
        self._changed = False
        counts = {t: n for t, n in self._hub.subscriber_counts(self._topics()).items() if n}
        changed = {t: n for t, n in counts.items() if self._written.get(t) != n}
        gone = [t for t in self._written if t not in counts]
        refresh = now >= self._refreshed + PRESENCE_REFRESH
        if not (changed or gone or refresh):
            return
        pipe = client.pipeline(transaction=False)
        if gone:
            pipe.hdel(self._counts_key, *gone)
        if changed:
            pipe.hset(self._counts_key, mapping=changed)  # type: ignore[arg-type]
        if refresh:
            expires = int((time.time() + PRESENCE_TTL) * 1000)
            pipe.pexpire(self._counts_key, int(PRESENCE_TTL * 1000))
            pipe.zadd(self._members_key, {self._id: expires})
            pipe.zremrangebyscore(self._members_key, "-inf", int(time.time() * 1000))
        pipe.execute()
        self._written = counts
        if refresh:
            self._refreshed = now

    def total(self, client: redis.Redis, topic: str, local: int) -> int:
        """`local` plus the counts of `topic` that the other live brokers wrote."""
        members: Any = client.zrangebyscore(self._members_key, int(time.time() * 1000), "+inf")
        others = [m for m in members if m != self._id.encode()]
        if not others:
            return local
        pipe = client.pipeline(transaction=False)
        for member in others:
            pipe.hget(f"{NAMESPACE}counts:{member.decode()}", topic)
        return local + sum(int(value) for value in pipe.execute() if value is not None)

    def leave(self, client: redis.Redis) -> None:
        """Remove this broker's presence and counts (on close)."""
        pipe = client.pipeline(transaction=False)
        pipe.zrem(self._members_key, self._id)
        pipe.delete(self._counts_key, wake_key(self._id))
        pipe.execute()
