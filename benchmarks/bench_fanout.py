"""Fan-out benchmark: one publish to 1,000 concurrent subscribers of a topic, over loopback.

Run:  python benchmarks/bench_fanout.py [--subscribers N] [--rounds R] [--quick]

Each server is uvicorn in a subprocess of its own, on a free port of 127.0.0.1
(`python -m uvicorn apps_fanout:<app> --factory`, run from benchmarks/), serving
`broker_route("/events/{topic}", broker)` with a `MemoryBroker`, or with a `RedisBroker` on a
`redis-server` this script starts in a temporary directory (no persistence), or, as a reference,
a hand-written Starlette fan-out (an `asyncio.Queue` per subscriber and a `StreamingResponse`: no
ids, history, resume, slow-client policy or heartbeats).  The subscribers are N plain asyncio
connections of this process per server (`loop.create_connection()` and a `Protocol` that notes
the time each event arrives; no HTTP library).

Latency.  Each round publishes one event, `data: {"round":r}`, and waits until all N subscribers
have it, then pauses.  MemoryBroker and the reference: this process POSTs the event to the
server's `/publish/{topic}` (`broker.apublish()`).  RedisBroker: this process publishes it with a
`RedisBroker` of its own (one `XADD`), as another worker would; the server's reader thread fans
it out.  A delivery's latency is the time from just before the publish (the request written, or
`publish()` called) until the event arrived at that subscriber, both taken with
`time.perf_counter()` in this process; median and p99 are over every delivery of every round
(round 0 is a warm-up and not counted).  The servers take turns, round after round, so a slow
spell of the machine hits every row.  When this process cannot hold every row's sockets at once
(its open-file limit; 10,000 subscribers × 3 rows is past a limit of 20,000), the rows are
measured one after another instead, each with its own subscribers, and the report says so.

CPU.  The server's CPU time (user + system, all its threads, from /proc) from the first counted
round to the end of the last, pauses included, per round: an idle server uses next to nothing,
and part of a fan-out's work comes after the last event went out.  The client's CPU and the
load of every other process of the machine ("other load", in cores) are taken within each
round's window, from the publish until every subscriber had the event: a busy machine delays
the deliveries, so read the latencies with that column.

Memory.  The server's RSS (VmRSS from /proc) after a warm-up (two subscribers come and go) with
no subscriber, then with N idle subscribers connected, each having received its response head
(and its first comment where the app sends one); the difference divided by N.  The same is done,
in the same run, for sse-starlette's `EventSourceResponse` and for a hand-written Starlette
`StreamingResponse`, each over an async generator that waits forever (`apps_fanout.py`), and for
ssekit's `SSEResponse` over such a generator.  Linux only (/proc).  sse-starlette comes from the
`bench` extra (`pip install -e '.[bench]'`), `redis` and `redis-server` for the Redis row: a row
whose part is missing is skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import math
import os
import platform
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ssekit

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"
TOPIC = "fanout"
START_DEADLINE = 30.0
STOP_DEADLINE = 10.0
#: How long all subscribers may take to connect, or one round to reach all of them.
DEADLINE = 120.0
#: Connections being opened at once (a browser crowd arrives over time, not in one instant).
CONNECTING_AT_ONCE = 50
#: The pause between rounds, and before each RSS reading.
PAUSE = 0.25
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: Open files a process needs besides its subscribers' sockets.
FD_MARGIN = 256

#: The goals: p99 latency (ms) per broker, KiB per idle subscriber.
GOAL_P99_MS = {"MemoryBroker": 100.0, "RedisBroker": 250.0}
GOAL_KIB = 30.0
#: The goals: server CPU per delivery, as a multiple of the hand-written fan-out's.
GOAL_CPU_RATIO = {"MemoryBroker": 1.0, "RedisBroker": 1.2}
GOAL_SUBSCRIBERS = 1000

#: The apps of apps_fanout that uvicorn builds by calling them (`--factory`).
FACTORIES = ("broker_app", "starlette_hand_fanout")

ROUND = re.compile(rb'"round":(\d+)\}')


# -- processes ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def raise_fd_limit(needed: int) -> int:
    """Raise this process's open-file limit (the servers inherit it) as far as allowed; return
    it.  At least `needed` must be possible."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < needed:
        raise SystemExit(f"the open-file limit is {want}, and {needed} are needed: ulimit -n")
    return want


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def system_busy_seconds() -> float:
    """CPU seconds all processes of the machine have used so far (every core), from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / CLK_TCK  # user..steal; guest time is in user already


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/<pid>/status")


class RedisServer:
    """A `redis-server` of our own on a free port, without persistence."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        self.port = free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self.process = subprocess.Popen(
            [
                *(binary, "--port", str(self.port), "--bind", HOST, "--dir", str(directory)),
                *("--save", "", "--appendonly", "no"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + START_DEADLINE
        try:
            while True:
                with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                    if client.ping():
                        return
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("redis-server did not start")
                time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Server:
    """An app of apps_fanout served by uvicorn in a subprocess, its stderr kept in a file."""

    def __init__(self, app: str, logdir: Path, env: dict[str, str] | None = None) -> None:
        self.app = app
        self.port = free_port()
        command = [
            *(sys.executable, "-m", "uvicorn", f"apps_fanout:{app}"),
            *(["--factory"] if app in FACTORIES else []),
            *("--host", HOST, "--port", str(self.port)),
            *("--log-level", "warning", "--no-access-log"),
        ]
        self.stderr_path = logdir / f"{app}-{self.port}.stderr"
        self._stderr = self.stderr_path.open("wb")
        # `-m` puts the working directory first on sys.path: apps_fanout imports from there.
        self.process = subprocess.Popen(
            command,
            cwd=HERE,
            env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )
        self.pid = self.process.pid

    async def wait_ready(self) -> None:
        deadline = time.monotonic() + START_DEADLINE
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.app} exited:\n{self.stderr_path.read_text()}")
            with contextlib.suppress(OSError):
                await self.open_streams()
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"{self.app} did not start in {START_DEADLINE} s")
            await asyncio.sleep(0.05)

    async def open_streams(self) -> int:
        """How many streams the server has open now (its /stats)."""
        status, body = await http_request(self.port, "GET", f"/stats/{TOPIC}")
        if status != 200:
            raise OSError(f"/stats answered {status}")
        count: int = json.loads(body)["open"]
        return count

    async def wait_open(self, n: int) -> None:
        """Poll /stats until the server has exactly `n` streams open."""
        deadline = time.monotonic() + DEADLINE
        while (count := await self.open_streams()) != n:
            if time.monotonic() > deadline:
                raise SystemExit(f"{self.app}: {count} streams open, expected {n}")
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._stderr.close()


