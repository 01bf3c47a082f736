"""``GET /meshes/{m}/dataplanes/{name}/_rules`` and ``kumadp ctl inspect dataplane``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from kumadp.cp.api import create_app
from kumadp.cp.api.rules import rules_routes
from kumadp.cp.defaults import ensure_default_mesh
from kumadp.cp.store import MemoryStore
from kumadp.ctl.rules import RULES_HEADERS, flatten, rule_rows

WEB = {
    "type": "Dataplane",
    "mesh": "default",
    "name": "web-1",
    "networking": {
        "address": "10.0.0.1",
        "inbound": [{"port": 10001, "tags": {"kuma.io/service": "web"}}],
        "outbound": [{"port": 20001, "tags": {"kuma.io/service": "backend"}}],
    },
}
WEB_TIMEOUT = {
    "type": "MeshTimeout",
    "mesh": "default",
    "name": "web-to-backend",
    "spec": {
        "targetRef": {"kind": "MeshService", "name": "web"},
        "to": [
            {
                "targetRef": {"kind": "MeshService", "name": "backend"},
                "default": {"http": {"requestTimeout": "2s"}},
            }
        ],
    },
}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    store = MemoryStore()
    await ensure_default_mesh(store)
    app = create_app(store, extra_routes=rules_routes(store))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:5681") as c:
        assert (await c.put("/meshes/default/dataplanes/web-1", json=WEB)).status_code == 201
        url = "/meshes/default/meshtimeouts/web-to-backend"
        assert (await c.put(url, json=WEB_TIMEOUT)).status_code == 201
        yield c


def _by_type(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["type"]: entry for entry in body["rules"]}


async def test_rules_of_a_dataplane(client: httpx.AsyncClient) -> None:
    r = await client.get("/meshes/default/dataplanes/web-1/_rules")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["resource"] == {
        "type": "Dataplane",
        "mesh": "default",
        "name": "web-1",
        "labels": {},
    }
    rules = _by_type(body)
    assert sorted(rules) == [
        "MeshCircuitBreaker",
        "MeshRetry",
        "MeshTimeout",
        "MeshTrafficPermission",
    ]
    timeout = rules["MeshTimeout"]
    any_service, backend = timeout["toRules"]
    assert any_service["matchers"] == []
    assert any_service["conf"]["http"]["requestTimeout"] == "15s"
    assert backend["matchers"] == [{"key": "kuma.io/service", "value": "backend"}]
    assert backend["conf"]["http"] == {"requestTimeout": "2s", "streamIdleTimeout": "30m"}
    assert [o["resourceMeta"]["name"] for o in backend["origin"]] == [
        "mesh-timeout-all-default",
        "web-to-backend",
    ]
    (inbound,) = timeout["fromRules"]
    assert inbound["inbound"] == {"port": 10001, "tags": {"kuma.io/service": "web"}}
    assert inbound["rules"][0]["conf"]["connectionTimeout"] == "5s"
    permission = rules["MeshTrafficPermission"]["fromRules"][0]["rules"]
    assert permission == [
        {
            "matchers": [],
            "conf": {"action": "Allow"},
            "origin": [
                {
                    "resourceMeta": {
                        "type": "MeshTrafficPermission",
                        "mesh": "default",
                        "name": "allow-all-default",
                    }
                }
            ],
        }
    ]


async def test_unknown_dataplane(client: httpx.AsyncClient) -> None:
    r = await client.get("/meshes/default/dataplanes/nope/_rules")
    assert r.status_code == 404
    assert r.json()["details"] == 'Dataplane "nope" in mesh "default" not found'


async def test_ctl_table(client: httpx.AsyncClient) -> None:
    body = (await client.get("/meshes/default/dataplanes/web-1/_rules")).json()
    rows = rule_rows(body)
    assert all(len(row) == len(RULES_HEADERS) for row in rows)
    assert [
        "MeshTimeout",
        "to",
        "kuma.io/service=backend",
        "mesh-timeout-all-default,web-to-backend",
        "connectionTimeout=5s idleTimeout=1h http.requestTimeout=2s http.streamIdleTimeout=30m",
    ] in rows
    assert [
        "MeshTrafficPermission",
        "from",
        ":10001 from *",
        "allow-all-default",
        "action=Allow",
    ] in rows


def test_flatten() -> None:
    assert flatten({"a": {"b": 1, "c": ["X", "Y"]}, "d": [{"e": 1}]}) == [
        "a.b=1",
        "a.c=[X Y]",
        "d=[e=1]",
    ]
