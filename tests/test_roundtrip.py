"""Properties tying the two halves of the codec together.

* Round trip: any valid `Event` (or run of events), encoded and parsed under any chunking,
  dispatches exactly what a browser would: one `MessageEvent` per event with data, the data with
  line breaks normalised to LF, the type, the persisting last event id, and the last retry.
* Fuzz: arbitrary bytes, fed in arbitrary chunks, never raise and give the same result as the
  same bytes fed whole, which is also what a small whole-input reference parser gives.
"""

from __future__ import annotations

import itertools
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from ssekit import Event, EventParser

# -- Strategies -----------------------------------------------------------------------------

_TRICKY = [
    "\r\n",
    "\r",
    "\n",
    " ",
    "  ",
    "\t",
    ":",
    "\u2028",
    "\u2029",
    "\x85",
    "\x0b",
    "\x0c",
    "\ufeff",
    "\0",
    "data: x",
    "id:",
    "retry: 5",
    "é",
    "\U0001f600",
]

# Text built from arbitrary characters mixed with the line breaks and look-alikes the wire
# format cares about, so that CR, LF, CRLF, leading spaces and empty strings are common.
_tricky_text = st.lists(st.one_of(st.text(max_size=6), st.sampled_from(_TRICKY)), max_size=10).map(
    "".join
)
_any_text = st.one_of(st.just(""), st.text(), _tricky_text)


def _one_line(excluded: str) -> st.SearchStrategy[str]:
    chars = st.characters(codec="utf-8", exclude_characters=excluded)
    tricky = [t for t in _TRICKY if not set(t) & set(excluded)]
    return st.one_of(
        st.just(""),
        st.text(alphabet=chars),
        st.lists(
            st.one_of(st.text(alphabet=chars, max_size=6), st.sampled_from(tricky)), max_size=8
        ).map("".join),
    )


_data = st.one_of(st.none(), _any_text)
_event_name = st.one_of(st.none(), _one_line("\r\n"))
_id = st.one_of(st.none(), _one_line("\r\n\0"))
_retry = st.one_of(st.none(), st.integers(min_value=0, max_value=2**63 - 1))
_comment = st.one_of(st.none(), _any_text)


@st.composite
def events(draw: st.DrawFn) -> Event:
    data = draw(_data)
    event = draw(_event_name)
    id_ = draw(_id)
    retry = draw(_retry)
    comment = draw(_comment)
    if (data, event, id_, retry, comment) == (None, None, None, None, None):
        data = ""
    return Event(data, event=event, id=id_, retry=retry, comment=comment)