# -- clients -----------------------------------------------------------------------------------


async def http_request(port: int, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    """One request on a connection of its own (`Connection: close`): (status, body)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(
            f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        response = await reader.read()
    finally:
        writer.close()
    head, _, rest = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), rest


class Publisher:
    """POSTs events to the server's /publish/{topic} over one keep-alive connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> Publisher:
        return cls(*await asyncio.open_connection(HOST, port))

    def send(self, port: int, body: bytes) -> None:
        self._writer.write(
            f"POST /publish/{TOPIC} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )

    async def answer(self) -> bytes:
        head = await self._reader.readuntil(b"\r\n\r\n")
        if head.split(b" ", 2)[1] != b"200":
            raise SystemExit(f"publish failed: {head!r}")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head)[1])  # type: ignore[index]
        return await self._reader.readexactly(length)

    def close(self) -> None:
        self._writer.close()


class Recorder:
    """When each subscriber received each round's event; a future per round for 'all have it'."""

    def __init__(self, subscribers: int, rounds: int) -> None:
        loop = asyncio.get_running_loop()
        self.n = subscribers
        self.times = [[math.nan] * subscribers for _ in range(rounds)]
        self.counts = [0] * rounds
        self.complete = [loop.create_future() for _ in range(rounds)]
        self.repeats = 0

    def received(self, index: int, round_: int, now: float) -> None:
        row = self.times[round_]
        if not math.isnan(row[index]):
            self.repeats += 1  # the same event twice: never expected
            return
        row[index] = now
        self.counts[round_] += 1
        if self.counts[round_] == self.n:
            self.complete[round_].set_result(None)


