"""Benchmark ssekit's wire codec against sse-starlette (encoding) and httpx-sse (parsing).

Every row is measured in this one process, on the same data, with `timeit` (best of N repeats;
the garbage collector is off while timing, as `timeit` does by default).  Run it from the
repository root after installing the peers, which only the `bench` extra pulls in:

    pip install -e '.[bench]'
    python benchmarks/bench_codec.py            # full run, best of 5
    python benchmarks/bench_codec.py --quick    # shortened run, best of 3

It prints a table and PASS/FAIL lines for the speed targets.  It is a report, not a test: the exit
code is 0 whichever way the targets go.  A peer that is not installed shows as "n/a".
"""

from __future__ import annotations

import argparse
import codecs
import importlib.metadata
import platform
import timeit
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import ssekit
from ssekit import Event, EventParser
from ssekit._event import encode_data

TOKEN = "Hello, world token!"  # a typical streamed LLM token chunk (19 characters)
LINE = ("The quick brown fox jumps over the lazy dog, " * 5)[:199] + "."  # one 200-char line
CHUNK_SIZE = 64 * 1024

Parse = Callable[[Sequence[bytes]], list[Any]]


@dataclass(frozen=True)
class Settings:
    repeat: int  # timed runs per row; the best one is reported
    seconds: float  # minimum duration of one timed run of an encode row
    events: int  # events in the parse streams


FULL = Settings(repeat=5, seconds=0.2, events=200_000)
QUICK = Settings(repeat=3, seconds=0.05, events=50_000)


@dataclass(frozen=True)
class Row:
    label: str
    per_second: float | None  # None: the peer is not installed
    baseline: str | None = None  # label of the row this one is compared with


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


def _ssekit_parse(chunks: Sequence[bytes]) -> list[Any]:
    parser = EventParser()
    events: list[Any] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events


# --- measuring -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    label: str
    timer: timeit.Timer | None  # None: the peer is not installed
    baseline: str  # label of the case this one is compared with
    events_per_call: int = 1  # events one execution of the timed statement handles


def _calibrate(timer: timeit.Timer, seconds: float) -> int:
    """How many loops of `timer` last at least `seconds`."""
    number = 1
    while (elapsed := timer.timeit(number)) < seconds / 4:
        number *= 4
    return max(number, int(number * seconds / elapsed))


def _measure(cases: list[Case], settings: Settings, seconds: float) -> list[Row]:
    """Best rate of each case over `settings.repeat` rounds.

    The cases take turns within each round, so a slow spell on a shared machine hits all of them
    rather than one, and the ratios between them stay meaningful.
    """
    numbers = {c.label: _calibrate(c.timer, seconds) for c in cases if c.timer is not None}
    best = dict.fromkeys(numbers, float("inf"))
    for _ in range(settings.repeat):
        for case in cases:
            if case.timer is not None:
                elapsed = case.timer.timeit(numbers[case.label])
                best[case.label] = min(best[case.label], elapsed)
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


# --- the report ------------------------------------------------------------------------------


def _print_table(title: str, rows: list[Row], unit: float, unit_name: str, versus: str) -> None:
    rates = {row.label: row.per_second for row in rows}
    width = max(len(row.label) for row in rows)
    print(f"\n{title}")
    print(f"  {'case':<{width}}  {unit_name:>10}  {'ns/event':>9}  {'vs ' + versus:>16}")
    for row in rows:
        if row.per_second is None:
            print(f"  {row.label:<{width}}  {'n/a':>10}  {'n/a':>9}  {'n/a':>16}")
            continue
        base = rates.get(row.baseline or "")
        ratio = f"{row.per_second / base:.2f}x" if base else "n/a"
        print(
            f"  {row.label:<{width}}  {row.per_second / unit:>10.2f}  "
            f"{1e9 / row.per_second:>9.0f}  {ratio:>16}"
        )


def _ratio(rows: list[Row], label: str, baseline: str) -> float | None:
    rates = {row.label: row.per_second for row in rows}
    ours, theirs = rates.get(label), rates.get(baseline)
    return ours / theirs if ours and theirs else None


def main(argv: Sequence[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    cli.add_argument("--quick", action="store_true", help="shorter runs, best of 3")
    settings = QUICK if cli.parse_args(argv).quick else FULL

    _check_outputs()
    orjson = _version("orjson")
    peers = {name: _version(name) or "not installed" for name in ("sse-starlette", "httpx-sse")}
    print(
        f"ssekit {ssekit.__version__} codec benchmark "
        f"({'quick' if settings is QUICK else 'full'} run: best of {settings.repeat})"
    )
    print(
        f"Python {platform.python_version()} ({platform.python_implementation()}) "
        f"on {platform.system()} {platform.machine()}"
    )
    print(f"orjson: {orjson + ' installed' if orjson else 'not installed'} (no row below uses it)")
    print("peers: " + ", ".join(f"{name} {version}" for name, version in peers.items()))

    targets: list[tuple[str, float | None, float]] = []
    for text, name in ((TOKEN, f"{len(TOKEN)}-char token"), (LINE, f"{len(LINE)}-char line")):
        rows = _encode_rows(text, settings)
        _print_table(f"Encode, one {name}", rows, 1e6, "M events/s", "sse-starlette")
        peer = rows[3].label
        targets += [
            (f"hot path encode_data(), {name}", _ratio(rows, rows[1].label, peer), 8.0),
            (f"Event(data=text).encode(), {name}", _ratio(rows, rows[2].label, peer), 2.0),
            (
                f'Event(data=text, event="tick", id="42").encode(), {name}',
                _ratio(rows, rows[4].label, rows[5].label),
                2.0,
            ),
        ]

    for with_fields, shape in ((False, "data: lines only"), (True, "event: + id: + data:")):
        stream = _stream(settings.events, with_fields)
        chunks = _chunked(stream)
        _print_table(
            f"Parse, {settings.events:,} events ({shape}, {len(stream) / 1e6:.1f} MB) "
            f"fed in {CHUNK_SIZE // 1024} KiB chunks",
            _parse_rows(chunks, settings),
            1e6,
            "M events/s",
            "httpx-sse",
        )

    print("\nTargets (ratio against sse-starlette's ServerSentEvent(...).encode() on the same text)")
    for label, ratio, goal in targets:
        if ratio is None:
            print(f"  SKIP  {label}: sse-starlette not installed (pip install -e '.[bench]')")
        else:
            verdict = "PASS" if ratio >= goal else "FAIL"
            print(f"  {verdict}  {label}: {ratio:.2f}x (target >= {goal:g}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
