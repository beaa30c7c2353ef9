"""The demo's safe defaults over real HTTP (uvicorn, httpx): server-issued sessions, allowed
hosts, JSON-only same-origin writes, capped bodies, and error texts that never leak.

The same defaults in a real browser (a second origin, a second browser context) are in
`test_demo_browser_security.py`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from demo_servers import CountingEngine, Demo, running_demo
from support.asgi_servers import DEADLINE, StreamReader

from ssekit import MessageEvent, StreamError
from ssekit.ai import ChatMessage, DemoEngine
from ssekit.demo import MAX_BODY, REPLY_FAILED, SESSION_COOKIE

pytestmark = pytest.mark.timeout(60)

SECRET = "sk-live-0123456789abcdef0123"


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    with running_demo(tmp_path / "demo.sqlite3") as demo:
        yield demo


def same_origin(demo: Demo) -> dict[str, str]:
    """The headers the demo page's own `fetch()` sends with a JSON POST."""
    return {"Origin": demo.url, "Content-Type": "application/json"}


def follow(client: httpx.Client, demo: Demo, reply: dict[str, str]) -> list[MessageEvent]:
    """Every event of a started reply, from its start to its `done` event."""
    url = f"{demo.url}/api/replies/{reply['reply']}"
    with client.stream("GET", url) as response:
        assert response.status_code == 200
        reader = StreamReader(response)
        events: list[MessageEvent] = []
        while not events or events[-1].type != "done":
            events += reader.events(1)
    return events


def test_sessions_are_issued_by_the_server_and_never_shared(demo: Demo) -> None:
    """The first answer sets an unguessable session id in an HttpOnly, SameSite=Lax, Path=/
    cookie; two callers without a cookie get different sessions, and `/api/ask` without a
    cookie never adds to another caller's chat (each one-off question is turn 1).  A session id
    in the query string is ignored."""
    with httpx.Client(timeout=DEADLINE) as first, httpx.Client(timeout=DEADLINE) as second:
        answer = first.get(f"{demo.url}/")
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith(f"{SESSION_COOKIE}=")
        flags = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite=lax", "path=/"} <= flags
        session = first.cookies[SESSION_COOKIE]
        assert len(session) >= 32
        second.get(f"{demo.url}/")
        assert second.cookies[SESSION_COOKIE] != session
        assert first.get(f"{demo.url}/").headers.get("set-cookie") is None  # kept, not reissued

        reply = first.post(
            f"{demo.url}/api/chat", json={"content": "mine only"}, headers=same_origin(demo)
        ).json()
        follow(first, demo, reply)
        assert len(first.get(f"{demo.url}/api/history").json()["messages"]) == 2
        leaked = second.get(f"{demo.url}/api/history", params={"session": session})
        assert leaked.json() == {"messages": []}

    replies = []
    for question in ("one", "two"):
        with httpx.Client(timeout=DEADLINE) as curl:  # like curl: no cookie jar between calls
            with curl.stream("GET", f"{demo.url}/api/ask", params={"q": question}) as response:
                assert response.status_code == 200
                assert SESSION_COOKIE in response.headers["set-cookie"]
                events = StreamReader(response).rest()
            replies.append("".join(json.loads(e.data)["content"] for e in events[:-1]))
    for question, reply in zip(("one", "two"), replies, strict=True):
        assert reply == DemoEngine().answer([{"role": "user", "content": question}])
        assert "turn 1" in reply
    sessions = {session for session, _, _ in demo.stored()}
    assert len(sessions) == 3  # the browser's and one per /api/ask caller


