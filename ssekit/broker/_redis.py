"""`RedisBroker`: topics as Redis Streams, shared by every process and host that has the URL.

Publishing is one `XADD` (trimmed with `MAXLEN ~`), whose entry id becomes the SSE id; the event
is framed once, by the publisher, and stored framed.  Each broker runs one reader thread on one
connection (`_redis_reader`), which follows every topic that has a subscriber in this process
with a single blocking `XREAD` and fans the entries out to the local subscribers; publishing and
resuming use a small shared pool.  So a process holds two threads' worth of Redis connections
whatever its number of topics.  A resume replays from the stream (`XRANGE` after the id); a
subscription to several topics gets composite ids (`_composite`).  `close_topic` and
`subscriber_count` reach every process of the prefix (`_redis_control`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections.abc import Collection, Sequence
from typing import Any

from ssekit._event import Event
from ssekit._frame import Encoded, frame_body, with_id
from ssekit._serialize import Serializer
from ssekit.broker._composite import NO_POSITION, compose_id, parse_composite
from ssekit.broker._hub import (
    BrokerUnavailable,
    Hub,
    HubBroker,
    SlowPolicy,
    StreamId,
    Subscription,
    check_topic,
    farewell_bytes,
    format_id,
    parse_id,
    topic_names,
)
from ssekit.broker._redis_control import (
    CONTROL_MAX_LENGTH,
    NAMESPACE,
    PULSE_FIELD,
    PULSE_MAX_LENGTH,
    Presence,
    close_command,
    control_key,
    ending_of,
    pulse_key,
    wake_key,
)
from ssekit.broker._redis_reader import READ_BLOCK_MS, Reader

try:
    import redis
except ImportError as exc:  # pragma: no cover - depends on the extra
    raise ImportError("RedisBroker needs the redis package: pip install 'ssekit[redis]'") from exc

__all__ = ["DEFAULT_PREFIX", "RedisBroker"]

#: Where topics' streams live in Redis: a namespace of their own (`RedisMemory` uses
#: "ssekit:memory:", the brokers' control keys "ssekit:broker:"), so that no topic name can
#: make a key of anything else.
DEFAULT_PREFIX = "ssekit:topic:"
#: Namespaces a prefix must stay apart from: `RedisMemory`'s chats, the brokers' own keys.
_RESERVED_PREFIXES = ("ssekit:memory:", NAMESPACE)

logger = logging.getLogger("ssekit")

_BODY = b"b"  # the stream entry's single field: the framed event without its id
#: The wake stream keeps one entry, and lives this long after the last subscription (ms).
_WAKE_TTL_MS = 60_000


class RedisBroker(HubBroker):
    """Topics kept in Redis Streams (Redis 6.2+ or Valkey), for many processes and hosts.

    `max_length` bounds each topic's stream (approximately, as `MAXLEN ~` does); a resume from
    an id trimmed away gets a `reset` event first.  A topic's stream is the key `prefix + topic`;
    the default prefix is a namespace of its own, apart from `RedisMemory`'s keys.  One reader
    thread and connection serve all of this broker's topics; `max_connections` bounds the pool
    that publishing, resuming and control share.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = DEFAULT_PREFIX,
        max_length: int = 10_000,
        queue_size: int = 256,
        max_subscribers_per_topic: int | None = None,
        max_connections: int = 8,
        serializer: Serializer | None = None,
    ) -> None:
        for reserved in _RESERVED_PREFIXES:
            if not prefix or reserved.startswith(prefix) or prefix.startswith(reserved):
                raise ValueError(
                    f"prefix {prefix!r} would share keys with {reserved!r}: use a namespace "
                    f"of its own, such as the default {DEFAULT_PREFIX!r}."
                )
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, not {max_connections!r}.")
        self.url = url
        self.prefix = prefix
        self.max_length = max_length
        self._serializer = serializer
        self._client = redis.Redis(
            connection_pool=_BoundedPool.from_url(
                url, max_connections=max_connections, client_name="ssekit-broker"
            )
        )
        self._hub = Hub(
            history_size=0,  # Redis keeps the history
            history_seconds=None,
            queue_size=queue_size,
            max_subscribers_per_topic=max_subscribers_per_topic,
        )
        self._id = uuid.uuid4().hex
        self._control_key = control_key(prefix)
        self._wake_key = wake_key(self._id)
        #: Under `_lock`: each followed topic's newest id delivered (or its stream's end when it
        #: was first followed), and where the reader is in the control and wake streams.
        self._lock = threading.Lock()
        self._following: dict[str, StreamId] = {}
        self._pulse_key = pulse_key(prefix)
        #: Newly followed topics, which the reader reads once before relying on pulses.
        self._unread: set[str] = set()
        self._control_last = self._wake_last = self._pulse_last = "0-0"
        self._reader: Reader | None = None
        self._presence = Presence(self._id, prefix, self._hub, self._following_topics)
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
        pipe = self._client.pipeline(transaction=False)  # one round trip
        pipe.xadd(self._key(topic), {_BODY: body}, maxlen=self.max_length, approximate=True)
        pipe.xadd(self._pulse_key, {PULSE_FIELD: topic}, maxlen=PULSE_MAX_LENGTH, approximate=True)
        return _text(pipe.execute()[0])

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
        gives a `reset` event first; a client's id never makes this raise.  The events of a
        subscription to several topics carry composite ids, `<topic>=<ms>-<n>&...` (one pair
        per topic, names percent-encoded), from which a resume to the same topics is exact.
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
        several = len(set(names)) > 1
        positions = None
        if several and last_event_id and isinstance(last_event_id, str):
            positions = parse_composite(last_event_id, names) or {}  # {}: a reset
        started = followed = False
        while True:
            with self._lock:
                self._hub.ensure_open()
                started = self._ensure_reader() or started
                new = [name for name in dict.fromkeys(names) if name not in self._following]
            # A topic followed anew starts from its stream's end as it was *before* the replay
            # is read, so nothing falls between the two (the overlap is deduplicated).  The
            # round trip is made outside the lock, which the reader needs to deliver.
            ends = self._stream_ends([self._key(name) for name in new]) if new else []
            # Under the lock, the reader cannot drop a topic between our check and our
            # subscription (it drops topics without subscribers).
            with self._lock:
                self._hub.ensure_open()
                for name, end in zip(new, ends, strict=True):
                    if name not in self._following:  # else followed meanwhile: as good an id
                        self._following[name] = end
                        self._unread.add(name)
                        followed = True
                if any(name not in self._following for name in names):
                    continue  # dropped by the reader meanwhile: look again
                # The newest id the reader knows is the topic's, for this process, until it
                # delivers more: a `reset` carries it, and a resume from it replays nothing.
                newest = {n: self._following[n] for n in names if self._following[n] != NO_POSITION}
                subscription = self._hub.subscribe(
                    names,
                    last_event_id,
                    policy=policy,
                    queue_size=queue_size,
                    replay=self._replay_composed if several else self._replay,
                    newest=newest,
                    positions=positions,
                    compose=compose_id if several else None,
                )
                break
        self._presence.touch()
        if followed and not started:
            self._wake()
        return subscription

    def _ensure_reader(self) -> bool:
        """Start the reader if it is not running (under `_lock`); True if it was started now."""
        if self._reader is not None and self._reader.is_alive():
            return False
        if self._reader is not None:
            logger.error("ssekit: the Redis reader stopped unexpectedly; starting another")
        control, pulse = self._stream_ends([self._control_key, self._pulse_key])
        self._control_last, self._pulse_last = format_id(control), format_id(pulse)
        self._wake_last = self._wake()
        self._reader = Reader(self)
        self._reader.start()
        return True

    def _wake(self) -> str:
        """Append to the wake stream, so the reader reads again with its new topics at once."""
        pipe = self._client.pipeline(transaction=False)
        pipe.xadd(self._wake_key, {b"w": b""}, maxlen=1)
        pipe.pexpire(self._wake_key, _WAKE_TTL_MS)
        entry_id = pipe.execute()[0]
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    def _stream_ends(self, keys: list[str]) -> list[StreamId]:
        """The last id each stream generated (0-0 if there is no such stream, or no stream)."""
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.xinfo_stream(key)
        ends = []
        for info in pipe.execute(raise_on_error=False):
            if isinstance(info, redis.ConnectionError | redis.TimeoutError):
                raise info
            last: Any = b"0-0"
            if isinstance(info, dict):
                last = info.get("last-generated-id") or info.get(b"last-generated-id") or last
            ends.append(parse_id(_text(last)) or NO_POSITION)
        return ends

    def _replay(self, topic: str, after: StreamId) -> list[tuple[StreamId, Encoded]] | None:
        """The entries after `after`, or None if `after` is not in the stream (trimmed/unknown)."""
        key = self._key(topic)
        text_id = format_id(after)
        if not self._client.xrange(key, min=text_id, max=text_id, count=1):
            return None
        entries: Any = self._client.xrange(key, min="(" + text_id, max="+")
        return [_entry(entry_id, fields) for entry_id, fields in entries]

    def _replay_composed(
        self, topic: str, after: StreamId
    ) -> list[tuple[StreamId, Encoded]] | None:
        """`_replay()` for a composite id, whose `0-0` (a topic the client had nothing of)
        replays the whole stream, if nothing was ever trimmed from it."""
        key = self._key(topic)
        if after == NO_POSITION:
            try:
                info: Any = self._client.xinfo_stream(key)
            except redis.ResponseError:
                return []  # no such stream: nothing was published yet
            trimmed = info.get("max-deleted-entry-id") or info.get(b"max-deleted-entry-id")
            if trimmed not in (None, "0-0", b"0-0"):
                return None
            entries: Any = self._client.xrange(key, min="-", max="+")
            return [_entry(entry_id, fields) for entry_id, fields in entries]
        return self._replay(topic, after)

    # -- what the reader calls ---------------------------------------------------------------------

    def _following_topics(self) -> list[str]:
        with self._lock:
            return list(self._following)

    def _blocking_streams(self) -> dict[Any, Any]:
        """What the reader blocks on, each with the id to read after: control, wake, pulses."""
        with self._lock:
            return {
                self._control_key: self._control_last,
                self._wake_key: self._wake_last,
                self._pulse_key: self._pulse_last,
            }

    def _topics_to_read(
        self, wanted: Collection[str], parked: Collection[str], *, sweep: bool = False
    ) -> Any:
        """The topic streams to read now, each with the id to read after: `wanted` and the newly
        followed topics, if they have a local subscriber.  On a `sweep`, those of `wanted` that
        have none are dropped now: they cost nothing until subscribed again."""
        with self._lock:
            following = self._following
            if sweep:
                present = [name for name in wanted if name in following]
                for topic, count in self._hub.subscriber_counts(present).items():
                    if not count:
                        del following[topic]
            names = {*wanted, *self._unread}
            self._unread.clear()
            return {
                self.prefix + name: format_id(following[name])
                for name in names
                if name in following and name not in parked
            }

    def _note(self, answer: Any) -> tuple[set[str], list[Any]]:
        """Take in what the blocking read returned: the topics pulsed, the control commands."""
        pulsed: set[str] = set()
        commands: list[Any] = []
        with self._lock:
            for raw_key, entries in answer:
                if not entries:
                    continue
                key, newest = _text(raw_key), _text(entries[-1][0])
                if key == self._pulse_key:
                    self._pulse_last = newest
                    for _id, fields in entries:
                        with contextlib.suppress(KeyError, UnicodeDecodeError):
                            pulsed.add(fields[PULSE_FIELD].decode())
                elif key == self._control_key:
                    self._control_last = newest
                    commands += entries
                elif key == self._wake_key:
                    self._wake_last = newest
        return pulsed, commands

    def _deliver(self, answer: Any, count: int) -> set[str]:
        """Hand the entries read to the hub, in order per topic; return the topics that may have
        more (a full `count` was read)."""
        more = set()
        hub = self._hub
        for raw_key, entries in answer:
            if not entries:
                continue
            topic = _text(raw_key)[len(self.prefix) :]
            last = None
            for entry_id, fields in entries:
                last, data = _entry(entry_id, fields)
                hub.deliver(topic, last, data)
            if len(entries) >= count:
                more.add(topic)
            with self._lock:
                known = self._following.get(topic)
                if last is not None and known is not None and last > known:
                    self._following[topic] = last
        return more

    def _commanded_topics(self, commands: list[Any]) -> set[str]:
        """The topics that control commands (from other brokers) name."""
        own = self._id.encode()
        return {command[0] for _, fields in commands if (command := ending_of(fields, own))}

    def _apply_control(self, commands: list[Any]) -> None:
        own = self._id.encode()
        for _entry_id, fields in commands:
            command = ending_of(fields, own)
            if command is not None:
                self._hub.end_topic(*command)

    # -- control across processes ----------------------------------------------------------------

    def close_topic(self, topic: str, *, farewell: str | Event | None = None) -> int:
        """End every subscription of `topic`, in this process and in every other one using this
        Redis and prefix (each ends its own as soon as its reader sees the command, in
        milliseconds), with `farewell` last.  Returns how many were ended here.

        Raises `BrokerUnavailable` (after ending the local ones) if Redis cannot be reached.
        """
        check_topic(topic)
        ending = farewell_bytes(farewell)
        ended = self._hub.end_topic(topic, ending)
        try:
            self._client.xadd(
                self._control_key,
                close_command(topic, ending, self._id),  # type: ignore[arg-type]
                maxlen=CONTROL_MAX_LENGTH,
                approximate=True,
            )
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise BrokerUnavailable(f"Redis at {self.url} cannot be reached: {exc}") from exc
        return ended

    def subscriber_count(self, topic: str) -> int:
        """How many subscriptions `topic` has in every process using this Redis and prefix:
        exact for this process, as of about a second ago for the others (a process that died
        without closing its broker counts until its presence expires, 30 s)."""
        local = super().subscriber_count(topic)
        try:
            return self._presence.total(self._client, topic, local)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise BrokerUnavailable(f"Redis at {self.url} cannot be reached: {exc}") from exc

    # -- closing ---------------------------------------------------------------------------------

    def close(self) -> None:
        """End every subscription (with a `retry:` hint), stop the reader, close the connections.

        Publishing and subscribing raise `BrokerClosed` afterwards.
        """
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
            reader = self._reader
        self._hub.close()
        if reader is not None:
            reader.interrupt()
            reader.join(READ_BLOCK_MS / 1000 + 2)
            with contextlib.suppress(redis.RedisError):  # else it expires by itself
                self._presence.leave(self._client)
        self._client.close()
        self._client.connection_pool.disconnect()

    async def aclose(self) -> None:
        """`close()` for async code (joining the reader runs in a thread)."""
        await asyncio.to_thread(self.close)


class _BoundedPool(redis.BlockingConnectionPool):
    """At most `max_connections`, a caller waiting for one to be free (redis-py's pool), with
    a `set_retry()` that works on it (redis-py's looks for the lists of the unbounded pool)."""

    def set_retry(self, retry: Any) -> None:
        self.connection_kwargs["retry"] = retry
        for connection in list(self._connections):
            connection.retry = retry


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entry(entry_id: bytes | str, fields: dict[bytes, bytes]) -> tuple[StreamId, Encoded]:
    text_id = _text(entry_id)
    parsed = parse_id(text_id)
    assert parsed is not None
    return parsed, with_id(fields[_BODY], text_id)
