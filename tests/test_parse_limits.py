"""`EventParser`'s size limits and its linear time, however the input is split.

A line (terminated or not) longer than `max_line_size`, or an event whose data (its `data:` values
joined with LF, dispatched or still arriving) is longer than `max_event_size`, raises
`ParseLimitExceeded`; every way of feeding the same bytes gives the same outcome.
"""

from __future__ import annotations

import pickle
import random
import time
import tracemalloc
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_parse_conformance import CASES, Case, Dispatched

from ssekit import EventParser, MessageEvent, ParseLimitExceeded

pytestmark = pytest.mark.timeout(120)

MiB = 1024 * 1024
Outcome = tuple[list[Dispatched], str | None]  # the events, and the limit that was hit, if any


def _chunkings(stream: bytes) -> Iterator[tuple[str, list[bytes]]]:
    yield "whole", [stream]
    yield "byte-by-byte", [stream[i : i + 1] for i in range(len(stream))]
    for size in (2, 3, 7, 64):
        yield f"pieces-of-{size}", [stream[i : i + size] for i in range(0, len(stream), size)]
    rng = random.Random(stream)
    for seed in range(5):
        cuts = sorted(rng.sample(range(1, len(stream)), min(len(stream) - 1, 6)))
        yield (
            f"random-{seed}",
            [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)],
        )


def _outcome(parser: EventParser, chunks: list[bytes]) -> Outcome:
    events: list[MessageEvent] = []
    try:
        for chunk in chunks:
            events += parser.feed(chunk)
    except ParseLimitExceeded as exc:
        return [], exc.limit
    return [(e.type, e.data, e.last_event_id) for e in events], None


def _same_outcome_however_split(stream: bytes, make: Callable[[], EventParser]) -> Outcome:
    """The outcome of feeding `stream`, checked to be the same for every chunking."""
    outcomes = {how: _outcome(make(), chunks) for how, chunks in _chunkings(stream)}
    first = outcomes["whole"]
    for how, outcome in outcomes.items():
        assert outcome == first, f"fed {how}"
    return first


# --------------------------------------------------------------------------------------------
# The line limit
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [b"data: 0123", b": comment!", b"event: 012", b"id: 012345", b"retry: 123", b"0123456789"],
    ids=["data", "comment", "event", "id", "retry", "no-colon"],
)
@pytest.mark.parametrize("line_end", [b"\n", b"\r", b"\r\n"], ids=["LF", "CR", "CRLF"])
def test_a_line_at_the_limit_passes_and_one_over_it_is_refused(
    line: bytes, line_end: bytes
) -> None:
    assert len(line) == 10
    stream = b"data: a" + line_end + line + line_end + b"data: b" + line_end * 2

    def make(limit: int) -> Callable[[], EventParser]:
        return lambda: EventParser(max_line_size=limit)

    events, hit = _same_outcome_however_split(stream, make(10))
    assert hit is None
    assert events
    assert _same_outcome_however_split(stream, make(9)) == ([], "max_line_size")


def test_an_unterminated_line_over_the_limit_is_refused() -> None:
    stream = b"data: one\n\n" + b"data: " + b"x" * 20
    assert _same_outcome_however_split(stream, lambda: EventParser(max_line_size=25)) == (
        [],
        "max_line_size",
    )
    # At the limit it waits for its line end, as any unfinished line does.
    events, hit = _same_outcome_however_split(stream, lambda: EventParser(max_line_size=26))
    assert (events, hit) == ([("message", "one", "")], None)


def test_the_line_limit_counts_characters_not_bytes() -> None:
    stream = "data: é€😀\n\n".encode()  # 9 characters, 15 bytes
    assert _same_outcome_however_split(stream, lambda: EventParser(max_line_size=9)) == (
        [("message", "é€😀", "")],
        None,
    )
    assert _same_outcome_however_split(stream, lambda: EventParser(max_line_size=8))[1] == (
        "max_line_size"
    )


def test_the_bom_is_not_counted() -> None:
    stream = b"\xef\xbb\xbfdata: 1234\n\n"
    events, hit = _same_outcome_however_split(stream, lambda: EventParser(max_line_size=10))
    assert (events, hit) == ([("message", "1234", "")], None)


# --------------------------------------------------------------------------------------------
# The event limit
# --------------------------------------------------------------------------------------------


def test_event_data_at_the_limit_passes_and_one_over_it_is_refused() -> None:
    # Data "aaaa\nbbbb\ncccc": 14 characters, each line well within the line limit.
    stream = b"data: x\n\ndata: aaaa\ndata: bbbb\ndata: cccc\n\ndata: y\n\n"

    def make(limit: int) -> Callable[[], EventParser]:
        return lambda: EventParser(max_event_size=limit)

    events, hit = _same_outcome_however_split(stream, make(14))
    assert hit is None
    assert [data for _, data, _ in events] == ["x", "aaaa\nbbbb\ncccc", "y"]
    assert _same_outcome_however_split(stream, make(13)) == ([], "max_event_size")


