"""`RedisBroker`: topics as Redis Streams, shared by every process and host that has the URL.

Publishing is one `XADD` (trimmed with `MAXLEN ~`), whose entry id becomes the SSE id; the event
is framed once, by the publisher, and stored framed.  Each process runs one reader thread per
topic it serves (a blocking `XREAD`), fanned out to its local subscribers, rather than one Redis
connection per client.  A resume replays from the stream (`XRANGE` after the id).  When Redis
goes away the reader reconnects with backoff and goes on from the last id it delivered.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from typing import Any

from ssekit._frame import Encoded, frame_body, with_id
from ssekit._serialize import Serializer
from ssekit.broker._hub import (
    BrokerUnavailable,
    Hub,
    HubBroker,
    SlowPolicy,
    StreamId,
    Subscription,
    check_topic,
    format_id,
    parse_id,
    topic_names,
)

try:
    import redis
except ImportError as exc:  # pragma: no cover - depends on the extra
    raise ImportError("RedisBroker needs the redis package: pip install 'ssekit[redis]'") from exc

__all__ = ["DEFAULT_PREFIX", "RedisBroker"]

#: Where topics' streams live in Redis: a namespace of their own (`RedisMemory` uses
#: "ssekit:memory:"), so that no topic name can make a key of anything else.
DEFAULT_PREFIX = "ssekit:topic:"
#: The namespace `RedisMemory` keeps chats in by default: never a broker's.
_MEMORY_PREFIX = "ssekit:memory:"

logger = logging.getLogger("ssekit")

#: How long one blocking XREAD waits before the reader checks whether it is still needed.
READ_BLOCK_MS = 1000
#: Reconnection backoff after Redis went away: first and largest delay, in seconds.
BACKOFF_FIRST = 0.05
BACKOFF_MAX = 2.0
_BODY = b"b"  # the stream entry's single field: the framed event without its id


class RedisBroker(HubBroker):
    """Topics kept in Redis Streams (Redis 6.2+ or Valkey), for many processes and hosts.

    `max_length` bounds each topic's stream (approximately, as `MAXLEN ~` does); a resume from
    an id trimmed away gets a `reset` event first.  A topic's stream is the key `prefix + topic`;
    the default prefix is a namespace of its own, apart from `RedisMemory`'s keys.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = DEFAULT_PREFIX,
        max_length: int = 10_000,
        queue_size: int = 256,
        max_subscribers_per_topic: int | None = None,
        serializer: Serializer | None = None,
    ) -> None:
        if not prefix or _MEMORY_PREFIX.startswith(prefix) or prefix.startswith(_MEMORY_PREFIX):
            raise ValueError(
                f"prefix {prefix!r} would share keys with RedisMemory's {_MEMORY_PREFIX!r}: "
                f"use a namespace of its own, such as the default {DEFAULT_PREFIX!r}."
            )
        self.url = url
        self.prefix = prefix
        self.max_length = max_length
        self._serializer = serializer
        self._client = redis.Redis.from_url(url)
        self._hub = Hub(
            history_size=0,  # Redis keeps the history
            history_seconds=None,
            queue_size=queue_size,
            max_subscribers_per_topic=max_subscribers_per_topic,
        )
        self._readers: dict[str, _Reader] = {}
        self._readers_lock = threading.Lock()
        self._closed = threading.Event()

    def _key(self, topic: str) -> str:
        return self.prefix + topic

    # -- publishing ------------------------------------------------------------------------------

    def publish(self, topic: str, chunk: Any, *, event: str | None = None) -> str:
        """Append the event to the topic's stream; return its id (the stream entry id).

        `event` sets the event's type (`""` or None: `message`, written as no `event:` line).
        """
        self._hub.ensure_open()
        check_topic(topic)
        body = frame_body(chunk, event, self._serializer)
        entry_id = self._client.xadd(
            self._key(topic), {_BODY: body}, maxlen=self.max_length, approximate=True
        )
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    async def apublish(self, topic: str, chunk: Any, *, event: str | None = None) -> str:
        """`publish()` for async code (the Redis round trip runs in a thread)."""
        return await asyncio.to_thread(self.publish, topic, chunk, event=event)

    # -- subscribing ----------------------------------------------------------------------------

    def subscribe(
        self,
        topics: str | Sequence[str],
        last_event_id: str | None = None,
        *,
        policy: SlowPolicy = "disconnect",
        queue_size: int | None = None,
    ) -> Subscription:
        """A source for `to_sse()`: events of `topics` after `last_event_id` (exclusive), then live.

        An id that the stream no longer holds (trimmed) or never held, or that is not an id at all,
        gives a `reset` event first; a client's id never makes this raise.
        """
        self._hub.ensure_open()
        try:
            return self._subscribe(topics, last_event_id, policy=policy, queue_size=queue_size)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise BrokerUnavailable(f"Redis at {self.url} cannot be reached: {exc}") from exc

    def _subscribe(
        self,
        topics: str | Sequence[str],
        last_event_id: str | None,
        *,
        policy: SlowPolicy,
        queue_size: int | None,
    ) -> Subscription:
        names = topic_names(topics)
        # Under the readers' lock, a reader cannot decide it is unneeded between our check and
        # our subscription; a new reader starts from the stream's end as it was *before* the
        # replay is read, so nothing falls between the two (the overlap is deduplicated).
        with self._readers_lock:
            readers = {name: self._readers.get(name) for name in names}
            new_readers = [
                self._new_reader(name)
                for name, reader in readers.items()
                if reader is None or not reader.is_alive()
            ]
            for reader in new_readers:
                readers[reader.topic] = reader
            # The newest id each reader knows is the topic's, for this process, until it delivers
            # more: a `reset` carries it, and a resume from it has nothing to replay.
            newest = {}
            for name, serving in readers.items():
                last = parse_id(serving.last) if serving else None
                if last is not None and last != (0, 0):
                    newest[name] = last
            subscription = self._hub.subscribe(
                names,
                last_event_id,
                policy=policy,
                queue_size=queue_size,
                replay=self._replay,
                newest=newest,
            )
            for reader in new_readers:
                self._readers[reader.topic] = reader
                reader.start()
        return subscription

    def _replay(self, topic: str, after: StreamId) -> list[tuple[StreamId, Encoded]] | None:
        """The entries after `after`, or None if `after` is not in the stream (trimmed/unknown)."""
        key = self._key(topic)
        text_id = format_id(after)
        if not self._client.xrange(key, min=text_id, max=text_id, count=1):
            return None
        entries: Any = self._client.xrange(key, min="(" + text_id, max="+")
        return [_entry(entry_id, fields) for entry_id, fields in entries]

    def _new_reader(self, topic: str) -> _Reader:
        return _Reader(self, topic, self._last_generated_id(topic))

    def _reader_done(self, reader: _Reader) -> bool:
        """A reader asks to stop for want of subscribers; True if it may (under the lock)."""
        with self._readers_lock:
            if self._hub.subscribers(reader.topic) and not self._closed.is_set():
                return False
            if self._readers.get(reader.topic) is reader:
                del self._readers[reader.topic]
            return True

    def _last_generated_id(self, topic: str) -> str:
        try:
            info: Any = self._client.xinfo_stream(self._key(topic))
        except redis.ResponseError:  # no such stream yet
            return "0-0"
        last = info.get("last-generated-id") or info.get(b"last-generated-id") or b"0-0"
        return last.decode() if isinstance(last, bytes) else str(last)

    def close(self) -> None:
        """End every subscription (with a `retry:` hint), stop the readers, close the connection.

        Publishing and subscribing raise `BrokerClosed` afterwards.
        """
        if self._closed.is_set():
            return
        self._closed.set()
        self._hub.close()
        with self._readers_lock:
            readers = list(self._readers.values())
            self._readers.clear()
        for reader in readers:
            reader.interrupt()
        for reader in readers:
            reader.join(READ_BLOCK_MS / 1000 + 2)
        self._client.close()

    async def aclose(self) -> None:
        """`close()` for async code (joining the readers runs in a thread)."""
        await asyncio.to_thread(self.close)


