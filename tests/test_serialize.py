"""The default serializer: compact JSON, the same meaning with orjson (when installed) or without.

`ssekit._serialize._dumps_stdlib` is the standard-library path; `dumps_json` is what streams use
(orjson when it is installed, falling back to the standard library for what orjson refuses).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import re
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssekit._serialize import _dumps_stdlib, dumps_json

pytestmark = pytest.mark.timeout(30)


JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def as_text(out: str | bytes) -> str:
    return out.decode("utf-8") if isinstance(out, bytes) else out


def both(value: Any) -> tuple[Any, Any]:
    """(stdlib result, dumps_json result), each parsed back from JSON."""
    return json.loads(as_text(_dumps_stdlib(value))), json.loads(as_text(dumps_json(value)))


class Color(enum.Enum):
    RED = "red"
    BLUE = 2


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 10


class Mode(str, enum.Enum):
    FAST = "fast"


@dataclasses.dataclass
class Point:
    x: int
    y: float


@dataclasses.dataclass
class Shape:
    name: str
    points: list[Point]
    color: Color
    created: datetime.datetime
    tags: dict[str, Any] = dataclasses.field(default_factory=dict)
    parent: Shape | None = None


class PydanticLike:
    """Anything with pydantic v2's `model_dump(mode="json")` is converted through it."""

    def __init__(self, **fields: Any) -> None:
        self.fields = fields
        self.modes: list[str] = []

    def model_dump(self, *, mode: str = "python") -> dict[str, Any]:
        self.modes.append(mode)
        return dict(self.fields)


WHEN = datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.timezone.utc)
UID = uuid.UUID("12345678-1234-5678-1234-567812345678")

VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    2**31,
    2**63 - 1,
    2**63,  # beyond int64: orjson refuses, the stdlib writes it
    2**64,
    -(2**64) - 5,
    10**40,
    1.5,
    -0.0,
    1e16,
    1e-7,
    1.7976931348623157e308,
    0.1 + 0.2,
    "",
    "plain",
    "café ☕ 𝄞",
    'quote " backslash \\ newline \n cr \r tab \t nul \0',
    "\u2028\u2029\x7f",
    "null",
    [],
    {},
    [1, "two", None, 3.0, [None, {}]],
    (1, 2, 3),
    {"a": None, "b": [None, None], "c": {"d": None}},
    {"nested": {"deeper": {"deepest": [1, {"x": "y"}]}}},
    {1: "int key", 2: "another"},
    {1.5: "float key", True: "bool key", None: "none key"},
    {"mixed": 1, 2: "int"},
    {"big": 2**70, "list": [2**65, -(2**65)]},
    Color.RED,
    Color.BLUE,
    Level.HIGH,
    Mode.FAST,
    {"level": Level.LOW, "mode": Mode.FAST},
    {Level.HIGH: "int-enum key"},
    WHEN,
    datetime.datetime(2024, 1, 2, 3, 4, 5),
    datetime.date(2024, 2, 29),
    datetime.time(23, 59, 58, 1),
    UID,
    Point(1, 2.5),
    [Point(1, 2.0), Point(-3, 4.25)],
    Shape(
        "tri",
        [Point(0, 0.0), Point(1, 0.5)],
        Color.BLUE,
        WHEN,
        {"k": [Level.LOW, None, UID], 7: "int key inside a dataclass"},
        Shape("parent", [], Color.RED, WHEN),
    ),
    PydanticLike(name="model", when=WHEN.isoformat(), n=None),
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_stdlib_and_default_paths_mean_the_same(value: Any) -> None:
    stdlib, default = both(value)
    assert stdlib == default


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_output_is_compact(value: Any) -> None:
    for out in (as_text(_dumps_stdlib(value)), as_text(dumps_json(value))):
        outside_strings = JSON_STRING.sub('""', out)
        assert not any(c.isspace() for c in outside_strings), out
        assert "\n" not in out
        assert "\r" not in out


