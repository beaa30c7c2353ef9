"""Compression that streams: negotiation, per-batch decodability, and real clients over HTTP.

The HTTP tests serve `to_sse(...)` from a tiny raw ASGI app (and a WSGI one) defined here, which
does what the serving core does with compression: choose a coding from `Accept-Encoding`, add the
headers, wrap the stream's bytes.  Clients: httpx (decodes gzip, br and zstd when their packages
are installed), headless Chromium, and Chromium through nginx.  The assertions use generous
bounds, never tight speed (`benchmarks/bench_compress.py` measures the delays).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import threading
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from playwright.sync_api import Browser
from support.asgi_servers import uvicorn_server
from support.chromium import BROWSER_MARKS, launch_chromium
from support.waiting import free_port
from support.wsgi_servers import werkzeug_server

from ssekit import EventParser, MessageEvent, to_sse
from ssekit._compress import (
    CODINGS,
    AsyncCompressedBody,
    CompressedBody,
    CompressionPolicy,
    available_codings,
    make_compressor,
    negotiate,
    parse_accept_encoding,
)
from ssekit.adapters._common import SSE_HEADERS

AVAILABLE = available_codings()
#: How long a client may take to see an event that was yielded (far more than it needs).
LATE = 1.0
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def decompressor(coding: str) -> Callable[[bytes], bytes]:
    """The standard incremental decoder of `coding`, as a function of the next input piece."""
    if coding == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress
    if coding == "br":
        import brotli

        return brotli.Decompressor().process  # type: ignore[no-any-return]
    import zstandard

    return zstandard.ZstdDecompressor().decompressobj().decompress  # type: ignore[no-any-return]


def whole(coding: str, data: bytes) -> bytes:
    """Decode a complete compressed body with the one-shot decoder (checks the trailer)."""
    if coding == "gzip":
        import gzip

        return gzip.decompress(data)
    if coding == "br":
        import brotli

        return brotli.decompress(data)  # type: ignore[no-any-return]
    import zstandard

    decoder = zstandard.ZstdDecompressor().decompressobj()
    out: bytes = decoder.decompress(data)
    assert decoder.eof, "the zstd frame is not finished"
    return out


# -- negotiation -----------------------------------------------------------------------------------

ALL = ("gzip", "br", "zstd")


@pytest.mark.parametrize(
    ("accept", "allowed", "expected"),
    [
        (None, ALL, None),  # no header: uncompressed, the safe reading
        ("", ALL, None),  # empty: identity only
        ("gzip", ALL, "gzip"),
        ("GZIP", ALL, "gzip"),
        ("x-gzip", ALL, "gzip"),
        ("gzip, deflate, br, zstd", ALL, "gzip"),  # Chromium over HTTPS: a tie, server's order
        ("gzip, deflate", ALL, "gzip"),  # Chromium over plain HTTP
        ("br, zstd", ALL, "br"),
        ("zstd", ALL, "zstd"),
        ("zstd", ("gzip",), None),  # nothing allowed is acceptable
        ("gzip, zstd", ("zstd", "gzip"), "zstd"),  # a tie goes to the app's order
        ("gzip;q=0.5, br;q=0.8", ALL, "br"),  # the client's weights first
        ("gzip;q=0.5, br;q=0.8", ("gzip",), "gzip"),
        ("gzip;q=0", ALL, None),
        ("gzip;q=0, *", ALL, "br"),  # `*` covers what is not listed, not what is refused
        ("*", ALL, "gzip"),
        ("*;q=0", ALL, None),
        ("*;q=0.2, gzip;q=0.1", ALL, "br"),
        ("identity", ALL, None),
        ("identity;q=0", ALL, None),  # refused identity with no coding: identity anyway
        ("identity;q=0, gzip", ALL, "gzip"),
        ("gzip;q=0.5, identity", ALL, None),  # identity weighted above the best coding
        ("gzip;q=0.5, identity;q=0.5", ALL, "gzip"),  # a tie goes to compressing
        ("gzip;q=0.5, *;q=1", ALL, "br"),  # br via `*` at 1, above gzip at 0.5
        ("gzip;q=2", ALL, None),  # malformed weight: the member is ignored
        ("gzip;q=abc, br", ALL, "br"),
        ("gzip;q=0.001", ALL, "gzip"),
        ("gzip ; q=1.000 ; foo=bar", ALL, "gzip"),
        ("gzip;level=1", ALL, "gzip"),  # unknown parameters carry no meaning
        (",,, gzip ,", ALL, "gzip"),
        ("gzip, gzip;q=0", ALL, "gzip"),  # named twice: the highest weight
        ("déflate, gzip", ALL, "gzip"),
    ],
)
def test_negotiation(accept: str | None, allowed: tuple[str, ...], expected: str | None) -> None:
    assert negotiate(accept, allowed) == expected


def test_parse_accept_encoding() -> None:
    assert parse_accept_encoding("gzip;q=0.8, br, *;q=0, bad;q=x") == {
        "gzip": 0.8,
        "br": 1.0,
        "*": 0.0,
    }


HEADER_CHARS = st.sampled_from([*"gzipbrstdx*-;=q.,0123456789 \t identity", "é", "\x00"])


@given(
    accept=st.one_of(st.text(HEADER_CHARS, max_size=60), st.text(max_size=60)),
    allowed=st.lists(st.sampled_from(CODINGS), unique=True),
)
def test_negotiation_never_raises(accept: str, allowed: list[str]) -> None:
    """Whatever the header, the answer is an allowed coding or None, never an exception."""
    chosen = negotiate(accept, allowed)
    assert chosen is None or chosen in allowed


def test_policy_codings_and_headers() -> None:
    off = CompressionPolicy()
    assert not off.enabled
    assert off.choose("gzip") is None
    assert off.headers(None) == ()  # compression off: the response does not vary
    on = CompressionPolicy(True)
    assert on.codings == AVAILABLE
    assert on.codings[0] == "gzip"
    assert on.choose("gzip, br") == "gzip"
    assert on.headers("gzip") == (("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding"))
    assert on.headers(None) == (("Vary", "Accept-Encoding"),)
    only = CompressionPolicy(["gzip"], levels={"gzip": 1})
    assert only.codings == ("gzip",)
    assert only.choose("br, zstd") is None
    assert only.levels["gzip"] == 1
    assert CompressionPolicy(["gzip", "gzip"]).codings == ("gzip",)
    if "zstd" in AVAILABLE:
        assert CompressionPolicy(("zstd", "gzip")).choose("gzip, zstd") == "zstd"


@pytest.mark.parametrize(
    ("compress", "levels", "error", "words"),
    [
        ("gzip", None, TypeError, "tuple of codings"),
        (1, None, TypeError, "tuple of codings"),
        (("deflate",), None, ValueError, "Unknown content coding 'deflate'"),
        ((), None, ValueError, "compress=False"),
        (("gzip",), {"gzip": 10}, ValueError, "gzip level must be an int from 1 to 9"),
        (("gzip",), {"gzip": True}, ValueError, "gzip level"),
        (("gzip",), {"lzma": 1}, ValueError, "Unknown content coding 'lzma'"),
    ],
)
def test_policy_refuses_bad_options(
    compress: Any, levels: Any, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        CompressionPolicy(compress, levels=levels)


def test_policy_refuses_a_coding_whose_package_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    import ssekit._compress as compress_module

    monkeypatch.setattr(compress_module, "available_codings", lambda: ("gzip",))
    with pytest.raises(ValueError, match=r"needs the 'brotli' package.*ssekit\[compress\]"):
        CompressionPolicy(("br", "gzip"))


def test_compressor_for_a_coding_the_app_did_not_allow() -> None:
    with pytest.raises(ValueError, match="not one of"):
        CompressionPolicy(("gzip",)).compressor("br")


# -- each batch decodes on arrival -----------------------------------------------------------------


def token_events(n: int) -> list[bytes]:
    words = ["the", " quick", " brown", " fox", " jumps", " over", " a", " lazy", " dog", "."]
    return [b'data: {"content":"%s"}\n\n' % words[i % len(words)].encode() for i in range(n)]


@pytest.mark.parametrize("coding", AVAILABLE)
def test_every_batch_decodes_to_exactly_the_events_so_far(coding: str) -> None:
    """After each compressed batch, the standard decoder yields every event written so far and
    nothing less: no event waits in the compressor for the next one."""
    compressor = make_compressor(coding)
    decode = decompressor(coding)
    sent = bytearray()
    wire = bytearray()
    decoded = bytearray()
    for event in [*token_events(300), b": heartbeat\n\n", b"event: end\ndata: [DONE]\n\n"]:
        piece = compressor.compress(event)
        assert piece, "a flushed batch always writes something"
        sent += event
        wire += piece
        decoded += decode(piece)
        assert bytes(decoded) == bytes(sent)
    assert compressor.compress(b"") == b""
    wire += compressor.finish()
    assert whole(coding, bytes(wire)) == bytes(sent)
    assert len(wire) < len(sent)


@pytest.mark.parametrize("coding", AVAILABLE)
def test_levels_across_their_range(coding: str) -> None:
    from ssekit._compress import LEVEL_RANGES

    for level in LEVEL_RANGES[coding]:
        compressor = make_compressor(coding, level)
        data = b"".join(token_events(20))
        assert whole(coding, compressor.compress(data) + compressor.finish()) == data


def stdlib_zstd() -> Any:
    """Python 3.14's `compression.zstd`, or its backport (same API), or None."""
    import importlib

    for name in ("compression.zstd", "backports.zstd"):
        with contextlib.suppress(ImportError):
            return importlib.import_module(name)
    return None


