"""The PostgreSQL schema and its migrations (``kumadp cp migrate up``).

Each migration is numbered; ``kumadp_schema_migrations`` records the ones applied.
``migrate_up`` applies the missing ones in one transaction under an advisory lock (two
instances migrating at once do it once). A control plane does not migrate by itself: at start
it checks that the database's version is exactly the one it knows (``check_schema``) and
otherwise refuses to start, naming the command to run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from kumadp.cp.store.base import StoreError

log = logging.getLogger(__name__)

MIGRATE_COMMAND = "kumadp cp migrate up"
MIGRATIONS_TABLE = "kumadp_schema_migrations"
RESOURCES_TABLE = "kumadp_resources"
LEASE_TABLE = "kumadp_leader_lease"
CHANGES_CHANNEL = "kumadp_changes"
_MIGRATION_LOCK = 0x6B756D61_6470  # advisory lock key while migrating ("kumadp")


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "resources and the leader lease",
        (
            f"""CREATE TABLE {RESOURCES_TABLE} (
                type text COLLATE "C" NOT NULL,
                mesh text COLLATE "C" NOT NULL,
                name text COLLATE "C" NOT NULL,
                spec text NOT NULL,
                version bigint NOT NULL,
                creation_time timestamptz NOT NULL,
                modification_time timestamptz NOT NULL,
                PRIMARY KEY (type, mesh, name)
            )""",
            f"""CREATE TABLE {LEASE_TABLE} (
                name text PRIMARY KEY,
                holder text NOT NULL,
                term bigint NOT NULL,
                expires_at timestamptz NOT NULL
            )""",
        ),
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


class SchemaError(StoreError):
    """The database's schema is not the one this kumadp knows."""


async def schema_version(conn: Any) -> int:
    """The database's schema version (0: nothing applied yet)."""
    cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (MIGRATIONS_TABLE,))
    row = await cur.fetchone()
    if not row or not row[0]:
        return 0
    cur = await conn.execute(f"SELECT coalesce(max(version), 0) FROM {MIGRATIONS_TABLE}")
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def check_schema(conn: Any) -> None:
    """Raise SchemaError unless the database is at ``SCHEMA_VERSION``."""
    found = await schema_version(conn)
    if found == SCHEMA_VERSION:
        return
    if found == 0:
        raise SchemaError(
            f"the PostgreSQL database has no kumadp schema yet: run `{MIGRATE_COMMAND}` "
            "(with the same store settings) before starting the control plane"
        )
    if found < SCHEMA_VERSION:
        raise SchemaError(
            f"the PostgreSQL schema is at version {found}, this kumadp needs {SCHEMA_VERSION}: "
            f"run `{MIGRATE_COMMAND}`"
        )
    raise SchemaError(
        f"the PostgreSQL schema is at version {found}, newer than this kumadp knows "
        f"({SCHEMA_VERSION}): run a kumadp that knows it (no downgrade)"
    )


async def migrate_up(conninfo: str) -> tuple[int, int]:
    """Apply every missing migration. Returns (version before, version after)."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(conninfo) as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        await conn.execute(
            f"""CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
                version integer PRIMARY KEY,
                description text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )"""
        )
        before = await schema_version(conn)
        if before > SCHEMA_VERSION:
            raise SchemaError(
                f"the PostgreSQL schema is at version {before}, newer than this kumadp knows "
                f"({SCHEMA_VERSION}): nothing to do (no downgrade)"
            )
        for migration in MIGRATIONS:
            if migration.version <= before:
                continue
            for statement in migration.statements:
                await conn.execute(statement)
            await conn.execute(
                f"INSERT INTO {MIGRATIONS_TABLE} (version, description) VALUES (%s, %s)",
                (migration.version, migration.description),
            )
            log.info("applied migration %d: %s", migration.version, migration.description)
    return before, SCHEMA_VERSION


__all__ = [
    "CHANGES_CHANNEL",
    "LEASE_TABLE",
    "MIGRATE_COMMAND",
    "MIGRATIONS",
    "RESOURCES_TABLE",
    "SCHEMA_VERSION",
    "Migration",
    "SchemaError",
    "check_schema",
    "migrate_up",
    "schema_version",
]
