"""Helpers for cross-zone tests, demos and benchmarks: zone tokens, zone ingress and egress
agents, a global CP and zone CPs in network namespaces. Each zone's mTLS comes from its own
intermediate CA, signed by the global CP over KDS (one root per mesh, trusted everywhere).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from kumadp.demo_app import resolve
from testkit.mesh import Agent, ControlPlane, MeshEnv
from testkit.multizone import MTLS, start_zone
from testkit.procs import free_port, http_ok, wait_until
from testkit.zonenet import WAN_ADDRESS, Star

SQLITE_FILE = "kumadp.db"


def zone_token(global_cp: ControlPlane, zone: str, *scopes: str) -> str:
    resp = httpx.post(
        global_cp.url + "/tokens/zone", json={"zone": zone, "scope": list(scopes)}, timeout=5
    )
    resp.raise_for_status()
    return resp.text.strip()


def zone_ingress_doc(
    name: str, address: str, port: int, advertised: tuple[str, int] | None = None
) -> dict[str, Any]:
    host, advertised_port = advertised or (address, port)
    return {
        "type": "ZoneIngress",
        "name": name,
        "networking": {
            "address": address,
            "port": port,
            "advertisedAddress": host,
            "advertisedPort": advertised_port,
        },
    }


def zone_egress_doc(name: str, address: str, port: int) -> dict[str, Any]:
    return {"type": "ZoneEgress", "name": name, "networking": {"address": address, "port": port}}


def start_zone_proxy(
    env: MeshEnv,
    cp: ControlPlane,
    doc: dict[str, Any],
    token: str,
    *,
    wait: bool = True,
    extra: list[str] | None = None,
) -> Agent:
    """``kumadp run --proxy-type ingress|egress`` for ``doc`` (a ZoneIngress/ZoneEgress),
    with the zone ``token`` (none when empty)."""
    proxy_type = "ingress" if doc["type"] == "ZoneIngress" else "egress"
    return env.start_agent(
        doc["name"],
        json.dumps(doc),
        cp=cp,
        token=token or False,
        wait=wait,
        extra=["--proxy-type", proxy_type, *(extra or [])],
    )


# -- zones in network namespaces ------------------------------------------------------------


@dataclass
class Zone:
    name: str
    cp: ControlPlane
    address: str  # the zone's own address (its ingress's)
    ingress: Agent | None = None
    egress: Agent | None = None
    egress_port: int = 0  # on 127.0.0.1 in the zone


class Topology:
    """A global CP in the wan namespace and a zone CP per zone namespace (``zonenet``), one
    the ``default`` mesh with mTLS (each zone signs with its own intermediate CA). Every process is
    started through one ``MeshEnv``; ``close`` stops them and deletes the namespaces.

    Calls into a zone go through ``enter(zone)``; tokens come from the global CP (the zone
    CPs cannot mint them, and a zone cannot reach the global CP's loopback API)."""

    INGRESS_PORT = 10001

    def __init__(self, tmp: Path, zones: Sequence[str]) -> None:
        self.tmp = tmp
        self.env = MeshEnv(tmp)
        self.star = Star.create(zones)
        self.zones: dict[str, Zone] = {}
        self.global_cp: ControlPlane | None = None
        self.kds_port = 0
        self.app_ports: dict[str, int] = {}  # the app beside each service's sidecar

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, *, extra: list[str] | None = None) -> Topology:
        """Every CP (``extra``: more flags for each), then the mesh."""
        self.start_global(extra)
        for zone in self.star.zones:
            self.start_zone(zone, extra=extra)
        self.put_mesh()
        return self

    def start_global(self, extra: list[str] | None = None, **ports: Any) -> ControlPlane:
        """The global CP in the wan namespace: KDS on the wan address, its API on loopback
        (so that this process, in the wan namespace, is its admin)."""
        with self.star.enter(None):
            self.kds_port = self.kds_port or free_port(WAN_ADDRESS)
            cp = self.env.start_cp(
                data_dir=self.tmp / "cp-global",
                wait=False,
                extra=[
                    "--mode", "global", "--kds-port", str(self.kds_port),
                    "--address", WAN_ADDRESS, "--api-address", "127.0.0.1", *(extra or []),
                ],
                **ports,
            )  # fmt: skip
            cp.kds_port = self.kds_port
            wait_until(
                lambda: (
                    http_ok(f"http://{WAN_ADDRESS}:{cp.diagnostics_port}/ready")
                    and http_ok(cp.url + "/meshes/default")
                ),
                what="the global control plane ready",
                proc=cp.proc,
            )
        self.global_cp = cp
        self.token("warm-up")  # its signing keys exist before a zone syncs
        return cp

    def start_zone(self, zone: str, *, extra: list[str] | None = None, **ports: Any) -> Zone:
        assert self.global_cp is not None
        token = self.zone_token(zone, "cp")  # from the wan namespace: the zone cannot ask
        with self.star.enter(zone):
            cp = start_zone(
                self.env, zone, self.global_cp, kds_address=f"{WAN_ADDRESS}:{self.kds_port}",
                extra=extra, token=token, **ports,
            )  # fmt: skip
        cp.token_source = None  # a zone cannot reach the global CP's API: use self.token
        found = self.zones.get(zone)
        if found is None:
            found = self.zones[zone] = Zone(zone, cp, self.star.address(zone))
        found.cp = cp
        return found

    def close(self) -> None:
        try:
            self.env.close()
        finally:
            self.star.close()

    def __enter__(self) -> Topology:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls -------------------------------------------------------------------------------
    def enter(self, zone: str | None = None) -> contextlib.AbstractContextManager[None]:
        return self.star.enter(zone)

    def call(self, zone: str | None, method: str, path: str, body: Any = None) -> httpx.Response:
        """A request to the API of ``zone``'s CP (None: the global CP)."""
        cp = self.global_cp if zone is None else self.zones[zone].cp
        assert cp is not None
        with self.enter(zone):
            return httpx.request(method, cp.url + path, json=body, timeout=5)

    def token(self, name: str, mesh: str = "default") -> str:
        resp = self.call(None, "POST", "/tokens/dataplane", {"mesh": mesh, "name": name})
        resp.raise_for_status()
        return resp.text.strip()

    def zone_token(self, zone: str, *scopes: str) -> str:
        resp = self.call(None, "POST", "/tokens/zone", {"zone": zone, "scope": list(scopes)})
        resp.raise_for_status()
        return resp.text.strip()

    def put_mesh(self, **routing: bool) -> None:
        """The ``default`` mesh with mTLS and ``routing`` (``localityAwareLoadBalancing``,
        ``zoneEgress``), on the global CP."""
        mesh: dict[str, Any] = {"type": "Mesh", "name": "default", "mtls": MTLS}
        if routing:
            mesh["routing"] = routing
        self.call(None, "PUT", "/meshes/default", mesh).raise_for_status()

    # -- processes in a zone -----------------------------------------------------------------
    def start_service(self, zone: str, name: str, service: str, **kwargs: Any) -> Agent:
        """An app and its sidecar in ``zone`` (``MeshEnv.start_service``'s options)."""
        token = self.token(name)
        with self.enter(zone):
            agent, app_port = self.env.start_service(
                name, service, cp=self.zones[zone].cp, token=token, **kwargs
            )
        self.app_ports[name] = app_port
        return agent

    def start_ingress(self, zone: str, *, wait: bool = True, token: str | None = None) -> Agent:
        address = self.star.address(zone)
        doc = zone_ingress_doc(f"zi-{zone}", address, self.INGRESS_PORT)
        token = token if token is not None else self.zone_token(zone, "ingress")
        with self.enter(zone):
            agent = start_zone_proxy(self.env, self.zones[zone].cp, doc, token, wait=wait)
        self.zones[zone].ingress = agent
        return agent

    def start_egress(self, zone: str) -> Agent:
        token = self.zone_token(zone, "egress")
        with self.enter(zone):
            port = free_port()
            doc = zone_egress_doc(f"ze-{zone}", "127.0.0.1", port)
            agent = start_zone_proxy(self.env, self.zones[zone].cp, doc, token)
        self.zones[zone].egress, self.zones[zone].egress_port = agent, port
        return agent

    def resolve(self, zone: str, agent: Agent, service: str) -> str:
        """The address ``agent``'s resolver gives ``<service>.mesh`` (a bind-outbounds
        agent: its Envoy's outbound listener for that service, on port 80)."""
        assert agent.dns_port is not None
        with self.enter(zone):
            return resolve(f"{service}.mesh", f"127.0.0.1:{agent.dns_port}")

    def ask(self, zone: str, url: str, timeout: float = 5.0) -> str:
        """``GET url`` from ``zone``: the instance that answered (the demo app's JSON)."""
        with self.enter(zone):
            resp = httpx.get(url, timeout=timeout)
        resp.raise_for_status()
        return str(resp.json()["instance"])

    def envoy_stat(self, zone: str, agent: Agent, name: str) -> int:
        """One counter of ``agent``'s Envoy (0 when it does not exist yet)."""
        with self.enter(zone):
            text = httpx.get(
                f"http://127.0.0.1:{agent.admin_port}/stats?filter=^{name}$", timeout=5
            ).text
        for line in text.splitlines():
            key, _, value = line.partition(": ")
            if key == name and value.strip().isdigit():
                return int(value)
        return 0


