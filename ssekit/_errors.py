"""Exceptions that are part of ssekit's public API."""

from __future__ import annotations

__all__ = ["ChannelClosed", "StreamError"]


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
