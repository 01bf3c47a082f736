"""Headless Chromium for the web UI's tests: Debian's ``chromium`` driven by its
``chromedriver`` through Selenium (nothing is downloaded: both binaries are given by path),
with desktop and phone viewports, full-page screenshots and the browser console."""

from __future__ import annotations

import base64
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from testkit.procs import wait_until

T = TypeVar("T")

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)
DESKTOP = (1366, 900, 1)
PHONE = (360, 780, 2)


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not Path(path).exists():
            return f"{path} is missing (Debian package {package}; scripts/install-deps installs it)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e .[test])"
    return None


class Browser:
    """One headless Chromium with a fresh profile; screenshots go to ``shots``."""

    def __init__(self, shots: Path) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.shots = shots
        shots.mkdir(parents=True, exist_ok=True)
        self._profile = tempfile.mkdtemp(prefix="kumadp-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self._profile}")
        options.add_argument("--window-size=1366,900")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        try:
            self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        except Exception:
            shutil.rmtree(self._profile, ignore_errors=True)
            raise
        self.driver.set_page_load_timeout(30)
        self.viewport(*DESKTOP)

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self._profile, ignore_errors=True)

    # -- viewport and screenshots -----------------------------------------------------
    def viewport(self, width: int, height: int, scale: int = 1) -> None:
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {
                "width": width,
                "height": height,
                "deviceScaleFactor": scale,
                "mobile": width < 600,
            },
        )

    def screenshot(self, name: str) -> Path:
        """The whole page, down to the end of its content (not just the viewport), as
        ``<shots>/<name>.png``."""
        width, height = self.js(
            "const r = document.body.getBoundingClientRect();"
            "return [document.documentElement.scrollWidth, Math.ceil(r.bottom + window.scrollY)];"
        )
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": min(height, 6000), "scale": 1},
            },
        )
        path = self.shots / f"{name}.png"
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    # -- reading the page -------------------------------------------------------------
    def open(self, url: str) -> None:
        self.driver.get(url)

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def text(self, css: str) -> str:
        """The visible text of every element matching ``css``, joined by newlines."""
        return str(
            self.js(
                "return [...document.querySelectorAll(arguments[0])]"
                ".map(e => e.innerText).join('\\n')",
                css,
            )
        )

    def attr(self, css: str, name: str) -> str | None:
        value = self.js(
            "const e = document.querySelector(arguments[0]);"
            "return e ? e.getAttribute(arguments[1]) : null;",
            css,
            name,
        )
        return None if value is None else str(value)

    def click(self, css: str) -> None:
        self.js("document.querySelector(arguments[0]).click()", css)

    def until(self, check: Callable[[], T | bool | None], *, timeout: float = 15, what: str) -> T:
        return wait_until(check, timeout=timeout, interval=0.05, what=what)

    def refreshes(self) -> int:
        return int(self.js("return Number(document.documentElement.dataset.refreshes || 0)"))

    def settled(self, timeout: float = 15) -> None:
        """Wait for the page's next complete refresh (its data drawn)."""
        start = self.refreshes()
        self.until(lambda: self.refreshes() > start, timeout=timeout, what="a UI refresh")

    def mark(self) -> None:
        """Tag the current document; ``marked`` tells whether it was reloaded since."""
        self.js("window.__kumadpTestMark = 1")

    def marked(self) -> bool:
        return bool(self.js("return window.__kumadpTestMark === 1"))

    def hide(self, hidden: bool = True) -> None:
        """Make the page believe its tab is hidden (or visible again), as a switch of tabs
        or a minimised window does."""
        self.js(
            "const hidden = arguments[0];"
            "Object.defineProperty(document, 'hidden', {configurable: true, get: () => hidden});"
            "Object.defineProperty(document, 'visibilityState', {configurable: true,"
            " get: () => (hidden ? 'hidden' : 'visible')});"
            "document.dispatchEvent(new Event('visibilitychange'));",
            hidden,
        )

    def api_requests(self) -> int:
        """How many requests the page has made so far (scripts, styles and API calls)."""
        return int(self.js("return performance.getEntriesByType('resource').length"))

    def overflows(self) -> bool:
        """Whether the page is wider than the viewport (a horizontal scroll bar)."""
        return bool(self.js("return document.documentElement.scrollWidth > window.innerWidth + 1"))

    def console_errors(self) -> list[str]:
        """Errors the page logged (script errors, CSP violations, failed loads)."""
        return [
            str(entry.get("message"))
            for entry in self.driver.get_log("browser")
            if entry.get("level") == "SEVERE"
        ]


def browser_or_skip(tmp: Path) -> Iterator[Browser]:
    """For a pytest fixture: a browser whose screenshots go to ``<tmp>/screenshots``, closed
    afterwards; the test is skipped, with the reason, where Chromium is missing."""
    import pytest

    reason = missing()
    if reason:
        pytest.skip(f"no headless Chromium: {reason}")
    browser = Browser(tmp / "screenshots")
    try:
        yield browser
    finally:
        browser.close()


__all__ = ["DESKTOP", "PHONE", "Browser", "browser_or_skip", "missing"]
