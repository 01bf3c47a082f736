"""Transparent proxy for real, inside two network namespaces the test creates and deletes.

    ns "peer" 10.99.N.1  <--- veth --->  10.99.N.2 ns "app"
    HTTP server :8081                    HTTP server :8080 (in the mesh) and :8090 (not)
                                         Envoy as uid 1337 with the generated passthrough
                                         listeners; ``kumadp install transparent-proxy``

Everything root-only happens inside those namespaces (fixed ports are fine there: nothing
else lives in them); the host's own interfaces and iptables rules are never touched.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from envoy.config.bootstrap.v3.bootstrap_pb2 import Bootstrap
from google.protobuf.json_format import MessageToJson

from kumadp.agent.envoy import resolve_binary
from kumadp.cp.generate import build_mesh_view, generate
from kumadp.resources import Mesh, parse_dataplane
from kumadp.xds import types
from testkit.procs import wait_until

pytestmark = pytest.mark.e2e

ENVOY_UID = 1337  # the kuma-dp user: its traffic is never redirected
ADMIN_PORT = 9901
MESH_PORT = 8080  # the app's port behind an inbound listener
OTHER_PORT = 8090  # an app port that is not in the mesh: inbound passthrough
PEER_PORT = 8081
DEADLINE_SECONDS = 20.0

# A tiny HTTP server: answers "<name>:<port> from <client address>" on each port given.
SERVER = """
import sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

name = sys.argv[1]

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"{name}:{self.server.server_port} from {self.client_address[0]}".encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

servers = [ThreadingHTTPServer(("0.0.0.0", int(port)), Handler) for port in sys.argv[2:]]
for server in servers[1:]:
    threading.Thread(target=server.serve_forever, daemon=True).start()
print("ready", flush=True)
servers[0].serve_forever()
"""

# The CLI module on its own (the lead wires it into ``kumadp``): argv after ``-c`` is its own.
CLI = (
    "from kumadp.cli import tproxy; import typer; app = typer.Typer(); tproxy.register(app); app()"
)


def _why_not() -> str | None:
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "needs root to create network namespaces and iptables rules in them"
    for tool in ("ip", "iptables-save", "iptables-restore", "setpriv", "curl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} -> {done.returncode}: {done.stderr}{done.stdout}")
    return done


@dataclass
class Netns:
    app: str
    peer: str
    app_ip: str
    peer_ip: str
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def run(self, ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run("ip", "netns", "exec", ns, *args, check=check)

    def start(self, ns: str, *args: str, log: Path) -> subprocess.Popen[str]:
        with log.open("w") as out:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, *args],
                stdout=subprocess.PIPE,
                stderr=out,
                text=True,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def http(self, ns: str, url: str) -> str:
        return self.run(ns, "curl", "-sS", "--max-time", "5", url).stdout

    def kumadp(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(self.app, sys.executable, "-c", CLI, *args)

    def nat_rules(self) -> str:
        saved = self.run(self.app, "iptables-save", "-t", "nat").stdout
        return "\n".join(line for line in saved.splitlines() if not line.startswith("#"))


@pytest.fixture
def netns() -> Iterator[Netns]:
    reason = _why_not()
    if reason is not None:
        pytest.skip(reason)
    suffix = secrets.token_hex(3)
    subnet = f"10.99.{secrets.randbelow(250) + 1}"
    env = Netns(f"kdp-app-{suffix}", f"kdp-peer-{suffix}", f"{subnet}.2", f"{subnet}.1")
    created: list[str] = []
    try:
        for ns in (env.app, env.peer):
            added = _run("ip", "netns", "add", ns, check=False)
            if added.returncode != 0:
                pytest.skip(f"cannot create a network namespace: {added.stderr.strip()}")
            created.append(ns)
        # The veth pair is made inside the app namespace, its peer end moved to "peer".
        _run("ip", "-n", env.app, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1")
        _run("ip", "-n", env.app, "link", "set", "veth1", "netns", env.peer)
        for ns, dev, ip in ((env.app, "veth0", env.app_ip), (env.peer, "veth1", env.peer_ip)):
            _run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            _run("ip", "-n", ns, "link", "set", dev, "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        yield env
    finally:
        for proc in env.procs:
            _stop(proc)
        for ns in created:
            _run("ip", "netns", "delete", ns, check=False)


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    if proc.stdout is not None:
        proc.stdout.close()


def _wait_ready_line(proc: subprocess.Popen[str], log: Path) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the server prints "ready" once every port is bound
    assert line.strip() == "ready", log.read_text()


def _envoy_config(env: Netns, workdir: Path) -> Path:
    """The CP's generated resources for a transparent-proxied dataplane, as static config."""
    dataplane = parse_dataplane(
        {
            "type": "Dataplane",
            "mesh": "default",
            "name": "app-1",
            "networking": {
                "address": env.app_ip,
                "inbound": [{"port": MESH_PORT, "tags": {"kuma.io/service": "app"}}],
                "transparentProxying": {},
            },
        }
    )
    resources = generate(build_mesh_view(Mesh(name="default"), [dataplane]), dataplane)
    assert resources[types.ENDPOINT] == []  # no EDS: everything can be static
    bootstrap = Bootstrap()
    bootstrap.node.id = "default.app-1"
    bootstrap.node.cluster = "app"
    admin = bootstrap.admin.address.socket_address
    admin.address, admin.port_value = "127.0.0.1", ADMIN_PORT
    for cluster in resources[types.CLUSTER]:
        bootstrap.static_resources.clusters.add().CopyFrom(cluster)
    for listener in resources[types.LISTENER]:
        bootstrap.static_resources.listeners.add().CopyFrom(listener)
    config = workdir / "envoy.json"
    config.write_text(MessageToJson(bootstrap))
    config.chmod(0o644)
    return config


