"""The `ssekit demo` chat app: a page that streams replies token by token over EventSource.

Built from ssekit's own parts: `SQLiteMemory` keeps each chat (it survives reloads and server
restarts), each reply is a run (`ssekit.runs`) that goes on when the tab closes and that a
dropped connection resumes with `Last-Event-ID`, and `SSEResponse` serves it under Starlette.
Replies come from the offline `DemoEngine`, or from the engine `create_app` is given (an
OpenAI-compatible or Anthropic API, from `ssekit demo --provider`).

Routes: `GET /` the page; `GET /api/history`; `POST /api/chat` `{"content"}` starts a reply and
returns its id (429 while the session's previous reply runs); `GET /api/replies/{id}` streams it
(`message` events with `{"content"}` chunks, then `done`); `POST /api/replies/{id}/stop` stops it
(the partial reply is kept); `GET /api/ask?q=...` streams a one-off reply directly (for
`curl -N`).

Safe by default, since it is what people run first and copy from:

- The server issues each browser its session: an unguessable id in an `HttpOnly`,
  `SameSite=Lax` cookie.  A browser reads and writes only its own chat and replies; a caller
  without the cookie gets a fresh session (there is no shared default).
- Every request must name an allowed `Host` (127.0.0.1, localhost and [::1] by default, any
  port), else 400: a DNS-rebound name never reaches the app.
- State changes are POSTs with `Content-Type: application/json` (else 415) whose `Origin` is the
  page's own (else 403), with a body of at most `max_body` bytes (else 413, read no further).
  `GET /api/ask` runs the engine, so a browser may call it only from the page's own origin
  (`Sec-Fetch-Site`), never from an image or a link on another site.
- A reply's error shows only a `StreamError`'s text; anything else is logged and reported with
  a generic message.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterable
from http.cookies import SimpleCookie
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ssekit._event import Event
from ssekit._registry import StreamRegistry
from ssekit.adapters.starlette import SSEResponse, last_event_id
from ssekit.ai import DemoEngine, Engine
from ssekit.broker import MemoryBroker
from ssekit.memory import SQLiteMemory
from ssekit.runs import _GENERIC_ERROR, RunLimitReached, RunNotFound, Runs

__all__ = ["DEFAULT_ALLOWED_HOSTS", "MAX_BODY", "SESSION_COOKIE", "create_app"]

#: A reply nobody listens to any more is stopped after this many seconds (a reload or a
#: dropped connection comes back well within it).
ABANDONED_AFTER = 15.0
#: A reply's longest run, and how long its events stay to resume from once published, in seconds.
_RUN_TIMEOUT = 600.0
_HISTORY_SECONDS = 600.0
#: The cookie holding the browser's session id.
SESSION_COOKIE = "ssekit_session"
#: Host names the demo answers to on any port; `create_app(allowed_hosts=...)` adds more.
DEFAULT_ALLOWED_HOSTS = ("127.0.0.1", "localhost", "[::1]")
#: The largest request body accepted, in bytes.
MAX_BODY = 32 * 1024
#: The longest message or question, in characters.
MAX_CONTENT = 8000
#: What the client sees when a reply fails for a reason that is not a `StreamError`.
REPLY_FAILED = _GENERIC_ERROR

_SESSION_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
_SESSION_MAX_AGE = 365 * 24 * 3600
#: What a browser's `Sec-Fetch-Site` says for a request from the page itself or typed by the user.
_OWN_FETCH_SITES = frozenset({"same-origin", "none"})


def _valid_session(value: str | None) -> bool:
    return value is not None and 20 <= len(value) <= 64 and not set(value) - _SESSION_CHARS


def _session_of(request: Request) -> tuple[str, bool]:
    """The request's session id, and whether it is new (then the response must set the cookie)."""
    value = request.cookies.get(SESSION_COOKIE)
    if value is not None and _valid_session(value):
        return value, False
    return secrets.token_urlsafe(24), True


def _cookie_headers(session: str, new: bool) -> dict[str, str]:
    """The `Set-Cookie` header that hands a new session to the browser (none for a known one)."""
    if not new:
        return {}
    cookie: SimpleCookie = SimpleCookie()
    cookie[SESSION_COOKIE] = session
    morsel = cookie[SESSION_COOKIE]
    morsel["path"] = "/"
    morsel["httponly"] = True
    morsel["samesite"] = "Lax"
    morsel["max-age"] = _SESSION_MAX_AGE
    return {"set-cookie": morsel.OutputString()}


