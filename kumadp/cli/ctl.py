"""``kumadp ctl``: the kumactl-like client of the control plane's HTTP API."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Annotated

import typer

from kumadp.cli.common import fail

ctl_app = typer.Typer(help="Talk to a control plane's HTTP API.", no_args_is_help=True)
generate_app = typer.Typer(help="Generate tokens.", no_args_is_help=True)
revoke_app = typer.Typer(help="Revoke tokens.", no_args_is_help=True)
ctl_app.add_typer(generate_app, name="generate")
ctl_app.add_typer(revoke_app, name="revoke")

CpAddress = Annotated[
    str,
    typer.Option("--cp-address", envvar="KUMADP_CP_URL", help="The control plane's API"),
]


def register(app: typer.Typer) -> None:
    app.add_typer(ctl_app, name="ctl")


def _post(url: str, body: dict[str, object]) -> str:
    import httpx

    try:
        resp = httpx.post(url, json=body, timeout=10)
    except httpx.HTTPError as exc:
        fail(f"cannot reach the control plane at {url}: {exc}")
    if resp.status_code != 200:
        try:
            detail = resp.json().get("details") or resp.text
        except ValueError:
            detail = resp.text
        fail(f"{url}: {resp.status_code}: {detail}")
    return resp.text


@generate_app.command("dataplane-token")
def generate_dataplane_token(
    cp_address: CpAddress = "http://127.0.0.1:5681",
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
    token = _post(f"{cp_address.rstrip('/')}/tokens/dataplane", body)
    typer.echo(token.strip())


@revoke_app.command("dataplane-token")
def revoke_dataplane_token(
    cp_address: CpAddress = "http://127.0.0.1:5681",
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
    _post(f"{cp_address.rstrip('/')}/tokens/dataplane/revoke", {"jti": jti})
    typer.echo(f"revoked token {jti}")
