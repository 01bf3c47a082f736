"""Where a real CP's API listens: ``--api-address`` (``KUMA_API_SERVER_HTTP_INTERFACE``, Kuma's
``apiServer.http.interface``) binds the API to that address only, and a Kuma configuration
file's ``apiServer`` settings (the audit's example, dropped before: the API bound 0.0.0.0 and
loopback stayed admin) reach the running CP.

127.0.0.2 is a loopback address on Linux without any setup (all of 127.0.0.0/8 is routed to
``lo``), so the test needs no root; the other ports bind 127.0.0.1."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from testkit.procs import ProcessSet, free_port, http_ok, kumadp_command, wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="127.0.0.2 is Linux's"),
]

ALIAS = "127.0.0.2"


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[ProcessSet]:
    with ProcessSet(tmp_path) as started:
        yield started


def refused(host: str, port: int) -> bool:
    """Nothing listens at host:port (the connection is refused, not merely unanswered)."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def start_cp(procs: ProcessSet, tmp: Path, *args: str, env: dict[str, str] | None = None) -> int:
    """A CP whose other ports bind 127.0.0.1; returns its diagnostics port once ready."""
    diag = free_port()
    proc = procs.start(
        "cp",
        kumadp_command(
            "cp", "run", "--store", "memory", "--data-dir", str(tmp / "cp-data"),
            "--address", "127.0.0.1", "--dp-port", str(free_port()),
            "--diagnostics-port", str(diag), "--api-https-port", "0", *args,
        ),
        env=env,
    )  # fmt: skip
    wait_until(lambda: http_ok(f"http://127.0.0.1:{diag}/ready"), what="CP ready", proc=proc)
    return diag


@pytest.mark.parametrize("how", ["flag", "kuma-env"])
def test_the_api_listens_on_its_address_only(procs: ProcessSet, tmp_path: Path, how: str) -> None:
    port = free_port()
    if how == "flag":
        start_cp(procs, tmp_path, "--api-port", str(port), "--api-address", ALIAS)
    else:
        env = {"KUMA_API_SERVER_HTTP_INTERFACE": ALIAS, "KUMA_API_SERVER_HTTP_PORT": str(port)}
        start_cp(procs, tmp_path, env=env)
    url = f"http://{ALIAS}:{port}"
    wait_until(lambda: http_ok(url + "/meshes/default"), what=f"the API on {ALIAS}")
    assert httpx.get(url + "/", timeout=5).status_code == 200
    assert refused("127.0.0.1", port)  # the port is not bound to 127.0.0.1 (nor 0.0.0.0)


def test_a_kuma_config_file_locks_the_running_api_down(procs: ProcessSet, tmp_path: Path) -> None:
    """``apiServer.http.interface`` and ``apiServer.authn.localhostIsAdmin: false`` from
    kuma-cp's configuration file: the API is on 127.0.0.2 only, and a loopback caller
    without a token is no admin."""
    port = free_port()
    config = tmp_path / "kuma-cp.yaml"
    config.write_text(
        "apiServer:\n"
        f"  http: {{interface: {ALIAS}, port: {port}}}\n"
        "  authn: {localhostIsAdmin: false}\n"
    )
    start_cp(procs, tmp_path, "--config-file", str(config))
    url = f"http://{ALIAS}:{port}"
    wait_until(lambda: http_ok(url + "/meshes/default"), what=f"the API on {ALIAS}")
    assert refused("127.0.0.1", port)
    write = httpx.put(url + "/meshes/m", json={"type": "Mesh", "name": "m"}, timeout=5)
    assert write.status_code == 401, write.text
    token = (tmp_path / "cp-data" / "admin-user-token").read_text().strip()
    write = httpx.put(
        url + "/meshes/m",
        json={"type": "Mesh", "name": "m"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )
    assert write.status_code == 201, write.text
    log = (tmp_path / "cp.log").read_text()
    assert "Warning" not in log  # every key was taken
