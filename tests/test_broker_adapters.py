"""`broker_route` (Starlette, under uvicorn) and `broker_view` (Flask, under werkzeug's server).

Each test serves a broker with a real server on 127.0.0.1, in a thread, and talks to it with
httpx (or, for a client that stops reading, a raw socket with a small receive buffer).  Most
tests run under both frameworks with a `MemoryBroker`; a few use a `RedisBroker` on a
`redis-server` of the tests' own.
"""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from flask import Flask
from redis_server import RedisServer, running_redis
from starlette.applications import Starlette
from support.asgi_servers import uvicorn_server
from support.sse_reader import SSEReader
from support.waiting import free_port, wait_until
from support.wsgi_servers import SSE_HEADERS, werkzeug_server

from ssekit import EventParser
from ssekit.adapters.flask import broker_view
from ssekit.adapters.starlette import broker_route
from ssekit.broker import RESET_EVENT, Broker, MemoryBroker, RedisBroker, Subscription

pytestmark = pytest.mark.timeout(60)

FRAMEWORKS = ("starlette", "flask")
#: The streams' heartbeat: werkzeug learns that a client left at its next write.
HEARTBEAT = 0.2
#: How long a test waits for something that takes far less.
DEADLINE = 10.0
#: A client that stops reading: its receive buffer (the kernel doubles it), the size of each
#: event published to it, and how many events at most before the server must have given up.
STALLED_RCVBUF = 4096
BIG_EVENT = 64 * 1024
#: The queue of each subscription in those tests.
QUEUE_SIZE = 16
MAX_BIG_EVENTS = 1000


@contextlib.contextmanager
def serve(framework: str, broker: Broker, **options: Any) -> Iterator[str]:
    """Serve `broker` at `/events/<topic>` with `framework`'s helper; yield the base URL."""
    options.setdefault("heartbeat", HEARTBEAT)
    if framework == "starlette":
        app = Starlette(routes=[broker_route("/events/{topic:path}", broker, **options)])
        with uvicorn_server(app) as url:
            yield url
    else:
        flask_app = Flask(__name__)
        flask_app.add_url_rule("/events/<path:topic>", view_func=broker_view(broker, **options))
        with werkzeug_server(flask_app) as url:
            yield url


def client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=httpx.Timeout(10.0))


def new_topic() -> str:
    return f"jobs/{uuid.uuid4().hex}/progress"  # slashes: the route takes a path


def wait_subscribers(broker: Broker, topic: str, count: int) -> None:
    wait_until(lambda: len(broker.subscribers(topic)) == count, f"{count} subscriber(s)")


def queue_length(subscription: Subscription) -> int:
    """How many events wait in the subscription's queue for its client."""
    return len(subscription._handoff._items)


