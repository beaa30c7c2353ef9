"""A server process for the shutdown tests: `python -m apps.shutdown_server` from `tests/`.

It serves one application, whose streams are tracked by one `StreamRegistry(farewell="server
going away", retry=500)`, with a real server on the main thread, so the server installs its own
signal handlers and the registry chains its handlers in front of them, exactly as in production.
Nothing is patched.  `--rounds N` serves N times in a row in the same process, each time on a new
port: after a SIGINT ends one server, the next one starts.

    --server uvicorn     a Starlette app (`lifespan=registry.lifespan`) under `uvicorn.Server.run()`
    --server werkzeug    an `SSEWSGIApp` under werkzeug's threaded server, inside
                         `registry.serving()`

Routes:
    /health                           200 "ok"
    /stream?kind=async|sync&interval  0, 1, 2, ... one event every `interval` seconds, forever

What it prints on stdout, one line each, flushed:
    port <n>        round's server listens on 127.0.0.1:<n> (the socket is bound and listening)
    stopped <r>     round <r>'s server has returned (after the SIGINT that ended it)
    exit            the process is about to exit normally
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

from ssekit import StreamRegistry

#: The registry's farewell and reconnection hint, checked by the tests.
FAREWELL = "server going away"
FAREWELL_RETRY = 500
#: How long the werkzeug round waits for its streams to write their farewell before it returns.
DRAIN_SECONDS = 5.0


def say(line: str) -> None:
    print(line, flush=True)


def ticks_sync(interval: float) -> Iterator[int]:
    n = 0
    while True:
        yield n
        n += 1
        time.sleep(interval)


async def ticks_async(interval: float) -> AsyncIterator[int]:
    n = 0
    while True:
        yield n
        n += 1
        await asyncio.sleep(interval)


def ticks(query: dict[str, str]) -> Iterator[int] | AsyncIterator[int]:
    interval = float(query.get("interval", "0.1"))
    return ticks_sync(interval) if query.get("kind") == "sync" else ticks_async(interval)


def listening_socket() -> socket.socket:
    """A socket bound to a free port of 127.0.0.1 and listening: clients may connect at once."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


# -- uvicorn + Starlette -----------------------------------------------------------------------


def starlette_app(registry: StreamRegistry) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from ssekit.adapters.starlette import SSEResponse

    async def health(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def stream(request: Request) -> SSEResponse:
        return SSEResponse(ticks(dict(request.query_params)), heartbeat=1.0)

    return Starlette(
        routes=[Route("/health", health), Route("/stream", stream)],
        lifespan=registry.lifespan,
    )


def serve_uvicorn(app: Any) -> None:
    """One uvicorn server until a signal stops it; uvicorn re-raises a SIGINT it captured."""
    import uvicorn

    sock = listening_socket()
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    say(f"port {sock.getsockname()[1]}")
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the SIGINT it captured
        server.run(sockets=[sock])


# -- werkzeug + SSEWSGIApp ---------------------------------------------------------------------


def wsgi_app(registry: StreamRegistry) -> Callable[..., Iterable[bytes]]:
    from ssekit.adapters.wsgi import SSEWSGIApp

    streams = SSEWSGIApp(
        lambda request: ticks(dict(request.query)), registry=registry, heartbeat=1.0
    )

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/health":
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
            return [b"ok"]
        return streams(environ, start_response)

    return app


def serve_werkzeug(app: Any, registry: StreamRegistry) -> None:
    """werkzeug's threaded server until SIGINT; then wait for the streams to say farewell.

    werkzeug's request threads are daemon threads: returning at once would let the process exit
    before they have written the farewell, so the round waits until the registry is empty.
    """
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)  # bound and listening already
    say(f"port {server.port}")
    # werkzeug's serve_forever() swallows KeyboardInterrupt itself; suppress() is for safety
    with registry.serving(), contextlib.suppress(KeyboardInterrupt):
        server.serve_forever(poll_interval=0.05)
    deadline = time.monotonic() + DRAIN_SECONDS
    while len(registry) and time.monotonic() < deadline:
        time.sleep(0.01)
    server.server_close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", choices=("uvicorn", "werkzeug"), default="uvicorn")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv)
    # A parent without job control (a shell's `cmd &`) may start us with SIGINT ignored, which
    # the registry would faithfully chain to; a server process wants Python's default.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    registry = StreamRegistry(farewell=FAREWELL, retry=FAREWELL_RETRY)
    if args.server == "uvicorn":
        app = starlette_app(registry)
        for round_number in range(1, args.rounds + 1):
            serve_uvicorn(app)
            say(f"stopped {round_number}")
    else:
        app = wsgi_app(registry)
        for round_number in range(1, args.rounds + 1):
            serve_werkzeug(app, registry)
            say(f"stopped {round_number}")
    say("exit")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
