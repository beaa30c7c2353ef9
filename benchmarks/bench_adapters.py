"""Latencies a client of each adapter can feel, under every server the contract suite uses.

Run:  python benchmarks/bench_adapters.py [--trials N] [--pairs wsgi-werkzeug,asgi-uvicorn,...]

For every adapter x server pair (raw WSGI and Flask under werkzeug and gunicorn's gthread and
gevent workers; raw ASGI, Starlette and FastAPI under uvicorn and hypercorn), serving the test
suite's apps (`tests/apps`) with a heartbeat of 0.5 s:

- `disconnect -> finally`: a client opens `/hold`, reads the first event and leaves; the time
  until the source's `finally` ran.  Per source kind: `sync` (blocked 0.5 s in `next()` between
  ticks), `async` (silent: only heartbeats), `sync-busy` and `async-busy` (never pause).  A WSGI
  server learns that a client left only when it writes, so the trials close at different points
  of the heartbeat period.
- `first bytes`: the time until the headers, and until the `: ok` preamble, of a stream whose
  source has not yielded yet.
- `send_timeout=1`: the time until `SSEApp` and `SSEResponse` drop a client that stopped reading
  (a raw socket with a tiny receive buffer), from the request.

The tests assert only that these things happen (with generous deadlines); this script says how
soon.  It is a report: the exit code is 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

from apps import HEARTBEAT, HOLD_KINDS  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import Response  # noqa: E402
from starlette.routing import Route  # noqa: E402
from support.asgi_servers import Probe, latency_summary, uvicorn_server  # noqa: E402
from support.contract import Pair, pair_params, serve_pair  # noqa: E402
from support.sse_reader import SSEReader  # noqa: E402
from support.wsgi_servers import PREAMBLE, new_tag  # noqa: E402

from ssekit.adapters.asgi import SSEApp  # noqa: E402
from ssekit.adapters.starlette import SSEResponse  # noqa: E402

#: Where in the heartbeat period the client leaves, as fractions of it.
PHASES = (0.0, 0.35, 0.7)
BIG_CHUNK = "x" * 16384


def client() -> httpx.Client:
    return httpx.Client(timeout=httpx.Timeout(10.0))


def disconnects(pair: Pair, kind: str, trials: int) -> list[float]:
    """Seconds from each client's leaving to its source's `finally` (wall clock: the source may
    run in another process)."""
    latencies = []
    with client() as http:
        for n in range(trials):
            tag = new_tag()
            with http.stream("GET", pair.url("/hold", kind=kind, tag=tag)) as response:
                reader = SSEReader(response)
                reader.events(1)
                time.sleep(PHASES[n % len(PHASES)] * HEARTBEAT)
            left = time.time()
            latencies.append(pair.events.wait_for("closed", tag, 30.0) - left)
    return latencies


def first_bytes(pair: Pair, kind: str, trials: int) -> tuple[list[float], list[float]]:
    """Seconds until the headers and until the preamble of a stream whose source waits."""
    headers, preambles = [], []
    with client() as http:
        for _ in range(trials):
            tag = new_tag()
            start = time.monotonic()
            with http.stream("GET", pair.url("/slow", kind=kind, tag=tag)) as response:
                headers.append(time.monotonic() - start)
                reader = SSEReader(response)
                reader.read_until(PREAMBLE)
                preambles.append(time.monotonic() - start)
                pair.events.record("release", tag)
                reader.events(1)
            pair.events.wait_for("closed", tag, 30.0)
    return headers, preambles


def flood(probe: Probe) -> Iterator[str]:
    try:
        while True:
            yield BIG_CHUNK
    finally:
        probe.close()


async def aflood(probe: Probe) -> AsyncIterator[str]:
    try:
        while True:
            yield BIG_CHUNK
            await asyncio.sleep(0)
    finally:
        probe.close()


def stalled_close(app_for: Callable[[Probe], Any], path: str, trials: int) -> list[float]:
    """Seconds from a request that never reads its response to its source's `finally`."""
    figures = []
    for _ in range(trials):
        probe = Probe()
        with uvicorn_server(app_for(probe)) as url:
            host, port = url.removeprefix("http://").split(":")
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.connect((host, int(port)))
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
                sent = time.monotonic()
                figures.append(probe.wait_closed(timeout=30.0) - sent)
    return figures


def sse_response_app(make: Callable[[Probe], Any]) -> Callable[[Probe], Any]:
    def build(probe: Probe) -> Starlette:
        async def endpoint(request: Request) -> Response:
            return SSEResponse(make(probe), send_timeout=1.0)

        return Starlette(routes=[Route("/", endpoint)])

    return build


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=6, help="trials per figure (default 6)")
    parser.add_argument("--pairs", default="", help="comma-separated pair ids (default: all)")
    args = parser.parse_args()
    wanted = {name for name in args.pairs.split(",") if name}
    pairs = [param.values[0] for param in pair_params() if not wanted or param.id in wanted]
    # uvicorn logs each dropped client ("ASGI callable returned without completing response").
    logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
    print(f"heartbeat {HEARTBEAT} s, {args.trials} trials per figure")
    with tempfile.TemporaryDirectory() as workdir:
        for adapter, server in pairs:
            directory = Path(workdir) / f"{adapter}-{server}"
            directory.mkdir()
            with serve_pair(adapter, server, directory) as pair:
                print(f"\n{pair}")
                for kind in HOLD_KINDS:
                    figures = disconnects(pair, kind, args.trials)
                    print("  " + latency_summary(f"disconnect -> finally, {kind:10}", figures))
                for kind in ("sync", "async"):
                    headers, preambles = first_bytes(pair, kind, args.trials)
                    print("  " + latency_summary(f"first bytes {kind:5}, headers ", headers))
                    print("  " + latency_summary(f"first bytes {kind:5}, preamble", preambles))
    print("\nsend_timeout=1 under uvicorn, a client that stopped reading")
    for name, make in (("sync", flood), ("async", aflood)):
        figures = stalled_close(lambda p, m=make: SSEApp(lambda r: m(p), send_timeout=1.0), "/", 3)
        print("  " + latency_summary(f"SSEApp {name:5}, request -> finally", figures))
        figures = stalled_close(sse_response_app(make), "/", 3)
        print("  " + latency_summary(f"SSEResponse {name:5}, request -> finally", figures))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
