"""`Channel`: push chunks into a stream from any thread or task (`send`, `send_error`, `end`)."""

from __future__ import annotations

from typing import Any

from ssekit._errors import StreamError
from ssekit._handoff import Handoff, HandoffSource

__all__ = ["Channel"]


class Channel(HandoffSource):
    """A push-style source for `to_sse()`: the producer calls `send()`, the stream writes it.

    Safe to use from any thread or task.  Bounded: when `maxsize` chunks wait unsent, `send()`
    blocks (and `asend()` awaits) until the client has taken some, so a slow client slows the
    producer instead of growing memory.  `send()` raises `ChannelClosed` once the channel has
    ended or the client has gone, which is how a producer learns to stop.
    """

    __slots__ = ()

    def __init__(self, maxsize: int = 64) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            raise ValueError(f"Channel maxsize must be an int of at least 1, not {maxsize!r}.")
        super().__init__(Handoff(maxsize))

    def send(self, chunk: Any, *, timeout: float | None = None) -> None:
        """Queue `chunk`, blocking while the channel is full (`TimeoutError` after `timeout` s)."""
        self._handoff.put(chunk, timeout)

    async def asend(self, chunk: Any, *, timeout: float | None = None) -> None:
        """Queue `chunk`, awaiting while the channel is full."""
        await self._handoff.aput(chunk, timeout)

    def send_error(self, error: str | BaseException) -> bool:
        """End the stream with an `error` event after what is queued; False if already over.

        A `str` (or a `StreamError`) is shown to the client; any other exception is logged and
        reported with a generic message.
        """
        if isinstance(error, str):
            error = StreamError(error)
        elif not isinstance(error, BaseException):
            raise TypeError(
                f"send_error() takes a str or an exception, not {type(error).__name__}."
            )
        return self._handoff.finish(error)

    async def asend_error(self, error: str | BaseException) -> bool:
        """`send_error()` for async code (it never waits)."""
        return self.send_error(error)

    def end(self) -> bool:
        """End the stream after what is queued; False if it was already over."""
        return self._handoff.finish()

    async def aend(self) -> bool:
        """`end()` for async code (it never waits)."""
        return self.end()

    @property
    def closed(self) -> bool:
        """True once the channel has ended or its client has gone: `send()` would raise."""
        return self._handoff.finished or self._handoff.closed
