"""The default serializer for chunks that are not `str`, `bytes` or `Event`: compact JSON.

The standard library's `json` defines the semantics (compact separators, UTF-8 kept as is,
dataclasses/enums/dates/UUIDs/pydantic models converted the same way), except that NaN and
Infinity become `null`, as JavaScript's `JSON.stringify` does, since they are not JSON.  When orjson
is installed it does the work (it writes `null` for them too), and what it refuses, such as
non-str keys, is redone by `json`, so the output means the same with or without it.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import math
import uuid
from collections.abc import Callable
from typing import Any

__all__ = ["Serializer", "dumps_json", "dumps_json_bytes"]

#: Turns a chunk into the text (or UTF-8 bytes) of one message's data.
Serializer = Callable[[Any], "str | bytes"]


def _default(value: Any) -> Any:
    """Convert the values `json` cannot encode by itself."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump):  # pydantic v2 models
        return model_dump(mode="json")
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_stdlib_encoder = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_default
)


def _dumps_stdlib(value: Any) -> str:
    try:
        return _stdlib_encoder.encode(value)
    except ValueError:
        # NaN or Infinity somewhere (rare): write them as null, and let other errors surface.
        return _stdlib_encoder.encode(_finite(value))


def _finite(value: Any) -> Any:
    """A copy of `value` with NaN and Infinity floats replaced by None (JSON's null)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    converted = _default_or_none(value)
    return value if converted is None else _finite(converted)


def _default_or_none(value: Any) -> Any:
    if value is None or isinstance(value, (str, int)):
        return None
    try:
        return _default(value)
    except TypeError:
        return None


def _dumps_stdlib_bytes(value: Any) -> bytes:
    text = _dumps_stdlib(value)  # with its NaN/Infinity -> null rule
    try:
        return text.encode()
    except UnicodeEncodeError as exc:
        # A lone surrogate in a string (orjson refuses it too): no UTF-8 form, so no JSON to send.
        raise ValueError(
            f"The value cannot be sent as JSON: it contains a lone surrogate"
            f" (U+{ord(text[exc.start]):04X}, at index {exc.start} of its JSON text), which is"
            " not Unicode text and cannot be encoded as UTF-8."
        ) from None


def _make_orjson_dumps() -> Callable[[Any], bytes] | None:
    try:
        import orjson
    except ImportError:
        return None

    options = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
    orjson_dumps = orjson.dumps

    def dumps_orjson(value: Any) -> bytes:
        try:
            return orjson_dumps(value, default=_default, option=options)
        except TypeError:  # orjson.JSONEncodeError is a TypeError
            # Non-str keys, integers beyond 64 bits, ...: `json` decides (converts or refuses).
            return _dumps_stdlib_bytes(value)

    return dumps_orjson


#: Compact JSON as UTF-8 bytes; orjson when installed, with the same meaning either way.
dumps_json_bytes: Callable[[Any], bytes] = _make_orjson_dumps() or _dumps_stdlib_bytes


def dumps_json(value: Any) -> str:
    """Compact JSON text for `value`, the default serializer of `to_sse()`."""
    return dumps_json_bytes(value).decode()