@dataclass
class Outcome:
    at: float  # monotonic time the request ended
    instance: str | None  # who answered; None: failed
    error: str = ""


class RequestLoop:
    """A steady loop of ``GET url`` from a zone's namespace, in a thread, one request after
    the other (``interval`` apart), each outcome kept with its time."""

    def __init__(self, star: Star, zone: str, url: str, interval: float = 0.01) -> None:
        self._star, self._zone, self._url, self._interval = star, zone, url, interval
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"requests-{zone}", daemon=True)

    def __enter__(self) -> RequestLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        with self._star.enter(self._zone), httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                try:
                    resp = client.get(self._url)
                    resp.raise_for_status()
                    found = Outcome(time.monotonic(), str(resp.json()["instance"]))
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    found = Outcome(time.monotonic(), None, f"{type(exc).__name__}: {exc}")
                self.outcomes.append(found)
                self._stop.wait(self._interval)

    def since(self, moment: float) -> list[Outcome]:
        return [o for o in list(self.outcomes) if o.at >= moment]

    def failed(self) -> list[Outcome]:
        return [o for o in list(self.outcomes) if o.instance is None]


__all__ = [
    "Outcome",
    "RequestLoop",
    "Topology",
    "Zone",
    "start_zone_proxy",
    "zone_egress_doc",
    "zone_ingress_doc",
    "zone_token",
]
