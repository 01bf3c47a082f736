"""Mesh mTLS end to end: real CP, agents, Envoys; certificates made by the agents."""

from __future__ import annotations

import datetime
import json
import shutil
import socket
import sqlite3
import ssl
import subprocess
import threading
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from testkit.mesh import MeshEnv
from testkit.procs import wait_until

pytestmark = pytest.mark.e2e


def enable_mtls(env: MeshEnv, mesh: str = "default", expiration: str = "24h") -> None:
    assert env.cp is not None
    doc = {
        "type": "Mesh",
        "name": mesh,
        "mtls": {
            "enabledBackend": "ca-1",
            "backends": [
                {
                    "name": "ca-1",
                    "type": "builtin",
                    "dpCert": {"rotation": {"expiration": expiration}},
                }
            ],
        },
    }
    resp = httpx.put(f"{env.cp.url}/meshes/{mesh}", json=doc, timeout=5)
    assert resp.status_code in (200, 201), resp.text


def disable_mtls(env: MeshEnv, mesh: str = "default") -> None:
    assert env.cp is not None
    resp = httpx.put(f"{env.cp.url}/meshes/{mesh}", json={"type": "Mesh", "name": mesh}, timeout=5)
    assert resp.status_code == 200, resp.text


def get_upstream(web_port: int, path: str = "/") -> dict[str, object] | None:
    resp = httpx.get(f"http://127.0.0.1:{web_port}{path}", timeout=5)
    body = resp.json()
    return body if resp.status_code == 200 else None


