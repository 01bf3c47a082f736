"""The web UI in a real headless Chromium against a real CP with real agents and Envoys:
live status without reloads, Envoy's NACK on the dataplane page, every page on a desktop and
a phone-width screen (screenshots under the test's temp dir), zones on a global CP."""

from __future__ import annotations

import re
import signal
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

import kumadp
from testkit.browser import DESKTOP, PHONE, Browser, browser_or_skip
from testkit.crosszone import start_zone_proxy, zone_ingress_doc
from testkit.mesh import ControlPlane, MeshEnv
from testkit.multizone import start_global, start_zone, zone_token
from testkit.procs import free_port, holds_for, wait_until
from tests.e2e.test_insights import fully_acked, overviews
from tests.e2e.test_mtls import enable_mtls

pytestmark = pytest.mark.e2e

# Routes a control plane may not serve; the UI asks and degrades (the browser logs the 404).
OPTIONAL_ROUTES = (
    "/_resources",
    "/config",
    "/zones+insights",
    "/zoneingresses+insights",
    "/zoneegressoverviews",
    "/who-am-i",
)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    yield from browser_or_skip(tmp_path)


def real_errors(browser: Browser) -> list[str]:
    """Console errors other than the 404s of optional routes."""
    return [
        e
        for e in browser.console_errors()
        if not ("404" in e and any(route in e for route in OPTIONAL_ROUTES))
    ]


def status_of(browser: Browser, name: str) -> str | None:
    return browser.attr(f'tr[data-name="{name}"] [data-status]', "data-status")


def tiles(browser: Browser) -> dict[str, tuple[str, str]]:
    """The overview's tiles: label -> (figure, the line under it)."""
    found = browser.js(
        "return [...document.querySelectorAll('.tiles a')].map(a => ["
        " a.querySelector('.tile-label').innerText, a.querySelector('.tile-value').innerText,"
        " (a.querySelector('.tile-sub') || {}).innerText || ''])"
    )
    return {label: (value, sub) for label, value, sub in found}


def api_policy_figures(cp: ControlPlane) -> tuple[int, int]:
    """(policies in every mesh, policy kinds), as the API counts them."""
    kinds = [
        t
        for t in cp.get("/_resources").json()["resources"]
        if t.get("policy") and t.get("scope") == "Mesh" and t.get("path")
    ]
    total = sum(cp.get(f"/{t['path']}?size=1").json()["total"] for t in kinds)
    return total, len(kinds)


def assert_overview(browser: Browser, cp: ControlPlane, online: int, offline: int) -> None:
    """The overview's figures are the API's: meshes, dataplanes online and offline (the
    numbers expected here, and what the API says), policies and their kinds."""
    browser.open(f"{cp.url}/gui/")
    expected = {
        "meshes": (str(len(cp.get("/meshes").json()["items"])), ""),
        "dataplanes online": (str(online), f"of {online + offline}"),
        "dataplanes offline": (str(offline), "check them" if offline else "none"),
    }
    browser.until(
        lambda: all(tiles(browser).get(k) == v for k, v in expected.items()),
        what=f"the overview showing {expected}",
    )
    listed = cp.get("/meshes/default/dataplanes+insights").json()["items"]
    assert sum(i["dataplaneInsight"]["online"] for i in listed) == online
    assert len(listed) == online + offline
    policies, kinds = api_policy_figures(cp)
    assert policies >= 4  # a new mesh's allow-all, timeout, circuit breaker and retry
    assert tiles(browser)["policies"] == (str(policies), f"{kinds} kinds")
    assert cp.get("/zones+insights").json()["items"] == []  # standalone: no zones
    assert tiles(browser)["zones online"][0] == "0 / 0"


def summary(browser: Browser) -> dict[str, str]:
    """The dataplane page's summary: label -> shown text (a time: its ``datetime``)."""
    found = browser.js(
        "return [...document.querySelectorAll('[data-section=\"summary\"] dl.facts > div')]"
        ".map(d => { const t = d.querySelector('dd time');"
        " return [d.querySelector('dt').textContent, t ? t.getAttribute('datetime') :"
        " d.querySelector('dd').textContent]; })"
    )
    return dict(found)


