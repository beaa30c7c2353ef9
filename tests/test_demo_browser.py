"""The `ssekit demo` chat app driven in headless Chromium (Playwright), served by uvicorn.

A user types a message and presses Send: the reply streams into the assistant's bubble token by
token (the test sees it grow), ends as the demo engine's whole answer, and is there again after a
reload and after a server restart (a new app on the same SQLite file).  Stop ends a reply
mid-stream: the partial reply is kept, shown after a reload, and stored with `partial=True`.

Debian's Chromium is used (`shutil.which("chromium")`); without it the module is skipped.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from demo_servers import wait_until_idle
from playwright.sync_api import Browser, Page
from support.asgi_servers import uvicorn_server
from support.chromium import BROWSER_MARKS, launch_chromium
from support.waiting import free_port

from ssekit.ai import DemoEngine
from ssekit.demo import SESSION_COOKIE, create_app
from ssekit.memory import SQLiteMemory

pytestmark = BROWSER_MARKS

#: How long to wait for what the page does within moments (far more than it needs), in ms.
DEADLINE_MS = 20_000
#: The last assistant bubble of the chat.
LAST_REPLY = ".msg.assistant >> nth=-1"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_chromium()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context (its own cookies, so its own chat session)."""
    context = browser.new_context()
    try:
        page = context.new_page()
        errors: list[Any] = []
        page.on("pageerror", lambda error: errors.append(error))
        yield page
        assert not errors, f"the page raised: {errors}"
    finally:
        context.close()


@dataclass
class Demo:
    url: str
    database: str


@contextlib.contextmanager
def running_demo(database: Path, engine: DemoEngine, port: int = 0) -> Iterator[Demo]:
    """A new demo app on `database`, under uvicorn on 127.0.0.1:`port` (0: any free port)."""
    app = create_app(database=str(database), engine=engine)
    with uvicorn_server(app, port=port) as url:
        yield Demo(url, str(database))


def send(page: Page, text: str) -> None:
    """Type `text` into the message box and press Send."""
    page.locator("#input").fill(text)
    page.locator("#send").click()


def wait_for_reply_change(page: Page, previous: str) -> dict[str, Any]:
    """Wait until the last assistant bubble's text differs from `previous`; its text and state."""
    handle = page.wait_for_function(
        """(previous) => {
            const bubbles = document.querySelectorAll(".msg.assistant");
            const bubble = bubbles[bubbles.length - 1];
            if (!bubble || bubble.innerText === previous) return false;
            return {text: bubble.innerText, streaming: bubble.classList.contains("streaming")};
        }""",
        arg=previous,
        timeout=DEADLINE_MS,
    )
    value: dict[str, Any] = handle.json_value()
    return value


def watch_reply(page: Page, final: str) -> list[dict[str, Any]]:
    """Every text the last assistant bubble shows, in order, until it shows `final`."""
    page.wait_for_selector(".msg.assistant.streaming", timeout=DEADLINE_MS)
    seen: list[dict[str, Any]] = [{"text": page.inner_text(LAST_REPLY), "streaming": True}]
    while seen[-1]["text"] != final:
        assert final.startswith(seen[-1]["text"]), f"not a prefix of the reply: {seen[-1]}"
        seen.append(wait_for_reply_change(page, seen[-1]["text"]))
    return seen


def shown_messages(page: Page) -> list[dict[str, Any]]:
    """The chat as the page shows it: role, text, and whether it is marked partial."""
    shown: list[dict[str, Any]] = page.evaluate(
        """() => [...document.querySelectorAll(".msg")].map((m) => ({
            role: m.classList.contains("user") ? "user" : "assistant",
            content: m.innerText,
            partial: m.classList.contains("partial"),
        }))"""
    )
    return shown


def reload_and_wait_for(page: Page, count: int) -> list[dict[str, Any]]:
    """Reload the page and wait until its history shows `count` messages."""
    page.reload()
    page.wait_for_function(
        "(count) => document.querySelectorAll('.msg').length === count",
        arg=count,
        timeout=DEADLINE_MS,
    )
    return shown_messages(page)


def session_of(page: Page) -> str:
    """The session id the server gave this page's browser context (its HttpOnly cookie)."""
    cookies = [c for c in page.context.cookies() if c["name"] == SESSION_COOKIE]
    assert len(cookies) == 1, cookies
    return cookies[0]["value"]


