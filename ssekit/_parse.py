"""The incoming side of the wire codec: an incremental, spec-exact event-stream parser.

Follows the WHATWG HTML standard, "Server-sent events", sections "Parsing an event stream" and
"Interpreting an event stream".  Bytes go in at any boundary, dispatched `MessageEvent`s come out.
No I/O: the client, the relay and the tests all drive the same object.
"""

from __future__ import annotations

import codecs
import io
import json
import sys
from collections import deque
from dataclasses import dataclass
from itertools import repeat
from typing import Any, NoReturn

from ssekit._errors import ParseLimitExceeded

__all__ = ["EventParser", "MessageEvent"]

# Longer digit strings than this are ignored (Python refuses to convert beyond 4,300 digits).
_MAX_RETRY_DIGITS = 4300
#: The default longest line, in characters: far beyond any real event stream's, small enough
#: that a broken or hostile stream cannot hold much memory.
DEFAULT_MAX_LINE_SIZE = 8 * 1024 * 1024
#: The default largest data of one event (its `data:` values joined with LF), in characters.
DEFAULT_MAX_EVENT_SIZE = 8 * 1024 * 1024
_NO_LIMIT = sys.maxsize


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


# MessageEvent's dataclass __init__ sets each field through object.__setattr__ (the class is
# frozen): that costs more than parsing a small event.  The parser makes its events with these
# instead, the object and then its slots' own setters: the same frozen object, each field set
# once before anyone sees it.
_new_object = object.__new__
_set_type = vars(MessageEvent)["type"].__set__
_set_data = vars(MessageEvent)["data"].__set__
_set_last_event_id = vars(MessageEvent)["last_event_id"].__set__


def _message(type_: str, data: str, last_event_id: str) -> MessageEvent:
    """`MessageEvent(type_, data, last_event_id)`, made in half the time."""
    event: MessageEvent = _new_object(MessageEvent)
    _set_type(event, type_)
    _set_data(event, data)
    _set_last_event_id(event, last_event_id)
    return event


