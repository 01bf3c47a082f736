"""``kumadp ctl inspect zoneingresses|zoneegresses``: registered on ``ctl inspect`` by the
command's composition (``kumadp.cli.main``)."""

from __future__ import annotations

import typer

from kumadp.cli.ctl import CpAddress, Output, _client, _ctl_errors, inspect_app


def register(app: typer.Typer) -> None:
    """Adds to ctl's ``inspect`` group (``app`` is the top command, taken for the common
    shape)."""
    if any(c.name == "zoneingresses" for c in inspect_app.registered_commands):
        return  # registered already (the command composed twice in one process)

    @inspect_app.command("zoneingresses")
    def inspect_zone_ingresses(output: Output = "table", cp_address: CpAddress = None) -> None:
        """Zone ingresses with their status and the services they make available to other
        zones (every zone's, on the global CP)."""
        _inspect("ingress", output, cp_address)

    @inspect_app.command("zoneegresses")
    def inspect_zone_egresses(output: Output = "table", cp_address: CpAddress = None) -> None:
        """Zone egresses with their status (every zone's, on the global CP)."""
        _inspect("egress", output, cp_address)


def _inspect(proxy_type: str, output: str, cp_address: str | None) -> None:
    from kumadp.ctl import resources, zone_inspect

    with _ctl_errors():
        resources.check_format(output)
        with _client(cp_address) as client:
            text = zone_inspect.inspect_zone_proxies(client, proxy_type, output=output)
    typer.echo(text, nl=False)


__all__ = ["register"]
