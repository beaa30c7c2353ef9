"""Free ports and polling: the one way tests wait for something that happens elsewhere."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

#: How long a test waits for something that should happen soon (far more than it needs).
DEADLINE = 10.0
#: How often `wait_until` looks again.
POLL_INTERVAL = 0.01


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until(condition: Callable[[], Any], what: str = "", *, timeout: float = DEADLINE) -> None:
    """Poll `condition` until it is true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what or condition}")
        time.sleep(POLL_INTERVAL)