class StreamClient(asyncio.Protocol):
    """A raw connection that sends one request: `ready` once its stream began, `lost` once
    closed.  The benchmarks' clients (here and in bench_idle.py) read the bytes themselves."""

    def __init__(self, request: bytes) -> None:
        loop = asyncio.get_running_loop()
        self.request = request
        self.ready = loop.create_future()
        self.lost = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self._head = b""
        self._in_body = False
        self._tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def _fail(self, exc: BaseException) -> None:
        if not self.ready.done():
            self.ready.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(exc or ConnectionError("closed before the stream began"))
        if not self.lost.done():
            self.lost.set_result(None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Subscriber(StreamClient):
    """One SSE client: sends its GET, checks the status, notes when each round's event arrives.

    No HTTP library: the chunked framing is left in place, and `"round":<r>}` is looked for in
    the bytes as they come (a match split between two reads is found through the kept tail).
    """

    def __init__(self, index: int, request: bytes, preamble: bool) -> None:
        super().__init__(request)
        self.index = index
        #: Does the app send body bytes (a comment) right after the head?
        self.preamble = preamble
        self.recorder: Recorder | None = None

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if not self._in_body:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            status = self._head.split(b" ", 2)[1]
            if status != b"200":
                self._fail(ConnectionError(f"status {status.decode()}"))
                return
            data, self._head, self._in_body = self._head[end + 4 :], b"", True
            if not self.preamble:
                self._set_ready()
            if not data:
                return
        self._set_ready()
        text = self._tail + data
        last = 0
        recorder = self.recorder
        for match in ROUND.finditer(text):
            if recorder is not None:
                recorder.received(self.index, int(match[1]), now)
            last = match.end()
        self._tail = text[max(last, len(text) - 32) :]

    def _set_ready(self) -> None:
        if not self.ready.done():
            self.ready.set_result(None)


async def connect(port: int, n: int, *, preamble: bool) -> list[Subscriber]:
    """Open `n` streams, `CONNECTING_AT_ONCE` at a time; return once each has begun."""
    loop = asyncio.get_running_loop()
    request = (
        f"GET /events/{TOPIC} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
    ).encode()
    gate = asyncio.Semaphore(CONNECTING_AT_ONCE)

    async def one(index: int) -> Subscriber:
        async with gate:
            _, subscriber = await loop.create_connection(
                lambda: Subscriber(index, request, preamble), HOST, port
            )
            await subscriber.ready
            return subscriber

    return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(n))), DEADLINE)


async def disconnect(subscribers: list[Subscriber]) -> None:
    for subscriber in subscribers:
        subscriber.close()
    await asyncio.wait_for(asyncio.gather(*(s.lost for s in subscribers)), DEADLINE)


# -- measuring ---------------------------------------------------------------------------------


@dataclass
class Memory:
    idle_kib: int  # RSS with no subscriber (after the warm-up)
    loaded_kib: int  # RSS with N idle subscribers

    def per_subscriber(self, n: int) -> float:
        return (self.loaded_kib - self.idle_kib) / n


@dataclass
class FanoutRow:
    label: str  # the latency table's row
    memory_label: str  # the memory table's row
    app: str
    broker: str  # SSEKIT_BENCH_BROKER, for broker_app
    redis: bool  # published through a Redis server of our own
    pythonpath: str = ""  # another checkout's ssekit (--baseline)


