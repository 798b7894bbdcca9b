"""Debian's Chromium under Playwright, for the page's browser test and the screenshot script."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from marble.errors import MarbleError

CHROMIUM = Path("/usr/bin/chromium")
# No GPU, no QUIC and no calls home (updates, sync, field trials): the browser talks only to the test server.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")


@contextmanager
def headless_chromium() -> Iterator[object]:
    """A Playwright Browser on /usr/bin/chromium; never `playwright install`, which downloads a browser."""
    if not CHROMIUM.exists():
        raise MarbleError(f"needs Debian's chromium at {CHROMIUM} (`apt-get install -y chromium`)")
    from playwright.sync_api import sync_playwright  # a test extra, not a dependency of the server

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=list(FLAGS))
        try:
            yield browser
        finally:
            browser.close()


def wait_until(page, predicate: str, seconds: float = 30.0) -> None:
    """Poll with evaluate(): wait_for_function evals a string, which the page's CSP (rightly) forbids."""
    deadline = time.monotonic() + seconds
    while not page.evaluate(predicate):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"still false after {seconds} s: {predicate}")
        time.sleep(0.05)
