"""Zone ingresses and egresses through the API and ctl: Kuma's overview routes (a zone CP's
own proxies with their live insight, the other zones' copies, the global CP's with the
insights its zones sent), ``ctl get|inspect zoneingresses|zoneegresses``, and the note
``ctl inspect dataplanes`` prints when a mesh reaches no other zone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from kumadp.cp.runtime.config import ControlPlaneConfig
from kumadp.cp.runtime.control_plane import ControlPlane
from kumadp.cp.runtime.servers import api_app
from kumadp.cp.store import MemoryStore
from kumadp.ctl.client import ApiClient
from kumadp.ctl.kinds import kind_named
from kumadp.ctl.resources import get, inspect_dataplanes
from kumadp.ctl.zone_inspect import inspect_zone_proxies

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
ZI = {
    "type": "ZoneIngress",
    "name": "zi-1",
    "networking": {
        "address": "10.0.2.1",
        "port": 10001,
        "advertisedAddress": "203.0.113.2",
        "advertisedPort": 10001,
    },
}


@pytest.fixture
async def zone_cp(tmp_path: Path) -> AsyncIterator[ControlPlane]:
    config = ControlPlaneConfig(
        store="memory", data_dir=tmp_path, dp_server_tls=False, mode="zone", zone="zone-b",
        kds_global_address="grpcs://127.0.0.1:5685",
    )  # fmt: skip
    store = MemoryStore()
    plane = ControlPlane(config, store)
    yield plane
    for tokens in (plane.tokens, plane.zone_tokens, plane.user_tokens):
        tokens.close()
    await store.close()


def client(app: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:5681")


async def test_a_zone_cp_lists_its_ingresses_with_their_insight(zone_cp: ControlPlane) -> None:
    app = api_app(zone_cp)
    assert app.state.access_rules.missing(app.routes) == []  # every route of a zone CP
    async with client(app) as api:
        resp = await api.put("/zoneingresses/zi-1", json=ZI)
        assert resp.status_code == 201
        stored = (await api.get("/zoneingresses/zi-1")).json()
        assert stored["zone"] == "zone-b"  # the zone CP sets it
        copy = {
            **ZI,
            "name": "zi-1-abc",
            "zone": "zone-c",
            "labels": {"kuma.io/origin": "global", "kuma.io/zone": "zone-c"},
        }
        await zone_cp.store.put("ZoneIngress", "", "zi-1-abc", copy)
        zone_cp.zone_proxy_insights["ingress"].stream_opened(1, ("", "zi-1"))
        body = (await api.get("/zoneingresses+insights")).json()
        assert body["total"] == 2
        own, other = body["items"]
        assert own["type"] == "ZoneIngressOverview" and own["name"] == "zi-1"
        assert own["zoneIngress"]["networking"]["advertisedPort"] == 10001
        assert own["zoneIngressInsight"]["online"] is True
        assert other["zoneIngressInsight"] == {"subscriptions": [], "online": False}
        one = (await api.get("/zoneingresses+insights/zi-1")).json()
        assert one["zoneIngressInsight"]["subscriptions"][0]["connectTime"]
        missing = await api.get("/zoneingresses+insights/nope")
        assert missing.status_code == 404
        egresses = (await api.get("/zoneegressoverviews")).json()
        assert egresses == {"total": 0, "items": [], "next": None}
        other_zone = {**ZI, "name": "zi-2", "zone": "zone-a"}
        refused = await api.put("/zoneingresses/zi-2", json=other_zone)
        assert refused.status_code == 400
        assert refused.json()["details"].startswith('zone: must be "zone-b" (the zone of this')


def _serving(items: dict[str, Any]) -> httpx.MockTransport:
    def serve(request: httpx.Request) -> httpx.Response:
        found = items.get(request.url.path)
        if found is None:
            return httpx.Response(404, json={"title": "Not Found", "details": "no"})
        return httpx.Response(200, json={"total": len(found), "items": found, "next": None})

    return httpx.MockTransport(serve)


def test_inspect_and_get_tables() -> None:
    ingress = {
        "type": "ZoneIngressOverview",
        "name": "zi-1-7f3a",
        "labels": {"kuma.io/zone": "zone-b", "kuma.io/display-name": "zi-1"},
        "zoneIngress": {
            "zone": "zone-b",
            "networking": {"advertisedAddress": "203.0.113.2", "advertisedPort": 10001},
            "availableServices": [
                {"mesh": "default", "instances": 2, "tags": {"kuma.io/service": "backend"}},
                {"mesh": "shop", "instances": 1, "tags": {"kuma.io/service": "payments"}},
            ],
        },
        "zoneIngressInsight": {"subscriptions": [{"connectTime": "2026-01-01T11:59:00Z"}]},
    }
    egress = {
        "name": "ze-1",
        "zoneEgress": {"zone": "zone-a", "networking": {"address": "127.0.0.1", "port": 1}},
        "zoneEgressInsight": {"subscriptions": []},
    }
    api = ApiClient(
        "http://cp:5681",
        transport=_serving({
            "/zoneingresses+insights": [ingress],
            "/zoneegressoverviews": [egress],
            "/zoneingresses": [{"name": "zi-1", "zone": "zone-b", "networking": ZI["networking"]}],
        }),
    )  # fmt: skip
    assert inspect_zone_proxies(api, "ingress", now=NOW).splitlines() == [
        "ZONE     NAME   STATUS   LAST CONNECTED   ADVERTISED ADDRESS   AVAILABLE SERVICES",
        "zone-b   zi-1   Online   60s ago          203.0.113.2:10001    "
        "backend (default, 2), payments (shop, 1)",
    ]
    assert inspect_zone_proxies(api, "egress", now=NOW).splitlines()[1].split() == [
        "zone-a",
        "ze-1",
        "Offline",
        "-",
        "127.0.0.1:1",
    ]
    text = get(api, kind_named("zone-ingresses"), now=NOW)
    assert text.splitlines()[0].split() == [
        "NAME",
        "ZONE",
        "ADDRESS",
        "ADVERTISED",
        "ADDRESS",
        "AGE",
    ]
    assert text.splitlines()[1].split()[:4] == [
        "zi-1",
        "zone-b",
        "10.0.2.1:10001",
        "203.0.113.2:10001",
    ]
    standalone = ApiClient("http://cp:5681", transport=_serving({}))
    with pytest.raises(Exception, match="does not serve /zoneingresses\\+insights"):
        inspect_zone_proxies(standalone, "ingress")


def test_inspect_dataplanes_says_why_no_other_zone_is_reached() -> None:
    reason = 'mesh "default" has no mTLS: 1 service in other zones is not reachable'
    item = {
        "mesh": "default",
        "name": "web-1",
        "dataplane": {"networking": {"inbound": []}},
        "dataplaneInsight": {
            "subscriptions": [],
            "crossZone": {"reachable": False, "reason": reason},
        },
    }
    api = ApiClient("http://cp:5681", transport=_serving({"/dataplanes+insights": [item, item]}))
    lines = inspect_dataplanes(api, now=NOW).splitlines()
    assert lines[-1] == f"Note: {reason}" and lines.count(f"Note: {reason}") == 1
