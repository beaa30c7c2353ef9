"""A hand-written HTTP/1.1 server on a plain socket, for testing event-stream *clients*.

No framework touches the bytes: a test's handler writes the status line, the headers and the
body itself, cut wherever it likes (one byte per `send()` with TCP_NODELAY, a CR at the end of
one send and its LF at the start of the next, a BOM or a UTF-8 sequence split in two), drops the
connection mid-event, or answers 204, 404 or the wrong Content-Type.

    def handler(conn: RawConnection) -> None:
        conn.send_head()                          # 200, text/event-stream, close-delimited
        conn.send(b"data: one\\n\\n")
        conn.wait(gate)                           # until the test sets it (or the server stops)

    with raw_sse_server(handler) as server:
        ...  # connect to server.url
        server.requests[0].header("last-event-id")

Each accepted connection runs `handler(conn)` in a thread of its own; `conn.index` counts the
connections (0, 1, 2...) and `server.requests` records every request in arrival order, so a
test can check what a client sent when it reconnected.  When the handler returns the connection
is closed.  An `OSError` in a handler means the client went away and ends it quietly; any other
exception is recorded in `server.errors`, which the context manager checks on exit.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

#: How long a connection waits for a complete request, and a handler for a gate (generous).
REQUEST_DEADLINE = 10.0
GATE_DEADLINE = 20.0
STOP_DEADLINE = 10.0
#: How often the accept loop looks whether the server is stopping.
ACCEPT_POLL = 0.05

SSE_CONTENT_TYPE = "text/event-stream"


@dataclass(frozen=True)
class Request:
    """One request as it arrived: method, target, headers (names lower-cased) and body."""

    method: str
    target: str
    #: (lower-cased name, value decoded as UTF-8), in the order received.
    headers: list[tuple[str, str]]
    body: bytes
    #: The same with each value's bytes as received.
    raw_headers: list[tuple[str, bytes]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        """The first value of header `name` (any case), or None."""
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None


Handler = Callable[["RawConnection"], None]


class RawConnection:
    """One accepted connection, as a handler sees it."""

    def __init__(
        self, server: RawSSEServer, sock: socket.socket, index: int, request: Request
    ) -> None:
        self.server = server
        self.sock = sock
        #: 0 for the first connection the server accepted, then 1, 2...
        self.index = index
        self.request = request
        self._chunked = False

    # -- heads -----------------------------------------------------------------------------------

    def send_head(
        self,
        status: int = 200,
        reason: str = "OK",
        *,
        content_type: str | None = SSE_CONTENT_TYPE,
        headers: Sequence[tuple[str, str]] = (),
        chunked: bool = False,
    ) -> None:
        """Send the status line and headers of a streamed body.

        The body is close-delimited (no Content-Length, `Connection: close`), so what `send()`
        writes is exactly what the client reads, unless `chunked` asks for chunked transfer
        encoding (each `send()` then becomes one chunk).
        """
        lines = [f"HTTP/1.1 {status} {reason}"]
        if content_type is not None:
            lines.append(f"Content-Type: {content_type}")
        lines.append("Cache-Control: no-cache")
        if chunked:
            lines.append("Transfer-Encoding: chunked")
        lines.append("Connection: close")
        lines += [f"{name}: {value}" for name, value in headers]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        self._chunked = chunked

    def respond(
        self,
        status: int,
        reason: str,
        body: bytes = b"",
        *,
        content_type: str | None = "text/plain; charset=utf-8",
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Send a complete response with a Content-Length (the connection closes afterwards)."""
        lines = [f"HTTP/1.1 {status} {reason}"]
        if content_type is not None:
            lines.append(f"Content-Type: {content_type}")
        if status != 204 and not 100 <= status < 200:
            lines.append(f"Content-Length: {len(body)}")
        lines.append("Connection: close")
        lines += [f"{name}: {value}" for name, value in headers]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    # -- bodies ----------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Send `data` as one piece (one chunk when chunked); empty data sends nothing."""
        if not data:
            return
        if self._chunked:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        self.sock.sendall(data)

    def send_pieces(self, pieces: Iterable[bytes], *, pause: float = 0.0) -> None:
        """Send each piece on its own (with TCP_NODELAY set, each leaves in a packet of its own).

        `pause` spaces the sends out so the client is likely to read each piece separately.  It
        is pacing only, never a wait for something: if the client reads two pieces at once the
        test still checks the same result, it just exercises one split fewer.
        """
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in pieces:
            self.send(piece)
            if pause:
                time.sleep(pause)

    def send_bytewise(self, data: bytes, *, pause: float = 0.0) -> None:
        """Send `data` one byte per `send()`, with TCP_NODELAY."""
        self.send_pieces((data[i : i + 1] for i in range(len(data))), pause=pause)

    def end_chunked(self) -> None:
        """Send the last chunk of a chunked body (a proper end, not a dropped connection)."""
        if self._chunked:
            self.sock.sendall(b"0\r\n\r\n")

    def wait(self, gate: threading.Event, timeout: float = GATE_DEADLINE) -> bool:
        """Wait until the test sets `gate`, the server stops, or `timeout` passes; True if set."""
        deadline = time.monotonic() + timeout
        while not gate.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.server.stopping.is_set():
                return False
            gate.wait(min(remaining, 0.05))
        return True

    def wait_closed_by_client(self, timeout: float = GATE_DEADLINE) -> bool:
        """Block until the client closes its end (EOF or reset); True if it did in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.server.stopping.is_set():
            readable, _, _ = select.select([self.sock], [], [], 0.05)
            if readable:
                try:
                    if not self.sock.recv(4096):
                        return True
                except OSError:
                    return True
        return False

    def abort(self) -> None:
        """Drop the connection with a TCP reset (SO_LINGER 0) instead of an orderly close."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


