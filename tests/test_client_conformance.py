"""The parser's conformance table, through `EventSource` over a real socket.

Every case of `test_parse_conformance.CASES` is served by the raw socket server
(`raw_sse_server.py`) as HTTP/1.1 responses, one connection per segment of the case: the
segment's bytes are the response body, and closing the connection ends the segment, which is
what `EventParser.end_of_stream()` stands for in the table.  The client reconnects after each
one; once every segment has been served, the next connection is answered with 204 and the
client stops.  The events the client yields, its `retry_ms` and `last_event_id` at the end, and
the `Last-Event-ID` header of every request must be what the table says.

Each case is served three ways:

- `whole`: each segment in one `send()`;
- `bytewise`: one byte per `send()`, with TCP_NODELAY;
- `chunked`: chunked transfer encoding, the segment cut at seeded random places (1 to 64 bytes),
  one chunk per `send()`.

Keeping the cases faithful: nothing is added to their bytes.  The client is created with a
reconnection time of 7 ms (a value no case uses) so reconnections are fast; a case's own
`retry:` still applies and is waited for (200 ms to 2 s), and the cases run concurrently so the
module stays quick.  Every case can be served over HTTP, so none is skipped.  The one place HTTP
itself differs from the table is the `Last-Event-ID` header: HTTP removes spaces and tabs around
a header value, so for the id " a b " the server receives "a b" (the client's `last_event_id`
and the events keep the spaces).  The header the server receives is compared with the parser's
last event id after the previous segments, normalized that way.
"""

from __future__ import annotations

import concurrent.futures
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from support.raw_sse_server import RawConnection, RawSSEServer, no_content, raw_sse_server
from test_parse_conformance import CASES, Case

from ssekit import EventParser
from ssekit.client import EventSource

pytestmark = pytest.mark.timeout(60)

MODES = ["whole", "bytewise", "chunked"]
#: The client's reconnection time before a case sets one (ms): no case uses this value.
CLIENT_RETRY_MS = 7
#: How long one case may take (its `retry:` waits are at most about 2.4 s each).
CASE_DEADLINE = 30.0
#: How many cases run at once (they mostly wait for their reconnection delays).
WORKERS = 24

Dispatched = tuple[str, str, str]


def http_header_value(last_event_id: str) -> str | None:
    """What a server receives as `Last-Event-ID` for this id (None: no header)."""
    value = last_event_id.strip(" \t")
    return value or None


def expected_headers(case: Case) -> list[str | None]:
    """The `Last-Event-ID` of every request: none at first, then the parser's last event id
    after the segments served so far (the last request is the one answered with 204)."""
    parser = EventParser()
    headers: list[str | None] = [None]
    for segment in case.connections:
        parser.feed(segment)
        parser.end_of_stream()
        headers.append(http_header_value(parser.last_event_id))
    return headers


def random_pieces(data: bytes, rng: random.Random) -> list[bytes]:
    pieces = []
    i = 0
    while i < len(data):
        size = rng.choice((1, 1, 2, 3, rng.randint(1, 8), rng.randint(1, 64)))
        pieces.append(data[i : i + size])
        i += size
    return pieces


@dataclass
class Served:
    """What the server saw of one (case, mode)."""

    headers: list[str | None] = field(default_factory=list)


@dataclass
class Outcome:
    """What the client did with one (case, mode)."""

    events: list[Dispatched]
    retry_ms: int
    last_event_id: str
    error: BaseException | None
    seconds: float


class TableServer:
    """Serves `/<mode>/<case name>`: the case's segments, one per connection, then 204."""

    def __init__(self) -> None:
        self.cases = {case.name: case for case in CASES}
        self.served: dict[tuple[str, str], Served] = {}
        self._lock = threading.Lock()

    def __call__(self, conn: RawConnection) -> None:
        _, mode, name = conn.request.target.split("/", 2)
        case = self.cases[name]
        with self._lock:
            served = self.served.setdefault((name, mode), Served())
            index = len(served.headers)
            served.headers.append(conn.request.header("last-event-id"))
        if index >= len(case.connections):
            no_content(conn)
            return
        segment = case.connections[index]
        conn.send_head(chunked=mode == "chunked")
        if mode == "whole":
            conn.send(segment)
        elif mode == "bytewise":
            conn.send_bytewise(segment)
        else:
            conn.send_pieces(random_pieces(segment, random.Random(f"{name}/{index}")))
            conn.end_chunked()


