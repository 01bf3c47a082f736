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
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kumadp.agent.admin import AdminError, EnvoyAdmin, admin_port_from_bootstrap
from kumadp.agent.bootstrap import BootstrapClient, BootstrapRequest
from kumadp.agent.cp_channel import DpServer, dp_server_from_bootstrap, leave
from kumadp.agent.cp_watch import CpLink, CpSigner, CpWatch
from kumadp.agent.dns import DnsServer
from kumadp.agent.drain import AdminConnections, wait_until_idle
from kumadp.agent.envoy import (
    LOG_LEVELS,
    EnvoyOptions,
    EnvoyProcess,
    EnvoyVersion,
    envoy_version,
    resolve_binary,
)
from kumadp.agent.errors import AgentError, ConfigError
from kumadp.agent.identity import Identity, load_identity, load_token
from kumadp.agent.insight import InsightReporter, agent_sources
from kumadp.agent.metrics import check_metrics_config, metrics_components
from kumadp.agent.nametable import NameTable
from kumadp.agent.readiness import Readiness, ReadinessChecker, ReadinessServer
from kumadp.agent.rotation import CertificateManager
from kumadp.agent.sds import SdsServer
from kumadp.agent.workdir import BOOTSTRAP_FILE, work_dir, write_private
from kumadp.lifecycle import Component, ComponentFailed, supervise
from kumadp.signals import SignalWatcher
from kumadp.wire.names import FEATURE_BIND_OUTBOUNDS, SDS_SOCKET_FILE

log = logging.getLogger(__name__)


@dataclass
class AgentConfig:
    cp_address: str = "http://127.0.0.1:5681"
    # several CPs, tried in order for the bootstrap (cp_address when empty)
    cp_addresses: list[str] = field(default_factory=list)
    ca_cert_file: str | None = None
    # identity
    dataplane_file: str | None = None  # "-" = stdin
    dataplane: str | None = None  # the resource inline
    dataplane_vars: list[str] = field(default_factory=list)
    name: str | None = None
    mesh: str | None = None
    proxy_type: str = "dataplane"
    dataplane_token: str | None = None
    dataplane_token_file: str | None = None
    # Envoy
    work_dir: str | None = None
    binary_path: str | None = None
    concurrency: int | None = None
    envoy_log_level: str = "info"
    drain_time: float = 30.0
    drain_until_idle: bool = False  # stop draining once the app's outbound connections close
    envoy_stop_timeout: float = 5.0
    # ports
    admin_port: int | None = None  # overrides the dataplane's networking.admin.port
    readiness_port: int = 9902
    readiness_address: str = "127.0.0.1"  # 0.0.0.0 for a kubelet httpGet probe
    dns_port: int = 15053
    dns_enabled: bool = True
    dns_upstreams: list[str] = field(default_factory=list)  # HOST:PORT; default resolv.conf
    bind_outbounds: bool = False
    # merged Prometheus /metrics (Envoy + app + agent); None: no server (the CLI: 5670)
    metrics_port: int | None = None
    metrics_address: str = "127.0.0.1"
    app_metrics: list[str] = field(default_factory=list)  # the app's own /metrics URLs
    # control plane
    bootstrap_timeout: float = 300.0
    leave_timeout: float = 2.0


async def run_agent(config: AgentConfig) -> int:
    """Run the agent until it is told to stop. Returns the exit code (0 after a graceful
    shutdown, 1 when a third signal cut it short); raises ``AgentError`` (or ``OSError``)
    for failures, with a message meant for the user."""
    identity, token, token_path, ca_cert = _check_local(config)
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


