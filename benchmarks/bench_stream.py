"""Pipeline benchmark: small dict chunks through `to_sse()`, consumed in-process.

Run:  python benchmarks/bench_stream.py [--events N] [--quick]

Every row streams the same N small dicts ({"i": i, "token": "hello"}) from a generator and counts
the events the consumer receives (parsed back once at the end, to prove nothing was lost).  Async
consumers hand each byte string to an ASGI-style `await send(message)`, as a server adapter would,
so the ssekit rows and sse-starlette's `EventSourceResponse` (driven as an ASGI app with the same
no-op `send`) pay the same per-write cost.  The peers come from the `bench` extra:
`pip install -e '.[bench]'`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import ssekit
from ssekit import EventParser, to_sse

try:
    import orjson
except ImportError:  # pragma: no cover - optional
    orjson = None  # type: ignore[assignment]


def make_chunks(n: int) -> list[dict[str, Any]]:
    return [{"i": i, "token": "hello"} for i in range(n)]


def sync_source(chunks: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    yield from chunks


async def async_source(chunks: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for chunk in chunks:
        yield chunk


def count_events(parts: list[bytes]) -> int:
    parser = EventParser()
    return sum(len(parser.feed(part)) for part in parts)


class Sink:
    """An ASGI `send` that keeps the body parts and counts the writes."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        body = message.get("body")
        if body:
            self.parts.append(body)


async def run_ssekit_async(chunks: list[dict[str, Any]], *, sync: bool, flush: Any) -> Sink:
    sink = Sink()
    source = sync_source(chunks) if sync else async_source(chunks)
    async for data in to_sse(source, flush=flush):
        await sink({"type": "http.response.body", "body": data, "more_body": True})
    return sink


def run_ssekit_sync(chunks: list[dict[str, Any]], *, sync: bool, flush: Any) -> Sink:
    sink = Sink()
    source = sync_source(chunks) if sync else async_source(chunks)
    for data in to_sse(source, flush=flush):
        sink.parts.append(data)
    return sink


async def run_hand_framed(chunks: list[dict[str, Any]]) -> Sink:
    """The floor: an async generator framing by hand, one write per event."""
    sink = Sink()
    dumps = orjson.dumps if orjson is not None else (lambda v: json.dumps(v).encode())
    async for chunk in async_source(chunks):
        body = b"data: " + dumps(chunk) + b"\n\n"
        await sink({"type": "http.response.body", "body": body, "more_body": True})
    return sink


async def run_sse_starlette(chunks: list[dict[str, Any]], *, sync: bool) -> Sink:
    from sse_starlette import EventSourceResponse

    sink = Sink()
    never = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await never.wait()
        return {"type": "http.disconnect"}

    def encode(chunk: dict[str, Any]) -> str:
        return json.dumps(chunk, separators=(",", ":"))

    if sync:
        body: Any = (encode(c) for c in chunks)
    else:

        async def body_gen() -> AsyncIterator[str]:
            async for chunk in async_source(chunks):
                yield encode(chunk)

        body = body_gen()
    response = EventSourceResponse(body, ping=15)
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [],
        "asgi": {"version": "3.0"},
    }
    await response(scope, receive, sink)
    return sink


def timed(run: Callable[[], Sink | Awaitable[Sink]], n: int) -> tuple[float, int]:
    start = time.perf_counter()
    result = run()
    sink: Sink = asyncio.run(result) if asyncio.iscoroutine(result) else result
    elapsed = time.perf_counter() - start
    received = count_events(sink.parts)
    if received != n:
        raise SystemExit(f"lost events: sent {n}, received {received}")
    return n / elapsed, len(sink.parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="20,000 events, one repeat")
    args = parser.parse_args()
    n, repeat = (20_000, 1) if args.quick else (args.events, args.repeat)
    chunks = make_chunks(n)

    rows: list[tuple[str, Callable[[], Any]]] = [
        (
            "ssekit  async source, async for, flush=auto",
            lambda: run_ssekit_async(chunks, sync=False, flush="auto"),
        ),
        (
            "ssekit  async source, async for, flush=each",
            lambda: run_ssekit_async(chunks, sync=False, flush="each"),
        ),
        (
            "ssekit  sync source,  async for, flush=auto",
            lambda: run_ssekit_async(chunks, sync=True, flush="auto"),
        ),
        (
            "ssekit  sync source,  async for, flush=each",
            lambda: run_ssekit_async(chunks, sync=True, flush="each"),
        ),
        (
            "ssekit  sync source,  for,       flush=auto",
            lambda: run_ssekit_sync(chunks, sync=True, flush="auto"),
        ),
        (
            "ssekit  async source, for,       flush=auto",
            lambda: run_ssekit_sync(chunks, sync=False, flush="auto"),
        ),
        ("hand-framed async generator (floor)", lambda: run_hand_framed(chunks)),
    ]
    try:
        import sse_starlette  # noqa: F401

        rows += [
            ("sse-starlette async source", lambda: run_sse_starlette(chunks, sync=False)),
            ("sse-starlette sync source", lambda: run_sse_starlette(chunks, sync=True)),
        ]
    except ImportError:
        print("sse-starlette is not installed (pip install -e '.[bench]'): peer rows skipped")

    print(
        f"ssekit {ssekit.__version__}, Python {platform.python_version()}, "
        f"orjson: {orjson is not None}"
    )
    print(f"{n:,} small dict chunks, best of {repeat}\n")
    results: dict[str, tuple[float, int]] = {}
    for name, run in rows:
        best = max((timed(run, n) for _ in range(repeat)), key=lambda r: r[0])
        results[name] = best
    peer = results.get("sse-starlette async source", (0.0, 0))[0]
    print(f"{'path':46} {'events/s':>12} {'writes':>9} {'vs sse-starlette async':>24}")
    for name, (rate, writes) in results.items():
        ratio = f"{rate / peer:.1f}x" if peer else "-"
        print(f"{name:46} {rate:12,.0f} {writes:9,} {ratio:>24}")

    auto = results["ssekit  async source, async for, flush=auto"][0]
    sync_async = results["ssekit  sync source,  async for, flush=auto"][0]
    print()
    if peer:
        verdict = "PASS" if auto >= 10 * peer else "FAIL"
        print(
            f"{verdict}: async flush=auto is {auto / peer:.1f}x sse-starlette (goal: at least 10x)"
        )
    verdict = "PASS" if sync_async >= 0.5 * auto else "FAIL"
    print(
        f"{verdict}: sync source under async for is {sync_async / auto:.2f}x the async source "
        "(goal: at least 0.5x)"
    )


if __name__ == "__main__":
    main()
