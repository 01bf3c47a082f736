"""The HTTPS API: the CP's certificate, optional client certificates that make an admin."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kumadp.cp.api import create_app
from kumadp.cp.http_server import HttpServer, server_tls_context
from kumadp.cp.server_tls import ensure_server_certificate
from kumadp.cp.store import MemoryStore
from kumadp.cp.x509 import build_ca_certificate, build_leaf_certificate, new_private_key
from testkit.procs import free_port, until

MESH = {"type": "Mesh", "name": "other"}
FOREIGN = {"Host": "cp.example"}  # not a loopback Host: a loopback caller is not admin


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: object) -> bytes:
    return key.private_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def client_ca(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A CA file for admins and a client certificate (CN alice) with its key."""
    now = datetime.now(UTC)
    ca_key = new_private_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "admins CA")])
    ca = build_ca_certificate(ca_key, name, not_before=now, not_after=now + timedelta(days=1))
    key = new_private_key()
    cert = build_leaf_certificate(
        ca_key,
        ca,
        key.public_key(),
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alice")]),
        names=[x509.DNSName("alice")],
        not_before=now - timedelta(minutes=1),
        not_after=now + timedelta(days=1),
        usages=[ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    files = tmp_path / "ca.pem", tmp_path / "alice.crt", tmp_path / "alice.key"
    for path, data in zip(files, (_pem(ca), _pem(cert), _key_pem(key)), strict=True):
        path.write_bytes(data)
    return files


@pytest.fixture
async def https(tmp_path: Path) -> AsyncIterator[tuple[int, Path, Path, Path]]:
    ca_file, cert_file, key_file = client_ca(tmp_path)
    server_cert = ensure_server_certificate(tmp_path / "data", [])
    context = server_tls_context(server_cert.cert_pem, server_cert.key_pem, client_ca=ca_file)
    port = free_port()
    server = HttpServer("api-https", create_app(MemoryStore()), "127.0.0.1", port, tls=context)
    stop = asyncio.Event()
    task = asyncio.create_task(server.run(stop))
    trust = tmp_path / "server-ca.pem"
    trust.write_bytes(server_cert.ca_pem)

    async def answers() -> bool:
        try:
            async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=trust)) as c:
                return (await c.get(f"https://127.0.0.1:{port}/")).status_code == 200
        except httpx.HTTPError:
            return False

    await until(answers, "the HTTPS API answers")
    yield port, trust, cert_file, key_file
    stop.set()
    await asyncio.wait_for(task, 10)


async def test_a_client_certificate_from_the_ca_makes_an_admin(
    https: tuple[int, Path, Path, Path],
) -> None:
    port, trust, cert_file, key_file = https
    url = f"https://127.0.0.1:{port}/meshes/other"
    plain = ssl.create_default_context(cafile=trust)
    async with httpx.AsyncClient(verify=plain) as c:  # no certificate: optional, anonymous
        assert (await c.get(f"https://127.0.0.1:{port}/meshes")).status_code == 200
        assert (await c.put(url, json=MESH, headers=FOREIGN)).status_code == 401
    with_cert = ssl.create_default_context(cafile=trust)
    with_cert.load_cert_chain(cert_file, key_file)
    async with httpx.AsyncClient(verify=with_cert) as c:
        r = await c.put(url, json=MESH, headers=FOREIGN)
        assert r.status_code == 201, r.text


def test_requiring_client_certificates_needs_a_ca(tmp_path: Path) -> None:
    cert = ensure_server_certificate(None, [])
    with pytest.raises(ValueError, match="needs a client CA file"):
        server_tls_context(cert.cert_pem, cert.key_pem, require_client_cert=True)
    with pytest.raises(ValueError, match="client CA file"):
        server_tls_context(cert.cert_pem, cert.key_pem, client_ca=tmp_path / "missing.pem")