def zstandard_package() -> Any:
    with contextlib.suppress(ImportError):
        import zstandard

        return zstandard
    return None


@pytest.mark.parametrize("backend", ["stdlib", "zstandard"])
def test_each_zstd_backend_flushes_per_batch(backend: str) -> None:
    """Both zstd backends (`compression.zstd` on 3.14+ or its backport, and `zstandard`) make
    each batch decodable on arrival, whichever of them `make_compressor` picks here."""
    from ssekit._compress import _ZstdPackage, _ZstdStdlib

    module = stdlib_zstd() if backend == "stdlib" else zstandard_package()
    if module is None:
        pytest.skip(f"the {backend} zstd backend is not installed")
    compressor = _ZstdStdlib(module, 3) if backend == "stdlib" else _ZstdPackage(module, 3)
    decoder = (
        module.ZstdDecompressor()
        if backend == "stdlib"
        else module.ZstdDecompressor().decompressobj()
    )
    sent = b""
    decoded = b""
    for event in token_events(50):
        sent += event
        decoded += decoder.decompress(compressor.compress(event))
        assert decoded == sent
    decoded += decoder.decompress(compressor.finish())
    assert decoded == sent
    assert decoder.eof


class Closing:
    """A sync source that records whether its `finally` ran."""

    def __init__(self, n: int | None) -> None:
        self.n = n
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[dict[str, int]]:
        try:
            i = 0
            while self.n is None or i < self.n:
                yield {"i": i}
                i += 1
        finally:
            self.closed.set()