def _check_local(config: AgentConfig) -> tuple[Identity, str, str, str]:
    identity = load_identity(
        dataplane_file=config.dataplane_file,
        dataplane_inline=config.dataplane,
        variables=config.dataplane_vars,
        name=config.name,
        mesh=config.mesh,
        proxy_type=config.proxy_type,
        admin_port=config.admin_port,
    )
    token, token_path = load_token(config.dataplane_token, config.dataplane_token_file)
    for address in _cp_addresses(config):
        url = urlsplit(address)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigError(
                f"--cp-address: {address!r} is not an http:// or https:// URL "
                "(the control plane's API, e.g. http://127.0.0.1:5681)"
            )
    if config.envoy_log_level not in LOG_LEVELS:
        raise ConfigError(f"--envoy-log-level: must be one of {', '.join(LOG_LEVELS)}")
    for flag, port in (
        ("--readiness-port", config.readiness_port),
        ("--dns-port", config.dns_port),
    ):
        if not 0 <= port <= 65535:
            raise ConfigError(f"{flag}: must be 0-65535")
    check_metrics_config(config.metrics_port, config.app_metrics)
    if config.drain_time < 0:
        raise ConfigError("--drain-time: must not be negative")
    if config.concurrency is not None and config.concurrency < 0:
        raise ConfigError("--concurrency: must not be negative")
    ca_cert = ""
    if config.ca_cert_file:
        try:
            ca_cert = Path(config.ca_cert_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise ConfigError(
                f"--ca-cert-file: cannot read {config.ca_cert_file}: {reason}"
            ) from exc
    return identity, token, token_path, ca_cert


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
        self.envoy: EnvoyProcess | None = None  # set by serve()
        self.admin: EnvoyAdmin | None = None  # set by serve()

    async def fetch_bootstrap(self, token: str, token_path: str, ca_cert: str) -> bytes | None:
        """The bootstrap YAML, or None when a signal arrived first."""
        config, identity = self.config, self.identity
        verify: bool | ssl.SSLContext = True
        if config.ca_cert_file:
            verify = ssl.create_default_context(cafile=config.ca_cert_file)
        addresses = _cp_addresses(config)
        client = BootstrapClient(addresses, timeout=config.bootstrap_timeout, verify=verify)
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
            dns_port=config.dns_port if config.dns_enabled else 0,
            readiness_port=config.readiness_port,
            workdir=str(self.workdir),
            features=self.features,
        )
        log.info(
            "asking %s for the bootstrap of %s.%s",
            " then ".join(addresses),
            identity.mesh,
            identity.name,
        )
        per_address: dict[str, BootstrapRequest] = {}
        for address in client.cp_addresses:
            per_address[address] = request
            if not ca_cert:
                _explain_cp_trust(address)
                if address.startswith("https:"):
                    bundle = _system_trust_bundle()
                    per_address[address] = dataclasses.replace(request, ca_cert=bundle)
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
            )
        )
        self.envoy = envoy
        async with EnvoyAdmin(admin_port) as admin:
            self.admin = admin
            self.signals.on_drain = lambda: self._spawn(_drain(admin))
            components: list[Component] = [
                *self._mesh_components(readiness, dp_server, token),
                envoy,
                ReadinessServer(readiness, config.readiness_port, config.readiness_address),
                ReadinessChecker(readiness, admin),
                *metrics_components(self, readiness, admin_port),
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
        self, readiness: Readiness, dp_server: DpServer | None, token: str
    ) -> list[Component]:
        """SDS + certificate rotation, the DNS resolver, and the CP watch that feeds them."""
        config, identity = self.config, self.identity
        sds = SdsServer(self.workdir / SDS_SOCKET_FILE)
        components: list[Component] = [sds]
        self.names = NameTable()
        if config.dns_enabled:
            upstreams = [_host_port(u) for u in config.dns_upstreams] or None
            self.dns = DnsServer(
                self.names,
                host="127.0.0.1",
                port=config.dns_port,
                upstreams=upstreams,
                readiness=readiness,
            )
            components.append(self.dns)
        if dp_server is None:
            log.warning("the bootstrap names no DP server: no mTLS certificates, no DNS table")
            return components
        link = CpLink(dp_server, identity.mesh, identity.name, token)
        self.certificates = CertificateManager(
            identity.mesh, identity.name, CpSigner(link), sds, readiness
        )
        self.watch = CpWatch(
            link,
            features=list(self.features),
            on_identity=self.certificates.on_identity,
            on_names=self.names.update_from_proto,
        )
        components += [self.certificates, self.watch]
        sources = agent_sources(
            envoy_version=self.version,
            certificates=self.certificates,
            dns=self.dns if config.dns_enabled else None,
            names=self.names,
            envoy=self.envoy,
            readiness=readiness,
            watch=self.watch,
        )
        components.append(InsightReporter(link, sources, envoy_admin=self.admin))
        return components

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
        drain = self.config.drain_time
        until_idle = self.config.drain_until_idle
        if until_idle:
            await _drain(admin)  # inbound only: outbound keeps working for the app
        if drain > 0 and not supervisor.done():
            second = asyncio.create_task(self.signals.wait(2), name="second-signal")
            waits: set[asyncio.Future[Any]] = {second, supervisor}
            idle: asyncio.Task[None] | None = None
            connections = AdminConnections(admin) if until_idle else None
            if connections is not None:
                log.info(
                    "draining until the application has no connection left through the "
                    "outbound listeners, at most %gs (signal again to skip the wait)",
                    drain,
                )
                idle = asyncio.create_task(wait_until_idle(connections), name="drain-idle")
                waits.add(idle)
            else:
                log.info("draining for %gs (signal again to skip the wait)", drain)
            await asyncio.wait(waits, timeout=drain, return_when=asyncio.FIRST_COMPLETED)
            if second.done():
                log.info("second signal: skipping the rest of the drain time")
            elif idle is not None and not idle.done() and not supervisor.done():
                log.info("drain time (%gs) over with outbound connections still open", drain)
            second.cancel()
            if idle is not None:
                idle.cancel()
                await asyncio.gather(idle, return_exceptions=True)
        stop.set()  # Envoy gets SIGTERM (SIGKILL after the grace period)
        await asyncio.wait({supervisor})

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


