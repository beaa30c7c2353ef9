"""Idle streams: N open event streams that carry only heartbeats, over loopback.

Run:  python benchmarks/bench_idle.py [--streams 1000,5000,10000] [--window 20] [--apps a,b]
      [--baseline DIR]   (another ssekit checkout: its async row too, for before/after)

Each server is uvicorn with one worker in a subprocess of its own, on a free port of 127.0.0.1
(`python -m uvicorn apps_idle:<app>`, run from benchmarks/), serving a stream whose source never
yields, with a heartbeat every `--interval` seconds (1 by default): ssekit's `SSEApp` over an
async source and over a sync one, a hand-written Starlette `StreamingResponse`, and
sse-starlette's `EventSourceResponse` (see apps_idle.py).  The servers run one after another in
the same run, the same N each.

For each server and N: a warm-up (ten streams come and go), then the server's RSS and threads;
then N streams opened by this process (`loop.create_connection()` and a `Protocol` each, no
HTTP library; a stream counts as established when its response head arrived and the server
reports N requests being served); a settling pause; RSS and threads again (held); then the
window: the server's CPU time (user + system, all threads, /proc/<pid>/stat) and the heartbeats
every stream receives, each noted with the time it arrived.  Then every stream is closed, and
once the server reports none open (and a pause), its threads and RSS once more (after).

- KiB/stream: (RSS held - RSS before) / N.
- CPU/heartbeat: server CPU seconds over the window / heartbeats delivered in it.
- gaps: the time between two heartbeats of one stream, over every stream; a stream's gap still
  open at the end of the window counts when it is already longer than the interval.  "On time"
  is a gap p99 within 1.1 x the interval.
- other load: cores busy in the machine during the window, apart from the server and this
  process (the machine may be shared).

Linux only (/proc).  sse-starlette comes from the `bench` extra; a missing peer is skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_fanout import (
    StreamClient,
    cpu_seconds,
    free_port,
    raise_fd_limit,
    system_busy_seconds,
)

import ssekit

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"
START_DEADLINE = 30.0
STOP_DEADLINE = 10.0
#: How long opening or closing all streams may take.
DEADLINE = 180.0
#: Connections being opened at once.
CONNECTING_AT_ONCE = 100
#: The pause after opening (or closing) all streams, before memory and threads are read.
SETTLE = 2.0

#: The issue's targets: KiB per async stream, gap p99 as a multiple of the interval.
GOAL_KIB = 20.0
GOAL_GAP = 1.1
GOAL_STREAMS = (5000, 10000)

APPS = {
    "ssekit_async": "ssekit SSEApp, async source",
    "ssekit_sync": "ssekit SSEApp, sync source",
    "starlette_hand": "Starlette StreamingResponse (hand-written)",
    "sse_starlette": "sse-starlette EventSourceResponse",
}


# -- /proc -------------------------------------------------------------------------------------


def status(pid: int) -> tuple[int, int]:
    """(VmRSS in KiB, threads) of a process."""
    rss = threads = 0
    with open(f"/proc/{pid}/status", encoding="ascii") as lines:
        for line in lines:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss, threads


# -- the server --------------------------------------------------------------------------------


class Server:
    """An app of apps_idle served by uvicorn in a subprocess, its stderr kept in a file."""

    def __init__(self, app: str, interval: float, logdir: Path, env: dict[str, str]) -> None:
        self.app = app
        self.port = free_port()
        command = [
            *(sys.executable, "-m", "uvicorn", f"apps_idle:{app.partition('@')[0]}"),
            *("--host", HOST, "--port", str(self.port), "--workers", "1"),
            *("--backlog", "4096", "--log-level", "warning", "--no-access-log"),
        ]
        self.stderr_path = logdir / f"{app}-{self.port}.stderr"
        self._stderr = self.stderr_path.open("wb")
        self.process = subprocess.Popen(
            command,
            cwd=HERE,
            env={**os.environ, **env, "SSEKIT_IDLE_INTERVAL": str(interval)},
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )
        self.pid = self.process.pid

    async def get(self, path: str) -> bytes:
        reader, writer = await asyncio.open_connection(HOST, self.port)
        try:
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()
            )
            response = await asyncio.wait_for(reader.read(), 60)
        finally:
            writer.close()
        head, _, body = response.partition(b"\r\n\r\n")
        if b" 200 " not in head.split(b"\r\n", 1)[0]:
            raise OSError(f"{path} answered {head[:40]!r}")
        return body

    async def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = json.loads(await self.get("/stats"))
        return stats

    async def wait_ready(self) -> None:
        deadline = time.monotonic() + START_DEADLINE
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.app} exited:\n{self.stderr_path.read_text()}")
            with contextlib.suppress(OSError):
                await self.stats()
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"{self.app} did not start in {START_DEADLINE} s")
            await asyncio.sleep(0.05)

    async def wait_open(self, n: int) -> None:
        """Poll /stats until the server serves exactly `n` stream requests."""
        deadline = time.monotonic() + DEADLINE
        while (count := (await self.stats())["open"]) != n:
            if time.monotonic() > deadline:
                raise SystemExit(f"{self.app}: {count} streams open, expected {n}")
            await asyncio.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._stderr.close()


# -- the client --------------------------------------------------------------------------------


class Stream(StreamClient):
    """One SSE client: sends its GET, waits for the head, notes when each heartbeat arrives.

    No HTTP library: the body is chunked, and every heartbeat is a comment in a chunk of its
    own, so a heartbeat is a `\\r\\n:` (the end of a chunk-size line followed by `:`).
    """

    recording = False

    def __init__(self, request: bytes) -> None:
        super().__init__(request)
        self.times: list[float] = []

    def data_received(self, data: bytes) -> None:
        if not self._in_body:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            if self._head.split(b" ", 2)[1] != b"200":
                self._fail(ConnectionError(f"status {self._head[:40]!r}"))
                return
            data, self._head, self._in_body = self._head[end + 2 :], b"", True
            if not self.ready.done():
                self.ready.set_result(None)
        text = self._tail + data
        self._tail = data[-2:]
        if Stream.recording:
            count = text.count(b"\r\n:")
            if count:
                now = time.monotonic()
                self.times.extend([now] * count)


async def open_streams(port: int, n: int) -> list[Stream]:
    """Open `n` streams, `CONNECTING_AT_ONCE` at a time; return once each has its head."""
    loop = asyncio.get_running_loop()
    request = (
        f"GET /events HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
    ).encode()
    gate = asyncio.Semaphore(CONNECTING_AT_ONCE)

    async def one() -> Stream:
        async with gate:
            _, stream = await loop.create_connection(lambda: Stream(request), HOST, port)
            await stream.ready
            return stream

    return await asyncio.wait_for(asyncio.gather(*(one() for _ in range(n))), DEADLINE)


async def close_streams(streams: list[Stream]) -> None:
    for stream in streams:
        stream.close()
    await asyncio.wait_for(asyncio.gather(*(s.lost for s in streams)), DEADLINE)


# -- one measurement ---------------------------------------------------------------------------


@dataclass
class Result:
    app: str
    n: int
    interval: float
    window: float
    rss_before: int = 0
    rss_held: int = 0
    rss_after: int = 0
    threads: tuple[int, int, int] = (0, 0, 0)
    tasks_per_stream: float = 0.0
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    other_cores: float = 0.0
    heartbeats: int = 0
    gaps: list[float] = field(default_factory=list)
    sources_after: int = 0
    error: str = ""

    @property
    def kib_per_stream(self) -> float:
        return (self.rss_held - self.rss_before) / self.n

    @property
    def cpu_per_heartbeat_us(self) -> float:
        return self.server_cpu / self.heartbeats * 1e6 if self.heartbeats else float("nan")

    def gap(self, q: float) -> float:
        if not self.gaps:
            return float("nan")
        ordered = sorted(self.gaps)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def gaps_of(streams: list[Stream], start: float, end: float, interval: float) -> list[float]:
    gaps: list[float] = []
    for stream in streams:
        times = [t for t in stream.times if start <= t <= end]
        gaps.extend(b - a for a, b in itertools.pairwise(times))
        last = times[-1] if times else start
        if end - last > interval:
            gaps.append(end - last)  # still waiting at the end: already late
    return gaps


async def measure(
    app: str, n: int, interval: float, window: float, logdir: Path, profile: bool
) -> Result:
    result = Result(app, n, interval, window)
    env = {"SSEKIT_IDLE_PROFILE": "1"} if profile else {}
    if app.endswith("@base"):  # the same app on another checkout's ssekit
        env["PYTHONPATH"] = BASELINE[0]
    server = Server(app, interval, logdir, env)
    streams: list[Stream] = []
    try:
        await server.wait_ready()
        await close_streams(await open_streams(server.port, 10))  # warm-up
        await server.wait_open(0)
        await asyncio.sleep(SETTLE / 2)
        rss_before, threads_before = status(server.pid)
        if profile:
            await server.get("/profile/mark")
        streams = await open_streams(server.port, n)
        await server.wait_open(n)
        stats = await server.stats()
        result.tasks_per_stream = stats["tasks"] / n
        await asyncio.sleep(SETTLE)
        rss_held, threads_held = status(server.pid)
        if profile:
            await server.get("/profile/memory")
            await asyncio.sleep(SETTLE)
            await server.get("/profile/window")

        Stream.recording = True
        cpu0, own0, busy0 = cpu_seconds(server.pid), time.process_time(), system_busy_seconds()
        start = time.monotonic()
        await asyncio.sleep(window)
        end = time.monotonic()
        cpu1, own1, busy1 = cpu_seconds(server.pid), time.process_time(), system_busy_seconds()
        Stream.recording = False

        if profile:
            report = (await server.get("/profile/report")).decode()
            print(f"\n-- profile: {APPS[app]}, {n} streams --\n{report}")
        result.server_cpu = cpu1 - cpu0
        result.client_cpu = own1 - own0
        result.other_cores = (busy1 - busy0 - result.server_cpu - result.client_cpu) / window
        result.heartbeats = sum(
            sum(1 for t in stream.times if start <= t <= end) for stream in streams
        )
        result.gaps = gaps_of(streams, start, end, interval)

        await close_streams(streams)
        streams = []
        await server.wait_open(0)
        await asyncio.sleep(SETTLE)
        rss_after, threads_after = status(server.pid)
        result.sources_after = (await server.stats())["sources"]
        result.rss_before, result.rss_held, result.rss_after = rss_before, rss_held, rss_after
        result.threads = (threads_before, threads_held, threads_after)
    except (OSError, SystemExit, asyncio.TimeoutError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"[:200]
    finally:
        Stream.recording = False
        for stream in streams:
            stream.close()
        server.stop()
    return result


# -- report ------------------------------------------------------------------------------------


#: The --baseline checkout, if any.
BASELINE: list[str] = []


def label(app: str) -> str:
    name, _, base = app.partition("@")
    return APPS[name] + (" (baseline)" if base else "")


def report(results: list[Result]) -> None:
    header = (
        f"{'server':<44} {'N':>6} {'KiB/str':>8} {'after':>7} {'threads b/h/a':>16} "
        f"{'tasks/str':>9} {'CPU %':>6} {'µs/hb':>7} {'hb %':>6} "
        f"{'gap p50':>8} {'p99':>7} {'max':>7} {'client%':>7} {'other':>6}"
    )
    print("\n" + header)
    print("-" * len(header))
    for r in results:
        if r.error:
            print(f"{label(r.app):<44} {r.n:>6}  failed: {r.error}")
            continue
        expected = r.n * r.window / r.interval
        threads = "/".join(str(t) for t in r.threads)
        print(
            f"{label(r.app):<44} {r.n:>6} {r.kib_per_stream:>8.1f} "
            f"{(r.rss_after - r.rss_before) / r.n:>7.1f} {threads:>16} "
            f"{r.tasks_per_stream:>9.2f} {100 * r.server_cpu / r.window:>6.1f} "
            f"{r.cpu_per_heartbeat_us:>7.1f} {100 * r.heartbeats / expected:>6.1f} "
            f"{r.gap(0.5):>8.3f} {r.gap(0.99):>7.3f} {max(r.gaps, default=float('nan')):>7.3f} "
            f"{100 * r.client_cpu / r.window:>7.1f} {r.other_cores:>6.2f}"
        )
    print(
        "\nKiB/str: RSS held - before, per stream; after: RSS after closing - before, per stream;"
        "\nthreads before/held/after; tasks/str: asyncio tasks while held / N; CPU %: server, of"
        "\none core, over the window; µs/hb: server CPU per heartbeat delivered; hb %: heartbeats"
        "\ndelivered / N x window / interval; gaps in s; client%: this process; other: cores busy"
        "\nwith other processes of the machine."
    )
    targets(results)


def targets(results: list[Result]) -> None:
    print("\nTargets (async streams, at 5,000 and 10,000):")
    by = {(r.app, r.n): r for r in results if not r.error}
    for n in sorted({r.n for r in results}):
        ours, hand = by.get(("ssekit_async", n)), by.get(("starlette_hand", n))
        scope = "" if n in GOAL_STREAMS else "  (informative: not a target size)"
        if ours is None:
            print(f"  N={n}: SKIP (no ssekit async row){scope}")
            continue
        checks = [
            (f"RSS/stream {ours.kib_per_stream:.1f} KiB <= {GOAL_KIB:.0f} KiB",
             ours.kib_per_stream <= GOAL_KIB),
            (f"gap p99 {ours.gap(0.99):.3f} s <= {GOAL_GAP} x {ours.interval} s",
             ours.gap(0.99) <= GOAL_GAP * ours.interval),
        ]  # fmt: skip
        if hand is not None:
            checks.append(
                (
                    f"CPU/heartbeat {ours.cpu_per_heartbeat_us:.1f} µs <= hand-written "
                    f"{hand.cpu_per_heartbeat_us:.1f} µs",
                    ours.cpu_per_heartbeat_us <= hand.cpu_per_heartbeat_us,
                )
            )
        for text, ok in checks:
            print(f"  N={n}: {'PASS' if ok else 'FAIL'}  {text}{scope}")


async def main_async(args: argparse.Namespace) -> None:
    counts = [int(x) for x in args.streams.split(",")]
    apps = args.apps.split(",")
    for app in apps:
        if app not in APPS:
            raise SystemExit(f"--apps: unknown {app!r}; known: {', '.join(APPS)}")
    if "sse_starlette" in apps and importlib.util.find_spec("sse_starlette") is None:
        print("sse-starlette is not installed: its rows are skipped")
        apps.remove("sse_starlette")
    if args.baseline:
        BASELINE.append(str(Path(args.baseline).resolve()))
        apps.insert(apps.index("ssekit_async") + 1 if "ssekit_async" in apps else 0,
                    "ssekit_async@base")  # fmt: skip
    raise_fd_limit(max(counts) + 200)  # each process holds one end of every stream
    print(
        f"ssekit {ssekit.__version__ if hasattr(ssekit, '__version__') else '?'}, "
        f"Python {platform.python_version()}, {os.cpu_count()} cores, "
        f"interval {args.interval} s, window {args.window} s"
    )
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as logdir:
        for n in counts:
            for app in apps:
                result = await measure(
                    app, n, args.interval, args.window, Path(logdir), args.profile
                )
                results.append(result)
                print(
                    f"  {label(app)}, N={n}: "
                    + (result.error or f"{result.kib_per_stream:.1f} KiB/stream"),
                    flush=True,
                )
    report(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--streams", default="1000", help="comma-separated N (default 1000)")
    parser.add_argument("--window", type=float, default=10.0, help="seconds measured (10)")
    parser.add_argument("--interval", type=float, default=1.0, help="heartbeat seconds (1)")
    parser.add_argument(
        "--apps", default=",".join(APPS), help="comma-separated, of: " + ", ".join(APPS)
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="servers trace allocations and count loop callbacks; print per-stream reports",
    )
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        help="another ssekit checkout (its root): also serve the async app with its ssekit",
    )
    args = parser.parse_args()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