def run_case(source: EventSource) -> Outcome:
    start = time.monotonic()
    events: list[Dispatched] = []
    error: BaseException | None = None
    try:
        events = [(m.type, m.data, m.last_event_id) for m in source]
    except Exception as exc:
        error = exc
    return Outcome(events, source.retry_ms, source.last_event_id, error, time.monotonic() - start)


def outcome_by(
    deadline: float, future: concurrent.futures.Future[Outcome], source: EventSource
) -> Outcome:
    """The run's outcome; a run still going at the deadline is closed (and the case fails)."""
    try:
        return future.result(max(0.0, deadline - time.monotonic()))
    except concurrent.futures.TimeoutError:
        source.close()  # ends the iteration at once, whatever it was waiting for
        outcome = future.result(CASE_DEADLINE)
        outcome.error = TimeoutError(f"still running after {CASE_DEADLINE} s")
        return outcome


@pytest.fixture(scope="module")
def table() -> Iterator[tuple[dict[tuple[str, str], Outcome], TableServer, RawSSEServer]]:
    """Run every (case, mode) through a client, concurrently, once for the module."""
    handler = TableServer()
    outcomes: dict[tuple[str, str], Outcome] = {}
    with raw_sse_server(handler) as server:
        limits = httpx.Limits(max_connections=WORKERS * 2)
        with httpx.Client(timeout=httpx.Timeout(10.0), limits=limits) as client:
            sources = {
                (case.name, mode): EventSource(
                    f"{server.url}/{mode}/{case.name}", client=client, retry_ms=CLIENT_RETRY_MS
                )
                for case in CASES
                for mode in MODES
            }
            pool = concurrent.futures.ThreadPoolExecutor(WORKERS, "table-client")
            with pool:
                futures = {key: pool.submit(run_case, source) for key, source in sources.items()}
                deadline = time.monotonic() + CASE_DEADLINE
                for key, future in futures.items():
                    outcomes[key] = outcome_by(deadline, future, sources[key])
        yield outcomes, handler, server


def test_the_table_is_the_parsers() -> None:
    """The cases are those of the parser's conformance table, several connections included."""
    assert len(CASES) >= 40
    assert any(len(case.connections) > 1 for case in CASES)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_case_through_the_client(
    case: Case,
    mode: str,
    table: tuple[dict[tuple[str, str], Outcome], TableServer, RawSSEServer],
) -> None:
    """The client yields the case's events, ends with its `retry` and last event id, and sent
    the right `Last-Event-ID` on every reconnection (one connection per segment, then 204)."""
    outcomes, handler, _ = table
    outcome = outcomes[(case.name, mode)]
    assert outcome.error is None
    assert outcome.events == case.events
    expected_retry = CLIENT_RETRY_MS if case.retry is None else case.retry
    assert outcome.retry_ms == expected_retry
    assert outcome.last_event_id == case.last_event_id
    sent = handler.served[(case.name, mode)].headers
    assert sent == expected_headers(case)
    assert sent[-1] == http_header_value(case.last_event_id)  # the table's own last id


def test_the_server_saw_no_errors(
    table: tuple[dict[tuple[str, str], Outcome], TableServer, RawSSEServer],
) -> None:
    """Every handler ran to its end (a failed handler would make every case suspect)."""
    _, _, server = table
    assert server.errors == []
    assert server.connections == sum(len(case.connections) + 1 for case in CASES) * len(MODES)


# -- long mixed streams: the parser's bulk path for runs of `data:` events, and its edges ------