FANOUT_ROWS = [
    FanoutRow("MemoryBroker", "ssekit broker_route, MemoryBroker", "broker_app", "memory", False),
    FanoutRow("RedisBroker", "ssekit broker_route, RedisBroker", "broker_app", "redis", True),
    FanoutRow(
        "hand-written",
        "hand-written fan-out (asyncio.Queue each)",
        "starlette_hand_fanout",
        "",
        False,
    ),
]


@dataclass
class MemoryRow:
    label: str
    app: str
    preamble: bool


MEMORY_ROWS = [
    MemoryRow("ssekit SSEResponse(async generator)", "ssekit_idle", True),
    MemoryRow("sse-starlette EventSourceResponse", "sse_starlette_idle", False),
    MemoryRow("hand-written Starlette StreamingResponse", "starlette_hand_idle", True),
]


class Fanout:
    """One fan-out server with its N subscribers, measured round after round.

    The servers take turns: round r of every row, then round r + 1, so a slow spell of a shared
    machine hits every row rather than one.  The client's CPU and the machine's other load are
    counted within each round's window (from just before the publish until every subscriber has
    the event); the server's CPU over the whole phase (see `measure_fanouts`).
    """

    def __init__(self, row: FanoutRow, server: Server, redis: RedisServer | None) -> None:
        self.row = row
        self.server = server
        self.redis = redis
        self.subscribers: list[Subscriber] = []
        self.memory: Memory | None = None
        self.recorder: Recorder | None = None
        self.publisher: Any = None
        self.sent: list[float] = []
        self.client_cpu = self.other_cpu = 0.0
        #: The rounds' windows, summed (s): the time the client and other CPU were taken over.
        self.window = 0.0
        #: CPU of the server (and Redis) from the first counted round to the end of the last one,
        #: pauses included: a server finishes some of its work after the last event went out.
        self.server_cpu = self.redis_cpu = 0.0

    async def start(self, n: int, rounds: int) -> None:
        await self.server.wait_ready()
        self.memory, self.subscribers = await warm_up_and_measure_memory(
            self.server, n, preamble=True
        )
        self.recorder = Recorder(n, rounds + 1)  # round 0 is a warm-up, not counted
        for subscriber in self.subscribers:
            subscriber.recorder = self.recorder
        if self.redis is None:
            self.publisher = await Publisher.connect(self.server.port)
        else:
            from ssekit.broker import RedisBroker

            self.publisher = RedisBroker(self.redis.url)

    async def round(self, round_: int) -> None:
        """Publish event `round_` and wait until every subscriber has it."""
        assert self.recorder is not None
        server, redis = self.server, self.redis
        server_before, client_before = cpu_seconds(server.pid), time.process_time()
        redis_before = cpu_seconds(redis.process.pid) if redis else 0.0
        busy_before = system_busy_seconds()
        body = b'{"round":%d}' % round_
        self.sent.append(time.perf_counter())
        if redis is None:
            self.publisher.send(server.port, body)
        else:  # another worker's publish: one XADD
            self.publisher.publish(TOPIC, body.decode())
        await asyncio.wait_for(self.recorder.complete[round_], DEADLINE)
        if redis is None:
            await self.publisher.answer()
        if round_ == 0:
            return  # the warm-up round is not counted
        server_cpu = cpu_seconds(server.pid) - server_before
        client_cpu = time.process_time() - client_before
        redis_cpu = cpu_seconds(redis.process.pid) - redis_before if redis else 0.0
        busy = system_busy_seconds() - busy_before
        self.window += time.perf_counter() - self.sent[-1]
        self.client_cpu += client_cpu
        self.other_cpu += max(0.0, busy - server_cpu - client_cpu - redis_cpu)

    def cpu_now(self) -> tuple[float, float]:
        """The CPU seconds the server and Redis (if any) have used so far."""
        redis = cpu_seconds(self.redis.process.pid) if self.redis else 0.0
        return cpu_seconds(self.server.pid), redis

    async def stop(self) -> None:
        """Disconnect every subscriber; the server must end every stream."""
        if self.publisher is not None:
            self.publisher.close()
        await disconnect(self.subscribers)
        await self.server.wait_open(0)

    def deliveries(self) -> list[float]:
        """Latency (s) of every delivery of every counted round."""
        assert self.recorder is not None
        times, sent = self.recorder.times, self.sent
        return [at - sent[r] for r in range(1, len(sent)) for at in times[r]]

    def last_per_round(self) -> list[float]:
        """Time (s) until the last subscriber had the event, per counted round."""
        assert self.recorder is not None
        times, sent = self.recorder.times, self.sent
        return [max(times[r]) - sent[r] for r in range(1, len(sent))]


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


