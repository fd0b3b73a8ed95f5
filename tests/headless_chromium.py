"""The headless Chromium the browser tests drive (Debian's chromium and chromium-driver, through
selenium), and everything it writes kept in one dir of its own, removed when it quits.

Chromium puts its profile, and the socket dir it makes in TMPDIR (org.chromium.Chromium.*), where
a quit browser leaves them; here both live in the dir, so the suite leaves nothing in TMPDIR.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMEDRIVER = "/usr/bin/chromedriver"


def require_chromium() -> None:
    """Skip without chromium and its driver; fail instead where TVO_BROWSER_TESTS=required."""
    if shutil.which("chromium") and shutil.which(CHROMEDRIVER):
        return
    message = ("needs chromium and chromium-driver (apt-get install chromium chromium-driver; "
               ".ci/run does)")
    if os.environ.get("TVO_BROWSER_TESTS") == "required":  # set by .ci/run
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def headless_chromium(arguments: Sequence[str] = (),
                      prefs: dict[str, Any] | None = None) -> Iterator[Any]:
    """A selenium Chrome driver on headless Chromium that keeps the browser's console log."""
    require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    own = Path(tempfile.mkdtemp(prefix="tvo-chromium-"))
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", f"--user-data-dir={own / 'profile'}",
                     *arguments):
        options.add_argument(argument)
    if prefs:
        options.add_experimental_option("prefs", prefs)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(CHROMEDRIVER, env={**os.environ, "TMPDIR": str(own)})
    try:
        driver = webdriver.Chrome(service=service, options=options)
        try:
            yield driver
        finally:
            driver.quit()
    finally:
        shutil.rmtree(own, ignore_errors=True)
