"""The outgoing side of the codec: `Event` validation, exact wire bytes, value semantics."""

from __future__ import annotations

import copy
import pickle
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssekit import Event, EventParser
from ssekit._event import encode_data

# --------------------------------------------------------------------------------------------
# Refusals: each names the field (and the rule) in the message.
# --------------------------------------------------------------------------------------------


def _names(field: str) -> str:
    """A pattern matching a message that names `field` as a word ("event", not "Event")."""
    return rf"\b{field}\b"


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("event", "a\nb", r"line break \(LF\)"),
        ("event", "a\rb", r"line break \(CR\)"),
        ("event", "a\r\nb", r"line break"),
        ("event", "\n", r"line break \(LF\)"),
        ("event", "trailing\r", r"line break \(CR\)"),
        ("id", "a\nb", r"line break \(LF\)"),
        ("id", "a\rb", r"line break \(CR\)"),
        ("id", "a\r\nb", r"line break"),
        ("id", "\r", r"line break \(CR\)"),
    ],
)
def test_line_break_in_one_line_field_is_refused(field: str, value: str, rule: str) -> None:
    with pytest.raises(ValueError, match=_names(field)) as info:
        Event("x", **{field: value})
    assert re.search(rule, str(info.value)), str(info.value)


@pytest.mark.parametrize("value", ["\0", "a\0", "\0b", "a\0b", "\0\0"])
def test_nul_in_id_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match=_names("id")) as info:
        Event("x", id=value)
    assert "NUL" in str(info.value)


@pytest.mark.parametrize("value", ["a\0b", "\0"])
def test_nul_is_allowed_in_event_data_and_comment(value: str) -> None:
    # Only the id field has the NUL rule; the parser keeps NUL in data and event names.
    assert Event(value, event=value, comment=value).data == value


@pytest.mark.parametrize("value", [True, False, 1.0, 1.5, "100", b"100", object(), [1]])
def test_retry_that_is_not_an_int_is_refused(value: object) -> None:
    with pytest.raises(TypeError, match=_names("retry")) as info:
        Event(retry=value)  # type: ignore[arg-type]
    assert "int" in str(info.value)


@pytest.mark.parametrize("value", [-1, -1000, -(2**70)])
def test_negative_retry_is_refused(value: int) -> None:
    with pytest.raises(ValueError, match=_names("retry")) as info:
        Event(retry=value)
    assert "non-negative" in str(info.value)


@pytest.mark.parametrize("field", ["data", "event", "id", "comment"])
@pytest.mark.parametrize("value", [b"bytes", 1, 1.5, ["x"], object()])
def test_non_str_text_field_is_refused(field: str, value: object) -> None:
    with pytest.raises(TypeError, match=_names(field)) as info:
        Event(**{field: value})  # type: ignore[arg-type]
    assert "str" in str(info.value)
    assert type(value).__name__ in str(info.value)


SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff"]


@pytest.mark.parametrize("surrogate", SURROGATES)
@pytest.mark.parametrize("field", ["data", "event", "id", "comment"])
@pytest.mark.parametrize(("before", "after"), [("", ""), ("a", "b"), ("é€", "😀"), ("x" * 100, "")])
def test_lone_surrogate_in_a_text_field_is_refused_with_its_position(
    field: str, surrogate: str, before: str, after: str
) -> None:
    value = before + surrogate + after
    with pytest.raises(ValueError, match=_names(field)) as info:
        Event(**{field: value})
    message = str(info.value)
    assert "lone surrogate" in message
    assert f"U+{ord(surrogate):04X}" in message
    assert f"index {len(before)}" in message
    assert "UTF-8" in message