async def warm_up_and_measure_memory(
    server: Server, n: int, *, preamble: bool
) -> tuple[Memory, list[Subscriber]]:
    """Two subscribers come and go; RSS; N subscribers connect; RSS.  Returns them connected."""
    warm = await connect(server.port, 2, preamble=preamble)
    await disconnect(warm)
    await server.wait_open(0)
    await asyncio.sleep(PAUSE)
    idle = rss_kib(server.pid)
    subscribers = await connect(server.port, n, preamble=preamble)
    await server.wait_open(n)
    await asyncio.sleep(PAUSE)
    return Memory(idle, rss_kib(server.pid)), subscribers


async def measure_fanouts(
    rows: list[FanoutRow], n: int, rounds: int, logdir: Path, *, together: bool
) -> list[Fanout]:
    """Measure the rows: `together` (every server's subscribers connected at once, the rounds in
    turns), or one row after another when this process cannot hold every row's sockets."""
    if together:
        return await measure_in_turns(rows, n, rounds, logdir)
    measured = []
    for row in rows:
        measured += await measure_in_turns([row], n, rounds, logdir)
    return measured


async def measure_in_turns(
    rows: list[FanoutRow], n: int, rounds: int, logdir: Path
) -> list[Fanout]:
    """Start every row's server, connect its subscribers (RSS before and after), run the rounds
    in turns, disconnect; return the measured rows."""
    redis = RedisServer(logdir) if any(row.redis for row in rows) else None
    fanouts: list[Fanout] = []
    try:
        for row in rows:
            env = {"SSEKIT_BENCH_BROKER": row.broker}
            if row.pythonpath:
                env["PYTHONPATH"] = row.pythonpath
            if row.redis:
                assert redis is not None
                env["SSEKIT_BENCH_REDIS_URL"] = redis.url
            fanouts.append(Fanout(row, Server(row.app, logdir, env), redis if row.redis else None))
        for fanout in fanouts:  # one at a time: each RSS is read while nothing else connects
            await fanout.start(n, rounds)
        before: list[tuple[float, float]] = []
        for round_ in range(rounds + 1):
            if round_ == 1:  # after the warm-up round
                before = [fanout.cpu_now() for fanout in fanouts]
            for fanout in fanouts:
                await fanout.round(round_)
                await asyncio.sleep(PAUSE)
        for fanout, (server_before, redis_before) in zip(fanouts, before, strict=True):
            server_after, redis_after = fanout.cpu_now()
            fanout.server_cpu = server_after - server_before
            fanout.redis_cpu = redis_after - redis_before
        for fanout in fanouts:
            await fanout.stop()
        return fanouts
    finally:
        for fanout in fanouts:
            fanout.server.stop()
        if redis is not None:
            redis.stop()


async def measure_idle(row: MemoryRow, n: int, logdir: Path) -> Memory:
    server = Server(row.app, logdir)
    try:
        await server.wait_ready()
        memory, subscribers = await warm_up_and_measure_memory(server, n, preamble=row.preamble)
        await disconnect(subscribers)
        await server.wait_open(0)
        return memory
    finally:
        server.stop()


