"""multizone: a global CP and zone CPs as real processes, each figure beside a baseline
measured in the same run.

- policy written on the global CP -> in force in a zone's Envoy (its config dump shows the
  new RBAC principal), p50/p99; baseline: the same write on a standalone CP -> its Envoy;
- dataplane registered in a zone -> in the global CP's inventory, p99; baseline: in the
  zone's own API;
- a zone's full sync, 1,000 dataplanes up and 200 policies down (the zone had only the
  mesh, then was cut off while both were written): time (from the KDS session's connect time
  the global CP records), and the global CP's RSS per zone connected (baseline: the global CP
  with the same policies, the zone cut off);
- a zone's reconnect after a cut with no changes: resources rewritten on either side (every
  synced resource's ``modificationTime`` compared before and after; target 0).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from bench.convergence import admin_get
from bench.core import QUIET, Figure, Options, close_fast, percentile, rss_mb, start_quiet_cp
from kumadp.cp.kds.catalog import sync_types
from kumadp.cp.kds.mapping import copy_name
from kumadp.resources.registry import REGISTRY, Sync
from testkit.mesh import Agent, ControlPlane, MeshEnv
from testkit.multizone import MTLS, permission, start_global, start_zone, zone_online
from testkit.procs import free_port, wait_until
from testkit.tcp_proxy import TcpProxy


def timeout_policy(name: str) -> dict[str, Any]:
    return {
        "type": "MeshTimeout",
        "mesh": "default",
        "name": name,
        "spec": {
            "targetRef": {"kind": "MeshService", "name": name},
            "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "42s"}}],
        },
    }


def dataplane(name: str, port: int) -> dict[str, Any]:
    return {
        "type": "Dataplane",
        "mesh": "default",
        "name": name,
        "networking": {
            "address": "127.0.0.1",
            "inbound": [{"port": port, "servicePort": port + 1, "tags": {"kuma.io/service": name}}],
        },
    }


# -- policy -> Envoy --------------------------------------------------------------------------
def _policy_trials(
    client: httpx.Client, writer: ControlPlane, agent: Agent, n: int, tag: str
) -> list[float]:
    samples = []
    for i in range(n):
        caller = f"caller-{tag}-{i}"
        path = f"/meshes/default/meshtrafficpermissions/bench-{tag}-{i}"
        t0 = time.monotonic()
        resp = client.put(
            writer.url + path, json=permission("Deny", name=f"bench-{tag}-{i}", caller=caller)
        )
        assert resp.status_code == 201, resp.text
        asyncio.run(_until_in_dump(agent.admin_port, f"spiffe://default/{caller}", 15))
        samples.append(time.monotonic() - t0)
    return samples


async def _until_in_dump(port: int, needle: str, limit: float) -> None:
    t0 = time.monotonic()
    while needle not in await admin_get(port, "/config_dump?resource=dynamic_listeners"):
        if time.monotonic() - t0 > limit:
            raise TimeoutError(f"{needle} never reached the Envoy at admin :{port}")
        await asyncio.sleep(0.003)


def _serving_mtls(agent: Agent) -> bool:
    dump = httpx.get(f"http://127.0.0.1:{agent.admin_port}/config_dump", timeout=5).text
    return "DownstreamTlsContext" in dump


def _mtls_backend(env: MeshEnv, writer: ControlPlane, cp: ControlPlane, name: str) -> Agent:
    doc = {"type": "Mesh", "name": "default", "mtls": MTLS}
    httpx.put(writer.url + "/meshes/default", json=doc, timeout=5).raise_for_status()
    agent, _ = env.start_service(name, "backend", cp=cp, drain_time="0s", extra=QUIET)
    wait_until(lambda: _serving_mtls(agent), what=f"{name} serving mTLS", timeout=60)
    return agent


# -- helpers over the API ---------------------------------------------------------------------
def _total(cp: ControlPlane, path: str) -> int:
    return int(httpx.get(cp.url + path, params={"size": 1}, timeout=10).json()["total"])


def _times(cp: ControlPlane, paths: list[str]) -> dict[str, str]:
    """``modificationTime`` of every resource of ``paths`` (all pages), by path and name."""
    out: dict[str, str] = {}
    with httpx.Client(timeout=30) as client:
        for path in paths:
            url: str | None = cp.url + path + "?size=1000"
            while url:
                body = client.get(url).json()
                for item in body["items"]:
                    out[f"{path}/{item['name']}"] = item["modificationTime"]
                url = body.get("next")
    return out


def _subscription(global_cp: ControlPlane, zone: str) -> dict[str, Any]:
    doc = httpx.get(f"{global_cp.url}/zones+insights/{zone}", timeout=5).json()
    return dict(doc["zoneInsight"]["subscriptions"][-1])


def _epoch(rfc3339: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


# -- the benchmark ------------------------------------------------------------------------------
def bench_multizone(tmp: Path, opts: Options) -> list[Figure]:
    trials = 8 if opts.quick else 20
    figures: list[Figure] = []
    figures += _policy_and_inventory(tmp / "a", trials)
    figures += _sync_and_reconnect(tmp / "b", opts)
    return figures


def _policy_and_inventory(tmp: Path, trials: int) -> list[Figure]:
    tmp.mkdir()
    env = MeshEnv(tmp)
    try:
        standalone = start_quiet_cp(env)
        alone = _mtls_backend(env, standalone, standalone, "backend-s")
        global_cp = start_global(env, store="memory", extra=QUIET)
        zone = start_zone(env, "zone-a", global_cp, store="memory", extra=QUIET)
        in_zone = _mtls_backend(env, global_cp, zone, "backend-z")
        with httpx.Client(timeout=10) as client:
            base = _policy_trials(client, standalone, alone, trials, "s")
            multi = _policy_trials(client, global_cp, in_zone, trials, "z")
            seen_zone, seen_global = _inventory_trials(client, zone, global_cp, trials)
    finally:
        close_fast(env)
    base_name = "the same write on a standalone CP -> its Envoy, same run"
    figures = [
        Figure(
            f"multizone: policy on global -> in force in a zone's Envoy, p50 ({trials} trials)",
            percentile(multi, 50) * 1000, "ms", percentile(base, 50) * 1000, base_name, "-", None,
        ),
        Figure(
            f"multizone: policy on global -> in force in a zone's Envoy, p99 ({trials} trials)",
            percentile(multi, 99) * 1000, "ms", percentile(base, 99) * 1000, base_name,
            "<= 300 ms", percentile(multi, 99) * 1000 <= 300,
            "global API write, KDS push to the zone, the zone's store, reconcile, ADS to Envoy",
        ),
        Figure(
            f"multizone: dataplane registered in a zone -> in global's inventory, p99 "
            f"({trials} trials)",
            percentile(seen_global, 99) * 1000, "ms", percentile(seen_zone, 99) * 1000,
            "the same dataplane in the zone's own API, same trials", "<= 500 ms",
            percentile(seen_global, 99) * 1000 <= 500,
            f"p50 {percentile(seen_global, 50) * 1000:.1f} ms",
        ),
    ]  # fmt: skip
    return figures


def _inventory_trials(
    client: httpx.Client, zone: ControlPlane, global_cp: ControlPlane, trials: int
) -> tuple[list[float], list[float]]:
    in_zone, at_global = [], []
    for i in range(trials):
        name = f"inv-{i}"
        in_zone_url = f"{zone.url}/meshes/default/dataplanes/{name}"
        at_global_url = f"{global_cp.url}/meshes/default/dataplanes/" + copy_name(
            True, name, "default", "zone-a"
        )
        t0 = time.monotonic()
        resp = client.put(in_zone_url, json=dataplane(name, free_port()))
        assert resp.status_code == 201, resp.text
        _until_found(client, in_zone_url)
        in_zone.append(time.monotonic() - t0)
        _until_found(client, at_global_url)
        at_global.append(time.monotonic() - t0)
    return in_zone, at_global


def _until_found(client: httpx.Client, url: str, limit: float = 15.0) -> None:
    t0 = time.monotonic()
    while client.get(url).status_code != 200:
        if time.monotonic() - t0 > limit:
            raise TimeoutError(f"{url} never answered 200")
        time.sleep(0.001)


def _sync_and_reconnect(tmp: Path, opts: Options) -> list[Figure]:
    tmp.mkdir()
    dataplanes, policies = (200, 50) if opts.quick else (1000, 200)
    cut_for = 5.0 if opts.quick else 30.0
    env = MeshEnv(tmp)
    try:
        global_cp = start_global(env, store="memory", extra=QUIET)
        assert global_cp.kds_port is not None
        with TcpProxy("127.0.0.1", global_cp.kds_port) as proxy:
            # the zone joins and gets the mesh; then, cut off, it gets its dataplanes while
            # the global CP gets its policies: the sync after the cut is the whole content
            zone = start_zone(
                env, "zone-a", global_cp, kds_address=proxy.address, store="memory", extra=QUIET
            )
            proxy.cut()
            wait_until(lambda: not zone_online(global_cp, "zone-a"), timeout=60, what="cut")
            with httpx.Client(timeout=10) as client:
                for i in range(policies):
                    name = f"timeout-{i}"
                    path = f"/meshes/default/meshtimeouts/{name}"
                    resp = client.put(global_cp.url + path, json=timeout_policy(name))
                    assert resp.status_code == 201, resp.text
                for i in range(dataplanes):
                    name = f"dp-{i}"
                    resp = client.put(
                        f"{zone.url}/meshes/default/dataplanes/{name}",
                        json=dataplane(name, free_port()),
                    )
                    assert resp.status_code == 201, resp.text
            expected_policies = _total(global_cp, "/meshes/default/meshtimeouts")
            idle = rss_mb(global_cp.proc.proc.pid)
            proxy.restore()

            def synced() -> float | None:
                if _total(global_cp, "/meshes/default/dataplanes") < dataplanes:
                    return None
                if _total(zone, "/meshes/default/meshtimeouts") < expected_policies:
                    return None
                return time.time()

            done = wait_until(synced, timeout=120, interval=0.01, what="the initial sync")
            sync_s = done - _epoch(_subscription(global_cp, "zone-a")["connectTime"])
            with_zone = rss_mb(global_cp.proc.proc.pid)

            # a cut with no change on either side: what is rewritten when the zone returns
            types = len(sync_types(REGISTRY, Sync.GLOBAL_TO_ZONE)) + len(
                sync_types(REGISTRY, Sync.ZONE_TO_GLOBAL)
            )
            zone_paths = [
                "/meshes",
                "/meshes/default/meshtimeouts",
                "/meshes/default/meshtrafficpermissions",
            ]
            global_paths = ["/meshes/default/dataplanes"]
            before = _times(zone, zone_paths), _times(global_cp, global_paths)
            first = _subscription(global_cp, "zone-a")["id"]
            proxy.cut()
            wait_until(lambda: not zone_online(global_cp, "zone-a"), timeout=60, what="offline")
            time.sleep(cut_for)  # the cut itself is what is measured around: a fixed length
            proxy.restore()

            def back() -> bool:
                sub = _subscription(global_cp, "zone-a")
                acked = sub["status"]["total"]["responsesAcknowledged"]
                return sub["id"] != first and not sub.get("disconnectTime") and acked >= types

            wait_until(back, timeout=90, interval=0.05, what="the zone back and in sync")
            after = _times(zone, zone_paths), _times(global_cp, global_paths)
    finally:
        close_fast(env)
    rewritten_zone = sum(1 for k, v in after[0].items() if before[0].get(k) != v)
    rewritten_global = sum(1 for k, v in after[1].items() if before[1].get(k) != v)
    gone = len(before[0].keys() - after[0].keys()) + len(before[1].keys() - after[1].keys())
    synced_total = len(before[0]) + len(before[1])
    return [
        Figure(
            f"multizone: a zone's full sync, {dataplanes} dataplanes up and {policies} "
            "policies down",
            sync_s, "s", None, "", "-", None,
            "the zone had only the mesh; from the KDS session's connect time (recorded by the "
            "global CP) to both sides complete (API totals)",
        ),
        Figure(
            "multizone: global CP RSS per zone connected (that zone's copies included)",
            with_zone - idle, "MB", idle,
            f"the global CP with the same {policies} policies, the zone cut off",
            "-", None,
        ),
        Figure(
            f"multizone: resources rewritten after a {cut_for:.0f} s cut with no changes "
            "(both sides)",
            rewritten_zone + rewritten_global + gone, "resources", synced_total,
            "resources synced (what deleting and re-creating would rewrite)", "0",
            rewritten_zone + rewritten_global + gone == 0,
            f"zone side {rewritten_zone}, global side {rewritten_global}, deleted {gone}",
        ),
    ]  # fmt: skip


__all__ = ["bench_multizone"]