def as_shown(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored messages as the page shows them."""
    return [
        {"role": m["role"], "content": m["content"], "partial": m.get("partial", False)}
        for m in messages
    ]


def test_a_reply_streams_into_the_page_and_survives_a_reload(page: Page, tmp_path: Path) -> None:
    """Send a message: the assistant bubble shows at least two different partial texts (each a
    prefix of the reply, while the bubble is marked streaming) before the whole reply, which is
    `DemoEngine().answer()` for the chat so far.  The chat is stored in SQLite; after a reload
    the page shows it again; a second message is answered from the whole history (turn 2)."""
    engine = DemoEngine(delay=0.05)
    with running_demo(tmp_path / "demo.sqlite3", engine) as demo:
        page.goto(f"{demo.url}/")
        send(page, "Hello ssekit")
        history = [{"role": "user", "content": "Hello ssekit"}]
        final = DemoEngine().answer(history)
        seen = watch_reply(page, final)
        partials = {entry["text"] for entry in seen[:-1] if entry["text"]}
        assert len(partials) >= 2, f"the reply did not visibly stream: {seen}"
        assert all(entry["streaming"] for entry in seen[:-1])
        wait_until_idle(page)
        history.append({"role": "assistant", "content": final})
        stored = SQLiteMemory(demo.database, parent=("ChatSession", session_of(page)))
        assert stored.get_messages() == history

        assert reload_and_wait_for(page, 2) == as_shown(history)

        send(page, "And again")
        history.append({"role": "user", "content": "And again"})
        final = DemoEngine().answer(history)
        assert "turn 2" in final
        watch_reply(page, final)
        wait_until_idle(page)
        history.append({"role": "assistant", "content": final})
        assert shown_messages(page) == as_shown(history)
        assert stored.get_messages() == history


def test_stop_keeps_the_partial_reply(page: Page, tmp_path: Path) -> None:
    """With a slow engine, Stop pressed after a few tokens ends the reply: the bubble keeps what
    was streamed (marked partial, status "stopped"), the memory holds exactly that text with
    `partial=True`, and after a reload the page shows it, still marked partial."""
    engine = DemoEngine(delay=0.25)
    with running_demo(tmp_path / "demo.sqlite3", engine) as demo:
        page.goto(f"{demo.url}/")
        send(page, "Tell me a long story")
        full = engine.answer([{"role": "user", "content": "Tell me a long story"}])
        page.wait_for_function(
            "() => (document.querySelector('.msg.assistant')?.innerText ?? '').split(' ').length"
            " >= 3",
            timeout=DEADLINE_MS,
        )
        page.locator("#stop").click()
        page.wait_for_selector(".msg.assistant.partial", timeout=DEADLINE_MS)
        wait_until_idle(page)
        assert page.inner_text("#status") == "stopped"
        kept = page.inner_text(LAST_REPLY)
        assert kept
        assert full.startswith(kept)
        assert kept != full
        stored = SQLiteMemory(demo.database, parent=("ChatSession", session_of(page)))
        assert stored.get_messages() == [
            {"role": "user", "content": "Tell me a long story"},
            {"role": "assistant", "content": kept, "partial": True},
        ]
        assert reload_and_wait_for(page, 2) == [
            {"role": "user", "content": "Tell me a long story", "partial": False},
            {"role": "assistant", "content": kept, "partial": True},
        ]


def test_the_history_survives_a_server_restart(page: Page, tmp_path: Path) -> None:
    """A chat held by one server is shown by a new app instance on the same SQLite file, serving
    on the same address after the first has stopped: a reload shows the whole history."""
    database = tmp_path / "demo.sqlite3"
    port = free_port()
    engine = DemoEngine(delay=0.01)
    history = [{"role": "user", "content": "Remember me"}]
    history.append({"role": "assistant", "content": engine.answer(history)})
    with running_demo(database, engine, port) as demo:
        page.goto(f"{demo.url}/")
        send(page, "Remember me")
        page.wait_for_function(
            "(final) => document.querySelector('.msg.assistant')?.innerText === final",
            arg=history[-1]["content"],
            timeout=DEADLINE_MS,
        )
        wait_until_idle(page)
    with running_demo(database, DemoEngine(delay=0.01), port):
        assert reload_and_wait_for(page, 2) == as_shown(history)
