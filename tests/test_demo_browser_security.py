"""The demo's safe defaults in headless Chromium: another origin cannot write to or read a chat,
a second browser cannot see or drive the first one's, and the page itself behaves (a hint in the
empty chat, a visibly disabled Stop button, no 404 in the console, `reset` after a restart).

The other origin is a second local server on another port of 127.0.0.1: the hardest case, since
browsers send the demo's `SameSite=Lax` cookie to it (ports do not separate sites).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from demo_servers import CountingEngine, Demo, running_demo, wait_until_idle
from playwright.sync_api import Browser, BrowserContext, Page
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from support.asgi_servers import uvicorn_server
from support.chromium import BROWSER_MARKS, launch_chromium
from support.waiting import free_port, wait_until

from ssekit.demo import SESSION_COOKIE

pytestmark = BROWSER_MARKS

DEADLINE_MS = 20_000
DEADLINE = DEADLINE_MS / 1000

#: A page on another origin that tries every cross-origin write it can, with the victim's cookie
#: sent along where the browser allows (`credentials: "include"`).
ATTACKER_PAGE = """<!doctype html><html><body>
<iframe name="sink" style="display:none"></iframe>
<form id="csrf" method="POST" action="DEMO/api/chat" enctype="text/plain" target="sink">
  <input name='{"content": "form write", "x": "' value='"}'>
</form>
<script>
window.results = {};
(async () => {
  const tries = {
    noCorsPost: () => fetch("DEMO/api/chat", {method: "POST", mode: "no-cors",
      credentials: "include", headers: {"Content-Type": "text/plain"},
      body: JSON.stringify({content: "no-cors write"})}),
    corsJsonPost: () => fetch("DEMO/api/chat", {method: "POST", credentials: "include",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({content: "json write"})}),
    readHistory: () => fetch("DEMO/api/history", {credentials: "include"}).then((r) => r.text()),
  };
  for (const [name, attempt] of Object.entries(tries)) {
    try { await attempt(); results[name] = "sent"; } catch (e) { results[name] = "blocked"; }
  }
  await new Promise((done) => {
    const img = new Image();
    img.onload = img.onerror = () => { results.img = "done"; done(); };
    img.src = "DEMO/api/ask?q=" + encodeURIComponent("image write");
  });
  document.getElementById("csrf").submit();
  results.form = "submitted";
})();
</script></body></html>"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_chromium()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context()
    try:
        yield context
    finally:
        context.close()


def new_page(context: BrowserContext) -> tuple[Page, list[Any]]:
    """A page of `context`, and the list its uncaught errors go to."""
    page = context.new_page()
    errors: list[Any] = []
    page.on("pageerror", lambda error: errors.append(error))
    return page, errors


def chat(page: Page, text: str) -> dict[str, Any]:
    """Send `text` from the page; wait for its reply to end; the `/api/chat` answer."""
    with page.expect_response("**/api/chat") as started:
        page.locator("#input").fill(text)
        page.locator("#send").click()
    answer: dict[str, Any] = started.value.json()
    wait_until_idle(page)
    return answer


def shown(page: Page) -> list[str]:
    texts: list[str] = page.evaluate(
        "() => [...document.querySelectorAll('.msg')].map((m) => m.innerText)"
    )
    return texts


def test_another_origin_cannot_write_to_or_read_the_chat(
    context: BrowserContext, tmp_path: Path
) -> None:
    """A browser with a chat open visits a page on another port: its no-cors text/plain POST,
    its CORS JSON POST, its form POST and its `<img src=".../api/ask?q=...">` are all refused
    (403, or blocked by the browser before sending), its read of the history is blocked; nothing
    is stored and the engine runs for nobody but the user."""

    async def attacker(request: Request) -> Response:
        return HTMLResponse(ATTACKER_PAGE.replace("DEMO", request.query_params["demo"]))

    with (
        running_demo(tmp_path / "demo.sqlite3") as demo,
        uvicorn_server(Starlette(routes=[Route("/", attacker)])) as attacker_url,
    ):
        assert attacker_url.rsplit(":", 1)[0] == demo.url.rsplit(":", 1)[0]  # same host
        page, errors = new_page(context)
        page.goto(f"{demo.url}/")
        chat(page, "my own message")
        stored = demo.stored()
        assert len(stored) == 2
        assert demo.engine.calls == 1

        evil, _ = new_page(context)
        evil.goto(f"{attacker_url}/?demo={demo.url}")
        results = evil.wait_for_function(
            "() => window.results.form && window.results", timeout=DEADLINE_MS
        ).json_value()
        assert results["readHistory"] == "blocked"  # CORS: the page cannot read the answer
        recorder = demo.recorder
        wait_until(
            lambda: (
                len(recorder.answered("POST", "/api/chat")) >= 3
                and recorder.answered("GET", "/api/ask")
            ),
            "the attacks reached the demo",
        )
        # The form and the no-cors POST reached the server and were refused; the CORS JSON POST
        # may be stopped at its preflight (OPTIONS) by the browser, or reach us and be refused.
        assert recorder.answered("POST", "/api/chat")[0] == 200  # the user's own message
        assert set(recorder.answered("POST", "/api/chat")[1:]) == {403}
        assert recorder.answered("GET", "/api/ask") == [403]
        assert demo.stored() == stored
        assert demo.engine.calls == 1
        assert not errors


