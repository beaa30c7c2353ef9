"""The fake AI upstreams served over real HTTP, and reading what an engine streams from them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, Protocol, TypeVar

from support.asgi_servers import uvicorn_server
from support.waiting import DEADLINE


class _Fake(Protocol):
    app: Any


F = TypeVar("F", bound=_Fake)


def serve_fake(fake: F) -> Iterator[F]:
    """Serve `fake.app` under uvicorn and yield `fake` with `base_url` set to its `/v1` root;
    a module fixture is `yield from serve_fake(FakeOpenAI())`."""
    with uvicorn_server(fake.app) as url:
        fake.base_url = f"{url}/v1"  # type: ignore[attr-defined]
        yield fake


async def collect(source: AsyncIterator[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every chunk of an engine's stream, as plain dicts (failing after `DEADLINE`)."""

    async def run() -> list[dict[str, Any]]:
        return [dict(chunk) async for chunk in source]

    return await asyncio.wait_for(run(), DEADLINE)


def of_kind(chunks: list[dict[str, Any]], key: str) -> list[Any]:
    """The values of `key` in the chunks that have it, in order."""
    return [chunk[key] for chunk in chunks if key in chunk]
