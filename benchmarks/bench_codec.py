"""Benchmark ssekit's wire codec against sse-starlette (encoding) and httpx-sse (parsing).

Every row is measured in this one process, on the same data, with `timeit` (best of N rounds;
the garbage collector is off while timing, as `timeit` does by default).  Run it from the
repository root after installing the peers, which only the `bench` extra pulls in:

    pip install -e '.[bench]'
    python benchmarks/bench_codec.py            # full run, best of 20 rounds (about a minute)
    python benchmarks/bench_codec.py --quick    # shortened run, best of 5 rounds

    # the same, with an older ssekit's codec timed beside this one, in the same run
    git worktree add ../ssekit-base <commit>   # or: git archive <commit> ssekit | tar -x -C DIR
    python benchmarks/bench_codec.py --baseline ../ssekit-base

It prints a table and PASS/FAIL lines for the speed targets.  It is a report, not a test: the exit
code is 0 whichever way the targets go.  A peer that is not installed shows as "n/a".
"""

from __future__ import annotations

import argparse
import codecs
import importlib.metadata
import importlib.util
import platform
import sys
import time
import timeit
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import ssekit
from ssekit import Event, EventParser, ParseLimitExceeded
from ssekit._event import encode_data

TOKEN = "Hello, world token!"  # a typical streamed LLM token chunk (19 characters)
LINE = ("The quick brown fox jumps over the lazy dog, " * 5)[:199] + "."  # one 200-char line
CHUNK_SIZE = 64 * 1024

Parse = Callable[[Sequence[bytes]], list[Any]]


@dataclass(frozen=True)
class Settings:
    repeat: int  # timed rounds; each row reports its best
    seconds: float  # minimum duration of one timed run of an encode row
    events: int  # events in each parse stream


# Many short rounds rather than a few long ones: on a shared (virtual) machine the slow spells
# come and go within seconds, and the best of many short runs finds the quiet moments.
FULL = Settings(repeat=20, seconds=0.05, events=200_000)
QUICK = Settings(repeat=5, seconds=0.02, events=50_000)

# Row labels, which are also the code each row times.
FLOOR = 'f"data: {text}\\n\\n".encode()  [floor]'
HOT_PATH = "ssekit encode_data(text)  [hot path]"
EVENT = "ssekit Event(data=text).encode()"
EVENT_TICK = 'ssekit Event(data=text, event="tick", id="42").encode()'
PEER = "sse-starlette ServerSentEvent(data=text).encode()"
PEER_TICK = 'sse-starlette ServerSentEvent(data=text, event="tick", id="42").encode()'
PARSER = "ssekit EventParser().feed(chunk)"
PEER_PARSER = "httpx-sse SSELineDecoder + SSEDecoder"
BASE = "baseline "  # prefix of the rows of the older codec given with --baseline

#: The unterminated lines of the long-line rows, in MB, fed in pieces of LONG_PIECE bytes.
LONG_LINE_MB = (1, 4, 16)
LONG_PIECE = 4096
#: The baseline's long-line rows are timed once (not best of N) from this size up: a quadratic
#: parser takes seconds there.
LONG_ONCE_MB = 16


@dataclass(frozen=True)
class Case:
    label: str
    timer: timeit.Timer | None  # None: the peer is not installed
    baseline: str  # label of the case this one is compared with
    events_per_call: int = 1  # events one execution of the timed statement handles
    number: int | None = None  # executions per timed run; None: enough to last `seconds`


@dataclass(frozen=True)
class Row:
    label: str
    per_second: float | None  # None: the peer is not installed
    baseline: str


# --- peers -----------------------------------------------------------------------------------


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _sse_starlette_event() -> type[Any] | None:
    """sse-starlette's `ServerSentEvent`, the object its `EventSourceResponse` encodes."""
    try:
        from sse_starlette import ServerSentEvent
    except ImportError:
        return None
    return ServerSentEvent


def _httpx_sse_parse() -> Parse | None:
    """httpx-sse's decoding stage, driven as `EventSource.iter_sse()` drives it, minus httpx.

    `iter_sse()` decodes the response bytes to text incrementally (UTF-8, errors replaced, as
    httpx's text decoder does), splits the text with `SSELineDecoder` and hands each line to
    `SSEDecoder`.  The generator layers between those steps are left out, which only helps it.
    """
    try:
        from httpx_sse._decoders import SSEDecoder, SSELineDecoder
    except ImportError:
        return None

    def parse(chunks: Sequence[bytes]) -> list[Any]:
        text_decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        line_decoder = SSELineDecoder()
        decoder = SSEDecoder()
        events = []
        for chunk in chunks:
            text = text_decoder.decode(chunk)
            if text:
                for line in line_decoder.decode(text):
                    event = decoder.decode(line)
                    if event is not None:
                        events.append(event)
        for line in line_decoder.flush():
            event = decoder.decode(line)
            if event is not None:
                events.append(event)
        return events

    return parse


