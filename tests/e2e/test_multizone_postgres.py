"""A zone run by two zone CP instances on one PostgreSQL, under a global CP. Only the zone's
leader runs the KDS client. When it is SIGKILLed, global sees its streams end (the old
subscription gets its disconnect time at once); the other instance wins the lease and its
KDS connection is global's new subscription for the zone within about the lease (2 s here),
well inside global's short zone health timeout; its heartbeats keep the zone Online past a
whole timeout, and policies written on global afterwards still reach the zone."""

from __future__ import annotations

import signal
import time
from typing import Any

import httpx
import pytest

from testkit.mesh import ControlPlane, MeshEnv
from testkit.multizone import by_display_name, start_global, start_zone, zone_overview
from testkit.postgres import PostgresServer
from testkit.procs import wait_until
from tests.e2e.test_several_cps import instances, leader_of, migrate

pytestmark = pytest.mark.e2e

HEALTH_TIMEOUT = 6.0  # the global CP's zone health timeout (the default is 20 s)
LEASE = 2.0  # the zone instances' leader lease


def instance_id(cp: ControlPlane) -> str:
    """The instance id a CP process goes by (``...-<pid>``)."""
    return str(next(i["id"] for i in instances(cp) if str(i["id"]).endswith(f"-{cp.proc.pid}")))


def live_subscriptions(global_cp: ControlPlane, zone: str) -> list[dict[str, Any]]:
    try:
        subs = zone_overview(global_cp, zone)["zoneInsight"]["subscriptions"]
    except (httpx.HTTPError, KeyError):
        return []
    return [s for s in subs if s.get("connectTime") and not s.get("disconnectTime")]


def connected_instance(global_cp: ControlPlane, zone: str) -> str | None:
    """The zone CP instance whose KDS connection global holds for ``zone``, if any."""
    live = live_subscriptions(global_cp, zone)
    return str(live[-1]["zoneInstanceId"]) if live else None


def timeout_policy(name: str, connect: str) -> dict[str, Any]:
    return {
        "type": "MeshTimeout",
        "mesh": "default",
        "name": name,
        "spec": {
            "targetRef": {"kind": "Mesh"},
            "to": [{"targetRef": {"kind": "Mesh"}, "default": {"connectionTimeout": connect}}],
        },
    }


def test_the_zone_keeps_its_kds_link_when_its_leader_dies(
    env: MeshEnv, postgres_server: PostgresServer
) -> None:
    dsn = postgres_server.dsn(postgres_server.database("zonepg"))
    migrate(dsn)
    global_cp = start_global(env, extra=["--zone-health-timeout", f"{HEALTH_TIMEOUT:g}s"])
    zone_args = dict(
        store="postgres",
        data_dir=env.tmp / "cp-zone-a",  # one DP server certificate for both instances
        extra=["--postgres-dsn", dsn, "--leader-lease", f"{LEASE:g}s"],
    )
    zone_cps = [start_zone(env, "zone-a", global_cp, **zone_args) for _ in range(2)]  # type: ignore[arg-type]
    leader = wait_until(lambda: leader_of(zone_cps), what="a zone leader")
    (follower,) = [cp for cp in zone_cps if cp is not leader]
    leader_id, follower_id = instance_id(leader), instance_id(follower)
    wait_until(
        lambda: connected_instance(global_cp, "zone-a") == leader_id,
        what="global holding the zone leader's KDS connection",
    )

    # A policy from global reaches the zone (through the leader's KDS client).
    put = httpx.put(
        f"{global_cp.url}/meshes/default/meshtimeouts/before",
        json=timeout_policy("before", "3s"),
        timeout=5,
    )
    assert put.status_code in (200, 201), put.text
    wait_until(
        lambda: "before" in by_display_name(follower, "/meshes/default/meshtimeouts"),
        what="the first policy in the zone",
    )

    leader.proc.signal(signal.SIGKILL)
    leader.proc.wait(10)
    killed = time.monotonic()
    assert wait_until(lambda: leader_of([follower]), timeout=10, what="the follower leading")
    led_after = time.monotonic() - killed
    wait_until(
        lambda: connected_instance(global_cp, "zone-a") == follower_id,
        timeout=HEALTH_TIMEOUT,
        interval=0.05,
        what="global holding the new leader's KDS connection",
    )
    back_after = time.monotonic() - killed
    assert led_after < LEASE + 3, f"new zone leader after {led_after:.1f}s"
    assert back_after < HEALTH_TIMEOUT, f"zone back online at global after {back_after:.1f}s"

    # Heartbeats go on: the zone stays Online past the health timeout.
    time_online = time.monotonic()
    wait_until(
        lambda: (
            time.monotonic() - time_online > HEALTH_TIMEOUT + 1
            and connected_instance(global_cp, "zone-a") == follower_id
        ),
        timeout=HEALTH_TIMEOUT * 3,
        interval=0.5,
        what="the zone Online past a whole health timeout",
    )
    live = live_subscriptions(global_cp, "zone-a")
    assert [s["zoneInstanceId"] for s in live] == [follower_id]

    # A policy written on global now reaches the zone, and so does a change to the first.
    for name, connect in (("after", "4s"), ("before", "7s")):
        put = httpx.put(
            f"{global_cp.url}/meshes/default/meshtimeouts/{name}",
            json=timeout_policy(name, connect),
            timeout=5,
        )
        assert put.status_code in (200, 201), put.text

    def synced() -> bool:
        zone = by_display_name(follower, "/meshes/default/meshtimeouts")
        return all(
            name in zone and zone[name]["spec"]["to"][0]["default"]["connectionTimeout"] == connect
            for name, connect in (("after", "4s"), ("before", "7s"))
        )

    wait_until(synced, timeout=15, what="both policies in the zone after the failover")
