"""KDS with zone tokens and zone intermediate CAs, over real gRPC and TLS in one process;
the zone filter (disabled zones) and the zone delete rules on a memory store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kumadp.cp.ca import MeshCAs
from kumadp.cp.kds.auth import ZoneTokenAuth
from kumadp.cp.kds.source import StoreSource
from kumadp.cp.kds.zone_filter import DisabledZones
from kumadp.cp.kds.zones import ZoneIdentity
from kumadp.cp.store import MemoryStore
from kumadp.cp.trust_bundles import TrustBundlePublisher
from kumadp.cp.zone_cas import ZoneCAs
from kumadp.cp.zone_intermediates import ZoneIntermediates
from kumadp.cp.zone_lifecycle import STILL_CONNECTED, ZoneStillConnected, delete_zone
from kumadp.cp.zone_tokens import ZoneTokens
from kumadp.resources import parse_mesh
from kumadp.resources.registry import MESH_CA_TYPE, ResourceType, Scope, Sync
from kumadp.wire import kds as wire
from kumadp.xds.stream import Code, StreamRejected
from testkit.kds import Running, kds_global, kds_zone
from testkit.procs import until
from tests.unit.test_kds_sync import dataplane, mesh, put

MTLS_MESH: dict[str, Any] = {
    "type": "Mesh",
    "name": "default",
    "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]},
}


async def test_zone_token_checks_say_which_one_failed() -> None:
    store = MemoryStore()
    tokens = ZoneTokens(store)
    auth = ZoneTokenAuth(tokens)
    me = ZoneIdentity(zone="zone-a", instance="i", session="s")

    async def refusal(token: str | None) -> StreamRejected:
        metadata = {"authorization": f"Bearer {token}"} if token is not None else {}
        with pytest.raises(StreamRejected) as caught:
            await auth(me, metadata)
        return caught.value

    missing = await refusal(None)
    assert missing.code is Code.UNAUTHENTICATED
    assert "no zone token" in missing.message and "--scope cp" in missing.message
    assert "invalid zone token" in (await refusal("garbage")).message
    ingress = await tokens.issue("zone-a", ["ingress"])
    assert "token scope is [ingress], not cp" in (await refusal(ingress)).message
    other = await refusal(await tokens.issue("zone-b", ["cp"]))
    assert other.code is Code.PERMISSION_DENIED
    assert other.message == (
        'zone token is for zone "zone-b", but this control plane connects as zone "zone-a" '
        "(client-id)"
    )
    good = await tokens.issue("zone-a", ["cp"])
    await auth(me, {"authorization": f"Bearer {good}"})
    claims = await tokens.verify(good, scope="cp")
    await tokens.revoke(claims.jti)
    assert "revoked" in (await refusal(good)).message
    tokens.close()


async def test_a_zone_gets_its_intermediate_over_kds_with_its_token(tmp_path: Path) -> None:
    global_store = MemoryStore()
    await put(global_store, MTLS_MESH)
    await MeshCAs(global_store).ca_for(parse_mesh(MTLS_MESH))
    tokens = ZoneTokens(global_store)
    book = ZoneCAs(global_store, MeshCAs(global_store, create=False))
    bundles = TrustBundlePublisher(global_store, MeshCAs(global_store, create=False))
    token = await tokens.issue("zone-a", ["cp"])
    async with (
        kds_global(
            global_store, authenticate=ZoneTokenAuth(tokens), sign_intermediate=book.handle
        ) as g,
        kds_zone(g, "zone-a", tmp=tmp_path, token=token) as z,
    ):
        manager = ZoneIntermediates(z.store, "zone-a", z.client.sign_intermediate)
        running = Running([bundles, manager])
        try:
            await until(lambda: z.store.get(MESH_CA_TYPE, "default", "ca-1"), "the intermediate")
            stored = await z.store.get(MESH_CA_TYPE, "default", "ca-1")
            assert stored is not None and stored.spec["zone"] == "zone-a"

            async def with_crls() -> bool:
                found = await z.store.get(MESH_CA_TYPE, "default", "ca-1")
                return found is not None and found.spec["trustCrlsPem"].count("BEGIN X509 CRL") == 2

            await until(with_crls, "the root's CRL and its own from the trust bundle")
        finally:
            await running.stop()
    signs = [data for method, data in g.messages if method == wire.SIGN_INTERMEDIATE_METHOD]
    assert len(signs) == 2  # the request and its answer
    assert not [m for _, m in g.messages if b"PRIVATE KEY" in m]
    tokens.close()


async def test_a_disabled_zone_stays_connected_but_its_resources_reach_no_other_zone() -> None:
    store = MemoryStore()
    registry_type = ResourceType("ZoneThing", Scope.GLOBAL, Sync.GLOBAL_TO_ZONE)
    source = StoreSource(
        store, [registry_type], wire.ORIGIN_GLOBAL, node_filter=DisabledZones(store)
    )
    for zone in ("zone-a", "zone-b", "zone-c"):
        await put(store, {"type": "Zone", "name": zone, "enabled": True})
        labels = {wire.ZONE_LABEL: zone}
        await put(store, {"type": "ZoneThing", "name": f"thing-{zone}", "labels": labels})
    await put(store, {"type": "ZoneThing", "name": "everyone"})
    running = Running([source])
    try:

        def seen(node: str) -> set[str]:
            snapshot = source.get_snapshot(node)
            return set(snapshot.packed("ZoneThing")) if snapshot is not None else set()

        await until(lambda: seen("zone-c"), "a snapshot")
        # never back to its own zone
        assert seen("zone-c") == {"everyone", "thing-zone-a", "thing-zone-b"}
        before = source.get_snapshot("zone-c")
        await put(store, {"type": "Zone", "name": "zone-a", "enabled": False})
        await until(lambda: "thing-zone-a" not in seen("zone-c"), "zone-a hidden")
        assert seen("zone-b") == {"everyone", "thing-zone-c"}
        after = source.get_snapshot("zone-c")
        assert before is not None and after is not None
        assert before.version("ZoneThing") != after.version("ZoneThing")
        await put(store, {"type": "Zone", "name": "zone-a", "enabled": True})
        await until(lambda: "thing-zone-a" in seen("zone-c"), "zone-a passed again")
    finally:
        await running.stop()


async def test_a_zone_is_deleted_only_once_disconnected_with_what_it_sent() -> None:
    store = MemoryStore()
    await put(store, mesh("default"))
    for zone in ("zone-a", "zone-b"):
        await put(store, {"type": "Zone", "name": zone, "enabled": True})
        await put(store, {"type": "ZoneInsight", "name": zone, "subscriptions": []})
        doc = dataplane(f"web-{zone}")
        doc["labels"] = {wire.ORIGIN_LABEL: wire.ORIGIN_ZONE, wire.ZONE_LABEL: zone}
        await put(store, doc)
        insight = {"type": "DataplaneInsight", "mesh": "default", "name": f"web-{zone}"}
        await put(store, {**insight, "labels": doc["labels"]})

    async def connected(zone: str) -> bool:
        return zone == "zone-a"

    with pytest.raises(ZoneStillConnected) as caught:
        await delete_zone(store, "zone-a", connected=connected)
    assert str(caught.value) == STILL_CONNECTED and caught.value.field == "zone"

    async def gone(zone: str) -> bool:
        return False

    assert await delete_zone(store, "zone-a", connected=gone) == 4  # zone, insight, dp, insight
    assert await delete_zone(store, "zone-a", connected=gone) is None
    left = {r.name for t in ("Dataplane", "DataplaneInsight") for r in await store.list(t)}
    assert left == {"web-zone-b"}
    assert await store.get("ZoneInsight", "", "zone-b") is not None
