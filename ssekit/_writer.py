"""The stream's decisions, without I/O: what bytes to write, how long to wait, and how it ends.

`StreamWriter` turns chunks into framed bytes, batches them by the flush policy, adds heartbeats,
and is the one place that knows how a stream ends.  Its life is one field, `state` (OPEN ->
DRAINING -> DONE), moved by typed inputs: chunks arrive (`add`), time passes (`poll`), the source
finishes, fails or ends with bytes of its own, an end is requested with a farewell, the consumer
stops (`end`, or `request` from another thread).  Which input may move which state where is data,
`TRANSITIONS`, in the spirit of h11's `_state.py`; anything else is a `WriterStateError`.

The drivers in `_stream.py` feed it and write what it returns; they hold no policy of their own,
so sync and async serving behave alike.  The clock is passed in: tests run it by hand.
"""

from __future__ import annotations

import enum
import logging
import threading
from dataclasses import dataclass
from typing import Any

from ssekit._errors import StreamError
from ssekit._event import Event
from ssekit._frame import (
    HEARTBEAT,
    error_event_bytes,
    event_bytes,
    opening_bytes,
    retry_hint_bytes,
)
from ssekit._options import ErrorHook, StreamOptions

__all__ = [
    "ConsumerClosed",
    "EndRequested",
    "Ending",
    "SourceEnded",
    "SourceFailed",
    "SourceFinished",
    "StreamWriter",
    "WriterState",
    "WriterStateError",
    "error_bytes",
]

logger = logging.getLogger("ssekit")

#: The largest batch `flush="auto"` or a latency budget builds before writing.
MAX_BATCH_BYTES = 64 * 1024
GENERIC_ERROR_MESSAGE = "The stream failed on the server."
#: The reconnection hint sent when `max_duration` ends a stream and no `retry` was configured.
DEFAULT_RECONNECT_HINT_MS = 1000
#: Guards every writer's `request()` (rare: a close or shutdown from another thread), so that an
#: idle stream does not carry a lock of its own.
_REQUESTS_LOCK = threading.Lock()


class WriterState(enum.Enum):
    """Where a stream's output is in its life."""

    #: Writing chunks as they come, and heartbeats while none do.
    OPEN = "open"
    #: The ending is decided: the next poll writes what is pending, then the ending.
    DRAINING = "draining"
    #: Nothing more will be written: the ending went out, or the consumer stopped.
    DONE = "done"


# -- inputs ----------------------------------------------------------------------------------------


class Chunks:
    """Chunks arrive: `StreamWriter.add(chunks, now)` (never built: the hot path passes a list)."""


class TimePasses:
    """The clock moved: `StreamWriter.poll(now)` (never built: the hot path passes a float)."""


class MaxDurationReached:
    """`max_duration` has passed: `poll` ends the stream with a `retry:` hint by itself."""


@dataclass(frozen=True, slots=True)
class SourceFinished:
    """The source is exhausted: what is pending, then the `end` option's event if any."""


@dataclass(frozen=True, slots=True)
class SourceFailed:
    """The source raised `error` (or a chunk failed to frame): pending, then an `error` event."""

    error: BaseException


@dataclass(frozen=True, slots=True)
class SourceEnded:
    """The source ended with bytes of its own (a broker's `retry:` hint for a slow client)."""

    ending: bytes


@dataclass(frozen=True, slots=True)
class EndRequested:
    """Someone asked the stream to end (`end_now()`, a shutdown): pending, then `farewell`."""

    farewell: bytes


@dataclass(frozen=True, slots=True)
class ConsumerClosed:
    """The consumer stopped listening (`close()`, a client gone): nothing more is written."""


#: How a stream can end; `Handoff.outcome` holds one of the first three.
Ending = SourceFinished | SourceFailed | SourceEnded | EndRequested | ConsumerClosed

_OPEN, _DRAINING, _DONE = WriterState.OPEN, WriterState.DRAINING, WriterState.DONE