class EventParser:
    """Turn event-stream bytes into `MessageEvent`s, exactly as the standard says a browser does.

    Feed it bytes with `feed()` as they arrive, split anywhere (even inside a UTF-8 sequence, a
    BOM or a CRLF).  Call `end_of_stream()` when the connection closes: an unterminated block is
    discarded, and the parser is ready for the next connection with `last_event_id` and `retry`
    kept, as an `EventSource` keeps them across reconnects.

    The work is linear in the input however it is split, and memory stays bounded: one line
    (terminated or not) may hold at most `max_line_size` characters and the data of one event
    (its `data:` values joined with LF, dispatched or still arriving) at most `max_event_size`;
    going over either raises `ParseLimitExceeded`.  Both count characters after UTF-8 decoding
    (bytes, for ASCII); `None` removes a limit.
    """

    def __init__(
        self,
        *,
        last_event_id: str = "",
        max_line_size: int | None = DEFAULT_MAX_LINE_SIZE,
        max_event_size: int | None = DEFAULT_MAX_EVENT_SIZE,
    ) -> None:
        #: The reconnection time in milliseconds set by the last valid `retry:` field, if any.
        self.retry: int | None = None
        #: The event source's last event id: updated when a block is dispatched.
        self.last_event_id = last_event_id
        self._id_buffer = self._id_before_feed = last_event_id
        #: The limits as given (None: none), and as compared (a huge int for none).
        self.max_line_size = _check_limit("max_line_size", max_line_size)
        self.max_event_size = _check_limit("max_event_size", max_event_size)
        self._max_line = _NO_LIMIT if max_line_size is None else max_line_size
        self._max_event = _NO_LIMIT if max_event_size is None else max_event_size
        self._new_connection()

    def _new_connection(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._at_stream_start = True  # a BOM is stripped here, and only here
        self._skip_lf = False  # the previous feed ended in CR: a leading LF completes that CRLF
        # The unfinished last line.  One that spans several feeds goes into a StringIO, whose
        # writes are amortised O(1) and take about one character's room per character:
        # appending to a str would copy the whole line on every feed (quadratic), and a list of
        # pieces would cost an object per feed (dozens of bytes per byte fed one byte at a time).
        self._partial_line = ""
        self._long_line: io.StringIO | None = None
        self._partial_size = 0
        self._data: list[str] = []
        self._data_size = 0  # len("\n".join(self._data)) + 1, while data is pending
        self._event_type = ""

    def feed(self, chunk: bytes) -> list[MessageEvent]:
        """Consume `chunk` and return the events it completes, in order.

        Raises `ParseLimitExceeded` when a line or an event's data goes over its limit; the
        events completed earlier in the same call are dropped with the rest of the connection's
        state (the parser is left as after `end_of_stream()`, with the `last_event_id` of the
        events returned before).
        """
        text = self._decoder.decode(chunk)
        if not text:
            return []
        self._id_before_feed = self.last_event_id  # restored if this feed is refused
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
            long_line = self._long_line
            if long_line is None:
                long_line = self._long_line = io.StringIO()
                long_line.write(self._partial_line)
                self._partial_line = ""
            long_line.write(text)
            self._partial_size += len(text)
            if self._partial_size > self._max_line:
                self._refuse("max_line_size")
            return []
        if self._long_line is not None:
            self._long_line.write(text)
            text = self._long_line.getvalue()
            self._long_line = None
        elif self._partial_line:
            text = self._partial_line + text
        end = text.rfind("\n") + 1  # what follows the last line end waits for the next feed
        rest = self._partial_line = text[end:]
        self._partial_size = len(rest)
        if end > self._max_line and max(map(len, text[: end - 1].split("\n"))) > self._max_line:
            self._refuse("max_line_size")
        if len(rest) > self._max_line:
            self._refuse("max_line_size")
        # Only when the data pending and this feed's lines add up to more than the limit can an
        # event dispatched here be over it: the common feed looks at no event's size.
        check = self._data_size + end > self._max_event
        # Fast path: when the complete events after the first one are all a single `data: `
        # line (the common stream), they are made in bulk; the rest goes line by line.
        first = text.find("\n\n")  # the end of the first event (its blank line)
        last = text.rfind("\n\n", 0, end)  # the end of the last complete event
        if last > first + 2:
            values = _data_lines(text[first + 2 : last])
            # Only events within the limits go in bulk (the line by line path refuses the rest).
            if values is not None and (
                last - first <= self._max_event or max(map(len, values)) <= self._max_event
            ):
                events = self._process(text[: first + 1].split("\n"), check)
                events += self._messages(values)
                if last + 2 < end:
                    events += self._process(text[last + 2 : end - 1].split("\n"), check)
                return events
        return self._process(text[: end - 1].split("\n"), check)

    def _refuse(self, limit: str) -> NoReturn:
        """Drop the connection's state (and the memory it holds), then raise the limit's error.

        The events this feed completed are never returned, so the last event id goes back to
        where the feed found it.
        """
        self.last_event_id = self._id_before_feed
        self.end_of_stream()
        raise ParseLimitExceeded(limit, getattr(self, limit))

    def _messages(self, values: list[str]) -> list[MessageEvent]:
        """Dispatch one `message` event per value, as `data: <value>` then a blank line would
        (with no event type or id pending, as after any dispatch)."""
        id_ = self.last_event_id = self._id_buffer
        count = len(values)
        # As `_message()` does, with `map()` driving the C functions: no Python call per event.
        events: list[MessageEvent] = list(map(_new_object, repeat(MessageEvent, count)))
        deque(map(_set_type, events, repeat("message", count)), 0)
        deque(map(_set_data, events, values), 0)
        deque(map(_set_last_event_id, events, repeat(id_, count)), 0)
        return events

    def end_of_stream(self) -> None:
        """The connection ended: drop any unfinished block and get ready for a new connection.

        "If the file ends in the middle of an event, before the final empty line, the incomplete
        event is not dispatched."  `last_event_id` and `retry` are kept for the reconnect.
        """
        self._id_buffer = self.last_event_id
        self._new_connection()

    def _process(self, lines: list[str], check: bool) -> list[MessageEvent]:
        """Interpret complete lines; `check`: the events they dispatch may be over the limit."""
        events: list[MessageEvent] = []
        data = pending = self._data
        pending_count = len(pending)
        for line in lines:
            if not line:
                # Dispatch.  "Set the last event ID string of the event source to the value of the
                # last event ID buffer", even when no event fires.
                self.last_event_id = self._id_buffer
                if data:
                    events.append(
                        _message(self._event_type or "message", "\n".join(data), self._id_buffer)
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
        max_event = self._max_event
        if check and events and max(len(event.data) for event in events) > max_event:
            self._refuse("max_event_size")
        if data:
            # An event still arriving: count what this feed added to its data, so that it cannot
            # grow past the limit over many feeds (counting only the new values keeps it linear).
            if data is pending:
                added = data[pending_count:] if pending_count else data
                self._data_size += sum(map(len, added)) + len(added)
            else:
                self._data_size = sum(map(len, data)) + len(data)
            if self._data_size - 1 > max_event:
                self._refuse("max_event_size")
        else:
            self._data_size = 0
        return events


def _data_lines(events: str) -> list[str] | None:
    """The data of complete events that are each one `data: ` line and nothing else (joined by
    blank lines: "data: a\n\ndata: b"), or None when any of them is something else."""
    if not events.startswith("data: "):
        return None
    blank_lines = events.count("\n\n")
    # No line end but those of the data lines and blank lines, and every event a `data: ` line.
    if events.count("\n") != 2 * blank_lines or events.count("\n\ndata: ") != blank_lines:
        return None
    return events[6:].split("\n\ndata: ")


def _is_retry(value: str) -> bool:
    """ "If the field value consists of only ASCII digits" (and not so many that int() refuses)."""
    return value.isascii() and value.isdigit() and len(value) <= _MAX_RETRY_DIGITS


def _check_limit(name: str, value: int | None) -> int | None:
    if value is not None and (type(value) is not int or value < 1):
        raise ValueError(f"EventParser {name} must be a positive int (characters) or None.")
    return value
