"""The one reader thread of a `RedisBroker`: every local topic's stream on one connection.

It blocks (`XREAD BLOCK`) on three streams only: the pulse stream, where every publish names its
topic; the control stream (`close_topic` from any process); and this broker's wake stream (a
subscription to a topic not yet followed appends to it, so the reader reads that topic at once;
appending cannot race with the read the way interrupting it could).  When pulses come, it reads
(without blocking) just the pulsed topics that have a local subscriber, each from the last id it
delivered, so a publish costs the same with 10 or 10,000 topics followed.  Once a second it also
reads every followed topic, or the next thousand of them (a sweep), which catches entries
appended by other means than `publish()` and pulses trimmed before it read them.  Topics without
local subscribers are dropped: they cost nothing.  When Redis goes away it reconnects with capped
backoff, reads every followed topic from the last id it delivered, and goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import redis

if TYPE_CHECKING:
    from ssekit.broker._redis import RedisBroker

__all__ = [
    "BACKOFF_FIRST",
    "BACKOFF_MAX",
    "READ_BLOCK_MS",
    "READ_COUNT",
    "SWEEP_INTERVAL",
    "SWEEP_TOPICS",
    "Reader",
]

logger = logging.getLogger("ssekit")

#: How long one blocking XREAD waits before the reader looks at its topics again (ms).
READ_BLOCK_MS = 1000
#: The most entries one XREAD takes from each stream.
READ_COUNT = 500
#: How often the reader reads every topic it follows, pulsed or not (seconds).
SWEEP_INTERVAL = 1.0
#: How many topics one sweep reads: with more topics, a sweep takes the next ones in turn, so
#: its cost stays bounded (every topic is swept once per topics / SWEEP_TOPICS seconds).
SWEEP_TOPICS = 1000
#: Reconnection backoff after Redis went away: first and largest delay, in seconds.
BACKOFF_FIRST = 0.05
BACKOFF_MAX = 2.0
#: Key types a topic's key may have: a stream, or nothing yet.
_READABLE_TYPES = {b"stream", b"none", "stream", "none"}


class Reader(threading.Thread):
    """Follows, for one broker, every stream it needs, on a connection of its own."""

    def __init__(self, broker: RedisBroker) -> None:
        super().__init__(name="ssekit-redis-reader", daemon=True)
        self._broker = broker
        self._client = redis.Redis.from_url(
            broker.url, socket_keepalive=True, client_name="ssekit-reader"
        )
        #: Topics whose key cannot be read as a stream (WRONGTYPE): left out until then.
        self._parked: dict[str, float] = {}
        #: The followed topics that the coming sweeps read, a chunk each.
        self._sweeping: list[str] = []

    def interrupt(self) -> None:
        """Cut the connection under a blocking read (on close), so the reader stops at once."""
        self._client.connection_pool.disconnect()

    def run(self) -> None:
        broker = self._broker
        stopping = broker._closed
        delay = BACKOFF_FIRST
        next_sweep = 0.0
        everything = True  # at start and after Redis was away: sweep every topic at once
        try:
            while not stopping.is_set():
                try:
                    broker._presence.sync(self._client)
                    now = time.monotonic()
                    if now >= next_sweep:
                        next_sweep = now + SWEEP_INTERVAL
                        self._sweep(everything)
                        everything = False
                    else:
                        self._read_topics(())  # just the newly followed ones
                    answer: Any = self._client.xread(
                        broker._blocking_streams(), count=READ_COUNT, block=READ_BLOCK_MS
                    )
                    if answer:
                        pulsed, commands = broker._note(answer)
                        # Topics a close names are read first: their events come before it.
                        self._read_topics(pulsed | broker._commanded_topics(commands))
                        broker._apply_control(commands)
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    if stopping.is_set():
                        return  # close() cut the connection
                    broker._hub.count("reconnects")
                    broker._presence.lost()
                    next_sweep, everything = 0.0, True  # read everything again once back
                    logger.warning("ssekit: Redis unavailable (%s); retrying in %.2f s", exc, delay)
                    if stopping.wait(delay):
                        return
                    delay = min(delay * 2, BACKOFF_MAX)
                    continue
                except redis.RedisError:
                    if stopping.is_set():
                        return
                    # A key of a topic turned into another type, say: leave that topic out a
                    # while and keep serving the others rather than leave them without a reader.
                    broker._hub.count("read_errors")
                    logger.exception("ssekit: reading topics from Redis failed; retrying")
                    next_sweep, everything = 0.0, True
                    if not self._park_unreadable() and stopping.wait(BACKOFF_MAX):
                        return
                    continue
                except Exception:
                    if stopping.is_set():
                        return  # close() cut the connection under the blocking read
                    raise
                delay = BACKOFF_FIRST
        finally:
            self._client.close()

    def _sweep(self, everything: bool) -> None:
        """Read every followed topic, or the next `SWEEP_TOPICS` of them in turn; drop those
        that have no local subscriber left."""
        if everything:
            self._sweeping = []
            self._read_topics(self._broker._following_topics(), sweep=True)
            return
        if not self._sweeping:
            self._sweeping = self._broker._following_topics()
        chunk, self._sweeping = self._sweeping[:SWEEP_TOPICS], self._sweeping[SWEEP_TOPICS:]
        self._read_topics(chunk, sweep=True)

    def _read_topics(self, wanted: Collection[str], *, sweep: bool = False) -> None:
        """Read `wanted` topics (and the newly followed ones) until none has more, and hand
        their entries to the hub."""
        broker = self._broker
        while True:
            streams = broker._topics_to_read(wanted, self._unparked(), sweep=sweep)
            sweep = False
            if not streams:
                return
            answer: Any = self._client.xread(streams, count=READ_COUNT)
            if not answer:
                return
            wanted = broker._deliver(answer, READ_COUNT)
            if not wanted:
                return

    def _unparked(self) -> set[str]:
        """The parked topics whose time out is not over (the others are read again)."""
        now = time.monotonic()
        for topic, until in list(self._parked.items()):
            if until <= now:
                del self._parked[topic]
        return set(self._parked)

    def _park_unreadable(self) -> bool:
        """Find the topics whose key is not a stream and leave them out; True if any was."""
        topics = list(self._broker._following_topics())
        pipe = self._client.pipeline(transaction=False)
        for topic in topics:
            pipe.type(self._broker._key(topic))
        try:
            kinds = pipe.execute()
        except redis.RedisError:
            return False
        until = time.monotonic() + BACKOFF_MAX
        parked = False
        for topic, kind in zip(topics, kinds, strict=True):
            if kind not in _READABLE_TYPES:
                self._parked[topic] = until
                parked = True
        return parked
