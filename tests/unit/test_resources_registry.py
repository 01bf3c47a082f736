"""The registry of resource types: one entry makes a type known to the API, ctl and the
reconciler's inputs; internal types are never served."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from kumadp.cp.api import create_app
from kumadp.cp.defaults import ensure_default_mesh
from kumadp.cp.mesh_state import state_inputs
from kumadp.cp.store import MemoryStore
from kumadp.ctl.client import ApiClient
from kumadp.ctl.kinds import kind_named, kinds_of
from kumadp.ctl.resources import get, parse_documents
from kumadp.resources import REGISTRY, ValidationError, parse_resource
from kumadp.resources.registry import (
    MESH_CA_TYPE,
    VIRTUAL_IPS_TYPE,
    Registry,
    ResourceType,
    Scope,
    Sync,
    default_registry,
)

BASE_URL = "http://127.0.0.1:5681"


@dataclass(frozen=True)
class MeshWidget:
    """A made-up policy: the registry entry below is all it takes to serve it."""

    mesh: str
    name: str
    size: int

    type = "MeshWidget"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "mesh": self.mesh, "name": self.name, "size": self.size}


def parse_widget(doc: Any) -> MeshWidget:
    size = doc.get("size") if isinstance(doc, dict) else None
    if not isinstance(size, int) or size < 1:
        raise ValidationError.single("size", "must be a positive integer")
    return MeshWidget(mesh=doc["mesh"], name=doc["name"], size=size)


WIDGET = ResourceType(
    "MeshWidget",
    Scope.MESH,
    Sync.GLOBAL_TO_ZONE,
    plural="meshwidgets",
    parse=parse_widget,
    model=MeshWidget,
    policy=True,
    aliases=("mw",),
)


def with_widget() -> Registry:
    registry = default_registry()
    registry.register(WIDGET)
    return registry


async def test_a_registered_type_gets_api_routes() -> None:
    store = MemoryStore()
    await ensure_default_mesh(store)
    app = create_app(store, registry=with_widget())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as c:
        doc = {"type": "MeshWidget", "mesh": "default", "name": "w1", "size": 3}
        assert (await c.put("/meshes/default/meshwidgets/w1", json=doc)).status_code == 201
        listed = (await c.get("/meshwidgets")).json()
        assert [(i["name"], i["size"]) for i in listed["items"]] == [("w1", 3)]
        assert (await c.get("/meshes/default/meshwidgets/w1")).json()["size"] == 3
        bad = await c.put("/meshes/default/meshwidgets/w2", json={**doc, "name": "w2", "size": 0})
        assert bad.status_code == 400
        assert bad.json()["causes"] == [{"field": "size", "message": "must be a positive integer"}]
        # Deleting the mesh takes its resources of every served type with it.
        assert (await c.delete("/meshes/default")).status_code == 200
        assert await store.list("MeshWidget") == []
    # The default registry does not know it.
    plain = create_app(MemoryStore())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=plain), base_url=BASE_URL) as c:
        assert (await c.get("/meshwidgets")).status_code == 404


def test_a_registered_type_works_in_ctl() -> None:
    registry = with_widget()
    kinds = kinds_of(registry)
    kind = kind_named("mw", kinds)
    assert (kind.plural, kind.singular, kind.mesh_scoped) == ("meshwidgets", "meshwidget", True)
    assert kind_named("MeshWidgets", kinds) is kind
    (document,) = parse_documents(
        "type: MeshWidget\nmesh: default\nname: w1\nsize: 3\n", [], "w.yaml", registry
    )
    assert document.path == "/meshes/default/meshwidgets/w1"

    def serve(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/meshes/default":  # ctl checks that the mesh exists
            return httpx.Response(200, json={"type": "Mesh", "name": "default"})
        assert request.url.path == "/meshes/default/meshwidgets"
        item = {"type": "MeshWidget", "mesh": "default", "name": "w1", "size": 3}
        return httpx.Response(200, json={"total": 1, "items": [item], "next": None})

    client = ApiClient(BASE_URL, transport=httpx.MockTransport(serve))
    text = get(client, kind, mesh="default", now=datetime.now(UTC))
    assert text.splitlines() == ["MESH      NAME   TARGET   AGE", "default   w1     -        -"]
    # Not registered: ctl refuses it, naming what it knows.
    with pytest.raises(Exception, match="supported: meshes, dataplanes, meshtrafficpermissions"):
        kind_named("mw")


def test_a_registered_policy_is_an_input_of_the_mesh_state() -> None:
    assert "MeshWidget" in state_inputs(with_widget())
    assert "MeshWidget" not in state_inputs()
    assert {"Mesh", "Dataplane", "MeshTrafficPermission", VIRTUAL_IPS_TYPE} <= state_inputs()


RESILIENCE = [
    ("MeshTimeout", "meshtimeouts"),
    ("MeshRetry", "meshretries"),
    ("MeshCircuitBreaker", "meshcircuitbreakers"),
    ("MeshHealthCheck", "meshhealthchecks"),
    ("MeshLoadBalancingStrategy", "meshloadbalancingstrategies"),
]


def test_the_default_registry() -> None:
    served = [(t.name, t.plural, t.scope) for t in REGISTRY.served()]
    assert served == [
        ("Mesh", "meshes", Scope.GLOBAL),
        ("Dataplane", "dataplanes", Scope.MESH),
        ("MeshTrafficPermission", "meshtrafficpermissions", Scope.MESH),
        *((name, plural, Scope.MESH) for name, plural in RESILIENCE),
        ("Zone", "zones", Scope.GLOBAL),
        ("ZoneIngress", "zoneingresses", Scope.GLOBAL),
        ("ZoneEgress", "zoneegresses", Scope.GLOBAL),
    ]
    policies = ["MeshTrafficPermission", *(name for name, _ in RESILIENCE)]
    assert [t.name for t in REGISTRY.policies()] == policies
    assert [t.name for t in REGISTRY.synced(Sync.GLOBAL_TO_ZONE)] == [
        "Mesh",
        *policies,
        "SigningPublicKey",  # the public half only: zones verify, never sign
        "TokenRevocations",
        "MeshTrustBundle",  # a mesh root and CRLs: public, never the root's key
    ]
    assert [t.name for t in REGISTRY.synced(Sync.ZONE_TO_GLOBAL)] == [
        "Dataplane",
        "DataplaneInsight",
        "ZoneIngress",
        "ZoneIngressInsight",
        "ZoneEgress",
        "ZoneEgressInsight",
    ]
    # what the global CP passes on from one zone to the others
    assert [t.name for t in REGISTRY.relayed()] == ["ZoneIngress"]
    internal = {t.name for t in REGISTRY.synced(Sync.INTERNAL)}
    assert {
        VIRTUAL_IPS_TYPE,
        MESH_CA_TYPE,
        "SigningKey",
        "ControlPlaneInstance",
        "DataplaneConnection",
        "DataplanePending",
        "Config",
        "ZoneIntermediateCA",  # the global CP's record of the zone intermediates it signed
        "ZoneCARefusal",
    } == internal
    assert {t.name for t in REGISTRY.synced(Sync.NONE)} == {"Zone", "ZoneInsight"}
    assert not any(REGISTRY[name].served for name in internal)


def test_internal_types_cannot_be_written_by_users() -> None:
    with pytest.raises(ValidationError, match='unknown type "VirtualIPs"'):
        parse_resource({"type": VIRTUAL_IPS_TYPE, "mesh": "default", "name": "vips"})


def test_registration_refuses_duplicates_and_unparseable_served_types() -> None:
    registry = with_widget()
    with pytest.raises(ValueError, match="already registered"):
        registry.register(WIDGET)
    with pytest.raises(ValueError, match="plural meshwidgets"):
        registry.register(
            ResourceType("Other", Scope.MESH, Sync.NONE, plural="meshwidgets", parse=parse_widget)
        )
    with pytest.raises(ValueError, match="need a parser"):
        registry.register(ResourceType("NoParser", Scope.GLOBAL, Sync.NONE, plural="noparsers"))
    assert "MeshWidget" not in REGISTRY  # registries are independent
