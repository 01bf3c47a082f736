"""The agent's configuration (``AgentConfig``, filled in by ``kumadp run``) and the checks
that run before anything leaves the machine, so that mistakes fail fast with one line naming
the flag: the dataplane and the token, the CP addresses, ports, log level, durations, the
metrics flags and ``--ca-cert-file``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

from kumadp.agent.cp_trust import DEFAULT_CP_ADDRESS, check_cp_addresses, cp_addresses
from kumadp.agent.envoy import LOG_LEVELS
from kumadp.agent.errors import ConfigError
from kumadp.agent.identity import Identity, load_identity, load_token


@dataclass
class AgentConfig:
    cp_address: str = DEFAULT_CP_ADDRESS
    # several CPs, tried in order for the bootstrap (cp_address when empty)
    cp_addresses: list[str] = field(default_factory=list)
    ca_cert_file: str | None = None
    ca_cert: str | None = None  # the CA as PEM (KUMA_CONTROL_PLANE_CA_CERT); wins over the file
    skip_verify: bool = False  # do not verify an https CP's certificate (kuma-dp's flag)
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
    envoy_component_log_level: str | None = None  # Envoy's --component-log-level
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

    def addresses(self) -> list[str]:
        """The CP addresses in the order to try them."""
        return cp_addresses(self.cp_addresses, self.cp_address)


class Local(NamedTuple):
    """What the local checks read: the dataplane, the token (and its file) and the CA."""

    identity: Identity
    token: str
    token_path: str
    ca_cert: str  # KUMA_CONTROL_PLANE_CA_CERT or --ca-cert-file's content, "" without one


def check_local(config: AgentConfig) -> Local:
    """Check every flag and read the local inputs; ``ConfigError`` names the flag."""
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
    check_cp_addresses(config.addresses())
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
    ca_cert = config.ca_cert or ""
    if not ca_cert and config.ca_cert_file:
        try:
            ca_cert = Path(config.ca_cert_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise ConfigError(
                f"--ca-cert-file: cannot read {config.ca_cert_file}: {reason}"
            ) from exc
    return Local(identity, token, token_path, ca_cert)


def check_app_metrics_urls(urls: Sequence[str]) -> list[str]:
    """The ``--app-metrics-url`` values, checked (http:// or https:// with a host)."""
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"--app-metrics-url: {url!r} is not an http:// or https:// URL "
                "(the application's Prometheus endpoint, e.g. http://127.0.0.1:8080/metrics)"
            )
    return list(urls)


def check_metrics_config(port: int | None, app_urls: Sequence[str]) -> None:
    if port is not None and not 0 <= port <= 65535:
        raise ConfigError("--metrics-port: must be 0-65535")
    check_app_metrics_urls(app_urls)


def envoy_extra_args(config: AgentConfig) -> tuple[str, ...]:
    """Envoy arguments from the agent's flags besides Kuma's fixed ones."""
    if config.envoy_component_log_level:
        return ("--component-log-level", config.envoy_component_log_level)
    return ()


def dns_upstreams(config: AgentConfig) -> list[tuple[str, int]] | None:
    """``--dns-upstream`` as (host, port) pairs; None: the resolver reads resolv.conf."""
    return [host_port(u) for u in config.dns_upstreams] or None


def host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"--dns-upstream: {value!r} is not HOST:PORT")
    return host.strip("[]"), int(port)