def _wait_envoy(env: Netns, proc: subprocess.Popen[str], log: Path) -> None:
    url = f"http://127.0.0.1:{ADMIN_PORT}/ready"

    def live() -> bool:
        ready = env.run(env.app, "curl", "-sS", "--max-time", "1", url, check=False)
        return ready.stdout.strip() == "LIVE"

    try:
        wait_until(
            lambda: proc.poll() is not None or live(),
            timeout=DEADLINE_SECONDS,
            interval=0.05,
            what="envoy LIVE",
        )
    except TimeoutError as exc:
        raise AssertionError(f"{exc}: {log.read_text()[-3000:]}") from None
    assert proc.poll() is None, f"envoy exited {proc.returncode}: {log.read_text()[-3000:]}"


def _stats(env: Netns) -> dict[str, int]:
    text = env.http(env.app, f"http://127.0.0.1:{ADMIN_PORT}/stats?usedonly")
    stats: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        if value.strip().isdigit():
            stats[name] = int(value)
    return stats


def test_traffic_goes_through_envoy_and_uninstall_removes_the_rules(netns: Netns) -> None:
    env = netns
    workdir = Path(tempfile.mkdtemp(prefix="kdp-tproxy-"))
    try:
        workdir.chmod(0o755)  # Envoy runs as another user and reads its config here
        _scenario(env, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _scenario(env: Netns, workdir: Path) -> None:
    app_log, peer_log, envoy_log = (workdir / f"{n}.log" for n in ("app", "peer", "envoy"))
    app = env.start(
        env.app, sys.executable, "-c", SERVER, "app", str(MESH_PORT), str(OTHER_PORT), log=app_log
    )
    peer = env.start(env.peer, sys.executable, "-c", SERVER, "peer", str(PEER_PORT), log=peer_log)
    _wait_ready_line(app, app_log)
    _wait_ready_line(peer, peer_log)
    # Without rules the peer reaches the app directly.
    assert env.http(env.peer, f"http://{env.app_ip}:{MESH_PORT}/") == (
        f"app:{MESH_PORT} from {env.peer_ip}"
    )

    install = ("install", "transparent-proxy", "--kuma-dp-user", str(ENVOY_UID))
    env.kumadp(*install)
    rules = env.nat_rules()
    env.kumadp(*install)
    assert env.nat_rules() == rules, "installing twice must give the same rules"
    assert f"--uid-owner {ENVOY_UID}" in rules

    envoy = env.start(
        env.app,
        "setpriv",
        f"--reuid={ENVOY_UID}",
        f"--regid={ENVOY_UID}",
        "--clear-groups",
        resolve_binary(None, {}),
        "-c",
        str(_envoy_config(env, workdir)),
        "--disable-hot-restart",
        "--log-level",
        "warning",
        log=envoy_log,
    )
    _wait_envoy(env, envoy, envoy_log)
    before = _stats(env)

    # (a) outbound: the app calls the other namespace; Envoy's outbound passthrough carries it
    # to its original destination (Envoy's own connection is not redirected again).
    answer = env.http(env.app, f"http://{env.peer_ip}:{PEER_PORT}/")
    assert answer == f"peer:{PEER_PORT} from {env.app_ip}"

    # (b) inbound to the mesh port: redirected to 15006, handed to inbound:<ip>:8080 (which
    # does not bind), forwarded to the app on 127.0.0.1.
    answer = env.http(env.peer, f"http://{env.app_ip}:{MESH_PORT}/")
    assert answer == f"app:{MESH_PORT} from 127.0.0.1"
    # ... and to a port outside the mesh: inbound passthrough, from 127.0.0.6.
    answer = env.http(env.peer, f"http://{env.app_ip}:{OTHER_PORT}/")
    assert answer == f"app:{OTHER_PORT} from 127.0.0.6"

    after = _stats(env)

    def grew(name: str, by: int = 1) -> bool:
        return after.get(name, 0) - before.get(name, 0) >= by

    assert grew("listener.0.0.0.0_15001.downstream_cx_total"), after
    assert grew("cluster.outbound_passthrough_ipv4.upstream_cx_total"), after
    # A connection handed to another listener is counted by that listener only.
    assert grew(f"listener.{env.app_ip}_{MESH_PORT}.downstream_cx_total"), after
    assert grew("tcp.localhost_8080.downstream_cx_total"), after
    assert grew("listener.0.0.0.0_15006.downstream_cx_total"), after
    assert grew("cluster.inbound_passthrough_ipv4.upstream_cx_total"), after

    # (c) uninstall removes exactly our chains and jumps; traffic is direct again.
    env.kumadp("uninstall", "transparent-proxy")
    rules = env.nat_rules()
    assert "KUMA_MESH" not in rules, rules
    again = env.kumadp("uninstall", "transparent-proxy")  # idempotent
    assert "not installed" in again.stderr
    assert env.http(env.peer, f"http://{env.app_ip}:{MESH_PORT}/") == (
        f"app:{MESH_PORT} from {env.peer_ip}"
    )
