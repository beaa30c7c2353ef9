"""gunicorn shutdown and stream cap: what a SIGTERM does to open streams, measured.

Run:  python benchmarks/bench_shutdown.py [--streams N] [--repeat R] [--baseline]

For each worker class (`gthread --threads 32`, `gevent`) and each source flavour (sync, async),
gunicorn serves `tests/apps/ops_app.py` (Flask, `init_app(app, StreamRegistry(farewell=...,
retry=500))`) in a subprocess, one worker, `--graceful-timeout 30` (gunicorn's default), with
`-c python:ssekit.gunicorn`.  N clients (httpx, one connection each) open a stream and receive
a tick every 100 ms; then the master gets SIGTERM.  Reported per row, best and worst of R runs:

- farewells: clients whose stream ended with the farewell event and `retry: 500`;
- farewell p50/max: SIGTERM to a client's farewell;
- worker exit: SIGTERM to the worker process's end (its /proc entry gone or a zombie);
- master exit: SIGTERM to gunicorn's exit.

`--baseline` adds one run of each worker class without `-c python:ssekit.gunicorn` (what the
README's Flask setup did before): no farewell, and the worker waits for the graceful timeout.
Then the stream cap: `--threads 8` (default cap 6), 6 streams held, and the time for the 7th
stream request's 503 and for an ordinary route's 200.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from ssekit import EventParser, MessageEvent

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"
HOST = "127.0.0.1"
DEADLINE = 60.0
FAREWELL = MessageEvent("message", "worker stopping", "")
FAREWELL_RETRY = 500


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


class Gunicorn:
    def __init__(self, worker: str, logdir: Path, *, hook: bool, threads: int = 32) -> None:
        self.url = f"http://{HOST}:{free_port()}"
        command = [sys.executable, "-m", "gunicorn"]
        if hook:
            command += ["-c", "python:ssekit.gunicorn"]
        command += [
            *("--bind", self.url.removeprefix("http://"), "--worker-class", worker),
            *("--workers", "1", "--threads", str(threads), "--graceful-timeout", "30"),
            *("--log-level", "warning", "apps.ops_app:app"),
        ]
        self._stderr = (logdir / f"{worker}-{self.url[-5:]}.stderr").open("wb")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), *sys.path])}
        self.process = subprocess.Popen(
            command, cwd=TESTS, stdout=subprocess.DEVNULL, stderr=self._stderr, env=env
        )
        deadline = time.monotonic() + DEADLINE
        while True:
            assert self.process.poll() is None, "gunicorn exited at start"
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.05)

    def worker_pid(self) -> int:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return int(children.read_text().split()[0])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(DEADLINE)
        self._stderr.close()


def gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


@contextlib.contextmanager
def serving(worker: str, logdir: Path, **kwargs: Any) -> Iterator[Gunicorn]:
    server = Gunicorn(worker, logdir, **kwargs)
    try:
        yield server
    finally:
        server.stop()


async def one_run(server: Gunicorn, kind: str, streams: int) -> dict[str, float]:
    url = f"{server.url}/stream?kind={kind}&interval=0.1"
    firsts = [asyncio.Event() for _ in range(streams)]
    farewell_at: list[float | None] = [None] * streams
    sent_at = 0.0

    async def read(http: httpx.AsyncClient, n: int) -> None:
        parser = EventParser()
        events: list[MessageEvent] = []
        with contextlib.suppress(httpx.HTTPError):
            async with http.stream("GET", url) as response:
                async for chunk in response.aiter_raw():
                    events.extend(parser.feed(chunk))
                    firsts[n].set()
                    if events and events[-1] == FAREWELL:
                        farewell_at[n] = time.monotonic()
        firsts[n].set()
        if farewell_at[n] is not None and parser.retry != FAREWELL_RETRY:
            farewell_at[n] = None

    limits = httpx.Limits(max_connections=streams, max_keepalive_connections=streams)
    async with httpx.AsyncClient(timeout=DEADLINE, limits=limits) as http:
        tasks = [asyncio.create_task(read(http, n)) for n in range(streams)]
        await asyncio.wait_for(asyncio.gather(*(f.wait() for f in firsts)), DEADLINE)
        await asyncio.sleep(0.3)
        pid = server.worker_pid()
        worker_exit = None
        sent_at = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        while server.process.poll() is None:
            if worker_exit is None and gone(pid):
                worker_exit = time.monotonic() - sent_at
            await asyncio.sleep(0.002)
        master_exit = time.monotonic() - sent_at
        await asyncio.wait_for(asyncio.gather(*tasks), DEADLINE)
    delays = [t - sent_at for t in farewell_at if t is not None]
    return {
        "farewells": len(delays),
        "p50": statistics.median(delays) if delays else float("nan"),
        "max": max(delays) if delays else float("nan"),
        "worker": master_exit if worker_exit is None else worker_exit,
        "master": master_exit,
    }


def cap_run(logdir: Path) -> dict[str, float]:
    held = []  # the body iterators: httpx closes the connection of one dropped midway
    with serving("gthread", logdir, hook=True, threads=8) as server, contextlib.ExitStack() as st:
        for _ in range(6):
            http = st.enter_context(httpx.Client(timeout=DEADLINE))
            response = st.enter_context(http.stream("GET", f"{server.url}/stream"))
            held.append(response.iter_raw())
            next(held[-1])
        started = time.monotonic()
        refused = httpx.get(f"{server.url}/stream", timeout=DEADLINE)
        refused_s = time.monotonic() - started
        assert refused.status_code == 503, refused.status_code
        started = time.monotonic()
        plain = httpx.get(f"{server.url}/plain", timeout=DEADLINE)
        plain_s = time.monotonic() - started
        assert plain.status_code == 200
        return {
            "503": refused_s,
            "plain": plain_s,
            "retry_after": float(refused.headers["retry-after"]),
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", action="store_true")
    args = parser.parse_args()
    print(f"gunicorn SIGTERM with {args.streams} open streams, best/worst of {args.repeat} runs")
    columns = ("farewells", "p50 ms", "max ms", "worker ms", "master ms")
    widths = (10, 8, 8, 16, 16)
    print(
        f"{'setup':49}", *(f"{name:>{width}}" for name, width in zip(columns, widths, strict=True))
    )
    with tempfile.TemporaryDirectory() as tmp:
        logdir = Path(tmp)
        rows = [(w, k, True) for w in ("gthread", "gevent") for k in ("sync", "async")]
        if args.baseline:
            rows += [(w, "sync", False) for w in ("gthread", "gevent")]
        for worker, kind, hook in rows:
            results = []
            for _ in range(args.repeat if hook else 1):
                with serving(worker, logdir, hook=hook) as server:
                    results.append(asyncio.run(one_run(server, kind, args.streams)))
            label = f"{worker}, {kind} source, " + (
                "-c python:ssekit.gunicorn" if hook else "no hook"
            )
            counts = sorted(int(r["farewells"]) for r in results)
            worker_ms = sorted(r["worker"] * 1000 for r in results)
            master_ms = sorted(r["master"] * 1000 for r in results)
            p50 = statistics.median(r["p50"] for r in results) * 1000
            mx = max(r["max"] for r in results) * 1000
            print(
                f"{label:49} {counts[0]:>4}-{counts[-1]:<2}/{args.streams:<2}",
                f"{p50:>8.0f} {mx:>8.0f}",
                f"{worker_ms[0]:>7.0f}-{worker_ms[-1]:<8.0f}",
                f"{master_ms[0]:>7.0f}-{master_ms[-1]:<8.0f}",
            )
        cap = cap_run(logdir)
        print(
            f"\ngthread --threads 8 (default max_streams 6), 6 streams held: 7th stream request "
            f"-> 503 (Retry-After {cap['retry_after']:.0f}) in {cap['503'] * 1000:.1f} ms, "
            f"/plain -> 200 in {cap['plain'] * 1000:.1f} ms"
        )


if __name__ == "__main__":
    main()
