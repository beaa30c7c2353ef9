"""Headless Chromium for the browser tests: Debian's `chromium`, driven by Playwright."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

CHROMIUM = shutil.which("chromium")
#: Headless flags; without the networking ones Chromium keeps trying hosts it cannot reach.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

#: The marks of a browser test module.  Skipped on a developer's machine without Chromium; in CI
#: (CI=true, where .ci/run installs it) a missing browser fails instead.
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None and not os.environ.get("CI"), reason="Chromium is not installed"
    ),
    pytest.mark.timeout(60),
]


def launch_chromium() -> Iterator[Browser]:
    """Body of a module-scoped `browser` fixture: one headless Chromium for the module."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        browser.close()
