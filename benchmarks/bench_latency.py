"""How soon things happen that the tests only check do happen: client, broker and AI latencies.

Run:  python benchmarks/bench_latency.py [--trials N]

Every figure is measured over 127.0.0.1 against the test suite's own servers (`tests/support`):

- client (`ssekit.client`, a hand-written server that answers byte by byte):
  - `close() -> end of iteration`: another thread (or task) calls `close()` while the client is
    blocked reading a stream that sends nothing more, or while it waits for response headers;
  - `first event yielded`: from the start of iteration to the first event, the server sending
    the event's bytes at once and nothing more until the client has it;
  - `reconnect after retry: 400`: from the server closing a stream that said `retry: 400` to
    the next request;
  - `backoff gap`: the wait after each of six connections that fail one after another, with
    `retry_ms=100, max_retry_ms=200` (100 ms, then 200 ms capped, each jittered +-20%);
- broker: `subscriber gone after the client left`, a `MemoryBroker` behind `broker_route`
  (Starlette, uvicorn) and `broker_view` (Flask, werkzeug, heartbeat 0.5 s), from the client
  closing its response to `subscribers(topic)` no longer counting it (looked at every 0.5 ms);
  `events flowing again after Redis restarted`, a `RedisBroker` subscription whose
  `redis-server` is killed (SIGKILL), left down 0.5 s and started again: from the server
  answering PING to the subscription receiving an event published then (skipped without
  `redis-server`);
- AI: `client left -> upstream request closed`, an httpx client reading an endless reply that
  `SSEResponse` serves from `OpenAICompatibleEngine` on the tests' fake OpenAI server.

It is a report: the exit code is 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

from fake_openai import FakeOpenAI  # noqa: E402
from flask import Flask  # noqa: E402
from redis_server import REDIS_SERVER, RedisServer  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import Response  # noqa: E402
from starlette.routing import Route  # noqa: E402
from support.asgi_servers import latency_summary, uvicorn_server  # noqa: E402
from support.raw_sse_server import RawConnection, by_connection, raw_sse_server  # noqa: E402
from support.sse_reader import SSEReader  # noqa: E402
from support.waiting import DEADLINE, wait_until  # noqa: E402
from support.wsgi_servers import werkzeug_server  # noqa: E402

from ssekit import EventParser, to_sse  # noqa: E402
from ssekit.adapters.flask import broker_view  # noqa: E402
from ssekit.adapters.starlette import SSEResponse, broker_route  # noqa: E402
from ssekit.ai import OpenAICompatibleEngine  # noqa: E402
from ssekit.broker import Broker, MemoryBroker, RedisBroker, Subscription  # noqa: E402
from ssekit.client import AsyncEventSource, EventSource  # noqa: E402

READY = b"data: ready\n\n"


def report(name: str, figures: list[float]) -> None:
    print("  " + latency_summary(f"{name:56}", figures))


def _hold(conn: RawConnection) -> None:
    """One event, then nothing until the client leaves."""
    conn.send_head()
    conn.send(READY)
    conn.wait_closed_by_client()


def _iterate(source: EventSource, first: threading.Event, ended: list[float]) -> None:
    for _ in source:
        first.set()
    ended.append(time.monotonic())


def close_blocked_read() -> float:
    """`close()` from another thread while the client waits for more bytes."""
    first = threading.Event()
    ended: list[float] = []
    with raw_sse_server(_hold) as server, EventSource(server.url) as source:
        consumer = threading.Thread(target=_iterate, args=(source, first, ended))
        consumer.start()
        assert first.wait(DEADLINE)
        closed_at = time.monotonic()
        source.close()
        consumer.join(DEADLINE)
    return ended[0] - closed_at


def close_blocked_read_async() -> float:
    """The same with `AsyncEventSource`, `close()` from another task."""

    async def main(url: str) -> float:
        first = asyncio.Event()

        async def consume(source: AsyncEventSource) -> None:
            async for _ in source:
                first.set()

        async with AsyncEventSource(url) as source:
            task = asyncio.create_task(consume(source))
            await asyncio.wait_for(first.wait(), DEADLINE)
            closed_at = time.monotonic()
            source.close()
            await asyncio.wait_for(task, DEADLINE)
            return time.monotonic() - closed_at

    with raw_sse_server(_hold) as server:
        return asyncio.run(main(server.url))


def close_waiting_for_headers() -> float:
    """`close()` from another thread while the server has not answered yet."""
    gate, first = threading.Event(), threading.Event()
    ended: list[float] = []

    def handler(conn: RawConnection) -> None:
        conn.wait(gate)

    try:
        with (
            raw_sse_server(handler) as server,
            EventSource(server.url) as source,
        ):
            consumer = threading.Thread(target=_iterate, args=(source, first, ended))
            consumer.start()
            server.wait_for_connections(1)
            closed_at = time.monotonic()
            source.close()
            consumer.join(DEADLINE)
    finally:
        gate.set()
    return ended[0] - closed_at


def first_event() -> float:
    """From the start of iteration to the first event, while the server sends nothing more."""
    gate = threading.Event()

    def handler(conn: RawConnection) -> None:
        conn.send_head()
        conn.send(READY)
        conn.wait(gate)

    with raw_sse_server(by_connection(handler)) as server, EventSource(server.url) as source:
        started = time.monotonic()
        next(iter(source))
        latency = time.monotonic() - started
        gate.set()
    return latency


def reconnect_after_retry() -> float:
    """From the end of a stream that said `retry: 400` to the next request."""
    closed: list[float] = []

    def first(conn: RawConnection) -> None:
        conn.send_head()
        conn.send(b"retry: 400\ndata: a\n\n")
        closed.append(time.monotonic())

    def second(conn: RawConnection) -> None:
        conn.send_head()
        conn.send(b"data: b\n\n")

    with raw_sse_server(by_connection(first, second)) as server:
        with EventSource(server.url, retry_ms=5000) as source:
            list(source)
        return server.requests_at[1] - closed[0]


def backoff_gaps() -> list[float]:
    """The waits between six connections that each close without an answer."""

    def refuse(conn: RawConnection) -> None:
        """Read the request, answer nothing, close."""

    with raw_sse_server(by_connection(*[refuse] * 6)) as server:
        with EventSource(server.url, retry_ms=100, max_retry_ms=200) as source:
            list(source)
        return [b - a for a, b in itertools.pairwise(server.requests_at)]


@contextlib.contextmanager
def broker_server(framework: str, broker: Broker) -> Iterator[str]:
    """`broker` at `/events/<topic>` through `framework`'s helper; yields the base URL."""
    if framework == "starlette":
        app = Starlette(routes=[broker_route("/events/{topic:path}", broker, heartbeat=0.5)])
        with uvicorn_server(app) as url:
            yield url
    else:
        flask_app = Flask(__name__)
        view = broker_view(broker, heartbeat=0.5)
        flask_app.add_url_rule("/events/<path:topic>", view_func=view)
        with werkzeug_server(flask_app) as url:
            yield url