# -- report ------------------------------------------------------------------------------------


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def _available(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _redis_version() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        return "-"
    out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    found = re.search(r"v=(\S+)", out)
    return found[1] if found else "?"


async def run(
    n: int,
    rounds: int,
    only: str = "",
    baseline: str = "",
    fanout_only: bool = False,
    fd_limit: int = 0,
) -> None:
    print(
        f"ssekit {ssekit.__version__}, Python {platform.python_version()} "
        f"({platform.python_implementation()}) on {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs"
    )
    names = ["starlette", "uvicorn", "h11", "httptools", "uvloop", "sse-starlette", "redis"]
    print(
        ", ".join(f"{name} {_version(name)}" for name in names)
        + f", redis-server {_redis_version()}"
    )
    print(f"{n:,} subscribers over {HOST}, {rounds} rounds (after one warm-up round)")

    rows = list(FANOUT_ROWS)
    if only:
        wanted = {name.strip() for name in only.split(",")}
        rows = [row for row in rows if row.label in wanted]
    if baseline:  # MemoryBroker on another checkout's ssekit, in the same turns
        rows.insert(1, FanoutRow("Memory (base)", "MemoryBroker (baseline)", "broker_app",
                                 "memory", False, str(Path(baseline).resolve())))  # fmt: skip
    if not (shutil.which("redis-server") and _available("redis")):
        print("redis-server or the redis package is missing: the RedisBroker rows are skipped")
        rows = [row for row in rows if not row.redis]
    together = fd_limit >= len(rows) * n + FD_MARGIN
    if not together:
        print(
            f"(this process may hold {fd_limit:,} sockets, not {len(rows)} × {n:,}: the rows are "
            "measured one after another, each with its own subscribers)"
        )
    memories: dict[str, Memory] = {}
    with tempfile.TemporaryDirectory(prefix="ssekit-fanout-") as tmp:
        logdir = Path(tmp)
        fanouts = await measure_fanouts(rows, n, rounds, logdir, together=together)
        for fanout in fanouts:
            assert fanout.memory is not None
            memories[fanout.row.memory_label] = fanout.memory
        for idle in [] if fanout_only else MEMORY_ROWS:
            if idle.app == "sse_starlette_idle" and not _available("sse_starlette"):
                print("sse-starlette is not installed (pip install -e '.[bench]'): row skipped")
                continue
            memories[idle.label] = await measure_idle(idle, n, logdir)

    print(f"\nDelivery latency, ms from the publish call to each of {n:,} subscribers")
    print(
        f"  {'':13} {'':>7} {'':>7} {'':>7} {'all had it':>10}  "
        f"{'server CPU':>10} {'server CPU':>10}  {'client CPU':>10} {'redis CPU':>9} {'other':>6}"
    )
    print(
        f"  {'':13} {'median':>7} {'p99':>7} {'max':>7} {'(median)':>10}  "
        f"{'ms/round':>10} {'µs/deliv.':>10}  {'ms/round':>10} {'ms/round':>9} {'load':>6}"
    )
    latencies: dict[str, float] = {}
    cpu_per_delivery: dict[str, float] = {}
    for fanout in fanouts:
        cpu_per_delivery[fanout.row.label] = fanout.server_cpu / rounds / n
        deliveries = fanout.deliveries()
        per_round = 1e3 / rounds
        redis_cpu = f"{fanout.redis_cpu * per_round:.1f}" if fanout.redis else "-"
        latencies[fanout.row.label] = p99 = quantile(deliveries, 0.99)
        everyone = statistics.median(fanout.last_per_round())
        print(
            f"  {fanout.row.label:13} {quantile(deliveries, 0.5) * 1e3:7.1f} {p99 * 1e3:7.1f} "
            f"{max(deliveries) * 1e3:7.1f} {everyone * 1e3:10.1f}  "
            f"{fanout.server_cpu * per_round:10.1f} {fanout.server_cpu / rounds / n * 1e6:10.1f}  "
            f"{fanout.client_cpu * per_round:10.1f} {redis_cpu:>9} "
            f"{fanout.other_cpu / fanout.window:6.2f}"
        )
        assert fanout.recorder is not None
        if fanout.recorder.repeats:
            print(f"  !! {fanout.row.label}: {fanout.recorder.repeats} events arrived twice")
    print(
        "  (other load: CPU cores busy with other processes of the machine during the rounds; "
        f"{os.cpu_count()} in all)"
    )

    print(
        f"\nServer memory per idle subscriber: (RSS with {n:,} idle streams - RSS with none) "
        f"/ {n:,}"
    )
    print(f"  {'server':42} {'RSS, none':>10} {'RSS, all':>10} {'KiB/subscriber':>15}")
    for label, mem in memories.items():
        print(
            f"  {label:42} {mem.idle_kib / 1024:6.1f} MiB {mem.loaded_kib / 1024:6.1f} MiB "
            f"{mem.per_subscriber(n):15.1f}"
        )

    print()
    if n != GOAL_SUBSCRIBERS:
        print(f"(the goals are set for {GOAL_SUBSCRIBERS:,} subscribers; this run has {n:,})")
    for name, goal in GOAL_P99_MS.items():
        if name not in latencies:
            print(f"SKIP {name}: not measured")
            continue
        p99_ms = latencies[name] * 1e3
        verdict = "PASS" if p99_ms < goal else "FAIL"
        print(f"{verdict} {name}: p99 delivery latency {p99_ms:.1f} ms (goal: under {goal:g} ms)")
    reference = cpu_per_delivery.get("hand-written")
    for name, allowed in GOAL_CPU_RATIO.items():
        if name not in cpu_per_delivery or not reference:
            print(f"SKIP {name}: server CPU per delivery not measured beside the hand-written one")
            continue
        ratio = cpu_per_delivery[name] / reference
        verdict = "PASS" if ratio <= allowed else "FAIL"
        print(
            f"{verdict} {name}: server CPU per delivery {cpu_per_delivery[name] * 1e6:.1f} µs, "
            f"{ratio:.2f}× the hand-written fan-out's {reference * 1e6:.1f} µs "
            f"(goal: at most {allowed:g}×)"
        )
    if "ssekit broker_route, MemoryBroker" not in memories:
        return
    per = memories["ssekit broker_route, MemoryBroker"].per_subscriber(n)
    verdict = "PASS" if per < GOAL_KIB else "FAIL"
    print(
        f"{verdict} ssekit broker_route (MemoryBroker): {per:.1f} KiB per idle subscriber "
        f"(goal: under {GOAL_KIB:g} KiB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=GOAL_SUBSCRIBERS)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="200 subscribers, 5 rounds")
    parser.add_argument(
        "--rows", default="", help="only these rows, e.g. MemoryBroker,hand-written"
    )
    parser.add_argument(
        "--baseline", metavar="DIR", default="", help="another checkout: its MemoryBroker row too"
    )
    parser.add_argument("--fanout-only", action="store_true", help="skip the idle-memory rows")
    args = parser.parse_args()
    n, rounds = (200, 5) if args.quick else (args.subscribers, args.rounds)
    if n < 1 or rounds < 1:
        parser.error("--subscribers and --rounds must be at least 1")
    if not sys.platform.startswith("linux"):
        raise SystemExit("this benchmark reads /proc: Linux only")
    # A server (which inherits the limit) holds its N sockets; this process holds N per row
    # measured at once: every row together when the limit allows, else one row at a time.
    limit = raise_fd_limit(n + FD_MARGIN)
    asyncio.run(run(n, rounds, args.rows, args.baseline, args.fanout_only, limit))


if __name__ == "__main__":
    main()
