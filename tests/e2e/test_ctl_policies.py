"""A resilience policy through the real ``kumadp ctl`` (a subprocess) against a real CP with a
real sidecar: ``apply -f`` puts a MeshTimeout in the client's Envoy (read back through the
CP's config dump route), ``get`` lists and shows it, ``delete`` takes it out again."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from testkit.mesh import ControlPlane, MeshEnv
from testkit.procs import free_port, kumadp_command, wait_until

pytestmark = pytest.mark.e2e

POLICY = """\
type: MeshTimeout
mesh: default
name: client-to-backend
spec:
  targetRef: {kind: MeshService, name: client}
  to:
    - targetRef: {kind: MeshService, name: backend}
      default:
        connectionTimeout: 2s
        idleTimeout: 95s
"""


def ctl(tmp: Path, *args: str) -> str:
    env = {**os.environ, "KUMADP_CONFIG": str(tmp / "ctl-config.yaml")}
    env.pop("KUMADP_CP_URL", None)
    done = subprocess.run(
        kumadp_command("ctl", *args), capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, f"ctl {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done.stdout


def envoy_clusters(cp: ControlPlane, dataplane: str) -> dict[str, dict[str, Any]]:
    """The dataplane's Envoy clusters by name, from the CP's config dump route (read through
    the agent from Envoy itself)."""
    resp = httpx.get(f"{cp.url}/meshes/default/dataplanes/{dataplane}/xds", timeout=10)
    resp.raise_for_status()
    out = {}
    for config in resp.json()["configs"]:
        if config["@type"].endswith("ClustersConfigDump"):
            for entry in config.get("dynamic_active_clusters", []):
                out[entry["cluster"]["name"]] = entry["cluster"]
    return out


def backend_timeouts(cp: ControlPlane, dataplane: str) -> tuple[str | None, str | None]:
    """(connect timeout, TCP/HTTP idle timeout) of the dataplane's ``backend`` cluster."""
    cluster = envoy_clusters(cp, dataplane).get("backend") or {}
    options = cluster.get("typed_extension_protocol_options") or {}
    idle = next(
        (
            o.get("common_http_protocol_options", {}).get("idle_timeout")
            for o in options.values()
            if isinstance(o, dict)
        ),
        None,
    )
    return cluster.get("connect_timeout"), idle


def test_ctl_applies_lists_and_deletes_a_mesh_timeout_that_envoy_gets(
    env: MeshEnv, tmp_path: Path
) -> None:
    cp = env.start_cp()
    env.start_service("backend-1", "backend")
    out = free_port()
    doc, _ = env.dataplane_yaml("client-1", "client", free_port(), outbounds={"backend": out})
    client = env.start_agent("client-1", doc, outbound_ports={"backend": out})
    wait_until(lambda: client.cluster_endpoints("backend"), what="backend endpoint")
    initial = wait_until(lambda: backend_timeouts(cp, "client-1")[0], what="the config dump")
    assert initial == "5s"  # the mesh's initial mesh-timeout-all-default

    policy_file = tmp_path / "timeout.yaml"
    policy_file.write_text(POLICY)
    assert ctl(tmp_path, "apply", "-f", str(policy_file), "--cp-address", cp.url) == (
        'MeshTimeout "client-to-backend" in mesh "default" created\n'
    )
    wait_until(
        lambda: backend_timeouts(cp, "client-1")[0] == "2s",
        timeout=8,  # not Envoy's 15 s cluster warming: the CP resends the endpoints
        what="the client's Envoy with the 2 s connect timeout",
    )
    assert backend_timeouts(cp, "client-1")[1] == "95s"  # the HTTP idle timeout
    table = ctl(tmp_path, "get", "meshtimeouts", "--cp-address", cp.url)
    rows = {line.split()[1]: line.split() for line in table.splitlines()[1:]}
    assert rows["client-to-backend"][:4] == [
        "default",
        "client-to-backend",
        "MeshService",
        "client",
    ]
    assert "mesh-timeout-all-default" in rows
    shown = yaml.safe_load(
        ctl(
            tmp_path,
            "get",
            "meshtimeout",
            "client-to-backend",
            "-o",
            "yaml",
            "--cp-address",
            cp.url,
        )
    )
    assert shown["spec"] == yaml.safe_load(POLICY)["spec"]

    assert ctl(tmp_path, "delete", "meshtimeout", "client-to-backend", "--cp-address", cp.url) == (
        'MeshTimeout "client-to-backend" in mesh "default" deleted\n'
    )
    wait_until(
        lambda: backend_timeouts(cp, "client-1")[0] == "5s",
        timeout=8,
        what="the client's Envoy back on the initial policy",
    )
    assert "client-to-backend" not in ctl(tmp_path, "get", "meshtimeouts", "--cp-address", cp.url)