def mixed_stream(seed: int, count: int) -> tuple[bytes, list[Dispatched]]:
    """About `count` blocks: runs of single `data: ` events (which the parser makes in bulk), of
    every length, between blocks of every other form; and the events a browser would dispatch."""
    rng = random.Random(seed)
    values = ["token", "", " lead", "a:b", "data: inside", "café ☕", "x" * 300, "\0", "tab\t"]
    parts: list[bytes] = []
    events: list[Dispatched] = []
    last_id = ""
    i = 0
    while i < count:
        for _ in range(rng.choice([0, 1, 2, 3, 10, 100, 400])):  # a run of the bulk path's form
            value = f"{rng.choice(values)} {i}"
            parts.append(f"data: {value}\n\n".encode())
            events.append(("message", value, last_id))
            i += 1
        value = f"{rng.choice(values)} {i}"
        form = rng.randrange(11)
        i += 1
        if form == 0:  # no space after the colon: a space that starts the value goes
            parts.append(f"data:{value}\n\n".encode())
            events.append(("message", value.removeprefix(" "), last_id))
        elif form == 1:
            parts.append(f"event: tick\ndata: {value}\n\n".encode())
            events.append(("tick", value, last_id))
        elif form == 2:
            last_id = str(i)
            parts.append(f"id: {last_id}\ndata: {value}\n\n".encode())
            events.append(("message", value, last_id))
        elif form == 3:  # two data lines
            parts.append(f"data: {value}\ndata: second\n\n".encode())
            events.append(("message", f"{value}\nsecond", last_id))
        elif form == 4:  # a comment block: nothing
            parts.append(b": keep-alive\n\n")
        elif form == 5:
            parts.append(f"data: {value}\r\n\r\n".encode())
            events.append(("message", value, last_id))
        elif form == 6:
            parts.append(f"data: {value}\r\r".encode())
            events.append(("message", value, last_id))
        elif form == 7:  # an extra blank line after the event
            parts.append(f"data: {value}\n\n\n".encode())
            events.append(("message", value, last_id))
        elif form == 8:  # retry, and an id alone: nothing dispatched, the id kept
            last_id = f"only-{i}"
            parts.append(f"retry: 5\nid: {last_id}\n\n".encode())
        elif form == 9:  # a comment line inside the event
            parts.append(f": note\ndata: {value}\n\n".encode())
            events.append(("message", value, last_id))
        else:  # `data` without a colon: an empty line of data
            parts.append(b"data\n\n")
            events.append(("message", "", last_id))
    return b"".join(parts), events


def cut(data: bytes, rng: random.Random, largest: int) -> list[bytes]:
    pieces = []
    i = 0
    while i < len(data):
        size = rng.randint(1, largest)
        pieces.append(data[i : i + size])
        i += size
    return pieces


@pytest.mark.parametrize("seed", range(6))
def test_a_long_mixed_stream_parses_the_same_however_it_is_cut(seed: int) -> None:
    """Fed to the parser whole, in pieces of up to 64 KiB, and in small pieces: always the
    expected events (the bulk path and the line-by-line path agree, across feed boundaries)."""
    data, expected = mixed_stream(seed, 3000)
    rng = random.Random(seed)
    for largest in (len(data), 65536, 4096, 97, 7):
        parser = EventParser()
        got = [
            (m.type, m.data, m.last_event_id)
            for piece in cut(data, rng, largest)
            for m in parser.feed(piece)
        ]
        assert got == expected, largest


@pytest.mark.parametrize("seed", range(3))
def test_a_long_mixed_stream_through_the_client(seed: int) -> None:
    """The same streams served by the raw server in sends of random sizes (up to 64 KiB), read
    by `EventSource`: every event, in order."""
    data, expected = mixed_stream(seed, 3000)
    rng = random.Random(seed)

    def handler(conn: RawConnection) -> None:
        if conn.index:
            no_content(conn)
            return
        conn.send_head()
        conn.send_pieces(cut(data, rng, 65536))

    with raw_sse_server(handler) as server, EventSource(server.url, retry_ms=1) as source:
        got = [(m.type, m.data, m.last_event_id) for m in source]
    assert got == expected