def test_a_host_the_server_does_not_listen_as_is_refused(tmp_path: Path) -> None:
    """`Host: evil.example` (a DNS-rebound name) gets 400 on every route, before anything runs;
    127.0.0.1 and localhost on any port are served, and `allowed_hosts` adds names."""
    with (
        running_demo(tmp_path / "demo.sqlite3", allowed_hosts=["chat.example"]) as demo,
        httpx.Client(timeout=DEADLINE) as client,
    ):
        for method, path in [
            ("GET", "/"),
            ("GET", "/api/history"),
            ("GET", "/api/ask?q=hi"),
            ("POST", "/api/chat"),
        ]:
            headers = {"Host": "evil.example", **same_origin(demo)}
            headers["Origin"] = "http://evil.example"
            answer = client.request(
                method, f"{demo.url}{path}", headers=headers, json={"content": "hi"}
            )
            assert answer.status_code == 400, (method, path)
            assert "Host" in answer.json()["error"]
        for host in ("localhost:9", "127.0.0.1", "chat.example", "CHAT.example:443"):
            assert client.get(f"{demo.url}/", headers={"Host": host}).status_code == 200
        assert demo.engine.calls == 0
        assert demo.stored() == []


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Content-Type": "application/json"}, 403),  # no Origin
        ({"Content-Type": "application/json", "Origin": "http://127.0.0.1:1"}, 403),
        ({"Content-Type": "application/json", "Origin": "null"}, 403),
        ({"Content-Type": "text/plain", "Origin": "{url}"}, 415),
        ({"Content-Type": "application/x-www-form-urlencoded", "Origin": "{url}"}, 415),
    ],
)
def test_writes_need_this_origin_and_json(demo: Demo, headers: dict[str, str], status: int) -> None:
    """A POST without an Origin or from another origin is refused (403); one that is not
    `application/json` too (415): nothing is stored and the engine does not run."""
    headers = {name: value.replace("{url}", demo.url) for name, value in headers.items()}
    with httpx.Client(timeout=DEADLINE) as client:
        client.get(f"{demo.url}/")
        answer = client.post(f"{demo.url}/api/chat", content=b'{"content": "hi"}', headers=headers)
        assert answer.status_code == status
        stop = client.post(f"{demo.url}/api/replies/x.y/stop", content=b"{}", headers=headers)
        assert stop.status_code == status
        assert client.get(f"{demo.url}/api/chat").status_code == 405
    assert demo.engine.calls == 0
    assert demo.stored() == []


