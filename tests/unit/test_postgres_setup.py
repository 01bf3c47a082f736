"""Setting up the PostgreSQL store: a database whose schema is older than this kumadp is
refused with the command to run, and ``migrate up`` then brings it forward; Kuma's
``KUMA_STORE_POSTGRES_*`` environment variables, alone, reach the connection settings of
``kumadp cp migrate up`` and ``kumadp cp run``."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer
from psycopg.conninfo import conninfo_to_dict
from typer.testing import CliRunner

from kumadp.cli import cp as cli_cp
from kumadp.cp.store import postgres_schema
from kumadp.cp.store.postgres import PostgresStore
from kumadp.cp.store.postgres_schema import (
    Migration,
    SchemaError,
    check_schema,
    migrate_up,
    schema_version,
)
from kumadp.cp.store.postgres_settings import PostgresSettings
from testkit.postgres import PASSWORD, USER, PostgresServer
from testkit.procs import kumadp_command

NEXT = Migration(
    postgres_schema.SCHEMA_VERSION + 1,
    "a table a later kumadp adds",
    ("CREATE TABLE kumadp_test_later (id integer PRIMARY KEY)",),
)


async def test_an_older_schema_is_refused_until_migrated(
    postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    dbname = postgres_server.database("older")
    dsn = postgres_server.dsn(dbname)
    older = postgres_schema.SCHEMA_VERSION
    assert await migrate_up(dsn) == (0, older)  # as the previous kumadp left it
    # Upgraded: this kumadp knows one migration more than the database has.
    monkeypatch.setattr(postgres_schema, "MIGRATIONS", (*postgres_schema.MIGRATIONS, NEXT))
    monkeypatch.setattr(postgres_schema, "SCHEMA_VERSION", NEXT.version)

    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        assert await schema_version(conn) == older
        with pytest.raises(SchemaError) as info:
            await check_schema(conn)
    assert str(info.value) == (
        f"the PostgreSQL schema is at version {older}, this kumadp needs {NEXT.version}: "
        "run `kumadp cp migrate up`"
    )
    store = PostgresStore(PostgresSettings(dsn=dsn))
    with pytest.raises(SchemaError, match=rf"at version {older}, this kumadp needs"):
        await store.open()

    assert await migrate_up(dsn) == (older, NEXT.version)  # only the missing one
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        await check_schema(conn)
    assert postgres_server.query(dbname, "SELECT to_regclass('kumadp_test_later')").strip()
    store = PostgresStore(PostgresSettings(dsn=dsn))
    await store.open()
    await store.close()


# --- Kuma's environment variables ---------------------------------------------------------

ENV = "KUMA_STORE_POSTGRES_"


def _clean_env(**values: str) -> dict[str, str]:
    """The environment without any store setting of ours, plus ``values``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith((ENV, "KUMADP_STORE_", "KUMA_STORE_TYPE"))
    }
    return {**env, **values}


def _server_env(server: PostgresServer, dbname: str) -> dict[str, str]:
    return {
        ENV + "HOST": server.host,
        ENV + "PORT": str(server.port),
        ENV + "USER": USER,
        ENV + "PASSWORD": PASSWORD,
        ENV + "DB_NAME": dbname,
    }


def test_migrate_up_and_cp_run_reach_the_database_named_by_the_env_alone(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    dbname = postgres_server.database("envonly")
    env = _clean_env(**_server_env(postgres_server, dbname), KUMA_STORE_TYPE="postgres")
    where = f"{USER}@{postgres_server.host}:{postgres_server.port}/{dbname}"

    def cp(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            kumadp_command("cp", *args), capture_output=True, text=True, timeout=60, env=env
        )

    # cp run, with no store flag at all: reaches that database and finds no schema there.
    refused = cp("run", "--data-dir", str(tmp_path / "cp"))
    assert refused.returncode == 1, refused.stderr
    assert "has no kumadp schema yet: run `kumadp cp migrate up`" in refused.stderr
    migrated = cp("migrate", "up")
    assert migrated.returncode == 0, migrated.stderr
    assert f"migrated {where} from version 0 to" in migrated.stdout
    assert PASSWORD not in migrated.stdout + migrated.stderr
    assert postgres_server.query(dbname, "SELECT count(*) FROM kumadp_schema_migrations") != "0\n"

    # Settings that cannot work are named by their flag, whichever way they came in.
    env[ENV + "TLS_MODE"] = "verifyFull"
    bad = cp("run", "--data-dir", str(tmp_path / "cp"))
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "--postgres-tls-ca-path: needed with --postgres-tls-mode verifyFull" in bad.stderr
    env[ENV + "TLS_MODE"] = "disable"
    env[ENV + "MAX_OPEN_CONNECTIONS"] = "2"
    bad = cp("migrate", "up")
    assert bad.returncode == 1 and "--postgres-max-open-connections: must be at least 3" in (
        bad.stderr
    )


def _cp_app() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)  # a group, as the real ``kumadp`` command
    cli_cp.register(app)
    return app


def test_every_kuma_store_postgres_variable_reaches_the_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str] = []

    async def fake_migrate_up(conninfo: str) -> tuple[int, int]:
        seen.append(conninfo)
        return 1, 1

    monkeypatch.setattr(postgres_schema, "migrate_up", fake_migrate_up)
    env = {
        ENV + "HOST": "db.example",
        ENV + "PORT": "6543",
        ENV + "USER": "cp",
        ENV + "PASSWORD": "s3cret",
        ENV + "DB_NAME": "mesh",
        ENV + "TLS_MODE": "verifyCa",
        ENV + "TLS_CERT_PATH": "/etc/kuma/client.pem",
        ENV + "TLS_KEY_PATH": "/etc/kuma/client.key",
        ENV + "TLS_CA_PATH": "/etc/kuma/ca.pem",
        ENV + "MAX_OPEN_CONNECTIONS": "7",
    }
    result = CliRunner().invoke(_cp_app(), ["cp", "migrate", "up"], env=env)
    assert result.exit_code == 0, result.output
    assert "schema of cp@db.example:6543/mesh is up to date" in result.output
    info: dict[str, Any] = conninfo_to_dict(seen[0])
    assert {k: info[k] for k in ("host", "port", "user", "password", "dbname")} == {
        "host": "db.example",
        "port": "6543",
        "user": "cp",
        "password": "s3cret",
        "dbname": "mesh",
    }
    assert (info["sslmode"], info["sslcert"], info["sslkey"], info["sslrootcert"]) == (
        "verify-ca",
        "/etc/kuma/client.pem",
        "/etc/kuma/client.key",
        "/etc/kuma/ca.pem",
    )
    # MAX_OPEN_CONNECTIONS is the pool's size, not a libpq key: a bad one is refused by name.
    env[ENV + "MAX_OPEN_CONNECTIONS"] = "1"
    result = CliRunner().invoke(_cp_app(), ["cp", "migrate", "up"], env=env)
    assert result.exit_code == 1
    assert "--postgres-max-open-connections: must be at least 3" in result.output
