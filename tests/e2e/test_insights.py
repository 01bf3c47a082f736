"""DataplaneInsight end to end: real CP, agents and Envoys; what the API shows."""

from __future__ import annotations

import signal
import socket
from typing import Any

import httpx
import pytest

from testkit.mesh import MeshEnv
from testkit.procs import wait_until
from tests.e2e.test_mtls import enable_mtls

pytestmark = pytest.mark.e2e


def overviews(env: MeshEnv) -> dict[str, dict[str, Any]]:
    assert env.cp is not None
    resp = env.cp.get("/meshes/default/dataplanes+insights")
    resp.raise_for_status()
    body = resp.json()
    assert set(body) == {"total", "items", "next"}
    return {item["name"]: item for item in body["items"]}


def insight_of(env: MeshEnv, name: str) -> dict[str, Any]:
    assert env.cp is not None
    resp = env.cp.get(f"/meshes/default/dataplanes/{name}/_overview")
    resp.raise_for_status()
    return resp.json()["dataplaneInsight"]  # type: ignore[no-any-return]


def fully_acked(item: dict[str, Any], types: tuple[str, ...] = ("cds", "eds", "lds")) -> bool:
    insight = item["dataplaneInsight"]
    if not insight["online"] or not insight.get("agent", {}).get("controlPlane", {}).get(
        "connected"
    ):
        return False  # also waits for a report made after the agent's watch connected
    status = insight["subscriptions"][-1]["status"]
    return all(status[t]["responsesAcknowledged"] > 0 for t in types)


def test_online_versions_certificates_then_offline_and_gone(env: MeshEnv) -> None:
    cp = env.start_cp(extra=["--deregistration-delay", "2s"])
    # each has an outbound to the other, so each gets EDS too
    backend, _ = env.start_service("backend-1", "backend", upstream_service="web")
    env.start_service("web-1", "web", upstream_service="backend")

    items = wait_until(
        lambda: (
            (found := overviews(env)).keys() == {"backend-1", "web-1"}
            and all(fully_acked(item) for item in found.values())
            and found
        ),
        timeout=15,
        what="both dataplanes online with cds/eds/lds ACKed and an agent report",
    )
    for item in items.values():
        assert item["type"] == "DataplaneOverview" and item["mesh"] == "default"
        assert item["dataplane"]["networking"]["inbound"], item
        insight = item["dataplaneInsight"]
        sub = insight["subscriptions"][-1]
        assert sub["controlPlaneInstanceId"] and sub["connectTime"]
        assert "disconnectTime" not in sub
        assert sub["version"]["kumaDp"]["version"]
        assert sub["version"]["envoy"]["version"].startswith("1."), sub["version"]
        agent = insight["agent"]
        assert agent["version"]["envoy"]["build"]
        assert agent["envoy"]["pid"] > 0
        assert agent["config"]["lastAppliedTime"], agent
        assert "mTLS" not in insight  # not enabled yet

    enable_mtls(env)
    wait_until(
        lambda: all(
            "certificateExpirationTime" in (item["dataplaneInsight"].get("mTLS") or {})
            for item in overviews(env).values()
        ),
        timeout=15,
        what="certificate expiry in both insights",
    )
    mtls = insight_of(env, "web-1")["mTLS"]
    assert mtls["issuedBackend"] == "ca-1" and mtls["certificateRegenerations"] >= 1

    backend.proc.signal(signal.SIGKILL)  # Envoy dies with it (parent-death signal)
    offline = wait_until(
        lambda: (insight := insight_of(env, "backend-1"))["online"] is False and insight,
        timeout=5,
        what="backend-1 offline",
    )
    assert offline["subscriptions"][-1]["disconnectTime"]
    assert insight_of(env, "web-1")["online"] is True
    wait_until(
        lambda: overviews(env).keys() == {"web-1"},
        timeout=10,
        what="backend-1 gone after the deregistration delay",
    )
    resp = cp.get("/meshes/default/dataplanes/backend-1/_overview")
    assert resp.status_code == 404 and resp.json()["title"] == "Not Found"


def test_nack_is_shown_and_config_is_served(env: MeshEnv) -> None:
    cp = env.start_cp()
    backend, app_port = env.start_service("backend-1", "backend")
    wait_until(
        lambda: fully_acked(overviews(env)["backend-1"], ("cds", "lds")), timeout=15, what="ACKed"
    )

    config = cp.get("/meshes/default/dataplanes/backend-1/_config").json()
    listeners = {listener["name"] for listener in config["lds"]}
    assert f"inbound:127.0.0.1:{backend.inbound_port}" in listeners
    assert {c["name"] for c in config["cds"]} >= {f"localhost:{app_port}"}
    assert set(config["versions"]) >= {"cds", "eds", "lds", "rds"}
    assert cp.get("/meshes/default/dataplanes/nobody/_config").status_code == 404

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        doc = cp.get("/meshes/default/dataplanes/backend-1").json()
        for key in ("creationTime", "modificationTime"):
            doc.pop(key, None)
        doc["networking"]["inbound"].append(
            {"port": port, "servicePort": app_port, "tags": {"kuma.io/service": "backend-2"}}
        )
        resp = httpx.put(f"{cp.url}/meshes/default/dataplanes/backend-1", json=doc, timeout=5)
        assert resp.status_code == 200, resp.text

        insight = wait_until(
            lambda: (
                (found := insight_of(env, "backend-1"))["subscriptions"][-1]["status"]["lds"][
                    "responsesRejected"
                ]
                > 0
                and found
            ),
            timeout=15,
            what="the LDS NACK in the insight",
        )
    status = insight["subscriptions"][-1]["status"]
    assert status["total"]["responsesRejected"] >= 1
    nack = insight["lastNack"]
    assert nack["type"] == "lds" and nack["version"] and nack["time"]
    assert str(port) in nack["error"], nack
    assert insight["online"] is True  # a NACK does not take it offline