def _ssekit_parse(chunks: Sequence[bytes], parser_class: Any = EventParser) -> list[Any]:
    parser = parser_class()
    events: list[Any] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events


# --- measuring -------------------------------------------------------------------------------


def _calibrate(timer: timeit.Timer, seconds: float) -> int:
    """How many executions of `timer`'s statement last at least `seconds` (also a warm-up)."""
    number = 1
    while (elapsed := timer.timeit(number)) < seconds / 4:
        number *= 4
    return max(number, int(number * seconds / elapsed))


def _measure(cases: list[Case], settings: Settings) -> list[Row]:
    """Best rate of each case over `settings.repeat` rounds.

    The cases take turns within each round, so a slow spell on a shared machine slows all of them
    rather than one, and the ratios between them stay meaningful.
    """
    numbers: dict[str, int] = {}
    for case in cases:
        if case.timer is not None:
            if case.number is None:
                numbers[case.label] = _calibrate(case.timer, settings.seconds)
            else:
                case.timer.timeit(1)  # warm-up
                numbers[case.label] = case.number
    best = dict.fromkeys(numbers, float("inf"))
    for _ in range(settings.repeat):
        for case in cases:
            if case.timer is not None:
                best[case.label] = min(best[case.label], case.timer.timeit(numbers[case.label]))
    return [
        Row(
            case.label,
            None
            if case.timer is None
            else numbers[case.label] * case.events_per_call / best[case.label],
            case.baseline,
        )
        for case in cases
    ]


# --- the benchmark ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Baseline:
    """An older ssekit's wire codec, loaded from its source files beside the current one."""

    event: ModuleType  # its ssekit/_event.py
    parse: ModuleType  # its ssekit/_parse.py


