"""Multi-zone end to end: a global CP and zone CPs as real processes (each with its own ports
and data dir), real agents and Envoys in the zones, real traffic; and the failure modes:
global down, the KDS link cut, a zone CP gone."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from typing import Any

import httpx
import pytest

from testkit.mesh import Agent, ControlPlane, MeshEnv
from testkit.multizone import (
    by_display_name,
    items,
    permission,
    start_global,
    start_zone,
    zone_online,
    zone_overview,
)
from testkit.procs import http_ok, kumadp_command, wait_until
from testkit.tcp_proxy import TcpProxy

pytestmark = pytest.mark.e2e

DENY_WEB = permission("Deny", name="deny-web")


def _put(cp: ControlPlane, path: str, doc: dict[str, Any]) -> httpx.Response:
    return httpx.put(cp.url + path, json=doc, timeout=5)


def _hello(port: int) -> str:
    """web's app calls backend through both sidecars; the backend instance that answered."""
    resp = httpx.get(f"http://127.0.0.1:{port}/hello", timeout=5)
    resp.raise_for_status()
    return str(resp.json()["upstream"]["instance"])


def _web_and_backend(env: MeshEnv, zone: ControlPlane) -> tuple[Agent, int]:
    """backend-1 and web-1 in ``zone``; the backend's agent and the web app's port."""
    backend, _ = env.start_service("backend-1", "backend", cp=zone)
    _, web_port = env.start_service("web-1", "web", upstream_service="backend", cp=zone)
    wait_until(lambda: _hello(web_port) == "backend-1", what="web -> backend in the zone")
    return backend, web_port


def _times(cp: ControlPlane, path: str) -> dict[str, tuple[str, str]]:
    """(creationTime, modificationTime) of each resource of a list, by display name."""
    return {
        name: (item["creationTime"], item["modificationTime"])
        for name, item in by_display_name(cp, path).items()
    }


