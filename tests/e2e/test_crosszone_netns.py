"""Cross-zone traffic for real: each zone in its own network namespace, a wan namespace
routing between them with the global CP (``testkit.zonenet``); real CPs, agents, Envoys,
zone ingresses and egresses, and requests.

    zone-a: web-1 (client, bind-outbounds), locala-1      egress ze-zone-a (one test)
    zone-b: backend-b1, backend-b2, onlyb-1, web-b         ingress zi-zone-b on 10.99.2.2
    zone-c: backend-c1                                     ingress zi-zone-c on 10.99.3.2

Inside a zone everything listens on 127.0.0.1 but its ingress: the only address another
zone can reach (the first test proves it). The mesh has mTLS: one root on the global CP,
and each zone's dataplanes get leaves from that zone's own intermediate CA (signed by the
global CP over KDS), so a call between zones is verified across two intermediates. One
topology serves the whole module; the tests run in order and each leaves it as it
found it. Root only (network namespaces); skipped with the reason otherwise.
"""

from __future__ import annotations

import base64
import signal
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from testkit.crosszone import RequestLoop, Topology, start_zone_proxy, zone_ingress_doc
from testkit.mesh import Agent
from testkit.procs import kumadp_command, wait_until
from testkit.zonenet import connects, why_not

pytestmark = pytest.mark.e2e

ZONES = ("zone-a", "zone-b", "zone-c")
ZONE_OF = {"a": "zone-a", "b": "zone-b", "c": "zone-c"}  # backend-<zone letter><n>


