"""The resilience policies on real traffic: a real CP, agents, Envoys and misbehaving demo
backends (``kumadp.demo_app``). A client dataplane's outbound is called directly.

The mesh's initial policies (mesh-retry-all, mesh-circuit-breaker-all, ...) would hide some
failures on their own (retries on gateway errors, ejection after 5 gateway failures): each
test removes the ones that would mask what it shows, on purpose.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from testkit.mesh import Agent, ControlPlane, MeshEnv
from testkit.procs import free_port, kumadp_command, wait_until

pytestmark = pytest.mark.e2e


def put_policy(cp: ControlPlane, plural: str, name: str, spec: dict[str, Any], kind: str) -> None:
    doc = {"type": kind, "mesh": "default", "name": name, "spec": spec}
    resp = httpx.put(f"{cp.url}/meshes/default/{plural}/{name}", json=doc, timeout=5)
    assert resp.status_code in (200, 201), resp.text


def drop_initial(cp: ControlPlane, *plurals_and_names: tuple[str, str]) -> None:
    for plural, name in plurals_and_names:
        resp = httpx.delete(f"{cp.url}/meshes/default/{plural}/{name}", timeout=5)
        assert resp.status_code == 200, resp.text


NO_RETRY = ("meshretries", "mesh-retry-all-default")
NO_CIRCUIT_BREAKER = ("meshcircuitbreakers", "mesh-circuit-breaker-all-default")


def client(env: MeshEnv, *services: str, tags: dict[str, str] | None = None) -> tuple[Agent, int]:
    """A dataplane with an outbound to the first service (its inbound has no app)."""
    out = free_port()
    doc, _ = env.dataplane_yaml(
        "client-1", "client", free_port(), outbounds={services[0]: out}, tags=tags
    )
    return env.start_agent("client-1", doc, outbound_ports={services[0]: out}), out


def call(port: int, path: str = "/", **headers: str) -> tuple[int, str | None]:
    """(status, the instance that answered, if any)."""
    resp = httpx.get(f"http://127.0.0.1:{port}{path}", headers=headers, timeout=10)
    try:
        instance = resp.json().get("instance")
    except ValueError:
        instance = None
    return resp.status_code, instance


def host_flags(agent: Agent, cluster: str) -> dict[str, dict[str, Any]]:
    """``ip:port`` -> Envoy's health_status of each host of ``cluster``."""
    resp = httpx.get(f"http://127.0.0.1:{agent.admin_port}/clusters?format=json", timeout=2)
    out = {}
    for status in resp.json().get("cluster_statuses", []):
        if status["name"] == cluster:
            for host in status.get("host_statuses", []):
                address = host["address"]["socket_address"]
                out[f"{address['address']}:{address['port_value']}"] = host["health_status"]
    return out


def test_mesh_retry_hides_a_flaky_backend(env: MeshEnv) -> None:
    cp = env.start_cp()
    drop_initial(cp, NO_RETRY, NO_CIRCUIT_BREAKER)
    env.start_service("backend-1", "backend", app_args=["--fail-every", "3"])
    agent, port = client(env, "backend")
    wait_until(lambda: agent.cluster_endpoints("backend"), what="backend endpoint")

    # Without retries a third of the requests fail.
    statuses = Counter(call(port)[0] for _ in range(30))
    assert statuses == {200: 20, 503: 10}, statuses

    retry = {"http": {"numRetries": 2, "retryOn": ["5XX"], "backOff": {"baseInterval": "10ms"}}}
    put_policy(
        cp,
        "meshretries",
        "retry-backend",
        {"to": [{"targetRef": {"kind": "MeshService", "name": "backend"}, "default": retry}]},
        "MeshRetry",
    )
    # Once Envoy has the retry policy, every request succeeds.
    wait_until(
        lambda: all(call(port)[0] == 200 for _ in range(6)), what="retries in effect", timeout=15
    )
    assert Counter(call(port)[0] for _ in range(30)) == {200: 30}


