"""The outgoing side of the wire codec: `Event` and the hot-path `encode_data`.

No I/O, no event loop, no framework: bytes out, validated in.  The rules come from the WHATWG HTML
standard, "Server-sent events", section "Parsing an event stream".
"""

from __future__ import annotations

from typing import Any, NoReturn

__all__ = ["Event", "encode_data", "split_lines"]


def split_lines(text: str) -> list[str]:
    """Split on CRLF, CR and LF only, as the event-stream grammar does.

    `str.splitlines()` is wrong here: it also splits on VT, FF, U+001C..U+001E, U+0085, U+2028 and
    U+2029, which a browser keeps inside the data.
    """
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.split("\n")


def encode_data(data: str) -> bytes:
    """Frame `data` as one message event (`data:` lines and the blank line that dispatches it).

    The hot path for every text chunk: one-line data costs a membership test and one encode.
    Text with a lone surrogate, which has no UTF-8 form, is refused with a ValueError.
    """
    try:
        if "\n" in data or "\r" in data:
            return "".join([f"data: {line}\n" for line in split_lines(data)] + ["\n"]).encode()
        return f"data: {data}\n\n".encode()
    except UnicodeEncodeError:
        _check_unicode("data", data)
        raise  # not reached: only a lone surrogate stops a str from encoding as UTF-8


def _check_unicode(field: str, value: str) -> None:
    """Refuse a lone surrogate (U+D800..U+DFFF): it is not a character and has no UTF-8 form.

    Called for non-ASCII text only; encoding finds the first one in C, at its index.
    """
    try:
        value.encode()
    except UnicodeEncodeError as exc:
        _refuse(
            field,
            f"it contains a lone surrogate (U+{ord(value[exc.start]):04X}) at index {exc.start},"
            " which is not Unicode text and cannot be encoded as UTF-8",
            value,
        )


def _refuse(field: str, rule: str, value: object) -> NoReturn:
    shown = repr(value)[:80] if not isinstance(value, int) or value.bit_length() < 256 else "<huge>"
    raise ValueError(f"Event {field}={shown} is refused: {rule}.")


def _check_text(field: str, value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"Event {field} must be a str or None, not {type(value).__name__}.")


def _check_one_line(field: str, value: object) -> None:
    _check_text(field, value)
    assert isinstance(value, str)
    if "\n" in value or "\r" in value:
        char = "LF" if "\n" in value else "CR"
        _refuse(
            field,
            f"it must not contain a line break ({char}), which would end the field early",
            value,
        )


#: The largest reconnection time we write: browsers keep it in a signed 64-bit integer.
_MAX_RETRY = 2**63 - 1