def test_a_second_browser_cannot_read_or_drive_the_first_ones_chat(
    browser: Browser, tmp_path: Path
) -> None:
    """Two browser contexts (two people): each gets its own session cookie; the second sees an
    empty chat (with the hint), cannot follow or stop the first one's reply, and its own message
    never shows up in the first one's chat."""
    with running_demo(tmp_path / "demo.sqlite3", CountingEngine(delay=0.01)) as demo:
        first_context = browser.new_context()
        second_context = browser.new_context()
        try:
            first, _ = new_page(first_context)
            first.goto(f"{demo.url}/")
            reply = chat(first, "first person's secret")
            first_chat = shown(first)
            assert len(first_chat) == 2

            second, _ = new_page(second_context)
            second.goto(f"{demo.url}/")
            second.wait_for_selector(".hint", timeout=DEADLINE_MS)
            assert shown(second) == []
            cookies = [
                {c["name"]: c["value"] for c in ctx.cookies()}[SESSION_COOKIE]
                for ctx in (first_context, second_context)
            ]
            assert cookies[0] != cookies[1]
            follow_status = second.evaluate(
                "(url) => fetch(url).then((r) => r.status)",
                f"/api/replies/{reply['reply']}",
            )
            assert follow_status == 403
            stop_status = second.evaluate(
                """(url) => fetch(url, {method: "POST", body: "{}",
                    headers: {"Content-Type": "application/json"}}).then((r) => r.status)""",
                f"/api/replies/{reply['reply']}/stop",
            )
            assert stop_status == 404

            chat(second, "second person's message")
            assert len(shown(second)) == 2
            first.reload()
            first.wait_for_function(
                "() => document.querySelectorAll('.msg').length === 2", timeout=DEADLINE_MS
            )
            assert shown(first) == first_chat
        finally:
            first_context.close()
            second_context.close()


def test_the_page_hint_stop_button_and_favicon(context: BrowserContext, tmp_path: Path) -> None:
    """The empty chat shows a hint, gone once a message is sent; the disabled Stop button is
    grey, not the enabled red; the favicon is inline, and nothing the page requests fails (no
    favicon 404, no console error)."""
    failures: list[str] = []
    with running_demo(tmp_path / "demo.sqlite3", CountingEngine(delay=0.3)) as demo:
        page, errors = new_page(context)
        page.on("response", lambda r: failures.append(r.url) if r.status >= 400 else None)
        # (A stream the page closes itself ends as net::ERR_ABORTED: not a failure.)
        page.on(
            "requestfailed",
            lambda r: None if r.failure == "net::ERR_ABORTED" else failures.append(r.url),
        )
        page.on("console", lambda m: failures.append(m.text) if m.type == "error" else None)
        page.goto(f"{demo.url}/")
        hint = page.wait_for_selector(".hint", timeout=DEADLINE_MS)
        assert hint is not None
        assert "press Send" in hint.inner_text()
        color = "(id) => getComputedStyle(document.getElementById(id)).backgroundColor"
        assert page.locator("#stop").is_disabled()
        disabled_stop = page.evaluate(color, "stop")
        page.locator("#input").fill("hello")
        page.locator("#send").click()
        page.wait_for_selector("#stop:not([disabled])", timeout=DEADLINE_MS)
        enabled_stop = page.evaluate(color, "stop")
        assert page.locator(".hint").count() == 0
        assert enabled_stop == "rgb(192, 57, 43)"
        assert disabled_stop != enabled_stop
        assert disabled_stop == page.evaluate(color, "send")  # the grey of the disabled Send
        page.locator("#stop").click()
        wait_until_idle(page)
        assert page.evaluate(color, "stop") == disabled_stop
        icon = page.get_attribute("link[rel=icon]", "href")
        assert icon is not None
        assert icon.startswith("data:image/svg+xml,")  # inline: no /favicon.ico request
        assert failures == []
        assert not errors


def test_a_server_restart_mid_reply_gives_reset_and_the_page_recovers(
    context: BrowserContext, tmp_path: Path
) -> None:
    """A slow reply is streaming when the server stops; a new server on the same port and
    database has no such reply, so the reconnecting EventSource gets `reset`: the page stops
    streaming, re-enables Send, and shows the chat as stored."""
    database = tmp_path / "demo.sqlite3"
    port = free_port()
    page, errors = new_page(context)
    demo: Demo
    with running_demo(database, CountingEngine(delay=0.5), port) as demo:
        page.goto(f"{demo.url}/")
        page.locator("#input").fill("a long one")
        page.locator("#send").click()
        page.wait_for_function(
            "() => (document.querySelector('.msg.assistant')?.innerText ?? '').length > 0",
            timeout=DEADLINE_MS,
        )
    with running_demo(database, CountingEngine(delay=0.01), port) as demo:
        wait_until_idle(page)
        assert "restarted" in page.inner_text("#status")
        stored = [content for _, _, content in demo.stored()]
        page.wait_for_function(
            "(n) => document.querySelectorAll('.msg').length === n",
            arg=len(stored),
            timeout=DEADLINE_MS,
        )
        assert shown(page) == stored
        assert stored[0] == "a long one"
        assert page.locator("#send").is_enabled()
    assert not errors
