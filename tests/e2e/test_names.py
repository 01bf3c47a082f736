"""Services by name end to end: VIPs, the agent's resolver, bind-outbounds."""

from __future__ import annotations

import shutil
import socket
import subprocess

import httpx
import pytest
from dnslib import QTYPE, DNSRecord

from testkit.mesh import Agent, MeshEnv
from testkit.procs import wait_until
from tests.e2e.test_mtls import enable_mtls

pytestmark = pytest.mark.e2e


def resolve(agent: Agent, name: str, qtype: str = "A") -> tuple[str, list[str]]:
    """(rcode, answers) from the agent's resolver, over UDP."""
    assert agent.dns_port is not None
    query = DNSRecord.question(name, qtype)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(query.pack(), ("127.0.0.1", agent.dns_port))
        reply = DNSRecord.parse(sock.recv(4096))
    rcode = {0: "NOERROR", 3: "NXDOMAIN"}.get(reply.header.rcode, str(reply.header.rcode))
    return rcode, [str(rr.rdata) for rr in reply.rr if rr.rtype == getattr(QTYPE, qtype)]


def test_app_reaches_a_service_by_name_with_bind_outbounds_and_mtls(env: MeshEnv) -> None:
    env.start_cp()
    enable_mtls(env)
    env.start_service("backend-1", "backend")
    web, _ = env.start_service("web-1", "web", extra=["--bind-outbounds"])

    def resolved() -> tuple[str, list[str]] | None:
        result = resolve(web, "backend.mesh")
        return result if result[1] else None

    rcode, answers = wait_until(resolved, what="backend.mesh resolvable")
    assert rcode == "NOERROR" and len(answers) == 1
    ip = answers[0]
    assert ip.startswith("127.1."), ip  # a per-service loopback address: no iptables needed
    assert resolve(web, "nothing.mesh")[0] == "NXDOMAIN"
    assert resolve(web, "BACKEND.MESH")[1] == [ip]

    # http://backend.mesh/ -> the loopback address -> web's Envoy -> mTLS -> backend.
    body = wait_until(
        lambda: httpx.get(f"http://{ip}/hello", headers={"host": "backend.mesh"}, timeout=5).json(),
        what="http://backend.mesh through the mesh",
    )
    assert body == {"instance": "backend-1", "path": "/hello"}

    if shutil.which("dig"):
        out = subprocess.run(
            ["dig", "@127.0.0.1", "-p", str(web.dns_port), "backend.mesh", "A", "+short"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.split()
        assert out == [ip]


def test_a_joining_service_is_resolvable_quickly_by_every_agent(env: MeshEnv) -> None:
    env.start_cp()
    a, _ = env.start_service("a-1", "a")
    b, _ = env.start_service("b-1", "b")
    wait_until(lambda: resolve(a, "b.mesh")[1] and resolve(b, "a.mesh")[1], what="tables")
    env.start_service("newcomer-1", "newcomer", wait=False)

    def everyone_knows() -> bool:
        return all(resolve(agent, "newcomer.mesh")[1] for agent in (a, b))

    # Pushed, not polled: every agent answers for the newcomer (scripts/bench names measures
    # how fast: p99 over 20 trials).
    wait_until(everyone_knows, timeout=20, interval=0.005, what="newcomer.mesh everywhere")