def parse(data: bytes) -> list[MessageEvent]:
    return EventParser().feed(data)


@pytest.mark.parametrize("coding", AVAILABLE)
def test_sync_body_wraps_a_stream(coding: str) -> None:
    source = Closing(50)
    body = CompressedBody(to_sse(source, flush="each", heartbeat=None), make_compressor(coding))
    pieces = list(body)
    body.close()
    assert all(pieces)
    events = parse(whole(coding, b"".join(pieces)))
    assert [e.json() for e in events] == [{"i": i} for i in range(50)]
    assert source.closed.is_set()


@pytest.mark.parametrize("coding", AVAILABLE)
def test_heartbeats_are_flushed_like_events(coding: str) -> None:
    """A quiet source: each heartbeat is its own write, and decodes as soon as it is written."""
    release = threading.Event()

    def quiet() -> Iterator[str]:
        release.wait(10)
        yield "done"

    body = CompressedBody(to_sse(quiet(), heartbeat=0.05), make_compressor(coding))
    decode = decompressor(coding)
    decoded = []
    try:
        for piece in body:
            decoded.append(decode(piece))
            if decoded.count(b": ping\n\n") == 3:
                release.set()
    finally:
        release.set()
        body.close()
    assert decoded[0] == b": ok\n\n"
    assert decoded[1:4] == [b": ping\n\n"] * 3
    assert [e.data for e in parse(b"".join(decoded))] == ["done"]


