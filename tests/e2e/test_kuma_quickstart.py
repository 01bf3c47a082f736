"""A Kuma 2.x universal quick start, as a Kuma user writes it, against ``kumadp cp run``
(issue 16): the CP configured by Kuma's environment variables only, kumactl's YAML applied as
it is, tokens from ``kumadp ctl generate dataplane-token`` (kumactl's command), agents
started with kuma-dp's command line (``--cp-address=https://HOST:5678``,
``--dns-enabled=false``, ``-v a=1,b=2``) and kuma-dp's environment, a MeshTrafficPermission
in the form of Kuma's current docs (``targetRef.kind: Dataplane``), real Envoys and real
traffic; Kuma's API paths; kuma-dp's exact bootstrap request on the DP port, whose
registration goes away when no stream follows.

The ports are free ones instead of Kuma's fixed defaults, through Kuma's names (the API on
loopback with ``KUMA_API_SERVER_HTTP_INTERFACE``; the Envoy admin port in the Dataplane's
``networking.admin.port``, as in Kuma); the agents' metrics port has no Kuma name."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from testkit.mesh import Agent, ControlPlane, MeshEnv
from testkit.procs import free_port, http_ok, kumadp_command, wait_until

pytestmark = pytest.mark.e2e

KUMA = Path(__file__).parents[1] / "unit" / "testdata" / "kuma"

TEMPLATE = """\
type: Dataplane
mesh: default
name: "{{ name }}"
labels:
  app: "{{ app }}"
networking:
  address: 127.0.0.1
  admin:
    port: {{ admin }}
  inbound:
    - port: {{ inbound }}
      servicePort: {{ port }}
      tags:
        kuma.io/service: "{{ app }}"
        kuma.io/protocol: http
  outbound: {{ outbound }}
