"""A real browser's `EventSource` against real servers: headless Chromium driven by Playwright.

The pages and streams come from `apps.browser_app`, served by uvicorn (the Starlette adapter) and
by werkzeug's server (the Flask adapter), on 127.0.0.1.  The page opens `new EventSource(url)`
and records every event the browser dispatches (type, data, lastEventId); the tests compare that
with what the source sent, and check the browser's own reconnection: `retry:`, `Last-Event-ID`.

Debian's Chromium is used (`shutil.which("chromium")`); without it the module is skipped."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from apps.browser_app import (
    FAREWELL,
    RETRY_MS,
    TRICKY,
    TRICKY_TYPES,
    Journal,
    flask_app,
    new_registry,
    starlette_app,
)
from playwright.sync_api import Browser, Page
from support.asgi_servers import uvicorn_server
from support.chromium import BROWSER_MARKS, launch_chromium
from support.waiting import wait_until
from support.wsgi_servers import werkzeug_server

from ssekit import StreamRegistry

pytestmark = BROWSER_MARKS

#: How long to wait for what the browser does within moments (far more than it needs).
DEADLINE = 20.0


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_chromium()


@dataclass
class AppServer:
    """A running server of the browser app, and what its streams report."""

    name: str
    url: str
    journal: Journal
    registry: StreamRegistry


@pytest.fixture(scope="module", params=["starlette", "flask"])
def server(request: pytest.FixtureRequest) -> Iterator[AppServer]:
    """The browser app on uvicorn (Starlette adapter) or werkzeug (Flask adapter)."""
    journal = Journal()
    registry = new_registry()
    if request.param == "starlette":
        with uvicorn_server(starlette_app(journal, registry)) as url:
            yield AppServer("starlette", url, journal, registry)
    else:
        with werkzeug_server(flask_app(journal, registry)) as url:
            yield AppServer("flask", url, journal, registry)


@pytest.fixture
def page(browser: Browser, server: AppServer) -> Iterator[Page]:
    """A fresh browser context with the test page loaded; closed (with its connections) after."""
    context = browser.new_context()
    try:
        page = context.new_page()
        errors: list[Any] = []
        page.on("pageerror", lambda error: errors.append(error))
        page.goto(f"{server.url}/")
        yield page
        assert not errors, f"the page raised: {errors}"
    finally:
        context.close()


def start_stream(page: Page, url: str, types: list[str] | None = None) -> None:
    """Open `new EventSource(url)` in the page, listening to `types` besides "message"."""
    page.evaluate("([url, types]) => window.startStream(url, types)", [url, types or []])


def seen_until_done(page: Page) -> list[dict[str, Any]]:
    """Wait until the page got the "done" event (and closed its EventSource); all it recorded."""
    page.wait_for_function(
        "() => window.seen.some((entry) => entry.kind === 'done')", timeout=DEADLINE * 1000
    )
    seen: list[dict[str, Any]] = page.evaluate("window.seen")
    return seen


def messages(seen: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(e["type"], e["data"], e["lastEventId"]) for e in seen if e["kind"] == "message"]


def kinds(seen: list[dict[str, Any]]) -> list[str]:
    return [entry["kind"] for entry in seen]


def short(value: object) -> str:
    text = repr(value)
    return text if len(text) < 300 else f"{text[:150]}...({len(text)} chars)...{text[-100:]}"


def test_the_browser_dispatches_exactly_what_the_source_sent(page: Page, server: AppServer) -> None:
    """Multi-line data (CR, LF, CRLF; joined with LF), leading spaces, emoji, U+2028, combining
    characters, NUL, an inner BOM, empty data, JSON, bytes, 200 KB of data, ids (unicode, empty),
    custom types, an id-only event (no dispatch, but lastEventId changes), a comment (nothing):
    Chromium dispatches exactly the expected events, in order, on one connection.  Closing the
    EventSource then closes the source on the server."""
    tag = uuid.uuid4().hex
    start_stream(page, f"/tricky?tag={tag}", TRICKY_TYPES)
    seen = seen_until_done(page)
    expected = [dispatch for _, dispatch in TRICKY if dispatch is not None]
    got = messages(seen)
    for index, (got_one, expected_one) in enumerate(zip(got, expected, strict=False)):
        assert got_one == expected_one, (
            f"event {index}: got {short(got_one)}, expected {short(expected_one)}"
        )
    assert len(got) == len(expected)
    assert kinds(seen) == ["open"] + ["message"] * len(expected) + ["done"]
    wait_until(
        lambda: [e.kind for e in server.journal.of(tag)] == ["request", "end"],
        "closed",
        timeout=DEADLINE,
    )


def test_the_browser_reconnects_with_last_event_id_and_resumes(
    page: Page, server: AppServer
) -> None:
    """A stream sends ids 1-3 and ends, with `retry: 200`: Chromium reconnects by itself after
    about 200 ms (not its default 3 s), sending `Last-Event-ID: 3`, which the app receives; the
    stream resumes with 4 and 5 and the browser's lastEventId follows."""
    tag = uuid.uuid4().hex
    start_stream(page, f"/resume?tag={tag}")
    seen = seen_until_done(page)
    assert messages(seen) == [
        ("message", word, str(n))
        for n, word in enumerate(["one", "two", "three", "four", "five"], start=1)
    ]
    assert kinds(seen) == ["open", *["message"] * 3, "error", "open", *["message"] * 2, "done"]
    error = next(entry for entry in seen if entry["kind"] == "error")
    assert error["readyState"] == 0, "after the end the EventSource must be CONNECTING"
    journal = server.journal.of(tag)
    assert [entry.kind for entry in journal][:3] == ["request", "end", "request"]
    requests = [entry for entry in journal if entry.kind == "request"]
    assert [entry.last_event_id for entry in requests] == [None, "3"]
    first_end = next(entry for entry in journal if entry.kind == "end")
    gap = requests[1].at - first_end.at
    assert gap >= RETRY_MS / 1000 * 0.75, "the browser reconnected before `retry` elapsed"
    assert gap < 2.5, "the browser did not use `retry:` (Chromium's default is 3 s)"


def test_a_registry_farewell_makes_the_browser_reconnect_and_resume(
    page: Page, server: AppServer
) -> None:
    """`registry.close_all()` (what a shutdown does) ends an open stream with the farewell and
    `retry: 200`, and closes its source: Chromium dispatches the farewell, reconnects with
    `Last-Event-ID: 1`, and the stream resumes after it."""
    tag = uuid.uuid4().hex
    start_stream(page, f"/farewell?tag={tag}")
    page.wait_for_function(
        "() => window.seen.some((entry) => entry.data === 'before')", timeout=DEADLINE * 1000
    )
    assert server.registry.close_all() >= 1
    seen = seen_until_done(page)
    assert messages(seen) == [
        ("message", "before", "1"),
        ("message", FAREWELL, "1"),
        ("message", "after", "2"),
    ]
    assert kinds(seen) == ["open", "message", "message", "error", "open", "message", "done"]
    journal = server.journal.of(tag)
    assert [entry.kind for entry in journal][:3] == ["request", "end", "request"]
    requests = [entry for entry in journal if entry.kind == "request"]
    assert [entry.last_event_id for entry in requests] == [None, "1"]
