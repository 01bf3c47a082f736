"""``kumadp ctl get|inspect zones`` and the zone CA commands' text, against canned answers
of a global CP's API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from kumadp.ctl.client import ApiClient, CtlError
from kumadp.ctl.zones import revoke_zone_ca, zone_cas, zone_rows, zone_status

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def at(delta: timedelta) -> str:
    return (NOW + delta).isoformat().replace("+00:00", "Z")


def overview(name: str, *, enabled: bool = True, connected: bool = True) -> dict[str, Any]:
    sub: dict[str, Any] = {
        "connectTime": at(-timedelta(minutes=5)),
        "version": {"kumaCp": {"version": "0.9.0"}},
    }
    old = {"connectTime": at(-timedelta(days=2)), "disconnectTime": at(-timedelta(days=1))}
    if not connected:
        sub["disconnectTime"] = at(-timedelta(minutes=1))
    return {
        "type": "ZoneOverview",
        "name": name,
        "creationTime": at(-timedelta(days=3)),
        "zone": {"enabled": enabled},
        "zoneInsight": {"subscriptions": [old, sub]},
    }


def dataplane(zone: str, online: bool) -> dict[str, Any]:
    subs = [{"connectTime": at(-timedelta(minutes=3))}]
    if not online:
        subs[0]["disconnectTime"] = at(-timedelta(minutes=1))
    return {
        "name": f"dp-{zone}-{online}",
        "labels": {"kuma.io/zone": zone},
        "dataplaneInsight": {"subscriptions": subs},
    }


def client(routes: dict[str, Any]) -> ApiClient:
    def handle(request: httpx.Request) -> httpx.Response:
        body = routes.get(f"{request.method} {request.url.path}")
        if body is None:
            return httpx.Response(404, json={"title": "Not Found", "details": "no"})
        return httpx.Response(200, json=body)

    return ApiClient("http://cp:5681", transport=httpx.MockTransport(handle))


def page(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"total": len(items), "items": items, "next": None}


def test_zone_status_and_the_zones_table() -> None:
    assert zone_status(overview("a")) == "Online"
    assert zone_status(overview("a", connected=False)) == "Offline"
    assert zone_status(overview("a", enabled=False)) == "Disabled"
    assert zone_status({"name": "new"}) == "Offline"
    routes = {
        "GET /zones+insights": page(
            [
                overview("zone-a"),
                overview("zone-b", enabled=False),
                overview("zone-c", connected=False),
            ]
        ),
        "GET /dataplanes+insights": page(
            [dataplane("zone-a", True), dataplane("zone-a", False), dataplane("zone-b", True)]
        ),
    }
    with client(routes) as api:
        text = zone_rows(api, NOW)
        inspected = zone_rows(api, NOW, age=True)
    lines = [line.split() for line in text.splitlines()]
    assert " ".join(text.splitlines()[0].split()) == (
        "NAME STATUS LAST CONNECTED CP VERSION DATAPLANES"
    )
    assert lines[1] == ["zone-a", "Online", "5m", "ago", "0.9.0", "1/2"]
    assert lines[2] == ["zone-b", "Disabled", "5m", "ago", "0.9.0", "1/1"]
    assert lines[3] == ["zone-c", "Offline", "5m", "ago", "0.9.0", "0/0"]
    assert inspected.splitlines()[1].split()[-1] == "3d"


def test_a_cp_without_zones_says_so() -> None:
    with client({}) as api, pytest.raises(CtlError, match="zones are kept by a global"):
        zone_rows(api, NOW)


def test_zone_ca_texts() -> None:
    routes = {
        "GET /zones/zone-a/ca": {
            "zone": "zone-a",
            "refused": True,
            "intermediates": [
                {
                    "mesh": "default",
                    "serial": "ab12",
                    "notAfter": at(timedelta(days=20)),
                    "revoked": True,
                    "live": False,
                },
                {
                    "mesh": "default",
                    "serial": "cd34",
                    "notAfter": at(timedelta(days=29)),
                    "revoked": False,
                    "live": True,
                },
            ],
        },
        "POST /zones/zone-a/ca/revoke": {"revoked": [{"mesh": "default", "serial": "cd34"}]},
    }
    with client(routes) as api:
        listed = zone_cas(api, "zone-a", NOW)
        revoked = revoke_zone_ca(api, "zone-a", "default")
        with pytest.raises(CtlError, match='zone "zone-x" not found'):
            zone_cas(api, "zone-x", NOW)
    rows = [line.split() for line in listed.splitlines()]
    assert rows[1] == ["zone-a", "default", "ab12", "in", "20d", "revoked"]
    assert rows[2] == ["zone-a", "default", "cd34", "in", "29d", "live"]
    assert "gets no new intermediate CA until: kumadp ctl allow zone-ca" in listed
    assert "revoked 1 intermediate CA(s) of zone zone-a (mesh default):" in revoked
    assert "mesh default serial cd34" in revoked
