"""End-to-end benchmark: one stream of small events from a real server to a client, over loopback.

Run:  python benchmarks/bench_e2e.py [--events N] [--repeat R] [--client C] [--quick]

Each server runs in a subprocess of its own, on a free port of 127.0.0.1: uvicorn
(`python -m uvicorn apps_e2e:<app> --port P --log-level warning --no-access-log`) for the ASGI
apps, gunicorn's gthread worker (`python -m gunicorn -k gthread --threads 4 -w 1`) for the Flask
apps; `apps_e2e.py` holds them all.  Every app streams the same N events, `data: {"i":i,
"token":"hello"}`.  The client runs in this process, reads the raw body and counts events with
`bytes.count()` (no parsing); at the end it checks that exactly N `data:` lines and N event ends
arrived and that the last event is the right one.

Two clients, the same counting:

- `httpx`: `client.stream("GET", ...)` and `response.iter_raw()`.  httpx decodes the chunked
  transfer encoding with h11, which costs several microseconds per HTTP chunk: against a server
  that writes each event on its own (one chunk per event) this client is as busy as the server.
- `socket`: a plain socket, an HTTP/1.1 request like httpx's, woken only when 32 KiB are ready
  (SO_RCVLOWAT), and a tight loop that removes the chunked framing: under a microsecond per
  chunk, so the server is what is measured.

The `server`/`client` columns are the CPU time each side spent per event (the server's from
/proc, the client's from `time.process_time()`): a client at or above the server means the row
measures the client, and it is marked `*`.  Rows take turns round after round, and each reports
its best round, so a slow spell on a shared machine hits every row rather than one.  The peers
come from the `bench` extra (`pip install -e '.[bench]'`); gunicorn from the `test` extra.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

import ssekit

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"
START_DEADLINE = 30.0
STOP_DEADLINE = 10.0
RECV_SIZE = 256 * 1024
#: The plain-socket client waits for this many bytes before it reads (SO_RCVLOWAT).
RCVLOWAT = 32 * 1024
#: The goal: ssekit under uvicorn with flush="auto" at least this many times sse-starlette.
GOAL = 5.0


@dataclass(frozen=True)
class Row:
    label: str
    app: str  # the attribute of apps_e2e
    server: str  # "uvicorn" or "gunicorn"


ROWS = [
    Row("ssekit SSEResponse, async source, flush=auto", "ssekit_async_auto", "uvicorn"),
    Row("ssekit SSEResponse, async source, flush=each", "ssekit_async_each", "uvicorn"),
    Row("ssekit SSEResponse, sync source,  flush=auto", "ssekit_sync_auto", "uvicorn"),
    Row("sse-starlette EventSourceResponse", "sse_starlette", "uvicorn"),
    Row("Starlette StreamingResponse, hand-framed", "starlette_hand", "uvicorn"),
    Row("Flask + ssekit sse_response, flush=auto", "flask_ssekit", "gunicorn"),
    Row("Flask Response, hand-framed", "flask_hand", "gunicorn"),
]
AUTO = "ssekit_async_auto"
PEER = "sse_starlette"


# -- servers -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


class Server:
    """One app served by uvicorn or gunicorn in a subprocess, its stderr kept in a file."""

    def __init__(self, row: Row, logdir: Path) -> None:
        self.row = row
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}/"
        if row.server == "uvicorn":
            command = [
                *(sys.executable, "-m", "uvicorn", f"apps_e2e:{row.app}"),
                *("--host", HOST, "--port", str(self.port)),
                *("--log-level", "warning", "--no-access-log"),
            ]
        else:
            command = [
                *(sys.executable, "-m", "gunicorn", "-k", "gthread", "--threads", "4", "-w", "1"),
                *("--bind", f"{HOST}:{self.port}", "--log-level", "warning"),
                f"apps_e2e:{row.app}",
            ]
        self.stderr_path = logdir / f"{row.app}.stderr"
        self._stderr = self.stderr_path.open("wb")
        # `-m` puts the working directory first on sys.path: apps_e2e imports from there.
        self.process = subprocess.Popen(
            command, cwd=HERE, stdout=subprocess.DEVNULL, stderr=self._stderr
        )

    def wait_ready(self) -> None:
        """Stream a few events until the server answers (this also warms it up)."""
        deadline = time.monotonic() + START_DEADLINE
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.row.app} exited:\n{self.stderr_path.read_text()}")
            with contextlib.suppress(OSError):
                tally = read_socket(self.url + "?n=1000")
                tally.check(1000)
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"{self.row.app} did not start in {START_DEADLINE} s")
            time.sleep(0.05)

    def cpu_seconds(self) -> float:
        """CPU time of the server process and its children (gunicorn's worker) so far."""
        return _tree_cpu(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._stderr.close()


def _tree_cpu(pid: int) -> float:
    """User + system CPU seconds of `pid` and its descendants (Linux /proc; NaN elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as children:
            return total + sum(_tree_cpu(int(child)) for child in children.read().split())
    except (OSError, ValueError, IndexError):
        return float("nan")


# -- clients -----------------------------------------------------------------------------------


class Tally:
    """Counts events in a body fed in pieces: `\\n\\n` (event ends) and `data:` (data lines).

    A marker split between two pieces is counted through the last bytes of the previous piece.
    (Three line feeds in a row at a piece boundary would count twice; these streams have none.)
    """

    def __init__(self) -> None:
        self.ends = 0
        self.data = 0
        self.size = 0
        self.pieces = 0  # what the client received the body in: HTTP chunks, or httpx's pieces
        self.last = b""  # the last 64 bytes of the body

    def feed(self, piece: bytes, pieces: int = 1) -> None:
        """Count `piece`, the next bytes of the body (`pieces`: how many chunks it joins)."""
        self.pieces += pieces
        self.size += len(piece)
        self.ends += piece.count(b"\n\n")
        self.data += piece.count(b"data:")
        last = self.last
        if last:
            if last[-1] == 10 and piece[0] == 10:
                self.ends += 1
            self.data += (last[-4:] + piece[:4]).count(b"data:")  # only ones across the joint
        self.last = piece[-64:] if len(piece) >= 64 else (last + piece)[-64:]

    def check(self, n: int) -> None:
        """Exactly `n` data lines, an event end for each (and at most 2 comments), the last one."""
        last_event = b'data: {"i":%d,"token":"hello"}\n\n' % (n - 1)
        if self.data != n or not n <= self.ends <= n + 2 or not self.last.endswith(last_event):
            raise SystemExit(
                f"wrong stream: {self.data:,} data lines and {self.ends:,} event ends for "
                f"{n:,} events, ending {self.last[-48:]!r}"
            )


def read_httpx(client: httpx.Client, url: str) -> Tally:
    tally = Tally()
    with client.stream("GET", url) as response:
        response.raise_for_status()
        for piece in response.iter_raw():
            if piece:
                tally.feed(piece)
    return tally


def read_socket(url: str) -> Tally:
    """GET `url` over a plain socket (HTTP/1.1, as httpx sends it) and tally the body."""
    parts = urlsplit(url)
    host, port, target = parts.hostname or HOST, parts.port or 80, f"{parts.path}?{parts.query}"
    tally = Tally()
    with socket.create_connection((host, port), timeout=60.0) as sock:
        request = (
            f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Accept: */*\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(request.encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = sock.recv(RECV_SIZE)
            if not data:
                raise ConnectionError("the server closed the connection before the headers")
            buf += data
        head, _, buf = buf.partition(b"\r\n\r\n")
        # Wake up for a batch of bytes, not for every HTTP chunk: the client stays cheap however
        # small the server's writes are.  (The kernel still returns early at the end of the body.)
        with contextlib.suppress(AttributeError, OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, RCVLOWAT)
        status = head.split(b" ", 2)[1]
        if status != b"200":
            raise ConnectionError(f"status {status.decode()}")
        if b"\r\ntransfer-encoding: chunked" in head.lower():
            _read_chunked(sock, buf, tally)
        else:  # Content-Length or until close: the bytes are the body
            while buf:
                tally.feed(buf)
                buf = sock.recv(RECV_SIZE)
    return tally


def _read_chunked(sock: socket.socket, buf: bytes, tally: Tally) -> None:
    """Feed the payload of a chunked body to `tally`, one batch per `recv()`.

    The loop over chunk headers is as tight as it can be (a find, an int, a slice per chunk); the
    payload of a whole receive buffer is joined and counted at once.
    """
    recv = sock.recv
    parts: list[bytes] = []
    chunks = 0
    pos = 0

    def more(what: str) -> bytes:
        nonlocal parts, chunks
        if parts:
            tally.feed(b"".join(parts), chunks)
            parts, chunks = [], 0
        data = recv(RECV_SIZE)
        if not data:
            raise ConnectionError(f"the body ended {what}")
        return data

    while True:
        end = buf.find(b"\r\n", pos)
        while end < 0:  # the size line is not complete yet
            buf, pos = buf[pos:] + more("inside a chunk header"), 0
            end = buf.find(b"\r\n")
        size = int(buf[pos:end].partition(b";")[0], 16)
        pos = end + 2
        if size == 0:
            break  # the last chunk (trailers, if any, do not matter here)
        chunks += 1
        while size:
            if pos >= len(buf):
                buf, pos = more("inside a chunk"), 0
            piece = buf[pos : pos + size]
            parts.append(piece)
            pos += len(piece)
            size -= len(piece)
        while len(buf) - pos < 2:  # the CRLF after the chunk's data
            buf, pos = buf[pos:] + more("after a chunk"), 0
        pos += 2
    if parts:
        tally.feed(b"".join(parts), chunks)


# -- measuring ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    rate: float  # events/s
    megabytes: float  # MB/s of body bytes
    pieces: int  # body pieces the client received (HTTP chunks, for chunked bodies)
    server_us: float  # server CPU µs per event
    client_us: float  # client CPU µs per event


def measure(server: Server, read: Callable[[str], Tally], n: int) -> Result:
    url = f"{server.url}?n={n}"
    server_before, client_before = server.cpu_seconds(), time.process_time()
    start = time.perf_counter()
    tally = read(url)
    elapsed = time.perf_counter() - start
    client_cpu = time.process_time() - client_before
    server_cpu = server.cpu_seconds() - server_before
    tally.check(n)
    return Result(
        n / elapsed,
        tally.size / elapsed / 1e6,
        tally.pieces,
        server_cpu / n * 1e6,
        client_cpu / n * 1e6,
    )


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def _versions() -> str:
    names = ["starlette", "uvicorn", "h11", "sse-starlette", "flask", "werkzeug", "gunicorn"]
    names += ["httpx", "orjson", "uvloop", "httptools"]
    return ", ".join(f"{name} {_version(name)}" for name in names)


@contextlib.contextmanager
def running(rows: list[Row]) -> Iterator[dict[str, Server]]:
    """Start every server at once (idle servers cost nothing), stop them all at the end."""
    with tempfile.TemporaryDirectory(prefix="ssekit-bench-") as logdir:
        servers: dict[str, Server] = {}
        try:
            for row in rows:
                servers[row.app] = Server(row, Path(logdir))
            for server in servers.values():
                server.wait_ready()
            yield servers
        finally:
            for server in servers.values():
                server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--client",
        choices=("httpx", "socket", "both"),
        default="both",
        help="which client reads the streams (default: both, one table each)",
    )
    parser.add_argument("--quick", action="store_true", help="20,000 events, one repeat")
    args = parser.parse_args()
    n, repeat = (20_000, 1) if args.quick else (args.events, args.repeat)
    clients = ["httpx", "socket"] if args.client == "both" else [args.client]

    rows = list(ROWS)
    try:
        import sse_starlette  # noqa: F401
    except ImportError:
        print("sse-starlette is not installed (pip install -e '.[bench]'): its row is skipped")
        rows = [row for row in rows if row.app != PEER]

    print(
        f"ssekit {ssekit.__version__}, Python {platform.python_version()} "
        f"({platform.python_implementation()}) on {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs"
    )
    print(_versions())
    print(f"{n:,} events per stream over {HOST}, best of {repeat}")

    best: dict[tuple[str, str], Result] = {}
    with httpx.Client(timeout=httpx.Timeout(60.0)) as http, running(rows) as servers:
        readers: dict[str, Callable[[str], Tally]] = {
            "httpx": lambda url: read_httpx(http, url),
            "socket": read_socket,
        }
        for _ in range(repeat):
            for row in rows:
                for name in clients:
                    result = measure(servers[row.app], readers[name], n)
                    key = (row.app, name)
                    if key not in best or result.rate > best[key].rate:
                        best[key] = result

    for name in clients:
        title = {"httpx": "httpx, iter_raw()", "socket": "plain socket"}[name]
        print(f"\nclient: {title}")
        print(
            f"  {'server':54} {'events/s':>10} {'MB/s':>7} {'vs sse-starlette':>17} "
            f"{'chunks':>8} {'server µs/ev':>13} {'client µs/ev':>13}"
        )
        peer = best.get((PEER, name))
        for row in rows:
            result = best[(row.app, name)]
            ratio = f"{result.rate / peer.rate:.1f}x" if peer else "-"
            busy = "*" if result.client_us >= result.server_us else " "
            label = f"{row.label} ({row.server})"
            print(
                f"  {label:54} {result.rate:10,.0f} {result.megabytes:7.1f} {ratio:>17} "
                f"{result.pieces:8,} {result.server_us:13.2f} {result.client_us:12.2f}{busy}"
            )
    print("\n* the client spent as much CPU per event as the server: that row measures the client")

    print()
    for name in clients:
        peer = best.get((PEER, name))
        if peer is None:
            print(f"SKIP ({name} client): sse-starlette is not installed")
            continue
        times = best[(AUTO, name)].rate / peer.rate
        verdict = "PASS" if times >= GOAL else "FAIL"
        print(
            f"{verdict} ({name} client): ssekit under uvicorn with flush=auto is {times:.1f}x "
            f"sse-starlette's events/s (goal: at least {GOAL:g}x)"
        )


if __name__ == "__main__":
    main()