def test_sync_body_close_closes_the_stream_midway() -> None:
    source = Closing(None)
    body = CompressedBody(to_sse(source, heartbeat=None), make_compressor("gzip"))
    decode = decompressor("gzip")
    got = b""
    for piece in body:
        got += decode(piece)
        if b'"i":3' in got:
            break
    body.close()
    assert source.closed.wait(5), "closing the body closes the stream and its source"


@pytest.mark.parametrize("coding", AVAILABLE)
def test_async_body_wraps_a_stream(coding: str) -> None:
    closed = asyncio.Event()

    async def source(n: int | None) -> AsyncIterator[dict[str, int]]:
        try:
            i = 0
            while n is None or i < n:
                yield {"i": i}
                i += 1
                await asyncio.sleep(0)
        finally:
            closed.set()

    async def main() -> None:
        body = AsyncCompressedBody(to_sse(source(30), heartbeat=None), make_compressor(coding))
        pieces = [piece async for piece in body]
        await body.aclose()
        assert all(pieces)
        events = parse(whole(coding, b"".join(pieces)))
        assert [e.json() for e in events] == [{"i": i} for i in range(30)]
        assert closed.is_set()
        # Closed midway, by the disconnect path: the source's finally runs.
        closed.clear()
        body = AsyncCompressedBody(to_sse(source(None), heartbeat=None), make_compressor(coding))
        decode = decompressor(coding)
        got = b""
        async for piece in body:
            got += decode(piece)
            if b'"i":3' in got:
                break
        await body.aclose()
        await asyncio.wait_for(closed.wait(), 5)

    asyncio.run(main())


# -- over HTTP -------------------------------------------------------------------------------------

PAGE = b"""<!doctype html><meta charset="utf-8"><title>compress</title>
<script>
window.arrivals = [];
window.start = (url) => {
  const es = new EventSource(url);
  es.onmessage = (e) => {
    const d = JSON.parse(e.data);
    window.arrivals.push({i: d.i, delay: performance.timeOrigin + performance.now() - d.t});
    if (d.last) es.close();
  };
};
</script>"""


async def timed(n: int, interval: float) -> AsyncIterator[dict[str, Any]]:
    """`n` events `interval` s apart, each stamped (ms since the epoch) as it is yielded."""
    for i in range(n):
        if i:
            await asyncio.sleep(interval)
        yield {"i": i, "t": time.time() * 1000, "last": i == n - 1, "pad": "token " * 3}