def visit(browser: Browser, url: str, shot: str, ready_css: str) -> None:
    """Open ``url``, wait until ``ready_css`` is drawn, save a screenshot."""
    browser.open(url)
    browser.until(
        lambda: browser.js("return !!document.querySelector(arguments[0])", ready_css),
        what=f"{ready_css} on {url}",
    )
    browser.settled()
    browser.screenshot(shot)


def test_pages_live_status_and_phone_layout(env: MeshEnv, browser: Browser) -> None:
    cp = env.start_cp(extra=["--deregistration-delay", "60s"])
    backend, _ = env.start_service("backend-1", "backend", upstream_service="web")
    env.start_service("web-1", "web", upstream_service="backend", tags={"version": "v2"})
    gui = f"{cp.url}/gui"

    resp = httpx.get(f"{gui}/meshes/default/dataplanes", timeout=5)
    assert resp.status_code == 200 and "text/html" in resp.headers["content-type"]
    assert "script-src 'self'" in resp.headers["content-security-policy"]

    # The dataplanes page shows both sidecars Online.
    browser.open(f"{gui}/meshes/default/dataplanes")
    browser.until(
        lambda: (
            status_of(browser, "backend-1") == "Online" and status_of(browser, "web-1") == "Online"
        ),
        timeout=20,
        what="both dataplanes Online on the page",
    )
    browser.mark()
    row = browser.text('tr[data-name="web-1"]')
    assert "service=web" in row and "version=v2" in row, row
    assert "1.40" in row, row  # Envoy's version
    assert "CDS" in row and "LDS" in row, row

    # With mTLS on, each sidecar's certificate expiry shows up (24 h certificates).
    enable_mtls(env)
    browser.until(
        lambda: all(
            "(in 23 h)" in browser.text(f'tr[data-name="{name}"] td[data-label="Certificate"]')
            for name in ("backend-1", "web-1")
        ),
        timeout=20,
        what="the certificate expiry of both sidecars",
    )
    assert browser.marked(), "the page was reloaded"

    # Every page, on a desktop and on a phone, without errors and without sideways scroll.
    overviews(env)
    pages = [
        ("overview", "", ".tiles"),
        ("meshes", "/meshes", 'tr[data-name="default"]'),
        ("mesh", "/meshes/default", '[data-section="policies"] table'),
        ("dataplanes", "/meshes/default/dataplanes", 'tr[data-name="web-1"]'),
        ("dataplane", "/meshes/default/dataplanes/web-1", '[data-policy-type="MeshTimeout"]'),
        ("policy-kinds", "/meshes/default/policies", 'tr[data-kind="MeshTimeout"]'),
        ("policies", "/meshes/default/policies/meshtimeouts", "tr[data-name]"),
        (
            "policy",
            "/meshes/default/policies/meshtrafficpermissions/allow-all-default",
            ".code-yaml",
        ),
        ("zones", "/zones", ".note"),
        ("zone-ingresses", "/zoneingresses", ".note"),
        ("zone-egresses", "/zoneegresses", ".note"),
        ("settings", "/settings", "#token"),
    ]
    for size_name, size in (("desktop", DESKTOP), ("phone", PHONE)):
        browser.viewport(*size)
        for name, path, ready in pages:
            visit(browser, gui + path, f"{size_name}-{name}", ready)
            assert not browser.overflows(), f"{name} is wider than a {size_name} screen"
    assert real_errors(browser) == []

    browser.viewport(*DESKTOP)
    assert_overview(browser, cp, online=2, offline=0)
    browser.open(f"{gui}/meshes/default/dataplanes/web-1")
    browser.until(
        lambda: "MeshTrafficPermission" in browser.text('[data-section="rules"]'),
        what="the policies of web-1",
    )
    # The summary's versions and last connection are the insight's.
    insight = overviews(env)["web-1"]["dataplaneInsight"]
    last = insight["subscriptions"][-1]
    facts = summary(browser)
    assert facts["status"] == "Online", facts
    assert facts["Envoy"] == last["version"]["envoy"]["version"]
    assert facts["Envoy"].startswith("1.40")
    assert facts["agent"] == last["version"]["kumaDp"]["version"] == kumadp.__version__
    assert facts["connected"] == last["connectTime"]
    connected = datetime.fromisoformat(facts["connected"].replace("Z", "+00:00"))
    assert timedelta(0) <= datetime.now(UTC) - connected < timedelta(minutes=2)
    assert facts["control plane instance"] == last["controlPlaneInstanceId"]
    page = browser.text("main")
    assert "allow-all-default" in page and "mesh-timeout-all-default" in page
    assert f":{backend.inbound_port}" not in browser.text('[data-section="inbounds"]')
    assert "Standalone" not in page
    browser.click('details[data-key="envoy-config"] summary')
    config = browser.until(
        lambda: "inbound:127.0.0.1:" in (text := browser.text('[data-section="config"]')) and text,
        what="the Envoy config dump of web-1",
    )
    assert '"lds"' in config and '"cds"' in config
    browser.screenshot("desktop-dataplane-config")

    browser.open(f"{gui}/zones")  # a standalone CP has no zones: the page says why
    browser.until(
        lambda: "Standalone control plane" in browser.text("main"),
        what="the standalone note on the zones page",
    )

    # A hidden tab makes no requests; shown again, it refreshes at once.
    browser.open(f"{gui}/meshes/default/dataplanes")
    browser.settled()
    browser.js("performance.clearResourceTimings(); performance.setResourceTimingBufferSize(1e5)")
    browser.hide()
    browser.until(lambda: browser.attr("#live", "data-state") == "paused", what="polling paused")
    before = browser.api_requests()
    holds_for(  # an absence is only seen over a window: 2.5 polling intervals
        lambda: browser.api_requests() == before, 2.5, what="a hidden page making no request"
    )
    browser.hide(False)
    browser.until(lambda: browser.api_requests() > before, timeout=2, what="polling resumed")
    browser.until(lambda: browser.attr("#live", "data-state") == "live", what="live again")

    # Killing one sidecar turns it Offline on the page, without a reload, within 2 s of the
    # control plane knowing.
    browser.open(f"{gui}/meshes/default/dataplanes")
    browser.until(lambda: status_of(browser, "backend-1") == "Online", what="backend-1 Online")
    browser.mark()
    backend.proc.signal(signal.SIGKILL)  # Envoy dies with it (parent-death signal)
    browser.until(
        lambda: overviews(env)["backend-1"]["dataplaneInsight"]["online"] is False,
        timeout=10,
        what="backend-1 offline in the API",
    )
    known = time.monotonic()
    browser.until(
        lambda: status_of(browser, "backend-1") == "Offline",
        timeout=5,
        what="backend-1 Offline on the page",
    )
    shown_after = time.monotonic() - known
    assert shown_after < 2.0, f"the page took {shown_after:.2f}s to show the change"
    assert browser.marked(), "the page was reloaded"
    assert status_of(browser, "web-1") == "Online"
    browser.screenshot("desktop-dataplanes-one-offline")
    assert_overview(browser, cp, online=1, offline=1)
    assert real_errors(browser) == []