async def _drain(admin: EnvoyAdmin) -> None:
    try:
        await admin.drain_listeners(inbound_only=True, graceful=True)
    except AdminError as exc:
        log.warning("could not drain Envoy's listeners: %s", exc)


def _cp_addresses(config: AgentConfig) -> list[str]:
    """The CP addresses in the order to try them (``cp_addresses``, else ``cp_address``)."""
    return list(config.cp_addresses) or [config.cp_address]


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"--dns-upstream: {value!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def _system_trust_bundle() -> str:
    """The system's CA bundle as PEM, so Envoy verifies the DP server like the agent did."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile, "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate).read_text(encoding="utf-8", errors="replace")
    return ""


def _explain_cp_trust(cp_address: str) -> None:
    url = urlsplit(cp_address)
    if url.scheme == "https":
        log.info("verifying the DP server with the system trust store (no --ca-cert-file)")
        return
    host = url.hostname or ""
    loopback = host == "localhost" or host.startswith("127.") or host == "::1"
    if loopback:
        log.info(
            "trusting the DP server CA carried by the bootstrap: it came over plain http on "
            "loopback, the same trust as the http channel itself (--ca-cert-file to pin one)"
        )
    else:
        log.warning(
            "trusting the DP server CA carried by a bootstrap that came over plain http from "
            "%s: anyone on the path could swap it; use https or --ca-cert-file",
            host,
        )


def _raise_failure(supervisor: asyncio.Task[None]) -> None:
    """Re-raise a supervised component's failure as the error the user should see."""
    try:
        supervisor.result()
    except ComponentFailed as failed:
        cause = failed.cause
        if isinstance(cause, AgentError | OSError):
            raise cause from None
        raise AgentError(str(failed)) from cause
