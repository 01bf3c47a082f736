"""``kumadp ctl apply -f / get / delete`` for each resilience policy kind, against the real API
app (memory store) served on a free port: created, listed with its target, read back as
applied, updated, refused locally with the field path, deleted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kumadp.cp.api import create_app
from kumadp.cp.store import MemoryStore
from tests.unit.test_ctl import Served, failed, ok


def to_backend(default: dict[str, Any]) -> dict[str, Any]:
    """A spec for web's sidecars calling backend."""
    return {
        "targetRef": {"kind": "MeshService", "name": "web"},
        "to": [{"targetRef": {"kind": "MeshService", "name": "backend"}, "default": default}],
    }


# kind -> (its CLI plural, short alias, a valid conf, a changed conf, a bad conf and its error)
KINDS: dict[str, tuple[str, str, dict[str, Any], dict[str, Any], dict[str, Any], str]] = {
    "MeshTimeout": (
        "meshtimeouts",
        "mt",
        {"connectionTimeout": "2s", "http": {"requestTimeout": "5s"}},
        {"connectionTimeout": "3s", "idleTimeout": "1m"},
        {"connectionTimeout": "0s"},
        "spec.to[0].default.connectionTimeout: must be greater than 0",
    ),
    "MeshRetry": (
        "meshretries",
        "mr",
        {"http": {"numRetries": 3, "retryOn": ["5XX"]}},
        {"http": {"numRetries": 5, "perTryTimeout": "1s"}, "tcp": {"maxConnectAttempt": 2}},
        {"tcp": {"maxConnectAttempt": 0}},
        "spec.to[0].default.tcp.maxConnectAttempt: must be 1-4294967295",
    ),
    "MeshCircuitBreaker": (
        "meshcircuitbreakers",
        "mcb",
        {"connectionLimits": {"maxConnections": 10}},
        {
            "outlierDetection": {
                "interval": "1s",
                "baseEjectionTime": "30s",
                "maxEjectionPercent": 50,
                "detectors": {"totalFailures": {"consecutive": 3}},
            }
        },
        {"outlierDetection": {"maxEjectionPercent": 101}},
        "spec.to[0].default.outlierDetection.maxEjectionPercent: must be 0-100",
    ),
    "MeshHealthCheck": (
        "meshhealthchecks",
        "mhc",
        {"interval": "10s", "timeout": "2s", "http": {"path": "/health"}},
        {"interval": "5s", "unhealthyThreshold": 2, "tcp": {}},
        {"unhealthyThreshold": 0},
        "spec.to[0].default.unhealthyThreshold: must be 1-2147483647",
    ),
    "MeshLoadBalancingStrategy": (
        "meshloadbalancingstrategies",
        "mlbs",
        {"loadBalancer": {"type": "LeastRequest"}},
        {
            "loadBalancer": {"type": "RingHash", "ringHash": {"minRingSize": 64}},
            "localityAwareness": {
                "crossZone": {"failover": [{"to": {"type": "AnyExcept", "zones": ["zone-c"]}}]}
            },
        },
        {"loadBalancer": {"type": "Maglev", "maglev": {"tableSize": 100}}},
        "spec.to[0].default.loadBalancer.maglev.tableSize: must be a prime number",
    ),
}


@pytest.fixture(autouse=True)
def isolated_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUMADP_CONFIG", str(tmp_path / "ctl" / "config.yaml"))
    monkeypatch.delenv("KUMADP_CP_URL", raising=False)


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    served = Served(create_app(MemoryStore()))
    try:
        ok("apply", "-f", "-", "--cp-address", served.url, input="type: Mesh\nname: default\n")
        yield served.url
    finally:
        served.stop()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_apply_get_delete(api: str, kind: str, tmp_path: Path) -> None:
    plural, alias, conf, changed, bad, error = KINDS[kind]
    singular = kind.lower()
    name = f"web-to-backend-{alias}"
    where = f'{kind} "{name}" in mesh "default"'
    doc = {"type": kind, "mesh": "default", "name": name, "spec": to_backend(conf)}
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(doc))

    assert ok("apply", "-f", str(policy_file), "--cp-address", api) == f"{where} created\n"
    rows = [line.split() for line in ok("get", plural, "--cp-address", api).splitlines()]
    assert rows[0] == ["MESH", "NAME", "TARGET", "AGE"]
    assert ["default", name, "MeshService", "web"] in [row[:4] for row in rows[1:]]
    assert name in ok("get", alias, "--cp-address", api)  # kumactl's short name
    got = yaml.safe_load(ok("get", singular, name, "-o", "yaml", "--cp-address", api))
    assert (got["type"], got["name"], got["spec"]) == (kind, name, doc["spec"])

    doc["spec"] = to_backend(changed)
    assert ok("apply", "-f", "-", "--cp-address", api, input=yaml.safe_dump(doc)) == (
        f"{where} updated\n"
    )
    got = json.loads(ok("get", singular, name, "-o", "json", "--cp-address", api))
    assert got["spec"]["to"][0]["default"] == changed

    # Validated locally, with the field path: nothing reaches the CP.
    doc["spec"] = to_backend(bad)
    err = failed("apply", "-f", "-", "--cp-address", api, input=yaml.safe_dump(doc))
    assert error in err and "Traceback" not in err
    got = json.loads(ok("get", singular, name, "-o", "json", "--cp-address", api))
    assert got["spec"]["to"][0]["default"] == changed

    assert ok("delete", singular, name, "--cp-address", api) == f"{where} deleted\n"
    assert failed("get", singular, name, "--cp-address", api) == (
        f'Error: {singular} "{name}" not found in mesh "default"\n'
    )
    assert name not in ok("get", plural, "--cp-address", api)
