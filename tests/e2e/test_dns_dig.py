"""The agent's .mesh resolver answers the real ``dig`` (Debian's dnsutils)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest

from kumadp.agent.dns import DnsServer
from kumadp.agent.nametable import NameTable
from testkit.dns_upstream import UpstreamServer, background

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("dig") is None, reason="dig is not installed (dnsutils)"),
]


@pytest.fixture(scope="module")
def dns_port() -> Iterator[int]:
    table = NameTable()
    table.update(
        "1",
        30,
        {"backend.mesh": (["240.0.0.1"], ["fd00::1"]), "web.mesh": (["240.0.0.2"], [])},
    )
    up = UpstreamServer({"forwarded.example": ["192.0.2.10"]}, mode="truncate")
    with background(up):
        server = DnsServer(table, port=0, upstreams=[("127.0.0.1", up.port)])
        with background(server):
            yield server.port


def dig(port: int, *args: str) -> str:
    result = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(port), "+time=2", "+tries=1", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_dig_gets_the_vip(dns_port: int) -> None:
    assert dig(dns_port, "backend.mesh", "A", "+short").split() == ["240.0.0.1"]
    assert dig(dns_port, "BACKEND.mesh", "AAAA", "+short").split() == ["fd00::1"]
    out = dig(dns_port, "web.mesh", "AAAA")
    assert "status: NOERROR" in out and "ANSWER: 0" in out and " aa" in out


def test_dig_gets_nxdomain_for_unknown_mesh_names(dns_port: int) -> None:
    out = dig(dns_port, "nothing.mesh", "A")
    assert "status: NXDOMAIN" in out and " aa" in out


def test_dig_gets_forwarded_answers(dns_port: int) -> None:
    # the upstream truncates over UDP: the resolver retries it over TCP for dig
    assert dig(dns_port, "forwarded.example", "A", "+short").split() == ["192.0.2.10"]
    out = dig(dns_port, "missing.example", "A")
    assert "status: NXDOMAIN" in out


def test_dig_over_tcp(dns_port: int) -> None:
    out = dig(dns_port, "backend.mesh", "A", "+tcp")
    assert "(TCP)" in out and "240.0.0.1" in out
    assert dig(dns_port, "forwarded.example", "+tcp", "+short").split() == ["192.0.2.10"]
    assert "status: NXDOMAIN" in dig(dns_port, "nothing.mesh", "+tcp")
