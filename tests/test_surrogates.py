"""Lone surrogates (U+D800..U+DFFF in a Python str) on the way out: refused with a ValueError
that names the rule and the position, and, inside a stream, one error event and one log record.

They are not Unicode text and have no UTF-8 form; without a check they would surface as a
UnicodeEncodeError from deep inside the encoder.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from ssekit import EventParser, MessageEvent, to_sse
from ssekit._event import encode_data
from ssekit._frame import make_framer
from ssekit._serialize import dumps_json, dumps_json_bytes
from ssekit._writer import GENERIC_ERROR_MESSAGE

pytestmark = pytest.mark.timeout(30)


def _assert_refused(error: BaseException, position: int) -> None:
    assert type(error) is ValueError  # not a UnicodeEncodeError from inside the encoder
    message = str(error)
    assert "lone surrogate" in message
    assert f"index {position}" in message


@pytest.mark.parametrize(
    ("text", "position"),
    [("\ud800", 0), ("ab\udfff", 2), ("é\udc00", 1), ("line 1\nline\ud800 2", 11)],
)
def test_encode_data_refuses_a_lone_surrogate_with_its_position(text: str, position: int) -> None:
    with pytest.raises(ValueError, match="lone surrogate") as info:
        encode_data(text)
    _assert_refused(info.value, position)


class Text(str):
    """A str subclass: the framer's slower path for text chunks."""


@pytest.mark.parametrize("chunk", ["a\ud800", Text("a\ud800")], ids=["str", "str-subclass"])
def test_the_default_framer_refuses_a_text_chunk_with_a_lone_surrogate(chunk: str) -> None:
    with pytest.raises(ValueError, match="lone surrogate") as info:
        make_framer(None)(chunk)
    _assert_refused(info.value, 1)


def test_a_serializer_returning_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(ValueError, match="lone surrogate") as info:
        make_framer(lambda chunk: "x\ud800")(object())
    _assert_refused(info.value, 1)


def test_json_with_a_lone_surrogate_is_refused_on_every_path() -> None:
    value = {"text": "a\udc00"}
    for dumps in (dumps_json_bytes, dumps_json, make_framer(None)):
        with pytest.raises(ValueError, match="lone surrogate") as info:
            dumps(value)
        assert type(info.value) is ValueError


def _parse(chunks: list[bytes]) -> list[MessageEvent]:
    parser = EventParser()
    return [event for chunk in chunks for event in parser.feed(chunk)]


def _consume(source: list[Any], consumer: str) -> list[bytes]:
    stream = to_sse(source, heartbeat=None)
    if consumer == "sync":
        return list(stream)

    async def main() -> list[bytes]:
        return [chunk async for chunk in stream]

    return asyncio.run(main())


@pytest.mark.parametrize("consumer", ["sync", "async"])
def test_to_sse_ends_with_the_error_event_and_logs_the_refusal_once(
    consumer: str, caplog: pytest.LogCaptureFixture
) -> None:
    source = ["before", "lone \ud800 surrogate", "after", "and \udfff another"]
    with caplog.at_level(logging.DEBUG, logger="ssekit"):
        chunks = _consume(source, consumer)
    events = _parse(chunks)
    assert [(e.type, e.data) for e in events[:1]] == [("message", "before")]
    assert [e.type for e in events] == ["message", "error"]  # the stream ends there
    assert json.loads(events[-1].data) == {"message": GENERIC_ERROR_MESSAGE}
    assert b"surrogate" not in b"".join(chunks)  # the reason stays on the server
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1
    assert errors[0].exc_info is not None
    _assert_refused(errors[0].exc_info[1], 5)  # type: ignore[arg-type]