def _entry(entry_id: bytes | str, fields: dict[bytes, bytes]) -> tuple[StreamId, Encoded]:
    text_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    parsed = parse_id(text_id)
    assert parsed is not None
    return parsed, with_id(fields[_BODY], text_id)


class _Reader(threading.Thread):
    """Follows one topic's stream for this process and hands entries to the hub."""

    def __init__(self, broker: RedisBroker, topic: str, start: str) -> None:
        super().__init__(name=f"ssekit-redis-{topic}", daemon=True)
        self._broker = broker
        self.topic = topic
        #: The newest id this reader has seen of its topic (its stream's end when it started).
        self.last = start
        self._client = redis.Redis.from_url(broker.url, socket_keepalive=True)

    def interrupt(self) -> None:
        """Cut the connection under a blocking read (on close), so the reader stops at once."""
        self._client.connection_pool.disconnect()

    def run(self) -> None:
        broker, key = self._broker, self._broker._key(self.topic)
        delay = BACKOFF_FIRST
        try:
            while not broker._closed.is_set():
                try:
                    answer: Any = self._client.xread({key: self.last}, block=READ_BLOCK_MS)
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    if broker._closed.is_set():
                        return  # close() cut the connection
                    broker._hub.count("reconnects")
                    logger.warning("ssekit: Redis unavailable (%s); retrying in %.2f s", exc, delay)
                    if broker._closed.wait(delay):
                        return
                    delay = min(delay * 2, BACKOFF_MAX)
                    continue
                except redis.RedisError:
                    if broker._closed.is_set():
                        return
                    # Anything else (a stream key turned into another type, say): keep serving
                    # the topic's subscribers rather than leave them silently without a reader.
                    broker._hub.count("read_errors")
                    logger.exception("ssekit: reading %s from Redis failed; retrying", key)
                    if broker._closed.wait(BACKOFF_MAX):
                        return
                    continue
                except Exception:
                    if broker._closed.is_set():
                        return  # close() cut the connection under the blocking read
                    raise
                delay = BACKOFF_FIRST
                for _stream, entries in answer or ():
                    for entry_id, fields in entries:
                        id_, data = _entry(entry_id, fields)
                        broker._hub.deliver(self.topic, id_, data)
                        self.last = format_id(id_)
                if not answer and broker._reader_done(self):
                    return
        finally:
            self._client.close()