#: state -> input type -> next state.  An input missing from a state's row is refused there.
#: Once the ending is decided the first one wins: later endings leave the state as it is.
TRANSITIONS: dict[WriterState, dict[type, WriterState]] = {
    _OPEN: {
        Chunks: _OPEN,
        TimePasses: _OPEN,
        MaxDurationReached: _DRAINING,
        SourceFinished: _DRAINING,
        SourceFailed: _DRAINING,
        SourceEnded: _DRAINING,
        EndRequested: _DRAINING,
        ConsumerClosed: _DONE,
    },
    _DRAINING: {
        Chunks: _DRAINING,  # dropped: they come after the ending (a chunk that failed to frame)
        TimePasses: _DONE,  # the drain: pending frames and the ending are written
        SourceFinished: _DRAINING,
        SourceFailed: _DRAINING,
        SourceEnded: _DRAINING,
        EndRequested: _DRAINING,
        ConsumerClosed: _DONE,
    },
    _DONE: {
        TimePasses: _DONE,
        SourceFinished: _DONE,
        SourceFailed: _DONE,
        SourceEnded: _DONE,
        EndRequested: _DONE,
        ConsumerClosed: _DONE,
    },
}


class WriterStateError(RuntimeError):
    """An input the writer cannot take in its current state (a driver's mistake)."""


def _next_state(state: WriterState, kind: type) -> WriterState:
    try:
        return TRANSITIONS[state][kind]
    except KeyError:
        raise WriterStateError(
            f"A StreamWriter in state {state.name} cannot take {kind.__name__}: "
            f"{'the stream has ended' if state is _DONE else 'not allowed here'}."
        ) from None


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
    return error_event_bytes(str(reply))