class World:
    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.agents: dict[str, Agent] = {}
        self.zone_of: dict[str, str] = {}

    def start(self, zone: str, name: str, service: str, **kwargs: object) -> Agent:
        self.agents[name] = agent = self.topo.start_service(zone, name, service, **kwargs)
        self.zone_of[name] = zone
        return agent

    def url(self, client: str, service: str) -> str:
        """``<service>.mesh`` through ``client``'s sidecar (what its app would call)."""
        zone = self.zone_of[client]
        address = wait_until(
            lambda: self.topo.resolve(zone, self.agents[client], service),
            what=f"{service}.mesh at {client}",
        )
        return f"http://{address}/"

    def ask(self, zone: str, url: str) -> str:
        return self.topo.ask(zone, url)

    def answers(self, zone: str, url: str, count: int) -> Counter[str]:
        return Counter(self.ask(zone, url) for _ in range(count))

    def kill(self, name: str) -> None:
        """The instance dies at once: its app, its agent and Envoy (no goodbye)."""
        for proc in self.topo.env.procs.procs:
            if proc.name in (f"agent-{name}", f"app-{name}"):
                proc.kill_group()

    def ctl(self, zone: str | None, *args: str) -> str:
        cp = self.topo.global_cp if zone is None else self.topo.zones[zone].cp
        assert cp is not None
        with self.topo.enter(zone):
            done = subprocess.run(
                kumadp_command("ctl", *args, "--cp-address", cp.url),
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout


def _zones_of(answers: Counter[str]) -> Counter[str]:
    """Answers by zone: ``backend-b2`` is in zone-b."""
    zones: Counter[str] = Counter()
    for name, n in answers.items():
        zones[ZONE_OF[name.split("-")[-1][0]]] += n
    return zones


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    reason = why_not()
    if reason is not None:
        pytest.skip(reason)
    tmp = Path(tempfile.mkdtemp(prefix="kdp-crosszone-"))
    topo = Topology(tmp, ZONES)
    try:
        topo.start()
        world = World(topo)
        for zone in ("zone-b", "zone-c"):
            topo.start_ingress(zone)
        world.start("zone-b", "backend-b1", "backend")
        world.start("zone-b", "backend-b2", "backend")
        world.start("zone-c", "backend-c1", "backend")
        world.start("zone-b", "onlyb-1", "onlyb")
        world.start("zone-b", "web-b", "webb", by_name=True, upstream_service="onlyb")
        world.start("zone-a", "locala-1", "locala")
        world.start("zone-a", "web-1", "web", by_name=True, upstream_service="backend")
        yield world
    finally:
        topo.close()


def test_a_client_in_zone_a_reaches_a_service_only_in_zone_b_through_its_ingress(
    world: World,
) -> None:
    topo = world.topo
    onlyb = world.agents["onlyb-1"]
    zone_b = topo.star.address("zone-b")
    # zone-a reaches nothing of zone-b but its ingress
    with topo.enter("zone-a"):
        assert onlyb.inbound_port is not None
        assert not connects(zone_b, onlyb.inbound_port)
        assert not connects("127.0.0.1", onlyb.inbound_port)  # its own loopback: nobody
        assert connects(zone_b, topo.INGRESS_PORT)
    with topo.enter("zone-b"):
        assert connects("127.0.0.1", onlyb.inbound_port)

    url = world.url("web-1", "onlyb")  # a VIP and a .mesh name for a service only in zone-b
    assert wait_until(lambda: world.ask("zone-a", url), what="onlyb from zone-a") == "onlyb-1"
    ingress = topo.zones["zone-b"].ingress
    assert ingress is not None
    assert topo.envoy_stat("zone-b", ingress, "cluster.default_onlyb.upstream_cx_total") >= 1
    with topo.enter("zone-a"):
        endpoints = world.agents["web-1"].cluster_endpoints("backend")
        assert endpoints == {f"{zone_b}:10001", f"{topo.star.address('zone-c')}:10001"}
    # the ingress holds no key and terminates no TLS
    admin = f"http://127.0.0.1:{ingress.admin_port}/config_dump?resource="
    with topo.enter("zone-b"):
        listeners = httpx.get(admin + "dynamic_listeners", timeout=5).json()
        secrets = httpx.get(admin + "dynamic_active_secrets", timeout=5).json()
    assert "server_names" in str(listeners) and "transport_socket" not in str(listeners)
    assert secrets.get("configs", []) == []

    # each side's identity chains through its own zone's intermediate to the one root
    client_chain, server_chain = (
        _chain(world, "zone-a", "web-1"),
        _chain(world, "zone-b", "onlyb-1"),
    )
    assert len(client_chain) == len(server_chain) == 2  # leaf + the zone's intermediate
    assert client_chain[1].subject != server_chain[1].subject
    assert client_chain[1].issuer == server_chain[1].issuer  # the mesh's root, from global

    # the global CP lists every zone's ingress with the services it makes available
    table = world.ctl(None, "inspect", "zoneingresses")
    rows = {line.split()[0]: line for line in table.splitlines()[1:]}
    assert set(rows) == {"zone-b", "zone-c"}
    assert "Online" in rows["zone-b"] and "onlyb (default, 1)" in rows["zone-b"]
    assert "backend (default, 2)" in rows["zone-b"] and "backend (default, 1)" in rows["zone-c"]

    # MeshTrafficPermission applies end to end: the caller's identity crosses the ingress
    deny = {
        "type": "MeshTrafficPermission",
        "mesh": "default",
        "name": "deny-web",
        "spec": {
            "targetRef": {"kind": "MeshService", "name": "onlyb"},
            "from": [
                {"targetRef": {"kind": "MeshService", "name": "web"}, "default": {"action": "Deny"}}
            ],
        },
    }
    path = "/meshes/default/meshtrafficpermissions/deny-web"
    topo.call(None, "PUT", path, deny).raise_for_status()
    try:
        wait_until(lambda: _fails(world, url), what="web denied at onlyb in zone-b", timeout=20)
        # zone-b's own client is still allowed
        url_b = world.url("web-b", "onlyb")
        assert world.ask("zone-b", url_b) == "onlyb-1"
    finally:
        topo.call(None, "DELETE", path)
    wait_until(lambda: world.ask("zone-a", url) == "onlyb-1", what="allowed again", timeout=20)


def _chain(world: World, zone: str, agent: str) -> list[x509.Certificate]:
    """The certificate chain an agent's Envoy presents (its identity secret, read from the
    Envoy's config dump inside the zone)."""
    port = world.agents[agent].admin_port
    with world.topo.enter(zone):
        url = f"http://127.0.0.1:{port}/config_dump?resource=dynamic_active_secrets"
        dump = httpx.get(url, timeout=5).json()
    for config in dump.get("configs", []):
        chain = config.get("secret", {}).get("tls_certificate", {}).get("certificate_chain")
        if chain:
            return x509.load_pem_x509_certificates(base64.b64decode(chain["inline_bytes"]))
    raise AssertionError(f"{agent}: no identity certificate in its Envoy")


def _fails(world: World, url: str) -> bool:
    try:
        world.ask("zone-a", url)
    except httpx.HTTPError:
        return True
    return False


def test_zones_get_a_share_by_their_instances(world: World) -> None:
    url = world.url("web-1", "backend")
    wait_until(lambda: world.ask("zone-a", url), what="backend from zone-a")
    zones = _zones_of(world.answers("zone-a", url, 150))
    assert set(zones) == {"zone-b", "zone-c"}
    share = zones["zone-b"] / 150
    assert 0.55 < share < 0.78, zones  # zone-b has 2 instances, zone-c 1: about 2:1


def test_locality_aware_stays_local_fails_over_within_seconds_and_comes_back(
    world: World,
) -> None:
    topo = world.topo
    url = world.url("web-1", "backend")
    topo.put_mesh(localityAwareLoadBalancing=True)
    try:
        world.start("zone-a", "backend-a1", "backend")
        world.start("zone-a", "backend-a2", "backend")
        wait_until(
            lambda: set(_zones_of(world.answers("zone-a", url, 20))) == {"zone-a"},
            what="requests staying in zone-a",
            timeout=30,
        )
        with RequestLoop(topo.star, "zone-a", url) as loop:
            wait_until(lambda: len(loop.outcomes) >= 50, what="a steady flow of requests")
            killed = time.monotonic()
            world.kill("backend-a1")
            world.kill("backend-a2")
            remote = wait_until(
                lambda: _all_remote(loop, killed),
                what="requests failing over to zone-b and zone-c",
                timeout=20,
            )
            switch = remote - killed
            world.start("zone-a", "backend-a3", "backend")
            back = time.monotonic()
            wait_until(lambda: _all_local(loop, back), what="requests back in zone-a", timeout=30)
        failed = loop.failed()
        total = len(loop.outcomes)
        assert total > 100, total
        assert len(failed) / total < 0.01, (len(failed), total, failed[:3])
        assert switch < 5.0, f"failover took {switch:.1f}s"
    finally:
        topo.put_mesh()
        agent = world.agents.pop("backend-a3", None)
        if agent is not None:
            agent.proc.signal(signal.SIGTERM)
            agent.proc.wait(timeout=30)


def _all_remote(loop: RequestLoop, since: float) -> float | None:
    recent = [o for o in loop.since(since) if o.instance][-10:]
    if len(recent) == 10 and all(
        not o.instance.endswith(("a1", "a2")) for o in recent if o.instance
    ):
        return recent[0].at
    return None


def _all_local(loop: RequestLoop, since: float) -> bool:
    recent = [o for o in loop.since(since) if o.instance][-10:]
    return len(recent) == 10 and all(o.instance == "backend-a3" for o in recent)


def test_with_zone_egress_the_request_also_crosses_the_egress(world: World) -> None:
    topo = world.topo
    egress = topo.start_egress("zone-a")
    topo.put_mesh(zoneEgress=True)
    try:
        url = world.url("web-1", "onlyb")
        through = f"127.0.0.1:{topo.zones['zone-a'].egress_port}"
        with topo.enter("zone-a"):
            wait_until(
                lambda: world.agents["web-1"].cluster_endpoints("onlyb") == {through},
                what="onlyb reached through the egress",
                timeout=20,
            )
        assert world.ask("zone-a", url) == "onlyb-1"
        name = "cluster.default_onlyb.upstream_cx_total"
        assert topo.envoy_stat("zone-a", egress, name) >= 1  # it crossed zone-a's egress
    finally:
        topo.put_mesh()
        egress.proc.signal(signal.SIGTERM)
        egress.proc.wait(timeout=30)
    wait_until(lambda: world.ask("zone-a", url) == "onlyb-1", what="direct again", timeout=20)


@pytest.mark.parametrize(
    ("token_zone", "scope", "expected"),
    [
        (None, None, "zone ingress zi-bad: no zone token"),
        ("zone-a", "ingress", "zone ingress zi-bad: token is for zone zone-a, not zone-b"),
        ("zone-b", "egress", "zone ingress zi-bad: token scope is [egress], not ingress"),
    ],
)
def test_an_ingress_without_a_valid_zone_token_is_refused_saying_why(
    world: World, token_zone: str | None, scope: str | None, expected: str
) -> None:
    topo = world.topo
    token = topo.zone_token(token_zone, scope) if token_zone and scope else ""
    doc = zone_ingress_doc("zi-bad", topo.star.address("zone-b"), 10002)
    with topo.enter("zone-b"):
        agent = start_zone_proxy(topo.env, topo.zones["zone-b"].cp, doc, token, wait=False)
    assert agent.proc.wait(timeout=30) != 0
    assert expected in agent.proc.output()
    assert "zi-bad" not in topo.call("zone-b", "GET", "/zoneingresses").text


def test_all_ingresses_of_a_zone_down(world: World) -> None:
    topo = world.topo
    onlyb, backend = world.url("web-1", "onlyb"), world.url("web-1", "backend")
    locala, local_b = world.url("web-1", "locala"), world.url("web-b", "onlyb")
    ingress = topo.zones["zone-b"].ingress
    assert ingress is not None
    ingress.proc.kill_group()
    try:
        wait_until(lambda: _fails(world, onlyb), what="zone-b unreachable", timeout=20)
        wait_until(
            lambda: set(_zones_of(world.answers("zone-a", backend, 10))) == {"zone-c"},
            what="backend traffic shifted to zone-c",
            timeout=20,
        )
        assert world.ask("zone-a", locala) == "locala-1"  # inside zone-a: unaffected
        assert world.ask("zone-b", local_b) == "onlyb-1"  # inside zone-b: unaffected
    finally:
        topo.start_ingress("zone-b")
    wait_until(lambda: world.ask("zone-a", onlyb) == "onlyb-1", what="zone-b back", timeout=30)


def test_zone_cp_down_cross_zone_traffic_keeps_working(world: World) -> None:
    topo = world.topo
    onlyb = world.url("web-1", "onlyb")
    cp = topo.zones["zone-b"].cp
    cp.proc.kill_group()
    try:
        gone = time.monotonic()
        with RequestLoop(topo.star, "zone-a", onlyb, interval=0.05) as loop:
            wait_until(lambda: loop.since(gone + 2.0), what="two seconds of the CP gone")
        assert loop.failed() == [] and {o.instance for o in loop.outcomes} == {"onlyb-1"}
    finally:
        topo.start_zone(
            "zone-b",
            api_port=cp.api_port,
            dp_port=cp.dp_port,
            diagnostics_port=cp.diagnostics_port,
            https_port=cp.https_port,
        )
    wait_until(lambda: "Online" in world.ctl("zone-b", "inspect", "zoneingresses"),
               what="the ingress back on its CP", timeout=30)  # fmt: skip
    assert world.ask("zone-a", onlyb) == "onlyb-1"


def test_global_cp_down_local_and_cross_zone_traffic_keep_working(world: World) -> None:
    topo = world.topo
    onlyb, locala = world.url("web-1", "onlyb"), world.url("web-1", "locala")
    cp = topo.global_cp
    assert cp is not None
    cp.proc.kill_group()
    try:
        gone = time.monotonic()
        with (
            RequestLoop(topo.star, "zone-a", onlyb, interval=0.05) as remote,
            RequestLoop(topo.star, "zone-a", locala, interval=0.05) as local,
        ):
            wait_until(
                lambda: remote.since(gone + 2.0) and local.since(gone + 2.0),
                what="two seconds of the global CP gone",
            )
        assert remote.failed() == [] and local.failed() == []
        assert {o.instance for o in remote.outcomes} == {"onlyb-1"}
        assert {o.instance for o in local.outcomes} == {"locala-1"}
    finally:
        topo.start_global(
            api_port=cp.api_port,
            dp_port=cp.dp_port,
            diagnostics_port=cp.diagnostics_port,
            https_port=cp.https_port,
        )
    wait_until(lambda: "zone-c" in world.ctl(None, "inspect", "zoneingresses"),
               what="the zones back at global", timeout=30)  # fmt: skip
    assert world.ask("zone-a", onlyb) == "onlyb-1"


def test_a_disabled_zone_disappears_from_the_others(world: World) -> None:
    topo = world.topo
    backend = world.url("web-1", "backend")
    zone_c = {"type": "Zone", "name": "zone-c", "enabled": False}
    topo.call(None, "PUT", "/zones/zone-c", zone_c).raise_for_status()
    try:
        wait_until(
            lambda: "zone-c" not in topo.call("zone-a", "GET", "/zoneingresses").text,
            what="zone-c's ingress gone from zone-a",
            timeout=20,
        )
        wait_until(
            lambda: set(_zones_of(world.answers("zone-a", backend, 10))) == {"zone-b"},
            what="no traffic to zone-c",
            timeout=20,
        )
    finally:
        topo.call(None, "PUT", "/zones/zone-c", {**zone_c, "enabled": True})
    wait_until(
        lambda: "zone-c" in _zones_of(world.answers("zone-a", backend, 20)),
        what="zone-c back",
        timeout=30,
    )
