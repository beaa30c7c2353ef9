"""What the demo's tests share: an engine that counts its calls, a demo app under uvicorn whose
requests are recorded, a look into its SQLite file, and waiting for its page to be idle."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from support.asgi_servers import uvicorn_server

from ssekit.ai import ChatMessage, DemoEngine
from ssekit.demo import create_app

if TYPE_CHECKING:  # playwright is needed only by the browser tests that call it
    from playwright.sync_api import Page


class CountingEngine:
    """`DemoEngine` that counts how often it was asked to answer (from any thread)."""

    def __init__(self, delay: float = 0.01) -> None:
        self.engine = DemoEngine(delay=delay)
        self._lock = threading.Lock()
        self._calls = 0

    @property
    def calls(self) -> int:
        with self._lock:
            return self._calls

    def stream(
        self, messages: Iterable[ChatMessage], **params: Any
    ) -> AsyncIterator[dict[str, Any]]:
        with self._lock:
            self._calls += 1
        return self.engine.stream(messages, **params)


@dataclass
class Seen:
    """One request the demo received: method, path, and the status it answered."""

    method: str
    path: str
    status: int | None = None


@dataclass
class RecordingApp:
    """Wraps an ASGI app; records every HTTP request and the status of its answer."""

    app: ASGIApp
    seen: list[Seen] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        record = Seen(scope["method"], scope["path"])

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
                self.seen.append(record)
            await send(message)

        await self.app(scope, receive, recording_send)

    def answered(self, method: str, path: str) -> list[int | None]:
        return [s.status for s in list(self.seen) if s.method == method and s.path == path]


@dataclass
class Demo:
    url: str
    database: Path
    engine: CountingEngine
    recorder: RecordingApp

    def stored(self) -> list[tuple[str, str, str]]:
        """Every stored message of every chat: (session, role, content)."""
        if not self.database.exists():
            return []
        with contextlib.closing(sqlite3.connect(self.database)) as db:
            try:
                rows = db.execute(
                    "SELECT parent_id, role, content FROM ssekit_messages ORDER BY seq"
                ).fetchall()
            except sqlite3.OperationalError:  # no table yet: nothing was ever stored
                return []
        return [(str(a), str(b), str(c)) for a, b, c in rows]

    def database_bytes(self) -> int:
        """The size of the SQLite file and its WAL and shared-memory files."""
        files = [self.database, *(Path(f"{self.database}{s}") for s in ("-wal", "-shm"))]
        return sum(f.stat().st_size for f in files if f.exists())


@contextlib.contextmanager
def running_demo(
    database: Path, engine: CountingEngine | None = None, port: int = 0, **options: Any
) -> Iterator[Demo]:
    """The demo app on `database`, under uvicorn on 127.0.0.1:`port` (0: any free port)."""
    engine = engine if engine is not None else CountingEngine()
    app = create_app(database=str(database), engine=engine, **options)
    recorder = RecordingApp(app)
    with uvicorn_server(recorder, port=port) as url:
        yield Demo(url, database, engine, recorder)


#: How long a page may take to finish a reply (far more than it needs), in ms.
IDLE_DEADLINE_MS = 20_000


def wait_until_idle(page: Page) -> None:
    """Wait until the page's reply is over: Send enabled, Stop disabled, no bubble streaming."""
    page.wait_for_function(
        """() => !document.getElementById("send").disabled
              && document.getElementById("stop").disabled
              && !document.querySelector(".streaming")""",
        timeout=IDLE_DEADLINE_MS,
    )
