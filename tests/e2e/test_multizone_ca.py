"""Trust across zones (real CP processes, real Envoys): each zone CP's own intermediate CA,
signed by the global CP with the mesh root over KDS; no CA private key on the wire nor in a
zone's store but its own intermediate's; revocation of a zone's intermediate; KDS refused
without the right zone token."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from kumadp.cp.kds.trust import presented_chain
from testkit.kds_tap import KdsTap
from testkit.mesh import Agent, ControlPlane, MeshEnv
from testkit.multizone import (
    MTLS,
    kds_ca,
    permission,
    start_global,
    start_zone,
    zone_online,
    zone_token,
)
from testkit.procs import kumadp_command, wait_until

pytestmark = pytest.mark.e2e

DENY_WEB = permission("Deny", name="deny-web")


def rows(cp: ControlPlane, type_name: str | None = None) -> list[dict[str, Any]]:
    """Every stored document of a CP (read-only, beside the running CP)."""
    uri = f"file:{cp.data_dir / 'kumadp.db'}?mode=ro"
    with sqlite3.connect(uri, uri=True) as db:
        query = "SELECT type, spec FROM resources"
        found = db.execute(query).fetchall()
    return [json.loads(spec) for t, spec in found if type_name is None or t == type_name]


def root_of(global_cp: ControlPlane) -> x509.Certificate:
    (ca,) = [d for d in rows(global_cp, "MeshCA") if d["mesh"] == "default"]
    return x509.load_pem_x509_certificate(ca["certPem"].encode())


def enable_mtls(global_cp: ControlPlane) -> None:
    doc = {"type": "Mesh", "name": "default", "mtls": MTLS}
    resp = httpx.put(global_cp.url + "/meshes/default", json=doc, timeout=5)
    assert resp.status_code in (200, 201), resp.text


def intermediate_doc(zone: ControlPlane) -> dict[str, Any] | None:
    found = [d for d in rows(zone, "MeshCA") if d["mesh"] == "default"]
    return found[0] if found else None


def hello(port: int) -> str:
    resp = httpx.get(f"http://127.0.0.1:{port}/hello", timeout=5)
    resp.raise_for_status()
    return str(resp.json()["upstream"]["instance"])


def refused(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/hello", timeout=5).status_code >= 400
    except httpx.HTTPError:
        return True


def serving_mtls(agent: Agent) -> bool:
    dump = httpx.get(f"http://127.0.0.1:{agent.admin_port}/config_dump", timeout=5).text
    return "DownstreamTlsContext" in dump and "identity_cert:secret:default" in dump


def leaf_signed_by(intermediate: dict[str, Any], tmp: Path, name: str) -> tuple[Path, Path]:
    """A certificate for ``spiffe://default/web`` signed with a zone's intermediate key (what
    any dataplane of that zone gets), with the intermediate as its chain; (cert, key) files."""
    ca_key = serialization.load_pem_private_key(intermediate["keyPem"].encode(), None)
    ca_cert = x509.load_pem_x509_certificate(intermediate["certPem"].encode())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    uris = ["spiffe://default/web", "kuma://kuma.io/service/web"]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    cert_file, key_file = tmp / f"{name}.pem", tmp / f"{name}.key"
    cert_file.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + ca_cert.public_bytes(serialization.Encoding.PEM)
    )
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def mtls_status(port: int, cert: Path, key: Path) -> str:
    """The HTTP status a client with (cert, key) gets from a sidecar's inbound, or ``refused``
    when the TLS handshake fails."""
    done = subprocess.run(
        ["curl", "-sk", "--max-time", "5", "--cert", str(cert), "--key", str(key),
         "-o", "/dev/null", "-w", "%{http_code}", f"https://127.0.0.1:{port}/healthz"],
        capture_output=True, text=True, timeout=15, check=False,
    )  # fmt: skip
    return done.stdout if done.returncode == 0 and done.stdout != "000" else "refused"


def ctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        kumadp_command("ctl", *args), capture_output=True, text=True, timeout=30, check=False
    )


def key_marks(docs: list[dict[str, Any]]) -> list[str]:
    """A line of base64 from each private key in ``docs``: what would show in any message
    that carried the key, however it was escaped."""
    return [d["keyPem"].splitlines()[1] for d in docs if "keyPem" in d]


def test_zone_dataplanes_chain_through_their_zone_intermediate_and_no_ca_key_crosses_kds(
    env: MeshEnv,
) -> None:
    global_cp = start_global(env)
    assert global_cp.kds_port is not None
    with KdsTap(global_cp.kds_port, Path(kds_ca(global_cp)).read_bytes(), env.tmp) as tap:
        zones = {
            name: start_zone(
                env, name, global_cp, kds_address=tap.address, kds_ca_file=str(tap.ca_file)
            )
            for name in ("zone-a", "zone-b")
        }
        enable_mtls(global_cp)
        for name, zone in zones.items():
            wait_until(lambda zone=zone: intermediate_doc(zone), what=f"{name}'s intermediate")

        # mTLS in zone-b; a Deny applied on global stops its traffic
        backend, _ = env.start_service("backend-1", "backend", cp=zones["zone-b"])
        _, web_port = env.start_service(
            "web-1", "web", upstream_service="backend", cp=zones["zone-b"]
        )
        wait_until(
            lambda: serving_mtls(backend) and hello(web_port) == "backend-1",
            what="web -> backend over mTLS in zone-b",
        )
        path = "/meshes/default/meshtrafficpermissions/deny-web"
        assert httpx.put(global_cp.url + path, json=DENY_WEB, timeout=5).status_code == 201
        wait_until(lambda: refused(web_port), what="the Deny in force in zone-b", timeout=10)
        assert httpx.delete(global_cp.url + path, timeout=5).status_code == 200
        wait_until(lambda: hello(web_port) == "backend-1", what="allowed again", timeout=10)

        # a zone-a dataplane presents leaf -> zone-a's intermediate, which the root signed
        web_a, _ = env.start_service("web-a", "web", cp=zones["zone-a"])
        wait_until(lambda: serving_mtls(web_a), what="web-a serving mTLS")
        assert web_a.inbound_port is not None
        chain, _ = presented_chain("127.0.0.1", web_a.inbound_port)
        leaf, intermediate = x509.load_pem_x509_certificates(chain)[:2]
        root = root_of(global_cp)
        leaf.verify_directly_issued_by(intermediate)
        intermediate.verify_directly_issued_by(root)
        constraints = intermediate.extensions.get_extension_for_class(x509.BasicConstraints)
        assert constraints.value.ca and constraints.value.path_length == 0
        assert "OU=zone zone-a" in intermediate.subject.rfc4514_string()
        san = intermediate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://default"]
        leaf_san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        assert "spiffe://default/web" in leaf_san.value.get_values_for_type(
            x509.UniformResourceIdentifier
        )
        doc_a = intermediate_doc(zones["zone-a"])
        assert doc_a is not None and intermediate.serial_number == int(doc_a["serial"], 16)
        messages = tap.messages()

    # every KDS message of the sync, both ways: no private key of any CA
    seen = {(m.method, m.zone) for m in messages}
    for name in zones:
        assert {("SignIntermediateCA", name), ("GlobalToZoneSync", name)} <= seen
    marks = key_marks(rows(global_cp, "MeshCA"))
    for zone in zones.values():
        marks += key_marks(rows(zone, "MeshCA"))
    assert len(marks) == 3  # the root and two intermediates
    for message in messages:
        assert b"PRIVATE KEY" not in message.data, message.method
        for mark in marks:
            assert mark.encode() not in message.data, message.method

    # each zone's store: no private key but its own intermediate's
    for name, zone in zones.items():
        assert not rows(zone, "SigningKey")
        for doc in rows(zone):
            if "PRIVATE KEY" not in json.dumps(doc):
                continue
            assert (doc["type"], doc["zone"]) == ("MeshCA", name)
            cert = x509.load_pem_x509_certificate(doc["certPem"].encode())
            cert.verify_directly_issued_by(root)
            key = serialization.load_pem_private_key(doc["keyPem"].encode(), None)
            assert key.public_key() == cert.public_key()


def test_revoking_a_zone_intermediate_cuts_its_identities_off_everywhere(env: MeshEnv) -> None:
    global_cp = start_global(env)
    zone_a = start_zone(env, "zone-a", global_cp)
    zone_b = start_zone(env, "zone-b", global_cp)
    enable_mtls(global_cp)
    backend, _ = env.start_service("backend-1", "backend", cp=zone_b)
    wait_until(lambda: serving_mtls(backend), what="backend-1 serving mTLS")
    assert backend.inbound_port is not None
    first = wait_until(lambda: intermediate_doc(zone_a), what="zone-a's intermediate")
    cert, key = leaf_signed_by(first, env.tmp, "zone-a-1")

    # zone-b's Envoy accepts an identity zone-a's intermediate signed
    wait_until(
        lambda: mtls_status(backend.inbound_port, cert, key) == "200",  # type: ignore[arg-type]
        what="zone-b trusting zone-a's identities",
    )
    done = ctl("revoke", "zone-ca", "--zone", "zone-a", "--cp-address", global_cp.url)
    assert done.returncode == 0, done.stderr
    assert first["serial"] in done.stdout
    wait_until(
        lambda: mtls_status(backend.inbound_port, cert, key) == "refused",  # type: ignore[arg-type]
        what="zone-b refusing the revoked intermediate",
        timeout=15,
    )
    # zone-b's own traffic goes on; global refuses zone-a a new intermediate
    _, web_port = env.start_service("web-1", "web", upstream_service="backend", cp=zone_b)
    wait_until(lambda: hello(web_port) == "backend-1", what="zone-b's traffic")
    wait_until(lambda: "revoked by an admin" in zone_a.proc.output(), what="zone-a refused")
    overview = httpx.get(global_cp.url + "/zones/zone-a/ca", timeout=5).json()
    assert overview["refused"] and [i["revoked"] for i in overview["intermediates"]] == [True]
    listed = ctl("inspect", "zone-cas", "--zone", "zone-a", "--cp-address", global_cp.url)
    assert "revoked" in listed.stdout and first["serial"] in listed.stdout

    # allowed again: a new intermediate, trusted in zone-b; the revoked one stays refused
    assert (
        ctl("allow", "zone-ca", "--zone", "zone-a", "--cp-address", global_cp.url).returncode == 0
    )
    second = wait_until(
        lambda: (d := intermediate_doc(zone_a)) and d["serial"] != first["serial"] and d,
        what="zone-a's new intermediate",
        timeout=90,
    )
    cert2, key2 = leaf_signed_by(second, env.tmp, "zone-a-2")
    wait_until(
        lambda: mtls_status(backend.inbound_port, cert2, key2) == "200",  # type: ignore[arg-type]
        what="zone-b trusting zone-a's new intermediate",
    )
    assert mtls_status(backend.inbound_port, cert, key) == "refused"


def test_kds_refuses_a_zone_without_the_right_token(env: MeshEnv) -> None:
    global_cp = start_global(env)
    cases = [
        ("", "zone zone-a: no zone token"),
        ("not-a-token", "zone zone-a: invalid zone token"),
        (zone_token(global_cp, "zone-a", "ingress"), "token scope is [ingress], not cp"),
        (
            zone_token(global_cp, "zone-b"),
            'zone token is for zone "zone-b", but this control plane connects as zone "zone-a"',
        ),
    ]
    for n, (token, message) in enumerate(cases):
        zone = start_zone(
            env, "zone-a", global_cp, token=token, synced=False, data_dir=env.tmp / f"bad-{n}"
        )
        wait_until(lambda zone=zone, m=message: m in zone.proc.output(), what=message)
        assert message in global_cp.proc.output()
        assert not zone_online(global_cp, "zone-a")
        zone.proc.stop()
    good = start_zone(env, "zone-a", global_cp)
    wait_until(lambda: zone_online(global_cp, "zone-a"), what="zone-a online with its token")
    assert good.proc.poll() is None


def test_a_zone_renews_its_intermediate_at_half_its_life_without_failed_requests(
    env: MeshEnv,
) -> None:
    global_cp = start_global(env, extra=["--zone-ca-validity", "1m"])
    zone_a = start_zone(env, "zone-a", global_cp)
    enable_mtls(global_cp)
    first = wait_until(lambda: intermediate_doc(zone_a), what="zone-a's intermediate")
    backend, _ = env.start_service("backend-1", "backend", cp=zone_a)
    _, web_port = env.start_service("web-1", "web", upstream_service="backend", cp=zone_a)
    wait_until(
        lambda: serving_mtls(backend) and hello(web_port) == "backend-1",
        what="web -> backend over mTLS",
    )
    chain, _ = presented_chain("127.0.0.1", backend.inbound_port or 0)
    assert x509.load_pem_x509_certificates(chain)[1].serial_number == int(first["serial"], 16)

    sent = failed = 0

    def renewed_and_served() -> bool:
        nonlocal sent, failed
        sent += 1
        try:
            hello(web_port)
        except httpx.HTTPError:
            failed += 1
        doc = intermediate_doc(zone_a)
        if doc is None or doc["serial"] == first["serial"]:
            return False
        pem, _ = presented_chain("127.0.0.1", backend.inbound_port or 0)
        return x509.load_pem_x509_certificates(pem)[1].serial_number == int(doc["serial"], 16)

    # renewed at half its life (30 s), used once the trust bundle lists it, and the
    # dataplanes' certificates re-issued under it: requests flow throughout
    wait_until(renewed_and_served, timeout=75, interval=0.05, what="a renewed intermediate in use")
    assert failed == 0, f"{failed} of {sent} requests failed"
    second = intermediate_doc(zone_a)
    assert second is not None and second["notBefore"] > first["notBefore"]