@pytest.fixture(params=FRAMEWORKS)
def framework(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


# -- streaming and resuming --------------------------------------------------------------------


def test_streams_the_topic_named_in_the_path(framework: str) -> None:
    """A GET of `/events/<topic>` (a topic with slashes) streams what is published to it."""
    broker = MemoryBroker()
    topic = new_topic()
    with (
        serve(framework, broker) as url,
        client(url) as http,
        http.stream("GET", f"/events/{topic}") as response,
    ):
        assert response.status_code == 200
        for name, value in SSE_HEADERS.items():
            assert response.headers[name] == value
        wait_subscribers(broker, topic, 1)
        ids = [
            broker.publish(topic, {"percent": 50}, event="progress"),
            broker.publish(topic + "/other", "not this one"),
            broker.publish(topic, "done"),
        ]
        events = SSEReader(response).events(2)
    assert [(e.type, e.data, e.last_event_id) for e in events] == [
        ("progress", '{"percent":50}', ids[0]),
        ("message", "done", ids[2]),
    ]


@pytest.mark.parametrize("how", ["header", "query"])
def test_resumes_from_the_last_event_id(framework: str, how: str) -> None:
    """`Last-Event-ID` (or the `lastEventId` query parameter) resumes after that id: the
    later events, then live ones, no repeat."""
    broker = MemoryBroker()
    topic = new_topic()
    ids = [broker.publish(topic, n) for n in range(5)]
    path, headers = f"/events/{topic}", {"Last-Event-ID": ids[1]}
    if how == "query":
        path, headers = f"{path}?lastEventId={ids[1]}", {}
    with (
        serve(framework, broker) as url,
        client(url) as http,
        http.stream("GET", path, headers=headers) as response,
    ):
        reader = SSEReader(response)
        replayed = reader.events(3)
        live = broker.publish(topic, "live")
        [event] = reader.events(1)
    assert [(e.data, e.last_event_id) for e in replayed] == [
        ("2", ids[2]),
        ("3", ids[3]),
        ("4", ids[4]),
    ]
    assert (event.data, event.last_event_id) == ("live", live)


def test_a_resume_from_beyond_the_history_gets_a_reset_first(framework: str) -> None:
    """A resume from an id the history no longer holds: `reset` (with the newest id) first."""
    broker = MemoryBroker(history_size=3)
    topic = new_topic()
    ids = [broker.publish(topic, n) for n in range(10)]
    headers = {"Last-Event-ID": ids[0]}
    with (
        serve(framework, broker) as url,
        client(url) as http,
        http.stream("GET", f"/events/{topic}", headers=headers) as response,
    ):
        [reset] = SSEReader(response).events(1)
    assert (reset.type, reset.last_event_id) == (RESET_EVENT, ids[-1])


def test_redis_broker_behind_the_helper(framework: str, redis_server: RedisServer) -> None:
    """A `RedisBroker` served the same way: resume from `Last-Event-ID`, then live events."""
    broker = RedisBroker(redis_server.url)
    topic = new_topic()
    try:
        ids = [broker.publish(topic, n) for n in range(3)]
        headers = {"Last-Event-ID": ids[0]}
        with (
            serve(framework, broker) as url,
            client(url) as http,
            http.stream("GET", f"/events/{topic}", headers=headers) as response,
        ):
            reader = SSEReader(response)
            replayed = reader.events(2)
            live = broker.publish(topic, "live")
            [event] = reader.events(1)
        assert [e.last_event_id for e in replayed] == ids[1:]
        assert (event.data, event.last_event_id) == ("live", live)
    finally:
        broker.close()


def test_unreachable_redis_answers_with_a_retry_hint_not_an_error(framework: str) -> None:
    """With Redis down, a subscriber gets an empty 200 stream saying `retry:`: a browser's
    EventSource comes back by itself, where a 5xx would make it give up for good."""
    dead_port = free_port()  # nothing listens there
    broker = RedisBroker(f"redis://127.0.0.1:{dead_port}/0")
    try:
        with serve(framework, broker) as url, client(url) as http:
            response = http.get(f"/events/{new_topic()}")
        parser = EventParser()
        assert response.status_code == 200
        assert parser.feed(response.content) == []
        assert parser.retry == 2000
    finally:
        broker.close()


# -- authorization, caps, connection management ----------------------------------------------


def check_user(seen: list[tuple[str | None, list[str]]]) -> Callable[[Any, list[str]], bool]:
    """An `authorize` hook refusing topics under "secret/"; it records what it was given."""

    def check(request: Any, topics: list[str]) -> bool:
        seen.append((request.headers.get("x-user"), topics))
        return not topics[0].startswith("secret/")

    return check


def assert_authorized(framework: str, authorize: Any, seen: list[Any]) -> None:
    broker = MemoryBroker()
    with serve(framework, broker, authorize=authorize) as url, client(url) as http:
        refused = http.get("/events/secret/plans", headers={"X-User": "eve"})
        assert refused.status_code == 403
        assert broker.subscribers("secret/plans") == []
        with http.stream("GET", "/events/public/news", headers={"X-User": "bob"}) as response:
            assert response.status_code == 200
            wait_subscribers(broker, "public/news", 1)
    assert seen == [("eve", ["secret/plans"]), ("bob", ["public/news"])]


def test_authorize_refuses_with_403(framework: str) -> None:
    """`authorize(request, topics)` returning False is a 403 (nobody subscribed); True
    streams.  It sees the request and the topic."""
    seen: list[Any] = []
    assert_authorized(framework, check_user(seen), seen)


def test_async_authorize_in_starlette() -> None:
    """`broker_route` also takes an async `authorize`."""
    seen: list[Any] = []
    check = check_user(seen)

    async def authorize(request: Any, topics: list[str]) -> bool:
        return check(request, topics)

    assert_authorized("starlette", authorize, seen)


def test_subscriber_cap_is_a_503(framework: str) -> None:
    """At `max_subscribers_per_topic`, one more client gets 503 with `Retry-After`; once a
    client leaves there is room again."""
    broker = MemoryBroker(max_subscribers_per_topic=2)
    topic = new_topic()
    with serve(framework, broker) as url, client(url) as http, contextlib.ExitStack() as streams:
        for _ in range(2):
            response = streams.enter_context(http.stream("GET", f"/events/{topic}"))
            assert response.status_code == 200
        refused = http.get(f"/events/{topic}")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "5"
        streams.close()
        wait_subscribers(broker, topic, 0)
        with http.stream("GET", f"/events/{topic}") as response:
            assert response.status_code == 200


def test_subscribers_go_back_to_zero_when_clients_leave(framework: str) -> None:
    """`subscribers(topic)` counts the open streams and drops each as its client leaves."""
    broker = MemoryBroker()
    topic = new_topic()
    with serve(framework, broker) as url, client(url) as http, contextlib.ExitStack() as streams:
        responses = [
            streams.enter_context(http.stream("GET", f"/events/{topic}")) for _ in range(3)
        ]
        wait_subscribers(broker, topic, 3)
        broker.publish(topic, "hello")
        readers = [SSEReader(response) for response in responses]  # kept: dropping one closes it
        for reader in readers:
            assert [e.data for e in reader.events(1)] == ["hello"]
        for remaining, response in zip((2, 1, 0), responses, strict=True):
            response.close()
            wait_subscribers(broker, topic, remaining)


def test_close_topic_ends_the_streams(framework: str) -> None:
    """`close_topic()` ends every open stream of the topic with the farewell; the responses
    end cleanly and nobody stays subscribed."""
    broker = MemoryBroker()
    topic = new_topic()
    with serve(framework, broker) as url, client(url) as http, contextlib.ExitStack() as streams:
        responses = [
            streams.enter_context(http.stream("GET", f"/events/{topic}")) for _ in range(2)
        ]
        wait_subscribers(broker, topic, 2)
        broker.publish(topic, "last")
        assert broker.close_topic(topic, farewell="access revoked") == 2
        for response in responses:
            assert [e.data for e in SSEReader(response).rest()] == ["last", "access revoked"]
        assert broker.subscribers(topic) == []


def test_head_leaves_no_subscriber(framework: str) -> None:
    """HEAD gets the headers only, and the subscription it made is released at once."""
    broker = MemoryBroker()
    topic = new_topic()
    with serve(framework, broker) as url, client(url) as http:
        response = http.head(f"/events/{topic}")
        assert response.status_code == 200
        assert response.headers["content-type"] == SSE_HEADERS["content-type"]
        assert response.content == b""
        wait_subscribers(broker, topic, 0)


# -- clients that stop reading -----------------------------------------------------------------


class StalledClient:
    """An HTTP client that sends a GET, reads the response's head and then nothing, until
    `read_to_end()`.  Its receive buffer is small, so the server's writes soon block."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.head = b""
        self.body = b""

    def read_head(self) -> None:
        while b"\r\n\r\n" not in self.head:
            self.head += self.sock.recv(1024)
        self.head, _, self.body = self.head.partition(b"\r\n\r\n")
        assert self.head.startswith(b"HTTP/1.1 200"), self.head

    def read_to_end(self) -> bytes:
        """Read again, until the server closes the connection; return the response's body."""
        while chunk := self.sock.recv(65536):
            self.body += chunk
        if b"transfer-encoding: chunked" not in self.head.lower():
            return self.body
        body, rest = b"", self.body
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                return body
            body, rest = body + rest[:size], rest[size + 2 :]


@contextlib.contextmanager
def stalled_client(url: str, path: str) -> Iterator[StalledClient]:
    """A `StalledClient` of `url` + `path` (it asks the server to close the connection at the
    end of the response)."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STALLED_RCVBUF)
        sock.settimeout(DEADLINE)
        sock.connect((host, int(port)))
        request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        sock.sendall(request.encode())
        stalled = StalledClient(sock)
        stalled.read_head()
        yield stalled
    finally:
        sock.close()


def flood_until_given_up(broker: Broker, topic: str, subscription: Subscription) -> int:
    """Publish big events to a client that reads nothing, until the server gives up on it
    (disconnected, or dropping); its queue never holds more than `QUEUE_SIZE`.  Returns how
    many events were published."""
    body = "x" * BIG_EVENT
    for n in range(MAX_BIG_EVENTS):
        broker.publish(topic, {"n": n, "body": body})
        time.sleep(0.002)  # a steady pace: the server writes what the client lets it
        assert queue_length(subscription) <= QUEUE_SIZE
        if subscription not in broker.subscribers(topic) or subscription.stats.dropped:
            return n + 1
    raise AssertionError(f"{MAX_BIG_EVENTS} events of {BIG_EVENT} bytes and still queued")


@pytest.mark.parametrize("policy", ["disconnect", "drop_oldest"])
def test_a_client_that_stops_reading_stays_bounded(framework: str, policy: str) -> None:
    """A client that stops reading: once the socket buffers are full, its queue fills up to
    `queue_size` and no further; `disconnect` then ends the subscription (counted), while
    `drop_oldest` keeps it and counts what it drops.  Memory does not grow with what is
    published."""
    broker = MemoryBroker(queue_size=QUEUE_SIZE, history_size=16)
    topic = new_topic()
    with serve(framework, broker, policy=policy) as url:
        with stalled_client(url, f"/events/{topic}"):
            wait_subscribers(broker, topic, 1)
            [subscription] = broker.subscribers(topic)
            flood_until_given_up(broker, topic, subscription)
            if policy == "disconnect":
                assert broker.counters["disconnected_slow"] == 1
                assert broker.subscribers(topic) == []
            else:
                for _ in range(50):  # it keeps dropping, never growing
                    broker.publish(topic, {"body": "x" * BIG_EVENT})
                    assert queue_length(subscription) <= QUEUE_SIZE
                assert subscription.stats.dropped >= 50
                assert broker.subscribers(topic) == [subscription]
        wait_subscribers(broker, topic, 0)  # the client closed its socket


def test_a_disconnected_slow_client_resumes_without_loss(framework: str) -> None:
    """Policy `disconnect` over HTTP: once the stalled client reads again it gets what was
    queued and a `retry:` hint, and the response ends; resuming from its last id (as often as
    the server cuts it off: a replay counts against the queue too) it gets every event
    exactly once, in order, never a reset."""
    broker = MemoryBroker(queue_size=QUEUE_SIZE, history_size=MAX_BIG_EVENTS + 10)
    topic = new_topic()
    with serve(framework, broker) as url:
        with stalled_client(url, f"/events/{topic}") as stalled:
            wait_subscribers(broker, topic, 1)
            [subscription] = broker.subscribers(topic)
            published = flood_until_given_up(broker, topic, subscription)
            body = stalled.read_to_end()
        assert body.endswith(b"retry: 1000\n\n")
        events = EventParser().feed(body)
        for n in range(published, published + 5):
            broker.publish(topic, {"n": n})
        total = published + 5
        resumes = 0
        with client(url) as http:
            while events[-1].json()["n"] < total - 1:
                resumes += 1
                assert resumes <= total, "no progress"
                headers = {"Last-Event-ID": events[-1].last_event_id}
                with http.stream("GET", f"/events/{topic}", headers=headers) as response:
                    parser = EventParser()
                    for chunk in response.iter_bytes():
                        events += parser.feed(chunk)
                        if events[-1].json()["n"] == total - 1:
                            break
    assert [e.type for e in events] == ["message"] * total
    assert [e.json()["n"] for e in events] == list(range(total))


def test_a_client_that_stops_reading_with_redis(redis_server: RedisServer) -> None:
    """The same with a `RedisBroker` under uvicorn: the reader thread never blocks on the slow
    client; its queue stays bounded and the subscription is disconnected."""
    broker = RedisBroker(redis_server.url, queue_size=QUEUE_SIZE, max_length=100)
    topic = new_topic()
    try:
        with serve("starlette", broker) as url:
            with stalled_client(url, f"/events/{topic}"):
                wait_subscribers(broker, topic, 1)
                [subscription] = broker.subscribers(topic)
                flood_until_given_up(broker, topic, subscription)
                wait_until(lambda: broker.counters.get("disconnected_slow") == 1, "counted")
            wait_subscribers(broker, topic, 0)
    finally:
        broker.close()