def test_ask_refuses_cross_site_browser_requests(demo: Demo) -> None:
    """`GET /api/ask` runs the engine, so a browser request from another site or another origin
    on the same host (an `<img>`, a link) is refused, by `Sec-Fetch-Site` or `Origin`."""
    with httpx.Client(timeout=DEADLINE) as client:
        for headers in [
            {"Sec-Fetch-Site": "cross-site"},
            {"Sec-Fetch-Site": "same-site"},
            {"Origin": "http://127.0.0.1:1"},
        ]:
            answer = client.get(f"{demo.url}/api/ask", params={"q": "spend"}, headers=headers)
            assert answer.status_code == 403, headers
    assert demo.engine.calls == 0
    assert demo.stored() == []


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_50_mb_post_is_refused_without_reaching_the_database(demo: Demo, framing: str) -> None:
    """A 50 MB JSON POST gets 413, whether announced by Content-Length or sent chunked (then it
    is read no further than the cap); the database does not grow and the engine does not run."""
    size = 50 * 1024 * 1024
    piece = b"a" * 65536

    def chunked() -> Iterator[bytes]:
        yield b'{"content": "'
        for _ in range(size // len(piece)):
            yield piece
        yield b'"}'

    with httpx.Client(timeout=60) as client:
        client.get(f"{demo.url}/")
        client.post(f"{demo.url}/api/chat", json={"content": "small"}, headers=same_origin(demo))
        before = demo.database_bytes()
        body: bytes | Iterator[bytes]
        body = b"".join(chunked()) if framing == "content-length" else chunked()
        answer = client.post(f"{demo.url}/api/chat", content=body, headers=same_origin(demo))
        assert answer.status_code == 413
        assert str(MAX_BODY) in answer.json()["error"]
    assert demo.database_bytes() <= before + 64 * 1024
    assert [content for _, _, content in demo.stored()][:1] == ["small"]
    assert all(len(content) < MAX_BODY for _, _, content in demo.stored())
    assert demo.engine.calls == 1


class FailingEngine:
    """Streams one chunk, then fails with `error`."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def stream(
        self, messages: Iterable[ChatMessage], **params: Any
    ) -> AsyncIterator[dict[str, Any]]:
        yield {"content": "Partial"}
        raise self.error


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        (RuntimeError(f"database password=hunter2, key {SECRET}"), REPLY_FAILED),
        (StreamError("The model is busy, try again."), "The model is busy, try again."),
    ],
)
def test_a_failed_reply_shows_only_stream_error_text(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, error: Exception, shown: str
) -> None:
    """A reply whose engine raises: the client gets the `StreamError`'s own text, or for any
    other exception a generic message (the exception is logged on the server, not sent)."""
    caplog.set_level(logging.ERROR, logger="ssekit")
    engine: Any = FailingEngine(error)
    with (
        running_demo(tmp_path / "demo.sqlite3", engine) as demo,
        httpx.Client(timeout=DEADLINE) as client,
    ):
        client.get(f"{demo.url}/")
        # (A "session" in the body is ignored: the cookie is the session.)
        body = {"content": "hi", "session": "chosen-by-the-caller"}
        reply = client.post(f"{demo.url}/api/chat", json=body, headers=same_origin(demo)).json()
        url = f"{demo.url}/api/replies/{reply['reply']}"
        with client.stream("GET", url) as response:
            raw = b""
            for data in response.iter_bytes():
                raw += data
                if b"event: done" in raw:
                    break
    assert b"hunter2" not in raw
    assert SECRET.encode() not in raw
    assert f'event: error\ndata: {{"message":"{shown}"}}'.encode() in raw
    if not isinstance(error, StreamError):
        assert any("hunter2" in (r.exc_text or "") for r in caplog.records)


def test_another_session_cannot_follow_or_stop_a_reply(tmp_path: Path) -> None:
    """A reply's stream and its stop button belong to the session that started it: another
    session gets 403 on the stream and 404 on stop, and the reply goes on."""
    engine = CountingEngine(delay=0.2)
    with (
        running_demo(tmp_path / "demo.sqlite3", engine) as demo,
        httpx.Client(timeout=DEADLINE) as owner,
        httpx.Client(timeout=DEADLINE) as other,
    ):
        owner.get(f"{demo.url}/")
        other.get(f"{demo.url}/")
        reply = owner.post(
            f"{demo.url}/api/chat", json={"content": "hi"}, headers=same_origin(demo)
        ).json()
        url = f"{demo.url}/api/replies/{reply['reply']}"
        assert other.get(url).status_code == 403
        assert httpx.get(url, timeout=DEADLINE).status_code == 403  # no cookie at all
        stop = f"{demo.url}/api/replies/{reply['reply']}/stop"
        assert other.post(stop, json={}, headers=same_origin(demo)).status_code == 404
        assert owner.post(stop, json={}, headers=same_origin(demo)).json() == {"stopped": True}


def test_one_running_reply_per_session(tmp_path: Path) -> None:
    """While a session's reply runs, its next message gets 429 with a short reason and is not
    stored (the engine is not asked); another session is not held up, and once the reply is
    stopped (its `done` event seen) the session may send again."""
    engine = CountingEngine(delay=0.5)  # a reply of ~18 s, stopped early
    with (
        running_demo(tmp_path / "demo.sqlite3", engine) as demo,
        httpx.Client(timeout=DEADLINE) as owner,
        httpx.Client(timeout=DEADLINE) as other,
    ):
        owner.get(f"{demo.url}/")
        chat = f"{demo.url}/api/chat"
        reply = owner.post(chat, json={"content": "first"}, headers=same_origin(demo)).json()
        refused = owner.post(chat, json={"content": "too soon"}, headers=same_origin(demo))
        assert refused.status_code == 429
        assert "running" in refused.json()["error"]
        assert [content for _, _, content in demo.stored()] == ["first"]
        assert engine.calls == 1

        other.get(f"{demo.url}/")
        theirs = other.post(chat, json={"content": "mine"}, headers=same_origin(demo))
        assert theirs.status_code == 200
        stop = f"{demo.url}/api/replies/{reply['reply']}/stop"
        assert owner.post(stop, json={}, headers=same_origin(demo)).json() == {"stopped": True}
        assert follow(owner, demo, reply)[-1].data == '{"outcome":"stopped"}'
        again = owner.post(chat, json={"content": "now"}, headers=same_origin(demo))
        assert again.status_code == 200
        follow(owner, demo, again.json())
        owner_session = owner.cookies[SESSION_COOKIE]
        mine = [(role, c) for s, role, c in demo.stored() if s == owner_session]
        assert [c for role, c in mine if role == "user"] == ["first", "now"]
