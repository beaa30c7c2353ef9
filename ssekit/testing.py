"""Helpers for testing endless streams: read a few events, with a deadline, never hang.

`read_events(source, n)` and `aread_events(source, n)` accept an `SSEStream`, any iterable or async
iterable of bytes, or an httpx response opened with `stream=True`/`client.stream(...)`.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterable, Iterable
from typing import Any

from ssekit._parse import EventParser, MessageEvent

__all__ = ["aread_events", "read_events"]


def _byte_iterable(source: Any) -> Iterable[bytes]:
    iter_bytes = getattr(source, "iter_bytes", None)  # an httpx.Response
    if callable(iter_bytes):
        return iter_bytes()  # type: ignore[no-any-return]
    if isinstance(source, Iterable):
        return source
    raise TypeError(f"read_events() needs bytes to read, not {type(source).__name__}.")


def read_events(source: Any, n: int, *, timeout: float = 5.0) -> list[MessageEvent]:
    """Return the first `n` events of `source`; raise `TimeoutError` after `timeout` seconds.

    The bytes are read in a helper thread so a silent stream cannot block the caller; once `n`
    events (or the timeout, or the end) arrive, the source is closed if it can be.
    """
    results: queue.Queue[tuple[str, Any]] = queue.Queue()
    stop = threading.Event()
    iterable = _byte_iterable(source)  # here, so a TypeError reaches the caller at once

    def reader() -> None:
        parser = EventParser()
        events: list[MessageEvent] = []
        try:
            for chunk in iterable:
                events.extend(parser.feed(chunk))
                if len(events) >= n or stop.is_set():
                    break
            results.put(("events", events[:n]))
        except BaseException as exc:
            results.put(("error", exc))
        finally:
            close = getattr(iterable, "close", None)
            if callable(close):
                close()

    thread = threading.Thread(target=reader, name="ssekit-test-reader", daemon=True)
    thread.start()
    try:
        kind, value = results.get(timeout=timeout)
    except queue.Empty:
        stop.set()
        raise TimeoutError(f"Fewer than {n} events arrived within {timeout} seconds.") from None
    if kind == "error":
        raise value
    if len(value) < n:
        raise AssertionError(f"The stream ended after {len(value)} of {n} events: {value!r}")
    return value  # type: ignore[no-any-return]


async def aread_events(source: Any, n: int, *, timeout: float = 5.0) -> list[MessageEvent]:
    """Async twin of `read_events()`: await the first `n` events, at most `timeout` seconds."""
    aiter_bytes = getattr(source, "aiter_bytes", None)
    iterable: AsyncIterable[bytes] = aiter_bytes() if callable(aiter_bytes) else source
    if not isinstance(iterable, AsyncIterable):
        raise TypeError(f"aread_events() needs async bytes, not {type(source).__name__}.")
    parser = EventParser()
    events: list[MessageEvent] = []
    iterator = aiter(iterable)

    async def read() -> None:
        async for chunk in iterator:
            events.extend(parser.feed(chunk))
            if len(events) >= n:
                return

    try:
        await asyncio.wait_for(read(), timeout)
    except asyncio.TimeoutError:
        raise TimeoutError(f"Fewer than {n} events arrived within {timeout} seconds.") from None
    finally:
        aclose = getattr(iterator, "aclose", None)
        if callable(aclose):
            await aclose()
    if len(events) < n:
        raise AssertionError(f"The stream ended after {len(events)} of {n} events: {events!r}")
    return events[:n]
