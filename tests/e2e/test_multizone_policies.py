"""A resilience policy across zones: a MeshTimeout applied on the global CP is synced to a
zone, lands in a zone dataplane's Envoy (its config dump, read through the zone CP's inspect
route) and acts on real traffic there; deleted on global, it leaves the zone's Envoy too."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from testkit.mesh import MeshEnv
from testkit.multizone import by_display_name, start_global, start_zone
from testkit.procs import free_port, wait_until
from tests.e2e.test_ctl_policies import backend_timeouts

pytestmark = pytest.mark.e2e

TIMEOUT: dict[str, Any] = {
    "type": "MeshTimeout",
    "mesh": "default",
    "name": "client-to-backend",
    "spec": {
        "targetRef": {"kind": "MeshService", "name": "client"},
        "to": [
            {
                "targetRef": {"kind": "MeshService", "name": "backend"},
                "default": {"connectionTimeout": "2s", "http": {"requestTimeout": "500ms"}},
            }
        ],
    },
}


def call(port: int) -> tuple[int, float]:
    """(status, seconds) of one request to the client's outbound."""
    started = time.monotonic()
    resp = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
    return resp.status_code, time.monotonic() - started


def test_a_mesh_timeout_from_global_acts_in_a_zone_envoy(env: MeshEnv) -> None:
    global_cp = start_global(env)
    zone = start_zone(env, "zone-a", global_cp)
    env.start_service("backend-1", "backend", app_args=["--delay", "1.5"], cp=zone)
    out = free_port()
    doc, _ = env.dataplane_yaml("client-1", "client", free_port(), outbounds={"backend": out})
    client = env.start_agent("client-1", doc, outbound_ports={"backend": out}, cp=zone)
    wait_until(lambda: client.cluster_endpoints("backend"), what="backend endpoint in the zone")
    assert wait_until(lambda: backend_timeouts(zone, "client-1")[0], what="config dump") == "5s"
    status, took = call(out)
    assert status == 200 and took >= 1.5  # the initial policy allows 15 s per request

    resp = httpx.put(
        f"{global_cp.url}/meshes/default/meshtimeouts/client-to-backend", json=TIMEOUT, timeout=5
    )
    assert resp.status_code == 201, resp.text
    written = time.monotonic()
    copy = wait_until(
        lambda: by_display_name(zone, "/meshes/default/meshtimeouts").get("client-to-backend"),
        timeout=15,
        what="the policy synced to the zone",
    )
    assert copy["labels"]["kuma.io/origin"] == "global"
    assert copy["spec"] == TIMEOUT["spec"]
    wait_until(
        lambda: backend_timeouts(zone, "client-1")[0] == "2s",
        timeout=15,
        what="the zone dataplane's Envoy with the policy's connect timeout",
    )
    in_envoy = time.monotonic() - written
    assert in_envoy < 8, f"global -> zone Envoy took {in_envoy:.1f}s"

    # It acts: the slow backend is cut at 500 ms.
    def cut() -> bool:
        status, took = call(out)
        return status == 504 and took < 1.4

    wait_until(cut, timeout=10, what="requests cut at 500 ms")

    assert httpx.delete(
        f"{global_cp.url}/meshes/default/meshtimeouts/client-to-backend", timeout=5
    ).is_success
    wait_until(
        lambda: "client-to-backend" not in by_display_name(zone, "/meshes/default/meshtimeouts"),
        timeout=15,
        what="the policy gone from the zone",
    )
    wait_until(
        lambda: backend_timeouts(zone, "client-1")[0] == "5s",
        timeout=15,
        what="the zone's Envoy back on the initial policy",
    )
    status, took = call(out)
    assert status == 200 and took >= 1.5
