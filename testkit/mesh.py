"""A local mesh for the demo, the end-to-end tests and the benchmarks: a real CP, real agents
with real Envoys, small real apps, all on free 127.0.0.1 ports and all cleaned up."""

from __future__ import annotations

import json
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from testkit.procs import (
    ManagedProcess,
    ProcessSet,
    free_port,
    http_ok,
    kumadp_command,
    wait_until,
)

PYTHON_APP = ["-m", "kumadp.demo_app"]


@dataclass
class ControlPlane:
    proc: ManagedProcess
    api_port: int
    dp_port: int
    diagnostics_port: int
    data_dir: Path
    dp_auth: str = "dpToken"
    # multi-zone: a zone CP's tokens come from its global CP (testkit.multizone)
    token_source: ControlPlane | None = None
    kds_port: int | None = None
    https_port: int = 0  # the HTTPS API (0: off)

    def token(self, name: str, mesh: str = "default") -> str:
        """A dataplane token from the CP (issuing is allowed from loopback)."""
        if self.token_source is not None:
            return self.token_source.token(name, mesh)
        resp = httpx.post(
            self.url + "/tokens/dataplane", json={"mesh": mesh, "name": name}, timeout=5
        )
        resp.raise_for_status()
        return resp.text.strip()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=5)

    def dataplane_names(self, mesh: str = "default") -> set[str]:
        resp = self.get(f"/meshes/{mesh}/dataplanes")
        resp.raise_for_status()
        return {item["name"] for item in resp.json()["items"]}


@dataclass
class Agent:
    name: str
    proc: ManagedProcess
    admin_port: int
    readiness_port: int
    inbound_port: int | None = None
    outbound_ports: dict[str, int] = field(default_factory=dict)
    dns_port: int | None = None
    metrics_port: int | None = None  # the agent's merged Prometheus /metrics

    def ready(self) -> bool:
        try:
            resp = httpx.get(f"http://127.0.0.1:{self.readiness_port}/ready", timeout=1)
        except httpx.HTTPError:
            return False
        return resp.status_code == 200 and resp.text.strip() == "READY"

    def cluster_hosts(self, cluster: str) -> dict[str, dict[str, Any]]:
        """``ip:port`` -> Envoy's status of that endpoint (``health_status``, stats), for the
        cluster's endpoints as Envoy sees them right now."""
        resp = httpx.get(f"http://127.0.0.1:{self.admin_port}/clusters?format=json", timeout=2)
        resp.raise_for_status()
        out: dict[str, dict[str, Any]] = {}
        for status in resp.json().get("cluster_statuses", []):
            if status["name"] != cluster:
                continue
            for host in status.get("host_statuses", []):
                addr = host["address"]["socket_address"]
                out[f"{addr['address']}:{addr['port_value']}"] = host
        return out

    def cluster_endpoints(self, cluster: str) -> set[str]:
        """``ip:port`` of the cluster's endpoints as Envoy sees them right now."""
        return set(self.cluster_hosts(cluster))