class Event:
    """One server-sent event: immutable, validated when built, `encode()`d to UTF-8 bytes.

    Every field is optional.  `data` may span lines (CRLF, CR or LF); `event` and `id` may not, and
    `id` may not contain NUL, because a browser would read the rest as another field or ignore the
    id.  No text field may hold a lone surrogate (U+D800..U+DFFF), which has no UTF-8 form.  An
    empty `event` means `message`, as browsers read it, and writes no `event:` line.  `retry` is
    the reconnection time in milliseconds.  A `comment` is written as comment lines, which clients
    ignore (useful for keep-alives and debugging).
    """

    # Not a frozen dataclass: its __init__ sets each field through object.__setattr__, which
    # makes building an event several times slower, and a stream may build one per token.  The
    # fields live in private slots behind read-only properties instead: `event.data = ...`
    # raises AttributeError, and `replace()` makes a changed copy.
    __slots__ = ("_comment", "_data", "_event", "_id", "_retry")

    def __init__(
        self,
        data: str | None = None,
        *,
        event: str | None = None,
        id: str | None = None,
        retry: int | None = None,
        comment: str | None = None,
    ) -> None:
        # The common cases are checked inline: this runs once per event on the hot path.
        if event is None and id is None and retry is None and comment is None:
            if type(data) is not str:
                if data is None:
                    raise ValueError(
                        "Event() needs at least one of data, event, id, retry or comment."
                    )
                _check_text("data", data)
            elif not data.isascii():
                _check_unicode("data", data)
        elif not (
            # An event type and/or id, with ASCII data: the next most common case.
            retry is None
            and comment is None
            and type(data) is str
            and data.isascii()
            # A printable str has no CR, LF, NUL or lone surrogate: anything else is looked at
            # in detail (a tab, say, is allowed).
            and (event is None or (type(event) is str and event.isprintable()))
            and (id is None or (type(id) is str and id.isprintable()))
        ):
            _check_fields(data, event, id, retry, comment)
        self._data = data
        self._event = event
        self._id = id
        self._retry = retry
        self._comment = comment

    @property
    def data(self) -> str | None:
        """The message payload; a browser receives it with line breaks normalised to LF."""
        return self._data

    @property
    def event(self) -> str | None:
        """The event type; `None` or "" dispatches a plain `message` event (no `event:` line)."""
        return self._event

    @property
    def id(self) -> str | None:
        """The event id; the client sends it back as `Last-Event-ID` when it reconnects."""
        return self._id

    @property
    def retry(self) -> int | None:
        """The client's reconnection delay, in milliseconds."""
        return self._retry

    @property
    def comment(self) -> str | None:
        """A comment, ignored by clients."""
        return self._comment

    def encode(self) -> bytes:
        """Return the event as UTF-8 bytes, ending with the blank line that dispatches it."""
        data = self._data
        event, id_, retry, comment = self._event, self._id, self._retry, self._comment
        if event is None and id_ is None and retry is None and comment is None:
            if "\n" in data or "\r" in data:  # type: ignore[operator]
                return encode_data(data)  # type: ignore[arg-type]
            return f"data: {data}\n\n".encode()
        if (
            retry is None
            and comment is None
            and data is not None
            and "\n" not in data
            and "\r" not in data
        ):
            # An empty type means `message`: no `event:` line is written for it.
            if id_ is None:
                if event:
                    return f"event: {event}\ndata: {data}\n\n".encode()
                return f"data: {data}\n\n".encode()
            if not event:
                return f"id: {id_}\ndata: {data}\n\n".encode()
            return f"event: {event}\nid: {id_}\ndata: {data}\n\n".encode()
        lines: list[str] = []
        if comment is not None:
            lines += [f": {line}\n" for line in split_lines(comment)]
        if event:  # None or "" (an empty type means `message`): no line
            lines.append(f"event: {event}\n")
        if id_ is not None:
            lines.append(f"id: {id_}\n")
        if retry is not None:
            lines.append(f"retry: {retry}\n")
        if data is not None:
            lines += [f"data: {line}\n" for line in split_lines(data)]
        lines.append("\n")
        return "".join(lines).encode()

    def _fields(self) -> tuple[str | None, str | None, str | None, int | None, str | None]:
        return (self._data, self._event, self._id, self._retry, self._comment)

    def replace(self, **changes: Any) -> Event:
        """Return a copy with some fields changed (validated like a new event)."""
        fields: dict[str, Any] = dict(zip(_FIELD_NAMES, self._fields(), strict=True))
        unknown = set(changes) - set(fields)
        if unknown:
            raise TypeError(f"Event has no field {sorted(unknown)[0]!r}.")
        fields.update(changes)
        return Event(**fields)

    def __eq__(self, other: object) -> bool:
        if type(other) is not Event:
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash((Event, self._fields()))

    def __repr__(self) -> str:
        pairs = zip(_FIELD_NAMES, self._fields(), strict=True)
        shown = ", ".join(f"{name}={value!r}" for name, value in pairs if value is not None)
        return f"Event({shown})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, self._fields())


_FIELD_NAMES = ("data", "event", "id", "retry", "comment")


def _check_fields(data: object, event: object, id_: object, retry: object, comment: object) -> None:
    if data is not None:
        if type(data) is not str:
            _check_text("data", data)
        assert isinstance(data, str)
        if not data.isascii():
            _check_unicode("data", data)
    if event is not None:
        if type(event) is not str or "\n" in event or "\r" in event:
            _check_one_line("event", event)
        assert isinstance(event, str)
        if not event.isascii():
            _check_unicode("event", event)
    if id_ is not None:
        if type(id_) is not str or "\n" in id_ or "\r" in id_:
            _check_one_line("id", id_)
        assert isinstance(id_, str)
        if "\0" in id_:
            _refuse("id", "it must not contain NUL (U+0000), or browsers ignore the id", id_)
        if not id_.isascii():
            _check_unicode("id", id_)
    if retry is not None:
        if type(retry) is not int:
            raise TypeError(
                f"Event retry must be an int (milliseconds), not {type(retry).__name__}."
            )
        if not 0 <= retry <= _MAX_RETRY:
            _refuse("retry", "it must be a non-negative int (ms), at most 2**63 - 1", retry)
    if comment is not None:
        _check_text("comment", comment)
        assert isinstance(comment, str)
        if not comment.isascii():
            _check_unicode("comment", comment)


def _rebuild(
    data: str | None, event: str | None, id_: str | None, retry: int | None, comment: str | None
) -> Event:
    return Event(data, event=event, id=id_, retry=retry, comment=comment)
