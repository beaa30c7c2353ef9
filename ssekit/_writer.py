"""The stream's decisions, without I/O: what bytes to write, and how long to wait for more.

`StreamWriter` turns chunks into framed bytes, batches them by the flush policy, adds heartbeats,
the closing event and error events.  The drivers in `_stream.py` feed it chunks and the clock and
write what it returns; they hold no policy of their own, so sync and async serving behave alike.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from ssekit._errors import StreamError
from ssekit._event import Event, encode_data
from ssekit._options import ErrorHook, StreamOptions

__all__ = ["StreamWriter", "error_bytes", "opening_bytes"]

logger = logging.getLogger("ssekit")

#: The largest batch `flush="auto"` or a latency budget builds before writing.
MAX_BATCH_BYTES = 64 * 1024
HEARTBEAT = b": ping\n\n"
GENERIC_ERROR_MESSAGE = "The stream failed on the server."
#: The reconnection hint sent when `max_duration` ends a stream and no `retry` was configured.
DEFAULT_RECONNECT_HINT_MS = 1000


def opening_bytes(options: StreamOptions) -> bytes:
    """The preamble: a comment (and `retry:`, padding) so headers and `open` happen at once."""
    parts = [b": ok\n"]
    if options.padding:
        parts.append(b":" + b" " * options.padding + b"\n")
    if options.retry is not None:
        parts.append(b"retry: %d\n" % options.retry)
    parts.append(b"\n")
    return b"".join(parts)


def error_bytes(error: BaseException, on_error: ErrorHook | None) -> bytes:
    """The `error` event for a failed source; only safe messages reach the client."""
    if not isinstance(error, StreamError):
        logger.error("ssekit stream source failed", exc_info=error)
    reply: str | Event | None = None
    if on_error is not None:
        try:
            reply = on_error(error)
        except Exception:
            logger.exception("ssekit on_error hook failed")
    if isinstance(reply, Event):
        return reply.encode()
    if reply is None:
        reply = error.message if isinstance(error, StreamError) else GENERIC_ERROR_MESSAGE
    data = json.dumps({"message": str(reply)}, ensure_ascii=False, separators=(",", ":"))
    return Event(data, event="error").encode()


class StreamWriter:
    """Pacing for one stream: batches, heartbeats and the ending, given chunks and the time.

    Call `add()` with chunks as they arrive and `poll()` with the current time; `poll` returns the
    byte strings to write now and how long the driver may wait for more before polling again.
    """

    def __init__(self, options: StreamOptions, now: float) -> None:
        self._options = options
        self._started = now
        self._last_write = now
        self._frames: list[bytes] = []
        self._pending_bytes = 0
        self._batch_deadline: float | None = None
        self._ending: bytes | None = None
        self.done = False

    def add(self, chunks: list[Any], now: float) -> None:
        """Frame `chunks`; a chunk that cannot be framed ends the stream with an error event."""
        frame = self._options.frame
        try:
            framed = [frame(chunk) for chunk in chunks]
        except Exception as exc:
            framed = _frame_until_failure(frame, chunks)  # keep what precedes the bad chunk
            self.fail(exc)
        frames = self._frames
        frames += framed
        self._pending_bytes += sum(map(len, framed))
        if self._batch_deadline is None and isinstance(self._options.flush, float) and frames:
            self._batch_deadline = now + self._options.flush

    def finish(self) -> None:
        """The source is exhausted: write what is pending, then the `end` event if any."""
        if self._ending is None:
            end = self._options.end
            self._ending = (
                b"" if end is None else end.encode() if isinstance(end, Event) else encode_data(end)
            )

    def fail(self, error: BaseException) -> None:
        """The source failed: write what is pending, then an `error` event."""
        if self._ending is None:
            self._ending = error_bytes(error, self._options.on_error)

    def interrupt(self, ending: bytes) -> None:
        """End now, whatever the source does: write what is pending, then `ending`."""
        if not self.done:
            self._ending = ending

    def poll(self, now: float) -> tuple[list[bytes], float | None]:
        """Return (byte strings to write now, seconds to wait before the next poll or None)."""
        out: list[bytes] = []
        options = self._options
        if self._ending is not None:
            out = self._flush_all()
            if self._ending:
                out.append(self._ending)
            self.done = True
            return out, None
        if options.max_duration is not None and now - self._started >= options.max_duration:
            out = self._flush_all()
            hint = options.retry if options.retry is not None else DEFAULT_RECONNECT_HINT_MS
            out.append(b"retry: %d\n\n" % hint)
            self.done = True
            return out, None
        if self._frames:
            flush = options.flush
            if (
                flush in ("each", "auto")
                or self._pending_bytes >= MAX_BATCH_BYTES
                or (self._batch_deadline is not None and now >= self._batch_deadline)
            ):
                out = self._flush_all()
        if out:
            self._last_write = now
        elif options.heartbeat is not None and now - self._last_write >= options.heartbeat:
            out = [HEARTBEAT]
            self._last_write = now
        return out, self._wait_budget(now)

    def _flush_all(self) -> list[bytes]:
        frames = self._frames
        if not frames:
            return []
        pending_bytes = self._pending_bytes
        self._frames = []
        self._pending_bytes = 0
        self._batch_deadline = None
        if len(frames) == 1 or self._options.flush == "each":
            return frames
        if pending_bytes <= MAX_BATCH_BYTES:
            return [b"".join(frames)]
        return _split_batches(frames)

    def _wait_budget(self, now: float) -> float | None:
        deadlines = []
        options = self._options
        if options.heartbeat is not None:
            deadlines.append(self._last_write + options.heartbeat)
        if options.max_duration is not None:
            deadlines.append(self._started + options.max_duration)
        if self._batch_deadline is not None:
            deadlines.append(self._batch_deadline)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - now)


def _split_batches(frames: list[bytes]) -> list[bytes]:
    batches: list[bytes] = []
    batch: list[bytes] = []
    size = 0
    for frame in frames:
        if batch and size + len(frame) > MAX_BATCH_BYTES:
            batches.append(b"".join(batch))
            batch, size = [], 0
        batch.append(frame)
        size += len(frame)
    if batch:
        batches.append(b"".join(batch))
    return batches


def _frame_until_failure(frame: Callable[[Any], bytes], chunks: list[Any]) -> list[bytes]:
    framed: list[bytes] = []
    with contextlib.suppress(Exception):
        framed.extend(frame(chunk) for chunk in chunks)
    return framed
