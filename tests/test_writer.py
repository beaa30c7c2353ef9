"""`StreamWriter` decisions with a fake clock: pure, no threads, no loop.

`poll(now)` returns (byte strings to write now, seconds the driver may wait); the clock is just the
numbers passed in, so every decision here is exact.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from typing import Any

import pytest

from ssekit import Event, EventParser, MessageEvent, StreamError, to_sse
from ssekit._frame import HEARTBEAT
from ssekit._options import StreamOptions, StreamOptionsDict
from ssekit._writer import (
    DEFAULT_RECONNECT_HINT_MS,
    GENERIC_ERROR_MESSAGE,
    MAX_BATCH_BYTES,
    TRANSITIONS,
    ConsumerClosed,
    EndRequested,
    SourceEnded,
    SourceFailed,
    SourceFinished,
    StreamWriter,
    WriterState,
    WriterStateError,
    error_bytes,
)

pytestmark = pytest.mark.timeout(10)


def writer(now: float = 0.0, **options: Any) -> StreamWriter:
    w = StreamWriter(StreamOptions(**options))
    w.opening(now)
    return w


def frame(chunk: Any, **options: Any) -> bytes:
    """The bytes a stream writes for one chunk (through the writer, as a stream frames it)."""
    w = writer(0.0, flush="each", **options)
    w.add([chunk], 0.0)
    out, _ = w.poll(0.0)
    assert not w.done, out  # framing failed: the writer ended the stream with an error event
    (data,) = out
    return data


def parse(chunks: list[bytes]) -> list[MessageEvent]:
    parser = EventParser()
    events: list[MessageEvent] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    return events


# -- heartbeats ----------------------------------------------------------------------------------


def test_idle_writer_waits_until_the_heartbeat_is_due() -> None:
    w = writer(100.0, heartbeat=15)
    assert w.poll(100.0) == ([], 15.0)
    assert w.poll(110.0) == ([], 5.0)
    assert w.poll(114.999) == ([], pytest.approx(0.001))


def test_heartbeat_after_silence_then_the_timer_restarts() -> None:
    w = writer(0.0, heartbeat=15)
    assert w.poll(15.0) == ([HEARTBEAT], 15.0)
    assert w.poll(29.0) == ([], 1.0)
    assert w.poll(30.0) == ([HEARTBEAT], 15.0)
    assert not w.done


def test_a_late_poll_sends_one_heartbeat_not_a_backlog() -> None:
    w = writer(0.0, heartbeat=1)
    assert w.poll(10.0) == ([HEARTBEAT], 1.0)
    assert w.poll(10.5) == ([], 0.5)


def test_every_write_resets_the_heartbeat_timer() -> None:
    w = writer(0.0, heartbeat=15)
    w.add(["a"], 10.0)
    out, wait = w.poll(10.0)
    assert parse(out)[0].data == "a"
    assert wait == 15.0  # counted from the write at t=10, not from the start
    assert w.poll(24.0) == ([], 1.0)  # t=24: 14 s after the write, no heartbeat yet
    assert w.poll(25.0) == ([HEARTBEAT], 15.0)


def test_heartbeat_none_never_pings_and_never_needs_a_wake_up() -> None:
    w = writer(0.0, heartbeat=None)
    assert w.poll(0.0) == ([], None)
    assert w.poll(1e9) == ([], None)


def test_heartbeat_is_the_comment_line_ping() -> None:
    assert HEARTBEAT == b": ping\n\n"
    assert parse([HEARTBEAT]) == []


# -- flush policies -------------------------------------------------------------------------------


def test_flush_auto_writes_what_is_ready_in_one_piece() -> None:
    w = writer(0.0, flush="auto")
    w.add(["a", "b", "c"], 1.0)
    out, _ = w.poll(1.0)
    assert len(out) == 1
    assert [e.data for e in parse(out)] == ["a", "b", "c"]
    assert w.poll(1.0)[0] == []


def test_flush_each_writes_one_bytes_object_per_event() -> None:
    w = writer(0.0, flush="each")
    w.add(["a", "b", "c"], 1.0)
    out, _ = w.poll(1.0)
    assert out == [b"data: a\n\n", b"data: b\n\n", b"data: c\n\n"]


def test_flush_budget_waits_for_the_deadline_of_the_oldest_frame() -> None:
    w = writer(0.0, flush=0.5, heartbeat=15)
    w.add(["a"], 1.0)
    assert w.poll(1.0) == ([], 0.5)
    w.add(["b"], 1.25)  # joins the open batch; the deadline stays 1.5
    assert w.poll(1.25) == ([], 0.25)
    out, wait = w.poll(1.5)
    assert [e.data for e in parse(out)] == ["a", "b"]
    assert len(out) == 1
    assert wait == 15.0  # no batch open: only the heartbeat is pending


def test_flush_budget_writes_early_once_a_batch_is_full() -> None:
    w = writer(0.0, flush=3600.0)
    payload = "x" * 1000
    frames_needed = MAX_BATCH_BYTES // len(frame(payload)) + 1
    w.add([payload] * (frames_needed - 1), 0.0)
    assert w.poll(0.0)[0] == []
    w.add([payload], 0.0)
    out, _ = w.poll(0.0)
    assert len(parse(out)) == frames_needed


def test_flush_budget_next_batch_gets_a_fresh_deadline() -> None:
    w = writer(0.0, flush=1.0, heartbeat=None)
    w.add(["a"], 0.0)
    assert parse(w.poll(1.0)[0])[0].data == "a"
    assert w.poll(1.0) == ([], None)
    w.add(["b"], 5.0)
    assert w.poll(5.0) == ([], 1.0)
    assert parse(w.poll(6.0)[0])[0].data == "b"


def test_auto_batches_are_split_at_64_kib_plus_one_frame() -> None:
    w = writer(0.0, flush="auto")
    items = [f"{i:04d}" + "y" * 300 for i in range(1000)]
    frame_size = len(frame(items[0]))
    w.add(items, 0.0)
    out, _ = w.poll(0.0)
    assert len(out) == math.ceil(1000 / (MAX_BATCH_BYTES // frame_size))
    assert all(len(chunk) <= MAX_BATCH_BYTES for chunk in out)
    assert [e.data for e in parse(out)] == items
    assert all(chunk.endswith(b"\n\n") for chunk in out)


def test_a_frame_bigger_than_a_batch_is_written_whole() -> None:
    w = writer(0.0, flush="auto")
    big = "z" * (MAX_BATCH_BYTES * 2)
    w.add(["a", big, "b"], 0.0)
    out, _ = w.poll(0.0)
    assert [e.data for e in parse(out)] == ["a", big, "b"]
    assert all(len(chunk) <= MAX_BATCH_BYTES + len(big) + 16 for chunk in out)


# -- endings --------------------------------------------------------------------------------------


def test_finish_writes_pending_frames_then_is_done() -> None:
    w = writer(0.0, flush=3600.0)
    w.add(["a"], 0.0)
    w.end(SourceFinished())
    out, wait = w.poll(0.0)
    assert [e.data for e in parse(out)] == ["a"]
    assert wait is None
    assert w.done


def test_finish_with_end_string_and_end_event() -> None:
    w = writer(0.0, end="[DONE]")
    w.end(SourceFinished())
    assert w.poll(0.0) == ([b"data: [DONE]\n\n"], None)

    w = writer(0.0, end=Event("bye", event="end"))
    w.end(SourceFinished())
    out, _ = w.poll(0.0)
    assert parse(out) == [MessageEvent("end", "bye", "")]


def test_fail_writes_pending_frames_then_the_error_event() -> None:
    w = writer(0.0, end="[DONE]")
    w.add(["a"], 0.0)
    w.end(SourceFailed(StreamError("nope")))
    w.end(SourceFinished())  # too late: the first ending wins
    out, _ = w.poll(0.0)
    events = parse(out)
    assert [e.type for e in events] == ["message", "error"]
    assert json.loads(events[1].data) == {"message": "nope"}
    assert w.done


def test_an_unframeable_chunk_ends_the_stream_after_the_good_ones(
    caplog: pytest.LogCaptureFixture,
) -> None:
    w = writer(0.0)
    with caplog.at_level(logging.ERROR, logger="ssekit"):
        w.add(["a", {"not": object()}, "never"], 0.0)
    out, _ = w.poll(0.0)
    events = parse(out)
    assert [e.data for e in events[:1]] == ["a"]
    assert events[1].type == "error"
    assert json.loads(events[1].data) == {"message": GENERIC_ERROR_MESSAGE}
    assert len(events) == 2
    assert w.done
    assert any(r.exc_info and isinstance(r.exc_info[1], TypeError) for r in caplog.records)


def test_a_serializer_runs_once_per_chunk_even_when_one_fails() -> None:
    calls: list[int] = []

    def serializer(value: int) -> str:
        calls.append(value)
        if value == 3:
            raise ValueError("no threes")
        return str(value)

    w = writer(0.0, serializer=serializer, flush="each")
    w.add([1, 2, 3, 4], 0.0)
    out, _ = w.poll(0.0)
    assert calls == [1, 2, 3]  # each once; nothing after the bad chunk
    events = parse(out)
    assert [e.data for e in events[:2]] == ["1", "2"]
    assert events[2].type == "error"
    assert w.done


# -- the state machine -----------------------------------------------------------------------------


def test_state_goes_open_draining_done() -> None:
    w = writer(0.0, end="[DONE]")
    assert w.state is WriterState.OPEN
    w.add(["a"], 0.0)
    assert w.state is WriterState.OPEN
    w.end(SourceFinished())
    assert w.state is WriterState.DRAINING
    out, wait = w.poll(0.0)
    assert [e.data for e in parse(out)] == ["a", "[DONE]"]
    assert wait is None
    assert w.state is WriterState.DONE
    assert w.poll(1.0) == ([], None)  # done: nothing more, ever


def test_a_source_ending_with_its_own_bytes() -> None:
    w = writer(0.0, end="[DONE]")
    w.add(["a"], 0.0)
    w.end(SourceEnded(b"retry: 10\n\n"))
    out, _ = w.poll(0.0)
    assert out == [b"data: a\n\n", b"retry: 10\n\n"]  # not the `end` event: the source's own


def test_an_end_requested_from_another_thread_is_taken_in_by_the_next_poll() -> None:
    w = writer(0.0, flush=3600.0)
    w.add(["a"], 0.0)
    thread = threading.Thread(target=w.request, args=(EndRequested(b"data: bye\n\n"),))
    thread.start()
    thread.join()
    assert w.state is WriterState.OPEN  # only the consumer's poll changes the state
    out, wait = w.poll(0.0)
    assert [e.data for e in parse(out)] == ["a", "bye"]
    assert wait is None
    assert w.done


def test_consumer_closed_writes_nothing_more() -> None:
    w = writer(0.0, flush=3600.0, end="[DONE]")
    w.add(["pending"], 0.0)
    w.request(EndRequested(b"data: bye\n\n"))
    w.request(ConsumerClosed())  # overrides the farewell still waiting
    assert w.poll(0.0) == ([], None)
    assert w.done

    w = writer(0.0)
    w.end(SourceFailed(StreamError("x")))
    w.end(ConsumerClosed())  # while draining: the client is gone, the error is not written
    assert w.poll(0.0) == ([], None)


def test_the_first_ending_wins() -> None:
    w = writer(0.0)
    w.end(SourceFailed(StreamError("first")))
    w.request(EndRequested(b"data: second\n\n"))
    w.end(SourceEnded(b"data: third\n\n"))
    out, _ = w.poll(0.0)
    (event,) = parse(out)
    assert event.type == "error"
    assert json.loads(event.data) == {"message": "first"}


def test_chunks_after_the_ending_are_dropped_and_refused_once_done() -> None:
    w = writer(0.0)
    w.end(SourceFinished())
    w.add(["late"], 0.0)  # draining: dropped
    assert w.poll(0.0) == ([], None)
    with pytest.raises(WriterStateError, match="DONE cannot take Chunks: the stream has ended"):
        w.add(["later"], 1.0)
    w.end(SourceFinished())  # an ending after the end is no error: it changes nothing
    assert w.done


def test_the_transition_table_is_complete() -> None:
    """Every state has a row; every ending is accepted everywhere; only DONE refuses chunks."""
    endings = {SourceFinished, SourceFailed, SourceEnded, EndRequested, ConsumerClosed}
    assert set(TRANSITIONS) == set(WriterState)
    for state, row in TRANSITIONS.items():
        assert endings <= set(row), state
        assert all(isinstance(target, WriterState) for target in row.values())
    assert "Chunks" not in {kind.__name__ for kind in TRANSITIONS[WriterState.DONE]}
    assert all(target is WriterState.DONE for target in TRANSITIONS[WriterState.DONE].values())
    assert TRANSITIONS[WriterState.OPEN][ConsumerClosed] is WriterState.DONE


def test_max_duration_ends_with_the_default_retry_hint() -> None:
    w = writer(0.0, max_duration=60, heartbeat=15)
    assert w.poll(0.0) == ([], 15.0)
    assert w.poll(50.0)[1] == 10.0  # the max_duration deadline comes before the heartbeat
    w.add(["a"], 59.0)
    assert w.poll(59.0)[1] == 1.0
    w.add(["b"], 59.5)
    assert w.poll(59.5)[0]  # flush="auto" wrote it
    out, wait = w.poll(60.0)
    assert out == [b"retry: %d\n\n" % DEFAULT_RECONNECT_HINT_MS]
    assert wait is None
    assert w.state is WriterState.DONE


def test_max_duration_flushes_pending_and_uses_the_configured_retry() -> None:
    w = writer(0.0, max_duration=10, retry=2500, flush=3600.0)
    w.add(["a"], 5.0)
    out, _ = w.poll(10.0)
    parser = EventParser()
    events = [e for chunk in out for e in parser.feed(chunk)]
    assert [e.data for e in events] == ["a"]
    assert parser.retry == 2500
    assert out[-1] == b"retry: 2500\n\n"


def test_wait_budget_is_the_nearest_deadline() -> None:
    w = writer(0.0, heartbeat=10, max_duration=100, flush=3.0)
    w.add(["a"], 0.0)
    assert w.poll(0.0) == ([], 3.0)
    assert w.poll(2.0) == ([], 1.0)


# -- framing and the preamble ---------------------------------------------------------------------


def test_opening_bytes() -> None:
    def opening(**options: Any) -> bytes:
        return StreamWriter(StreamOptions(**options)).opening(0.0)

    assert opening() == b": ok\n\n"
    assert opening(retry=3000) == b": ok\nretry: 3000\n\n"
    assert opening(padding=4, retry=0) == b": ok\n:    \nretry: 0\n\n"


@pytest.mark.parametrize(
    ("chunk", "expected"),
    [
        ("hi", b"data: hi\n\n"),
        ("a\nb", b"data: a\ndata: b\n\n"),
        ("a\r\nb\rc", b"data: a\ndata: b\ndata: c\n\n"),
        ("", b"data: \n\n"),
        (b"hi", b"data: hi\n\n"),
        (bytearray(b"hi"), b"data: hi\n\n"),
        (memoryview(b"hi"), b"data: hi\n\n"),
        ("café".encode(), "data: café\n\n".encode()),
        (b"a\nb", b"data: a\ndata: b\n\n"),
        (Event("x", event="e", id="7"), b"event: e\nid: 7\ndata: x\n\n"),
        ({"a": 1, "b": [1, 2]}, b'data: {"a":1,"b":[1,2]}\n\n'),
        (None, b"data: null\n\n"),
        (3, b"data: 3\n\n"),
    ],
)
def test_framing(chunk: Any, expected: bytes) -> None:
    assert frame(chunk) == expected


def test_framing_str_subclass_is_text() -> None:
    class Name(str):
        pass

    assert frame(Name("n")) == b"data: n\n\n"
    assert frame(Name("n"), serializer=lambda v: "serialized") == b"data: n\n\n"


def test_framing_with_a_custom_serializer() -> None:
    assert frame({"a": 1}, serializer=lambda v: f"custom {v!r}") == b"data: custom {'a': 1}\n\n"
    assert frame(5, serializer=lambda v: b"five\nlines") == b"data: five\ndata: lines\n\n"
    assert frame("text", serializer=lambda v: "unused") == b"data: text\n\n"


@pytest.mark.parametrize(
    ("chunk", "options", "error"),
    [
        (b"\xff\xfe", {}, ValueError),
        (b"ok \xc3", {}, ValueError),
        (1, {"serializer": lambda value: 42}, TypeError),
        (1, {"serializer": lambda value: b"\xff"}, ValueError),
        (object(), {}, TypeError),
        ("lone \ud800 surrogate", {}, ValueError),
    ],
)
def test_unframeable_chunks_end_the_stream_with_an_error_event(
    chunk: Any, options: dict[str, Any], error: type[Exception], caplog: pytest.LogCaptureFixture
) -> None:
    w = writer(0.0, flush="each", **options)
    with caplog.at_level(logging.ERROR, logger="ssekit"):
        w.add(["before", chunk, "after"], 0.0)
    out, wait = w.poll(0.0)
    assert w.done
    assert wait is None
    assert all(piece.endswith(b"\n\n") for piece in out)  # whole events only
    events = parse(out)
    assert [e.type for e in events] == ["message", "error"]
    assert events[0].data == "before"
    assert json.loads(events[1].data) == {"message": GENERIC_ERROR_MESSAGE}
    logged = [r.exc_info[1] for r in caplog.records if r.exc_info]
    assert len(logged) == 1
    assert isinstance(logged[0], error)


def test_error_bytes_messages(caplog: pytest.LogCaptureFixture) -> None:
    def data(raw: bytes) -> Any:
        (event,) = parse([raw])
        assert event.type == "error"
        return json.loads(event.data)

    with caplog.at_level(logging.ERROR, logger="ssekit"):
        assert data(error_bytes(StreamError("shown"), None)) == {"message": "shown"}
        assert not caplog.records
        assert data(error_bytes(KeyError("secret"), None)) == {"message": GENERIC_ERROR_MESSAGE}
        assert len(caplog.records) == 1
        assert data(error_bytes(KeyError("x"), lambda e: "hooked")) == {"message": "hooked"}
    custom = Event("custom", event="oops")
    assert error_bytes(StreamError("x"), lambda e: custom) == custom.encode()


# -- option validation -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["never", "EACH", 0, -1, 0.0, True, None, float("nan"), [1]])
def test_invalid_flush_is_a_value_error_naming_flush(value: Any) -> None:
    with pytest.raises(ValueError, match="flush"):
        StreamOptions(flush=value)


@pytest.mark.parametrize("name", ["heartbeat", "max_duration"])
@pytest.mark.parametrize("value", [0, -1, "1", True, float("nan")])
def test_invalid_seconds_are_value_errors_naming_the_option(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=name):
        StreamOptions(**{name: value})


def test_other_option_validation() -> None:
    assert StreamOptions(flush=1).flush == 1.0
    assert StreamOptions().heartbeat == 15.0
    with pytest.raises(ValueError, match="padding"):
        StreamOptions(padding=-1)
    with pytest.raises(ValueError, match="padding"):
        StreamOptions(padding=True)
    with pytest.raises(ValueError, match="retry"):
        StreamOptions(retry=-1)
    with pytest.raises(TypeError, match="retry"):
        StreamOptions(retry="1000")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="end"):
        StreamOptions(end=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="serializer"):
        StreamOptions(serializer="json")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="on_error"):
        StreamOptions(on_error="log")  # type: ignore[arg-type]


def test_an_unknown_option_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match="'heartbeet'"):
        StreamOptions(heartbeet=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="'heartbeet'"):
        to_sse([], heartbeet=1)  # type: ignore[call-arg]


def test_the_typed_options_and_the_validated_ones_list_the_same_names() -> None:
    assert set(StreamOptions.__slots__) == {*StreamOptionsDict.__annotations__, "frame"}
