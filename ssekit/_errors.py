"""Exceptions that are part of ssekit's public API."""

from __future__ import annotations

__all__ = ["ChannelClosed", "ParseLimitExceeded", "StreamError"]


class StreamError(Exception):
    """An error whose message is safe to show to the client.

    Raise it from a source to end the stream with an `error` event carrying the message.  Any other
    exception is logged and reported to the client with a generic message, so internals never leak.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ChannelClosed(RuntimeError):
    """The channel can take no more chunks: it was ended, or its consumer went away."""


class ParseLimitExceeded(ValueError):
    """An event stream went over one of `EventParser`'s size limits.

    Raised by `EventParser.feed()` (and so by `ssekit.client`'s event sources, which stop with it
    instead of reconnecting) when one line, or the data of one event, is longer than the limit:
    a stream that does so is broken or hostile, and reading on would hold ever more memory.
    """

    def __init__(self, limit: str, value: int) -> None:
        what = "one line" if limit == "max_line_size" else "the data of one event"
        super().__init__(
            f"The event stream is refused: {what} is longer than {limit}={value:,} characters. "
            f"If the stream is legitimate, pass a larger {limit} (or {limit}=None for no limit) "
            "to EventParser or to the client's event source."
        )
        #: The name of the limit that was exceeded: "max_line_size" or "max_event_size".
        self.limit = limit
        #: Its value, in characters.
        self.value = value

    def __reduce__(self) -> tuple[type[ParseLimitExceeded], tuple[str, int]]:
        return (type(self), (self.limit, self.value))  # it pickles, e.g. across processes
