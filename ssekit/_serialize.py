"""The default serializer for chunks that are not `str`, `bytes` or `Event`: compact JSON.

The standard library's `json` defines the semantics (compact separators, UTF-8 kept as is, NaN and
Infinity refused, dataclasses/enums/dates/UUIDs/pydantic models converted the same way).  When
orjson is installed it does the work, and anything where the two could differ is redone by `json`,
so the output means the same with or without it.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import uuid
from collections.abc import Callable
from typing import Any

__all__ = ["Serializer", "dumps_json"]

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
    return _stdlib_encoder.encode(value)


def _make_orjson_dumps() -> Callable[[Any], str | bytes] | None:
    try:
        import orjson
    except ImportError:
        return None

    options = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
    orjson_dumps = orjson.dumps

    def dumps_orjson(value: Any) -> str | bytes:
        try:
            out: bytes = orjson_dumps(value, default=_default, option=options)
        except (TypeError, orjson.JSONEncodeError):
            # Non-str keys, integers beyond 64 bits, ...: `json` decides (converts or refuses).
            return _dumps_stdlib(value)
        if b"null" in out:
            # orjson writes NaN and Infinity as null where `json` refuses them: let `json` decide.
            return _dumps_stdlib(value)
        return out

    return dumps_orjson


#: Compact JSON for a chunk; orjson when installed, with the same meaning either way.
dumps_json: Callable[[Any], str | bytes] = _make_orjson_dumps() or _dumps_stdlib
