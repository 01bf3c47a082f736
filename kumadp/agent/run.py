"""The agent's composition root: ``run_agent(config)`` wires the components and owns the
shutdown sequence. Nothing imports this module but the CLI (and tests).

1. Check everything local first (dataplane, token, Envoy binary) so mistakes fail fast.
2. Get the bootstrap from the CP, write ``<workdir>/bootstrap.yaml`` (0600).
3. Supervise Envoy, the readiness server and the readiness checker together.
4. First SIGTERM/SIGINT: readiness TERMINATING, ``Leave`` on the CP channel,
   ``POST /healthcheck/fail``, wait the drain time (a second signal cuts it short), stop
   Envoy (SIGTERM, SIGKILL after a grace period), exit 0. A third signal exits 1 at once.
   Envoy exiting on its own ends the agent with ``EnvoyExited``.
   With ``drain_until_idle`` the inbound listeners are drained too and the drain time is an
   upper bound: the wait ends once the application has no connection left through the
   outbound listeners (``kumadp.agent.drain``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kumadp
from kumadp.agent.admin import AdminError, EnvoyAdmin, admin_port_from_bootstrap
from kumadp.agent.admin_relay import AdminRelay
from kumadp.agent.agent_metrics import AgentMetrics
from kumadp.agent.bootstrap import BootstrapClient, BootstrapRequest
from kumadp.agent.config import AgentConfig, check_local, dns_upstreams, envoy_extra_args
from kumadp.agent.cp_channel import DpServer, dp_server_from_bootstrap, leave
from kumadp.agent.cp_trust import cp_verify, dp_server_ca
from kumadp.agent.cp_watch import CpLink, CpSigner, CpWatch
from kumadp.agent.dns import DnsServer
from kumadp.agent.drain import drain_inbound, wait_drain_time
from kumadp.agent.envoy import (
    EnvoyOptions,
    EnvoyProcess,
    EnvoyVersion,
    envoy_version,
    resolve_binary,
)
from kumadp.agent.errors import AgentError
from kumadp.agent.identity import Identity
from kumadp.agent.insight import InsightReporter, agent_sources
from kumadp.agent.metrics import MetricsServer
from kumadp.agent.nametable import NameTable
from kumadp.agent.readiness import Readiness, ReadinessChecker, ReadinessServer
from kumadp.agent.rotation import CertificateManager
from kumadp.agent.sds import SdsServer
from kumadp.agent.workdir import BOOTSTRAP_FILE, work_dir, write_private
from kumadp.lifecycle import Component, ComponentFailed, supervise
from kumadp.signals import SignalWatcher
from kumadp.wire.names import FEATURE_BIND_OUTBOUNDS, SDS_SOCKET_FILE

log = logging.getLogger(__name__)


async def run_agent(config: AgentConfig) -> int:
    """Run the agent until it is told to stop. Returns the exit code (0 after a graceful
    shutdown, 1 when a third signal cut it short); raises ``AgentError`` (or ``OSError``)
    for failures, with a message meant for the user."""
    identity, token, token_path, ca_cert = check_local(config)
    binary = resolve_binary(config.binary_path)
    version = await envoy_version(binary)
    log.info("Envoy %s (%s) at %s", version.version, version.build, binary)
    with SignalWatcher() as signals, work_dir(config.work_dir) as wd:
        agent = _Agent(config, identity, signals, wd, binary, version)
        bootstrap = await agent.fetch_bootstrap(token, token_path, ca_cert)
        if bootstrap is None:
            log.info("stopped before Envoy started")
            return 0
        return await agent.serve(bootstrap, token)


@dataclass
class _MeshParts:
    """What ``_mesh_components`` built: the components, and those other parts read."""

    components: list[Component] = field(default_factory=list)
    dns: DnsServer | None = None
    certificates: CertificateManager | None = None
    watch: CpWatch | None = None


class _Agent:
    def __init__(
        self,
        config: AgentConfig,
        identity: Identity,
        signals: SignalWatcher,
        workdir: Path,
        binary: str,
        version: EnvoyVersion,
    ) -> None:
        self.config = config
        self.identity = identity
        self.signals = signals
        self.workdir = workdir
        self.binary = binary
        self.version = version
        self.sidecar_config: dict[str, Any] = {}
        self.cp_address = config.cp_address  # the CP whose bootstrap is used
        self._background: set[asyncio.Task[None]] = set()
        self.features: tuple[str, ...] = (FEATURE_BIND_OUTBOUNDS,) if config.bind_outbounds else ()

    async def fetch_bootstrap(self, token: str, token_path: str, ca_cert: str) -> bytes | None:
        """The bootstrap YAML, or None when a signal arrived first."""
        config, identity = self.config, self.identity
        addresses = config.addresses()
        client = BootstrapClient(
            addresses,
            timeout=config.bootstrap_timeout,
            verify=cp_verify(ca_cert, config.skip_verify),
        )
        request = BootstrapRequest(
            mesh=identity.mesh,
            name=identity.name,
            proxy_type=identity.proxy_type,
            dataplane_token=token,
            dataplane_token_path=token_path,
            dataplane_resource=identity.resource,
            envoy_version=self.version.version,
            envoy_build=self.version.build,
            envoy_compatible=self.version.compatible,
            ca_cert=ca_cert,
            dns_port=config.dns_port if config.dns_enabled and not identity.is_zone_proxy else 0,
            readiness_port=config.readiness_port,
            workdir=str(self.workdir),
            features=self.features,
        )
        log.info(
            "asking %s for the bootstrap of %s %s",
            " then ".join(addresses),
            identity.proxy_type,
            identity.node_id,
        )
        per_address = {
            address: dataclasses.replace(
                request, ca_cert=dp_server_ca(address, ca_cert, config.skip_verify)
            )
            for address in client.cp_addresses
        }
        fetch = asyncio.create_task(
            client.fetch(request, per_address.__getitem__), name="bootstrap"
        )
        signal = asyncio.create_task(self.signals.wait(1), name="signal")
        try:
            await asyncio.wait({fetch, signal}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            signal.cancel()
            if not fetch.done():
                fetch.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await fetch
        if fetch.cancelled():
            return None
        result = fetch.result()
        self.sidecar_config = result.sidecar_config
        self.cp_address = result.cp_address or addresses[0]
        return result.bootstrap_yaml

    async def serve(self, bootstrap: bytes, token: str) -> int:
        config = self.config
        config_path = self.workdir / BOOTSTRAP_FILE
        write_private(config_path, bootstrap)
        admin_port = admin_port_from_bootstrap(bootstrap) or self.identity.admin_port
        dp_server = dp_server_from_bootstrap(bootstrap)
        readiness = Readiness()
        envoy = EnvoyProcess(
            EnvoyOptions(
                binary=self.binary,
                config_path=str(config_path),
                drain_time=config.drain_time,
                log_level=config.envoy_log_level,
                concurrency=config.concurrency,
                stop_timeout=config.envoy_stop_timeout,
                extra_args=envoy_extra_args(config),
            )
        )
        async with EnvoyAdmin(admin_port) as admin:
            self.signals.on_drain = lambda: self._spawn(drain_inbound(admin))
            mesh = self._mesh_components(readiness, dp_server, token, envoy, admin)
            components: list[Component] = [
                *mesh.components,
                envoy,
                ReadinessServer(readiness, config.readiness_port, config.readiness_address),
                ReadinessChecker(readiness, admin),
                *self._metrics_components(readiness, admin_port, mesh),
            ]
            stop = asyncio.Event()
            supervisor = asyncio.create_task(supervise(components, stop), name="supervisor")
            helpers: list[asyncio.Task[None]] = []
            try:
                signal = asyncio.create_task(self.signals.wait(1), name="signal")
                helpers.append(signal)
                await asyncio.wait({supervisor, signal}, return_when=asyncio.FIRST_COMPLETED)
                if supervisor.done():
                    _raise_failure(supervisor)
                sequence = asyncio.create_task(
                    self._shutdown(readiness, admin, dp_server, token, stop, supervisor),
                    name="shutdown",
                )
                third = asyncio.create_task(self.signals.wait(3), name="third-signal")
                helpers += [sequence, third]
                await asyncio.wait({sequence, third}, return_when=asyncio.FIRST_COMPLETED)
                if not sequence.done():
                    log.warning("third signal: exiting at once")
                    envoy.kill()
                    return 1
                sequence.result()
                _raise_failure(supervisor)
                log.info("shutdown complete")
                return 0
            finally:
                self.signals.on_drain = None
                for helper in helpers:
                    helper.cancel()
                stop.set()
                if not supervisor.done():
                    envoy.kill()
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await supervisor
                for task in list(self._background):
                    task.cancel()

    def _mesh_components(
        self,
        readiness: Readiness,
        dp_server: DpServer | None,
        token: str,
        envoy: EnvoyProcess,
        admin: EnvoyAdmin,
    ) -> _MeshParts:
        """SDS + certificate rotation, the DNS resolver, and the CP watch that feeds them."""
        config, identity = self.config, self.identity
        if identity.is_zone_proxy:
            return self._zone_proxy_components(dp_server, token, admin)
        sds = SdsServer(self.workdir / SDS_SOCKET_FILE)
        parts = _MeshParts(components=[sds])
        names = NameTable()
        if config.dns_enabled:
            parts.dns = DnsServer(
                names,
                host="127.0.0.1",
                port=config.dns_port,
                upstreams=dns_upstreams(config),
                readiness=readiness,
            )
            parts.components.append(parts.dns)
        if dp_server is None:
            log.warning("the bootstrap names no DP server: no mTLS certificates, no DNS table")
            return parts
        link = CpLink(dp_server, identity.mesh, identity.name, token)
        certificates = CertificateManager(
            identity.mesh, identity.name, CpSigner(link), sds, readiness
        )
        relay = AdminRelay(link, admin)  # the CP's reads of Envoy's config and stats
        watch = CpWatch(
            link,
            features=list(self.features),
            on_identity=certificates.on_identity,
            on_names=names.update_from_proto,
            on_admin=relay.on_request,
        )
        parts.certificates, parts.watch = certificates, watch
        sources = agent_sources(
            envoy_version=self.version,
            certificates=certificates,
            dns=parts.dns,
            names=names,
            envoy=envoy,
            readiness=readiness,
            watch=watch,
        )
        reporter = InsightReporter(link, sources, envoy_admin=admin)
        parts.components += [certificates, watch, reporter]
        return parts

    def _zone_proxy_components(
        self, dp_server: DpServer | None, token: str, admin: EnvoyAdmin
    ) -> _MeshParts:
        """A zone ingress or egress forwards mesh TLS untouched: no certificate, no SDS, no
        DNS; only the CP watch, for the CP's reads of Envoy's admin API."""
        if dp_server is None:
            return _MeshParts()
        link = CpLink(dp_server, "", self.identity.name, token)
        relay = AdminRelay(link, admin)
        watch = CpWatch(
            link, features=[], on_identity=_ignore, on_names=_ignore, on_admin=relay.on_request
        )
        return _MeshParts(components=[watch], watch=watch)

    def _metrics_components(
        self, readiness: Readiness, admin_port: int | None, mesh: _MeshParts
    ) -> list[Component]:
        """The merged /metrics server (none without ``metrics_port``)."""
        config = self.config
        if config.metrics_port is None:
            return []
        metrics = AgentMetrics(
            version=kumadp.__version__,
            envoy_version=self.version.version,
            mesh=self.identity.mesh,
            dataplane=self.identity.name,
            watch=mesh.watch,
            certificates=mesh.certificates,
            dns=mesh.dns.stats if mesh.dns is not None else None,
            readiness=readiness,
        )
        server = MetricsServer(
            metrics,
            admin_port=admin_port,
            app_urls=config.app_metrics,
            port=config.metrics_port,
            host=config.metrics_address,
        )
        return [server]

    async def _shutdown(
        self,
        readiness: Readiness,
        admin: EnvoyAdmin,
        dp_server: DpServer | None,
        token: str,
        stop: asyncio.Event,
        supervisor: asyncio.Task[None],
    ) -> None:
        """The graceful shutdown sequence, in order."""
        identity = self.identity
        log.info("shutting down gracefully (%s)", self.signals.last_signal)
        readiness.set_terminating()
        if dp_server is not None:
            await leave(
                dp_server,
                identity.mesh,
                identity.name,
                f"agent received {self.signals.last_signal}",
                token=token or None,
                timeout=self.config.leave_timeout,
            )
        try:
            await admin.healthcheck_fail()
        except AdminError as exc:
            log.warning("could not fail Envoy's health checks: %s", exc)
        config = self.config
        if config.drain_until_idle:
            await drain_inbound(admin)  # inbound only: outbound keeps working for the app
        if config.drain_time > 0 and not supervisor.done():
            await wait_drain_time(
                admin,
                config.drain_time,
                until_idle=config.drain_until_idle,
                skip=self.signals.wait(2),
                ended=supervisor,
            )
        stop.set()  # Envoy gets SIGTERM (SIGKILL after the grace period)
        await asyncio.wait({supervisor})

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _ignore(update: Any) -> None:
    return None


def _raise_failure(supervisor: asyncio.Task[None]) -> None:
    """Re-raise a supervised component's failure as the error the user should see."""
    try:
        supervisor.result()
    except ComponentFailed as failed:
        cause = failed.cause
        if isinstance(cause, AgentError | OSError):
            raise cause from None
        raise AgentError(str(failed)) from cause