class CompressingApp:
    """A raw ASGI app: `/` a page, `/events?n=N&interval=S` a compressed stream of timed events.

    `X-Accel-Buffering: no` comes with `SSE_HEADERS`; `accel=0` leaves it out (a control).
    """

    def __init__(self, policy: CompressionPolicy) -> None:
        self.policy = policy
        #: The Accept-Encoding of each stream request, and the coding chosen.
        self.seen: list[tuple[str | None, str | None]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["path"] == "/":
            await send_whole(send, 200, [(b"content-type", b"text/html")], PAGE)
            return
        request_headers = {k.decode().lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = dict(
            part.split("=", 1) for part in scope["query_string"].decode().split("&") if part
        )
        accept = request_headers.get("accept-encoding")
        coding = self.policy.choose(accept)
        self.seen.append((accept, coding))
        headers = [*SSE_HEADERS, *self.policy.headers(coding)]
        if query.get("accel") == "0":
            headers = [h for h in headers if h[0] != "X-Accel-Buffering"]
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
            }
        )
        if scope["method"] == "HEAD":  # the same headers, no body, no stream started
            await send({"type": "http.response.body", "body": b""})
            return
        stream = to_sse(
            timed(int(query.get("n", "5")), float(query.get("interval", "0.2"))), heartbeat=None
        )
        body: Any = stream
        if coding is not None:
            body = AsyncCompressedBody(stream, self.policy.compressor(coding))
        try:
            async for piece in body:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await body.aclose()


