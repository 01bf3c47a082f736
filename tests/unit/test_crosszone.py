"""Cross-zone state of a zone CP: the ingresses' availableServices kept current from the
dataplanes (push, written only when they differ), the other zones' services in the mesh
view (mTLS only, with the reason otherwise), and the VIPs of services only other zones have."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kumadp.cp.available_services import AvailableServicesUpdater, available_services
from kumadp.cp.generate.crosszone import remote_endpoints
from kumadp.cp.mesh_state import MeshStateBuilder
from kumadp.cp.provisioners import VipProvisioner
from kumadp.cp.registration import DataplaneRegistry
from kumadp.cp.store import MemoryStore
from kumadp.cp.vips import VipAllocator
from kumadp.resources import Mesh, parse_dataplane, parse_mesh
from kumadp.resources.zone_proxies import ZoneEgress, ZoneProxyNetworking, parse_zone_ingress
from testkit.procs import until

MTLS = {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}


def dp(name: str, service: str, *, mesh: str = "default", **inbound: Any) -> dict[str, Any]:
    return {
        "type": "Dataplane",
        "mesh": mesh,
        "name": name,
        "networking": {
            "address": "10.0.0.1",
            "inbound": [
                {"port": 10001, "tags": {"kuma.io/service": service, "kuma.io/zone": "zone-b"}}
                | inbound
            ],
        },
    }


def zi(name: str, zone: str, services: list[tuple[str, int]], **labels: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "type": "ZoneIngress",
        "name": name,
        "zone": zone,
        "networking": {
            "address": "10.0.9.1",
            "port": 10001,
            "advertisedAddress": f"203.0.113.{len(zone)}",
            "advertisedPort": 10001,
        },
        "availableServices": [
            {
                "mesh": "default",
                "instances": n,
                "tags": {"kuma.io/service": s, "kuma.io/zone": zone},
            }
            for s, n in services
        ],
    }
    if labels:
        doc["labels"] = labels
    return doc


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    s = MemoryStore()
    await s.put("Mesh", "", "default", {"type": "Mesh", "name": "default"})
    yield s
    await s.close()


@contextlib.asynccontextmanager
async def running(component: Any) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.ensure_future(component.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


def test_available_services_count_serving_instances_per_tags() -> None:
    dataplanes = [
        parse_dataplane(dp("b-1", "backend")),
        parse_dataplane(dp("b-2", "backend")),
        parse_dataplane(dp("b-3", "backend", state="NotReady")),
        parse_dataplane(dp("b-4", "backend", health={"ready": False})),
        parse_dataplane(dp("b-5", "backend")),  # pending: not up yet
        parse_dataplane(dp("p-1", "payments", mesh="shop")),
    ]
    found = available_services(dataplanes, {"default": {"b-5"}})
    assert [(s.mesh, s.service, s.instances) for s in found] == [
        ("default", "backend", 2),
        ("shop", "payments", 1),
    ]


async def test_the_zones_ingresses_follow_its_dataplanes(store: MemoryStore) -> None:
    await store.put("ZoneIngress", "", "zi-1", zi("zi-1", "zone-b", []))
    remote = zi("zi-9-x", "zone-c", [("other", 3)], **{"kuma.io/origin": "global"})
    await store.put("ZoneIngress", "", "zi-9-x", remote)
    updater = AvailableServicesUpdater(store)

    async def listed() -> list[tuple[str, int]]:
        stored = await store.get("ZoneIngress", "", "zi-1")
        assert stored is not None
        return [
            (s["tags"]["kuma.io/service"], s["instances"])
            for s in stored.spec.get("availableServices", [])
        ]

    async with running(updater):
        await store.put("Dataplane", "default", "b-1", dp("b-1", "backend"))
        await until(lambda: _equals(listed(), [("backend", 1)]), "backend listed")
        await store.put("Dataplane", "default", "b-2", dp("b-2", "backend"))
        await until(lambda: _equals(listed(), [("backend", 2)]), "two instances")
        writes = updater.writes
        # a change that changes nothing is not written
        await store.put("Dataplane", "default", "b-2", dp("b-2", "backend", servicePort=8080))
        await asyncio.sleep(0.05)
        assert updater.writes == writes
        await store.delete("Dataplane", "default", "b-1")
        await until(lambda: _equals(listed(), [("backend", 1)]), "one left")
    # the other zone's copy is never touched
    stored = await store.get("ZoneIngress", "", "zi-9-x")
    assert stored is not None and stored.version == 1


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


def test_remote_endpoints_need_mtls_and_an_egress_when_asked() -> None:
    ingresses = [
        parse_zone_ingress(zi("zi-a", "zone-a", [("backend", 1)])),  # this zone's own
        parse_zone_ingress(zi("zi-b", "zone-b", [("backend", 2), ("payments", 1)])),
    ]
    plain = Mesh(name="default")
    cross = remote_endpoints(plain, mtls=False, zone="zone-a", ingresses=ingresses)
    assert cross.endpoints == {}
    assert cross.reason is not None
    assert cross.reason.startswith('mesh "default" has no mTLS: 2 services in other zones')
    secure = parse_mesh({"type": "Mesh", "name": "default", "mtls": MTLS})
    cross = remote_endpoints(secure, mtls=True, zone="zone-a", ingresses=ingresses)
    assert cross.reason is None
    ((endpoint,),) = [cross.endpoints["backend"]]
    assert (endpoint.address, endpoint.port, endpoint.weight) == ("203.0.113.6", 10001, 2)
    assert endpoint.remote and endpoint.tags["kuma.io/zone"] == "zone-b"
    assert remote_endpoints(secure, mtls=True, zone=None, ingresses=ingresses).endpoints == {}

    egress_mesh = parse_mesh(
        {"type": "Mesh", "name": "default", "mtls": MTLS, "routing": {"zoneEgress": True}}
    )
    cross = remote_endpoints(egress_mesh, mtls=True, zone="zone-a", ingresses=ingresses)
    assert cross.endpoints == {} and cross.reason is not None
    assert "has routing.zoneEgress on but zone zone-a has no ZoneEgress" in cross.reason
    egress = ZoneEgress("ze-1", ZoneProxyNetworking("127.0.0.1", 10002), zone="zone-a")
    cross = remote_endpoints(
        egress_mesh, mtls=True, zone="zone-a", ingresses=ingresses, egresses=[egress]
    )
    ((through,),) = [cross.endpoints["backend"]]
    assert (through.address, through.port, through.weight) == ("127.0.0.1", 10002, 2)


async def test_the_view_gets_other_zones_services_and_says_why_not(store: MemoryStore) -> None:
    await store.put("Dataplane", "default", "web-1", dp("web-1", "web"))
    remote = zi("zi-b-x", "zone-b", [("backend", 2)], **{"kuma.io/origin": "global"})
    await store.put("ZoneIngress", "", "zi-b-x", remote)
    builder = MeshStateBuilder(store, DataplaneRegistry(store), zone="zone-a")
    state = await builder.build("default")
    assert state is not None and state.view.remote == {}
    assert state.cross_zone_reason is not None and "has no mTLS" in state.cross_zone_reason
    assert builder.cross_zone_reasons["default"] == state.cross_zone_reason

    secure = {"type": "Mesh", "name": "default", "mtls": MTLS}
    await store.put("Mesh", "", "default", secure)
    state = await builder.build("default")  # no CA store given: mTLS as the mesh says
    assert state is not None and state.cross_zone_reason is None
    assert [e.weight for e in state.view.endpoints_of("backend")] == [2]
    assert state.view.local_endpoints_of("backend") == ()
    assert "default" not in builder.cross_zone_reasons


async def test_services_of_other_zones_get_vips(store: MemoryStore) -> None:
    await store.put("Dataplane", "default", "web-1", dp("web-1", "web"))
    vips = VipAllocator(store)
    provisioner = VipProvisioner(store, vips)
    async with running(provisioner):
        remote = zi("zi-b-x", "zone-b", [("backend", 2)], **{"kuma.io/origin": "global"})
        await store.put("ZoneIngress", "", "zi-b-x", remote)
        own = zi("zi-a", "zone-a", [("local-only", 1)])  # this zone's own: no VIP from it

        async def allocated() -> bool:
            found = await vips.get("default")
            return set(found) == {"web", "backend"}

        await store.put("ZoneIngress", "", "zi-a", own)
        await until(allocated, "a VIP for backend, which only zone-b has")