def test_global_and_two_zones(env: MeshEnv) -> None:
    global_cp = start_global(env)
    zone_a = start_zone(env, "zone-a", global_cp)
    zone_b = start_zone(env, "zone-b", global_cp)

    # a policy applied on global reaches both zones, as a copy labelled by origin
    assert (
        _put(global_cp, "/meshes/default/meshtrafficpermissions/deny-web", DENY_WEB).status_code
        == 201
    )
    for zone in (zone_a, zone_b):
        policies = wait_until(
            lambda zone=zone: (
                "deny-web" in by_display_name(zone, "/meshes/default/meshtrafficpermissions")
                and by_display_name(zone, "/meshes/default/meshtrafficpermissions")
            ),
            what="the policy in the zone",
            timeout=5,
        )
        copy = policies["deny-web"]
        assert copy["name"].startswith("deny-web-") and copy["labels"]["kuma.io/origin"] == "global"
        assert copy["spec"]["from"][0]["default"]["action"] == "Deny"

    # each CP refuses what it does not own, with its message
    resp = _put(zone_a, "/meshes/default/meshtrafficpermissions/local", DENY_WEB)
    assert (
        resp.status_code == 400 and "apply it on the global control plane" in resp.json()["details"]
    )
    resp = httpx.post(
        global_cp.url + "/bootstrap", json={"mesh": "default", "name": "x"}, timeout=5
    )
    assert resp.status_code == 422
    assert (
        resp.json()["details"] == "global control plane: connect dataplanes to a zone control plane"
    )

    # a dataplane in zone-a joins with a token from global; global lists it within 1 s
    _backend, web_port = _web_and_backend(env, zone_a)
    in_zone = wait_until(
        lambda: (
            "web-1" in {i["name"] for i in items(zone_a, "/meshes/default/dataplanes")}
            and time.monotonic()
        ),
        what="web-1 in zone-a",
    )
    seen_at_global = wait_until(
        lambda: (
            "web-1" in by_display_name(global_cp, "/meshes/default/dataplanes+insights")
            and time.monotonic()
        ),
        what="web-1 in global's inventory",
        interval=0.005,
    )
    assert seen_at_global - in_zone < 1.0
    inventory = by_display_name(global_cp, "/meshes/default/dataplanes+insights")
    assert inventory["web-1"]["labels"]["kuma.io/zone"] == "zone-a"
    assert inventory["web-1"]["labels"]["kuma.io/origin"] == "zone"
    assert (
        inventory["web-1"]["dataplane"]["networking"]["inbound"][0]["tags"]["kuma.io/zone"]
        == "zone-a"
    )
    wait_until(
        lambda: by_display_name(global_cp, "/meshes/default/dataplanes+insights")["backend-1"][
            "dataplaneInsight"
        ]["online"],
        what="backend-1 online at global",
    )

    # both zones are Online at global
    zones = {z["name"]: z for z in items(global_cp, "/zones+insights")}
    assert set(zones) == {"zone-a", "zone-b"}
    assert zone_online(global_cp, "zone-a") and zone_online(global_cp, "zone-b")

    # ctl inspect on global shows the whole estate with its zones
    out = subprocess.run(
        kumadp_command("ctl", "inspect", "dataplanes", "--cp-address", global_cp.url),
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    header, *rows = out.splitlines()
    assert header.split()[:3] == ["MESH", "ZONE", "NAME"]
    assert sorted(r.split()[1] for r in rows) == ["zone-a", "zone-a"]

    # mTLS turned on at global: each zone gets an intermediate CA of its own (never the root)
    mtls = {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}
    assert (
        _put(
            global_cp, "/meshes/default", {"type": "Mesh", "name": "default", "mtls": mtls}
        ).status_code
        == 200
    )
    wait_until(
        lambda: "intermediate CA of mesh default in use" in zone_a.proc.output(),
        what="zone-a's intermediate CA",
    )

    def inbound_mtls() -> bool:
        path = "/meshes/default/dataplanes/backend-1/_config"
        config = httpx.get(zone_a.url + path, timeout=5).json()
        return "DownstreamTlsContext" in json.dumps(config["lds"])

    wait_until(inbound_mtls, what="backend-1's inbound speaking mTLS")

    def denied() -> bool:  # with identities, the Deny applied on global is in force
        try:
            return httpx.get(f"http://127.0.0.1:{web_port}/hello", timeout=5).status_code >= 500
        except httpx.HTTPError:
            return True

    wait_until(denied, what="the Deny from global in force in zone-a")
    path = "/meshes/default/meshtrafficpermissions/deny-web"
    assert httpx.delete(global_cp.url + path, timeout=5).status_code == 200
    wait_until(lambda: _hello(web_port) == "backend-1", what="web -> backend over mTLS")

    # an agent sent to the global CP fails at once with the reason
    doc, _ = env.dataplane_yaml("lost-1", "lost", 1)
    lost = env.start_agent("lost-1", doc, cp=global_cp, wait=False)
    assert lost.proc.wait(timeout=30) != 0
    assert "connect dataplanes to a zone control plane" in lost.proc.output()
    assert _hello(web_port) == "backend-1"


def test_global_down_zones_keep_working_and_converge_without_rewrites(env: MeshEnv) -> None:
    global_cp = start_global(env)
    zone_a = start_zone(env, "zone-a", global_cp)
    _put(global_cp, "/meshes/default/meshtrafficpermissions/deny-web", DENY_WEB)
    backend, web_port = _web_and_backend(env, zone_a)
    wait_until(
        lambda: (
            {"web-1", "backend-1"} <= set(by_display_name(global_cp, "/meshes/default/dataplanes"))
        ),
        what="inventory at global",
    )
    zone_copies = _times(zone_a, "/meshes/default/meshtrafficpermissions") | _times(
        zone_a, "/meshes"
    )
    token = global_cp.token("backend-2")  # minted while global is up
    global_times = _times(global_cp, "/meshes/default/dataplanes")

    global_cp.proc.stop()
    # traffic inside the zone keeps working; dataplanes join and leave
    assert _hello(web_port) == "backend-1"
    env.start_service("backend-2", "backend", cp=zone_a, token=token)
    backend.proc.signal(signal.SIGTERM)
    assert backend.proc.wait(timeout=30) == 0
    wait_until(lambda: _hello(web_port) == "backend-2", what="backend-2 serving, backend-1 gone")
    assert {i["name"] for i in items(zone_a, "/meshes/default/dataplanes")} == {
        "web-1",
        "backend-2",
    }

    # global returns: the inventory converges; nothing unchanged was deleted or rewritten
    global_cp = start_global(
        env,
        kds_port=global_cp.kds_port,
        api_port=global_cp.api_port,
        dp_port=global_cp.dp_port,
        diagnostics_port=global_cp.diagnostics_port,
        data_dir=global_cp.data_dir,
    )
    wait_until(
        lambda: (
            set(by_display_name(global_cp, "/meshes/default/dataplanes")) == {"web-1", "backend-2"}
        ),
        what="global's inventory converged",
        timeout=30,
    )
    wait_until(lambda: zone_online(global_cp, "zone-a"), what="zone-a online again")
    assert _times(global_cp, "/meshes/default/dataplanes")["web-1"] == global_times["web-1"]
    assert (
        _times(zone_a, "/meshes/default/meshtrafficpermissions") | _times(zone_a, "/meshes")
        == zone_copies
    )
    assert _hello(web_port) == "backend-2"


def test_kds_link_cut_zone_keeps_serving_and_changes_arrive_after(env: MeshEnv) -> None:
    global_cp = start_global(env)
    assert global_cp.kds_port is not None
    with TcpProxy("127.0.0.1", global_cp.kds_port) as proxy:
        zone_a = start_zone(env, "zone-a", global_cp, kds_address=proxy.address)
        _backend, web_port = _web_and_backend(env, zone_a)
        wait_until(
            lambda: (
                {"web-1", "backend-1"}
                <= set(by_display_name(global_cp, "/meshes/default/dataplanes"))
            ),
            what="inventory at global",
        )
        zone_copies = _times(zone_a, "/meshes/default/meshtrafficpermissions") | _times(
            zone_a, "/meshes"
        )
        global_times = _times(global_cp, "/meshes/default/dataplanes")
        token = global_cp.token("backend-2")

        proxy.cut()
        wait_until(lambda: not zone_online(global_cp, "zone-a"), what="zone-a offline at global")
        # both sides change while cut; the zone keeps serving
        assert (
            _put(global_cp, "/meshes/default/meshtrafficpermissions/deny-web", DENY_WEB).status_code
            == 201
        )
        env.start_service("backend-2", "backend", cp=zone_a, token=token)
        assert _hello(web_port) in {"backend-1", "backend-2"}
        assert "deny-web" not in by_display_name(zone_a, "/meshes/default/meshtrafficpermissions")

        proxy.restore()
        wait_until(
            lambda: "deny-web" in by_display_name(zone_a, "/meshes/default/meshtrafficpermissions"),
            what="the policy written while cut reaches the zone",
            timeout=30,
        )
        wait_until(
            lambda: "backend-2" in by_display_name(global_cp, "/meshes/default/dataplanes"),
            what="the dataplane that joined while cut reaches global",
            timeout=30,
        )
        wait_until(lambda: zone_online(global_cp, "zone-a"), what="zone-a online again")
        # unchanged resources were not rewritten on either side
        after = _times(zone_a, "/meshes/default/meshtrafficpermissions") | _times(zone_a, "/meshes")
        assert {k: v for k, v in after.items() if k != "deny-web"} == zone_copies
        assert _times(global_cp, "/meshes/default/dataplanes")["web-1"] == global_times["web-1"]
        assert (
            _times(global_cp, "/meshes/default/dataplanes")["backend-1"]
            == global_times["backend-1"]
        )


def test_zone_cp_down_its_sidecars_keep_serving_and_global_shows_it_offline(env: MeshEnv) -> None:
    global_cp = start_global(env, extra=["--zone-health-timeout", "2s"])
    zone_a = start_zone(env, "zone-a", global_cp)
    start_zone(env, "zone-b", global_cp)
    _, web_port = _web_and_backend(env, zone_a)
    assert zone_online(global_cp, "zone-a") and zone_online(global_cp, "zone-b")

    # the zone CP vanishes without closing its connection (frozen): Offline within the bound
    zone_a.proc.signal(signal.SIGSTOP)
    try:
        frozen = time.monotonic()
        wait_until(lambda: not zone_online(global_cp, "zone-a"), what="zone-a offline", timeout=10)
        assert time.monotonic() - frozen < 2.0 + 2.0  # the bound, plus polling and a write
        assert zone_online(global_cp, "zone-b")  # other zones unaffected
        for _ in range(5):
            assert _hello(web_port) == "backend-1"  # its sidecars keep serving
    finally:
        zone_a.proc.signal(signal.SIGCONT)
    # back: it reconnects on its own
    wait_until(lambda: zone_online(global_cp, "zone-a"), what="zone-a online again", timeout=30)

    zone_a.proc.proc.kill()  # and gone for good: still Offline, traffic still flows
    wait_until(lambda: not zone_online(global_cp, "zone-a"), what="zone-a offline", timeout=10)
    assert _hello(web_port) == "backend-1"


def test_a_second_zone_cp_with_the_same_name_is_refused_until_the_first_goes(env: MeshEnv) -> None:
    global_cp = start_global(env)
    first = start_zone(env, "zone-a", global_cp)
    second = start_zone(env, "zone-a", global_cp, data_dir=env.tmp / "cp-zone-a-2", synced=False)

    def holder() -> str:
        subs = zone_overview(global_cp, "zone-a")["zoneInsight"]["subscriptions"]
        return str(subs[-1]["zoneInstanceId"]) if subs else ""

    first_instance = holder()
    wait_until(
        lambda: second.proc.output().count("refused zone zone-a") >= 2,
        what="the second refused, and retrying",
    )
    assert "already connected from another zone control plane" in second.proc.output()
    assert holder() == first_instance and zone_online(global_cp, "zone-a")
    first.proc.stop()  # the first goes: the second takes the zone over
    wait_until(
        lambda: holder() not in ("", first_instance), what="the second holds zone-a", timeout=30
    )
    wait_until(lambda: zone_online(global_cp, "zone-a"), what="zone-a online again")
    wait_until(lambda: http_ok(second.url + "/meshes/default"), what="the second synced")
