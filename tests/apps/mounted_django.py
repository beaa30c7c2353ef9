"""A Django project in one file with ssekit mounted by the WSGI or the ASGI middleware.

`python -m apps.mounted_django wsgi|asgi` (from `tests/`) serves it with werkzeug (WSGI) or
uvicorn (ASGI) on the main thread and prints `port <n>` once listening.

    GET  /                  "home" (a Django view)
    POST /publish/<topic>   publishes the body to the broker; answers the event's id (Django)
    GET  /events/<topic>    the broker's topic, resuming from `Last-Event-ID` (the middleware)

Django has no lifespan: under uvicorn the ASGI middleware answers the lifespan itself.
"""

from __future__ import annotations

import socket
import sys
from typing import Any

from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="only-for-tests",
        ALLOWED_HOSTS=["127.0.0.1"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[],
        MIDDLEWARE=[],
    )

from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from ssekit.broker import MemoryBroker

BROKER = MemoryBroker()


def home(request: HttpRequest) -> HttpResponse:
    return HttpResponse("home", content_type="text/plain")


@csrf_exempt
def publish(request: HttpRequest, topic: str) -> HttpResponse:
    return HttpResponse(BROKER.publish(topic, request.body.decode()), content_type="text/plain")


urlpatterns = [path("", home), path("publish/<path:topic>", publish)]


def wsgi_app() -> Any:
    from django.core.wsgi import get_wsgi_application

    from ssekit.adapters.wsgi import SSEMiddleware

    return SSEMiddleware(get_wsgi_application()).add_broker("/events", BROKER, heartbeat=0.5)


def asgi_app() -> Any:
    from django.core.asgi import get_asgi_application

    from ssekit.adapters.asgi import SSEMiddleware

    return SSEMiddleware(get_asgi_application()).add_broker("/events", BROKER, heartbeat=0.5)


def main() -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    if sys.argv[1] == "wsgi":
        from werkzeug.serving import make_server

        server = make_server("127.0.0.1", port, wsgi_app(), threaded=True, fd=listener.fileno())
        print(f"port {port}", flush=True)
        server.serve_forever()
    else:
        import uvicorn

        print(f"port {port}", flush=True)
        config = uvicorn.Config(asgi_app(), log_level="warning", lifespan="on")
        uvicorn.Server(config).run(sockets=[listener])


if __name__ == "__main__":
    main()
