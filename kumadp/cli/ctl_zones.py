"""``kumadp ctl`` commands about zones (a global CP): ``inspect zones``, ``inspect zone-cas``,
``revoke zone-ca``, ``allow zone-ca``. ``get zones`` is the resource command's (it shows the
same table). Registered by ``kumadp.cli.main`` after ``kumadp.cli.ctl``."""

from __future__ import annotations

from typing import Annotated

import typer

from kumadp.cli.ctl import (
    CpAddress,
    Output,
    _client,
    _ctl_errors,
    ctl_app,
    inspect_app,
    revoke_app,
)

allow_app = typer.Typer(help="Lift a refusal (a zone's intermediate CAs).", no_args_is_help=True)
ZoneName = Annotated[str, typer.Option("--zone", help="The zone", show_default=False)]


def register(app: typer.Typer) -> None:
    """Adds to ctl's groups (``app`` is the top command, taken for the common shape)."""
    ctl_app.add_typer(allow_app, name="allow")


@inspect_app.command("zones")
def inspect_zones(output: Output = "table", cp_address: CpAddress = None) -> None:
    """Zones with their status (Online, Offline, Disabled), last connection, CP version and
    dataplanes (online/total)."""
    from kumadp.ctl import resources, zones

    with _ctl_errors():
        fmt = resources.check_format(output)
        with _client(cp_address) as client:
            if fmt == "table":
                text = zones.zone_rows(client, age=True)
            else:
                text = resources.dump(zones.zone_overviews(client), fmt)
    typer.echo(text, nl=False)


@revoke_app.command("zone-ca")
def revoke_zone_ca(
    zone: ZoneName,
    mesh: Annotated[
        str | None, typer.Option("--mesh", "-m", help="Only this mesh (default: every mesh)")
    ] = None,
    cp_address: CpAddress = None,
) -> None:
    """Revoke a zone's intermediate CAs (global CP): every Envoy stops trusting the
    certificates they signed, and the zone gets no new one until allowed."""
    from kumadp.ctl import zones

    with _ctl_errors(), _client(cp_address) as client:
        typer.echo(zones.revoke_zone_ca(client, zone, mesh), nl=False)


@allow_app.command("zone-ca")
def allow_zone_ca(zone: ZoneName, cp_address: CpAddress = None) -> None:
    """Let a zone whose intermediate CAs were revoked get new ones (the revoked ones stay
    revoked)."""
    from kumadp.ctl import zones

    with _ctl_errors(), _client(cp_address) as client:
        typer.echo(zones.allow_zone_ca(client, zone), nl=False)


@inspect_app.command("zone-cas")
def inspect_zone_cas(zone: ZoneName, cp_address: CpAddress = None) -> None:
    """A zone's intermediate CAs: mesh, serial, expiry, live/revoked/expired."""
    from kumadp.ctl import zones

    with _ctl_errors(), _client(cp_address) as client:
        typer.echo(zones.zone_cas(client, zone), nl=False)


__all__ = ["register"]