@pytest.mark.parametrize(
    "kwargs",
    [
        {"data": "a\ud800", "event": "tick"},  # the event-and-id fast path, bad data
        {"data": "a", "event": "t\udc00ick"},
        {"data": "a", "id": "4\ud8002"},
        {"data": "a", "event": "tick", "id": "\udfff"},
        {"data": "a\nb\udfff", "retry": 5},  # the general path
        {"data": "a", "comment": "c\ud800"},
        {"event": "e", "id": "\ud800"},  # no data
    ],
)
def test_lone_surrogate_is_refused_on_every_path_of_the_constructor(
    kwargs: dict[str, object],
) -> None:
    (field,) = [name for name, value in kwargs.items() if any(map(_is_surrogate, str(value)))]
    with pytest.raises(ValueError, match=rf"{_names(field)}.*lone surrogate"):
        Event(**kwargs)  # type: ignore[arg-type]


def _is_surrogate(char: str) -> bool:
    return "\ud800" <= char <= "\udfff"


def test_a_surrogate_pair_in_a_python_str_is_refused_too() -> None:
    # Python keeps "\ud83d\ude00" as two code points, not as "😀": neither has a UTF-8 form.
    with pytest.raises(ValueError, match=r"U\+D83D.* index 1"):
        Event("a\ud83d\ude00")
    assert Event("a\U0001f600").encode() == "data: a😀\n\n".encode()


def test_replace_refuses_a_lone_surrogate() -> None:
    with pytest.raises(ValueError, match=r"\bid\b.*lone surrogate.*index 0"):
        Event("x").replace(id="\ud800")


def test_non_ascii_text_without_surrogates_is_accepted_on_every_path() -> None:
    text = "é€😀\u2028\ufffd\U0010ffff"
    for event in (
        Event(text),
        Event(text, event=text),
        Event(text, id=text),
        Event(text, event=text, id=text, retry=1, comment=text),
        Event(text, event="\t"),  # not printable, but allowed: the general checks say so
    ):
        (message,) = EventParser().feed(event.encode())
        assert message.data == text


def test_event_with_no_field_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one") as info:
        Event()
    for field in ("data", "event", "id", "retry", "comment"):
        assert re.search(_names(field), str(info.value)), field


def test_explicit_nones_are_an_event_with_no_field() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Event(None, event=None, id=None, retry=None, comment=None)


def test_fields_after_data_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        Event("data", "event")  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"data": ""},
        {"event": ""},
        {"id": ""},
        {"retry": 0},
        {"comment": ""},
    ],
)
def test_any_single_field_even_empty_or_zero_makes_an_event(kwargs: dict[str, object]) -> None:
    event = Event(**kwargs)  # type: ignore[arg-type]
    (name, value), *_ = kwargs.items()
    assert getattr(event, name) == value


