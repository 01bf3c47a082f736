"""``kumadp ctl``: the kumactl-like client of the control plane's HTTP API."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kumadp.cli.common import fail
from kumadp.cli.pflag import split_pairs
from kumadp.resources.registry import REGISTRY

if TYPE_CHECKING:
    from kumadp.ctl import ApiClient

ctl_app = typer.Typer(help="Talk to a control plane's HTTP API.", no_args_is_help=True)
generate_app = typer.Typer(help="Generate tokens.", no_args_is_help=True)
revoke_app = typer.Typer(help="Revoke tokens.", no_args_is_help=True)
inspect_app = typer.Typer(help="Show resources with their live state.", no_args_is_help=True)
config_app = typer.Typer(help="Manage the ctl config file.", no_args_is_help=True)
control_planes_app = typer.Typer(
    help="Control planes known to ctl (the current one is used by default).",
    no_args_is_help=True,
)
ctl_app.add_typer(generate_app, name="generate")
ctl_app.add_typer(revoke_app, name="revoke")
ctl_app.add_typer(inspect_app, name="inspect")
ctl_app.add_typer(config_app, name="config")
config_app.add_typer(control_planes_app, name="control-planes")

CpAddress = Annotated[
    str | None,
    typer.Option(
        "--cp-address",
        envvar="KUMADP_CP_URL",
        help="The control plane's API (default: the config's current one, else "
        "http://127.0.0.1:5681)",
        show_default=False,
    ),
]
Mesh = Annotated[str, typer.Option("--mesh", "-m", help="Mesh (as kumactl: default)")]
AllMeshes = Annotated[
    bool, typer.Option("--all-meshes", "-A", help="Every mesh (instead of --mesh)")
]
ItemMesh = Annotated[str, typer.Option("--mesh", "-m", help="Mesh of the resource")]
Output = Annotated[str, typer.Option("--output", "-o", help="table, json or yaml")]


def _kinds_help() -> str:
    """``meshes, dataplanes or meshtrafficpermissions (singular works too)``: the registry's."""
    plurals = [t.plural for t in REGISTRY.served() if t.plural]
    return (
        f"{', '.join(plurals[:-1])} or {plurals[-1]} (singular works too); "
        "get also lists control-planes"
    )


KIND_HELP = _kinds_help()
MAX_APPLY_BYTES = 16 * 1024 * 1024  # a file of many resources; each is capped by the CP


@contextmanager
def _ctl_errors() -> Iterator[None]:
    """``CtlError`` (and resource validation errors) as ``Error: ...`` and exit 1."""
    from kumadp.ctl import CtlError
    from kumadp.resources import ValidationError

    try:
        yield
    except (CtlError, ValidationError) as exc:
        fail(str(exc))


_group_cp_address: list[str | None] = [None]  # set by the ``ctl`` callback, per invocation


@ctl_app.callback()
def _ctl_options(cp_address: CpAddress = None) -> None:
    """Talk to a control plane's HTTP API."""
    # ``kumadp ctl --cp-address URL <command>``: the option before the command (the
    # command's own --cp-address, given after it, wins).
    _group_cp_address[0] = cp_address


def _address(cp_address: str | None) -> str:
    from kumadp.ctl.config import resolve_address

    with _ctl_errors():
        return resolve_address(cp_address or _group_cp_address[0])


def _client(cp_address: str | None) -> ApiClient:
    """A client of the CP (``--cp-address``, before or after the command, or the config's
    current one) with the credentials the config holds for it."""
    from kumadp.ctl.config import resolve_client

    with _ctl_errors():
        return resolve_client(cp_address or _group_cp_address[0])


def register(app: typer.Typer) -> None:
    app.add_typer(ctl_app, name="ctl")


def _post(cp_address: str | None, path: str, body: dict[str, object]) -> str:
    with _ctl_errors(), _client(cp_address) as client:
        return client.post_text(path, body)


@generate_app.command("dataplane-token")
def generate_dataplane_token(
    cp_address: CpAddress = None,
    mesh: Annotated[str, typer.Option(help="Mesh of the dataplane")] = "default",
    name: Annotated[str, typer.Option(help="Name of the dataplane ('' = any name)")] = "",
    tag: Annotated[
        list[str] | None,
        typer.Option(help="KEY=VALUE; kuma.io/service=X limits the services it may claim"),
    ] = None,
    valid_for: Annotated[str, typer.Option(help="Validity, e.g. 24h")] = "87600h",
) -> None:
    """Print a dataplane token (JWT) on stdout."""
    tags: dict[str, list[str]] = {}
    for item in tag or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--tag: {item!r} is not KEY=VALUE")
        tags.setdefault(key, []).append(value)
    body: dict[str, object] = {"mesh": mesh, "name": name, "tags": tags, "validFor": valid_for}
    token = _post(cp_address, "/tokens/dataplane", body)
    typer.echo(token.strip())


