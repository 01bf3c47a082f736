"""A standalone mesh end to end: real CP, real agents, real Envoys, real traffic."""

from __future__ import annotations

import signal
import socket
import threading
from collections import Counter

import httpx
import pytest

from testkit.mesh import MeshEnv
from testkit.procs import free_port, kumadp_command, wait_until

pytestmark = pytest.mark.e2e


def _get_json(url: str) -> dict[str, object]:
    resp = httpx.get(url, timeout=5)
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def test_http_request_flows_through_two_sidecars(env: MeshEnv) -> None:
    env.start_cp()
    backend, _ = env.start_service("backend-1", "backend")
    web, web_port = env.start_service("web-1", "web", upstream_service="backend")

    # The web app calls backend through its sidecar's outbound; wait for EDS to land.
    body = wait_until(
        lambda: _get_json(f"http://127.0.0.1:{web_port}/hello"),
        what="web -> backend through the mesh",
    )
    assert body["instance"] == "web-1"
    assert body["upstream"] == {"instance": "backend-1", "path": "/hello"}
    # And the request really went through backend's Envoy: its inbound listener counted it.
    stats = httpx.get(
        f"http://127.0.0.1:{backend.admin_port}/stats",
        params={"filter": r"^http\.localhost_.*\.downstream_rq_2xx$"},
        timeout=2,
    ).text
    assert stats.strip() and int(stats.split(":")[-1]) >= 1, stats
    # The CP knows both dataplanes.
    assert env.cp is not None and env.cp.dataplane_names() == {"backend-1", "web-1"}
    assert web.cluster_endpoints("backend") == {f"127.0.0.1:{backend.inbound_port}"}


def test_tcp_traffic_flows(env: MeshEnv) -> None:
    env.start_cp()
    echo, _ = env.start_service("echo-1", "echo", protocol="tcp")
    out_port = free_port()
    doc, _ = env.dataplane_yaml("client-1", "client", free_port(), outbounds={"echo": out_port})
    client = env.start_agent("client-1", doc)
    wait_until(lambda: client.cluster_endpoints("echo"), what="echo endpoint")

    def roundtrip() -> bytes:
        with socket.create_connection(("127.0.0.1", out_port), timeout=5) as sock:
            sock.sendall(b"ping\n")
            return sock.recv(100)

    assert wait_until(roundtrip, what="tcp echo through the mesh") == b"echo-1: ping\n"
    assert echo.ready()


def test_second_backend_gets_a_share_and_leaves_without_failed_requests(env: MeshEnv) -> None:
    env.start_cp()
    env.start_service("backend-1", "backend")
    web, web_port = env.start_service("web-1", "web", upstream_service="backend")
    url = f"http://127.0.0.1:{web_port}/"
    wait_until(lambda: _get_json(url), what="first backend reachable")

    backend2, _ = env.start_service("backend-2", "backend")
    seen: Counter[str] = Counter()

    def both_answer() -> bool:
        body = _get_json(url)
        seen[body["upstream"]["instance"]] += 1  # type: ignore[index]
        return len(seen) == 2

    wait_until(both_answer, timeout=20, what="both backends answering")

    # Keep traffic flowing while backend-2's sidecar stops gracefully: no request may fail.
    failures: list[str] = []
    answered: Counter[str] = Counter()
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=5) as client:
            while not stop.is_set():
                try:
                    resp = client.get(url)
                    if resp.status_code != 200:
                        failures.append(f"{resp.status_code} {resp.text[:200]}")
                    else:
                        answered[resp.json()["upstream"]["instance"]] += 1
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))

    thread = threading.Thread(target=load)
    thread.start()
    try:
        wait_until(lambda: sum(answered.values()) >= 20, what="load running")
        backend2.proc.signal(signal.SIGTERM)
        # The CP removes backend-2 from web's endpoints while backend-2 is still draining.
        wait_until(
            lambda: f"127.0.0.1:{backend2.inbound_port}" not in web.cluster_endpoints("backend"),
            timeout=5,
            what="backend-2 removed from web's endpoints",
        )
        assert backend2.proc.poll() is None, "agent should still be draining"
        assert backend2.proc.wait(timeout=20) == 0, backend2.proc.tail()
        before = answered["backend-1"]
        wait_until(lambda: answered["backend-1"] >= before + 20, what="traffic after the stop")
    finally:
        stop.set()
        thread.join()
    assert failures == [], failures[:5]
    assert env.cp is not None and env.cp.dataplane_names() == {"backend-1", "web-1"}


