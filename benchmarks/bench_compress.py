"""Compression benchmark: bytes on the wire and per-event latency, compressed vs uncompressed.

Run:  python benchmarks/bench_compress.py [--quick] [--browser]

Two streams: an LLM token stream (1,000 tokens, `{"content": "..."}` per token) and a JSON
progress stream (500 `progress` events with an id).  For each coding installed (identity, gzip,
br, zstd; `pip install -e '.[compress]'` for the last two):

- **bytes**: the stream's real write batches (`to_sse()` output) compressed as the serving core
  does, one flush per batch.  `flush="each"` writes every event on its own (what a token stream
  paced by a model gets); `flush="auto"` here is a source faster than the consumer, so
  `to_sse()` batches what is ready.  The gzip rows at levels 1 and 9 show why the default is 6;
  the row with `Z_SYNC_FLUSH` shows what ssekit's `Z_PARTIAL_FLUSH` saves.
- **CPU**: compressing every batch of the stream, best of several rounds, per event.
- **memory**: resident memory per open stream's compressor after 200 events (200 streams).
- **latency**: the token stream at one event per 10 ms through the adapters' own `compress=`
  (Starlette's `sse_route` under uvicorn, Flask's `sse_response` under werkzeug) to an httpx
  client on 127.0.0.1: time from the source yielding an event to the client parsing it.  With
  `--browser`, also headless Chromium's `EventSource` at one event per 200 ms, from both and
  through nginx (its default proxy settings) in front of uvicorn when nginx is installed: yield
  to `onmessage`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn

import ssekit
from ssekit import EventParser, to_sse
from ssekit._compress import (
    StreamCompressor,
    available_codings,
)
from ssekit._compress import make_compressor as _make

TEXT = (
    "Server-Sent Events let a server push a stream of text events to a browser over one HTTP "
    "response. Each event is a few lines of UTF-8, and a model's reply arrives as one event per "
    "token, so the same field names repeat in every event while the words change. Compression "
    "that flushes after every write keeps each token on time and still shares the window across "
    "the whole reply, which is where most of the savings come from on a slow mobile link."
)


def llm_tokens(n: int = 1000) -> list[dict[str, str]]:
    """`n` tokens in the shape of a model's stream: words with their leading space, drawn at
    random (fixed seed) from the words of `TEXT`, so the reply does not repeat whole sentences
    and batched writes are not flattered."""
    words = sorted(set(TEXT.split(" ")))
    rng = random.Random(7)
    return [{"content": (" " if i else "") + rng.choice(words)} for i in range(n)]


def progress(n: int = 500) -> list[ssekit.Event]:
    return [
        ssekit.Event(
            data=(
                f'{{"job":"import-7f3a","step":{i},"total":{n},"percent":{100 * i / n:.1f},'
                f'"status":"running","message":"processed row {i * 37}"}}'
            ),
            event="progress",
            id=str(i),
        )
        for i in range(n)
    ]


#: How events are grouped into writes: `flush="each"` (one per write, a paced token stream),
#: four per write (`flush=0.05` with tokens at 80/s), and `flush="auto"` with a source faster
#: than the consumer (to_sse() writes whatever is ready together).
BATCHINGS = ("each", "4 per write", "auto")


def batches(chunks: list[Any], batching: str) -> list[bytes]:
    """The write batches `to_sse()` produces for `chunks` (its opening bytes included)."""
    if batching == "4 per write":
        events = list(to_sse(iter(chunks), flush="each", heartbeat=None))
        return [b"".join(events[i : i + 4]) for i in range(0, len(events), 4)]
    return list(to_sse(iter(chunks), flush=batching, heartbeat=None))  # type: ignore[arg-type]


class _SyncFlushGzip:
    """gzip with Z_SYNC_FLUSH per batch, for comparison with ssekit's partial flush."""

    coding = "gzip"

    def __init__(self) -> None:
        self._z = zlib.compressobj(6, zlib.DEFLATED, 31)

    def compress(self, batch: bytes) -> bytes:
        return self._z.compress(batch) + self._z.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._z.flush()


def compressors() -> list[tuple[str, Callable[[], StreamCompressor] | None]]:
    rows: list[tuple[str, Callable[[], StreamCompressor] | None]] = [("identity", None)]
    for coding in available_codings():
        rows.append((coding, lambda coding=coding: _make(coding)))  # type: ignore[misc]
        if coding == "gzip":
            rows.append(("gzip level 1", lambda: _make("gzip", 1)))
            rows.append(("gzip level 9", lambda: _make("gzip", 9)))
            rows.append(("gzip (sync flush)", _SyncFlushGzip))
    return rows


def wire_bytes(pieces: list[bytes], make: Callable[[], StreamCompressor] | None) -> int:
    if make is None:
        return sum(map(len, pieces))
    compressor = make()
    return sum(len(compressor.compress(p)) for p in pieces) + len(compressor.finish())