def test_an_event_that_never_ends_is_refused_once_its_data_is_over_the_limit() -> None:
    stream = b"data: 1234\n" * 10  # no blank line: never dispatched, but held in memory
    assert _same_outcome_however_split(stream, lambda: EventParser(max_event_size=40)) == (
        [],
        "max_event_size",
    )
    assert _same_outcome_however_split(stream, lambda: EventParser(max_event_size=54)) == (
        [],
        None,
    )


def test_the_bulk_path_for_plain_data_events_keeps_the_event_limit() -> None:
    # Many one-line `data:` events (the fast path), one of them over the event limit but within
    # the line limit.
    events = [b"data: %d\n\n" % i for i in range(200)]
    events[150] = b"data: " + b"z" * 30 + b"\n\n"
    stream = b"".join(events)

    def make(limit: int) -> Callable[[], EventParser]:
        return lambda: EventParser(max_line_size=100, max_event_size=limit)

    assert _same_outcome_however_split(stream, make(29)) == ([], "max_event_size")
    dispatched, hit = _same_outcome_however_split(stream, make(30))
    assert hit is None
    assert len(dispatched) == 200


def test_data_in_other_fields_and_comments_does_not_count_toward_the_event() -> None:
    stream = b": " + b"c" * 50 + b"\nevent: " + b"e" * 50 + b"\ndata: d\n\n"
    events, hit = _same_outcome_however_split(stream, lambda: EventParser(max_event_size=1))
    assert (events, hit) == ([("e" * 50, "d", "")], None)


# --------------------------------------------------------------------------------------------
# The error, the options, the state after the error
# --------------------------------------------------------------------------------------------


def test_the_error_names_the_limit_its_value_and_how_to_raise_it() -> None:
    parser = EventParser(max_line_size=1000)
    with pytest.raises(ParseLimitExceeded) as caught:
        parser.feed(b"data: " + b"x" * 2000)
    error = caught.value
    assert isinstance(error, ValueError)
    assert (error.limit, error.value) == ("max_line_size", 1000)
    message = str(error)
    assert "max_line_size=1,000" in message
    assert "one line" in message
    assert "larger max_line_size" in message
    assert "max_line_size=None" in message

    with pytest.raises(ParseLimitExceeded, match=r"data of one event .* max_event_size=3\b"):
        EventParser(max_event_size=3).feed(b"data: abcd\n\n")


def test_the_error_pickles() -> None:
    error = pickle.loads(pickle.dumps(ParseLimitExceeded("max_event_size", 5)))
    assert (error.limit, error.value) == ("max_event_size", 5)
    assert str(error) == str(ParseLimitExceeded("max_event_size", 5))


def test_defaults_are_generous_and_none_disables() -> None:
    parser = EventParser()
    assert parser.max_line_size == parser.max_event_size == 8 * MiB
    big = b"x" * (9 * MiB)
    unlimited = EventParser(max_line_size=None, max_event_size=None)
    assert unlimited.feed(b"data: " + big + b"\n\n")[0].data == big.decode()
    with pytest.raises(ParseLimitExceeded):
        EventParser().feed(b"data: " + big + b"\n\n")


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "10"])
@pytest.mark.parametrize("name", ["max_line_size", "max_event_size"])
def test_a_limit_that_is_not_a_positive_int_is_refused(name: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"{name} must be a positive int"):
        EventParser(**{name: value})  # type: ignore[arg-type]


def test_after_the_error_the_parser_is_ready_for_a_new_connection() -> None:
    parser = EventParser(max_line_size=20)
    assert parser.feed(b"id: 7\ndata: a\n\nid: 8\ndata: partial\n") == [
        MessageEvent("message", "a", "7")
    ]
    with pytest.raises(ParseLimitExceeded):
        parser.feed(b"data: " + b"x" * 30)
    # The unfinished block and line are gone; the last event id of the dispatched one is kept.
    assert parser.last_event_id == "7"
    assert parser.feed(b"data: b\n\n") == [MessageEvent("message", "b", "7")]
    # The events of a refused feed are never returned: their id is not the last event id.
    with pytest.raises(ParseLimitExceeded):
        parser.feed(b"id: 9\ndata: c\n\ndata: " + b"x" * 30 + b"\n\n")
    assert parser.last_event_id == "7"


# --------------------------------------------------------------------------------------------
# Any stream, any split: refused exactly when a line or an event's data is over its limit
# --------------------------------------------------------------------------------------------

_TOKENS = [b"data", b"event", b"id", b":", b" ", b"x", b"\xc3\xa9", b"\n", b"\r", b"\xff"]
_TOKENS += [b"\xef\xbb\xbf", b"\n\n", b"\r\n"]


def _reference_refusal(stream: bytes, max_line: int, max_event: int) -> bool:
    """Whether a line, or an event's data (joined so far), is longer than its limit."""
    text = stream.decode("utf-8", "replace").removeprefix("\ufeff")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if max(map(len, lines)) > max_line:
        return True
    data: list[str] = []
    for line in lines[:-1]:  # the last one is unterminated
        if not line:
            if len("\n".join(data)) > max_event:
                return True
            data = []
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    return bool(data) and len("\n".join(data)) > max_event