class MeshEnv:
    """Owns every process it starts (see ``close``)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs = ProcessSet(tmp)
        self.cp: ControlPlane | None = None
        self._agents = 0

    def close(self) -> None:
        self.procs.close(timeout=10)

    # -- control plane -------------------------------------------------------------
    def start_cp(
        self,
        *,
        store: str = "sqlite",
        api_port: int | None = None,
        wait: bool = True,
        extra: list[str] | None = None,
        data_dir: Path | None = None,
        dp_auth: str = "dpToken",
        dp_port: int | None = None,
        diagnostics_port: int | None = None,
        https_port: int | None = None,
    ) -> ControlPlane:
        """A CP; pass the ports and data dir of a stopped one to restart it in its place."""
        api_port = api_port or free_port()
        dp_port, diag_port = dp_port or free_port(), diagnostics_port or free_port()
        https_port = https_port or free_port()
        data_dir = data_dir or self.tmp / "cp-data"
        log_name = f"cp-{api_port}"
        taken = {p.name for p in self.procs.procs}
        if log_name in taken:  # a restart: keep the first one's log
            log_name += f"-{sum(1 for n in taken if n.startswith(log_name))}"
        proc = self.procs.start(
            log_name,
            kumadp_command(
                "cp",
                "run",
                "--store",
                store,
                "--data-dir",
                str(data_dir),
                "--address",
                "127.0.0.1",
                "--api-port",
                str(api_port),
                "--dp-port",
                str(dp_port),
                "--diagnostics-port",
                str(diag_port),
                "--api-https-port",
                str(https_port),
                "--dp-auth",
                dp_auth,
                "--log-level",
                "debug",
                *(extra or []),
            ),
        )
        self.cp = ControlPlane(
            proc, api_port, dp_port, diag_port, data_dir, dp_auth, https_port=https_port
        )
        if wait:
            wait_until(
                lambda: (
                    http_ok(f"http://127.0.0.1:{diag_port}/ready")
                    and http_ok(f"http://127.0.0.1:{api_port}/meshes/default")
                ),
                what="control plane ready",
                proc=proc,
            )
        return self.cp

    # -- applications --------------------------------------------------------------
    def start_http_app(
        self,
        name: str,
        upstream: str | None = None,
        resolver: str | None = None,
        app_args: list[str] | None = None,
    ) -> int:
        """The demo app; ``app_args`` e.g. ``["--fail-every", "3"]`` (see kumadp.demo_app)."""
        port = free_port()
        args = [sys.executable, *PYTHON_APP, "http", "--port", str(port), "--name", name]
        if upstream:
            args += ["--upstream", upstream]
        if resolver:
            args += ["--resolver", resolver]
        args += app_args or []
        proc = self.procs.start(f"app-{name}", args)
        wait_until(
            lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), what=f"app {name}", proc=proc
        )
        return port

    def start_tcp_echo(self, name: str) -> int:
        port = free_port()
        proc = self.procs.start(
            f"app-{name}",
            [sys.executable, *PYTHON_APP, "tcp-echo", "--port", str(port), "--name", name],
        )

        def connectable() -> bool:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True

        wait_until(connectable, what=f"tcp app {name}", proc=proc)
        return port

    # -- agents --------------------------------------------------------------------
    def dataplane_yaml(
        self,
        name: str,
        service: str,
        app_port: int,
        *,
        protocol: str = "http",
        outbounds: dict[str, int] | None = None,
        mesh: str = "default",
        tags: dict[str, str] | None = None,
    ) -> tuple[str, int]:
        inbound_port = free_port()
        doc: dict[str, object] = {
            "type": "Dataplane",
            "mesh": mesh,
            "name": name,
            "networking": {
                "address": "127.0.0.1",
                "inbound": [
                    {
                        "port": inbound_port,
                        "servicePort": app_port,
                        "tags": {
                            "kuma.io/service": service,
                            "kuma.io/protocol": protocol,
                            **(tags or {}),
                        },
                    }
                ],
                "outbound": [
                    {"port": port, "tags": {"kuma.io/service": svc}}
                    for svc, port in (outbounds or {}).items()
                ],
            },
        }
        return json.dumps(doc, indent=2), inbound_port

    def start_agent(
        self,
        name: str,
        dataplane: str,
        *,
        inbound_port: int | None = None,
        outbound_ports: dict[str, int] | None = None,
        cp_url: str | None = None,
        drain_time: str = "1s",
        extra: list[str] | None = None,
        wait: bool = True,
        mesh: str = "default",
        token: bool | str = True,
        dns_port: int | None = None,
        cp: ControlPlane | None = None,
    ) -> Agent:
        """``cp``: the CP to join (default: the last one started); ``token``: mint one from
        it (True), none (False), or this one (a string)."""
        self._agents += 1
        admin_port, readiness_port = free_port(), free_port()
        metrics_port = free_port()  # never Kuma's 5670: agents would collide on it
        dns_port = dns_port or free_port()
        dp_file = self.tmp / f"{name}.dataplane.yaml"
        dp_file.write_text(dataplane)
        cp = cp or self.cp
        assert cp_url or cp, "start the CP first or pass cp_url"
        work_dir = self.tmp / f"{name}-wd"
        extra = [
            "--dns-port",
            str(dns_port),
            "--metrics-port",
            str(metrics_port),
            "--work-dir",
            str(work_dir),
            *(extra or []),
        ]
        if token and cp is not None and cp.dp_auth == "dpToken" and cp_url is None:
            token_file = self.tmp / f"{name}.token"
            token_file.write_text(token if isinstance(token, str) else cp.token(name, mesh))
            extra += ["--dataplane-token-file", str(token_file)]
        proc = self.procs.start(
            f"agent-{name}",
            kumadp_command(
                "run",
                "--cp-address",
                cp_url or (cp.url if cp else ""),
                "--dataplane-file",
                str(dp_file),
                "--admin-port",
                str(admin_port),
                "--readiness-port",
                str(readiness_port),
                "--drain-time",
                drain_time,
                "--log-level",
                "debug",
                *(extra or []),
            ),
        )
        agent = Agent(
            name,
            proc,
            admin_port,
            readiness_port,
            inbound_port,
            outbound_ports or {},
            dns_port,
            metrics_port=metrics_port,
        )
        if wait:
            wait_until(agent.ready, timeout=30, what=f"agent {name} ready", proc=proc)
        return agent

    def start_service(
        self,
        name: str,
        service: str,
        *,
        protocol: str = "http",
        upstream_service: str | None = None,
        by_name: bool = False,
        app_args: list[str] | None = None,
        tags: dict[str, str] | None = None,
        **agent_kwargs: object,
    ) -> tuple[Agent, int]:
        """An app plus its sidecar. With ``upstream_service`` the app calls that service
        through its sidecar: on an explicit outbound port, or with ``by_name`` as
        ``http://<service>.mesh`` resolved by the sidecar's resolver (bind-outbounds).
        ``app_args`` go to the demo app (a misbehaving backend), ``tags`` onto the inbound.
        Returns the agent and the app's port."""
        outbounds: dict[str, int] = {}
        upstream = resolver = None
        if by_name:
            dns_port = free_port()
            agent_kwargs["dns_port"] = dns_port
            extra = list(agent_kwargs.get("extra") or [])  # type: ignore[call-overload]
            agent_kwargs["extra"] = [*extra, "--bind-outbounds"]
            resolver = f"127.0.0.1:{dns_port}"
            if upstream_service:
                upstream = f"http://{upstream_service}.mesh"
        elif upstream_service:
            outbounds[upstream_service] = free_port()
            upstream = f"http://127.0.0.1:{outbounds[upstream_service]}"
        if protocol == "tcp":
            app_port = self.start_tcp_echo(name)
        else:
            app_port = self.start_http_app(name, upstream, resolver, app_args)
        doc, inbound_port = self.dataplane_yaml(
            name, service, app_port, protocol=protocol, outbounds=outbounds, tags=tags
        )
        agent = self.start_agent(
            name,
            doc,
            inbound_port=inbound_port,
            outbound_ports=outbounds,
            **agent_kwargs,  # type: ignore[arg-type]
        )
        return agent, app_port