# --------------------------------------------------------------------------------------------
# Exact wire bytes.
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "wire"),
    [
        pytest.param(Event("hello"), b"data: hello\n\n", id="one-line"),
        pytest.param(Event(""), b"data: \n\n", id="empty-data"),
        pytest.param(Event(" lead"), b"data:  lead\n\n", id="leading-space-kept"),
        pytest.param(Event("  two"), b"data:   two\n\n", id="two-leading-spaces-kept"),
        pytest.param(Event("\tx"), b"data: \tx\n\n", id="leading-tab"),
        pytest.param(Event("trail "), b"data: trail \n\n", id="trailing-space"),
        pytest.param(Event("a\nb"), b"data: a\ndata: b\n\n", id="lf"),
        pytest.param(Event("a\r\nb"), b"data: a\ndata: b\n\n", id="crlf"),
        pytest.param(Event("a\rb"), b"data: a\ndata: b\n\n", id="cr"),
        pytest.param(
            Event("a\r\nb\rc\nd"),
            b"data: a\ndata: b\ndata: c\ndata: d\n\n",
            id="mixed-line-breaks",
        ),
        pytest.param(Event("a\n\nb"), b"data: a\ndata: \ndata: b\n\n", id="blank-line-in-data"),
        pytest.param(Event("a\r\rb"), b"data: a\ndata: \ndata: b\n\n", id="cr-cr"),
        pytest.param(Event("a\n\rb"), b"data: a\ndata: \ndata: b\n\n", id="lf-cr"),
        pytest.param(Event("end\n"), b"data: end\ndata: \n\n", id="trailing-lf"),
        pytest.param(Event("\n"), b"data: \ndata: \n\n", id="only-lf"),
        pytest.param(Event("\r\n"), b"data: \ndata: \n\n", id="only-crlf"),
        pytest.param(Event(" a\n b"), b"data:  a\ndata:  b\n\n", id="leading-space-each-line"),
        pytest.param(Event("a:b: c"), b"data: a:b: c\n\n", id="colons-in-data"),
        pytest.param(Event("é…😀"), "data: é…😀\n\n".encode(), id="non-ascii-utf8"),
        pytest.param(
            Event("a\u2028b\u2029c\x85d\x0be\x0cf\x1cg\x1dh\x1ei"),
            "data: a\u2028b\u2029c\x85d\x0be\x0cf\x1cg\x1dh\x1ei\n\n".encode(),
            id="unicode-and-ascii-separators-not-split",
        ),
        pytest.param(Event("\ufeffbom"), "data: \ufeffbom\n\n".encode(), id="bom-in-data"),
        pytest.param(Event("nul\0"), b"data: nul\x00\n\n", id="nul-in-data"),
        pytest.param(Event(id="42"), b"id: 42\n\n", id="id-only"),
        pytest.param(Event(id=""), b"id: \n\n", id="empty-id-resets"),
        pytest.param(Event(event="ping"), b"event: ping\n\n", id="event-only"),
        pytest.param(Event(retry=3000), b"retry: 3000\n\n", id="retry-only"),
        pytest.param(Event(retry=0), b"retry: 0\n\n", id="retry-zero"),
        pytest.param(Event(comment="keep-alive"), b": keep-alive\n\n", id="comment"),
        pytest.param(Event(comment=""), b": \n\n", id="empty-comment"),
        pytest.param(
            Event(comment="one\ntwo\r\nthree\rfour"),
            b": one\n: two\n: three\n: four\n\n",
            id="comment-with-line-breaks",
        ),
        pytest.param(
            Event(comment="a\u2028b"), ": a\u2028b\n\n".encode(), id="comment-u2028-not-split"
        ),
        pytest.param(
            Event("x", event="update", id="7", retry=500, comment="c"),
            b": c\nevent: update\nid: 7\nretry: 500\ndata: x\n\n",
            id="all-fields-in-order",
        ),
        pytest.param(
            Event("l1\nl2", event="e", id="i"),
            b"event: e\nid: i\ndata: l1\ndata: l2\n\n",
            id="multi-line-with-fields",
        ),
        # An empty type means `message`: no `event:` line, on every path of encode().
        pytest.param(Event("x", event=""), b"data: x\n\n", id="empty-event-name"),
        pytest.param(Event("x", event="", id="1"), b"id: 1\ndata: x\n\n", id="empty-event-with-id"),
        pytest.param(
            Event("x\ny", event="", retry=5),
            b"retry: 5\ndata: x\ndata: y\n\n",
            id="empty-event-general",
        ),
        pytest.param(Event(event=""), b"\n", id="empty-event-alone"),
        pytest.param(Event("x", event=" sp"), b"event:  sp\ndata: x\n\n", id="event-leading-space"),
        pytest.param(Event("x", id="\u2026"), "id: \u2026\ndata: x\n\n".encode(), id="unicode-id"),
        pytest.param(Event("", id="1"), b"id: 1\ndata: \n\n", id="empty-data-with-id"),
        pytest.param(Event("x\ry", retry=1), b"retry: 1\ndata: x\ndata: y\n\n", id="cr-with-retry"),
    ],
)
def test_encode_exact_bytes(event: Event, wire: bytes) -> None:
    assert event.encode() == wire


def test_encode_returns_bytes() -> None:
    assert type(Event("x").encode()) is bytes
    assert type(Event(comment="x").encode()) is bytes
    assert type(encode_data("x")) is bytes


def test_large_retry_is_written_in_decimal() -> None:
    assert Event(retry=2**62).encode() == b"retry: 4611686018427387904\n\n"


# --------------------------------------------------------------------------------------------
# encode_data: the hot path must agree with Event(data=...).encode() and with the general path.
# --------------------------------------------------------------------------------------------


