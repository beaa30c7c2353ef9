"""Publish numbered events to a `RedisBroker` topic at a steady pace, from a process of its own.

From the tests directory:

    python -m apps.broker_publisher --url redis://127.0.0.1:P/0 --topic T --count N --interval S

Event n (0 <= n < N) has the data `{"n": n}`; the publisher needs nothing but the URL.  A publish
that fails because Redis is gone (killed, restarting) is retried until it succeeds.  Redis may
persist a write and die before it answers, so before publishing event n again the publisher
looks at the stream's newest entry: if it is event n, the write landed and is not repeated.
That check is only sound if nothing retries blindly underneath, so redis-py's own retries of
the broker's connection are turned off here.

What it prints on stdout, one line each, flushed:
    published <n> <id>   event n is in Redis with that id
    done <N> <failures>  every event is published; how many Redis calls failed on the way
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ssekit.broker import RedisBroker

#: How long to wait before trying again while Redis is down.
RETRY_DELAY = 0.05


def say(line: str) -> None:
    print(line, flush=True)


def body_of(n: int) -> bytes:
    """How event n is stored: framed once by the publisher, without its id."""
    return b'data: {"n":%d}\n\n' % n


def newest_entry(client: redis.Redis, key: str) -> tuple[str, list[bytes]] | None:
    """The stream's newest entry (id, field values), or None if the stream is empty."""
    entries: Any = client.xrevrange(key, count=1)  # redis-py's own types are loose
    if not entries:
        return None
    entry_id, fields = entries[0]
    return entry_id.decode(), list(fields.values())


def publish_all(url: str, topic: str, count: int, interval: float) -> int:
    """Publish events 0..count-1, one every `interval` seconds; return the failed calls."""
    broker = RedisBroker(url)
    broker._client.set_retry(Retry(NoBackoff(), 0))  # see the module's docstring
    check = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    key = broker.prefix + topic
    retries = 0
    try:
        next_at = time.monotonic()
        for n in range(count):
            entry_id = None
            unsure = False  # a publish of event n failed: did it land all the same?
            while entry_id is None:
                try:
                    if unsure:
                        newest = newest_entry(check, key)
                        unsure = False
                        if newest is not None and body_of(n) in newest[1]:
                            entry_id = newest[0]  # it landed before Redis went away
                            break
                    entry_id = broker.publish(topic, {"n": n})
                except (redis.ConnectionError, redis.TimeoutError):
                    retries += 1
                    unsure = True
                    time.sleep(RETRY_DELAY)
            say(f"published {n} {entry_id}")
            next_at = max(next_at + interval, time.monotonic())  # no burst after an outage
            time.sleep(max(0.0, next_at - time.monotonic()))
    finally:
        check.close()
        broker.close()
    return retries


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--interval", type=float, default=0.02)
    args = parser.parse_args()
    retries = publish_all(args.url, args.topic, args.count, args.interval)
    say(f"done {args.count} {retries}")


if __name__ == "__main__":
    main()
