"""Shared fixtures: every test must leave no thread of its own running.

Streams start worker threads (sync sources) and helper-loop threads (async sources served to a
sync consumer); when a stream ends or is closed those threads must end too.  The autouse fixture
below joins every thread a test started, with a deadline, and fails the test if one is still
alive.  A test that knowingly leaves a thread behind says so with `@pytest.mark.allow_thread_leak`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

#: How long threads started by a test get to finish once it is over (generous: loaded CI).
THREAD_DEADLINE = 10.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "allow_thread_leak: the test may leave threads running when it ends"
    )


def _threads_left(before: set[threading.Thread], deadline_seconds: float) -> list[threading.Thread]:
    """Join every thread not in `before` (all within one deadline); return those still alive."""
    deadline = time.monotonic() + deadline_seconds
    current = threading.current_thread()
    for thread in threading.enumerate():
        if thread in before or thread is current:
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
    return [t for t in threading.enumerate() if t not in before and t.is_alive()]


@pytest.fixture(autouse=True)
def no_thread_leak(request: pytest.FixtureRequest) -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    if request.node.get_closest_marker("allow_thread_leak"):
        return
    left = _threads_left(before, THREAD_DEADLINE)
    assert not left, f"threads still running {THREAD_DEADLINE} s after the test: {left}"


@pytest.fixture
def threads_back() -> Callable[[], None]:
    """Call it to assert (joining with a deadline) that the thread count is back where it began."""
    before = set(threading.enumerate())
    start_count = len(before)

    def check() -> None:
        left = _threads_left(before, THREAD_DEADLINE)
        assert not left, f"threads still running: {left}"
        assert threading.active_count() == start_count

    return check