def _reference_frame(data: str) -> bytes:
    lines = re.split(r"\r\n|\r|\n", data)
    return ("".join(f"data: {line}\n" for line in lines) + "\n").encode("utf-8")


ENCODE_DATA_INPUTS = [
    "",
    " ",
    "x",
    " x",
    "  x",
    "x ",
    "\n",
    "\r",
    "\r\n",
    "\n\r",
    "\r\r",
    "\n\n",
    "\r\n\r\n",
    "a\nb",
    "a\rb",
    "a\r\nb",
    "a\r\nb\rc\nd",
    "a\n",
    "\na",
    "\r\na",
    "a\r",
    '{"json": [1, 2, 3]}',
    "data: nested",
    ": comment-looking",
    "\ufeff",
    "\ufeffx",
    "\0",
    "\u2028",
    "\u2029",
    "\x85",
    "\x0b",
    "\x0c",
    "\x1c\x1d\x1e",
    "a\u2028b\nc",
    "é",
    "日本語\n中文",
    "😀\r😀",
    "\t",
    "x" * 10_000,
    ("line\n" * 100),
    ("crlf\r\n" * 100),
]


@pytest.mark.parametrize("data", ENCODE_DATA_INPUTS)
def test_encode_data_matches_event_encode(data: str) -> None:
    assert encode_data(data) == Event(data=data).encode()
    assert encode_data(data) == _reference_frame(data)
    # Event(...).encode() with another field takes the general path, not encode_data; an empty
    # event type writes no line.
    assert Event(data=data, event="").encode() == encode_data(data)
    assert Event(data=data, event="e").encode() == b"event: e\n" + encode_data(data)


_text_with_breaks = st.lists(
    st.one_of(
        st.text(max_size=8),
        st.sampled_from(["\r\n", "\r", "\n", " ", "\u2028", "\x85", "\x0b", "\x0c", "\ufeff"]),
    ),
    max_size=12,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), _text_with_breaks))
def test_encode_data_matches_event_encode_property(data: str) -> None:
    assert encode_data(data) == Event(data=data).encode()
    assert encode_data(data) == _reference_frame(data)
    assert Event(data=data, comment="c").encode() == b": c\n" + encode_data(data)


# --------------------------------------------------------------------------------------------
# Value semantics: immutability, accessors, equality, hashing, repr, pickle, replace().
# --------------------------------------------------------------------------------------------


def test_accessors() -> None:
    event = Event("d", event="e", id="i", retry=5, comment="c")
    assert (event.data, event.event, event.id, event.retry, event.comment) == (
        "d",
        "e",
        "i",
        5,
        "c",
    )
    bare = Event(id="i")
    assert (bare.data, bare.event, bare.retry, bare.comment) == (None, None, None, None)


@pytest.mark.parametrize("name", ["data", "event", "id", "retry", "comment"])
def test_fields_cannot_be_assigned(name: str) -> None:
    event = Event("x")
    with pytest.raises(AttributeError):
        setattr(event, name, "y")
    assert event.data == "x"


def test_no_new_attributes() -> None:
    event = Event("x")
    with pytest.raises(AttributeError):
        event.other = 1  # type: ignore[attr-defined]


def test_equality() -> None:
    assert Event("x") == Event("x")
    assert Event("x", id="1") == Event(data="x", id="1")
    assert Event("x").__ne__(Event("x")) is False
    assert Event("x") != Event("y")
    assert Event("x") != Event("x", id="1")
    assert Event("x", event="a") != Event("x", event="b")
    assert Event(retry=1) != Event(retry=2)
    assert Event(comment="a") != Event(comment="b")
    # data="x" and comment="x" are different events even though both hold one "x".
    assert Event("x") != Event(comment="x")
    assert Event(data="") != Event(event="")


def test_not_equal_to_plain_tuple_or_other_types() -> None:
    event = Event("x")
    as_tuple = ("x", None, None, None, None)
    assert event != as_tuple
    assert as_tuple != event
    assert event.__eq__(as_tuple) is NotImplemented
    assert event != "x"
    assert event != None  # noqa: E711


