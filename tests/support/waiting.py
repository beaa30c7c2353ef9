"""Free ports and polling: the one way tests wait for something that happens elsewhere."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any

import httpx

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


def wait_healthy(
    process: subprocess.Popen[bytes], url: str, name: str, log: Callable[[], str], timeout: float
) -> None:
    """Poll `url` until it answers 200; fail with `log()` if `process` exits or `timeout`
    seconds pass first."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited early:\n{log()}")
            with contextlib.suppress(httpx.TransportError):
                if client.get(url).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start in {timeout} s:\n{log()}")
            time.sleep(0.02)
