"""Headless Debian Chromium for the browser tests (labelling page, HTML report): one way to start it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Debian's paths; other systems can point these variables at their own Chromium and matching driver.
CHROMIUM = Path(os.environ.get("EMOTIONLAB_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("EMOTIONLAB_CHROMEDRIVER", "/usr/bin/chromedriver"))
WAIT = 15  # seconds; generous for a loaded 2-core machine, never reached when things work


def browser_missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            return f"{path} not found: install Debian's chromium and chromium-driver to run the browser tests"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    return None


def start_chromium(profile: Path, *, window: str, extra: tuple[str, ...] = (), console_logs: bool = False):
    """A headless Chromium driven by selenium; skips (or fails with EMOTIONLAB_REQUIRE_BROWSER=1) without one."""
    reason = browser_missing()
    if reason:
        if os.environ.get("EMOTIONLAB_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason} (EMOTIONLAB_REQUIRE_BROWSER=1 requires the browser tests to run)")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--window-size={window}",
        f"--user-data-dir={profile}",
        *extra,
    ):
        options.add_argument(argument)
    if console_logs:
        options.set_capability(
            "goog:loggingPrefs", {"browser": "ALL"}
        )  # console messages, CSP violations included
    # A fixed driver path: selenium-manager never tries to download a browser or a driver.
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