def cpu_per_event(
    pieces: list[bytes], make: Callable[[], StreamCompressor] | None, events: int, rounds: int
) -> float:
    if make is None:
        return 0.0
    best = float("inf")
    for _ in range(rounds):
        compressor = make()
        start = time.perf_counter()
        for piece in pieces:
            compressor.compress(piece)
        compressor.finish()
        best = min(best, time.perf_counter() - start)
    return best / events * 1e6


_MEMORY_PROBE = """
import sys
import tempfile
from ssekit._compress import make_compressor
def rss():
    with open("/proc/self/status") as status:
        return next(int(l.split()[1]) for l in status if l.startswith("VmRSS:"))
event = b'data: {"content":" token"}\\n\\n'
before = rss()
kept = []
for _ in range(200):
    c = make_compressor(sys.argv[1])
    for i in range(200):
        c.compress(event.replace(b"token", b"t%d" % i))
    kept.append(c)
print((rss() - before) / len(kept))
"""


def memory_per_stream(coding: str) -> float:
    """Resident KiB per open stream's compressor (200 of them, 200 events each), measured in
    a fresh process so that memory freed by earlier rows does not hide it."""
    if platform.system() != "Linux":
        return 0.0
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, coding],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout)


# -- latency over real HTTP ------------------------------------------------------------------------


async def paced(n: int, interval: float) -> AsyncIterator[dict[str, Any]]:
    for i, token in enumerate(llm_tokens(n)):
        if i:
            await asyncio.sleep(interval)
        yield {**token, "t": time.time(), "last": i == n - 1}


PAGE = b"""<!doctype html><meta charset="utf-8"><title>bench</title>
<script>
window.arrivals = [];
window.start = (url) => {
  const es = new EventSource(url);
  es.onmessage = (e) => {
    const d = JSON.parse(e.data);
    window.arrivals.push(performance.timeOrigin + performance.now() - d.t * 1000);
    if (d.last) es.close();
  };
};
</script>"""


def paced_sync(n: int, interval: float) -> Iterator[dict[str, Any]]:
    for i, token in enumerate(llm_tokens(n)):
        if i:
            time.sleep(interval)
        yield {**token, "t": time.time(), "last": i == n - 1}


def _compress_choices() -> dict[str, Any]:
    """Route label -> `compress=`: each coding alone, identity (off), and "default" (True)."""
    choices: dict[str, Any] = {"identity": False, "default": True}
    choices.update((c, (c,)) for c in available_codings())
    return choices


def _size(query: Any) -> tuple[int, float]:
    return int(query.get("n", "100")), float(query.get("interval", "0.01"))


def starlette_app() -> Any:
    """Starlette under uvicorn: `/` a page; `/events/<label>?n=N&interval=S` the paced token
    stream through `sse_route(..., compress=...)`, the ASGI adapters' path."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    from ssekit.adapters.starlette import sse_route

    async def page(request: Any) -> Response:
        return Response(PAGE, media_type="text/html")

    def factory(request: Any) -> AsyncIterator[dict[str, Any]]:
        return paced(*_size(request.query_params))

    routes = [Route("/", page)]
    for label, compress in _compress_choices().items():
        routes.append(
            sse_route(f"/events/{label}", factory, compress=compress, heartbeat=None, flush="each")
        )
    return Starlette(routes=routes)


def flask_app() -> Any:
    """The same under Flask (`sse_response(..., compress=...)`), the WSGI adapters' path."""
    from flask import Flask, request

    from ssekit.adapters.flask import sse_response

    app = Flask("bench_compress")
    app.add_url_rule("/", "page", lambda: PAGE)
    for label, compress in _compress_choices().items():

        def view(compress: Any = compress) -> Any:
            source = paced_sync(*_size(request.args))
            return sse_response(source, compress=compress, heartbeat=None, flush="each")

        app.add_url_rule(f"/events/{label}", f"events_{label}", view)
    return app


@contextlib.contextmanager
def serve_wsgi(app: Any) -> Iterator[str]:
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log in the figures
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", log_config=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.01)
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)


def latency(url: str, accept: str) -> tuple[list[float], int]:
    """Delays (ms) from yield to parse, and the bytes received on the wire."""
    parser = EventParser()
    delays: list[float] = []
    with httpx.stream("GET", url, headers={"Accept-Encoding": accept}, timeout=30) as response:
        for data in response.iter_bytes():
            now = time.time()
            delays.extend((now - event.json()["t"]) * 1000 for event in parser.feed(data))
        wire = response.num_bytes_downloaded
    return delays, wire


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def browser_rows(urls: dict[str, str], n: int, interval: float) -> None:
    """Each coding in headless Chromium: delay from yield to `onmessage`, per event."""
    from playwright.sync_api import sync_playwright

    print(f"\nChromium EventSource, {n} tokens one per {interval * 1000:.0f} ms, flush='each'")
    print(f"  {'route':18} {'coding':10} {'median':>8} {'p95':>8} {'max':>8}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS, headless=True
        )
        try:
            for route, url in urls.items():
                for coding in ("identity", *available_codings()):
                    context = browser.new_context()
                    page = context.new_page()
                    page.goto(f"{url}/")
                    stream = f"{url}/events/{coding}?n={n}&interval={interval}"
                    page.evaluate("(url) => window.start(url)", stream)
                    page.wait_for_function(f"window.arrivals.length >= {n}", timeout=60_000)
                    delays: list[float] = page.evaluate("window.arrivals")
                    context.close()
                    print(
                        f"  {route:18} {coding:10} {statistics.median(delays):>6.2f}ms "
                        f"{pct(delays, 0.95):>6.2f}ms {max(delays):>6.2f}ms"
                    )
        finally:
            browser.close()


