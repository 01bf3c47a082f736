"""The global CP passes each zone's ingresses on to the other zones (over real gRPC and TLS,
in one process): never back to their own zone, not from a disabled zone, and a zone may not
claim another's ingress."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kumadp.cp.kds.mapping import copy_name
from kumadp.cp.store.base import Store
from testkit.kds import kds_global, kds_zone
from testkit.procs import until


def ingress(name: str, zone: str, address: str, *services: str) -> dict[str, Any]:
    return {
        "type": "ZoneIngress",
        "name": name,
        "zone": zone,
        "networking": {
            "address": address,
            "port": 10001,
            "advertisedAddress": address,
            "advertisedPort": 10001,
        },
        "availableServices": [
            {
                "mesh": "default",
                "instances": 1,
                "tags": {"kuma.io/service": s, "kuma.io/zone": zone},
            }
            for s in services
        ],
    }


async def ingresses(store: Store) -> dict[str, dict[str, Any]]:
    return {r.name: r.spec for r in await store.list("ZoneIngress")}


async def zones_of(store: Store) -> set[str]:
    return {spec["zone"] for spec in (await ingresses(store)).values()}


async def test_ingresses_reach_the_other_enabled_zones(tmp_path: Path) -> None:
    async with (
        kds_global() as g,
        kds_zone(g, "zone-a", tmp=tmp_path) as a,
        kds_zone(g, "zone-b", tmp=tmp_path) as b,
        kds_zone(g, "zone-c", tmp=tmp_path) as c,
    ):
        await b.store.put("ZoneIngress", "", "zi-1", ingress("zi-1", "zone-b", "10.0.2.1", "x"))
        await c.store.put("ZoneIngress", "", "zi-1", ingress("zi-1", "zone-c", "10.0.3.1", "y"))

        async def everywhere() -> bool:
            return (
                await zones_of(a.store) == {"zone-b", "zone-c"}
                and await zones_of(b.store) == {"zone-b", "zone-c"}
                and await zones_of(c.store) == {"zone-b", "zone-c"}
            )

        await until(everywhere, "each zone has the other zones' ingresses", within=10)
        at_a = await ingresses(a.store)
        from_b = copy_name(False, "zi-1", "", "zone-b")  # the name global stored it under
        assert set(at_a) == {from_b, copy_name(False, "zi-1", "", "zone-c")}
        assert at_a[from_b]["labels"]["kuma.io/origin"] == "global"
        assert at_a[from_b]["labels"]["kuma.io/zone"] == "zone-b"
        assert at_a[from_b]["availableServices"][0]["tags"]["kuma.io/service"] == "x"
        # a zone keeps its own ingress and gets no copy of it back
        at_b = await ingresses(b.store)
        assert set(at_b) == {"zi-1", copy_name(False, "zi-1", "", "zone-c")}
        assert "labels" not in at_b["zi-1"]

        # a change reaches the other zones (the available services follow the instances)
        await b.store.put(
            "ZoneIngress", "", "zi-1", ingress("zi-1", "zone-b", "10.0.2.1", "x", "z")
        )

        async def updated() -> bool:
            found = (await ingresses(a.store)).get(from_b) or {}
            return len(found.get("availableServices", [])) == 2

        await until(updated, "the change at zone-a", within=10)

        # zone-b disabled on global: its ingress disappears from the other zones
        await g.store.put(
            "Zone", "", "zone-b", {"type": "Zone", "name": "zone-b", "enabled": False}
        )

        async def gone() -> bool:
            return await zones_of(a.store) == {"zone-c"} == await zones_of(c.store)

        await until(gone, "zone-b's ingress gone from zone-a and zone-c", within=10)
        await g.store.put("Zone", "", "zone-b", {"type": "Zone", "name": "zone-b", "enabled": True})
        await until(everywhere, "zone-b's ingress back", within=10)


async def test_a_zone_cannot_send_another_zones_ingress(tmp_path: Path) -> None:
    async with kds_global() as g, kds_zone(g, "zone-a", tmp=tmp_path) as a:
        await a.store.put("ZoneIngress", "", "mine", ingress("mine", "zone-a", "10.0.1.1", "x"))
        await a.store.put("ZoneIngress", "", "liar", ingress("liar", "zone-b", "10.0.1.2", "x"))
        unnamed = ingress("unnamed", "zone-a", "10.0.1.3", "x")
        del unnamed["zone"]
        await a.store.put("ZoneIngress", "", "unnamed", unnamed)

        expected = {copy_name(False, name, "", "zone-a") for name in ("mine", "unnamed")}

        async def arrived() -> bool:
            return set(await ingresses(g.store)) == expected  # not the liar

        await until(arrived, "zone-a's own ingresses at global", within=20)
        at_global = await ingresses(g.store)
        # one that names no zone is its sender's
        assert at_global[copy_name(False, "unnamed", "", "zone-a")]["zone"] == "zone-a"
