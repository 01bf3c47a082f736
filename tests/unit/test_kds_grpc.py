"""KDS over real gRPC and TLS in one process: a global CP's KDS server and zone clients,
each on its own store."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from kumadp.cp.jwt import TokenError
from kumadp.cp.kds.mapping import copy_name
from kumadp.cp.public_keys import StoredPublicKeys
from kumadp.cp.store import MemoryStore
from kumadp.cp.tokens import TokenIssuer
from kumadp.resources import default_traffic_permission
from kumadp.wire import kds as wire
from testkit.kds import GlobalKds, kds_global, kds_zone
from testkit.procs import until
from tests.unit.test_kds_sync import CountingStore, dataplane, mesh, mtp, names, put

MTLS_MESH: dict[str, Any] = {
    "type": "Mesh",
    "name": "secure",
    "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]},
}


async def seed(store: MemoryStore) -> None:
    await put(store, mesh("default"))
    await put(store, default_traffic_permission("default").to_dict())


async def insight(g: GlobalKds, zone: str) -> dict[str, Any] | None:
    stored = await g.store.get("ZoneInsight", "", zone)
    return stored.spec if stored is not None else None


async def test_a_zone_syncs_both_ways_and_shows_in_the_zone_insight(tmp_path: Path) -> None:
    global_store = MemoryStore()
    await seed(global_store)
    async with kds_global(global_store) as g, kds_zone(g, "zone-a", tmp=tmp_path) as z:
        hashed = copy_name(True, "allow-all-default", "default", None)
        await until(lambda: names(z.store, "MeshTrafficPermission"), "the policy in the zone")
        assert await names(z.store, "MeshTrafficPermission") == {hashed}
        await put(z.store, dataplane("web-1"))
        copy = copy_name(True, "web-1", "default", "zone-a")
        await until(lambda: names(global_store, "Dataplane"), "the dataplane at global")
        stored = await global_store.get("Dataplane", "default", copy)
        assert stored is not None
        assert stored.spec["labels"][wire.ZONE_LABEL] == "zone-a"
        assert stored.spec["labels"][wire.ORIGIN_LABEL] == "zone"

        zone = await global_store.get("Zone", "", "zone-a")
        assert zone is not None and zone.spec["enabled"] is True
        assert g.zones.online("zone-a") and z.client.connected

        async def counted() -> bool:
            doc = await insight(g, "zone-a")
            if doc is None:
                return False
            sub = doc["subscriptions"][-1]
            stat = sub["status"]["stat"]
            return (
                stat.get("Dataplane", {}).get("responsesAcknowledged", 0) >= 1
                and stat.get("MeshTrafficPermission", {}).get("responsesAcknowledged", 0) >= 1
            )

        await until(counted, "per-type counters in the ZoneInsight")
        doc = await insight(g, "zone-a")
        assert doc is not None
        (sub,) = doc["subscriptions"]
        assert sub["globalInstanceId"] == "global-1" and sub["zoneInstanceId"] == "zone-a-instance"
        assert sub["version"] == {"kumaCp": {"version": "test"}}
        assert "disconnectTime" not in sub
    # the zone left: its subscription is closed
    stored_insight = await global_store.get("ZoneInsight", "", "zone-a")
    assert stored_insight is not None
    assert stored_insight.spec["subscriptions"][-1].get("disconnectTime")


async def test_no_private_key_is_in_any_kds_message(tmp_path: Path) -> None:
    global_store = MemoryStore()
    await seed(global_store)
    await put(global_store, MTLS_MESH)
    issuer = TokenIssuer(global_store)
    token = await issuer.issue("default", "web-1")  # creates the RSA signing key
    from kumadp.cp.ca import MeshCAs
    from kumadp.resources import parse_mesh

    await MeshCAs(global_store).ca_for(parse_mesh(MTLS_MESH))  # a CA, its key in the store
    assert await global_store.list("SigningKey") and await global_store.list("MeshCA")
    async with kds_global(global_store) as g, kds_zone(g, "zone-a", tmp=tmp_path) as z:
        await put(z.store, dataplane("web-1"))
        await until(lambda: names(z.store, "SigningPublicKey"), "the public key in the zone")
        await until(lambda: names(global_store, "Dataplane"), "the dataplane at global")
        # the zone verifies the global's token with the public key alone, and cannot sign
        public_keys = StoredPublicKeys(z.store, "dataplane")
        zone_tokens = TokenIssuer(z.store, public_keys=public_keys)
        claims = await zone_tokens.verify(token, mesh="default", name="web-1")
        assert claims.name == "web-1"
        with pytest.raises(TokenError, match="generate tokens on the global"):
            await zone_tokens.issue("default", "x")
        zone_tokens.close()
        public_keys.close()
        assert not await z.store.list("SigningKey") and not await z.store.list("MeshCA")
    issuer.close()
    assert len(g.messages) > 5
    methods = {method for method, _ in g.messages}
    assert methods == {wire.GLOBAL_TO_ZONE_METHOD, wire.ZONE_TO_GLOBAL_METHOD}
    for method, data in g.messages:
        assert b"PRIVATE KEY" not in data, method
        assert b"keyPem" not in data, method


async def test_a_reconnect_writes_nothing_on_either_side(tmp_path: Path) -> None:
    global_store, zone_store = CountingStore(), CountingStore()
    await seed(global_store)
    for n in range(5):
        await put(global_store, mtp("default", f"p-{n}"))
    for n in range(5):
        await put(zone_store, dataplane(f"web-{n}"))
    async with kds_global(global_store) as g:
        async with kds_zone(g, "zone-a", zone_store, tmp=tmp_path):
            await until(
                lambda: len_is(names(global_store, "Dataplane"), 5), "the dataplanes at global"
            )
            await until(
                lambda: len_is(names(zone_store, "MeshTrafficPermission"), 6), "the policies"
            )
        global_store.reset()
        zone_store.reset()
        async with kds_zone(g, "zone-a", zone_store, tmp=tmp_path) as z:
            await until(lambda: g.zones.online("zone-a") and z.client.connected, "reconnected")
            # a change after the reconnect arrives: so the streams are up and settled
            await put(global_store, mtp("default", "after"))
            await until(
                lambda: len_is(names(zone_store, "MeshTrafficPermission"), 7), "the new policy"
            )
        synced = {"Mesh", "MeshTrafficPermission", "Dataplane", "DataplaneInsight"}
        assert {t: n for t, n in zone_store.puts.items() if t in synced} == {
            "MeshTrafficPermission": 1
        }
        assert {t: n for t, n in global_store.puts.items() if t in synced} == {
            "MeshTrafficPermission": 1  # the test's own write
        }
        assert not zone_store.deletes and not global_store.deletes.get("Dataplane")


async def len_is(names_coro: Any, n: int) -> bool:
    return len(await names_coro) == n


async def test_a_second_zone_cp_with_the_same_name_is_refused_until_the_first_goes(
    tmp_path: Path,
) -> None:
    async with kds_global() as g:
        async with kds_zone(g, "zone-a", instance="first", tmp=tmp_path) as first:
            await until(lambda: first.client.connected, "the first connected")
            async with kds_zone(g, "zone-a", instance="second", tmp=tmp_path) as second:
                await until(lambda: second.client.failures >= 3, "the second refused, retrying")
                assert not second.client.connected
                session = g.zones.session("zone-a")
                assert session is not None and session.identity.instance == "first"
            assert first.client.connected and g.zones.online("zone-a")
        async with kds_zone(g, "zone-a", instance="second", tmp=tmp_path) as second:
            await until(lambda: second.client.connected, "the second takes over once free")
            session = g.zones.session("zone-a")
            assert session is not None and session.identity.instance == "second"


async def test_trust_by_skip_verify(tmp_path: Path) -> None:
    async with kds_global() as g, kds_zone(g, "zone-a", skip_verify=True) as z:
        await until(lambda: z.client.connected, "connected without a CA file")


async def test_a_wrong_ca_is_not_trusted(tmp_path: Path) -> None:
    from kumadp.cp.server_tls import ensure_server_certificate

    other = tmp_path / "other-ca.pem"
    other.write_bytes(ensure_server_certificate(None, []).ca_pem)
    async with kds_global() as g, kds_zone(g, "zone-a", ca_file=other) as z:
        await until(lambda: z.client.failures >= 2, "refused handshakes")
        assert not z.client.connected and not g.zones.online("zone-a")


async def test_a_stuck_zone_to_global_stream_is_reopened_by_the_zone(
    tmp_path: Path, monkeypatch: Any
) -> None:
    from kumadp.cp.kds.global_receiver import GlobalReceiver

    stuck = {"left": 1}
    apply = GlobalReceiver.apply

    async def hang_once(self: GlobalReceiver, update: Any) -> Any:
        if stuck["left"]:
            stuck["left"] -= 1
            await asyncio.Event().wait()  # never answers: no ACK ever comes back
        return await apply(self, update)

    monkeypatch.setattr(GlobalReceiver, "apply", hang_once)
    zone_store, global_store = MemoryStore(), MemoryStore()
    await seed(global_store)
    await put(zone_store, dataplane("web-1"))
    async with (
        kds_global(global_store) as g,
        kds_zone(g, "zone-a", zone_store, tmp=tmp_path, stuck_timeout=0.4) as z,
    ):
        await until(
            lambda: names(g.store, "Dataplane"), "the dataplane after the re-dial", within=10
        )
        assert z.client.failures >= 1 and stuck["left"] == 0