def test_envoy_nack_shows_on_the_dataplane_page(env: MeshEnv, browser: Browser) -> None:
    cp = env.start_cp()
    _, app_port = env.start_service("backend-1", "backend")
    env.start_service("web-1", "web", upstream_service="backend")
    browser.until(
        lambda: fully_acked(overviews(env)["backend-1"], ("cds", "lds")),
        timeout=20,
        what="backend-1 ACKed",
    )
    browser.open(f"{cp.url}/gui/meshes/default/dataplanes/backend-1")
    browser.until(
        lambda: "Online" in browser.text('[data-section="summary"]'),
        what="backend-1 Online on its page",
    )
    browser.mark()

    # An inbound on a port something else holds: Envoy cannot bind it and rejects the LDS.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        doc = cp.get("/meshes/default/dataplanes/backend-1").json()
        for key in ("creationTime", "modificationTime"):
            doc.pop(key, None)
        doc["networking"]["inbound"].append(
            {"port": port, "servicePort": app_port, "tags": {"kuma.io/service": "backend-2"}}
        )
        resp = httpx.put(f"{cp.url}/meshes/default/dataplanes/backend-1", json=doc, timeout=5)
        assert resp.status_code == 200, resp.text

        error = browser.until(
            lambda: str(port) in (text := browser.text("[data-nack]")) and text,
            timeout=20,
            what="Envoy's NACK on the dataplane page",
        )
        assert "Envoy rejected the LDS config" in error
        lds = browser.text('tr[data-xds="lds"]')
        assert re.search(r"NACKed\s*[1-9]|\b[1-9]\d*$", lds), lds
        assert browser.marked(), "the page was reloaded"
        browser.screenshot("desktop-dataplane-nack")

        browser.open(f"{cp.url}/gui/meshes/default/dataplanes")
        row = browser.until(
            lambda: str(port) in (text := browser.text('tr[data-name="backend-1"]')) and text,
            what="the last NACK in the dataplanes list",
        )
        assert "LDS" in row
        browser.screenshot("desktop-dataplanes-nack")
    assert real_errors(browser) == []


