"""The control plane's own TLS certificate for its DP server (kumadp.cp.server_tls)."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import socket
import ssl
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kumadp.cp.server_tls import (
    ServerCertificate,
    ServerTLSError,
    ensure_server_certificate,
    load_server_certificate,
    server_names,
)


def leaf(sc: ServerCertificate) -> x509.Certificate:
    return x509.load_pem_x509_certificates(sc.cert_pem)[0]


def sans(cert: x509.Certificate) -> set[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName)) | {
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)
    }


def server_context(sc: ServerCertificate, tmp_path: Path) -> ssl.SSLContext:
    cert, key = tmp_path / "srv.crt", tmp_path / "srv.key"
    cert.write_bytes(sc.cert_pem)
    key.write_bytes(sc.key_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def client_context(ca_pem: bytes) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the host name
    ctx.load_verify_locations(cadata=ca_pem.decode())
    return ctx


def handshake(server: ssl.SSLContext, client: ssl.SSLContext, hostname: str) -> None:
    """A TLS handshake between two in-memory endpoints; raises ssl.SSLError on failure."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    c = client.wrap_bio(c_in, c_out, server_hostname=hostname)
    s = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"c": False, "s": False}
    for _ in range(20):
        for name, obj in (("c", c), ("s", s)):
            if not done[name]:
                try:
                    obj.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return
    raise AssertionError("handshake did not complete")


def test_creates_persists_and_reloads(tmp_path: Path) -> None:
    first = ensure_server_certificate(tmp_path, ["cp.example.com", "10.1.2.3"])
    d = tmp_path / "dp-server"
    assert first.ca_path == d / "ca.pem"
    for name in ("ca.pem", "ca.key", "tls.crt", "tls.key"):
        assert (d / name).is_file()
    assert stat.S_IMODE(os.stat(d / "tls.key").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(d / "ca.key").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert (d / "ca.pem").read_bytes() == first.ca_pem
    assert (d / "tls.crt").read_bytes() == first.cert_pem
    assert (d / "tls.key").read_bytes() == first.key_pem
    assert not list(d.glob(".*"))  # no temporary files left behind

    again = ensure_server_certificate(tmp_path, ["cp.example.com"])
    assert (again.cert_pem, again.key_pem, again.ca_pem) == (
        first.cert_pem,
        first.key_pem,
        first.ca_pem,
    )
    assert "PRIVATE" not in repr(again)


def test_certificate_fields(tmp_path: Path) -> None:
    sc = ensure_server_certificate(tmp_path, ["cp.example.com", "10.1.2.3", "[fd00::1]", ""])
    ca = x509.load_pem_x509_certificate(sc.ca_pem)
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "kumadp control plane CA"
    )
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert ca.not_valid_after_utc - datetime.now(UTC) > timedelta(days=3649)
    cert = leaf(sc)
    cert.verify_directly_issued_by(ca)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert {"localhost", "127.0.0.1", "::1", "cp.example.com", "10.1.2.3", "fd00::1"} <= sans(cert)
    assert socket.gethostname().lower() in sans(cert) or not socket.gethostname().isascii()
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("10.1.2.3") in san.get_values_for_type(x509.IPAddress)
    assert "10.1.2.3" not in san.get_values_for_type(x509.DNSName)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    life = cert.not_valid_after_utc - datetime.now(UTC)
    assert timedelta(days=364) < life <= timedelta(days=365)


def test_in_memory_without_a_data_dir(tmp_path: Path) -> None:
    sc = ensure_server_certificate(None, [])
    assert sc.ca_path is None
    assert not list(tmp_path.iterdir())
    assert len(sc.ca_fingerprint) == 64
    handshake(server_context(sc, tmp_path), client_context(sc.ca_pem), "localhost")


@pytest.mark.parametrize("hostname", ["localhost", "127.0.0.1", "::1"])
def test_tls_handshake_with_the_ca_as_trust(tmp_path: Path, hostname: str) -> None:
    sc = ensure_server_certificate(tmp_path, [])
    handshake(server_context(sc, tmp_path), client_context(sc.ca_pem), hostname)


def test_tls_handshake_fails_for_a_name_not_covered_or_another_ca(tmp_path: Path) -> None:
    sc = ensure_server_certificate(tmp_path / "a", [])
    other = ensure_server_certificate(tmp_path / "b", [])
    with pytest.raises(ssl.SSLCertVerificationError, match=r"Hostname mismatch|IP address"):
        handshake(server_context(sc, tmp_path), client_context(sc.ca_pem), "example.com")
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(server_context(sc, tmp_path), client_context(other.ca_pem), "localhost")


async def test_real_tls_connection_over_loopback(tmp_path: Path) -> None:
    sc = ensure_server_certificate(tmp_path, [])

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_context(sc, tmp_path))
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_context(sc.ca_pem), server_hostname="127.0.0.1"
        )
        writer.write(b"ping\n")
        assert await reader.readline() == b"ping\n"
        writer.close()
        await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()


