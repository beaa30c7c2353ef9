"""The incoming side of the wire codec: an incremental, spec-exact event-stream parser.

Follows the WHATWG HTML standard, "Server-sent events", sections "Parsing an event stream" and
"Interpreting an event stream".  Bytes go in at any boundary, dispatched `MessageEvent`s come out.
No I/O: the client, the relay and the tests all drive the same object.
"""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass
from typing import Any

__all__ = ["EventParser", "MessageEvent"]

# Longer digit strings than this are ignored (Python refuses to convert beyond 4,300 digits).
_MAX_RETRY_DIGITS = 4300


@dataclass(frozen=True, slots=True)
class MessageEvent:
    """A dispatched event, as a browser's `EventSource` would hand it to a listener."""

    #: The event type: the last `event:` field of the block, or "message" when there was none.
    type: str
    #: The `data:` lines of the block joined with LF.
    data: str
    #: The stream's last event id at dispatch time (sent back as `Last-Event-ID` on reconnect).
    last_event_id: str

    def json(self) -> Any:
        """Decode `data` as JSON."""
        return json.loads(self.data)


class EventParser:
    """Turn event-stream bytes into `MessageEvent`s, exactly as the standard says a browser does.

    Feed it bytes with `feed()` as they arrive, split anywhere (even inside a UTF-8 sequence, a
    BOM or a CRLF).  Call `end_of_stream()` when the connection closes: an unterminated block is
    discarded, and the parser is ready for the next connection with `last_event_id` and `retry`
    kept, as an `EventSource` keeps them across reconnects.
    """

    def __init__(self, *, last_event_id: str = "") -> None:
        #: The reconnection time in milliseconds set by the last valid `retry:` field, if any.
        self.retry: int | None = None
        #: The event source's last event id: updated when a block is dispatched.
        self.last_event_id = last_event_id
        self._id_buffer = last_event_id
        self._new_connection()

    def _new_connection(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._at_stream_start = True  # a BOM is stripped here, and only here
        self._skip_lf = False  # the previous feed ended in CR: a leading LF completes that CRLF
        self._partial_line = ""
        self._data: list[str] = []
        self._event_type = ""

    def feed(self, chunk: bytes) -> list[MessageEvent]:
        """Consume `chunk` and return the events it completes, in order."""
        text = self._decoder.decode(chunk)
        if not text:
            return []
        if self._at_stream_start:
            self._at_stream_start = False
            if text[0] == "\ufeff":
                text = text[1:]
                if not text:
                    return []
        if self._skip_lf:
            self._skip_lf = False
            if text[0] == "\n":
                text = text[1:]
                if not text:
                    return []
        if "\r" in text:
            text = text.replace("\r\n", "\n")
            if text[-1] == "\r":
                self._skip_lf = True
            text = text.replace("\r", "\n")
        if "\n" not in text:
            self._partial_line += text
            return []
        lines = text.split("\n")
        if self._partial_line:
            lines[0] = self._partial_line + lines[0]
        self._partial_line = lines.pop()
        return self._process(lines)

    def end_of_stream(self) -> None:
        """The connection ended: drop any unfinished block and get ready for a new connection.

        "If the file ends in the middle of an event, before the final empty line, the incomplete
        event is not dispatched."  `last_event_id` and `retry` are kept for the reconnect.
        """
        self._id_buffer = self.last_event_id
        self._new_connection()

    def _process(self, lines: list[str]) -> list[MessageEvent]:
        events: list[MessageEvent] = []
        data = self._data
        for line in lines:
            if not line:
                # Dispatch.  "Set the last event ID string of the event source to the value of the
                # last event ID buffer", even when no event fires.
                self.last_event_id = self._id_buffer
                if data:
                    events.append(
                        MessageEvent(
                            self._event_type or "message", "\n".join(data), self._id_buffer
                        )
                    )
                    data = self._data = []
                self._event_type = ""
                continue
            if line[0] == ":":
                continue
            name, colon, value = line.partition(":")
            if colon and value and value[0] == " ":
                value = value[1:]
            if name == "data":
                data.append(value)
            elif name == "event":
                self._event_type = value
            elif name == "id":
                if "\0" not in value:
                    self._id_buffer = value
            elif name == "retry" and _is_retry(value):
                self.retry = int(value)
        return events


def _is_retry(value: str) -> bool:
    """ "If the field value consists of only ASCII digits" (and not so many that int() refuses)."""
    return value.isascii() and value.isdigit() and len(value) <= _MAX_RETRY_DIGITS