"""


def start_cp_from_kuma_env(env: MeshEnv) -> ControlPlane:
    api, https, dp, diag = free_port(), free_port(), free_port(), free_port()
    data_dir = env.tmp / "cp-data"
    kuma_env = {
        "KUMA_STORE_TYPE": "memory",
        "KUMA_GENERAL_WORK_DIR": str(data_dir),
        "KUMA_API_SERVER_HTTP_INTERFACE": "127.0.0.1",
        "KUMA_API_SERVER_HTTP_PORT": str(api),
        "KUMA_API_SERVER_HTTPS_INTERFACE": "127.0.0.1",
        "KUMA_API_SERVER_HTTPS_PORT": str(https),
        "KUMA_DP_SERVER_PORT": str(dp),
        "KUMA_DIAGNOSTICS_SERVER_PORT": str(diag),
        "KUMA_DP_SERVER_AUTHN_DP_PROXY_TYPE": "dpToken",
        "KUMA_XDS_DATAPLANE_DEREGISTRATION_DELAY": "2s",
        "KUMA_LOG_LEVEL": "debug",
    }
    proc = env.procs.start("cp", kumadp_command("cp", "run"), env=kuma_env)
    wait_until(
        lambda: (
            http_ok(f"http://127.0.0.1:{diag}/ready")
            and http_ok(f"http://127.0.0.1:{api}/meshes/default")
        ),
        what="control plane ready",
        proc=proc,
    )
    env.cp = ControlPlane(proc, api, dp, diag, data_dir, "dpToken", https_port=https)
    return env.cp


def ctl(cp: ControlPlane, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        kumadp_command("ctl", "--cp-address", cp.url, *args),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def kuma_dp(
    env: MeshEnv, cp: ControlPlane, ca: Path, name: str, app: str, app_port: int, outbound: str
) -> Agent:
    """``kumadp run`` with kuma-dp's command line and environment; its token from
    ``kumadp ctl generate dataplane-token`` (``kumactl generate dataplane-token``)."""
    template = env.tmp / f"{name}.tmpl.yaml"
    template.write_text(TEMPLATE)
    generated = ctl(
        cp, "generate", "dataplane-token", "--name", name, "--mesh", "default",
        "--valid-for", "720h",
    )  # fmt: skip
    assert generated.returncode == 0, generated.stderr
    token = env.tmp / f"kuma-token-{name}"
    token.write_text(generated.stdout)
    admin, readiness, inbound = free_port(), free_port(), free_port()
    proc = env.procs.start(
        f"agent-{name}",
        kumadp_command(
            "run",
            f"--cp-address=https://localhost:{cp.dp_port}",
            f"--ca-cert-file={ca}",
            "--dns-enabled=false",
            f"--dataplane-token-file={token}",
            f"--dataplane-file={template}",
            "-v",
            f"name={name},app={app},inbound={inbound},port={app_port},admin={admin}",
            "--dataplane-var",
            f"outbound={outbound}",
            f"--work-dir={env.tmp / f'{name}-wd'}",
            "--drain-time=1s",
            "--metrics-port",  # kumadp's own (Kuma's comes from the Mesh): a free port
            str(free_port()),
        ),
        env={"KUMA_READINESS_PORT": str(readiness)},
    )
    agent = Agent(name, proc, admin, readiness, inbound)
    wait_until(agent.ready, timeout=60, what=f"agent {name} ready", proc=proc)
    return agent


def test_a_kuma_users_quick_start(env: MeshEnv) -> None:
    cp = start_cp_from_kuma_env(env)
    ca = env.tmp / "cp-ca.pem"
    ca.write_bytes(cp.get("/certs/dp-server-ca.pem").content)

    # kumactl's YAML of a mesh with mTLS, applied as it is
    mesh = ctl(cp, "apply", "-f", str(KUMA / "kumactl-get-mesh.yaml"))
    assert mesh.returncode == 0, mesh.stderr
    assert mesh.stdout == 'Mesh "default" updated\n' and mesh.stderr == ""

    backend_app = env.start_http_app("backend")
    kuma_dp(env, cp, ca, "backend-1", "backend", backend_app, "[]")
    web_port = free_port()
    web_app = env.start_http_app("web", f"http://127.0.0.1:{web_port}")
    outbound = json.dumps([{"port": web_port, "tags": {"kuma.io/service": "backend"}}])
    kuma_dp(env, cp, ca, "web-1", "web", web_app, outbound)

    def web_reaches_backend() -> bool:
        try:
            response = httpx.get(f"http://127.0.0.1:{web_app}/", timeout=5)
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and response.json()["upstream"]["instance"] == "backend"

    wait_until(web_reaches_backend, timeout=30, what="web -> backend over mTLS")

    # MeshTrafficPermission as Kuma's docs write it: targetRef kind Dataplane (by labels)
    deny_web = yaml.safe_load((KUMA / "kumactl-get-meshtrafficpermission.yaml").read_text())
    deny_web["name"] = "deny-web"
    deny_web["spec"]["from"][0]["default"]["action"] = "Deny"
    applied = ctl(cp, "apply", "-f", "-", stdin=yaml.safe_dump(deny_web))
    assert applied.returncode == 0, applied.stderr
    wait_until(lambda: not web_reaches_backend(), timeout=30, what="web denied")
    assert ctl(cp, "delete", "meshtrafficpermission", "deny-web").returncode == 0
    wait_until(web_reaches_backend, timeout=30, what="web allowed again")

    # Kuma's API paths and kumactl's table
    found = cp.get("/meshes/default/dataplanes+insights?tag=kuma.io/service:backend").json()
    assert [item["name"] for item in found["items"]] == ["backend-1"]
    assert cp.get("/meshes/default/dataplanes/_overview").json()["total"] == 2
    dump = cp.get("/meshes/default/dataplanes/backend-1/xds")
    assert dump.status_code == 200 and "configs" in dump.json()
    table = ctl(cp, "get", "dataplanes").stdout.splitlines()
    assert table[0].split() == ["MESH", "NAME", "TAGS", "ADDRESS", "AGE"]
    assert table[1].split()[3] == "127.0.0.1"


def test_kuma_dps_bootstrap_alone_leaves_nothing_behind(env: MeshEnv) -> None:
    """kuma-dp's exact request, over HTTPS on the DP port; no xDS stream follows."""
    cp = start_cp_from_kuma_env(env)
    ca = env.tmp / "cp-ca.pem"
    ca.write_bytes(cp.get("/certs/dp-server-ca.pem").content)
    body = json.loads((KUMA / "kuma-dp-bootstrap-request.json").read_text())
    body["dataplaneToken"] = cp.token("backend-1")
    response = httpx.post(
        f"https://localhost:{cp.dp_port}/bootstrap", json=body, verify=str(ca), timeout=10
    )
    assert response.status_code == 200, response.text
    assert cp.dataplane_names() == {"backend-1"}
    wait_until(lambda: cp.dataplane_names() == set(), timeout=15, what="deregistered")