def test_hash() -> None:
    assert hash(Event("x")) == hash(Event("x"))
    assert hash(Event("x", id="1", retry=3)) == hash(Event("x", id="1", retry=3))
    assert len({Event("x"), Event("x"), Event("y"), Event(comment="x")}) == 3
    assert {Event("x"): 1}[Event("x")] == 1
    # A plain tuple with the same items is a different key.
    assert ("x", None, None, None, None) not in {Event("x")}


@pytest.mark.parametrize(
    ("event", "text"),
    [
        (Event("x"), "Event(data='x')"),
        (Event(""), "Event(data='')"),
        (Event(id="1"), "Event(id='1')"),
        (Event(retry=0), "Event(retry=0)"),
        (Event(event=""), "Event(event='')"),
        (
            Event("d\n", event="e", id="i", retry=5, comment="c"),
            "Event(data='d\\n', event='e', id='i', retry=5, comment='c')",
        ),
    ],
)
def test_repr(event: Event, text: str) -> None:
    assert repr(event) == text
    assert eval(repr(event)) == event  # the repr is a valid constructor call


ROUNDTRIP_EVENTS = [
    Event("x"),
    Event(""),
    Event("a\r\nb", event="e", id="1", retry=10, comment="c\nd"),
    Event(id=""),
    Event(retry=0),
    Event(comment="only"),
    Event("\u2028\0é"),
]


@pytest.mark.parametrize("event", ROUNDTRIP_EVENTS)
@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickle(event: Event, protocol: int) -> None:
    clone = pickle.loads(pickle.dumps(event, protocol=protocol))
    assert type(clone) is Event
    assert clone == event
    assert hash(clone) == hash(event)
    assert clone.encode() == event.encode()


@pytest.mark.parametrize("event", ROUNDTRIP_EVENTS)
def test_copy(event: Event) -> None:
    for clone in (copy.copy(event), copy.deepcopy(event)):
        assert type(clone) is Event
        assert clone == event


def test_replace_changes_one_field_and_keeps_the_original() -> None:
    original = Event("x", event="e", id="1", retry=5, comment="c")
    changed = original.replace(data="y")
    assert type(changed) is Event
    assert changed == Event("y", event="e", id="1", retry=5, comment="c")
    assert original == Event("x", event="e", id="1", retry=5, comment="c")


def test_replace_several_fields_and_clear_one() -> None:
    original = Event("x", event="e", id="1")
    assert original.replace(event=None, id="2", retry=7) == Event("x", id="2", retry=7)


def test_replace_without_changes_gives_an_equal_event() -> None:
    original = Event("x", retry=1)
    assert original.replace() == original


@pytest.mark.parametrize(
    ("changes", "exc", "field"),
    [
        ({"id": "a\nb"}, ValueError, "id"),
        ({"id": "a\0b"}, ValueError, "id"),
        ({"event": "a\rb"}, ValueError, "event"),
        ({"retry": -1}, ValueError, "retry"),
        ({"retry": True}, TypeError, "retry"),
        ({"data": b"x"}, TypeError, "data"),
        ({"comment": 3}, TypeError, "comment"),
    ],
)
def test_replace_validates_like_a_new_event(
    changes: dict[str, object], exc: type[Exception], field: str
) -> None:
    with pytest.raises(exc, match=_names(field)):
        Event("x").replace(**changes)


def test_replace_refuses_an_unknown_field_by_name() -> None:
    with pytest.raises(TypeError, match="'colour'"):
        Event("x").replace(colour="red")


def test_replace_to_no_field_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Event("x").replace(data=None)


@pytest.mark.parametrize("value", [2**63, 10**4300], ids=["2**63", "10**4300"])
def test_retry_too_large_to_write_is_refused(value: int) -> None:
    with pytest.raises(ValueError, match=_names("retry")) as info:
        Event(retry=value)
    assert "2**63 - 1" in str(info.value)


def test_largest_retry_round_trips() -> None:
    assert Event(retry=2**63 - 1).encode() == b"retry: 9223372036854775807\n\n"