@generate_app.command("zone-token")
def generate_zone_token(
    zone: Annotated[str, typer.Option(help="The zone the token is for", show_default=False)],
    cp_address: CpAddress = None,
    scope: Annotated[
        list[str] | None,
        typer.Option(help="cp, ingress or egress (repeatable; default: ingress and egress)"),
    ] = None,
    valid_for: Annotated[str, typer.Option(help="Validity, e.g. 720h")] = "720h",
) -> None:
    """Print a zone token (JWT) on stdout: for a zone CP (scope cp) or its ingress/egress."""
    body: dict[str, object] = {"zone": zone, "validFor": valid_for}
    if scope:
        body["scope"] = [item for part in scope for item in part.split(",") if item]
    typer.echo(_post(cp_address, "/tokens/zone", body).strip())


@generate_app.command("user-token")
def generate_user_token(
    name: Annotated[str, typer.Option(help="The user's name", show_default=False)],
    cp_address: CpAddress = None,
    group: Annotated[
        list[str] | None,
        typer.Option(help="A group (repeatable); mesh-system:admin makes an admin"),
    ] = None,
    valid_for: Annotated[str, typer.Option(help="Validity, e.g. 24h")] = "24h",
) -> None:
    """Print a user token (JWT) for the API on stdout."""
    body: dict[str, object] = {"name": name, "groups": group or [], "validFor": valid_for}
    typer.echo(_post(cp_address, "/tokens/user", body).strip())


@revoke_app.command("dataplane-token")
def revoke_dataplane_token(
    cp_address: CpAddress = None,
    token_file: Annotated[Path | None, typer.Option(help="The token to revoke")] = None,
    jti: Annotated[str | None, typer.Option(help="The token's id (jti claim)")] = None,
) -> None:
    """Revoke a dataplane token: every CP check rejects it from now on."""
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
            payload = token.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            jti = claims["jti"]
        except (OSError, IndexError, ValueError, KeyError) as exc:
            fail(f"--token-file: cannot read a token's jti from {token_file}: {exc}")
    if not jti:
        fail("give --token-file or --jti")
    _post(cp_address, "/tokens/dataplane/revoke", {"jti": jti})
    typer.echo(f"revoked token {jti}")


# --- resources ----------------------------------------------------------------------------


@ctl_app.command("get")
def get(
    kind: Annotated[str, typer.Argument(help=KIND_HELP, show_default=False)],
    name: Annotated[str | None, typer.Argument(help="One resource by name")] = None,
    mesh: Mesh = "default",
    all_meshes: AllMeshes = False,
    output: Output = "table",
    cp_address: CpAddress = None,
) -> None:
    """List resources (or show one) as a table, JSON or YAML."""
    from kumadp.ctl import control_planes, resources

    with _ctl_errors():
        if kind.strip().lower() in control_planes.NAMES and name is None:
            with _client(cp_address) as client:
                text = control_planes.get_control_planes(client, output)
            typer.echo(text, nl=False)
            return
        resolved = resources.kind_named(kind)
        resources.check_format(output)
        with _client(cp_address) as client:
            scope = None if all_meshes and name is None else mesh
            text = resources.get(client, resolved, name, mesh=scope, output=output)
    typer.echo(text, nl=False)


@inspect_app.command("dataplanes")
def inspect_dataplanes(
    mesh: Mesh = "default",
    all_meshes: AllMeshes = False,
    output: Output = "table",
    cp_address: CpAddress = None,
) -> None:
    """Dataplanes with their status, last connection, certificate expiry and versions."""
    from kumadp.ctl import resources

    with _ctl_errors():
        resources.check_format(output)
        with _client(cp_address) as client:
            scope = None if all_meshes else mesh
            text = resources.inspect_dataplanes(client, mesh=scope, output=output)
    typer.echo(text, nl=False)


@inspect_app.command("dataplane")
def inspect_dataplane(
    name: Annotated[str, typer.Argument(help="Name of the dataplane", show_default=False)],
    mesh: ItemMesh = "default",
    output: Output = "table",
    cp_address: CpAddress = None,
) -> None:
    """The policies that apply to one dataplane, per outbound service and inbound, with
    their merged configuration."""
    from kumadp.ctl import resources, rules

    with _ctl_errors():
        resources.check_format(output)
        with _client(cp_address) as client:
            text = rules.inspect_dataplane(client, name, mesh=mesh, output=output)
    typer.echo(text, nl=False)


