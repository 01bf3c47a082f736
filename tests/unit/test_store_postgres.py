"""The PostgreSQL store: the store conformance suite unchanged on a real PostgreSQL, its
schema check and migrations, and its change feed across instances and restarts."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from kumadp.cp.store.base import ConflictError, StoreError
from kumadp.cp.store.postgres import PostgresStore
from kumadp.cp.store.postgres_schema import SCHEMA_VERSION, SchemaError, migrate_up
from kumadp.cp.store.postgres_settings import PostgresSettings, PostgresSettingsError
from testkit.postgres import PostgresServer, PostgresUnavailable
from testkit.procs import free_port, kumadp_command, until
from testkit.store_conformance import collect, store_conformance_suite

_servers: list[PostgresServer] = []


async def _new_store(tmp_path: Path) -> PostgresStore:
    server = _servers[-1]
    dsn = server.dsn(server.database())
    await migrate_up(dsn)
    store = PostgresStore(PostgresSettings(dsn=dsn))
    await store.open()
    return store


class TestPostgresStore(store_conformance_suite(_new_store)):  # type: ignore[misc]
    @pytest.fixture(autouse=True)
    def _server(self, postgres_server: PostgresServer) -> None:
        _servers.append(postgres_server)


# --- PostgreSQL specifics ---------------------------------------------------------------

DP = "Dataplane"


def _dp(name: str, port: int = 8080, pad: int = 0) -> dict[str, object]:
    doc: dict[str, object] = {
        "type": DP,
        "mesh": "m",
        "name": name,
        "networking": {"address": "127.0.0.1", "inbound": [{"port": port}]},
    }
    if pad:
        doc["labels"] = {"padding": "x" * pad}
    return doc


@pytest.fixture
async def dsn(postgres_server: PostgresServer) -> str:
    dsn = postgres_server.dsn(postgres_server.database())
    await migrate_up(dsn)
    return dsn


async def _open(dsn: str) -> PostgresStore:
    store = PostgresStore(PostgresSettings(dsn=dsn))
    await store.open()
    return store


async def test_every_instance_hears_every_write(dsn: str) -> None:
    first, second = await _open(dsn), await _open(dsn)
    try:
        heard_by_first, heard_by_second = first.changes(), second.changes()
        await first.put(DP, "m", "a", _dp("a"))
        await second.put(DP, "m", "a", _dp("a", 9))
        await second.delete(DP, "m", "a")
        for sub in (heard_by_first, heard_by_second):
            events = await collect(sub, 3)
            assert [(e.op, e.resource.version if e.resource else None) for e in events] == [
                ("create", 1),
                ("update", 2),
                ("delete", None),
            ]
    finally:
        await first.close()
        await second.close()


async def test_a_document_too_large_for_notify_is_read_back(dsn: str) -> None:
    store = await _open(dsn)
    try:
        sub = store.changes()
        big, _ = await store.put(DP, "m", "big", _dp("big", pad=20_000))
        (event,) = await collect(sub, 1)
        assert event.resource == big
    finally:
        await store.close()


async def test_compare_and_swap_holds_between_instances(dsn: str) -> None:
    first, second = await _open(dsn), await _open(dsn)
    try:
        created, _ = await first.put(DP, "m", "a", _dp("a"), expected_version=0)
        with pytest.raises(ConflictError):
            await second.put(DP, "m", "a", _dp("a", 2), expected_version=0)

        async def write(store: PostgresStore, port: int) -> str:
            try:
                await store.put(DP, "m", "a", _dp("a", port), expected_version=created.version)
            except ConflictError:
                return "conflict"
            return "ok"

        results = await asyncio.gather(
            *(write(s, port) for port, s in enumerate([first, second] * 4, start=10))
        )
        assert sorted(results) == ["conflict"] * 7 + ["ok"]
        got = await second.get(DP, "m", "a")
        assert got is not None and got.version == 2
    finally:
        await first.close()
        await second.close()


async def test_concurrent_creates_without_a_version_never_fail(dsn: str) -> None:
    stores = [await _open(dsn) for _ in range(3)]
    try:
        outcomes = await asyncio.gather(
            *(s.put(DP, "m", "a", _dp("a", n)) for n, s in enumerate(stores * 3, start=1))
        )
        assert sorted(created for _, created in outcomes) == [False] * 8 + [True]
        got = await stores[0].get(DP, "m", "a")
        assert got is not None and got.version == 9
    finally:
        for s in stores:
            await s.close()


async def test_open_refuses_a_database_without_schema(postgres_server: PostgresServer) -> None:
    dsn = postgres_server.dsn(postgres_server.database())
    store = PostgresStore(PostgresSettings(dsn=dsn))
    with pytest.raises(SchemaError, match="run `kumadp cp migrate up`"):
        await store.open()
    assert await migrate_up(dsn) == (0, SCHEMA_VERSION)
    assert await migrate_up(dsn) == (SCHEMA_VERSION, SCHEMA_VERSION)  # idempotent
    store = await _open(dsn)
    await store.close()


async def test_open_refuses_a_newer_schema(dsn: str, postgres_server: PostgresServer) -> None:
    dbname = dsn.rsplit("/", 1)[1].split("?")[0]
    postgres_server.query(
        dbname,
        f"INSERT INTO kumadp_schema_migrations (version, description) "
        f"VALUES ({SCHEMA_VERSION + 1}, 'from the future')",
    )
    with pytest.raises(SchemaError, match=r"newer than this kumadp knows"):
        await _open(dsn)
    with pytest.raises(SchemaError, match="no downgrade"):
        await migrate_up(dsn)


async def test_unreachable_database_is_one_clear_error() -> None:
    settings = PostgresSettings(host="127.0.0.1", port=free_port(), connect_timeout=1)
    store = PostgresStore(settings, open_timeout=1.5)
    with pytest.raises(StoreError, match=r"cannot connect to PostgreSQL at kuma@127\.0\.0\.1"):
        await store.open()
    with pytest.raises(StoreError, match="closed"):
        await store.get(DP, "m", "a")


async def test_restart_of_postgres_resyncs_and_the_store_recovers() -> None:
    try:
        server = PostgresServer()
        server.start()
    except PostgresUnavailable as exc:
        pytest.skip(f"no PostgreSQL: {exc}")
    try:
        dsn = server.dsn(server.database())
        await migrate_up(dsn)
        store = await _open(dsn)
        try:
            sub = store.changes()
            await store.put(DP, "m", "a", _dp("a"))
            assert [e.op for e in await collect(sub, 1)] == ["create"]
            server.restart()  # every connection is cut
            # Calls fail while it is down, then work again without a new store.
            await until(lambda: store.listening, "the listener reconnected", within=15)
            events = await collect(sub, 1)
            assert events[0].is_resync
            res, _ = await store.put(DP, "m", "a", _dp("a", 2))
            assert res.version == 2
            assert [e.op for e in await collect(sub, 1)] == ["update"]
        finally:
            await store.close()
    finally:
        server.close()


def test_settings_make_a_libpq_connection_string() -> None:
    settings = PostgresSettings(
        host="db.example",
        port=6543,
        user="cp",
        password="s3cret",
        db_name="mesh",
        tls_mode="verifyFull",
        tls_ca_path="/ca.pem",
    )
    settings.check()
    info = conninfo_to_dict(settings.conninfo())
    assert (info["host"], info["port"], info["user"], info["dbname"]) == (
        "db.example",
        "6543",
        "cp",
        "mesh",
    )
    assert (info["password"], info["sslmode"], info["sslrootcert"]) == (
        "s3cret",
        "verify-full",
        "/ca.pem",
    )
    assert "s3cret" not in settings.describe() and "s3cret" not in repr(settings)
    # A DSN wins over the separate settings, which fill the rest.
    dsn = PostgresSettings(dsn="postgresql://other@h2:7000/d2", password="pw")
    info = conninfo_to_dict(dsn.conninfo())
    assert (info["host"], info["port"], info["user"], info["dbname"], info["password"]) == (
        "h2",
        "7000",
        "other",
        "d2",
        "pw",
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (PostgresSettings(tls_mode="strict"), "--postgres-tls-mode: must be one of disable"),
        (PostgresSettings(port=0), "--postgres-port: must be 1-65535"),
        (PostgresSettings(max_open_connections=1), "--postgres-max-open-connections"),
        (PostgresSettings(tls_mode="verifyCa"), "--postgres-tls-ca-path: needed"),
    ],
)
def test_bad_settings_are_named(settings: PostgresSettings, message: str) -> None:
    with pytest.raises(PostgresSettingsError, match=message):
        settings.check()


def test_cp_run_refuses_a_database_without_schema_naming_the_command(
    postgres_server: PostgresServer,
    tmp_path: Path,
) -> None:
    dsn = postgres_server.dsn(postgres_server.database())
    base = ["--postgres-dsn", dsn]
    run = subprocess.run(
        kumadp_command("cp", "run", "--store", "postgres", "--data-dir", str(tmp_path), *base),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1] == (
        "Error: the PostgreSQL database has no kumadp schema yet: run `kumadp cp migrate up` "
        "(with the same store settings) before starting the control plane"
    )
    migrate = subprocess.run(
        kumadp_command("cp", "migrate", "up", *base),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert migrate.returncode == 0 and "from version 0 to 1" in migrate.stdout
    bad = subprocess.run(
        kumadp_command("cp", "migrate", "up", "--postgres-tls-mode", "sometimes"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "--postgres-tls-mode: must be one of disable" in bad.stderr