def _load_baseline(root: Path) -> Baseline:
    """Load `root/ssekit/_event.py` and `_parse.py` as modules of their own.

    Both are self-contained in the versions this is meant for (they import nothing else of
    ssekit's, or only `ssekit._errors`, which is taken from the current ssekit).
    """
    modules = []
    for name in ("_event", "_parse"):
        path = root / "ssekit" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"ssekit_baseline{name}", path)
        if spec is None or spec.loader is None:
            raise SystemExit(f"--baseline: cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while it runs
        spec.loader.exec_module(module)
        modules.append(module)
    return Baseline(*modules)


def _encode_cases(text: str, baseline: Baseline | None) -> list[Case]:
    sse_event = _sse_starlette_event()
    namespace: dict[str, Any] = {
        "text": text,
        "encode_data": encode_data,
        "Event": Event,
        "ServerSentEvent": sse_event,
        "base_encode_data": None if baseline is None else baseline.event.encode_data,
        "BaseEvent": None if baseline is None else baseline.event.Event,
    }

    def timer(stmt: str, needs_peer: bool = False) -> timeit.Timer | None:
        if needs_peer and sse_event is None:
            return None
        return timeit.Timer(stmt, globals=namespace)

    tick = 'data=text, event="tick", id="42"'
    cases = [
        Case(FLOOR, timer('f"data: {text}\\n\\n".encode()'), PEER),
        Case(HOT_PATH, timer("encode_data(text)"), PEER),
        Case(EVENT, timer("Event(data=text).encode()"), PEER),
        Case(PEER, timer("ServerSentEvent(data=text).encode()", needs_peer=True), PEER),
        Case(EVENT_TICK, timer(f"Event({tick}).encode()"), PEER_TICK),
        Case(PEER_TICK, timer(f"ServerSentEvent({tick}).encode()", needs_peer=True), PEER_TICK),
    ]
    if baseline is not None:
        cases[2:2] = [Case(BASE + HOT_PATH, timer("base_encode_data(text)"), PEER)]
        cases[4:4] = [Case(BASE + EVENT, timer("BaseEvent(data=text).encode()"), PEER)]
        cases[7:7] = [Case(BASE + EVENT_TICK, timer(f"BaseEvent({tick}).encode()"), PEER_TICK)]
    return cases


def _stream(events: int, with_fields: bool) -> bytes:
    if with_fields:
        return b"".join(b"event: tick\nid: %d\ndata: token %d\n\n" % (i, i) for i in range(events))
    return b"".join(b"data: token %d\n\n" % i for i in range(events))


def _parse_cases(stream: bytes, events: int, baseline: Baseline | None) -> list[Case]:
    chunks = [stream[i : i + CHUNK_SIZE] for i in range(0, len(stream), CHUNK_SIZE)]
    ours = _ssekit_parse(chunks)
    if len(ours) != events:
        raise SystemExit(f"ssekit parsed {len(ours)} events out of {events}")
    peer_parse = _httpx_sse_parse()
    peer_timer = None
    if peer_parse is not None:
        theirs = [(e.event, e.data, e.id) for e in peer_parse(chunks)]
        if theirs != [(e.type, e.data, e.last_event_id) for e in ours]:
            raise SystemExit("ssekit and httpx-sse disagree on the benchmark stream")
        peer_timer = timeit.Timer(lambda: peer_parse(chunks))
    cases = [
        Case(PARSER, timeit.Timer(lambda: _ssekit_parse(chunks)), PEER_PARSER, events, 1),
        Case(PEER_PARSER, peer_timer, PEER_PARSER, events, 1),
    ]
    if baseline is not None:
        old_parser = baseline.parse.EventParser

        def base_parse() -> list[Any]:
            return _ssekit_parse(chunks, old_parser)

        fields = [(e.type, e.data, e.last_event_id) for e in ours]
        if [(e.type, e.data, e.last_event_id) for e in base_parse()] != fields:
            raise SystemExit("ssekit and the baseline disagree on the benchmark stream")
        cases.insert(1, Case(BASE + PARSER, timeit.Timer(base_parse), PEER_PARSER, events, 1))
    return cases


def _feed_long_line(make_parser: Callable[[], Any], size: int) -> tuple[float, int]:
    """Seconds to feed one unterminated `data:` line of `size` bytes in LONG_PIECE pieces, and
    how many bytes were fed before the parser refused the line (`size` if it did not)."""
    piece = b"x" * LONG_PIECE
    pieces = size // LONG_PIECE
    parser = make_parser()
    fed = 0
    start = time.perf_counter()
    try:
        parser.feed(b"data: ")
        for _ in range(pieces):
            parser.feed(piece)
            fed += LONG_PIECE
    except ParseLimitExceeded:
        pass
    return time.perf_counter() - start, fed


def _long_line_rows(settings: Settings, baseline: Baseline | None) -> None:
    """Time unterminated lines of LONG_LINE_MB sizes: linear now, quadratic before."""
    rounds = min(settings.repeat, 3)
    parsers: list[tuple[str, Callable[[], Any]]] = [
        ("ssekit EventParser(max_line_size=None)", lambda: EventParser(max_line_size=None)),
        ("ssekit EventParser()  [default limits]", EventParser),
    ]
    if baseline is not None:
        parsers.append((BASE + "EventParser()", baseline.parse.EventParser))
    width = max(len(label) for label, _ in parsers)
    print(
        f"\nParse one unterminated line fed in {LONG_PIECE // 1024} KiB pieces (best of {rounds})"
    )
    print(f"  {'case':<{width}}  {'MB':>3}  {'ms':>9}  {'MB/s':>7}  {'fed MB':>6}")
    for label, make_parser in parsers:
        for megabytes in LONG_LINE_MB:
            size = megabytes * 1024 * 1024
            once = label.startswith(BASE) and megabytes >= LONG_ONCE_MB
            results = [_feed_long_line(make_parser, size) for _ in range(1 if once else rounds)]
            seconds, fed = min(results)
            note = "  (timed once)" if once else ""
            print(
                f"  {label:<{width}}  {megabytes:>3}  {seconds * 1e3:>9.1f}  "
                f"{fed / 1e6 / seconds:>7.0f}  {fed / 2**20:>6.1f}{note}"
            )


def _check_outputs() -> None:
    """Refuse to time anything that does not produce the bytes it should."""
    sse_event = _sse_starlette_event()
    for text in (TOKEN, LINE):
        plain = f"data: {text}\n\n".encode()
        tick = f"event: tick\nid: 42\ndata: {text}\n\n".encode()
        if encode_data(text) != plain or Event(data=text).encode() != plain:
            raise SystemExit(f"ssekit encodes {text!r} wrongly")
        if Event(data=text, event="tick", id="42").encode() != tick:
            raise SystemExit(f"ssekit encodes {text!r} with event and id wrongly")
        if sse_event is not None:
            # sse-starlette ends lines with CRLF by default: other bytes, the same events.
            for ours, theirs in (
                (plain, sse_event(data=text).encode()),
                (tick, sse_event(data=text, event="tick", id="42").encode()),
            ):
                if EventParser().feed(ours) != EventParser().feed(theirs):
                    raise SystemExit(f"sse-starlette encodes {text!r} to another event")


# --- the report ------------------------------------------------------------------------------


def _print_table(title: str, rows: list[Row], versus: str) -> None:
    rates = {row.label: row.per_second for row in rows}
    width = max(len(row.label) for row in rows)
    print(f"\n{title}")
    print(f"  {'case':<{width}}  {'M events/s':>10}  {'ns/event':>8}  {'vs ' + versus:>16}")
    for row in rows:
        if row.per_second is None:
            print(f"  {row.label:<{width}}  {'n/a':>10}  {'n/a':>8}  {'n/a':>16}")
            continue
        base = rates.get(row.baseline)
        ratio = f"{row.per_second / base:.2f}x" if base else "n/a"
        print(
            f"  {row.label:<{width}}  {row.per_second / 1e6:>10.2f}  "
            f"{1e9 / row.per_second:>8.0f}  {ratio:>16}"
        )


def _ratio(rows: list[Row], label: str, baseline: str) -> float | None:
    rates = {row.label: row.per_second for row in rows}
    ours, theirs = rates[label], rates[baseline]
    return ours / theirs if ours and theirs else None


def main(argv: Sequence[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description="Benchmark ssekit's wire codec against its peers.")
    cli.add_argument("--quick", action="store_true", help="shorter runs, best of 5 rounds")
    cli.add_argument(
        "--baseline",
        type=Path,
        metavar="DIR",
        help="a checkout of an older ssekit: time its codec beside this one's",
    )
    args = cli.parse_args(argv)
    settings = QUICK if args.quick else FULL
    baseline = None if args.baseline is None else _load_baseline(args.baseline)

    _check_outputs()
    orjson = _version("orjson")
    peers = {name: _version(name) or "not installed" for name in ("sse-starlette", "httpx-sse")}
    run = "quick" if settings is QUICK else "full"
    print(f"ssekit {ssekit.__version__} codec benchmark ({run} run: best of {settings.repeat})")
    print(
        f"Python {platform.python_version()} ({platform.python_implementation()}) "
        f"on {platform.system()} {platform.machine()}"
    )
    print(f"orjson: {orjson + ' installed' if orjson else 'not installed'} (no row below uses it)")
    print("peers: " + ", ".join(f"{name} {version}" for name, version in peers.items()))
    if args.baseline is not None:
        print(f"baseline: the codec of the ssekit checkout at {args.baseline}")

    targets: list[tuple[str, float | None, float]] = []
    against_base: list[tuple[str, float | None, float]] = []
    for text in (TOKEN, LINE):
        name = f"{len(text)}-char " + ("token" if text is TOKEN else "line")
        rows = _measure(_encode_cases(text, baseline), settings)
        _print_table(f"Encode one event, data = one {name}", rows, "sse-starlette")
        targets += [
            (f"hot path encode_data(), {name}", _ratio(rows, HOT_PATH, PEER), 8.0),
            (f"Event(data=text).encode(), {name}", _ratio(rows, EVENT, PEER), 2.0),
            (
                f"Event(data=text, event, id).encode(), {name}",
                _ratio(rows, EVENT_TICK, PEER_TICK),
                2.0,
            ),
        ]
        if baseline is not None:
            against_base += [
                (f"{label}, {name}", _ratio(rows, label, BASE + label), 0.9)
                for label in (HOT_PATH, EVENT, EVENT_TICK)
            ]

    for with_fields, shape in ((False, "data: lines only"), (True, "event: + id: + data:")):
        stream = _stream(settings.events, with_fields)
        rows = _measure(_parse_cases(stream, settings.events, baseline), settings)
        if baseline is not None:
            against_base.append((f"{PARSER}, {shape}", _ratio(rows, PARSER, BASE + PARSER), 0.9))
        _print_table(
            f"Parse {settings.events:,} events ({shape}, {len(stream) / 1e6:.1f} MB) "
            f"fed in {CHUNK_SIZE // 1024} KiB chunks",
            rows,
            "httpx-sse",
        )
    _long_line_rows(settings, baseline)

    print("\nTargets (ssekit against sse-starlette's ServerSentEvent(...).encode(), same event)")
    for label, ratio, goal in targets:
        if ratio is None:
            print(f"  SKIP  {label}: sse-starlette is not installed (pip install -e '.[bench]')")
        else:
            verdict = "PASS" if ratio >= goal else "FAIL"
            print(f"  {verdict}  {label}: {ratio:.2f}x (target >= {goal:g}x)")
    if against_base:
        print("\nTargets (ssekit against the baseline's same row: within 10% of its rate)")
        for label, ratio, goal in against_base:
            verdict = "PASS" if ratio is not None and ratio >= goal else "FAIL"
            print(f"  {verdict}  {label}: {ratio or 0:.2f}x (target >= {goal:g}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