class StreamWriter:
    """Pacing for one stream: batches, heartbeats and the ending, given chunks and the time.

    `opening(now)` first; then `add()` chunks as they arrive, `end()` how the source ended, and
    `poll()` the current time: it returns the byte strings to write now and how long the driver
    may wait before polling again.  Only `request()` may be called from another thread.
    """

    __slots__ = (
        "_batch_deadline",
        "_ending",
        "_flush_at_once",
        "_frames",
        "_last_write",
        "_options",
        "_pending_bytes",
        "_requested",
        "_started",
        "state",
    )

    def __init__(self, options: StreamOptions) -> None:
        self._options = options
        #: The one field for the stream's life: OPEN, DRAINING or DONE.
        self.state = WriterState.OPEN
        self._started = self._last_write = 0.0
        self._frames: list[bytes] = []
        self._pending_bytes = 0
        self._batch_deadline: float | None = None
        #: Whether frames go out at the next poll ("each", "auto"), not after a latency budget.
        self._flush_at_once = options.flush in ("each", "auto")
        self._ending = b""  # what DRAINING writes after the pending frames
        self._requested: EndRequested | ConsumerClosed | None = None

    @property
    def done(self) -> bool:
        """True once nothing more will be written."""
        return self.state is _DONE

    def opening(self, now: float) -> bytes:
        """Start the clocks at `now`; return the preamble to write first."""
        self._started = self._last_write = now
        options = self._options
        return opening_bytes(padding=options.padding, retry=options.retry)

    def add(self, chunks: list[Any], now: float) -> None:
        """Chunks arrive: frame each once; one that cannot be framed ends the stream with an error.

        The frames before the bad chunk still go out, and nothing after it is framed: a user's
        serializer runs once per chunk.
        """
        state = self.state
        if state is not _OPEN:
            self.state = _next_state(state, Chunks)  # dropped after the ending; refused when done
            return
        frame = self._options.frame
        if len(chunks) == 1:  # the usual case (a live event), without the list's machinery
            try:
                data = frame(chunks[0])
            except Exception as exc:
                self.end(SourceFailed(exc))
                return
            self._frames.append(data)
            self._pending_bytes += len(data)
            if self._batch_deadline is None and not self._flush_at_once:
                self._start_batch(now)
            return
        framed: list[bytes] = []
        append = framed.append
        try:
            for chunk in chunks:
                append(frame(chunk))
        except Exception as exc:
            self.end(SourceFailed(exc))
        self._frames += framed
        self._pending_bytes += sum(map(len, framed))
        if self._batch_deadline is None and framed and not self._flush_at_once:
            self._start_batch(now)

    def _start_batch(self, now: float) -> None:
        """The first frame of a batch is pending: it goes out within the latency budget."""
        budget = self._options.flush
        assert isinstance(budget, float)  # not "each" or "auto": those flush at once
        self._batch_deadline = now + budget

    def end(self, ending: Ending) -> None:
        """How the stream ends; the first ending wins (on the consumer's thread, like `poll`)."""
        state = self.state
        next_state = _next_state(state, type(ending))
        if state is _OPEN and next_state is not _OPEN:
            self._ending = self._ending_bytes(ending)
        self.state = next_state

    def request(self, ending: EndRequested | ConsumerClosed) -> None:
        """Ask from any thread for an ending, taken in by the next `poll`; it does not wait.

        Kept for `poll` rather than applied here: the writer's state only ever changes on the
        consumer's thread.  A `ConsumerClosed` overrides an `EndRequested` still waiting.
        """
        with _REQUESTS_LOCK:
            if self._requested is None or isinstance(ending, ConsumerClosed):
                self._requested = ending

    def poll(self, now: float) -> tuple[list[bytes], float | None]:
        """Time passes: return (byte strings to write now, seconds to wait or None)."""
        if self._requested is not None:
            with _REQUESTS_LOCK:
                requested, self._requested = self._requested, None
            if requested is not None:
                self.end(requested)
        state = self.state
        options = self._options
        if state is _OPEN:
            max_duration = options.max_duration
            if max_duration is not None and now - self._started >= max_duration:
                self.state = _next_state(state, MaxDurationReached)
                hint = options.retry if options.retry is not None else DEFAULT_RECONNECT_HINT_MS
                self._ending = retry_hint_bytes(hint)
                state = self.state
        if state is not _OPEN:
            self.state = _next_state(state, TimePasses)
            if state is _DONE:
                return [], None
            out = self._flush_all()
            if self._ending:
                out.append(self._ending)
            return out, None
        frames = self._frames
        if frames and (
            self._flush_at_once
            or self._pending_bytes >= MAX_BATCH_BYTES
            or (self._batch_deadline is not None and now >= self._batch_deadline)
        ):
            out = self._flush_all()
            self._last_write = now
        elif options.heartbeat is not None and now - self._last_write >= options.heartbeat:
            out = [HEARTBEAT]
            # The next one is due one interval after this one was due, not after it went out:
            # a heartbeat a little late (a timer's rounding, a busy moment) does not make every
            # later one late too.  One a tenth of an interval late or more starts afresh: an
            # overloaded loop is not asked to catch up (one heartbeat, never a backlog).
            due = self._last_write + options.heartbeat
            self._last_write = due if now - due < options.heartbeat / 10 else now
        else:
            out = []
        # How long the driver may wait: until the next heartbeat, the end of `max_duration`,
        # or the pending batch's deadline, whichever comes first (None: until woken).
        heartbeat, max_duration = options.heartbeat, options.max_duration
        first = None if heartbeat is None else self._last_write + heartbeat
        if max_duration is not None:
            ends = self._started + max_duration
            if first is None or ends < first:
                first = ends
        batch = self._batch_deadline
        if batch is not None and (first is None or batch < first):
            first = batch
        return out, None if first is None else max(0.0, first - now)

    def _ending_bytes(self, ending: Ending) -> bytes:
        if isinstance(ending, SourceFinished):
            end = self._options.end
            return b"" if end is None else event_bytes(end)
        if isinstance(ending, SourceFailed):
            return error_bytes(ending.error, self._options.on_error)
        if isinstance(ending, SourceEnded):
            return ending.ending
        if isinstance(ending, EndRequested):
            return ending.farewell
        return b""  # ConsumerClosed: nothing more is written

    def _flush_all(self) -> list[bytes]:
        frames = self._frames
        if not frames:
            return []
        pending_bytes = self._pending_bytes
        self._pending_bytes = 0
        self._batch_deadline = None
        if len(frames) == 1 or self._options.flush == "each":
            out = frames.copy()
        elif pending_bytes <= MAX_BATCH_BYTES:
            out = [b"".join(frames)]
        else:
            out = _split_batches(frames)
        # Cleared, not replaced: an idle stream keeps its one list rather than a new one per
        # write that outlives the write.
        frames.clear()
        return out


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