@contextlib.contextmanager
def nginx(upstream: str) -> Iterator[str | None]:
    """nginx with its default proxy settings in front of `upstream`, or None without nginx."""
    binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if binary is None:
        yield None
        return
    with tempfile.TemporaryDirectory() as work, socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        temp = "\n".join(f"    {kind}_temp_path {work}/{kind};" for kind in TEMP_KINDS)
        config = Path(work, "nginx.conf")
        config.write_text(
            f"daemon off; master_process off; pid {work}/nginx.pid;\n"
            f"error_log {work}/error.log warn;\nevents {{ worker_connections 64; }}\n"
            f"http {{\n    access_log off;\n{temp}\n"
            f"    server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass {upstream}; }} }}\n"
            "}\n"
        )
        process = subprocess.Popen([binary, "-p", work, "-c", str(config)])
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                    break
                time.sleep(0.05)
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(10)


TEMP_KINDS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, a shorter HTTP run")
    parser.add_argument(
        "--browser",
        action="store_true",
        help="also headless Chromium (Playwright, Debian's chromium), directly and via nginx",
    )
    args = parser.parse_args()
    rounds = 5 if args.quick else 20
    http_events, interval = (50, 0.01) if args.quick else (200, 0.01)

    print(
        f"ssekit {ssekit.__version__}, Python {platform.python_version()}, zlib {zlib.ZLIB_VERSION}"
    )
    print(f"codings installed: {', '.join(available_codings())}")
    streams: dict[str, list[Any]] = {
        "LLM tokens (1,000)": llm_tokens(1000),
        "JSON progress (500)": progress(500),
    }
    target_failed = False
    for name, chunks in streams.items():
        n = len(chunks)
        for batching in BATCHINGS:
            pieces = batches(chunks, batching)
            raw = sum(map(len, pieces))
            print(f"\n{name}, {batching}: {len(pieces)} writes, {raw:,} bytes uncompressed")
            print(f"  {'coding':18} {'wire bytes':>11} {'ratio':>7} {'CPU/event':>10}")
            for label, make in compressors():
                wire = wire_bytes(pieces, make)
                cpu = cpu_per_event(pieces, make, n, rounds)
                print(f"  {label:18} {wire:>11,} {raw / wire:>6.2f}x {cpu:>8.1f}us")
                if name.startswith("LLM") and batching == "each" and label == "gzip":
                    ok = raw / wire >= 3
                    target_failed |= not ok
                    verdict = "PASS" if ok else "FAIL"
                    print(f"  target: 1,000-token stream >= 3x fewer bytes with gzip: {verdict}")

    print("\nMemory per open stream (resident KiB of its compressor, 200 streams):")
    for coding in available_codings():
        print(f"  {coding:10} {memory_per_stream(coding):>6.0f} KiB")

    print(
        f"\nLatency: httpx on 127.0.0.1, {http_events} tokens one per "
        f"{interval * 1000:.0f} ms, flush='each', through the adapters' compress="
    )
    print(f"  {'route':18} {'coding':10} {'median':>8} {'p95':>8} {'max':>8} {'wire bytes':>11}")
    with serve(starlette_app()) as asgi_url, serve_wsgi(flask_app()) as wsgi_url:
        routes = {"starlette+uvicorn": asgi_url, "flask+werkzeug": wsgi_url}
        for route, url in routes.items():
            for coding in ("identity", *available_codings()):
                stream = f"{url}/events/{coding}?n={http_events}&interval={interval}"
                delays, wire = latency(stream, coding)
                assert len(delays) == http_events, (coding, len(delays))
                print(
                    f"  {route:18} {coding:10} {statistics.median(delays):>6.2f}ms "
                    f"{pct(delays, 0.95):>6.2f}ms {max(delays):>6.2f}ms {wire:>11,}"
                )
        if args.browser:
            with nginx(asgi_url) as proxied:
                if proxied is not None:
                    routes["starlette+nginx"] = proxied
                browser_rows(routes, 10 if args.quick else 50, 0.2)
    if target_failed:
        print("\nA target failed (see above).")


if __name__ == "__main__":
    main()
