"""``kumadp install transparent-proxy`` / ``kumadp uninstall transparent-proxy``. Parsing only:
the rules and applying them live in ``kumadp.tproxy``."""

from __future__ import annotations

from typing import Annotated

import typer

install_app = typer.Typer(
    help="Install host integration (transparent proxy).", no_args_is_help=True
)
uninstall_app = typer.Typer(help="Remove host integration.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(install_app, name="install")
    app.add_typer(uninstall_app, name="uninstall")


@install_app.command("transparent-proxy")
def install_transparent_proxy(
    redirect_outbound_port: Annotated[
        int, typer.Option(help="Envoy's outbound passthrough port (all outbound TCP)")
    ] = 15001,
    redirect_inbound_port: Annotated[
        int, typer.Option(help="Envoy's inbound passthrough port (all inbound TCP)")
    ] = 15006,
    redirect_inbound: Annotated[
        bool, typer.Option("--redirect-inbound/--no-redirect-inbound")
    ] = True,
    redirect_dns: Annotated[
        bool,
        typer.Option("--redirect-dns/--no-redirect-dns", help="DNS (UDP and TCP 53) to --dns-port"),
    ] = True,
    dns_port: Annotated[
        int, typer.Option(envvar="KUMA_DNS_PROXY_PORT", help="The agent's DNS resolver port")
    ] = 15053,
    kuma_dp_user: Annotated[
        str | None,
        typer.Option(
            help="UID or name of the user running kumadp and Envoy; its traffic is never "
            "redirected (default: user kuma-dp, else uid 5678)"
        ),
    ] = None,
    exclude_inbound_ports: Annotated[
        str, typer.Option(help="Comma-separated inbound ports not redirected, e.g. 22,9901")
    ] = "",
    exclude_outbound_ports: Annotated[
        str, typer.Option(help="Comma-separated outbound ports not redirected")
    ] = "",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the iptables-restore input, change nothing")
    ] = False,
) -> None:
    """Redirect this host's (or network namespace's) TCP traffic through Envoy (IPv4)."""
    from kumadp.cli.common import fail
    from kumadp.tproxy import (
        RulesError,
        TransparentProxyConfig,
        TransparentProxyError,
        install,
        parse_ports,
        rules_text,
    )

    try:
        config = TransparentProxyConfig(
            redirect_outbound_port=redirect_outbound_port,
            redirect_inbound_port=redirect_inbound_port,
            redirect_inbound=redirect_inbound,
            redirect_dns=redirect_dns,
            dns_port=dns_port,
            kuma_dp_user=kuma_dp_user,
            exclude_inbound_ports=parse_ports("--exclude-inbound-ports", exclude_inbound_ports),
            exclude_outbound_ports=parse_ports("--exclude-outbound-ports", exclude_outbound_ports),
        )
        if dry_run:
            typer.echo(rules_text(config), nl=False)
            return
        install(config)
    except (RulesError, TransparentProxyError) as exc:
        fail(str(exc))
    typer.echo("transparent proxy installed", err=True)


@uninstall_app.command("transparent-proxy")
def uninstall_transparent_proxy(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the iptables-restore input, change nothing")
    ] = False,
) -> None:
    """Remove the KUMA_MESH_ chains and the rules jumping to them (idempotent)."""
    from kumadp.cli.common import fail
    from kumadp.tproxy import Installer, TransparentProxyError, uninstall
    from kumadp.tproxy.install import require_root

    try:
        if dry_run:
            require_root()
            plan = Installer().uninstall_plan()
            typer.echo(plan or "# nothing to remove\n", nl=False)
            return
        removed = uninstall()
    except TransparentProxyError as exc:
        fail(str(exc))
    message = "transparent proxy removed" if removed else "transparent proxy was not installed"
    typer.echo(message, err=True)