@ctl_app.command("apply")
def apply(
    file: Annotated[
        str,
        typer.Option("--file", "-f", help="YAML/JSON resources ('-' = stdin; '---' between)"),
    ],
    var: Annotated[
        list[str] | None,
        typer.Option(
            "--var", "-v", help="KEY=VALUE for {{ KEY }} placeholders (repeatable; k1=v1,k2=v2)"
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and print the resources; send nothing")
    ] = False,
    cp_address: CpAddress = None,
) -> None:
    """Create or update resources (validated locally first: nothing is sent if any is
    invalid)."""
    from kumadp.ctl import resources
    from kumadp.resources.safe_load import read_text_file

    source = "<stdin>" if file == "-" else file
    try:
        text = read_text_file(file, MAX_APPLY_BYTES, source)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        fail(f"--file: cannot read {file}: {reason}")
    with _ctl_errors():
        documents = resources.parse_documents(text, split_pairs(var or []), source)
        for line in resources.warning_lines(documents):
            typer.echo(line, err=True)
        if dry_run:
            typer.echo(resources.dry_run_text(documents), nl=False)
            return
        with _client(cp_address) as client:
            resources.apply(client, documents, echo=typer.echo)


@ctl_app.command("delete")
def delete(
    kind: Annotated[str, typer.Argument(help=KIND_HELP, show_default=False)],
    name: Annotated[str, typer.Argument(help="Name of the resource", show_default=False)],
    mesh: ItemMesh = "default",
    cp_address: CpAddress = None,
) -> None:
    """Delete one resource (a mesh takes its resources with it)."""
    from kumadp.ctl import resources

    with _ctl_errors():
        resolved = resources.kind_named(kind)
        with _client(cp_address) as client:
            typer.echo(resources.delete(client, resolved, name, mesh=mesh), nl=False)


# --- config control-planes ----------------------------------------------------------------

CpName = Annotated[str, typer.Option("--name", help="Name of the control plane")]


@control_planes_app.command("add")
def control_planes_add(
    name: CpName,
    address: Annotated[str, typer.Option("--address", help="Its API, e.g. http://cp:5681")],
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace one of the same name")
    ] = False,
    no_check: Annotated[
        bool, typer.Option("--no-check", help="Do not check that the address answers")
    ] = False,
    auth_type: Annotated[
        str | None, typer.Option("--auth-type", help="tokens: authenticate with a user token")
    ] = None,
    auth_conf: Annotated[
        list[str] | None,
        typer.Option("--auth-conf", help="KEY=VALUE for the auth type: token=<user token>"),
    ] = None,
    ca_cert_file: Annotated[
        str | None, typer.Option("--ca-cert-file", help="CA of the API's HTTPS certificate")
    ] = None,
    client_cert_file: Annotated[
        str | None, typer.Option("--client-cert-file", help="Client certificate (HTTPS)")
    ] = None,
    client_key_file: Annotated[
        str | None, typer.Option("--client-key-file", help="Client certificate's key")
    ] = None,
) -> None:
    """Remember a control plane and make it the current one."""
    from kumadp.ctl import config

    if bool(client_cert_file) != bool(client_key_file):
        fail("--client-cert-file and --client-key-file go together")
    with _ctl_errors():
        kind, conf = config.parse_auth(auth_type, auth_conf or [])
        entry = config.ControlPlaneEntry(
            name,
            address,
            auth_type=kind,
            auth_conf=conf,
            ca_cert_file=ca_cert_file or "",
            client_cert_file=client_cert_file or "",
            client_key_file=client_key_file or "",
        )
        config.add(name, address, overwrite=overwrite, check=not no_check, entry=entry)
    typer.echo(f'added Control Plane "{name}"')
    typer.echo(f'switched active Control Plane to "{name}"')


@control_planes_app.command("list")
def control_planes_list() -> None:
    """The known control planes; ``*`` marks the current one."""
    from kumadp.ctl import config, tables

    with _ctl_errors():
        loaded = config.load()
    rows = [
        ["*" if cp.name == loaded.current else "", cp.name, cp.url] for cp in loaded.control_planes
    ]
    typer.echo(tables.render_table(("ACTIVE", "NAME", "ADDRESS"), rows), nl=False)


@control_planes_app.command("switch")
def control_planes_switch(name: CpName) -> None:
    """Make another known control plane the current one."""
    from kumadp.ctl import config

    with _ctl_errors():
        config.switch(name)
    typer.echo(f'switched active Control Plane to "{name}"')


@control_planes_app.command("remove")
def control_planes_remove(name: CpName) -> None:
    """Forget a control plane."""
    from kumadp.ctl import config

    with _ctl_errors():
        was_current = config.remove(name)
    typer.echo(f'removed Control Plane "{name}"')
    if was_current:
        typer.echo("no active Control Plane now: commands use --cp-address or the default")
