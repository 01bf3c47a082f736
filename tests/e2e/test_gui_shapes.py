"""The web UI's pages for what this control plane does not run yet (zones, zone ingresses
and egresses, a zone CP's `/config`), read from documents in Kuma's API shapes served by a
small fake API beside the real UI routes, in a real headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kumadp.cp.gui import gui_routes
from testkit.browser import PHONE, Browser, browser_or_skip
from tests.unit.test_ctl import Served

pytestmark = pytest.mark.e2e

T0 = "2026-01-01T10:00:00Z"


def page(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"total": len(items), "items": items, "next": None}


def kds_subscription(connected: str, disconnected: str | None = None) -> dict[str, Any]:
    sub: dict[str, Any] = {
        "id": "4c9f-1",
        "globalInstanceId": "global-1",
        "connectTime": connected,
        "status": {"lastUpdateTime": connected, "total": {}, "stat": {}},
        "version": {"kumaCp": {"version": "2.9.1", "gitTag": "2.9.1", "buildDate": T0}},
    }
    if disconnected:
        sub["disconnectTime"] = disconnected
    return sub


def zone(name: str, enabled: bool, subscriptions: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "ZoneOverview",
        "name": name,
        "creationTime": T0,
        "modificationTime": T0,
        "zone": {"enabled": enabled},
        "zoneInsight": {"subscriptions": subscriptions},
    }


ZONES = page(
    [
        zone("east", True, [kds_subscription(T0)]),
        zone("west", True, [kds_subscription(T0, "2026-01-01T10:05:00Z")]),
        zone("lab", False, [kds_subscription(T0)]),
    ]
)
INGRESSES = page(
    [
        {
            "type": "ZoneIngressOverview",
            "name": "east-ingress",
            "creationTime": T0,
            "modificationTime": T0,
            "zoneIngress": {
                "zone": "east",
                "networking": {
                    "address": "10.0.0.5",
                    "port": 10001,
                    "advertisedAddress": "203.0.113.7",
                    "advertisedPort": 10001,
                },
                "availableServices": [
                    {
                        "tags": {"kuma.io/service": "backend", "kuma.io/zone": "east"},
                        "instances": 2,
                        "mesh": "default",
                    },
                    {"tags": {"kuma.io/service": "payments"}, "instances": 1, "mesh": "shop"},
                ],
            },
            "zoneIngressInsight": {"subscriptions": [{"id": "1", "connectTime": T0}]},
        }
    ]
)
EGRESSES = page(
    [
        {
            "type": "ZoneEgressOverview",
            "name": "east-egress",
            "creationTime": T0,
            "modificationTime": T0,
            "zoneEgress": {"zone": "east", "networking": {"address": "10.0.0.6", "port": 10002}},
            "zoneEgressInsight": {
                "subscriptions": [{"id": "1", "connectTime": T0, "disconnectTime": T0}]
            },
        }
    ]
)


class FakeApi:
    """Kuma-shaped answers for a global CP (or, with ``mode = "zone"``, a zone CP that
    serves no zone routes)."""

    def __init__(self) -> None:
        self.mode = "global"

    def documents(self) -> dict[str, Any]:
        docs: dict[str, Any] = {
            "": {"hostname": "fake", "version": "0.1.0", "product": "kumadp"},
            "config": {"mode": self.mode, "multizone": {"zone": {"name": "east"}}},
            "meshes": page([{"type": "Mesh", "name": "default", "creationTime": T0}]),
            "dataplanes+insights": page([]),
        }
        if self.mode == "global":
            docs |= {
                "zones+insights": ZONES,
                "zoneingresses+insights": INGRESSES,
                "zoneegressoverviews": EGRESSES,
            }
        return docs

    async def handle(self, request: Request) -> Response:
        doc = self.documents().get(str(request.path_params["path"]))
        if doc is None:
            return JSONResponse({"title": "Not Found", "details": "", "causes": []}, 404)
        return JSONResponse(doc)


@pytest.fixture
def fake() -> Iterator[tuple[FakeApi, Served]]:
    api = FakeApi()
    app = Starlette(routes=[*gui_routes(), Route("/{path:path}", api.handle, methods=["GET"])])
    served = Served(app)
    try:
        yield api, served
    finally:
        served.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    yield from browser_or_skip(tmp_path)


def rows(browser: Browser) -> dict[str, str]:
    return dict(
        browser.js(
            "return [...document.querySelectorAll('tr[data-name]')]"
            ".map(r => [r.dataset.name, r.innerText])"
        )
    )


def test_zones_ingresses_and_egresses_in_kumas_shapes(
    fake: tuple[FakeApi, Served], browser: Browser
) -> None:
    api, served = fake
    browser.open(f"{served.url}/gui/zones")
    found = browser.until(lambda: len(r := rows(browser)) == 3 and r, what="three zones")
    assert browser.attr('tr[data-name="east"] [data-status]', "data-status") == "Online"
    assert browser.attr('tr[data-name="west"] [data-status]', "data-status") == "Offline"
    assert browser.attr('tr[data-name="lab"] [data-status]', "data-status") == "Disabled"
    assert "2.9.1" in found["east"] and "yes" in found["east"]
    assert "no" in found["lab"].split()
    assert "1 of 3 zones online" in browser.text("main")
    browser.screenshot("desktop-zones-shapes")

    browser.open(f"{served.url}/gui/zoneingresses")
    ingress = browser.until(lambda: rows(browser).get("east-ingress"), what="the ingress")
    assert "203.0.113.7:10001" in ingress and "Online" in ingress
    assert "backend" in ingress and "2 instances" in ingress
    assert "payments" in ingress and "mesh shop" in ingress
    browser.viewport(*PHONE)
    browser.settled()
    assert not browser.overflows()
    browser.screenshot("phone-zone-ingresses-shapes")

    browser.open(f"{served.url}/gui/zoneegresses")
    egress = browser.until(lambda: rows(browser).get("east-egress"), what="the egress")
    assert "Offline" in egress and "10.0.0.6:10002" in egress and "east" in egress

    browser.open(f"{served.url}/gui/")
    browser.until(lambda: "1 / 3" in browser.text(".tiles"), what="zones online on the overview")
    assert "global" in browser.text('[data-section="cp"]')

    api.mode = "zone"  # a newly opened page asks /config again
    browser.open(f"{served.url}/gui/zones")
    note = browser.until(
        lambda: "zone control plane" in (t := browser.text("main")) and t,
        timeout=15,
        what="the zone CP note",
    )
    assert "(zone east)" in note and "global control plane" in note