def test_new_name_reissues_under_the_same_ca(tmp_path: Path) -> None:
    first = ensure_server_certificate(tmp_path, [])
    second = ensure_server_certificate(tmp_path, ["cp.internal"])
    assert second.ca_pem == first.ca_pem  # agents keep trusting it
    assert second.cert_pem != first.cert_pem
    assert "cp.internal" in sans(leaf(second))
    assert (tmp_path / "dp-server" / "tls.crt").read_bytes() == second.cert_pem
    handshake(server_context(second, tmp_path), client_context(first.ca_pem), "cp.internal")


def test_files_without_the_ca_key_are_used_as_they_are(tmp_path: Path) -> None:
    first = ensure_server_certificate(tmp_path, [])
    (tmp_path / "dp-server" / "ca.key").unlink()
    again = ensure_server_certificate(tmp_path, ["not-covered.example"])
    assert again.cert_pem == first.cert_pem and again.ca_pem == first.ca_pem


def test_incomplete_files_are_replaced(tmp_path: Path) -> None:
    first = ensure_server_certificate(tmp_path, [])
    (tmp_path / "dp-server" / "ca.pem").unlink()
    again = ensure_server_certificate(tmp_path, [])
    assert again.ca_pem != first.ca_pem
    handshake(server_context(again, tmp_path), client_context(again.ca_pem), "localhost")


def test_a_corrupt_ca_key_is_a_clear_error(tmp_path: Path) -> None:
    ensure_server_certificate(tmp_path, [])
    bad = tmp_path / "dp-server" / "ca.key"
    bad.write_text("garbage")
    with pytest.raises(ServerTLSError, match=re.escape(f"{bad}: not an unencrypted PEM private")):
        ensure_server_certificate(tmp_path, [])


def test_load_a_user_given_pair(tmp_path: Path) -> None:
    made = ensure_server_certificate(tmp_path, [])
    d = tmp_path / "dp-server"
    loaded = load_server_certificate(d / "tls.crt", d / "tls.key")
    assert loaded.cert_pem == made.cert_pem and loaded.key_pem == made.key_pem
    assert loaded.ca_pem == b"" and loaded.ca_path is None  # issuer unknown
    with_ca = load_server_certificate(str(d / "tls.crt"), str(d / "tls.key"), d / "ca.pem")
    assert with_ca.ca_pem == made.ca_pem and with_ca.ca_path == d / "ca.pem"
    chain = tmp_path / "chain.pem"
    chain.write_bytes(made.cert_pem + made.ca_pem)
    from_chain = load_server_certificate(chain, d / "tls.key")
    assert from_chain.ca_pem == made.ca_pem
    handshake(server_context(from_chain, tmp_path), client_context(from_chain.ca_pem), "localhost")


def test_load_errors_are_clear(tmp_path: Path) -> None:
    a = ensure_server_certificate(tmp_path / "a", [])
    b = ensure_server_certificate(tmp_path / "b", [])
    da, db = tmp_path / "a" / "dp-server", tmp_path / "b" / "dp-server"
    assert a.cert_pem != b.cert_pem
    with pytest.raises(ServerTLSError) as err:
        load_server_certificate(tmp_path / "missing.crt", da / "tls.key")
    assert str(err.value) == (
        f"cannot read TLS certificate file {tmp_path / 'missing.crt'}: No such file or directory"
    )
    with pytest.raises(ServerTLSError) as err:
        load_server_certificate(da / "tls.crt", tmp_path / "missing.key")
    assert str(err.value).startswith(f"cannot read TLS key file {tmp_path / 'missing.key'}")
    with pytest.raises(ServerTLSError) as err:
        load_server_certificate(da / "tls.crt", db / "tls.key")
    assert str(err.value) == f"key {db / 'tls.key'} does not match certificate {da / 'tls.crt'}"
    with pytest.raises(ServerTLSError, match="not a PEM certificate"):
        load_server_certificate(da / "tls.key", da / "tls.key")
    with pytest.raises(ServerTLSError, match="not an unencrypted PEM private key"):
        load_server_certificate(da / "tls.crt", da / "tls.crt")
    encrypted = tmp_path / "enc.key"
    key = serialization.load_pem_private_key(a.key_pem, password=None)
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(ServerTLSError, match="not an unencrypted PEM private key"):
        load_server_certificate(da / "tls.crt", encrypted)


def test_server_names() -> None:
    names = server_names(["LOCALHOST", " cp ", "[::1]", "", "cp", "名前"])
    assert names[:3] == ["localhost", "127.0.0.1", "::1"]
    assert names.count("cp") == 1 and names.count("localhost") == 1
    assert "名前" not in names