def test_zones_page_on_a_global_control_plane(env: MeshEnv, browser: Browser) -> None:
    global_cp = start_global(env)
    zones = [start_zone(env, name, global_cp) for name in ("zone-1", "zone-2")]

    browser.open(f"{global_cp.url}/gui/zones")
    browser.until(
        lambda: (
            status_of(browser, "zone-1") == "Online" and status_of(browser, "zone-2") == "Online"
        ),
        timeout=40,
        what="both zones Online on the zones page",
    )
    row = browser.text('tr[data-name="zone-1"]')
    assert "yes" in row  # enabled
    browser.screenshot("desktop-zones")

    # zone-1's ingress and a service behind it: on global's zone ingresses page, with its
    # zone, status and the services it makes available to the other zones
    ingress = zone_ingress_doc("zi-zone-1", "127.0.0.1", free_port())
    start_zone_proxy(env, zones[0], ingress, zone_token(global_cp, "zone-1", "ingress"))
    env.start_service("backend-1", "backend", cp=zones[0])
    browser.open(f"{global_cp.url}/gui/zoneingresses")
    copy = 'tr[data-name^="zi-zone-1"]'  # global names the copy <name>-<hash>, as Kuma
    browser.until(
        lambda: (
            browser.attr(f"{copy} [data-status]", "data-status") == "Online"
            and "backend" in browser.text(copy)
        ),
        timeout=30,
        what="zone-1's ingress Online on global, making backend available",
    )
    assert "zone-1" in browser.text(copy)
    browser.screenshot("desktop-zone-ingresses")

    browser.open(f"{global_cp.url}/gui/zones")
    browser.until(lambda: status_of(browser, "zone-2") == "Online", what="the zones page")
    browser.mark()

    zones[1].proc.signal(signal.SIGTERM)
    wait_until(lambda: zones[1].proc.poll() is not None, timeout=20, what="zone-2 CP stopped")
    browser.until(
        lambda: status_of(browser, "zone-2") == "Offline",
        timeout=15,
        what="zone-2 Offline on the zones page",
    )
    assert status_of(browser, "zone-1") == "Online"
    assert browser.marked(), "the page was reloaded"
    browser.screenshot("desktop-zones-one-offline")

    browser.open(f"{global_cp.url}/gui/")
    browser.until(lambda: "1 / 2" in browser.text(".tiles"), what="1 of 2 zones online")
    browser.viewport(*PHONE)
    browser.open(f"{global_cp.url}/gui/zones")
    browser.until(lambda: status_of(browser, "zone-2") == "Offline", what="the zones page")
    browser.screenshot("phone-zones")
    assert real_errors(browser) == []