def test_mesh_timeout_cuts_a_slow_backend(env: MeshEnv) -> None:
    cp = env.start_cp()
    env.start_service("backend-1", "backend", app_args=["--delay", "2"])
    agent, port = client(env, "backend")
    wait_until(lambda: agent.cluster_endpoints("backend"), what="backend endpoint")
    started = time.monotonic()
    assert call(port) == (200, "backend-1")  # the initial policy: 15 s per request
    assert time.monotonic() - started >= 2

    # Selecting the client by its service: more specific than the initial policy (kind
    # Mesh), whose requestTimeout it overrides. (A second kind-Mesh policy would not win: of
    # two equally specific policies, the name first in alphabetical order does.)
    timeout = {"http": {"requestTimeout": "500ms"}}
    put_policy(
        cp,
        "meshtimeouts",
        "timeout-backend",
        {
            "targetRef": {"kind": "MeshService", "name": "client"},
            "to": [{"targetRef": {"kind": "MeshService", "name": "backend"}, "default": timeout}],
        },
        "MeshTimeout",
    )

    def cut() -> bool:
        started = time.monotonic()
        status, _ = call(port)
        return status == 504 and time.monotonic() - started < 1.5

    wait_until(cut, what="requests cut after 500 ms", timeout=20)

    # What applies to the client, as ctl shows it (the CP's _rules API).
    out = subprocess.run(
        kumadp_command("ctl", "inspect", "dataplane", "client-1", "--cp-address", cp.url),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    (row,) = [line for line in out.splitlines() if "kuma.io/service=backend" in line]
    assert row.split()[:4] == [
        "MeshTimeout",
        "to",
        "kuma.io/service=backend",
        "mesh-timeout-all-default,timeout-backend",
    ]
    assert "http.requestTimeout=500ms" in row


def test_mesh_circuit_breaker_ejects_a_failing_instance(env: MeshEnv) -> None:
    cp = env.start_cp()
    drop_initial(cp, NO_RETRY, NO_CIRCUIT_BREAKER)
    healthy, _ = env.start_service("backend-1", "backend")
    failing, _ = env.start_service("backend-2", "backend", app_args=["--status", "503"])
    breaker = {
        "outlierDetection": {
            "interval": "1s",
            "baseEjectionTime": "1m",
            "maxEjectionPercent": 50,
            "detectors": {"gatewayFailures": {"consecutive": 2}},
        }
    }
    put_policy(
        cp,
        "meshcircuitbreakers",
        "eject-failing",
        {"to": [{"targetRef": {"kind": "MeshService", "name": "backend"}, "default": breaker}]},
        "MeshCircuitBreaker",
    )
    agent, port = client(env, "backend")
    wait_until(lambda: len(agent.cluster_endpoints("backend")) == 2, what="both endpoints")

    bad = f"127.0.0.1:{failing.inbound_port}"
    answers: Counter[tuple[int, str | None]] = Counter()

    def ejected() -> bool:
        answers[call(port)] += 1
        return bool(host_flags(agent, "backend")[bad].get("failed_outlier_check"))

    wait_until(ejected, what="backend-2 ejected", timeout=20)
    assert answers[(503, "backend-2")] >= 2  # it failed before it was ejected
    # From now on every request goes to the healthy instance.
    assert Counter(call(port) for _ in range(20)) == {(200, "backend-1"): 20}
    assert healthy.ready()


def test_mesh_health_check_marks_an_instance_unhealthy_before_any_request(env: MeshEnv) -> None:
    cp = env.start_cp()
    drop_initial(cp, NO_RETRY)
    env.start_service("backend-1", "backend")
    sick, _ = env.start_service("backend-2", "backend", app_args=["--unhealthy"])
    check = {
        "interval": "1s",
        "timeout": "1s",
        "unhealthyThreshold": 1,
        "healthyThreshold": 1,
        "healthyPanicThreshold": 0,
        "http": {"path": "/health"},
    }
    put_policy(
        cp,
        "meshhealthchecks",
        "check-backend",
        {"to": [{"targetRef": {"kind": "MeshService", "name": "backend"}, "default": check}]},
        "MeshHealthCheck",
    )
    agent, port = client(env, "backend")
    sick_host = f"127.0.0.1:{sick.inbound_port}"
    wait_until(
        lambda: host_flags(agent, "backend").get(sick_host, {}).get("failed_active_health_check"),
        what="backend-2 marked unhealthy by the health check",
    )
    # No request was sent yet: the very first ones all go to the healthy instance.
    assert Counter(call(port) for _ in range(20)) == {(200, "backend-1"): 20}


def test_mesh_load_balancing_strategy_ring_hash_pins_each_user(env: MeshEnv) -> None:
    cp = env.start_cp()
    for n in (1, 2, 3):
        env.start_service(f"backend-{n}", "backend")
    agent, port = client(env, "backend")
    wait_until(lambda: len(agent.cluster_endpoints("backend")) == 3, what="three endpoints")
    # Round robin (the default): one user's requests spread over the instances.
    assert len({call(port, **{"x-user": "alice"})[1] for _ in range(6)}) > 1

    ring_hash = {
        "loadBalancer": {
            "type": "RingHash",
            "ringHash": {"hashPolicies": [{"type": "Header", "header": {"name": "x-user"}}]},
        }
    }
    put_policy(
        cp,
        "meshloadbalancingstrategies",
        "pin-users",
        {"to": [{"targetRef": {"kind": "MeshService", "name": "backend"}, "default": ring_hash}]},
        "MeshLoadBalancingStrategy",
    )

    def pinned(user: str) -> str | None:
        seen = {call(port, **{"x-user": user})[1] for _ in range(8)}
        return seen.pop() if len(seen) == 1 else None

    wait_until(lambda: pinned("alice"), what="alice pinned to one instance", timeout=20)
    instances = [pinned(f"user-{n}") for n in range(8)]
    assert None not in instances, instances  # every user sticks to one instance


def test_locality_aware_failover_follows_the_failover_list(env: MeshEnv) -> None:
    """Zones from the endpoints' kuma.io/zone tags (one standalone CP): traffic stays in the
    client's zone, fails over to the zone the list names, never to the excluded one."""
    cp = env.start_cp()
    drop_initial(cp, NO_RETRY)
    local, _ = env.start_service("backend-a", "backend", tags={"kuma.io/zone": "zone-a"})
    named, _ = env.start_service("backend-b", "backend", tags={"kuma.io/zone": "zone-b"})
    env.start_service("backend-c", "backend", tags={"kuma.io/zone": "zone-c"})
    locality = {
        "localityAwareness": {
            "crossZone": {
                "failover": [
                    {"to": {"type": "Only", "zones": ["zone-b"]}},
                    {"to": {"type": "AnyExcept", "zones": ["zone-c"]}},
                ]
            }
        }
    }
    put_policy(
        cp,
        "meshloadbalancingstrategies",
        "zones",
        {"to": [{"targetRef": {"kind": "Mesh"}, "default": locality}]},
        "MeshLoadBalancingStrategy",
    )
    _, port = client(env, "backend", tags={"kuma.io/zone": "zone-a"})
    wait_until(lambda: call(port) == (200, "backend-a"), what="traffic in zone-a")
    assert Counter(call(port) for _ in range(10)) == {(200, "backend-a"): 10}

    local.proc.stop()  # zone-a has no instance left: zone-b, as the list says
    wait_until(lambda: call(port) == (200, "backend-b"), what="failover to zone-b")
    assert Counter(call(port) for _ in range(10)) == {(200, "backend-b"): 10}

    named.proc.stop()  # zone-c is excluded: nothing left to go to
    wait_until(lambda: call(port)[0] == 503, what="no failover to zone-c")
    assert not any(call(port)[1] == "backend-c" for _ in range(10))