class RawSSEServer:
    """Accepts connections on 127.0.0.1 and runs `handler(conn)` for each, in a thread."""

    def __init__(self, handler: Handler, *, listen: bool = True) -> None:
        self.handler = handler
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        #: Every request received, in the order the connections were accepted.
        self.requests: list[Request] = []
        #: When each request arrived (`time.monotonic()`).
        self.requests_at: list[float] = []
        #: Exceptions raised by handlers (other than OSError: the client went away).
        self.errors: list[BaseException] = []
        #: Set when the server stops: handlers waiting on a gate return.
        self.stopping = threading.Event()
        self._lock = threading.Condition()
        self._count = 0
        self._open: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._accepter: threading.Thread | None = None
        if listen:
            self.listen()

    def listen(self) -> None:
        """Start accepting.  Until then connections are refused (bound, but not listening)."""
        self._listener.listen(64)
        self._listener.settimeout(ACCEPT_POLL)
        self._accepter = threading.Thread(target=self._accept_loop, name="raw-sse-accept")
        self._accepter.start()

    @property
    def connections(self) -> int:
        """How many connections have been accepted and have sent a complete request."""
        with self._lock:
            return len(self.requests)

    def wait_for_connections(self, n: int, timeout: float = 10.0) -> list[Request]:
        """Wait until `n` requests have arrived; return the requests so far."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self.requests) >= n, timeout):
                raise AssertionError(
                    f"{len(self.requests)} requests arrived, not {n}, within {timeout} s"
                )
            return list(self.requests)

    def _accept_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(None)
            thread = threading.Thread(target=self._serve, args=(sock,), name="raw-sse-conn")
            with self._lock:
                self._open.add(sock)
                self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        try:
            request = _read_request(sock)
            if request is None:
                return
            with self._lock:
                index = self._count
                self._count += 1
                self.requests.append(request)
                self.requests_at.append(time.monotonic())
                self._lock.notify_all()
            self.handler(RawConnection(self, sock, index, request))
        except OSError:
            pass  # the client went away: a normal end for a stream
        except BaseException as exc:
            with self._lock:
                self.errors.append(exc)
        finally:
            with contextlib.suppress(OSError):
                sock.close()
            with self._lock:
                self._open.discard(sock)

    def close(self) -> None:
        """Stop accepting, wake waiting handlers, close open connections, join every thread."""
        self.stopping.set()
        if self._accepter is not None:
            self._accepter.join(STOP_DEADLINE)
        self._listener.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            threads = list(self._threads)
        for thread in threads:
            thread.join(STOP_DEADLINE)
        alive = [t for t in threads if t.is_alive()]
        assert not alive, f"raw server threads did not stop: {alive}"


@contextlib.contextmanager
def raw_sse_server(handler: Handler, *, listen: bool = True) -> Iterator[RawSSEServer]:
    """Run a `RawSSEServer` for the block; fail if a handler raised (other than OSError)."""
    server = RawSSEServer(handler, listen=listen)
    try:
        yield server
    finally:
        server.close()
    assert not server.errors, f"a handler of the raw server failed: {server.errors!r}"


def _read_request(sock: socket.socket) -> Request | None:
    """Read one request (head and Content-Length body); None if the client left first."""
    sock.settimeout(REQUEST_DEADLINE)
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buffer += chunk
    head, _, body = buffer.partition(b"\r\n\r\n")
    request_line, *header_lines = head.split(b"\r\n")
    method, target, _version = request_line.decode("latin-1").split(" ", 2)
    raw_headers: list[tuple[str, bytes]] = []
    for line in header_lines:
        name, _, value = line.partition(b":")
        raw_headers.append((name.decode("latin-1").strip().lower(), value.strip(b" \t")))
    length = next((int(v) for k, v in raw_headers if k == "content-length"), 0)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        body += chunk
    sock.settimeout(None)
    headers = [(name, value.decode("utf-8", "replace")) for name, value in raw_headers]
    return Request(method, target, headers, body, raw_headers)


# -- handlers the tests compose ------------------------------------------------------------------


def by_connection(*handlers: Handler, then: Handler | None = None) -> Handler:
    """Connection i runs `handlers[i]`; later ones run `then` (default: 204, stop reconnecting)."""
    after = then if then is not None else no_content

    def handler(conn: RawConnection) -> None:
        chosen = handlers[conn.index] if conn.index < len(handlers) else after
        chosen(conn)

    return handler


def no_content(conn: RawConnection) -> None:
    """204 No Content: an EventSource stops reconnecting."""
    conn.respond(204, "No Content", content_type=None)


def stream(*pieces: bytes, chunked: bool = False, pause: float = 0.0) -> Handler:
    """A 200 event stream that sends `pieces` (each on its own) and then closes the connection."""

    def handler(conn: RawConnection) -> None:
        conn.send_head(chunked=chunked)
        conn.send_pieces(pieces, pause=pause)
        conn.end_chunked()

    return handler
