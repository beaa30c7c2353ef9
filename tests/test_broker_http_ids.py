"""Odd `Last-Event-ID` headers over HTTP: a `reset`, never a 5xx, on both brokers and frameworks.

A header of 5,000 digits once hit Python's int-conversion limit (a 500 everywhere), and one past
64 bits made `RedisBroker` fail with "Invalid stream ID" (a 500) while `MemoryBroker` answered
`reset`.  Each broker is served by `broker_route` (Starlette under uvicorn) and `broker_view`
(Flask under werkzeug), on 127.0.0.1, and gets the same random header values from httpx.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import httpx
import pytest
from flask import Flask
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from redis_server import RedisServer, running_redis
from starlette.applications import Starlette
from support.asgi_servers import uvicorn_server
from support.sse_reader import SSEReader
from support.wsgi_servers import werkzeug_server

from ssekit.adapters.flask import broker_view
from ssekit.adapters.starlette import broker_route
from ssekit.broker import RESET_EVENT, Broker, MemoryBroker, RedisBroker

pytestmark = pytest.mark.timeout(120)

COMBINATIONS = [
    ("starlette", "memory"),
    ("starlette", "redis"),
    ("flask", "memory"),
    ("flask", "redis"),
]


class Served:
    """A broker with a topic of two events, served over HTTP at `url`."""

    def __init__(self, broker: Broker, url: str) -> None:
        self.broker = broker
        self.url = url
        self.topic = f"ids/{uuid.uuid4().hex}"
        self.ids = [broker.publish(self.topic, n) for n in range(2)]

    def first_event(self, last_event_id: str) -> tuple[int, str, str]:
        """(status, type, id) of the first event answered to a resume from `last_event_id`."""
        headers = {"Last-Event-ID": last_event_id}
        with (
            httpx.Client(base_url=self.url, timeout=httpx.Timeout(10.0)) as http,
            http.stream("GET", f"/events/{self.topic}", headers=headers) as response,
        ):
            if response.status_code != 200:
                return response.status_code, "", ""
            [event] = SSEReader(response).events(1)
            return response.status_code, event.type, event.last_event_id


@contextlib.contextmanager
def serving(framework: str, broker: Broker) -> Iterator[str]:
    if framework == "starlette":
        app = Starlette(routes=[broker_route("/events/{topic:path}", broker, heartbeat=None)])
        with uvicorn_server(app) as url:
            yield url
    else:
        flask_app = Flask(__name__)
        flask_app.add_url_rule(
            "/events/<path:topic>", view_func=broker_view(broker, heartbeat=None)
        )
        with werkzeug_server(flask_app) as url:
            yield url


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(params=COMBINATIONS, ids=lambda c: "-".join(c))
def served(request: pytest.FixtureRequest, redis_server: RedisServer) -> Iterator[Served]:
    framework, kind = request.param
    broker: Broker = MemoryBroker() if kind == "memory" else RedisBroker(redis_server.url)
    try:
        with serving(framework, broker) as url:
            yield Served(broker, url)
    finally:
        broker.close()


@pytest.mark.parametrize(
    "value",
    ["9" * 5000, "1-" + "9" * 5000, f"{2**64}-0", f"0-{2**64}", "abc", "1-", "-", "1--1"],
    ids=lambda value: value[:12],
)
def test_an_unusable_id_is_a_reset(served: Served, value: str) -> None:
    assert served.first_event(value) == (200, RESET_EVENT, served.ids[-1])


def test_a_usable_id_resumes(served: Served) -> None:
    assert served.first_event(served.ids[0]) == (200, "message", served.ids[1])


#: Header values a client can send: visible ASCII and inner spaces, or digit strings near an id.
_DIGITS = st.text(alphabet="0123456789", min_size=1, max_size=40)
HEADER_VALUES = st.one_of(
    st.text(
        alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=60
    ),
    st.builds(lambda a, b: f"{a}-{b}", _DIGITS, _DIGITS),
    st.builds(lambda a, b: f"{a} {b}", _DIGITS, _DIGITS),
    st.integers(min_value=0, max_value=2**80).map(lambda n: f"{n}-{n}"),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],  # one server for all examples
)
@given(value=HEADER_VALUES)
def test_any_header_value_is_a_reset_or_a_resume_never_a_5xx(served: Served, value: str) -> None:
    assume(value != served.ids[-1])  # a resume with nothing to replay sends no event
    status, kind, id_ = served.first_event(value)
    assert status == 200
    if value == served.ids[0]:
        assert (kind, id_) == ("message", served.ids[1])
    else:
        assert (kind, id_) == (RESET_EVENT, served.ids[-1])