def presented_certificate(port: int) -> x509.Certificate:
    """The certificate an inbound presents, read with `openssl s_client` (a real TLS client)."""
    openssl = shutil.which("openssl")
    if openssl is None:  # pragma: no cover - openssl is on Debian by default
        pytest.skip("openssl not installed")
    out = subprocess.run(
        [openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-alpn", "kuma", "-showcerts"],
        input=b"",
        capture_output=True,
        timeout=10,
    ).stdout.decode(errors="replace")
    start = out.index("-----BEGIN CERTIFICATE-----")
    end = out.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")
    return x509.load_pem_x509_certificate(out[start:end].encode())


def uris(cert: x509.Certificate) -> list[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.UniformResourceIdentifier)


def foreign_client_context(tmp: Path) -> ssl.SSLContext:
    """A client certificate claiming spiffe://default/web, signed by a CA the mesh never saw."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "default")])
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier("spiffe://default/web")]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "foreign.crt", tmp / "foreign.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["kuma"])
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


def talks(port: int, ctx: ssl.SSLContext | None) -> bool:
    """True if an HTTP request on this connection gets any HTTP answer back."""
    request = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as raw:
            if ctx is None:
                raw.sendall(request)
                return raw.recv(100).startswith(b"HTTP/")
            with ctx.wrap_socket(raw) as tls:
                tls.sendall(request)
                return tls.recv(100).startswith(b"HTTP/")
    except (OSError, ssl.SSLError):
        return False


def test_mtls_identities_and_refusals(env: MeshEnv, tmp_path: Path) -> None:
    env.start_cp()
    enable_mtls(env)
    backend, _ = env.start_service("backend-1", "backend")
    _, web_port = env.start_service("web-1", "web", upstream_service="backend")
    body = wait_until(lambda: get_upstream(web_port), what="web -> backend with mTLS")
    assert body["upstream"]["instance"] == "backend-1"  # type: ignore[index]

    assert backend.inbound_port is not None
    cert = presented_certificate(backend.inbound_port)
    assert "spiffe://default/backend" in uris(cert)
    assert "kuma://kuma.io/service/backend" in uris(cert)

    # No mesh certificate: plain TCP and plain TLS get nothing; a foreign CA is refused.
    plain_tls = ssl.create_default_context()
    plain_tls.check_hostname, plain_tls.verify_mode = False, ssl.CERT_NONE
    assert not talks(backend.inbound_port, None)
    assert not talks(backend.inbound_port, plain_tls)
    assert not talks(backend.inbound_port, foreign_client_context(tmp_path))

    # The dataplane's private key is nowhere on disk: not in the store, not in its work dir.
    envoy_certs = httpx.get(f"http://127.0.0.1:{backend.admin_port}/certs", timeout=5).json()
    assert envoy_certs["certificates"], envoy_certs
    db = sqlite3.connect(env.cp.data_dir / "kumadp.db")  # type: ignore[union-attr]
    specs = [json.loads(row[0]) for row in db.execute("select spec from resources")]
    db.close()
    public = cert.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    stored_keys = [
        serialization.load_pem_private_key(value.encode(), None)
        for spec in specs
        for value in spec.values()
        if isinstance(value, str) and "PRIVATE KEY-----" in value
    ]
    assert stored_keys, "expected the CA and token signing keys in the store"
    for key in stored_keys:
        assert (
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            != public
        ), "the dataplane's private key is in the CP store"
    # Nor in any file of the agents (their work dirs, bootstraps, sockets are all in tmp).
    for path in Path(env.tmp).rglob("*"):
        if "cp-data" in path.parts or path.suffix == ".log" or "foreign" in path.name:
            continue
        if path.is_file():
            assert b"PRIVATE KEY" not in path.read_bytes(), path


def test_deny_stops_one_caller_while_others_keep_working(env: MeshEnv) -> None:
    cp = env.start_cp()
    enable_mtls(env)
    env.start_service("backend-1", "backend")
    _, web_port = env.start_service("web-1", "web", upstream_service="backend")
    _, admin_port = env.start_service("admin-1", "admin", upstream_service="backend")
    wait_until(lambda: get_upstream(web_port), what="web -> backend")
    wait_until(lambda: get_upstream(admin_port), what="admin -> backend")

    deny = {
        "type": "MeshTrafficPermission",
        "mesh": "default",
        "name": "deny-web",
        "spec": {
            "targetRef": {"kind": "MeshService", "name": "backend"},
            "from": [
                {"targetRef": {"kind": "MeshService", "name": "web"}, "default": {"action": "Deny"}}
            ],
        },
    }
    url = f"{cp.url}/meshes/default/meshtrafficpermissions/deny-web"
    assert httpx.put(url, json=deny, timeout=5).status_code == 201
    wait_until(lambda: get_upstream(web_port) is None, what="web denied")
    for _ in range(10):
        assert get_upstream(admin_port) is not None, "admin must keep working"
    assert httpx.delete(url, timeout=5).status_code == 200
    wait_until(lambda: get_upstream(web_port), what="web allowed again")


def test_mtls_turns_on_and_off_without_restarts(env: MeshEnv) -> None:
    env.start_cp()
    backend, _ = env.start_service("backend-1", "backend")
    web, web_port = env.start_service("web-1", "web", upstream_service="backend")
    wait_until(lambda: get_upstream(web_port), what="plaintext traffic")
    assert backend.inbound_port is not None
    assert talks(backend.inbound_port, None)  # plaintext inbound answers anyone
    enable_mtls(env)
    wait_until(lambda: not talks(backend.inbound_port, None), what="inbound requires mTLS")
    wait_until(lambda: get_upstream(web_port), what="traffic with mTLS")
    disable_mtls(env)
    wait_until(lambda: talks(backend.inbound_port, None), what="plaintext again")
    wait_until(lambda: get_upstream(web_port), what="traffic without mTLS")
    assert backend.proc.poll() is None and web.proc.poll() is None


def test_rotation_under_load_drops_nothing(env: MeshEnv) -> None:
    env.start_cp()
    enable_mtls(env, expiration="6s")  # renewed at about half-life: every ~3 s
    backend, _ = env.start_service("backend-1", "backend")
    _, web_port = env.start_service("web-1", "web", upstream_service="backend")
    wait_until(lambda: get_upstream(web_port), what="first request")

    def serial() -> int:
        assert backend.inbound_port is not None
        return presented_certificate(backend.inbound_port).serial_number

    first = serial()
    failures: list[str] = []
    count = 0
    stop = threading.Event()

    def load() -> None:
        nonlocal count
        with httpx.Client(timeout=5) as client:
            while not stop.is_set():
                try:
                    resp = client.get(f"http://127.0.0.1:{web_port}/")
                    if resp.status_code != 200:
                        failures.append(f"{resp.status_code}: {resp.text[:200]}")
                    count += 1
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))

    thread = threading.Thread(target=load)
    thread.start()
    seen = {first}
    try:
        wait_until(
            lambda: seen.add(serial()) or len(seen) >= 3,
            timeout=30,
            interval=0.5,
            what="two rotations",
        )
    finally:
        stop.set()
        thread.join()
    assert count > 50
    assert failures == [], failures[:5]


def test_token_for_another_mesh_is_refused(env: MeshEnv) -> None:
    cp = env.start_cp()
    assert (
        httpx.put(
            f"{cp.url}/meshes/other", json={"type": "Mesh", "name": "other"}, timeout=5
        ).status_code
        == 201
    )
    app_port = env.start_http_app("backend-1")
    doc, _ = env.dataplane_yaml("backend-1", "backend", app_port)
    token_file = env.tmp / "other.token"
    token_file.write_text(cp.token("backend-1", mesh="other"))
    agent = env.start_agent(
        "backend-1",
        doc,
        wait=False,
        token=False,
        extra=["--dataplane-token-file", str(token_file)],
    )
    assert agent.proc.wait(timeout=20) != 0
    out = agent.proc.output()
    assert "token is for mesh" in out and "Traceback" not in out, out
    assert cp.dataplane_names() == set()
    assert json.loads(cp.get("/meshes/default/dataplanes").text)["total"] == 0