def subscriber_gone(framework: str, trials: int) -> list[float]:
    """From a client closing its stream to the broker no longer counting its subscription."""
    broker = MemoryBroker()
    with broker_server(framework, broker) as url, httpx.Client(base_url=url) as http:
        figures = [_subscriber_gone_once(broker, http) for _ in range(trials)]
    broker.close()
    return figures


def _subscriber_gone_once(broker: Broker, http: httpx.Client) -> float:
    topic = f"bench/{uuid.uuid4().hex}"
    with http.stream("GET", f"/events/{topic}") as response:
        wait_until(lambda: len(broker.subscribers(topic)) == 1, "subscribed")
        broker.publish(topic, "hello")
        SSEReader(response).events(1)
        response.close()
        return seconds_until(lambda: not broker.subscribers(topic))


def _count_events(subscription: Subscription, arrived: list[float]) -> None:
    """Read `subscription`'s stream until it ends, noting when each event arrives."""
    parser = EventParser()
    for chunk in to_sse(subscription, heartbeat=None):
        arrived.extend(time.monotonic() for _ in parser.feed(chunk))


def redis_restart(trials: int) -> list[float]:
    """From a killed `redis-server` answering PING again to an event published then reaching a
    subscription that was open all along."""
    with tempfile.TemporaryDirectory() as directory:
        server = RedisServer(Path(directory))
        server.start()
        broker = RedisBroker(server.url)
        try:
            return [_redis_restart_once(server, broker) for _ in range(trials)]
        finally:
            broker.close()
            server.stop()