def test_expected_json_for_converted_types() -> None:
    for dumps in (_dumps_stdlib, dumps_json):
        assert json.loads(as_text(dumps(Color.RED))) == "red"
        assert json.loads(as_text(dumps(Level.HIGH))) == 10
        assert json.loads(as_text(dumps(WHEN))) == "2024-05-06T07:08:09.123456+00:00"
        assert json.loads(as_text(dumps(datetime.date(2024, 2, 29)))) == "2024-02-29"
        assert json.loads(as_text(dumps(UID))) == str(UID)
        assert json.loads(as_text(dumps(Point(1, 2.5)))) == {"x": 1, "y": 2.5}
        assert json.loads(as_text(dumps({1: "a"}))) == {"1": "a"}
        assert json.loads(as_text(dumps(2**70))) == 2**70
        assert as_text(dumps({"a": [1, 2], "b": None})) == '{"a":[1,2],"b":null}'
        assert as_text(dumps("café")) == '"café"'  # UTF-8 kept as is, not \\u escapes


def test_pydantic_like_models_are_dumped_in_json_mode() -> None:
    for dumps in (_dumps_stdlib, dumps_json):
        model = PydanticLike(a=1, b="two")
        assert json.loads(as_text(dumps({"model": model}))) == {"model": {"a": 1, "b": "two"}}
        assert model.modes == ["json"]


def test_real_pydantic_model() -> None:
    pydantic = pytest.importorskip("pydantic")

    class User(pydantic.BaseModel):  # type: ignore[name-defined,misc]
        name: str
        joined: datetime.datetime
        uid: uuid.UUID
        score: float | None = None

    user = User(name="ada", joined=WHEN, uid=UID)
    stdlib, default = both(user)
    assert (
        stdlib
        == default
        == {
            "name": "ada",
            "joined": "2024-05-06T07:08:09.123456Z",
            "uid": str(UID),
            "score": None,
        }
    )


NON_FINITE: list[tuple[Any, Any]] = [
    (float("nan"), None),
    (float("inf"), None),
    (float("-inf"), None),
    ({"x": [1.0, float("nan")]}, {"x": [1.0, None]}),
    ([float("inf"), "inf"], [None, "inf"]),
    ((float("nan"), 2), [None, 2]),
    (Point(1, float("nan")), {"x": 1, "y": None}),
    ({"score": float("-inf"), "name": None}, {"score": None, "name": None}),
    ({1: float("nan")}, {"1": None}),  # non-str keys: orjson refuses, the stdlib path decides
    ({"big": 2**70, "nan": float("nan")}, {"big": 2**70, "nan": None}),
    ({"when": WHEN, "v": [float("inf")]}, {"when": WHEN.isoformat(), "v": [None]}),
]


@pytest.mark.parametrize(("value", "expected"), NON_FINITE, ids=repr)
def test_nan_and_infinity_become_null_on_both_paths(value: Any, expected: Any) -> None:
    """Not JSON: both paths write null for them (as JSON.stringify does), never NaN tokens."""
    for out in (as_text(_dumps_stdlib(value)), as_text(dumps_json(value))):
        assert "NaN" not in out
        assert "Infinity" not in out
        assert json.loads(out) == expected


@pytest.mark.parametrize(
    "value",
    [object(), {1, 2}, {"k": object()}, {(1, 2): "tuple key"}, b"bytes", {"b": b"x"}],
    ids=repr,
)
def test_unserializable_values_are_type_errors_on_both_paths(value: Any) -> None:
    with pytest.raises(TypeError):
        _dumps_stdlib(value)
    with pytest.raises(TypeError):
        dumps_json(value)


def test_dumps_json_uses_orjson_when_installed() -> None:
    pytest.importorskip("orjson")
    assert dumps_json is not _dumps_stdlib


# -- properties ---------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(max_size=8), children, max_size=5)
        | st.dictionaries(st.integers(), children, max_size=3)
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_property_both_paths_parse_to_the_same_value(value: Any) -> None:
    try:
        stdlib = json.loads(as_text(_dumps_stdlib(value)))
    except (ValueError, TypeError) as exc:
        with pytest.raises(type(exc)):
            dumps_json(value)
        return
    assert json.loads(as_text(dumps_json(value))) == stdlib


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.floats() | st.none() | st.integers() | st.text(max_size=4),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=4) | st.integers(), children, max_size=4)
        ),
        max_leaves=12,
    )
)
def test_property_non_finite_floats_are_null_on_both_paths(value: Any) -> None:
    outputs = [as_text(_dumps_stdlib(value)), as_text(dumps_json(value))]
    for out in outputs:
        outside_strings = JSON_STRING.sub('""', out)
        assert "NaN" not in outside_strings
        assert "Infinity" not in outside_strings
    assert json.loads(outputs[0]) == json.loads(outputs[1])
