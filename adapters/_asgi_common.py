"""What the ASGI side shares: the message types, the default send timeout, and refusals.

Used by `serve_stream()`, by the apps built on it (`SSEApp`, the ASGI `SSEMiddleware`) and by the
lifespan they and the Django adapter run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ssekit.adapters._core import Refuse

__all__ = ["DEFAULT_SEND_TIMEOUT", "ASGIApp", "Message", "Receive", "Scope", "Send", "send_refusal"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
#: An ASGI application.
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Seconds one write may take before the client is deemed gone (it stopped reading).
DEFAULT_SEND_TIMEOUT = 60.0


async def send_refusal(send: Send, refused: Refuse) -> None:
    """Answer with the refusal's status and its short reason as plain text."""
    body = refused.reason.encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        *((name.lower().encode(), value.encode()) for name, value in refused.headers),
    ]
    await send({"type": "http.response.start", "status": refused.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