def _redis_restart_once(server: RedisServer, broker: RedisBroker) -> float:
    topic = f"bench/{uuid.uuid4().hex}"
    subscription = broker.subscribe(topic)
    arrived: list[float] = []
    reader = threading.Thread(target=_count_events, args=(subscription, arrived))
    reader.start()
    try:
        broker.publish(topic, "before")
        seconds_until(lambda: len(arrived) == 1)  # the reader is delivering
        server.kill()
        time.sleep(0.5)  # Redis stays down this long: not a wait for anything
        server.start()
        started = time.monotonic()
        broker.publish(topic, "after")
        seconds_until(lambda: len(arrived) == 2)
        return arrived[1] - started
    finally:
        subscription.end()  # the reader's stream ends, which unsubscribes
        reader.join(DEADLINE)


def upstream_closed(trials: int) -> list[float]:
    """From an httpx client leaving an endless AI reply to the fake upstream seeing its
    request closed."""
    fake = FakeOpenAI()
    figures: list[float] = []
    with uvicorn_server(fake.app) as fake_url:
        engine = OpenAICompatibleEngine(
            f"{fake_url}/v1", api_key="sk-test", model="endless", timeout=10
        )

        async def chat(request: Request) -> Response:
            return SSEResponse(engine.stream([{"role": "user", "content": "go"}]), end="[DONE]")

        app = Starlette(routes=[Route("/chat", chat)])
        with uvicorn_server(app) as url, httpx.Client(timeout=DEADLINE) as client:
            for _ in range(trials):
                with client.stream("GET", f"{url}/chat") as response:
                    SSEReader(response).events(4)
                    call = fake.last_call()
                    left_at = time.monotonic()
                    response.close()
                assert call.disconnected.wait(DEADLINE), "the upstream request was never closed"
                assert call.disconnected_at is not None
                figures.append(call.disconnected_at - left_at)
    return figures


def seconds_until(condition: Callable[[], bool]) -> float:
    """How long until `condition` holds, looked at every 0.5 ms (`wait_until`'s 10 ms would
    round the figure); fails after `DEADLINE`."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < DEADLINE, "not within the deadline"
        time.sleep(0.0005)
    return time.monotonic() - started


def repeat(measure: Callable[[], float], trials: int) -> list[float]:
    return [measure() for _ in range(trials)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10, help="trials per figure (default 10)")
    args = parser.parse_args()
    trials = args.trials
    # uvicorn logs each client that leaves mid-stream.
    logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    logging.getLogger("ssekit").setLevel(logging.ERROR)  # no line per Redis retry
    print(f"{trials} trials per figure")
    print("\nclient (hand-written server)")
    report("close() -> end of iteration, blocked read", repeat(close_blocked_read, trials))
    report(
        "close() -> end of async iteration, blocked read", repeat(close_blocked_read_async, trials)
    )
    report(
        "close() -> end of iteration, waiting for headers",
        repeat(close_waiting_for_headers, trials),
    )
    report("first event yielded after iteration started", repeat(first_event, trials))
    report("reconnect after retry: 400", repeat(reconnect_after_retry, trials))
    gaps = [backoff_gaps() for _ in range(max(1, trials // 3))]
    for attempt, column in enumerate(zip(*gaps, strict=True), start=2):
        report(f"backoff gap before attempt {attempt} (retry 100, cap 200)", list(column))
    print("\nbroker")
    for framework in ("starlette", "flask"):
        report(
            f"{framework}: subscriber gone after the client left",
            subscriber_gone(framework, trials),
        )
    if REDIS_SERVER is None:
        print("  events flowing again after Redis restarted: skipped, no redis-server")
    else:
        report("RedisBroker: events flowing again after Redis restarted", redis_restart(trials))
    print("\nAI (OpenAICompatibleEngine on the fake upstream, SSEResponse under uvicorn)")
    report("client left -> upstream request closed", upstream_closed(trials))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
