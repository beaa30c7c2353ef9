"""One adapter served by one server, as the adapter contract suite sees it (a `Pair`).

Every adapter's test app (`apps.<adapter>_app`) serves the same routes with the same sources
(see `apps`), so a test asks a pair for a route's URL and reads what any adapter under any
server must send.  WSGI adapters run under werkzeug (in a thread) and gunicorn's gthread and
gevent workers (subprocesses); ASGI adapters under uvicorn and hypercorn (in a thread).  Sources
report to the event log whichever process they run in.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from support.asgi_servers import ASGI_SERVERS
from support.wsgi_servers import EventLog, Server, serve

#: The adapters, the app module serving the contract routes with each, and their servers.
WSGI_ADAPTERS = ("wsgi", "flask", "django")
ASGI_ADAPTERS = ("asgi", "starlette", "fastapi", "django_asgi")
ADAPTERS = WSGI_ADAPTERS + ASGI_ADAPTERS
WSGI_SERVERS = ("werkzeug", "gthread", "gevent")
#: Adapters whose own code answers a refused method or a failed factory (the others leave both
#: to their framework).
ANSWERS_ITSELF = ("wsgi", "asgi")

_NO_GEVENT = pytest.mark.skipif(
    importlib.util.find_spec("gevent") is None, reason="gunicorn's gevent worker needs gevent"
)


def servers_of(adapter: str) -> tuple[str, ...]:
    return WSGI_SERVERS if adapter in WSGI_ADAPTERS else tuple(ASGI_SERVERS)


def pair_params(*adapters: str) -> list[Any]:
    """`pytest.param((adapter, server))` for every server of each adapter (all by default)."""
    return [
        pytest.param(
            (adapter, server),
            id=f"{adapter}-{server}",
            marks=[_NO_GEVENT] if server == "gevent" else [],
        )
        for adapter in adapters or ADAPTERS
        for server in servers_of(adapter)
    ]


def create_app(adapter: str, events: str) -> Any:
    """The adapter's test app, in this process, its sources logging to `events`."""
    return importlib.import_module(f"apps.{adapter}_app").create_app(events)


@dataclass
class Pair:
    """An adapter served by a server: where to send requests, what its sources logged."""

    adapter: str
    server: Server

    @property
    def events(self) -> EventLog:
        return self.server.events

    @property
    def is_gunicorn(self) -> bool:
        return self.server.name in ("gthread", "gevent")

    def url(self, path: str, **query: str) -> str:
        """The URL of `path` with the query parameters given."""
        tail = f"?{urlencode(query)}" if query else ""
        return f"{self.server.url}{path}{tail}"

    def __str__(self) -> str:
        return f"{self.adapter} under {self.server.name}"


@contextlib.contextmanager
def serve_pair(adapter: str, server: str, workdir: Path) -> Iterator[Pair]:
    """Serve `adapter`'s test app with `server` until the block ends."""
    if adapter in WSGI_ADAPTERS:
        target = f"apps.{adapter}_app:create_app()"
        maker = importlib.import_module(f"apps.{adapter}_app").create_app
        with serve(server, target, maker, workdir) as running:
            yield Pair(adapter, running)
        return
    events = EventLog(workdir / "events.log")
    with ASGI_SERVERS[server](create_app(adapter, str(events.path))) as url:
        yield Pair(adapter, Server(server, url, events))


def served_pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    """Body of a module-scoped `pair` fixture whose params are `pair_params(...)`."""
    adapter, server = request.param
    with serve_pair(adapter, server, tmp_path_factory.mktemp(f"{adapter}-{server}")) as running:
        yield running
