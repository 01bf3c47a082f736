"""Another local user (``nobody``) can read neither the CP's store nor an agent's work dir,
even when the CP and the agent run under umask 000; with a secrets key, the store file holds
no private key at all."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.mesh import MeshEnv
from testkit.netns import as_user

pytestmark = pytest.mark.e2e

NOBODY = 65534


@pytest.fixture
def world() -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to act as another user")
    base = Path(tempfile.mkdtemp(prefix="kdp-at-rest-"))
    base.chmod(0o755)  # anyone may look inside: only the CP's and agent's own modes protect
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*as_user(NOBODY), *args], capture_output=True, text=True, timeout=10, check=False
    )


def test_nobody_cannot_read_the_store_or_the_agent_work_dir(world: Path) -> None:
    env = MeshEnv(world)
    key = world / "secrets.key"
    key.write_text("a-secret-key-of-enough-length-0123456789\n")
    key.chmod(0o600)
    old = os.umask(0)  # the children inherit it: modes must not depend on it
    try:
        cp = env.start_cp(extra=["--secrets-key-file", str(key)])
        agent, _ = env.start_service("web-1", "web")
        mesh = {"type": "Mesh", "name": "default", "mtls": {"enabledBackend": "ca-1",
                "backends": [{"name": "ca-1", "type": "builtin"}]}}  # fmt: skip
        import httpx

        httpx.put(cp.url + "/meshes/default", json=mesh, timeout=5).raise_for_status()
        cp.token("web-2")  # a signing key exists
    finally:
        os.umask(old)
    try:
        data = cp.data_dir
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        db_files = list(data.glob("kumadp.db*"))
        assert db_files and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in db_files)
        work = world / "web-1-wd"
        assert stat.S_IMODE(work.stat().st_mode) == 0o700
        assert (work / "bootstrap.yaml").exists()

        for path in [*db_files, data / "admin-user-token", work / "bootstrap.yaml"]:
            done = as_nobody("cat", str(path))
            assert done.returncode != 0 and "Permission denied" in done.stderr, path
        for directory in (data, work):
            done = as_nobody("ls", str(directory))
            assert done.returncode != 0 and "Permission denied" in done.stderr, directory
        # a copy of the file alone reveals no private key
        content = b"".join(p.read_bytes() for p in db_files)
        assert b"PRIVATE KEY" not in content and b"kumadp-sealed:v1:" in content
    finally:
        env.close()
    assert agent is not None


def test_a_store_readable_by_others_stops_the_start(world: Path) -> None:
    env = MeshEnv(world)
    try:
        cp = env.start_cp()
        env.close()
        (cp.data_dir / "kumadp.db").chmod(0o644)
        again = env.start_cp(data_dir=cp.data_dir, wait=False)
        assert again.proc.wait(timeout=30) != 0
        output = again.proc.output()
        last = output.strip().splitlines()[-1]  # one clear line (a traceback only at debug)
        assert (
            last.startswith("Error: store file ") and "readable by other users (mode 644)" in last
        )
        assert f"run chmod 600 {cp.data_dir}/kumadp.db*" in last
    finally:
        env.close()
