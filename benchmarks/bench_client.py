"""Client throughput: `ssekit.client.EventSource` against httpx-sse, over loopback.

Run:  python benchmarks/bench_client.py [--events N] [--repeat R] [--quick] [--profile]
                                        [--baseline DIR]

A server in a subprocess (a plain socket, no framework) answers every request with a stream of N
small events built in advance, sent with one `sendall()` as fast as the kernel takes it: the
server costs next to nothing, so what is measured is the client.  Two streams:

- `data`: `data: token 123\\n\\n` (the common case: one data line per event);
- `full`: `event: tick\\nid: 123\\ndata: token 123\\n\\n`.

Three clients read them in this process, through one `httpx.Client` made beforehand (its set-up
is not timed), from the request to the N-th event:

- `httpx iter_bytes() [floor]`: counts `\\n\\n` in the raw body; no parsing, the cost of httpx
  alone, which both parsers pay on top of;
- `ssekit EventSource`: `for message in EventSource(url, client=client)`, stopping at the N-th
  message (an EventSource would otherwise reconnect when the body ends);
- `httpx-sse iter_sse()`: `with connect_sse(client, "GET", url) as source:` then
  `for sse in source.iter_sse()`, to the end of the body.

Before timing, both parsers' events are checked against the expected (type, data, last event
id) of every event.  Rows take turns, round after round; each reports its best round (a slow
spell on a shared machine then hits every row rather than one).  The garbage collector stays on,
as in real use.  `--profile` runs ssekit's client under cProfile and prints where the time goes.
`--baseline DIR` (a checkout of an older ssekit) adds a row: this client with the older checkout's
`EventParser`, the part that does the work, timed in turn with the others.
The script is a report: it prints PASS/FAIL for the target (ssekit at least 3x httpx-sse on the
`data` stream) and exits 0 either way.  httpx-sse comes from the `bench` extra.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import importlib.metadata
import importlib.util
import io
import platform
import pstats
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

import ssekit
import ssekit.client
from ssekit.client import EventSource

try:
    import httpx_sse
except ImportError:  # pragma: no cover - the bench extra is missing
    HAVE_PEER = False
else:
    HAVE_PEER = True

HOST = "127.0.0.1"
#: ssekit's client against httpx-sse's, on the `data` stream.
GOAL = 3.0
STREAMS = ("data", "full")
HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Connection: close\r\n\r\n"
)

Expected = list[tuple[str, str, str]]


# -- the server (run as `bench_client.py --serve N`) --------------------------------------------


def build_body(stream: str, n: int) -> bytes:
    if stream == "data":
        return b"".join(b"data: token %d\n\n" % i for i in range(n))
    return b"".join(b"event: tick\nid: %d\ndata: token %d\n\n" % (i, i) for i in range(n))


def expected_events(stream: str, n: int) -> Expected:
    if stream == "data":
        return [("message", f"token {i}", "") for i in range(n)]
    return [("tick", f"token {i}", str(i)) for i in range(n)]


def serve(n: int) -> None:
    """Answer `/data` and `/full` with their bodies, then close; print the port first."""
    bodies = {f"/{stream}".encode(): HEAD + build_body(stream, n) for stream in STREAMS}
    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(16)
    print(listener.getsockname()[1], flush=True)

    def answer(conn: socket.socket) -> None:
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                request += chunk
            path = request.split(b" ", 2)[1]
            with contextlib.suppress(OSError):  # the ssekit client leaves at the N-th event
                conn.sendall(bodies[path])
                conn.shutdown(socket.SHUT_WR)
                while conn.recv(65536):
                    pass

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=answer, args=(conn,), daemon=True).start()


@contextlib.contextmanager
def server_process(n: int) -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(n)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield f"http://{HOST}:{port}"
    finally:
        process.kill()
        process.wait()


# -- the clients ------------------------------------------------------------------------------


def read_floor(client: httpx.Client, url: str, n: int) -> int:
    ends = 0
    with client.stream("GET", url) as response:
        for chunk in response.iter_bytes():
            ends += chunk.count(b"\n\n")  # these streams never split a "\n\n" across reads...
    return ends  # ...often enough to matter: checked to be within 1% of n below


def read_ssekit(client: httpx.Client, url: str, n: int) -> int:
    count = 0
    with EventSource(url, client=client) as source:
        for _ in source:
            count += 1
            if count == n:
                break
    return count


def read_httpx_sse(client: httpx.Client, url: str, n: int) -> int:
    count = 0
    with httpx_sse.connect_sse(client, "GET", url) as source:
        for _ in source.iter_sse():
            count += 1
    return count


def events_ssekit(client: httpx.Client, url: str, n: int) -> Expected:
    got = []
    with EventSource(url, client=client) as source:
        for message in source:
            got.append((message.type, message.data, message.last_event_id))
            if len(got) == n:
                break
    return got


def events_httpx_sse(client: httpx.Client, url: str, n: int) -> Expected:
    with httpx_sse.connect_sse(client, "GET", url) as source:
        return [(sse.event, sse.data, sse.id) for sse in source.iter_sse()]


@dataclass(frozen=True)
class Row:
    label: str
    read: Callable[[httpx.Client, str, int], int]
    needs_peer: bool = False


FLOOR = Row("httpx iter_bytes()  [floor: no parsing]", read_floor)
SSEKIT = Row("ssekit EventSource", read_ssekit)
PEER = Row("httpx-sse connect_sse() + iter_sse()", read_httpx_sse, needs_peer=True)
ROWS = [FLOOR, SSEKIT, PEER]


def version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def check(client: httpx.Client, url: str, stream: str, n: int) -> None:
    """Both parsers give exactly the expected events before anything is timed."""
    want = expected_events(stream, n)
    if events_ssekit(client, url, n) != want:
        raise SystemExit(f"ssekit's events differ from the expected ones ({stream})")
    if HAVE_PEER and events_httpx_sse(client, url, n) != want:
        raise SystemExit(f"httpx-sse's events differ from the expected ones ({stream})")
    ends = read_floor(client, url, n)
    if abs(ends - n) > n / 100:
        raise SystemExit(f"the floor counted {ends} event ends for {n} events ({stream})")


def baseline_row(root: Path) -> Row:
    """ssekit's client reading with the `EventParser` of an older checkout at `root`."""
    path = root / "ssekit" / "_parse.py"
    spec = importlib.util.spec_from_file_location("ssekit_baseline_parse", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"--baseline: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it runs
    spec.loader.exec_module(module)

    def make_parser(*, last_event_id: str = "", **limits: Any) -> Any:
        return module.EventParser(last_event_id=last_event_id)  # it may have no limits

    def read(client: httpx.Client, url: str, n: int) -> int:
        current = ssekit.client.EventParser
        ssekit.client.EventParser = make_parser  # type: ignore[assignment,misc]
        try:
            return read_ssekit(client, url, n)
        finally:
            ssekit.client.EventParser = current  # type: ignore[misc]

    return Row("ssekit EventSource, baseline's EventParser", read)


def measure(
    client: httpx.Client, url: str, n: int, repeat: int, extra: list[Row]
) -> dict[str, float]:
    """Best seconds per row over `repeat` rounds (rows take turns within a round)."""
    rows = [row for row in ROWS if HAVE_PEER or not row.needs_peer]
    rows[2:2] = extra
    best = {row.label: float("inf") for row in rows}
    for _ in range(repeat):
        for row in rows:
            start = time.perf_counter()
            row.read(client, url, n)
            best[row.label] = min(best[row.label], time.perf_counter() - start)
    return best


def profile(client: httpx.Client, url: str, n: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    read_ssekit(client, url, n)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(12)
    print(out.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="50,000 events, best of 2")
    parser.add_argument("--profile", action="store_true", help="cProfile ssekit's client")
    parser.add_argument("--baseline", type=Path, metavar="DIR", help="an older ssekit checkout")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    n, repeat = (50_000, 2) if args.quick else (args.events, args.repeat)

    print(
        f"ssekit {ssekit.__version__} client benchmark: {n:,} events per stream, best of {repeat}"
    )
    print(
        f"Python {platform.python_version()} ({platform.python_implementation()}) on "
        f"{platform.system()} {platform.machine()}"
    )
    print(f"httpx {version('httpx')}, h11 {version('h11')}, httpx-sse {version('httpx-sse')}")
    ratios: dict[str, float] = {}
    with server_process(n) as base, httpx.Client(timeout=httpx.Timeout(30.0)) as client:
        for stream in STREAMS:
            url = f"{base}/{stream}"
            check(client, url, stream, n)
            size = len(build_body(stream, n))
            extra = [] if args.baseline is None else [baseline_row(args.baseline)]
            best = measure(client, url, n, repeat, extra)
            peer = best.get(PEER.label)
            print(f"\nStream `{stream}`: {n:,} events, {size / 1e6:.1f} MB, one connection")
            print(f"  {'client':42} {'M events/s':>10} {'ns/event':>9} {'vs httpx-sse':>13}")
            for label, seconds in best.items():
                ratio = f"{peer / seconds:.2f}x" if peer else "n/a"
                print(
                    f"  {label:42} {n / seconds / 1e6:10.2f} {seconds / n * 1e9:9.0f} {ratio:>13}"
                )
            if peer:
                ratios[stream] = peer / best[SSEKIT.label]
            if args.profile:
                print(f"\ncProfile of ssekit's client on `{stream}` (sorted by own time):")
                profile(client, url, n)
    print("\nTarget (ssekit EventSource against httpx-sse, same stream, same httpx client)")
    if "data" not in ratios:
        print("  SKIP  `data` stream: httpx-sse is not installed")
    else:
        verdict = "PASS" if ratios["data"] >= GOAL else "FAIL"
        print(f"  {verdict}  `data` stream: {ratios['data']:.2f}x (target >= {GOAL:g}x)")
    if "full" in ratios:
        print(f"  info  `full` stream: {ratios['full']:.2f}x (no target)")


if __name__ == "__main__":
    main()
