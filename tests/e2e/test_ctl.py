"""``kumadp ctl`` end to end: the real CLI (a subprocess) against a real CP with two running
services: config control-planes, apply, get, inspect and delete."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from testkit.mesh import MeshEnv
from testkit.procs import kumadp_command, wait_until

pytestmark = pytest.mark.e2e

RESOURCES = """\
type: MeshTrafficPermission
mesh: default
name: web-to-backend
spec:
  targetRef: {kind: MeshService, name: backend}
  from:
    - targetRef: {kind: MeshService, name: web}
      default: {action: Allow}
---
type: Dataplane
mesh: default
name: "{{ name }}"
networking:
  address: 127.0.0.1
  inbound:
    - port: {{ port }}
      servicePort: 5432
      tags: {kuma.io/service: db, kuma.io/protocol: tcp}
"""


def ctl(tmp: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUMADP_CONFIG": str(tmp / "ctl-config.yaml")}
    env.pop("KUMADP_CP_URL", None)
    result = subprocess.run(
        kumadp_command("ctl", *args), capture_output=True, text=True, env=env, timeout=60
    )
    if check:
        assert result.returncode == 0, f"ctl {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result


def rows(table: str) -> dict[str, list[str]]:
    """The rows of an inspect table by dataplane name, cells split on the header's columns."""
    lines = table.splitlines()
    header = lines[0]
    starts = [header.index(h) for h in ("MESH", "NAME", "TAGS", "STATUS", "LAST CONNECTED",
                                         "CERT EXPIRY", "AGENT", "ENVOY")]  # fmt: skip
    out = {}
    for line in lines[1:]:
        cells = [
            line[start : (starts[i + 1] if i + 1 < len(starts) else None)].strip()
            for i, start in enumerate(starts)
        ]
        out[cells[1]] = cells
    return out


def test_ctl_against_a_running_mesh(env: MeshEnv, tmp_path: Path) -> None:
    cp = env.start_cp()
    env.start_service("backend-1", "backend")
    env.start_service("web-1", "web", upstream_service="backend")

    # The CP is remembered in the config file; no --cp-address from here on.
    out = ctl(tmp_path, "config", "control-planes", "add", "--name", "e2e", "--address", cp.url)
    assert 'added Control Plane "e2e"' in out.stdout
    assert "*        e2e    " + cp.url in ctl(tmp_path, "config", "control-planes", "list").stdout

    res = tmp_path / "resources.yaml"
    res.write_text(RESOURCES)
    out = ctl(tmp_path, "apply", "-f", str(res), "-v", "name=db-1", "-v", "port=25432")
    assert out.stdout.splitlines() == [
        'MeshTrafficPermission "web-to-backend" in mesh "default" created',
        'Dataplane "db-1" in mesh "default" created',
    ]
    out = ctl(tmp_path, "apply", "-f", str(res), "-v", "name=db-1", "-v", "port=25433")
    assert out.stdout.splitlines()[1] == 'Dataplane "db-1" in mesh "default" updated'

    body = json.loads(ctl(tmp_path, "get", "dataplanes", "-o", "json").stdout)
    by_name = {item["name"]: item for item in body["items"]}
    assert {"backend-1", "web-1", "db-1"} <= set(by_name)
    assert by_name["db-1"]["networking"]["inbound"][0]["port"] == 25433
    table = ctl(tmp_path, "get", "meshtrafficpermissions").stdout
    assert "web-to-backend      MeshService backend" in table
    assert table.splitlines()[0].split() == ["MESH", "NAME", "TARGET", "AGE"]

    # inspect: the two running services have rows (and, with the insights API, are Online)
    insights_api = cp.get("/meshes/default/dataplanes+insights").status_code == 200
    table = ctl(tmp_path, "inspect", "dataplanes", "--mesh", "default").stdout
    assert table.splitlines()[0].split() == [
        "MESH", "NAME", "TAGS", "STATUS", "LAST", "CONNECTED", "CERT", "EXPIRY", "AGENT", "ENVOY",
    ]  # fmt: skip
    found = rows(table)
    assert {"backend-1", "web-1"} <= set(found), table
    assert found["backend-1"][2].startswith("kuma.io/service=backend")
    assert found["db-1"][3] == "Offline"  # applied, no agent behind it
    if not insights_api:
        pytest.skip("the CP has no dataplanes+insights API yet: STATUS Online not checked")

    def both_online() -> dict[str, list[str]] | None:
        current = rows(ctl(tmp_path, "inspect", "dataplanes").stdout)
        good = all(
            current[n][3] == "Online" and current[n][4].endswith(" ago") and current[n][6] != "-"
            for n in ("backend-1", "web-1")
        )
        return current if good else None

    online = wait_until(both_online, timeout=30, interval=0.5, what="both dataplanes Online")
    assert online["backend-1"][7] != "-", online  # the Envoy version is known
    json_out = ctl(tmp_path, "inspect", "dataplanes", "-o", "json").stdout
    overviews = {o["name"]: o for o in json.loads(json_out)["items"]}
    assert overviews["web-1"]["dataplaneInsight"]["online"] is True

    # delete, and the not-found error afterwards
    out = ctl(tmp_path, "delete", "dataplane", "db-1")
    assert out.stdout == 'Dataplane "db-1" in mesh "default" deleted\n'
    ctl(tmp_path, "delete", "meshtrafficpermission", "web-to-backend")
    missing = ctl(tmp_path, "get", "dataplane", "db-1", check=False)
    assert missing.returncode == 1
    assert missing.stderr == 'Error: dataplane "db-1" not found in mesh "default"\n'
    names = {
        i["name"]
        for i in json.loads(ctl(tmp_path, "get", "dataplanes", "-o", "json").stdout)["items"]
    }
    assert "db-1" not in names and {"backend-1", "web-1"} <= names
    assert (
        httpx.get(cp.url + "/meshes/default/meshtrafficpermissions/web-to-backend").status_code
        == 404
    )


def test_ctl_errors_without_a_cp(tmp_path: Path) -> None:
    result = ctl(tmp_path, "get", "meshes", "--cp-address", "http://127.0.0.1:9", check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("Error: cannot reach the control plane at http://127.0.0.1:9: ")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
