"""The Django test project (`apps.django_project`) as an ASGI application (with the lifespan
that chains the registry's signal handlers).

For the tests' thread-leak check, the app keeps Django's helper threads alive for the server's
whole life instead of per request: Django's ASGI handler logs every 4xx and 5xx response on the
loop's default executor (whose threads start here, at lifespan startup), and runs a request's
sync code on an executor of its own that a fresh thread shuts down after the response has been
sent (here one executor, owned by the app, serves every request).
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext

from apps import django_project

#: Threads of the loop's default executor started up front (Django may log two errors at once).
_DEFAULT_EXECUTOR_THREADS = 4


class _SteadyThreads:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="django-sync")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            loop = asyncio.get_running_loop()
            barrier = threading.Barrier(_DEFAULT_EXECUTOR_THREADS)  # all of them at once
            await asyncio.gather(
                *(loop.run_in_executor(None, barrier.wait) for _ in range(barrier.parties))
            )
            await loop.run_in_executor(self.executor, lambda: None)
            try:
                await self.app(scope, receive, send)
            finally:
                self.executor.shutdown(wait=False)
            return
        async with ThreadSensitiveContext(executor=self.executor):
            await self.app(scope, receive, send)


def create_app(events: str | None = None) -> Any:
    """The ASGI application; sources log to `events` (default: `SSEKIT_TEST_EVENTS`)."""
    django_project.configure(events)
    from ssekit.adapters.django import get_asgi_application

    return _SteadyThreads(get_asgi_application())