def test_killed_agent_is_deregistered_after_the_delay(env: MeshEnv) -> None:
    env.start_cp(extra=["--deregistration-delay", "1s"])
    backend, _ = env.start_service("backend-1", "backend")
    web, _ = env.start_service("web-1", "web", upstream_service="backend")
    wait_until(lambda: web.cluster_endpoints("backend"), what="endpoint")
    backend.proc.signal(signal.SIGKILL)  # Envoy dies with it (parent-death signal)
    assert env.cp is not None
    wait_until(
        lambda: env.cp.dataplane_names() == {"web-1"},  # type: ignore[union-attr]
        timeout=10,
        what="backend-1 deregistered",
    )
    wait_until(lambda: not web.cluster_endpoints("backend"), timeout=5, what="endpoint gone")


def test_agent_started_before_the_cp_waits_then_succeeds(env: MeshEnv) -> None:
    api_port = free_port()
    app_port = env.start_http_app("backend-1")
    doc, _ = env.dataplane_yaml("backend-1", "backend", app_port)
    agent = env.start_agent("backend-1", doc, cp_url=f"http://127.0.0.1:{api_port}", wait=False)
    wait_until(
        lambda: "retry" in agent.proc.output().lower(), what="agent retrying", proc=agent.proc
    )
    env.start_cp(api_port=api_port, dp_auth="none")  # no CP yet to issue a token
    wait_until(agent.ready, timeout=30, what="agent ready after the CP came up", proc=agent.proc)


def test_bad_dataplane_file_fails_with_the_field_path(env: MeshEnv) -> None:
    cp = env.start_cp()
    doc, _ = env.dataplane_yaml("bad-1", "backend", 8080)
    bad = doc.replace('"servicePort": 8080', '"servicePort": 70000')
    agent = env.start_agent("bad-1", bad, wait=False)
    code = agent.proc.wait(timeout=20)
    out = agent.proc.output()
    assert code != 0
    assert "networking.inbound[0].servicePort" in out, out
    assert "Traceback" not in out, out
    assert cp.dataplane_names() == set()


def test_dataplane_from_stdin_with_variables(env: MeshEnv) -> None:
    env.start_cp()
    app_port = env.start_http_app("backend-1")
    inbound = free_port()
    template = (
        "type: Dataplane\nmesh: default\nname: '{{ name }}'\nnetworking:\n"
        "  address: 127.0.0.1\n  inbound:\n  - port: {{ port.inbound }}\n"
        "    servicePort: {{ port.app }}\n    tags: {kuma.io/service: backend}\n"
    )
    admin, ready = free_port(), free_port()
    assert env.cp is not None
    token = env.tmp / "stdin.token"
    token.write_text(env.cp.token("backend-1"))
    proc = env.procs.start(
        "agent-stdin",
        kumadp_command(
            "run",
            "--cp-address",
            env.cp.url,
            "--dataplane-file",
            "-",
            "-v",
            "name=backend-1",
            "-v",
            f"port.inbound={inbound}",
            "-v",
            f"port.app={app_port}",
            "--admin-port",
            str(admin),
            "--readiness-port",
            str(ready),
            "--dns-port",
            str(free_port()),
            "--dataplane-token-file",
            str(token),
            "--drain-time",
            "0s",
        ),
        stdin=template.encode(),
    )
    wait_until(
        lambda: httpx.get(f"http://127.0.0.1:{ready}/ready", timeout=1).text.strip() == "READY",
        what="stdin agent ready",
        proc=proc,
    )
    assert env.cp.dataplane_names() == {"backend-1"}
    assert _get_json(f"http://127.0.0.1:{inbound}/x")["instance"] == "backend-1"


def test_cp_restart_keeps_resources(env: MeshEnv) -> None:
    cp = env.start_cp()
    mesh = {"type": "Mesh", "name": "payments"}
    assert httpx.put(cp.url + "/meshes/payments", json=mesh, timeout=5).status_code == 201
    cp.proc.stop()
    cp2 = env.start_cp(data_dir=cp.data_dir)
    names = {m["name"] for m in cp2.get("/meshes").json()["items"]}
    assert names == {"default", "payments"}
