"""Reading an open httpx streaming response in tests: raw bytes and parsed events."""

from __future__ import annotations

import httpx

from ssekit import EventParser, MessageEvent


class SSEReader:
    """An open httpx streaming response, read chunk by chunk: raw bytes and parsed events.

    Keep the reader referenced while the response should stay open: when its byte iterator is
    garbage collected, httpx closes the connection (the server sees a disconnect).  Reads are
    bounded by the client's read timeout.
    """

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.parser = EventParser()
        self.raw = b""
        self._chunks = response.iter_bytes()
        self._pending: list[MessageEvent] = []

    def next_chunk(self) -> bytes:
        """The next bytes the server sent (as they arrived); AssertionError at the end."""
        try:
            chunk = next(self._chunks)
        except StopIteration:
            raise AssertionError(f"the stream ended; it sent {self.raw!r}") from None
        self.raw += chunk
        self._pending.extend(self.parser.feed(chunk))
        return chunk

    def read_until(self, marker: bytes) -> bytes:
        """Read until the raw bytes contain `marker`; return all bytes read so far."""
        while marker not in self.raw:
            self.next_chunk()
        return self.raw

    def events(self, n: int) -> list[MessageEvent]:
        """The next `n` events."""
        while len(self._pending) < n:
            self.next_chunk()
        taken, self._pending = self._pending[:n], self._pending[n:]
        return taken

    def rest(self) -> list[MessageEvent]:
        """Every event until the server ends the response (an unfinished one is dropped)."""
        for chunk in self._chunks:
            self.raw += chunk
            self._pending.extend(self.parser.feed(chunk))
        self.parser.end_of_stream()
        taken, self._pending = self._pending, []
        return taken