class _Owners:
    """Which session started each run, kept while the broker may still hold the run's events
    (`keep` seconds from its start).  A run this process does not know has no events here to
    show (after a restart the reconnecting page gets `reset`), so only known runs are guarded."""

    def __init__(self, keep: float) -> None:
        self.keep = keep
        self._owners: dict[str, tuple[float, str]] = {}  # run id -> (started, session), in order

    def add(self, run_id: str, session: str) -> None:
        now = time.monotonic()
        while self._owners:  # the oldest first: stop at the first one still kept
            oldest = next(iter(self._owners))
            if now - self._owners[oldest][0] <= self.keep:
                break
            del self._owners[oldest]
        self._owners[run_id] = (now, session)

    def owner(self, run_id: str) -> str | None:
        entry = self._owners.get(run_id)
        return None if entry is None else entry[1]


def _split_host(host: str) -> tuple[str, str | None]:
    """`"name:port"` -> ("name", "port"); IPv6 literals keep their brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        name, _, rest = host.partition("]")
        return name + "]", rest[1:] if rest.startswith(":") else None
    name, colon, port = host.partition(":")
    return name, port if colon else None


def _host_allowed(host: str | None, allowed: frozenset[str]) -> bool:
    """`host` is an allowed name (any port), or an allowed `name:port` exactly."""
    if not host:
        return False
    name, port = _split_host(host)
    return name in allowed or (port is not None and f"{name}:{port}" in allowed)


def _refuse(status: int, reason: str) -> Response:
    return JSONResponse({"error": reason}, status_code=status)


class _Guard:
    """ASGI middleware: allowed hosts on every request; for every other method than GET/HEAD,
    the page's own `Origin`, a JSON body, and at most `max_body` bytes of it (read incrementally,
    so an oversized body is refused before it is held in memory)."""

    def __init__(self, app: ASGIApp, *, allowed_hosts: frozenset[str], max_body: int) -> None:
        self.app = app
        self.allowed_hosts = allowed_hosts
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host")
        if not _host_allowed(host, self.allowed_hosts):
            reason = "Unknown Host header: start the demo with --allowed-host NAME to serve it."
            await _refuse(400, reason)(scope, receive, send)
            return
        if scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        refusal = _check_write(headers, host or "", self.max_body)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_body:
                await _refuse(413, f"The body is over {self.max_body} bytes.")(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(bytes(body), receive), send)


def _check_write(headers: Headers, host: str, max_body: int) -> Response | None:
    """The refusal for a state-changing request that is not from the page itself, else None."""
    origin = headers.get("origin")
    if origin is None or urlsplit(origin).netloc.lower() != host.strip().lower():
        return _refuse(403, "Cross-origin request refused: the Origin must be this page's.")
    media_type = headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        return _refuse(415, "The body must be JSON (Content-Type: application/json).")
    length = headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > max_body):
        return _refuse(413, f"The body is over {max_body} bytes.")
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app the body read already, then the real `receive`."""
    pending = True

    async def replayed() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def _content(value: object, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string.")
    if len(value) > MAX_CONTENT:
        raise ValueError(f"{name} must be at most {MAX_CONTENT} characters.")
    return value.strip()


def create_app(
    *,
    database: str = "ssekit-demo.sqlite3",
    engine: Engine | None = None,
    registry: StreamRegistry | None = None,
    allowed_hosts: Iterable[str] = (),
    max_body: int = MAX_BODY,
) -> Starlette:
    """The demo's Starlette app, storing chats in `database` and answering with `engine`.

    `allowed_hosts` adds names (any port) or `name:port`s to `DEFAULT_ALLOWED_HOSTS`;
    `max_body` caps a request body in bytes.
    """
    if isinstance(allowed_hosts, str):
        raise TypeError("allowed_hosts must be an iterable of host names, not a str.")
    if max_body < 1:
        raise ValueError(f"max_body must be at least 1 byte, not {max_body!r}.")
    hosts = frozenset(h.strip().lower() for h in (*DEFAULT_ALLOWED_HOSTS, *allowed_hosts))
    engine = engine if engine is not None else DemoEngine()
    broker = MemoryBroker(history_size=5000, history_seconds=_HISTORY_SECONDS)
    runs = Runs(broker, timeout=_RUN_TIMEOUT, abandon_after=ABANDONED_AFTER, max_per_session=1)
    owners = _Owners(keep=_RUN_TIMEOUT + _HISTORY_SECONDS + 60)  # + time to end a stopped run
    registry = registry if registry is not None else StreamRegistry(retry=1000)
    page = resources.files("ssekit.demo").joinpath("page.html").read_text(encoding="utf-8")

    def memory_of(session: str) -> SQLiteMemory:
        return SQLiteMemory(database, parent=("ChatSession", session))

    def may_use(request: Request, *, unknown: bool) -> bool:
        """Whether the request's session started the run its path names (`unknown`: the
        answer for a run this process does not know)."""
        session, new = _session_of(request)
        owner = owners.owner(request.path_params["reply"])
        return not new and (unknown if owner is None else secrets.compare_digest(owner, session))

    async def index(request: Request) -> Response:
        session, new = _session_of(request)
        return HTMLResponse(page, headers=_cookie_headers(session, new))

    async def history(request: Request) -> Response:
        session, new = _session_of(request)
        messages = [] if new else memory_of(session).get_messages()
        return JSONResponse({"messages": messages}, headers=_cookie_headers(session, new))

    async def chat(request: Request) -> Response:
        session, new = _session_of(request)
        try:
            payload: Any = json.loads(await request.body())
            if not isinstance(payload, dict):
                raise ValueError("the body must be a JSON object.")
            content = _content(payload.get("content"), "content")
        except ValueError as exc:
            return _refuse(400, str(exc))
        memory = memory_of(session)
        messages = [*memory.get_messages(), {"role": "user", "content": content}]
        try:
            run = runs.start(engine, messages, memory=memory)
        except RunLimitReached as exc:
            return _refuse(429, str(exc))  # and nothing stored
        memory.add_user_message(content)  # the run's task starts (and stores its reply) later
        owners.add(run.id, session)
        body = {"reply": run.id}
        return JSONResponse(body, headers=_cookie_headers(session, new))

    async def follow(request: Request) -> Response:
        if not may_use(request, unknown=True):
            return _refuse(403, "Not a reply of this session.")
        try:
            source = runs.follow(request.path_params["reply"], last_event_id(request))
        except RunNotFound:
            return _refuse(404, "No such reply.")
        return SSEResponse(source, heartbeat=10)

    async def stop(request: Request) -> Response:
        if not may_use(request, unknown=False):
            return _refuse(404, "No such reply.")
        return JSONResponse({"stopped": runs.stop(request.path_params["reply"])})

    async def ask(request: Request) -> Response:
        # A GET that runs the engine: a browser may call it only from this page (or a typed URL),
        # never from another site's <img>, link or form; curl sends no Sec-Fetch-Site.
        fetch_site = request.headers.get("sec-fetch-site")
        origin = request.headers.get("origin")
        host = request.headers.get("host", "").lower()
        if (fetch_site is not None and fetch_site not in _OWN_FETCH_SITES) or (
            origin is not None and urlsplit(origin).netloc.lower() != host
        ):
            return _refuse(403, "Cross-site request refused.")
        try:
            question = _content(request.query_params.get("q", "hello"), "q")
        except ValueError as exc:
            return _refuse(400, str(exc))
        session, new = _session_of(request)
        memory = memory_of(session)
        memory.add_user_message(question)
        source = memory.record(engine.stream(memory.get_messages()))
        return SSEResponse(
            source,
            end=Event("[DONE]", event="done"),
            heartbeat=10,
            headers=_cookie_headers(session, new),
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with registry.lifespan(app) as state:
            yield state
        await runs.aclose()  # after the streams closed: a follower sees `reset` on its return

    return Starlette(
        routes=[
            Route("/", index),
            Route("/api/history", history),
            Route("/api/chat", chat, methods=["POST"]),
            Route("/api/replies/{reply}", follow),
            Route("/api/replies/{reply}/stop", stop, methods=["POST"]),
            Route("/api/ask", ask),
        ],
        middleware=[Middleware(_Guard, allowed_hosts=hosts, max_body=max_body)],
        lifespan=lifespan,
    )
