"""Zone lifecycle at the global CP (real CP processes): the delete guard with Kuma's exact
message, disable and re-enable, delete after shutdown taking the zone's resources with it,
and ``kumadp ctl get|inspect zones``."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from testkit.mesh import ControlPlane, MeshEnv
from testkit.multizone import by_display_name, items, start_global, start_zone, zone_online
from testkit.procs import kumadp_command, wait_until

pytestmark = pytest.mark.e2e

STILL_CONNECTED = "unable to delete Zone, Zone CP is still connected, please shut it down first"


def ctl(global_cp: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        kumadp_command("ctl", *args, "--cp-address", global_cp.url),
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def zone_table(global_cp: ControlPlane, command: str = "get") -> dict[str, list[str]]:
    done = ctl(global_cp, command, "zones")
    assert done.returncode == 0, done.stderr
    header, *lines = done.stdout.splitlines()
    assert header.split()[:2] == ["NAME", "STATUS"]
    assert "LAST CONNECTED" in header and "CP VERSION" in header and "DATAPLANES" in header
    return {line.split()[0]: line.split() for line in lines}


def set_enabled(global_cp: ControlPlane, zone: str, enabled: bool) -> None:
    doc = {"type": "Zone", "name": zone, "enabled": enabled}
    resp = httpx.put(f"{global_cp.url}/zones/{zone}", json=doc, timeout=5)
    assert resp.status_code == 200, resp.text


def zone_names(global_cp: ControlPlane, path: str) -> set[str]:
    return {(i.get("labels") or {}).get("kuma.io/zone", "") for i in items(global_cp, path)}


def test_delete_guard_disable_and_delete_after_shutdown(env: MeshEnv) -> None:
    global_cp = start_global(env)
    zone_a = start_zone(env, "zone-a", global_cp)
    start_zone(env, "zone-b", global_cp)
    env.start_service("web-1", "web", cp=zone_a)
    wait_until(
        lambda: "web-1" in by_display_name(global_cp, "/meshes/default/dataplanes"),
        what="web-1 in global's inventory",
    )
    wait_until(
        lambda: zone_table(global_cp)["zone-a"][-1] == "1/1", what="zone-a's dataplane online"
    )
    row = zone_table(global_cp)["zone-a"]
    assert row[1] == "Online" and row[-2] != "-"  # its CP version
    assert zone_table(global_cp, "inspect")["zone-b"][1] == "Online"

    # the guard: exactly Kuma's message, on the field "zone"; ctl says the same
    resp = httpx.delete(global_cp.url + "/zones/zone-a", timeout=5)
    assert resp.status_code == 400
    body = resp.json()
    assert body["details"] == f"zone: {STILL_CONNECTED}"
    assert body["causes"] == [{"field": "zone", "message": STILL_CONNECTED}]
    done = ctl(global_cp, "delete", "zone", "zone-a")
    assert done.returncode != 0 and f"zone: {STILL_CONNECTED}" in done.stderr
    assert "Traceback" not in done.stderr

    # disabled: still connected and syncing up, shown Disabled; enabled again: Online
    set_enabled(global_cp, "zone-a", False)
    wait_until(lambda: zone_table(global_cp)["zone-a"][1] == "Disabled", what="zone-a disabled")
    assert zone_online(global_cp, "zone-a")
    overview = httpx.get(global_cp.url + "/zones+insights/zone-a", timeout=5).json()
    assert overview["zone"]["enabled"] is False
    env.start_service("web-2", "web", cp=zone_a)
    wait_until(
        lambda: "web-2" in by_display_name(global_cp, "/meshes/default/dataplanes"),
        what="a disabled zone still syncing up",
    )
    assert "zone zone-a disabled" in global_cp.proc.output()
    set_enabled(global_cp, "zone-a", True)
    wait_until(lambda: zone_table(global_cp)["zone-a"][1] == "Online", what="zone-a enabled")

    # shut down: the delete goes through and takes the zone's resources along
    zone_a.proc.stop()
    wait_until(lambda: not zone_online(global_cp, "zone-a"), what="zone-a offline")
    assert zone_table(global_cp)["zone-a"][1] == "Offline"
    done = ctl(global_cp, "delete", "zone", "zone-a")
    assert done.returncode == 0, done.stderr
    assert httpx.get(global_cp.url + "/zones/zone-a", timeout=5).status_code == 404
    assert httpx.get(global_cp.url + "/zones+insights/zone-a", timeout=5).status_code == 404
    assert "zone-a" not in zone_names(global_cp, "/meshes/default/dataplanes")
    assert "zone-a" not in zone_names(global_cp, "/meshes/default/dataplanes+insights")
    assert set(zone_table(global_cp)) == {"zone-b"}
    assert zone_online(global_cp, "zone-b")
