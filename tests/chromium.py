"""Headless Chromium for the browser tests: one place for its flags, its fake microphone and its clean-up."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

# `pytestmark = REQUIRED` in a test module: skipped, with the command that fixes it, where Chromium is missing.
REQUIRED = [
    pytest.mark.skipif(
        CHROMIUM is None, reason="no chromium binary on PATH (apt-get install chromium chromium-driver)"
    ),
    pytest.mark.skipif(CHROMEDRIVER is None, reason="no chromedriver on PATH (apt-get install chromium-driver)"),
]


def start(mic: Path, profile: Path, window: str = "1200,900") -> Any:
    """A headless Chromium whose microphone plays `mic` (looped) and that may play audio without a click."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={mic}", "--autoplay-policy=no-user-gesture-required",
        f"--user-data-dir={profile}", f"--window-size={window}",
    ):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    return driver


def stop(driver: Any) -> None:
    """Print the page's console (shown when a test fails) and quit; a browser already gone is fine."""
    try:
        for entry in driver.get_log("browser"):
            print("browser:", entry.get("level"), entry.get("message"))
    except Exception:
        pass
    try:
        driver.quit()
    except Exception:
        pass
