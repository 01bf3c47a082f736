"""The multi-zone options of ``kumadp cp run`` (Kuma's environment variable names), and how
they reach the configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from kumadp.cli.common import fail, parse_duration_flag
from kumadp.cli.kuma_names import CP_BY_PARAM, env


def _env(param: str) -> list[str]:
    return env(CP_BY_PARAM, param)  # Kuma's names (kumadp.cli.kuma_names)


Zone = Annotated[
    str | None, typer.Option(envvar=_env("zone"), help="This zone's name (--mode zone)")
]
KdsGlobalAddress = Annotated[
    str | None,
    typer.Option(
        envvar=_env("kds_global_address"),
        help="The global CP's KDS address, grpcs://HOST:5685 (--mode zone)",
    ),
]
KdsCaFile = Annotated[
    Path | None,
    typer.Option(
        envvar=_env("kds_ca_file"),
        help="CA (PEM) that signed the global CP's KDS certificate (default: system roots)",
    ),
]
KdsSkipVerify = Annotated[
    bool,
    typer.Option(
        envvar=_env("kds_skip_verify"),
        help="Do not verify the global CP's KDS certificate (insecure)",
    ),
]
KdsTokenFile = Annotated[
    Path | None,
    typer.Option(
        envvar=_env("kds_token_file"),
        help="The zone token (scope cp) this zone CP presents to the global CP (--mode zone; "
        "kumadp ctl generate zone-token --zone Z --scope cp, on the global CP)",
    ),
]
KdsToken = Annotated[
    str | None,
    typer.Option(
        envvar=_env("kds_token"),
        help="The zone token itself (prefer the environment variable: a flag shows in the "
        "process list)",
        show_default=False,
    ),
]
KdsPort = Annotated[
    int,
    typer.Option(envvar=_env("kds_port"), help="KDS port zones dial (--mode global)"),
]
KdsTlsCertFile = Annotated[
    Path | None,
    typer.Option(
        envvar=_env("kds_tls_cert_file"),
        help="KDS server certificate (PEM; default: generated in the data dir)",
    ),
]
KdsTlsKeyFile = Annotated[
    Path | None, typer.Option(envvar=_env("kds_tls_key_file"), help="KDS server key")
]
KdsAuth = Annotated[
    str,
    typer.Option(
        envvar=_env("kds_auth"),
        help="zoneToken (Kuma's name; cpToken, Kong Mesh 2.x's, is the same): zone CPs must "
        "present a zone token of scope cp; none: any zone CP is accepted (labs only) "
        "(--mode global)",
    ),
]
ZoneHealthTimeout = Annotated[
    str,
    typer.Option(
        envvar=_env("zone_health_timeout"),
        help="A zone without a heartbeat for this long is Offline (--mode global)",
    ),
]
ZoneCaValidity = Annotated[
    str,
    typer.Option(
        envvar="KUMADP_MULTIZONE_GLOBAL_ZONE_CA_VALIDITY",
        help="Lifetime of the zones' intermediate CAs, renewed at half (--mode global)",
    ),
]


def multizone_settings(
    *,
    zone: str | None,
    kds_global_address: str | None,
    kds_ca_file: Path | None,
    kds_skip_verify: bool,
    kds_token_file: Path | None,
    kds_token: str | None,
    kds_port: int,
    kds_tls_cert_file: Path | None,
    kds_tls_key_file: Path | None,
    kds_auth: str,
    zone_health_timeout: str,
    zone_ca_validity: str,
) -> dict[str, Any]:
    """The multi-zone fields of ``ControlPlaneConfig``; exits with a clear line on a bad
    value."""
    kds_auth = kds_auth or "cpToken"  # Kuma's empty type: the default
    if kds_auth == "zoneToken":  # Kuma's name for it; Kong Mesh 2.x says cpToken
        kds_auth = "cpToken"
    if kds_auth not in ("cpToken", "none"):
        fail(f"--kds-auth: must be zoneToken (or cpToken) or none, got {kds_auth!r}")
    return {
        "zone": zone,
        "kds_global_address": kds_global_address,
        "kds_ca_file": kds_ca_file,
        "kds_skip_verify": kds_skip_verify,
        "kds_token_file": kds_token_file,
        "kds_token": kds_token or None,
        "kds_port": kds_port,
        "kds_tls_cert_file": kds_tls_cert_file,
        "kds_tls_key_file": kds_tls_key_file,
        "kds_auth": kds_auth,
        "zone_health_timeout": parse_duration_flag("--zone-health-timeout", zone_health_timeout),
        "zone_ca_validity": parse_duration_flag("--zone-ca-validity", zone_ca_validity),
    }


__all__ = [
    "KdsAuth",
    "KdsCaFile",
    "KdsGlobalAddress",
    "KdsPort",
    "KdsSkipVerify",
    "KdsTlsCertFile",
    "KdsTlsKeyFile",
    "KdsToken",
    "KdsTokenFile",
    "Zone",
    "ZoneCaValidity",
    "ZoneHealthTimeout",
    "multizone_settings",
]
