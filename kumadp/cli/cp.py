"""``kumadp cp run``: parse flags, build the config, run the control plane."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kumadp.cli import cp_multizone as mz
from kumadp.cli.cp_postgres import (
    PgDbName,
    PgDsn,
    PgHost,
    PgMaxConns,
    PgPassword,
    PgPort,
    PgTlsCa,
    PgTlsCert,
    PgTlsKey,
    PgTlsMode,
    PgUser,
)
from kumadp.cli.kuma_names import CP_BY_PARAM, CP_LAYOUT, env
from kumadp.cli.pflag import with_layout

if TYPE_CHECKING:
    from kumadp.cp.runtime.config import ControlPlaneConfig

log = logging.getLogger("kumadp.cp")

cp_app = typer.Typer(help="The control plane.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    from kumadp.cli.cp_postgres import migrate_app

    cp_app.add_typer(migrate_app, name="migrate")
    app.add_typer(cp_app, name="cp")


def _env(param: str) -> list[str]:
    return env(CP_BY_PARAM, param)  # Kuma's names (kumadp.cli.kuma_names)


@cp_app.command("run", cls=with_layout(CP_LAYOUT))
def run(
    mode: Annotated[
        str, typer.Option(envvar=_env("mode"), help="standalone, global or zone (multi-zone)")
    ] = "standalone",
    store: Annotated[
        str, typer.Option(envvar=_env("store"), help="sqlite (default), memory or postgres")
    ] = "sqlite",
    data_dir: Annotated[
        Path | None,
        typer.Option(envvar=_env("data_dir"), help="Where the SQLite store lives"),
    ] = None,
    address: Annotated[
        str, typer.Option(envvar="KUMADP_CP_ADDRESS", help="Address every port binds to")
    ] = "0.0.0.0",
    api_port: Annotated[int, typer.Option(envvar=_env("api_port"))] = 5681,
    dp_port: Annotated[int, typer.Option(envvar=_env("dp_port"))] = 5678,
    diagnostics_port: Annotated[int, typer.Option(envvar=_env("diagnostics_port"))] = 5680,
    xds_host: Annotated[
        str | None,
        typer.Option(
            envvar=_env("xds_host"),
            help="Host Envoys use for ADS (default: the host the agent used for the API)",
        ),
    ] = None,
    deregistration_delay: Annotated[str, typer.Option(envvar=_env("deregistration_delay"))] = "10s",
    dp_auth: Annotated[
        str,
        typer.Option(
            envvar=_env("dp_auth"),  # Kuma's current name, then its older one
            help="dpToken (agents must present a dataplane token) or none",
        ),
    ] = "dpToken",
    tls_cert_file: Annotated[
        Path | None,
        typer.Option(envvar=_env("tls_cert_file"), help="DP server certificate (PEM)"),
    ] = None,
    tls_key_file: Annotated[
        Path | None,
        typer.Option(envvar=_env("tls_key_file"), help="DP server private key (PEM)"),
    ] = None,
    vip_cidr: Annotated[
        str, typer.Option(envvar=_env("vip_cidr"), help="CIDR of the services' VIPs")
    ] = "240.0.0.0/4",
    loopback_cidr: Annotated[
        str,
        typer.Option(
            envvar="KUMADP_LOOPBACK_CIDR",
            help="CIDR of per-service loopback addresses for agents with --bind-outbounds",
        ),
    ] = "127.1.0.0/16",
    log_level: Annotated[str, typer.Option(envvar=_env("log_level"))] = "info",
    # PostgreSQL and several instances
    postgres_dsn: PgDsn = "",
    postgres_host: PgHost = "127.0.0.1",
    postgres_port: PgPort = 5432,
    postgres_user: PgUser = "kuma",
    postgres_password: PgPassword = "",
    postgres_db_name: PgDbName = "kuma",
    postgres_tls_mode: PgTlsMode = "disable",
    postgres_tls_cert_path: PgTlsCert = "",
    postgres_tls_key_path: PgTlsKey = "",
    postgres_tls_ca_path: PgTlsCa = "",
    postgres_max_open_connections: PgMaxConns = 50,
    leader_lease: Annotated[
        str,
        typer.Option(
            envvar="KUMADP_LEADER_LEASE",
            help="postgres: how long a silent leader keeps its lease (a new one follows)",
        ),
    ] = "3s",
    # multi-zone (kumadp.cli.cp_multizone)
    zone: mz.Zone = None,
    kds_global_address: mz.KdsGlobalAddress = None,
    kds_ca_file: mz.KdsCaFile = None,
    kds_skip_verify: mz.KdsSkipVerify = False,
    kds_token_file: mz.KdsTokenFile = None,
    kds_token: mz.KdsToken = None,
    kds_port: mz.KdsPort = 5685,
    kds_tls_cert_file: mz.KdsTlsCertFile = None,
    kds_tls_key_file: mz.KdsTlsKeyFile = None,
    kds_auth: mz.KdsAuth = "cpToken",
    zone_health_timeout: mz.ZoneHealthTimeout = "20s",
    zone_ca_validity: mz.ZoneCaValidity = "720h",
    # API security
    api_address: Annotated[
        str | None,
        typer.Option(
            envvar=_env("api_address"),
            help="Address the HTTP API binds to (default: --address)",
        ),
    ] = None,
    api_https_enabled: Annotated[
        bool, typer.Option(envvar=_env("api_https_enabled"), help="Serve the HTTPS API")
    ] = True,
    api_https_port: Annotated[
        int, typer.Option(envvar=_env("api_https_port"), help="HTTPS API port; 0: off")
    ] = 5682,
    api_https_address: Annotated[
        str | None,
        typer.Option(
            envvar=_env("api_https_address"),
            help="Address the HTTPS API binds to (default: the HTTP API's)",
        ),
    ] = None,
    api_https_tls_cert_file: Annotated[
        Path | None,
        typer.Option(
            envvar=_env("api_https_tls_cert_file"),
            help="HTTPS API certificate (default: the CP's own, as the DP server's)",
        ),
    ] = None,
    api_https_tls_key_file: Annotated[
        Path | None, typer.Option(envvar=_env("api_https_tls_key_file"))
    ] = None,
    api_https_client_ca_file: Annotated[
        Path | None,
        typer.Option(
            envvar=_env("api_https_client_ca_file"),
            help="CA of client certificates; a client with one it signed is an admin",
        ),
    ] = None,
    api_https_require_client_cert: Annotated[
        bool,
        typer.Option(
            envvar=_env("api_https_require_client_cert"),
            help="HTTPS callers must present a client certificate",
        ),
    ] = False,
    api_localhost_is_admin: Annotated[
        bool,
        typer.Option(
            envvar=_env("api_localhost_is_admin"),
            help="Loopback callers (with a loopback Host header) are admins",
        ),
    ] = True,
    api_anonymous_read: Annotated[
        bool,
        typer.Option(
            envvar="KUMADP_API_SERVER_AUTHN_ANONYMOUS_READ",
            help="Callers without credentials may read non-secret resources",
        ),
    ] = True,
    api_max_body_bytes: Annotated[
        int, typer.Option(envvar="KUMADP_API_SERVER_MAX_BODY_BYTES", help="Request body cap")
    ] = 1024 * 1024,
    secrets_key_file: Annotated[
        Path | None,
        typer.Option(
            envvar="KUMADP_SECRETS_KEY_FILE",
            help="Key file encrypting the private keys kept in the store",
        ),
    ] = None,
    bootstrap_admin_token: Annotated[
        bool,
        typer.Option(
            envvar=_env("bootstrap_admin_token"),
            help="Write an admin user token to <data dir>/admin-user-token",
        ),
    ] = True,
    # Kuma compatibility
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config-file",
            "-c",
            help="kuma-cp's configuration (YAML: mode, store, apiServer, dpServer, ...); the "
            "environment and the flags override it.",
        ),
    ] = None,
) -> None:
    """Run the control plane (HTTP API, xDS/agent gRPC server, diagnostics)."""
    from kumadp.cli.common import fail, setup_logging
    from kumadp.cp.runtime.config import ControlPlaneConfig
    from kumadp.resources import parse_duration

    setup_logging(log_level)
    del config_file  # read into the defaults by the command class (kumadp.cli.pflag)
    dp_auth = dp_auth or "dpToken"  # Kuma's empty type: the environment's default
    if dp_auth not in ("dpToken", "none"):
        fail(f"--dp-auth: must be dpToken or none, got {dp_auth!r}")
    if store not in ("sqlite", "memory", "postgres"):
        fail(f"--store: must be sqlite, memory or postgres, got {store!r}")
    try:
        delay = parse_duration(deregistration_delay)
    except ValueError as exc:
        fail(f"--deregistration-delay: {exc}")
    if data_dir is None and store == "sqlite":
        data_dir = Path.home() / ".kumadp" / "cp"
    config = ControlPlaneConfig(
        mode=mode,
        store=store,
        data_dir=data_dir,
        address=address,
        api_port=api_port,
        dp_port=dp_port,
        diagnostics_port=diagnostics_port,
        xds_host=xds_host,
        deregistration_delay=delay,
        dp_auth=dp_auth,
        tls_cert_file=tls_cert_file,
        tls_key_file=tls_key_file,
        vip_cidr=vip_cidr,
        loopback_cidr=loopback_cidr,
    )
    settings = mz.multizone_settings(
        zone=zone,
        kds_global_address=kds_global_address,
        kds_ca_file=kds_ca_file,
        kds_skip_verify=kds_skip_verify,
        kds_token_file=kds_token_file,
        kds_token=kds_token,
        kds_port=kds_port,
        kds_tls_cert_file=kds_tls_cert_file,
        kds_tls_key_file=kds_tls_key_file,
        kds_auth=kds_auth,
        zone_health_timeout=zone_health_timeout,
        zone_ca_validity=zone_ca_validity,
    )
    for key, value in settings.items():
        setattr(config, key, value)
    # PostgreSQL and several instances
    if store == "postgres":
        from kumadp.cli.common import parse_duration_flag
        from kumadp.cli.cp_postgres import postgres_settings

        config.postgres = postgres_settings(
            postgres_dsn,
            postgres_host,
            postgres_port,
            postgres_user,
            postgres_password,
            postgres_db_name,
            postgres_tls_mode,
            postgres_tls_cert_path,
            postgres_tls_key_path,
            postgres_tls_ca_path,
            postgres_max_open_connections,
        )
        config.leader_lease = parse_duration_flag("--leader-lease", leader_lease)
        if config.leader_lease < 1:
            fail("--leader-lease: must be at least 1s")
    # API security
    if not 0 <= api_https_port <= 65535:
        fail(f"--api-https-port: must be 0-65535, got {api_https_port}")
    if api_max_body_bytes < 1024:
        fail(f"--api-max-body-bytes: must be at least 1024, got {api_max_body_bytes}")
    config.api_address = api_address
    config.api_https_port = api_https_port if api_https_enabled else 0
    config.api_https_address = api_https_address
    config.api_tls_cert_file = api_https_tls_cert_file
    config.api_tls_key_file = api_https_tls_key_file
    config.api_client_ca_file = api_https_client_ca_file
    config.api_require_client_cert = api_https_require_client_cert
    config.localhost_is_admin = api_localhost_is_admin
    config.api_anonymous_read = api_anonymous_read
    config.api_max_body_bytes = api_max_body_bytes
    config.secrets_key_file = secrets_key_file
    config.bootstrap_admin_token = bootstrap_admin_token
    try:
        config.check()
    except ValueError as exc:
        fail(str(exc))
    try:
        code = asyncio.run(_main(config))
    except KeyboardInterrupt:  # before the signal handlers were installed
        code = 0
    except Exception as exc:  # one clear line, no traceback
        log.debug("control plane failed", exc_info=exc)
        fail(str(exc))
    if code:
        raise typer.Exit(code)


async def _main(config: ControlPlaneConfig) -> int:
    """Run the control plane under the shared signal handling: the first SIGTERM/SIGINT
    shuts down gracefully (in phases), a second one forces the exit (status 1)."""
    from kumadp.cp.runtime import run_control_plane
    from kumadp.signals import SignalWatcher

    stop = asyncio.Event()
    with SignalWatcher() as signals:
        run = asyncio.create_task(run_control_plane(config, stop), name="control-plane")
        first = asyncio.create_task(signals.wait(1))
        second = asyncio.create_task(signals.wait(2))
        try:
            await asyncio.wait({run, first}, return_when=asyncio.FIRST_COMPLETED)
            if not run.done():
                log.info("shutting down (signal again to force)")
                stop.set()
                await asyncio.wait({run, second}, return_when=asyncio.FIRST_COMPLETED)
                if not run.done():
                    log.warning("forced exit")
                    run.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await run  # its cleanup (the store) still runs
                    return 1
            run.result()  # a failure raises here
            return 0
        finally:
            first.cancel()
            second.cancel()