def _normalise(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _expected(run: list[Event]) -> tuple[list[tuple[str, str, str]], int | None, str]:
    dispatched = []
    last_id = ""
    retry = None
    for event in run:
        if event.id is not None:
            last_id = event.id
        if event.retry is not None:
            retry = event.retry
        if event.data is not None:
            dispatched.append((event.event or "message", _normalise(event.data), last_id))
    return dispatched, retry, last_id


def _chunk(blob: bytes, points: list[int]) -> list[bytes]:
    cuts = sorted({min(p, len(blob)) for p in points})
    edges = [0, *cuts, len(blob)]
    return [blob[a:b] for a, b in itertools.pairwise(edges)]


def _parse(chunks: list[bytes]) -> tuple[list[tuple[str, str, str]], int | None, str]:
    parser = EventParser()
    out = []
    for chunk in chunks:
        out += [(e.type, e.data, e.last_event_id) for e in parser.feed(chunk)]
    parser.end_of_stream()
    return out, parser.retry, parser.last_event_id


# -- Round trip -----------------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(run=st.lists(events(), min_size=1, max_size=6), data=st.data())
def test_encode_then_parse_round_trips_under_any_chunking(
    run: list[Event], data: st.DataObject
) -> None:
    blob = b"".join(event.encode() for event in run)
    points = data.draw(st.lists(st.integers(min_value=0, max_value=len(blob)), max_size=24))
    chunks = _chunk(blob, points)
    assert b"".join(chunks) == blob
    assert _parse(chunks) == _expected(run)


@settings(max_examples=200, deadline=None)
@given(event=events())
def test_single_event_round_trips_byte_by_byte(event: Event) -> None:
    blob = event.encode()
    assert _parse([blob[i : i + 1] for i in range(len(blob))]) == _expected([event])


@settings(max_examples=200, deadline=None)
@given(data=_any_text)
def test_data_only_event_round_trips(data: str) -> None:
    # The hot path: Event(data=...) without other fields goes through encode_data.
    assert _parse([Event(data).encode()]) == ([("message", _normalise(data), "")], None, "")


# -- Fuzz -----------------------------------------------------------------------------------


def _reference(blob: bytes) -> tuple[list[tuple[str, str, str]], int | None, str]:
    """A direct, whole-input reading of the standard's parsing and interpretation steps."""
    text = blob.decode("utf-8", errors="replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    *lines, _unterminated = re.split(r"\r\n|\r|\n", text)
    out = []
    data_buffer = ""
    type_buffer = ""
    id_buffer = ""
    last_id = ""
    retry = None
    for line in lines:
        if line == "":
            last_id = id_buffer
            if data_buffer:
                out.append((type_buffer or "message", data_buffer[:-1], last_id))
            data_buffer = type_buffer = ""
            continue
        if line.startswith(":"):
            continue
        if ":" in line:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
        else:
            field, value = line, ""
        if field == "data":
            data_buffer += value + "\n"
        elif field == "event":
            type_buffer = value
        elif field == "id":
            if "\0" not in value:
                id_buffer = value
        elif (
            field == "retry"
            and value
            and all("0" <= c <= "9" for c in value)
            # Python refuses int() beyond 4,300 digits; the parser ignores such a value.
            and len(value) <= 4300
        ):
            retry = int(value)
    return out, retry, last_id


_TOKENS = [
    b"data",
    b"data:",
    b"data: ",
    b"event:",
    b"id:",
    b"id",
    b"retry:",
    b"123",
    b":",
    b" ",
    b"\r",
    b"\n",
    b"\r\n",
    b"\n\n",
    b"\xef\xbb\xbf",
    b"\xef\xbb",
    b"\xe2\x80",
    b"\xe2\x80\xa8",
    b"\xf0\x9f\x98",
    b"\xff",
    b"\x00",
    b"x",
]

_stream_bytes = st.one_of(
    st.binary(max_size=200),
    st.lists(st.one_of(st.sampled_from(_TOKENS), st.binary(max_size=4)), max_size=40).map(b"".join),
)


@settings(max_examples=400, deadline=None)
@given(blob=_stream_bytes, data=st.data())
def test_arbitrary_bytes_in_any_chunks_never_raise_and_match_whole(
    blob: bytes, data: st.DataObject
) -> None:
    points = data.draw(st.lists(st.integers(min_value=0, max_value=len(blob)), max_size=30))
    whole = _parse([blob])
    assert _parse(_chunk(blob, points)) == whole
    assert _parse([blob[i : i + 1] for i in range(len(blob))]) == whole
    assert whole == _reference(blob)


@settings(max_examples=100, deadline=None)
@given(connections=st.lists(_stream_bytes, min_size=1, max_size=4))
def test_each_connection_is_parsed_independently_except_id_and_retry(
    connections: list[bytes],
) -> None:
    parser = EventParser()
    got = []
    for blob in connections:
        got += [(e.type, e.data, e.last_event_id) for e in parser.feed(blob)]
        parser.end_of_stream()
    # Reference: each connection on its own, with the id and retry carried over.
    expected = []
    last_id = ""
    retry = None
    for blob in connections:
        seeded = EventParser(last_event_id=last_id)
        events_ = [(e.type, e.data, e.last_event_id) for e in seeded.feed(blob)]
        seeded.end_of_stream()
        expected += events_
        last_id = seeded.last_event_id
        retry = seeded.retry if seeded.retry is not None else retry
    assert got == expected
    assert (parser.retry, parser.last_event_id) == (retry, last_id)
