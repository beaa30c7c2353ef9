"""The one reader thread of a `RedisBroker`: every local topic's stream through one `XREAD`.

Each turn it reads, with one blocking `XREAD` on one connection, the streams of all topics that
have a subscriber in this process (each from the last id it delivered), the broker's control
stream (`close_topic` from any process) and this broker's wake stream (a subscription to a topic
not yet followed appends to it, so the read starts again with the new topic at once; appending
cannot race with the read the way interrupting it could).  Topics without local subscribers are
dropped from the next read: they cost nothing.  When Redis goes away it reconnects with capped
backoff and goes on from the last id delivered per topic.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import redis

if TYPE_CHECKING:
    from ssekit.broker._redis import RedisBroker

__all__ = ["BACKOFF_FIRST", "BACKOFF_MAX", "READ_BLOCK_MS", "READ_COUNT", "Reader"]

logger = logging.getLogger("ssekit")

#: How long one blocking XREAD waits before the reader looks at its topics again (ms).
READ_BLOCK_MS = 1000
#: The most entries one XREAD takes from each stream.
READ_COUNT = 500
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

    def interrupt(self) -> None:
        """Cut the connection under a blocking read (on close), so the reader stops at once."""
        self._client.connection_pool.disconnect()

    def run(self) -> None:
        broker = self._broker
        stopping = broker._closed
        delay = BACKOFF_FIRST
        try:
            while not stopping.is_set():
                try:
                    broker._presence.sync(self._client)
                    streams = broker._streams_to_read(self._unparked())
                    answer: Any = self._client.xread(streams, count=READ_COUNT, block=READ_BLOCK_MS)
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    if stopping.is_set():
                        return  # close() cut the connection
                    broker._hub.count("reconnects")
                    broker._presence.lost()
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
                    if not self._park_unreadable() and stopping.wait(BACKOFF_MAX):
                        return
                    continue
                except Exception:
                    if stopping.is_set():
                        return  # close() cut the connection under the blocking read
                    raise
                delay = BACKOFF_FIRST
                if answer:
                    broker._dispatch(answer)
        finally:
            self._client.close()

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
