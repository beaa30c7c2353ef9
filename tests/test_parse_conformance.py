"""Conformance table for `EventParser`, from the WHATWG HTML standard and web-platform-tests.

Every case cites where its expectation comes from: a sentence of the WHATWG HTML standard,
section "Server-sent events" (9.2.5 "Parsing an event stream" / 9.2.6 "Interpreting an event
stream"), or a web-platform-tests file under `eventsource/` whose scenario the case restates
(the streams are written here from the behaviour those tests check, not copied from them).

Each case is run fed whole, byte by byte, split in two at every position, and in several seeded
random chunkings; every way of feeding must give the same events, `retry` and `last_event_id`.
A case may span several connections: `EventParser.end_of_stream()` is called after each one.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from ssekit import EventParser, MessageEvent

Dispatched = tuple[str, str, str]  # (type, data, last_event_id)

# -- Sentences of the WHATWG HTML standard, "Server-sent events" ------------------------------
SPEC = "WHATWG HTML 9.2 Server-sent events"
S_UTF8 = f"{SPEC}, 9.2.5: 'Streams must be decoded using the UTF-8 decode algorithm.'"
S_BOM = (
    f"{SPEC}, 9.2.5: 'The UTF-8 decode algorithm strips one leading UTF-8 Byte Order Mark (BOM), "
    "if any.' (ABNF: stream = [ bom ] *event)"
)
S_LINES = (
    f"{SPEC}, 9.2.5: 'a U+000D CARRIAGE RETURN U+000A LINE FEED (CRLF) character pair, a single "
    "U+000A LINE FEED (LF) character not preceded by a U+000D CARRIAGE RETURN (CR) character, and "
    "a single U+000D CARRIAGE RETURN (CR) character not followed by a U+000A LINE FEED (LF) "
    "character being the ways in which a line can end.'"
)
S_BLANK = f"{SPEC}, 9.2.6: 'If the line is empty (a blank line): Dispatch the event'"
S_COMMENT = (
    f"{SPEC}, 9.2.6: 'If the line starts with a U+003A COLON character (:): Ignore the line.'"
)
S_COLON = (
    f"{SPEC}, 9.2.6: 'Collect the characters on the line before the first U+003A COLON "
    "character (:), and let field be that string. Collect the characters on the line after the "
    "first U+003A COLON character (:), and let value be that string.'"
)
S_SPACE = f"{SPEC}, 9.2.6: 'If value starts with a U+0020 SPACE character, remove it from value.'"
S_NO_COLON = (
    f"{SPEC}, 9.2.6: 'Otherwise, the string is not empty but does not contain a U+003A COLON "
    "character (:): Process the field using the steps described below, using the whole line as "
    "the field name, and the empty string as the field value.'"
)
S_LITERAL = f"{SPEC}, 9.2.6: 'The field names must be compared literally, with no case folding.'"
S_UNKNOWN = f"{SPEC}, 9.2.6: 'Otherwise: The field is ignored.'"
S_EVENT = f"{SPEC}, 9.2.6: field name 'event': 'Set the event type buffer to field value.'"
S_DATA = (
    f"{SPEC}, 9.2.6: field name 'data': 'Append the field value to the data buffer, then append "
    "a single U+000A LINE FEED (LF) character to the data buffer.'"
)
S_ID = (
    f"{SPEC}, 9.2.6: field name 'id': 'If the field value does not contain U+0000 NULL, then set "
    "the last event ID buffer to the field value. Otherwise, ignore the field.'"
)
S_RETRY = (
    f"{SPEC}, 9.2.6: field name 'retry': 'If the field value consists of only ASCII digits, then "
    "interpret the field value as an integer in base ten, and set the event stream's "
    "reconnection time to that integer. Otherwise, ignore the field.'"
)
S_DISPATCH_ID = (
    f"{SPEC}, 9.2.6 dispatch step 1: 'Set the last event ID string of the event source to the "
    "value of the last event ID buffer. The buffer does not get reset'"
)
S_DISPATCH_EMPTY = (
    f"{SPEC}, 9.2.6 dispatch step 2: 'If the data buffer is an empty string, set the data buffer "
    "and the event type buffer to the empty string and return.'"
)
S_DISPATCH_LF = (
    f"{SPEC}, 9.2.6 dispatch step 3: 'If the data buffer's last character is a U+000A LINE FEED "
    "(LF) character, then remove the last character from the data buffer.'"
)
S_DISPATCH_TYPE = (
    f"{SPEC}, 9.2.6 dispatch steps 5-7: type 'message' unless 'the event type buffer has a value "
    "other than the empty string'; then 'Set the data buffer and the event type buffer to the "
    "empty string.'"
)
S_EOF = (
    f"{SPEC}, 9.2.6: 'Once the end of the file is reached, any pending data must be discarded. "
    "(If the file ends in the middle of an event, before the final empty line, the incomplete "
    "event is not dispatched.)'"
)
S_EXAMPLE_BLOCKS = (
    f"{SPEC}, 9.2.6 example: ': test stream / data: first event / id: 1 / data:second event / "
    "id / data:  third event' (comment block fires nothing; bare 'id' resets the last event ID; "
    "'third event' keeps one leading space)"
)
S_EXAMPLE_EMPTY = (
    f"{SPEC}, 9.2.6 example: 'data / (blank) / data / data / (blank) / data:' fires '' then a "
    "single newline; the last block is discarded because it is not followed by a blank line"
)
S_EXAMPLE_SPACE = (
    f"{SPEC}, 9.2.6 example: 'data:test' and 'data: test' fire identical events because 'the "
    "space after the colon is ignored if present'"
)
WPT = "web-platform-tests eventsource/"


@dataclass(frozen=True)
class Case:
    name: str
    #: The bytes of one connection, or a tuple of connections (end_of_stream() after each).
    stream: bytes | tuple[bytes, ...]
    #: Every dispatched event, in order, as (type, data, last_event_id).
    events: list[Dispatched]
    source: str
    #: `parser.retry` once everything has been fed.
    retry: int | None = None
    #: `parser.last_event_id` once everything has been fed.
    last_event_id: str = ""

    @property
    def connections(self) -> tuple[bytes, ...]:
        return (self.stream,) if isinstance(self.stream, bytes) else self.stream


BOM = b"\xef\xbb\xbf"
LONG = b"x" * 1500

CASES: list[Case] = [
    # ---- BOM -------------------------------------------------------------------------------
    Case("bom-stripped-at-start", BOM + b"data:1\n\n", [("message", "1", "")], S_BOM),
    Case(
        "bom-only-at-stream-start",
        BOM + b"data:1\n\n" + BOM + b"data:2\n\ndata:3\n\n",
        # The second BOM is part of the field name "\ufeffdata", an unknown field.
        [("message", "1", ""), ("message", "3", "")],
        f"{WPT}format-bom.any.js; {S_BOM}",
    ),
    Case(
        "double-bom-second-kept",
        BOM + BOM + b"data:1\n\ndata:2\n\ndata:3\n\n",
        [("message", "2", ""), ("message", "3", "")],
        f"{WPT}format-bom-2.any.js; {S_BOM}",
    ),
    Case(
        "bom-after-blank-line-is-not-stripped",
        b"\n" + BOM + b"data:1\n\ndata:2\n\n",
        [("message", "2", "")],
        S_BOM,
    ),
    Case(
        "bom-inside-value-kept",
        b"data:" + BOM + b"x\n\n",
        [("message", "\ufeffx", "")],
        f"{S_BOM}; {S_COLON}",
    ),
    Case(
        "bom-stripped-again-on-new-connection",
        (BOM + b"data:1\n\n", BOM + b"data:2\n\n"),
        [("message", "1", ""), ("message", "2", "")],
        f"{S_BOM} (each reconnection is a new stream)",
    ),
    Case("bom-only-stream", BOM, [], S_BOM),
    # ---- Line endings ----------------------------------------------------------------------
    Case("lf-only", b"data:a\ndata:b\n\n", [("message", "a\nb", "")], S_LINES),
    Case("cr-only", b"data:a\rdata:b\r\r", [("message", "a\nb", "")], S_LINES),
    Case("crlf", b"data:a\r\ndata:b\r\n\r\n", [("message", "a\nb", "")], S_LINES),
    Case(
        "newline-fest",
        b"data:test\r\ndata\ndata:test\r\n\r",
        [("message", "test\n\ntest", "")],
        f"{WPT}format-newlines.any.js; {S_LINES}",
    ),
    Case(
        "crlf-then-cr-blank-line",
        b"data:a\r\n\rdata:b\n\r\n",
        [("message", "a", ""), ("message", "b", "")],
        S_LINES,
    ),
    Case(
        "lf-then-cr-is-two-line-ends",
        b"data:a\n\rdata:b\n\n",
        [("message", "a", ""), ("message", "b", "")],
        S_LINES,
    ),
    Case(
        "lf-then-crlf-is-two-line-ends",
        b"data:a\n\r\ndata:b\n\n",
        [("message", "a", ""), ("message", "b", "")],
        S_LINES,
    ),
    Case(
        "cr-cr-is-two-line-ends",
        b"data:a\r\rdata:b\r\r",
        [("message", "a", ""), ("message", "b", "")],
        S_LINES,
    ),
    Case(
        "crlf-crlf-is-one-blank-line",
        b"data:a\r\n\r\n\r\ndata:b\r\n\r\n",
        [("message", "a", ""), ("message", "b", "")],
        S_LINES,
    ),
    Case(
        "cr-as-blank-line-at-end-dispatches",
        b"data:x\r\r",
        [("message", "x", "")],
        S_LINES,
    ),
    # ---- Comments --------------------------------------------------------------------------
    Case(
        "comment-fest",
        b"data:1\r:\0\n:\r\ndata:2\n:" + LONG + b"\rdata:3\n:data:fail\r:" + LONG + b"\ndata:4\n\n",
        [("message", "1\n2\n3\n4", "")],
        f"{WPT}format-comments.any.js; {S_COMMENT}",
    ),
    Case("comment-only-block", b": test stream\n\n", [], f"{S_COMMENT}; {S_DISPATCH_EMPTY}"),
    Case(
        "comment-inside-block",
        b"data:a\n: not data\n:\ndata:b\n\n",
        [("message", "a\nb", "")],
        S_COMMENT,
    ),
    # ---- Field parsing ---------------------------------------------------------------------
    Case(
        "data-without-colon-is-empty-line",
        b"data\n\n",
        [("message", "", "")],
        f"{S_NO_COLON}; {WPT}format-field-data.any.js",
    ),
    Case(
        "data-field-parsing",
        b"data:\n\ndata\ndata\n\ndata:test\n\n",
        [("message", "", ""), ("message", "\n", ""), ("message", "test", "")],
        f"{WPT}format-field-data.any.js; {S_DATA}; {S_DISPATCH_LF}",
    ),
    Case(
        "one-leading-space-removed",
        b"data:test\n\ndata: test\n\n",
        [("message", "test", ""), ("message", "test", "")],
        f"{S_EXAMPLE_SPACE}; {S_SPACE}",
    ),
    Case("two-spaces-keep-one", b"data:  x\n\n", [("message", " x", "")], S_SPACE),
    Case(
        "tab-not-removed",
        b"data:\ttest\rdata: \ndata:test\n\n",
        [("message", "\ttest\n\ntest", "")],
        f"{WPT}format-leading-space.any.js; {S_SPACE}",
    ),
    Case("trailing-space-kept", b"data:x  \n\n", [("message", "x  ", "")], S_COLON),
    Case(
        "only-first-colon-splits",
        b"data:a:b: c\n\n",
        [("message", "a:b: c", "")],
        S_COLON,
    ),
    Case(
        "unknown-fields-and-parsing-fun",
        b"data:test\n data\ndata\nfoobar:xxx\njustsometext\n:thisisacommentyay\ndata:test\n\n",
        [("message", "test\n\ntest", "")],
        f"{WPT}format-field-unknown.any.js; {S_UNKNOWN}",
    ),
    Case(
        "field-name-lookalikes",
        b"data:\0\ndata:  2\rData:1\ndata\0:2\ndata:1\r\0data:4\nda-ta:3\rdata_5\ndata:3\r"
        b"data:\r\n data:32\ndata:4\n\n",
        [("message", "\0\n 2\n1\n3\n\n4", "")],
        f"{WPT}format-field-parsing.any.js; {S_LITERAL}; {S_UNKNOWN}",
    ),
    Case(
        "field-names-case-sensitive",
        b"Data:x\nDATA:y\nEvent:foo\nID:5\nRetry:9\ndata:z\n\n",
        [("message", "z", "")],
        f"{S_LITERAL}; {WPT}event-data.any.js",
    ),
    Case(
        "lines-and-data-parsing",
        b"data:msg\ndata:msg\n\n:\nfalsefield:msg\n\nfalsefield:msg\nData:data\n\ndata\n\n"
        b"data:end\n\n",
        [("message", "msg\nmsg", ""), ("message", "", ""), ("message", "end", "")],
        f"{WPT}event-data.any.js; {S_BLANK}; {S_NO_COLON}",
    ),
    Case(
        "nul-in-data-kept",
        b"data:\0\n\n",
        [("message", "\0", "")],
        f"{WPT}format-null-character.html; {S_DATA}",
    ),
    Case(
        "line-separators-are-not-line-ends",
        "data:a\u2028b\u2029c\x85d\x0be\x0cf\x1cg\n\n".encode(),
        [("message", "a\u2028b\u2029c\x85d\x0be\x0cf\x1cg", "")],
        S_LINES,
    ),
    # ---- event type ------------------------------------------------------------------------
    Case(
        "custom-event-type-reset-after-dispatch",
        b"event:test\ndata:x\n\ndata:x\n\n",
        [("test", "x", ""), ("message", "x", "")],
        f"{WPT}format-field-event.any.js; {S_DISPATCH_TYPE}",
    ),
    Case(
        "empty-event-field-is-message",
        b"event: \ndata:data\n\n",
        [("message", "data", "")],
        f"{WPT}format-field-event-empty.any.js; {S_DISPATCH_TYPE}",
    ),
    Case(
        "event-type-reset-by-block-without-data",
        b"event:foo\n\ndata:x\n\n",
        [("message", "x", "")],
        S_DISPATCH_EMPTY,
    ),
    Case(
        "last-event-field-wins-and-keeps-case-and-space",
        b"event:a\nevent:  Mixed Case\ndata:x\n\n",
        [(" Mixed Case", "x", "")],
        f"{S_EVENT}; {S_SPACE}; {S_LITERAL}",
    ),
    Case(
        "event-name-without-colon-is-empty",
        b"event:named\nevent\ndata:x\n\n",
        [("message", "x", "")],
        f"{S_NO_COLON}; {S_EVENT}",
    ),
    # ---- Dispatch --------------------------------------------------------------------------
    Case("blank-lines-dispatch-nothing", b"\n\n\r\n\r\r", [], S_DISPATCH_EMPTY),
    Case("empty-stream", b"", [], S_DISPATCH_EMPTY),
    Case(
        "only-one-trailing-lf-removed",
        b"data:a\ndata:\n\n",
        [("message", "a\n", "")],
        S_DISPATCH_LF,
    ),
    Case(
        "empty-data-vs-no-data",
        b"data\n\ndata\ndata\n\ndata:",
        [("message", "", ""), ("message", "\n", "")],
        f"{S_EXAMPLE_EMPTY}; {S_EOF}",
    ),
    Case(
        "single-lf-does-not-dispatch",
        b"data:test\n\ndata: test\n",
        [("message", "test", "")],
        f"{S_EOF}; {S_BLANK}",
    ),
    Case(
        "data-before-final-empty-line-discarded",
        b"retry:1000\ndata:test1\n\nid:test\ndata:test2",
        [("message", "test1", "")],
        f"{WPT}format-data-before-final-empty-line.any.js; {S_EOF}",
        retry=1000,
    ),
    Case(
        "unterminated-block-discarded-on-reconnect",
        (b"data:partial\ndata:more", b"data:x\n\n"),
        [("message", "x", "")],
        S_EOF,
    ),
    Case(
        "unterminated-line-discarded-on-reconnect",
        (b"data:a\n", b"\ndata:b\n\n"),
        [("message", "b", "")],
        S_EOF,
    ),
    Case(
        "spec-example-four-blocks",
        b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\n"
        b"data:  third event\n\n",
        [
            ("message", "first event", "1"),
            ("message", "second event", ""),
            ("message", " third event", ""),
        ],
        S_EXAMPLE_BLOCKS,
    ),
    # ---- id --------------------------------------------------------------------------------
    Case(
        "id-persists",
        b"id: 1\ndata: 1\n\ndata:2\n\n",
        [("message", "1", "1"), ("message", "2", "1")],
        f"{WPT}format-field-id-3.window.js (persists); {S_DISPATCH_ID}",
        last_event_id="1",
    ),
    Case(
        "id-changes-and-persists",
        b"id: 1\ndata: 1\n\nid: 2\ndata:2\n\ndata:3\n\n",
        [("message", "1", "1"), ("message", "2", "2"), ("message", "3", "2")],
        f"{WPT}format-field-id-3.window.js (changes and persists); {S_DISPATCH_ID}",
        last_event_id="2",
    ),
    Case(
        "empty-id-resets",
        b"id: 1\ndata: 1\n\nid:\ndata:2\n\ndata:3\n\n",
        [("message", "1", "1"), ("message", "2", ""), ("message", "3", "")],
        f"{WPT}format-field-id-3.window.js (resets); {S_ID}",
    ),
    Case(
        "id-after-data-in-same-block-applies",
        b"data:x\nid:5\n\n",
        [("message", "x", "5")],
        f"{S_ID}; {S_DISPATCH_ID}",
        last_event_id="5",
    ),
    Case(
        "last-id-field-in-block-wins",
        b"id:1\nid:2\ndata:x\n\n",
        [("message", "x", "2")],
        S_ID,
        last_event_id="2",
    ),
    Case(
        "id-only-block-updates-last-event-id",
        b"id:7\n\n",
        [],
        f"{S_DISPATCH_ID}; {S_DISPATCH_EMPTY}",
        last_event_id="7",
    ),
    Case(
        "id-only-block-then-data",
        b"id:7\n\ndata:x\n\n",
        [("message", "x", "7")],
        f"{S_DISPATCH_ID}; {S_DISPATCH_EMPTY}",
        last_event_id="7",
    ),
    Case(
        "id-value-kept-verbatim",
        b"id:  a b \ndata:x\n\n",
        [("message", "x", " a b ")],
        f"{S_ID}; {S_SPACE}",
        last_event_id=" a b ",
    ),
    Case(
        "id-with-nul-ignored",
        b"id: \0\0\ndata: hello\n\nid: x\0\ndata: hello\n\nid: \0x\ndata: hello\n\n"
        b"id: x\0x\ndata: hello\n\nid: \0\ndata: hello\n\n",
        [("message", "hello", "")] * 5,
        f"{WPT}format-field-id-null.window.js; {S_ID}",
    ),
    Case(
        "id-with-nul-keeps-previous-id",
        b"id:1\ndata:a\n\nid:x\0y\ndata:b\n\n",
        [("message", "a", "1"), ("message", "b", "1")],
        S_ID,
        last_event_id="1",
    ),
    Case(
        "id-with-nul-across-reconnect",
        (b"id: \0\0\nretry: 200\ndata: hello\n\n", b"id: \0\0\nretry: 200\ndata: hello\n\n"),
        [("message", "hello", ""), ("message", "hello", "")],
        f"{WPT}format-field-id-null.window.js; {S_ID}",
        retry=200,
    ),
    Case(
        "unicode-id-kept-across-reconnect",
        (b"id: \xe2\x80\xa6\nretry: 200\ndata: hello\n\n", b"data: \xe2\x80\xa6\n\n"),
        [("message", "hello", "\u2026"), ("message", "\u2026", "\u2026")],
        f"{WPT}format-field-id.any.js; {WPT}format-field-id-2.any.js; {S_DISPATCH_ID}",
        retry=200,
        last_event_id="\u2026",
    ),
    Case(
        "id-of-discarded-block-not-kept",
        (b"id:5\ndata:a\n\nid:6\ndata:b\n", b"data:c\n\n"),
        [("message", "a", "5"), ("message", "c", "5")],
        f"{S_EOF}; {S_DISPATCH_ID}",
        last_event_id="5",
    ),
    # ---- retry -----------------------------------------------------------------------------
    Case("retry-digits", b"retry:1000\ndata:x\n\n", [("message", "x", "")], S_RETRY, retry=1000),
    Case(
        "retry-leading-zeros-are-decimal",
        b"retry:02000\ndata:x\n\n",
        [("message", "x", "")],
        f"{WPT}format-field-retry.any.js; {S_RETRY}",
        retry=2000,
    ),
    Case(
        "retry-bogus-ignored-keeps-previous",
        b"retry:2000\nretry:1000x\ndata:x\n\n",
        [("message", "x", "")],
        f"{WPT}format-field-retry-bogus.any.js; {S_RETRY}",
        retry=2000,
    ),
    Case(
        "retry-empty-ignored",
        b"retry\ndata:test\n\nretry:\nretry: \n\n",
        [("message", "test", "")],
        f"{WPT}format-field-retry-empty.any.js; {S_RETRY}",
    ),
    Case(
        "retry-one-space-removed-then-digits",
        b"retry: 1500\n\n",
        [],
        f"{S_SPACE}; {S_RETRY}",
        retry=1500,
    ),
    Case(
        "retry-with-other-spaces-ignored",
        b"retry:  1500\nretry:1500 \nretry:15 00\nretry:\t1500\n\n",
        [],
        S_RETRY,
    ),
    Case(
        "retry-non-digits-ignored",
        b"retry:-1\nretry:+1\nretry:0x10\nretry:1.5\nretry:1e3\nretry:abc\n\n",
        [],
        S_RETRY,
    ),
    Case(
        "retry-unicode-digits-ignored",
        "retry:\u0661\u0662\u0663\nretry:\u00b2\nretry:\uff11\uff12\nretry:\u096b\n\n".encode(),
        [],
        f"{S_RETRY} (ASCII digits are U+0030 to U+0039 only)",
    ),
    Case(
        "retry-zero-and-last-valid-wins",
        b"retry:100\nretry:0\n\n",
        [],
        S_RETRY,
        retry=0,
    ),
    Case(
        "retry-applies-without-dispatch",
        b"retry:500\n",
        [],
        f"{S_RETRY} (set when the field is processed, not when the event is dispatched)",
        retry=500,
    ),
    Case(
        "retry-unterminated-line-discarded",
        b"retry:500",
        [],
        S_EOF,
    ),
    Case(
        "retry-kept-across-reconnect",
        (b"retry:300\nid:9\ndata:a\n\n", b"data:b\n\n"),
        [("message", "a", "9"), ("message", "b", "9")],
        f"{WPT}format-field-id-2.any.js (retry: 200 then reconnect); {S_RETRY}",
        retry=300,
        last_event_id="9",
    ),
    # ---- UTF-8 -----------------------------------------------------------------------------
    Case(
        "utf8-always",
        b"data:ok\xe2\x80\xa6\n\n",
        [("message", "ok\u2026", "")],
        f"{WPT}format-utf-8.any.js; {S_UTF8}",
    ),
    Case(
        "utf8-four-byte-sequence",
        b"data:\xf0\x9f\x98\x80\xc3\xa9\n\n",
        [("message", "\U0001f600\u00e9", "")],
        S_UTF8,
    ),
    Case(
        "invalid-utf8-replaced",
        b"data:a\xffb\xfe\n\n",
        [("message", "a\ufffdb\ufffd", "")],
        f"{S_UTF8} (WHATWG Encoding: errors become U+FFFD)",
    ),
    Case(
        "truncated-utf8-before-line-end",
        b"data:\xe2\x80\ndata:\xc3\n\n",
        [("message", "\ufffd\n\ufffd", "")],
        f"{S_UTF8} (an incomplete sequence is one U+FFFD)",
    ),
    Case(
        "surrogate-and-overlong-bytes-replaced-per-byte",
        b"data:\xed\xa0\x80|\xf0\x80\x80|\xc0\xaf\n\n",
        [("message", "\ufffd" * 3 + "|" + "\ufffd" * 3 + "|" + "\ufffd" * 2, "")],
        f"{S_UTF8} (WHATWG Encoding UTF-8 decoder: one U+FFFD per maximal invalid subpart)",
    ),
    Case(
        "invalid-utf8-in-field-name-makes-it-unknown",
        b"dat\xffa:x\ndata:y\n\n",
        [("message", "y", "")],
        f"{S_UTF8}; {S_UNKNOWN}",
    ),
    Case(
        "truncated-utf8-at-end-of-connection-discarded",
        (b"data:a\n\ndata:\xe2\x80", b"data:b\n\n"),
        [("message", "a", ""), ("message", "b", "")],
        f"{S_EOF}; {S_UTF8}",
    ),
    Case(
        "event-name-and-nul-kept",
        b"event:caf\xc3\xa9\0\ndata:x\n\n",
        [("caf\u00e9\0", "x", "")],
        f"{S_EVENT}; {S_UTF8}",
    ),
]


# -- Feeding strategies ---------------------------------------------------------------------


def _feed_all(chunks_per_connection: list[list[bytes]]) -> tuple[list[Dispatched], EventParser]:
    parser = EventParser()
    events: list[Dispatched] = []
    for chunks in chunks_per_connection:
        for chunk in chunks:
            got = parser.feed(chunk)
            assert isinstance(got, list)
            for event in got:
                assert isinstance(event, MessageEvent)
                events.append((event.type, event.data, event.last_event_id))
        assert parser.end_of_stream() is None
    return events, parser


def _random_chunks(data: bytes, rng: random.Random) -> list[bytes]:
    chunks = []
    i = 0
    while i < len(data):
        size = rng.choice((1, 1, 2, 3, rng.randint(1, 8), rng.randint(1, 64)))
        chunks.append(data[i : i + size])
        i += size
    if rng.random() < 0.3:  # empty feeds are legal anywhere
        chunks.insert(rng.randint(0, len(chunks)), b"")
    return chunks


def _chunkings(case: Case) -> Iterator[tuple[str, list[list[bytes]]]]:
    conns = case.connections
    yield "whole", [[c] for c in conns]
    yield "byte-by-byte", [[c[i : i + 1] for i in range(len(c))] for c in conns]
    for seed in range(8):
        rng = random.Random(f"{case.name}/{seed}")
        yield f"random-{seed}", [_random_chunks(c, rng) for c in conns]
    # Every two-way split of each connection (the others fed whole): catches a CRLF, a BOM or
    # a UTF-8 sequence cut at any boundary.  Sampled for the long cases to keep the suite fast.
    for index, conn in enumerate(conns):
        points = range(len(conn) + 1)
        if len(conn) > 200:
            points = sorted(random.Random(case.name).sample(points, 200))
        for point in points:
            split = [[c] for c in conns]
            split[index] = [conn[:point], conn[point:]]
            yield f"split-{index}-{point}", split


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_conformance(case: Case) -> None:
    for how, chunks in _chunkings(case):
        events, parser = _feed_all(chunks)
        assert events == case.events, how
        assert parser.retry == case.retry, how
        assert parser.last_event_id == case.last_event_id, how


def test_table_is_large_named_uniquely_and_cited() -> None:
    assert len(CASES) >= 40
    names = [case.name for case in CASES]
    assert len(names) == len(set(names))
    for case in CASES:
        assert case.source.startswith((SPEC, WPT)), case.name
        assert case.events == [tuple(e) for e in case.events]


# -- Incremental behaviour the table cannot show --------------------------------------------


def test_events_are_returned_by_the_feed_that_completes_them() -> None:
    parser = EventParser()
    assert parser.feed(b"data:a\n") == []
    assert parser.feed(b"\n") == [MessageEvent("message", "a", "")]
    assert parser.feed(b"data:b\n\ndata:c\n\ndata:d") == [
        MessageEvent("message", "b", ""),
        MessageEvent("message", "c", ""),
    ]
    assert parser.feed(b"\n\n") == [MessageEvent("message", "d", "")]


def test_cr_blank_line_dispatches_without_waiting_for_a_possible_lf() -> None:
    parser = EventParser()
    assert parser.feed(b"data:a\r") == []
    assert parser.feed(b"\r") == [MessageEvent("message", "a", "")]
    # The LF that then arrives completes that CRLF.
    assert parser.feed(b"\ndata:b\r\n\r\n") == [MessageEvent("message", "b", "")]


def test_cr_at_end_of_feed_and_lf_at_start_of_next_are_one_line_end() -> None:
    parser = EventParser()
    assert parser.feed(b"data:a\r") == []
    assert parser.feed(b"\ndata:b\r") == []
    assert parser.feed(b"\n\r") == [MessageEvent("message", "a\nb", "")]
    assert parser.feed(b"\n") == []
    assert parser.feed(b"\n") == []  # a real blank line, but nothing is buffered


def test_cr_then_empty_feeds_then_lf() -> None:
    parser = EventParser()
    assert parser.feed(b"data:a\r") == []
    assert parser.feed(b"") == []
    assert parser.feed(b"\n") == []  # completes the CRLF: not a blank line
    assert parser.feed(b"data:\xe2") == []
    assert parser.feed(b"\x80\xa6\r") == []  # the UTF-8 sequence completes, then a CR
    assert parser.feed(b"") == []
    assert parser.feed(b"\n\r\n") == [MessageEvent("message", "a\n\u2026", "")]


def test_bom_split_across_feeds() -> None:
    parser = EventParser()
    assert parser.feed(b"\xef") == []
    assert parser.feed(b"\xbb") == []
    assert parser.feed(b"\xbf") == []
    assert parser.feed(b"data:1\n\n") == [MessageEvent("message", "1", "")]
    assert parser.feed(b"\xef\xbb") == []
    assert parser.feed(b"\xbfdata:2\n\ndata:3\n\n") == [MessageEvent("message", "3", "")]


def test_utf8_sequence_split_across_feeds() -> None:
    parser = EventParser()
    encoded = "data:\u00e9\u2026\U0001f600\n\n".encode()
    events = []
    for i in range(len(encoded)):
        events += parser.feed(encoded[i : i + 1])
    assert events == [MessageEvent("message", "\u00e9\u2026\U0001f600", "")]


def test_end_of_stream_after_cr_starts_cleanly() -> None:
    parser = EventParser()
    assert parser.feed(b"data:a\n\r") == [MessageEvent("message", "a", "")]
    assert parser.feed(b"data:lost\r") == []
    parser.end_of_stream()
    assert parser.feed(b"\ndata:b\n\n") == [MessageEvent("message", "b", "")]


def test_initial_last_event_id() -> None:
    parser = EventParser(last_event_id="resume-7")
    assert parser.last_event_id == "resume-7"
    assert parser.retry is None
    assert parser.feed(b"data:x\n\n") == [MessageEvent("message", "x", "resume-7")]
    assert parser.feed(b"id\ndata:y\n\n") == [MessageEvent("message", "y", "")]
    assert parser.last_event_id == ""


def test_last_event_id_attribute_updates_at_dispatch_not_at_the_id_line() -> None:
    parser = EventParser()
    parser.feed(b"id:1\n")
    assert parser.last_event_id == ""
    parser.feed(b"\n")
    assert parser.last_event_id == "1"


def test_end_of_stream_is_idempotent_and_keeps_state() -> None:
    parser = EventParser()
    parser.feed(b"id:4\nretry:10\n\n")
    parser.end_of_stream()
    parser.end_of_stream()
    assert (parser.last_event_id, parser.retry) == ("4", 10)
    assert parser.feed(b"data:x\n\n") == [MessageEvent("message", "x", "4")]


def test_message_event_json_and_immutability() -> None:
    event = EventParser().feed(b'data: {"a": [1, 2]}\ndata: \n\n')[0]
    assert event.json() == {"a": [1, 2]}
    with pytest.raises(AttributeError):
        event.data = "x"  # type: ignore[misc]
    assert event == MessageEvent(type="message", data='{"a": [1, 2]}\n', last_event_id="")


def test_retry_longer_than_python_int_limit_is_ignored_without_error() -> None:
    parser = EventParser()
    assert parser.feed(b"retry:" + b"9" * 5000 + b"\ndata:x\n\n") == [
        MessageEvent("message", "x", "")
    ]
    assert parser.retry is None
    parser.feed(b"retry:" + b"1" * 100 + b"\n")
    assert parser.retry == int("1" * 100)
