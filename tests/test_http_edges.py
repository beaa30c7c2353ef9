"""Odd client input at the HTTP edge, over real servers: never a 5xx, a 4xx with a short reason.

- `Last-Event-ID` is read as UTF-8 (header and `lastEventId` query parameter) in every adapter,
  falling back to Latin-1 only for bytes that are not UTF-8.
- An empty or over-long topic on a broker endpoint is a 400 with a short reason.
- Property: random `Last-Event-ID` values and random topics never give a 5xx.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route
from support.asgi_servers import uvicorn_server
from support.wsgi_servers import werkzeug_server

from ssekit.adapters import flask as flask_adapter
from ssekit.adapters import starlette as starlette_adapter
from ssekit.adapters._common import SSERequest
from ssekit.adapters.asgi import SSEApp
from ssekit.adapters.wsgi import SSEWSGIApp
from ssekit.broker import MAX_TOPIC_LENGTH, MemoryBroker

pytestmark = pytest.mark.timeout(120)

ADAPTERS = ("wsgi", "flask", "asgi", "starlette")
#: Not Latin-1, and outside the Basic Multilingual Plane: the cases a Latin-1 reading breaks.
UNICODE_ID = "é…😀"
#: Streams write a heartbeat this often: werkzeug learns that a client left at its next write.
HEARTBEAT = 0.2


def _reply(last_id: str | None) -> list[dict[str, Any]]:
    return [{"last_event_id": last_id}]


def _sse_request_echo(request: SSERequest) -> list[dict[str, Any]]:
    return _reply(request.last_event_id)


@contextlib.contextmanager
def echo_server(adapter: str) -> Iterator[str]:
    """An endpoint that answers one event: the `Last-Event-ID` as the adapter read it."""
    if adapter == "wsgi":
        with werkzeug_server(SSEWSGIApp(_sse_request_echo)) as url:
            yield url
    elif adapter == "asgi":
        with uvicorn_server(SSEApp(_sse_request_echo)) as url:
            yield url
    elif adapter == "flask":
        app = Flask(__name__)

        @app.get("/resume")
        def resume() -> Any:
            return flask_adapter.sse_response(_reply(flask_adapter.last_event_id()))

        with werkzeug_server(app) as url:
            yield url
    else:

        async def resume_view(request: Request) -> Any:
            last_id = starlette_adapter.last_event_id(request)
            return starlette_adapter.SSEResponse(_reply(last_id))

        with uvicorn_server(Starlette(routes=[Route("/resume", resume_view)])) as url:
            yield url


def _seen(response: httpx.Response) -> str | None:
    assert response.status_code == 200, response.text
    [line] = [line for line in response.text.split("\n") if line.startswith("data: ")]
    found: str | None = json.loads(line[6:])["last_event_id"]
    return found


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_last_event_id_is_utf8_in_header_and_query(adapter: str) -> None:
    """'é…😀' sent as UTF-8 (as browsers and ssekit's client send it) comes back as is."""
    with echo_server(adapter) as url, httpx.Client(base_url=url, timeout=10.0) as http:
        by_header = http.get("/resume", headers={"Last-Event-ID": UNICODE_ID.encode()})
        by_query = http.get("/resume", params={"lastEventId": UNICODE_ID})
        both = http.get(
            "/resume", params={"lastEventId": "q"}, headers={"Last-Event-ID": b"h\xc3\xa9"}
        )
        latin1 = http.get("/resume", headers={"Last-Event-ID": b"caf\xe9"})
        none = http.get("/resume")
    assert _seen(by_header) == UNICODE_ID
    assert _seen(by_query) == UNICODE_ID
    assert _seen(both) == "hé"  # the header wins
    assert _seen(latin1) == "café"  # not UTF-8: read as Latin-1
    assert _seen(none) is None


@contextlib.contextmanager
def broker_server(adapter: str, broker: MemoryBroker) -> Iterator[str]:
    if adapter == "flask":
        app = Flask(__name__)
        view = flask_adapter.broker_view(broker, heartbeat=HEARTBEAT)
        app.add_url_rule("/events/<path:topic>", view_func=view)
        with werkzeug_server(app) as url:
            yield url
    else:
        route = starlette_adapter.broker_route("/events/{topic:path}", broker, heartbeat=HEARTBEAT)
        with uvicorn_server(Starlette(routes=[route])) as url:
            yield url


def test_an_empty_topic_is_a_400() -> None:
    """`GET /events/` on a `{topic:path}` route: a 400 naming the problem, not a 500."""
    with broker_server("starlette", MemoryBroker()) as url:
        response = httpx.get(f"{url}/events/", timeout=10.0)
    assert (response.status_code, response.text) == (400, "The topic is empty.")


@pytest.mark.parametrize("adapter", ["flask", "starlette"])
def test_an_over_long_topic_is_a_400(adapter: str) -> None:
    """One character past `MAX_TOPIC_LENGTH` is a 400 with a short reason; at it, a stream."""
    with (
        broker_server(adapter, MemoryBroker()) as url,
        httpx.Client(base_url=url, timeout=10.0) as http,
    ):
        response = http.get(f"/events/{'t' * (MAX_TOPIC_LENGTH + 1)}")
        with http.stream("GET", f"/events/{'t' * MAX_TOPIC_LENGTH}") as fits:
            assert fits.status_code == 200
    assert response.status_code == 400
    assert str(MAX_TOPIC_LENGTH) in response.text
    assert len(response.text) < 100


#: Header bytes a client can send (HTTP field-value characters; no CR, LF or NUL).
_HEADER_BYTES = st.binary(max_size=300).map(
    lambda raw: bytes(b for b in raw if b == 0x20 or 0x21 <= b <= 0x7E or b >= 0x80).strip()
)
LAST_EVENT_IDS = st.one_of(
    _HEADER_BYTES,
    st.text(max_size=100)
    .map(lambda text: text.encode("utf-8", "replace"))
    .map(lambda raw: bytes(b for b in raw if b >= 0x20 and b != 0x7F).strip()),
    st.text(alphabet="0123456789-", max_size=6000).map(str.encode),  # past int()'s digit limit
    st.sampled_from([b"0-0", b"1-1", b"99999999999999999999999-1", b"-1", b"1-", b"x" * 5000]),
)
TOPICS = st.one_of(
    st.text(max_size=MAX_TOPIC_LENGTH + 20),
    st.sampled_from(["", "a/b", "../etc", "%", " ", "\x00", "t" * (MAX_TOPIC_LENGTH + 1)]),
)


@pytest.mark.parametrize("adapter", ["flask", "starlette"])
def test_random_last_event_ids_and_topics_never_give_a_5xx(adapter: str) -> None:
    """Whatever the header and the path hold, a broker endpoint answers below 500."""
    broker = MemoryBroker()
    broker.publish("a/b", "x")
    with broker_server(adapter, broker) as url, httpx.Client(base_url=url, timeout=10.0) as http:

        @settings(
            max_examples=60,
            deadline=None,
            derandomize=True,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(last_id=LAST_EVENT_IDS, topic=TOPICS)
        def check(last_id: bytes, topic: str) -> None:
            path = "/events/" + quote(topic.encode("utf-8", "surrogatepass"), safe="")
            headers = {"Last-Event-ID": last_id}
            with http.stream("GET", path, headers=headers) as response:
                assert response.status_code < 500, (last_id, topic, response.read())

        check()
