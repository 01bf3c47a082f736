"""The web UI as a user who is not an admin, in a real headless Chromium: a CP where loopback
callers are not admins and anonymous callers may not read. The pages show the API's refusal
in words (never a blank page); a user token pasted on the Settings page makes them work,
with that user's rights (reads yes, the admin-only Envoy config dump no)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from testkit.browser import Browser, browser_or_skip
from testkit.mesh import MeshEnv
from testkit.procs import http_ok, wait_until
from tests.e2e.test_gui import real_errors, status_of

pytestmark = pytest.mark.e2e

REFUSED = "401 Unauthorized: this needs a user token"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    yield from browser_or_skip(tmp_path)


def alert(browser: Browser) -> str:
    return browser.text('main [role="alert"]')


def test_pages_show_the_refusal_then_work_with_a_pasted_user_token(
    env: MeshEnv, browser: Browser
) -> None:
    cp = env.start_cp(
        dp_auth="none",  # the agent needs no token; this test is about the API's users
        wait=False,
        extra=["--no-api-localhost-is-admin", "--no-api-anonymous-read"],
    )
    wait_until(
        lambda: http_ok(f"http://127.0.0.1:{cp.diagnostics_port}/ready"),
        what="the CP ready",
        proc=cp.proc,
    )
    admin = {"Authorization": f"Bearer {(cp.data_dir / 'admin-user-token').read_text().strip()}"}
    assert cp.get("/meshes").status_code == 401  # loopback is no admin, nor a reader
    issued = httpx.post(
        f"{cp.url}/tokens/user", json={"name": "alice", "groups": ["team-a"]}, headers=admin
    )
    assert issued.status_code == 200, issued.text
    alice = issued.text.strip()
    env.start_service("backend-1", "backend")
    gui = f"{cp.url}/gui"

    # Without a token: each page says what the API said, and what to do about it.
    for path in ("/", "/meshes/default/dataplanes", "/meshes/default/policies"):
        browser.open(gui + path)
        text = browser.until(
            lambda: REFUSED in (t := alert(browser)) and t, what=f"the refusal on {path}"
        )
        assert "Add a user token under Settings" in text
        assert browser.attr("#live", "data-state") == "error"
    assert browser.text('tr[data-name="backend-1"]') == ""
    browser.screenshot("desktop-refused")

    # Settings: paste alice's token, use it.
    browser.open(f"{gui}/settings")
    browser.until(lambda: browser.js("return !!document.querySelector('#token')"), what="#token")
    from selenium.webdriver.common.by import By

    browser.driver.find_element(By.CSS_SELECTOR, "#token").send_keys(alice)
    browser.js(
        "[...document.querySelectorAll('.token-row button')]"
        ".find(b => b.textContent === 'Use token').click()"
    )
    browser.until(
        lambda: "alice" in browser.text('[data-section="who"]'),
        what="Settings showing who the token is",
    )
    assert "team-a" in browser.text('[data-section="who"]')
    assert alice not in browser.text("body")  # never shown back

    # The pages work now (the token stays with the tab), live as before.
    browser.open(f"{gui}/meshes/default/dataplanes")
    browser.until(lambda: status_of(browser, "backend-1") == "Online", what="backend-1 Online")
    assert alert(browser) == ""
    browser.settled()
    assert browser.attr("#live", "data-state") == "live"
    browser.open(f"{gui}/")
    browser.until(lambda: browser.text(".tiles"), what="the overview's figures")
    assert alert(browser) == ""

    # A reader, not an admin: the dataplane page works, the Envoy config dump is refused.
    browser.open(f"{gui}/meshes/default/dataplanes/backend-1")
    browser.until(
        lambda: "Online" in browser.text('[data-section="summary"]'), what="backend-1's page"
    )
    browser.click('details[data-key="envoy-config"] summary')
    refused = browser.until(
        lambda: "not an admin" in (t := browser.text('[data-section="config"]')) and t,
        what="the config dump refused for alice",
    )
    assert 'user "alice"' in refused
    browser.screenshot("desktop-reader-dataplane")

    # Forgetting the token brings the refusal back.
    browser.open(f"{gui}/settings")
    browser.until(lambda: "alice" in browser.text('[data-section="who"]'), what="settings")
    browser.js(
        "[...document.querySelectorAll('.token-row button')]"
        ".find(b => b.textContent === 'Forget token').click()"
    )
    browser.open(f"{gui}/meshes/default/dataplanes")
    browser.until(lambda: REFUSED in alert(browser), what="the refusal again")
    # The refused requests are in the console (401 without a token; 403 for alice on the
    # admin-only routes), and nothing else: no script error.
    refusals = ("status of 401 (Unauthorized)", "status of 403 (Forbidden)")
    assert [e for e in real_errors(browser) if not e.endswith(refusals)] == []
