"""PostgreSQL options shared by ``kumadp cp run`` and ``kumadp cp migrate up`` (Kuma's
environment variable names), and ``kumadp cp migrate up`` itself."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Annotated

import typer

from kumadp.cli.kuma_names import CP_BY_PARAM, env

if TYPE_CHECKING:
    from kumadp.cp.store.postgres_settings import PostgresSettings

log = logging.getLogger("kumadp.cp")


def _env(param: str) -> list[str]:
    return env(CP_BY_PARAM, param)  # Kuma's names (kumadp.cli.kuma_names)


PgDsn = Annotated[
    str,
    typer.Option(
        "--postgres-dsn",
        envvar="KUMADP_STORE_POSTGRES_DSN",
        help="PostgreSQL connection string (postgresql://user:pw@host:port/db or key=value "
        "pairs); the --postgres-* settings fill what it leaves out",
    ),
]
PgHost = Annotated[str, typer.Option("--postgres-host", envvar=_env("postgres_host"))]
PgPort = Annotated[int, typer.Option("--postgres-port", envvar=_env("postgres_port"))]
PgUser = Annotated[str, typer.Option("--postgres-user", envvar=_env("postgres_user"))]
PgPassword = Annotated[
    str,
    typer.Option(
        "--postgres-password",
        envvar=_env("postgres_password"),
        help="Prefer the environment variable: a flag shows in the process list",
        show_default=False,
    ),
]
PgDbName = Annotated[str, typer.Option("--postgres-db-name", envvar=_env("postgres_db_name"))]
PgTlsMode = Annotated[
    str,
    typer.Option(
        "--postgres-tls-mode",
        envvar=_env("postgres_tls_mode"),
        help="disable, verifyNone, verifyCa or verifyFull",
    ),
]
PgTlsCert = Annotated[
    str, typer.Option("--postgres-tls-cert-path", envvar=_env("postgres_tls_cert_path"))
]
PgTlsKey = Annotated[
    str, typer.Option("--postgres-tls-key-path", envvar=_env("postgres_tls_key_path"))
]
PgTlsCa = Annotated[
    str, typer.Option("--postgres-tls-ca-path", envvar=_env("postgres_tls_ca_path"))
]
PgMaxConns = Annotated[
    int,
    typer.Option("--postgres-max-open-connections", envvar=_env("postgres_max_open_connections")),
]


def postgres_settings(
    dsn: str,
    host: str,
    port: int,
    user: str,
    password: str,
    db_name: str,
    tls_mode: str,
    tls_cert_path: str,
    tls_key_path: str,
    tls_ca_path: str,
    max_open_connections: int,
) -> PostgresSettings:
    """The settings, checked; a bad one exits with one line naming it."""
    from kumadp.cli.common import fail
    from kumadp.cp.store.postgres_settings import PostgresSettings, PostgresSettingsError

    settings = PostgresSettings(
        host=host,
        port=port,
        user=user,
        password=password,
        db_name=db_name,
        tls_mode=tls_mode,
        tls_cert_path=tls_cert_path,
        tls_key_path=tls_key_path,
        tls_ca_path=tls_ca_path,
        max_open_connections=max_open_connections,
        dsn=dsn,
    )
    try:
        settings.check()
        settings.conninfo()
    except (PostgresSettingsError, ImportError) as exc:
        fail(str(exc))
    except Exception as exc:  # psycopg's own parse error of a bad DSN
        fail(f"--postgres-dsn: {exc}")
    return settings


migrate_app = typer.Typer(help="PostgreSQL schema migrations.", no_args_is_help=True)


@migrate_app.command("up")
def migrate_up(
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
    log_level: Annotated[str, typer.Option(envvar=_env("log_level"))] = "info",
) -> None:
    """Create or upgrade the PostgreSQL schema to the version this kumadp knows."""
    from kumadp.cli.common import fail, setup_logging
    from kumadp.cp.store.postgres_schema import migrate_up as apply

    setup_logging(log_level)
    settings = postgres_settings(
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
    try:
        before, after = asyncio.run(apply(settings.conninfo()))
    except Exception as exc:
        log.debug("migration failed", exc_info=exc)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        fail(f"migrating {settings.describe()}: {first}")
    if before == after:
        typer.echo(f"schema of {settings.describe()} is up to date (version {after})")
    else:
        typer.echo(f"migrated {settings.describe()} from version {before} to {after}")


__all__ = ["migrate_app", "postgres_settings"]
