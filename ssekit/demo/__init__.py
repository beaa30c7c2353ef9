"""The `ssekit demo` chat app: a page that streams replies token by token over EventSource.

Built from ssekit's own parts: `SQLiteMemory` keeps each chat (it survives reloads and server
restarts), a `MemoryBroker` topic per reply lets a dropped connection resume with
`Last-Event-ID`, and `SSEResponse` serves it under Starlette.  Replies come from the offline
`DemoEngine`, or from an OpenAI-compatible endpoint when a base URL is given.

Routes: `GET /` the page; `GET /api/history?session=S`; `POST /api/chat` `{"session", "content"}`
starts a reply and returns its id and the event id to follow it `after`; `GET /api/replies/{id}`
streams it (`message` events with `{"content"}` chunks, then `done`);
`POST /api/replies/{id}/stop` stops it (the partial reply is kept); `GET /api/ask?q=...` streams
a one-off reply directly (for `curl -N`).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from ssekit._event import Event
from ssekit._registry import StreamRegistry
from ssekit.adapters.starlette import SSEResponse, broker_route
from ssekit.ai import DemoEngine, Engine
from ssekit.broker import MemoryBroker
from ssekit.memory import SQLiteMemory

__all__ = ["create_app"]

#: A reply nobody listens to any more is stopped after this many seconds (a reload or a
#: dropped connection comes back well within it).
ABANDONED_AFTER = 15.0
_SESSION_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


def _session(value: object) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 64 or set(value) - _SESSION_CHARS:
        raise ValueError("session must be 1 to 64 letters, digits, '-' or '_'.")
    return value


class _Replies:
    """Running replies: each is a task that streams the engine into a broker topic."""

    def __init__(self, engine: Engine, broker: MemoryBroker, database: str) -> None:
        self.engine = engine
        self.broker = broker
        self.database = database
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def memory(self, session: str) -> SQLiteMemory:
        return SQLiteMemory(self.database, parent=("ChatSession", session))

    def start(self, session: str, content: str) -> tuple[str, str]:
        """Start a reply; return its id and the event id to follow it from (nothing is missed)."""
        memory = self.memory(session)
        memory.add_user_message(content)
        reply_id = secrets.token_urlsafe(8)
        after = self.broker.publish(reply_id, {"reply": reply_id}, event="start")
        task = asyncio.get_running_loop().create_task(self._run(reply_id, memory))
        self.tasks[reply_id] = task
        task.add_done_callback(lambda _: self.tasks.pop(reply_id, None))
        return reply_id, after

    async def _run(self, reply_id: str, memory: SQLiteMemory) -> None:
        topic = reply_id
        outcome = "done"
        try:
            source = memory.record(self.engine.stream(memory.get_messages()))
            listened = time.monotonic()
            async for chunk in source:
                await self.broker.apublish(topic, chunk)
                if self.broker.subscribers(topic):
                    listened = time.monotonic()
                elif time.monotonic() - listened > ABANDONED_AFTER:
                    outcome = "abandoned"
                    break
            if outcome == "abandoned":
                await source.aclose()  # stores the partial reply
        except asyncio.CancelledError:
            outcome = "stopped"
        except Exception as exc:
            outcome = "failed"
            await self.broker.apublish(topic, {"message": str(exc)}, event="error")
        await self.broker.apublish(topic, {"outcome": outcome}, event="done")

    def stop(self, reply_id: str) -> bool:
        task = self.tasks.get(reply_id)
        if task is None:
            return False
        task.cancel()
        return True


def create_app(
    *,
    database: str = "ssekit-demo.sqlite3",
    engine: Engine | None = None,
    registry: StreamRegistry | None = None,
) -> Starlette:
    """The demo's Starlette app, storing chats in `database` and answering with `engine`."""
    engine = engine if engine is not None else DemoEngine()
    broker = MemoryBroker(history_size=5000, history_seconds=600)
    replies = _Replies(engine, broker, database)
    registry = registry if registry is not None else StreamRegistry(retry=1000)
    page = resources.files("ssekit.demo").joinpath("page.html").read_text(encoding="utf-8")

    async def index(request: Request) -> Response:
        return HTMLResponse(page)

    async def history(request: Request) -> Response:
        try:
            session = _session(request.query_params.get("session"))
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"messages": replies.memory(session).get_messages()})

    async def chat(request: Request) -> Response:
        try:
            payload: Any = await request.json()
            session = _session(payload.get("session"))
            content = payload.get("content")
            if not isinstance(content, str) or not content.strip():
                raise ValueError("content must be a non-empty string.")
        except (ValueError, AttributeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        reply, after = replies.start(session, content.strip())
        return JSONResponse({"reply": reply, "after": after})

    async def stop(request: Request) -> Response:
        return JSONResponse({"stopped": replies.stop(request.path_params["reply"])})

    async def ask(request: Request) -> Response:
        question = request.query_params.get("q", "hello")
        try:
            memory = replies.memory(_session(request.query_params.get("session", "curl")))
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        memory.add_user_message(question)
        source = memory.record(engine.stream(memory.get_messages()))
        return SSEResponse(source, end=Event("[DONE]", event="done"), heartbeat=10)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with registry.lifespan(app) as state:
            yield state
            for task in list(replies.tasks.values()):
                task.cancel()

    return Starlette(
        routes=[
            Route("/", index),
            Route("/api/history", history),
            Route("/api/chat", chat, methods=["POST"]),
            broker_route("/api/replies/{topic}", broker, heartbeat=10),
            Route("/api/replies/{reply}/stop", stop, methods=["POST"]),
            Route("/api/ask", ask),
        ],
        lifespan=lifespan,
    )
