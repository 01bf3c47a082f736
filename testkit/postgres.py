"""A throw-away PostgreSQL server for tests and benchmarks: ``initdb`` + ``pg_ctl`` in a
temporary directory, on a free port on 127.0.0.1, removed afterwards.

PostgreSQL refuses to run as root: as root the server runs as the ``postgres`` user
(``runuser``), in a directory that user owns. The binaries are Debian's
(``/usr/lib/postgresql/<version>/bin``, installed by ``scripts/install-deps``) or on PATH.
Durability is switched off (``fsync=off``): these databases never outlive a test run.

``postgres_server`` is a session-wide pytest fixture (one server for the whole run: start-up
costs ~1 s); ``PostgresServer.database()`` makes a fresh database per test. Tests skip with
the reason when PostgreSQL cannot be started.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.procs import free_port

USER = "kumadp"
PASSWORD = "kumadp-test-password"
RUN_AS = "postgres"  # the OS user the server runs as when we are root


class PostgresUnavailable(Exception):
    """PostgreSQL cannot be started here (the message says why)."""


def pg_bin_dir() -> Path | None:
    """Where initdb and pg_ctl are (the newest Debian version first), or None."""
    base = Path("/usr/lib/postgresql")
    if base.is_dir():
        versions = sorted(
            (p for p in base.iterdir() if (p / "bin" / "pg_ctl").is_file()),
            key=lambda p: int(p.name) if p.name.isdigit() else 0,
            reverse=True,
        )
        if versions:
            return versions[0] / "bin"
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory (see the module docstring)."""

    def __init__(self, port: int | None = None) -> None:
        bin_dir = pg_bin_dir()
        if bin_dir is None:
            raise PostgresUnavailable(
                "PostgreSQL is not installed (Debian package postgresql; scripts/install-deps)"
            )
        self.bin = bin_dir
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self._as_root = os.geteuid() == 0
        if self._as_root:
            try:
                self._owner = pwd.getpwnam(RUN_AS)
            except KeyError:
                raise PostgresUnavailable(
                    f"running as root and there is no {RUN_AS!r} user to run PostgreSQL as"
                ) from None
        self.dir = Path(tempfile.mkdtemp(prefix="kumadp-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        if self._as_root:
            os.chown(self.dir, self._owner.pw_uid, self._owner.pw_gid)
        self.running = False

    # -- commands ----------------------------------------------------------------------------
    def _run(self, *args: str, check: bool = True, timeout: float = 60) -> str:
        command = [str(self.bin / args[0]), *args[1:]]
        if self._as_root:
            command = ["runuser", "-u", RUN_AS, "--", *command]
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, cwd=self.dir, check=False
        )
        if check and proc.returncode != 0:
            raise PostgresUnavailable(
                f"{args[0]} failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()}"
                f"\n{self.log_tail()}"
            )
        return proc.stdout

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def start(self) -> PostgresServer:
        if not self.data.exists():
            pwfile = self.dir / "pw"
            pwfile.write_text(PASSWORD + "\n")
            if self._as_root:
                os.chown(pwfile, self._owner.pw_uid, self._owner.pw_gid)
            self._run(
                "initdb",
                "-D",
                str(self.data),
                "-U",
                USER,
                "--pwfile",
                str(pwfile),
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "-N",
            )
            pwfile.unlink()
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses={self.host} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300 "
            "-c shared_buffers=64MB"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
        self.running = True
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: disconnect everyone; ``immediate``: like a crash)."""
        if self.running:
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)
            self.running = False

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def close(self) -> None:
        """Stop the server and remove its directory (idempotent)."""
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- databases ---------------------------------------------------------------------------
    def dsn(self, dbname: str = "postgres") -> str:
        return (
            f"postgresql://{USER}:{PASSWORD}@{self.host}:{self.port}/{dbname}"
            "?connect_timeout=5&application_name=kumadp-test"
        )

    def database(self, prefix: str = "t") -> str:
        """A new empty database; returns its name."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self._psql(f'CREATE DATABASE "{name}"')
        return name

    def _psql(self, sql: str) -> str:
        return self._run(
            "psql", "-h", str(self.dir), "-p", str(self.port), "-U", USER, "-d", "postgres",
            "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql,
        )  # fmt: skip

    def query(self, dbname: str, sql: str) -> str:
        """Run ``sql`` in ``dbname`` with psql; its unaligned output."""
        return self._run(
            "psql", "-h", str(self.dir), "-p", str(self.port), "-U", USER, "-d", dbname,
            "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql,
        )  # fmt: skip

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL for the whole test session (skips when it cannot start)."""
    try:
        server = PostgresServer()
    except PostgresUnavailable as exc:
        pytest.skip(f"no PostgreSQL: {exc}")
    try:
        try:
            server.start()
        except (PostgresUnavailable, subprocess.TimeoutExpired, OSError) as exc:
            pytest.skip(f"PostgreSQL did not start: {exc}")
        yield server
    finally:
        server.close()


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> str:
    """The DSN of a fresh, empty database (no schema yet)."""
    return postgres_server.dsn(postgres_server.database())


__all__ = [
    "PASSWORD",
    "USER",
    "PostgresServer",
    "PostgresUnavailable",
    "pg_bin_dir",
    "postgres_dsn",
    "postgres_server",
]
