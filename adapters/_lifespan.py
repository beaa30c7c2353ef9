"""The ASGI lifespan of a `StreamRegistry`: its signal handlers while serving, streams ended after.

The server's SIGINT/SIGTERM then first ends open streams with the registry's farewell, so it
can stop at once.  `registry_lifespan()` answers the lifespan itself (`SSEApp`, Django's ASGI
application); `lifespan_around()` lets a wrapped app answer it (the ASGI `SSEMiddleware`).
"""

from __future__ import annotations

import logging

from ssekit._registry import StreamRegistry
from ssekit.adapters._asgi_common import ASGIApp, Message, Receive, Scope, Send

__all__ = ["lifespan_around", "registry_lifespan"]

logger = logging.getLogger("ssekit")


async def registry_lifespan(registry: StreamRegistry, receive: Receive, send: Send) -> None:
    """A lifespan of its own: the registry's signal handlers while serving, streams ended after."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            registry.install_signal_handlers()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            registry.close_all()
            registry.restore_signal_handlers()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def lifespan_around(
    app: ASGIApp, registry: StreamRegistry, scope: Scope, receive: Receive, send: Send
) -> None:
    """`app`'s lifespan, with the registry's handlers chained once its startup completes.

    Open streams end when the shutdown arrives, before `app` sees it.  An app that refuses
    lifespan scopes gets them answered by `registry_lifespan()` instead.
    """
    received = False

    async def app_receive() -> Message:
        nonlocal received
        message = await receive()
        received = True
        if message["type"] == "lifespan.shutdown":
            registry.close_all()  # the streams end first, so the server can stop
        return message

    async def app_send(message: Message) -> None:
        if message["type"] == "lifespan.startup.complete":
            registry.install_signal_handlers()
        elif message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            registry.restore_signal_handlers()
        await send(message)

    try:
        await app(scope, app_receive, app_send)
    except Exception:
        if received:
            raise
        # The app takes no lifespan (Django's ASGI handler raises for it): answer it here.
        logger.debug("ssekit: the wrapped app refused the lifespan scope; handling it here")
        await registry_lifespan(registry, receive, send)
