"""Every API route fuzzed by schemathesis from the CP's own OpenAPI description, against a
real CP process, bounded in time: no 5xx, no traceback in the CP's log, and the store
unchanged by a run whose every request was invalid."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from testkit.mesh import MeshEnv

pytestmark = pytest.mark.e2e

RUNNER = "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())"


def schemathesis(url: str, token: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable, "-c", RUNNER, "run", f"{url}/openapi.json",
        "-H", f"Authorization: Bearer {token}",
        "--no-color", "--generation-database", "none", "--request-timeout", "5",
        "--workers", "1", *args,
    ]  # fmt: skip
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


def rows(db: Path) -> list[tuple[str, str, str, int]]:
    """Every stored resource with its version (read-only; the CP keeps the file open)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        found = conn.execute("SELECT type, mesh, name, version FROM resources ORDER BY 1, 2, 3")
        return [tuple(row) for row in found]  # type: ignore[misc]


def test_fuzzing_every_route(tmp_path: Path) -> None:
    env = MeshEnv(tmp_path)
    try:
        # the fuzzer's only credential is its token (a request it sends without one must be
        # anonymous, not a loopback admin)
        cp = env.start_cp(extra=["--no-api-localhost-is-admin"])
        token = (cp.data_dir / "admin-user-token").read_text().strip()
        described = httpx.get(cp.url + "/openapi.json", timeout=5).json()
        assert described["openapi"].startswith("3.")
        assert len(described["paths"]) >= 15  # generated from the route table
        db = cp.data_dir / "kumadp.db"

        before = rows(db)
        invalid = schemathesis(
            cp.url, token, tmp_path,
            "--mode", "negative", "--checks", "not_a_server_error,negative_data_rejection",
            "--max-time", "15",
        )  # fmt: skip
        assert invalid.returncode == 0, invalid.stdout[-4000:] + invalid.stderr[-2000:]
        assert " passed" in invalid.stdout
        assert rows(db) == before  # every request was invalid: nothing written

        anything = schemathesis(
            cp.url, token, tmp_path, "--checks", "not_a_server_error", "--max-time", "20"
        )
        assert anything.returncode == 0, anything.stdout[-4000:] + anything.stderr[-2000:]

        log = cp.proc.output()
        assert "Traceback" not in log, log[-4000:]
        assert "unhandled error" not in log
    finally:
        env.close()