async def send_whole(
    send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def read_events(url: str, accept: str) -> tuple[httpx.Headers, list[MessageEvent], list[float]]:
    """Read a stream with httpx (which decodes the coding); the delay of each event in s."""
    parser = EventParser()
    events: list[MessageEvent] = []
    delays: list[float] = []
    with httpx.stream("GET", url, headers={"Accept-Encoding": accept}, timeout=10) as response:
        for data in response.iter_bytes():
            for event in parser.feed(data):
                events.append(event)
                delays.append(time.time() - event.json()["t"] / 1000)
        return response.headers, events, delays


@pytest.mark.parametrize("coding", AVAILABLE)
def test_httpx_reads_each_coding_event_by_event(coding: str) -> None:
    app = CompressingApp(CompressionPolicy(True))
    with uvicorn_server(app) as url:
        headers, events, delays = read_events(f"{url}/events?n=5&interval=0.2", coding)
    assert headers["content-encoding"] == coding
    assert headers["vary"] == "Accept-Encoding"
    assert headers["x-accel-buffering"] == "no"
    assert "content-length" not in headers
    assert [e.json()["i"] for e in events] == list(range(5))
    assert max(delays) < LATE, f"an event arrived {max(delays):.3f} s after it was yielded"


def test_identity_when_the_client_does_not_ask() -> None:
    app = CompressingApp(CompressionPolicy(True))
    with uvicorn_server(app) as url:
        headers, events, _ = read_events(f"{url}/events?n=3&interval=0", "identity")
        head = httpx.head(f"{url}/events", headers={"Accept-Encoding": "gzip"}, timeout=10)
    assert "content-encoding" not in headers
    assert headers["vary"] == "Accept-Encoding"
    assert len(events) == 3
    assert head.headers["content-encoding"] == "gzip"
    assert head.headers["vary"] == "Accept-Encoding"
    assert head.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert head.content == b""
    assert [seen[1] for seen in app.seen] == [None, "gzip"]


def wsgi_app(policy: CompressionPolicy) -> Callable[..., Any]:
    """The same stream from WSGI, through `CompressedBody`."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        coding = policy.choose(environ.get("HTTP_ACCEPT_ENCODING"))
        start_response("200 OK", [*SSE_HEADERS, *policy.headers(coding)])
        stream = to_sse(timed_sync(5, 0.2), heartbeat=None)
        return stream if coding is None else CompressedBody(stream, policy.compressor(coding))

    return app


def timed_sync(n: int, interval: float) -> Iterator[dict[str, Any]]:
    for i in range(n):
        if i:
            time.sleep(interval)
        yield {"i": i, "t": time.time() * 1000, "last": i == n - 1}


@pytest.mark.parametrize("coding", AVAILABLE)
def test_wsgi_body_over_http(coding: str) -> None:
    with werkzeug_server(wsgi_app(CompressionPolicy(True))) as url:
        headers, events, delays = read_events(f"{url}/events", coding)
    assert headers["content-encoding"] == coding
    assert [e.json()["i"] for e in events] == list(range(5))
    assert max(delays) < LATE


# -- in a browser ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_chromium()


def browser_delays(browser: Browser, page_url: str, stream_url: str, n: int) -> list[float]:
    """Open `stream_url` in an EventSource on the page; the delay (ms) of each event."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(page_url)
        page.evaluate("(url) => window.start(url)", stream_url)
        page.wait_for_function(f"window.arrivals.length >= {n}", timeout=20_000)
        arrivals: list[dict[str, float]] = page.evaluate("window.arrivals")
    finally:
        context.close()
    assert [a["i"] for a in arrivals] == list(range(n))
    return [a["delay"] for a in arrivals]


N_BROWSER = 10


def browser_test(test: Callable[..., None]) -> Callable[..., None]:
    """Give `test` the marks of a browser test (skipped without Chromium outside CI)."""
    for mark in BROWSER_MARKS:
        test = mark(test)
    return test


@browser_test
@pytest.mark.parametrize("coding", AVAILABLE)
def test_chromium_gets_each_event_as_it_is_yielded(browser: Browser, coding: str) -> None:
    """With Chromium's own Accept-Encoding, each event of a stream that yields one every 200 ms
    reaches `onmessage` promptly (bound generous; `benchmarks/bench_compress.py`
    measures the delays).  The app allows one
    coding at a time, so that Chromium's decoder of each is exercised."""
    app = CompressingApp(CompressionPolicy((coding,)))
    with uvicorn_server(app) as url:
        delays = browser_delays(
            browser, f"{url}/", f"{url}/events?n={N_BROWSER}&interval=0.2", N_BROWSER
        )
    accept, chosen = app.seen[0]
    assert chosen == coding, f"Chromium sent Accept-Encoding {accept!r}"
    assert max(delays) < LATE * 1000


@contextlib.contextmanager
def nginx_proxy(upstream: str, workdir: Path) -> Iterator[str]:
    """nginx on a free port proxying to `upstream` with its defaults (`proxy_buffering on`,
    HTTP/1.0 to the upstream, so a close-delimited body); yields its URL."""
    assert NGINX is not None
    port = free_port()
    upstream_host = upstream.removeprefix("http://")
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (workdir / name).mkdir()
    config = workdir / "nginx.conf"
    config.write_text(
        f"""daemon off;
master_process off;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {workdir}/body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://{upstream_host};
        }}
    }}
}}
"""
    )
    process = subprocess.Popen(
        [NGINX, "-p", str(workdir), "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                break
            if process.poll() is not None:
                raise RuntimeError(f"nginx exited: {process.stderr.read()!r}")  # type: ignore[union-attr]
            if time.monotonic() > deadline:
                raise RuntimeError("nginx did not start within 15 s")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        if process.stderr is not None:
            process.stderr.close()


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (CI installs it)")
@browser_test
def test_chromium_through_nginx(browser: Browser, tmp_path: Path) -> None:
    """nginx with its default proxy settings: the app's `X-Accel-Buffering: no` keeps nginx from
    holding events back, and nginx passes the gzip body and its headers through as they are."""
    app = CompressingApp(CompressionPolicy(True))
    with uvicorn_server(app) as upstream, nginx_proxy(upstream, tmp_path) as url:
        headers, events, _ = read_events(f"{url}/events?n=3&interval=0", "gzip")
        delays = browser_delays(
            browser, f"{url}/", f"{url}/events?n={N_BROWSER}&interval=0.2", N_BROWSER
        )
        # The control: without the header, nginx's buffering holds the events until the end.
        _, held, held_delays = read_events(f"{url}/events?n=4&interval=0.3&accel=0", "gzip")
    assert headers["content-encoding"] == "gzip"
    assert headers["vary"] == "Accept-Encoding"
    assert len(events) == 3
    assert app.seen[-2][1] == "gzip"
    assert max(delays) < LATE * 1000
    assert len(held) == 4
    assert held_delays[0] > 0.6, "nginx no longer buffers here: X-Accel-Buffering is moot"