@settings(max_examples=300, deadline=None)
@given(
    tokens=st.lists(st.sampled_from(_TOKENS), max_size=60),
    max_line=st.integers(1, 12),
    max_event=st.integers(1, 12),
    cuts=st.lists(st.integers(0, 200), max_size=8),
)
def test_any_stream_split_anywhere_is_refused_exactly_when_over_a_limit(
    tokens: list[bytes], max_line: int, max_event: int, cuts: list[int]
) -> None:
    stream = b"".join(tokens)
    points = sorted({cut % (len(stream) + 1) for cut in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    parser = EventParser(max_line_size=max_line, max_event_size=max_event)
    got: list[MessageEvent] = []
    try:
        for chunk in chunks:
            got += parser.feed(chunk)
    except ParseLimitExceeded:
        refused = True
    else:
        refused = False
        # Within the limits, the events are those of a parser without limits.
        assert got == EventParser(max_line_size=None, max_event_size=None).feed(stream)
    assert refused == _reference_refusal(stream, max_line, max_event)


# --------------------------------------------------------------------------------------------
# The conformance table with limits set just high enough
# --------------------------------------------------------------------------------------------


def _longest_line(case: Case) -> int:
    longest = 1
    for connection in case.connections:
        text = connection.decode("utf-8", "replace").removeprefix("\ufeff")
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        longest = max(longest, *map(len, text.split("\n")))
    return longest


def _feed_case(case: Case, piece: int, parser: EventParser) -> list[Dispatched]:
    events: list[MessageEvent] = []
    for connection in case.connections:
        for start in range(0, len(connection), piece):
            events += parser.feed(connection[start : start + piece])
        parser.end_of_stream()
    return [(e.type, e.data, e.last_event_id) for e in events]


@pytest.mark.parametrize("piece", [1, 5, 1 << 20], ids=["byte-by-byte", "pieces-of-5", "whole"])
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_conformance_table_with_the_line_limit_at_the_longest_line(case: Case, piece: int) -> None:
    longest = _longest_line(case)
    parser = EventParser(max_line_size=longest)
    assert _feed_case(case, piece, parser) == case.events
    assert (parser.retry, parser.last_event_id) == (case.retry, case.last_event_id)
    if longest > 1:
        with pytest.raises(ParseLimitExceeded):
            _feed_case(case, piece, EventParser(max_line_size=longest - 1))


# --------------------------------------------------------------------------------------------
# Linear time and bounded memory on a long unterminated line
# --------------------------------------------------------------------------------------------


def _cpu_seconds_to_feed(parser: EventParser, chunks: list[bytes]) -> float:
    start = time.process_time()
    for chunk in chunks:
        parser.feed(chunk)
    return time.process_time() - start


def test_a_long_line_in_small_pieces_costs_about_what_it_costs_whole() -> None:
    # This process's CPU time, not the wall clock, and a margin of orders of magnitude: a parser
    # that re-copies the line on every piece takes seconds here (hundreds of times the whole).
    line = b"data: " + b"x" * (16 * MiB)
    pieces = [line[i : i + 4096] for i in range(0, len(line), 4096)]
    whole = min(_cpu_seconds_to_feed(EventParser(max_line_size=None), [line]) for _ in range(3))
    split = min(_cpu_seconds_to_feed(EventParser(max_line_size=None), pieces) for _ in range(3))
    assert split < 20 * whole + 0.3, (split, whole)


def _bytes_fed_until_refused(parser: EventParser, piece: bytes, total: int) -> tuple[int, str]:
    """Feed `piece` until `total` bytes or a refusal: the bytes accepted, and the limit hit."""
    fed = 0
    while fed < total:
        try:
            parser.feed(piece)
        except ParseLimitExceeded as exc:
            return fed, exc.limit
        fed += len(piece)
    raise AssertionError(f"{total} bytes were accepted")


@pytest.mark.parametrize(
    "piece", [b"x" * 4096, "é".encode() * 2048, b"xy"], ids=["4KiB", "UTF-8", "2B"]
)
def test_a_hostile_line_is_refused_before_much_more_than_the_limit_is_held(piece: bytes) -> None:
    limit = MiB if len(piece) > 2 else 64 * 1024  # one byte at a time is slow to feed
    parser = EventParser(max_line_size=limit)
    parser.feed(b"data: ")
    tracemalloc.start()
    try:
        fed, hit = _bytes_fed_until_refused(parser, piece, 64 * limit)  # a line 64 times as long
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert hit == "max_line_size"
    assert fed <= 2 * limit  # characters are counted: "é" is 2 bytes
    # What the parser held: the line so far, in a buffer of at most 4 bytes a character, plus
    # the bookkeeping of the small pieces (a few MB at most, whatever the line's length).
    assert peak <= 4 * limit + 8 * MiB


def test_a_hostile_event_of_small_lines_is_refused_at_the_limit() -> None:
    parser = EventParser(max_event_size=1 * MiB)
    fed, limit = _bytes_fed_until_refused(parser, b"data: x\n" * 512, 64 * MiB)
    assert limit == "max_event_size"
    # Each line adds 2 characters ("x" and its LF) to the data: 1 MiB of data in 4 MiB of lines.
    assert fed <= 4 * MiB
