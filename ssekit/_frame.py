"""Chunk -> event bytes: what `to_sse()` writes for each thing a source yields.

`str` and UTF-8 `bytes` become data, an `Event` is sent as is, anything else goes through the
serializer.  The default JSON serializer's output is framed without re-checking it: compact JSON
never holds a raw CR or LF (both are escaped inside strings) and is valid UTF-8.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ssekit._event import Event, encode_data
from ssekit._serialize import Serializer, dumps_json_bytes

__all__ = ["Encoded", "Framer", "make_framer"]

#: Frames one chunk as the bytes of one event.
Framer = Callable[[Any], bytes]


class Encoded(bytes):
    """Bytes already framed as whole events, written as they are (a broker frames once for all)."""

    __slots__ = ()


_DATA_TYPES = (str, Event, bytes, bytearray, memoryview)


def make_framer(serializer: Serializer | None) -> Framer:
    """Return the framing function for a stream; `serializer=None` means the default JSON."""

    def frame(chunk: Any) -> bytes:
        kind = type(chunk)
        if kind is str:
            return encode_data(chunk)
        if kind is dict and serializer is None:
            return b"data: " + dumps_json_bytes(chunk) + b"\n\n"
        if kind is Event:
            return chunk.encode()  # type: ignore[no-any-return]
        if kind is Encoded:
            return chunk  # type: ignore[no-any-return]
        if isinstance(chunk, _DATA_TYPES):
            return _frame_data_type(chunk)
        if serializer is None:
            return b"data: " + dumps_json_bytes(chunk) + b"\n\n"
        return _frame_serialized(serializer(chunk))

    return frame


def _frame_data_type(chunk: str | Event | bytes | bytearray | memoryview) -> bytes:
    if isinstance(chunk, Event):
        return chunk.encode()
    if isinstance(chunk, str):
        return encode_data(str(chunk))
    return frame_utf8(bytes(chunk))


def _frame_serialized(payload: object) -> bytes:
    if isinstance(payload, str):
        return encode_data(payload)
    if isinstance(payload, bytes):
        return frame_utf8(payload)
    raise TypeError(f"The serializer returned {type(payload).__name__}, not str or bytes.")


def frame_utf8(payload: bytes) -> bytes:
    """Frame UTF-8 text given as bytes; invalid UTF-8 is refused, never written."""
    # Decoding checks the UTF-8 and is cheaper than searching bytes for CR and LF.
    try:
        return encode_data(payload.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"A bytes chunk must be UTF-8 text: {exc}.") from None


# -- the stream's own bytes: opening, heartbeat, endings ------------------------------------------
# Everything a stream writes besides its chunks, here so that every byte on the wire comes from
# this module.  `StreamWriter` decides when each is written.

#: The comment a stream writes after `heartbeat` seconds of silence; clients ignore it.
HEARTBEAT = b": ping\n\n"


def opening_bytes(*, padding: int = 0, retry: int | None = None) -> bytes:
    """The preamble: a comment (and padding, `retry:`) so headers and `open` happen at once."""
    parts = [b": ok\n"]
    if padding:
        parts.append(b":" + b" " * padding + b"\n")
    if retry is not None:
        parts.append(b"retry: %d\n" % retry)
    parts.append(b"\n")
    return b"".join(parts)


def retry_hint_bytes(retry: int) -> bytes:
    """A `retry:` field alone: the client reconnects after `retry` ms (no event is dispatched)."""
    return b"retry: %d\n\n" % retry


def error_event_bytes(message: str) -> bytes:
    """The `error` event a failed stream ends with: `{"message": ...}` as JSON data."""
    import json  # already loaded (by _serialize); imported here to keep this section whole

    data = json.dumps({"message": message}, ensure_ascii=False, separators=(",", ":"))
    return Event(data, event="error").encode()


def event_bytes(value: str | Event) -> bytes:
    """A closing event given as text (its data) or as an `Event`."""
    return value.encode() if isinstance(value, Event) else encode_data(value)


def farewell_bytes(farewell: str | Event | None, retry: int | None) -> bytes:
    """What a stream ended from outside writes last: the farewell event, then the `retry:` hint."""
    parts = [] if farewell is None else [event_bytes(farewell)]
    if retry is not None:
        parts.append(retry_hint_bytes(retry))
    return b"".join(parts)


# -- broker framing: a published event is framed once, its id added when the broker assigns it --


def frame_body(chunk: Any, event: str | None, serializer: Serializer | None) -> bytes:
    """Frame a published chunk once, without its id: the id is the broker's to assign.

    `event` sets the event's type; `""` means `message`, the default type, and writes no line.
    """
    if isinstance(chunk, Event):
        if chunk.id is not None:
            raise ValueError("A published Event must not have an id: the broker assigns ids.")
        published = chunk if event is None else chunk.replace(event=event or None)
        return published.encode()
    framed = make_framer(serializer)(chunk)  # b"data: ...\n\n"
    if not event:
        return framed
    return Event(event=event).encode()[:-1] + framed  # b"event: <type>\n" + data lines


def with_id(body: bytes, id_: str) -> Encoded:
    """The final bytes of a published event: its id line, then the framed body."""
    return Encoded(b"id: " + id_.encode() + b"\n" + body)
