"""Subprocesses the end-to-end tests run: stopping one, and the broker app under uvicorn."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from apps.broker_app import REDIS_URL_ENV

from support.waiting import free_port, wait_healthy

TESTS_DIR = Path(__file__).resolve().parent.parent
#: How long a server may take to start or to stop.
DEADLINE = 30.0


def stop_process(process: subprocess.Popen[bytes] | None, deadline: float = DEADLINE) -> bool:
    """SIGTERM, then SIGKILL if it will not go; True if SIGTERM was enough (or it had ended)."""
    if process is None or process.poll() is not None:
        return True
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(deadline)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(deadline)
        return False
    return True


class BrokerApp:
    """uvicorn serving `apps.broker_app` in a subprocess, with a `RedisBroker` on `redis_url`.

    `start()` may be called again after `kill()`: the app comes back on the same port.
    """

    def __init__(self, name: str, redis_url: str, workdir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.redis_url = redis_url
        self.workdir = workdir
        self.starts = 0
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start the process and wait until it answers; return how long that took (s)."""
        assert self.process is None or self.process.poll() is not None
        self.starts += 1
        began = time.monotonic()
        with self._log_path().open("wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "apps.broker_app:create_app",
                    "--factory",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--log-level",
                    "warning",
                    "--no-access-log",
                    "--timeout-graceful-shutdown",
                    "5",
                ],
                cwd=TESTS_DIR,  # `-m` puts the working directory first on sys.path
                env={**os.environ, REDIS_URL_ENV: self.redis_url},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_healthy(self.process, f"{self.url}/health", self.name, self.log, DEADLINE)
        return time.monotonic() - began

    def _log_path(self) -> Path:
        return self.workdir / f"{self.name}-{self.starts}.log"

    def log(self) -> str:
        path = self._log_path()
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def stats(self, topic: str) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/stats/{topic}", timeout=5.0)
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats

    def kill(self) -> None:
        """SIGKILL: the process dies at once, its connections drop."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(DEADLINE)

    def stop(self) -> bool:
        """SIGTERM (SIGKILL if it will not go); True if SIGTERM was enough."""
        return stop_process(self.process)
