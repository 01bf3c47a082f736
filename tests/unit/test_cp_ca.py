"""The builtin mesh CA (kumadp.cp.ca) and the CSR signing policy (kumadp.cp.certs)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kumadp.cp.ca import CA, MESH_CA_TYPE, CAError, MeshCAs
from kumadp.cp.certs import SignedCertificate, SigningError, sign_dataplane_csr
from kumadp.cp.store import MemoryStore, SqliteStore, Store
from kumadp.resources import Dataplane, Mesh, parse_dataplane, parse_mesh


def mesh(
    name: str = "default",
    *,
    backend: dict[str, Any] | None = None,
    enabled: bool = True,
) -> Mesh:
    doc: dict[str, Any] = {"type": "Mesh", "name": name}
    b = {"name": "ca-1", "type": "builtin", **(backend or {})}
    doc["mtls"] = {"backends": [b]}
    if enabled:
        doc["mtls"]["enabledBackend"] = b["name"]
    return parse_mesh(doc)


def dataplane(
    name: str = "web-1", mesh_name: str = "default", inbounds: list[dict[str, str]] | None = None
) -> Dataplane:
    tag_sets = inbounds or [{"kuma.io/service": "web", "kuma.io/protocol": "http"}]
    return parse_dataplane(
        {
            "type": "Dataplane",
            "mesh": mesh_name,
            "name": name,
            "networking": {
                "address": "127.0.0.1",
                "inbound": [
                    {"port": 20000 + n, "servicePort": 8000 + n, "tags": t}
                    for n, t in enumerate(tag_sets)
                ],
            },
        }
    )


def make_csr(
    key: Any = None, uris: list[str] | None = None, dns: list[str] | None = None
) -> tuple[Any, bytes]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris or []]
    names += [x509.DNSName(d) for d in dns or []]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    csr = builder.sign(key, None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256())
    return key, csr.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    s: Store = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "db")
    yield s
    await s.close()


@pytest.fixture(scope="module")
def ec_ca() -> CA:
    """One EC CA for the signing tests (made through MeshCAs on a memory store)."""

    async def make() -> CA:
        ca = await MeshCAs(MemoryStore()).ca_for(mesh())
        assert ca is not None
        return ca

    return asyncio.run(make())


# --- the CA ---------------------------------------------------------------------------------


async def test_no_ca_when_mtls_is_off(store: Store) -> None:
    cas = MeshCAs(store)
    assert await cas.ca_for(parse_mesh({"type": "Mesh", "name": "m"})) is None
    assert await cas.ca_for(mesh(enabled=False)) is None
    assert await store.list(MESH_CA_TYPE) == []


async def test_ca_is_created_once_stored_and_reused_after_restart(store: Store) -> None:
    m = mesh("payments")
    ca = await MeshCAs(store).ca_for(m)
    assert ca is not None
    again = await MeshCAs(store).ca_for(m)  # a restarted CP on the same store
    assert again is not None
    assert again.fingerprint == ca.fingerprint and again.cert_pem == ca.cert_pem

    [stored] = await store.list(MESH_CA_TYPE, "payments")
    assert stored.name == "ca-1"
    assert set(stored.spec) == {"type", "mesh", "name", "certPem", "keyPem", "keyType"}
    assert stored.spec["keyType"] == "ecdsa-p256"
    assert stored.spec["mesh"] == "payments" and stored.spec["type"] == MESH_CA_TYPE


async def test_sqlite_ca_survives_reopening(tmp_path: Path) -> None:
    first = SqliteStore(tmp_path / "db")
    ca = await MeshCAs(first).ca_for(mesh())
    await first.close()
    second = SqliteStore(tmp_path / "db")
    try:
        again = await MeshCAs(second).ca_for(mesh())
    finally:
        await second.close()
    assert ca is not None and again is not None and again.fingerprint == ca.fingerprint


async def test_concurrent_callers_get_the_same_ca(store: Store) -> None:
    # two "control planes" (MeshCAs instances) and several tasks racing on first use
    a, b = MeshCAs(store), MeshCAs(store)
    results = await asyncio.gather(*(x.ca_for(mesh()) for x in (a, b, a, b, a)))
    assert len({r.fingerprint for r in results if r is not None}) == 1
    assert len(await store.list(MESH_CA_TYPE)) == 1


async def test_ca_certificate_fields() -> None:
    ca = await MeshCAs(MemoryStore()).ca_for(mesh("demo"))
    assert ca is not None
    cert = x509.load_pem_x509_certificate(ca.cert_pem)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "demo"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "kumadp"
    assert cert.issuer == cert.subject
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://demo"]
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert not ku.value.digital_signature
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    now = datetime.now(UTC)
    assert now - timedelta(seconds=60) < cert.not_valid_before_utc <= now - timedelta(seconds=9)
    life = cert.not_valid_after_utc - now
    assert timedelta(days=3649) < life <= timedelta(days=3650)
    cert.verify_directly_issued_by(cert)
    # key objects stay out of repr
    assert "PrivateKey" not in repr(ca) and "PRIVATE" not in repr(ca)
    assert repr(ca).startswith("CA(mesh='demo', backend='ca-1', fingerprint=")


async def test_rsa_ca_and_expiration_from_the_backend() -> None:
    m = mesh(backend={"conf": {"caCert": {"RSAbits": 2048, "expiration": "1y"}}})
    store = MemoryStore()
    ca = await MeshCAs(store).ca_for(m)
    assert ca is not None and ca.key_type == "rsa-2048"
    cert = x509.load_pem_x509_certificate(ca.cert_pem)
    key = cert.public_key()
    assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048
    life = cert.not_valid_after_utc - datetime.now(UTC)
    assert timedelta(days=364) < life <= timedelta(days=365)
    [stored] = await store.list(MESH_CA_TYPE)
    assert stored.spec["keyType"] == "rsa-2048"


async def test_one_ca_per_backend_and_mesh() -> None:
    store = MemoryStore()
    cas = MeshCAs(store)
    m1 = parse_mesh(
        {
            "type": "Mesh",
            "name": "default",
            "mtls": {
                "enabledBackend": "ca-1",
                "backends": [
                    {"name": "ca-1", "type": "builtin"},
                    {"name": "ca-2", "type": "builtin"},
                ],
            },
        }
    )
    m2 = parse_mesh({**m1.to_dict(), "mtls": {**(m1.mtls or {}), "enabledBackend": "ca-2"}})
    a, b = await cas.ca_for(m1), await cas.ca_for(m2)
    other = await cas.ca_for(mesh("other"))
    assert a is not None and b is not None and other is not None
    assert len({a.fingerprint, b.fingerprint, other.fingerprint}) == 3
    assert (b.mesh, b.backend) == ("default", "ca-2")
    assert await cas.get("default", "ca-1") == a
    assert await cas.delete_mesh("default") == 2
    assert await cas.get("default", "ca-1") is None
    assert (await cas.ca_for(m1)) != a  # a new CA after the mesh's were removed


async def test_provided_backend_is_not_supported_yet() -> None:
    m = parse_mesh(
        {
            "type": "Mesh",
            "name": "default",
            "mtls": {
                "enabledBackend": "mine",
                "backends": [
                    {"name": "ca-1", "type": "builtin"},
                    {"name": "mine", "type": "provided", "conf": {}},
                ],
            },
        }
    )
    with pytest.raises(CAError) as err:
        await MeshCAs(MemoryStore()).ca_for(m)
    assert str(err.value) == "mtls.backends[1]: type provided is not supported yet by kumadp"


async def test_a_corrupt_stored_ca_is_a_clear_error() -> None:
    store = MemoryStore()
    spec = {"type": MESH_CA_TYPE, "mesh": "default", "name": "ca-1", "certPem": "x", "keyPem": "y"}
    await store.put(MESH_CA_TYPE, "default", "ca-1", spec)
    with pytest.raises(CAError, match="stored CA of mesh default backend ca-1: unreadable"):
        await MeshCAs(store).ca_for(mesh())


# --- signing policy -------------------------------------------------------------------------


def sign(ca: CA, csr_pem: bytes, **kwargs: Any) -> SignedCertificate:
    dp = kwargs.pop("dp", None) or dataplane()
    m = kwargs.pop("m", None) or mesh()
    return sign_dataplane_csr(ca, m, dp, csr_pem, now=kwargs.pop("now", None), **kwargs)


def test_signs_a_good_csr_with_the_identity_from_the_store(ec_ca: CA) -> None:
    dp = dataplane(
        inbounds=[
            {"kuma.io/service": "web", "kuma.io/protocol": "http", "version": "v1"},
            {"kuma.io/service": "admin", "kuma.io/protocol": "http"},
            {"kuma.io/service": "web", "kuma.io/protocol": "http", "version": "v1"},
        ]
    )
    key, csr = make_csr()
    now = datetime.now(UTC)
    signed = sign(ec_ca, csr, dp=dp, now=now)
    expected = [
        "spiffe://default/admin",
        "spiffe://default/web",
        "kuma://kuma.io/protocol/http",
        "kuma://kuma.io/service/admin",
        "kuma://kuma.io/service/web",
        "kuma://version/v1",
    ]
    assert signed.uris == expected
    assert signed.backend == "ca-1" and signed.ca_bundle_pem == ec_ca.cert_pem
    cert = x509.load_pem_x509_certificate(signed.certificate_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == expected
    assert len(list(san)) == len(expected)
    # the public key is the CSR's: the CP never saw the private key
    assert cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.key_encipherment
    assert not ku.value.key_cert_sign
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = ec_ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert aki.key_identifier == ca_ski.value.digest
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert cert.subject.rfc4514_string() == "CN=admin"
    assert cert.issuer == ec_ca.certificate.subject
    # validity: now - 10 s .. now + 24 h (the default)
    assert signed.not_before == cert.not_valid_before_utc
    assert signed.not_after == cert.not_valid_after_utc
    assert abs(cert.not_valid_before_utc - (now - timedelta(seconds=10))) < timedelta(seconds=1)
    assert abs(cert.not_valid_after_utc - (now + timedelta(hours=24))) < timedelta(seconds=1)
    # the chain verifies against the CA
    cert.verify_directly_issued_by(ec_ca.certificate)


def test_chain_verifies_with_the_x509_verifier(ec_ca: CA) -> None:
    verification = pytest.importorskip("cryptography.x509.verification")
    _, csr = make_csr()
    signed = sign(ec_ca, csr)
    cert = x509.load_pem_x509_certificate(signed.certificate_pem)
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store([ec_ca.certificate]))
        .time(datetime.now(UTC))
        .build_client_verifier()
    )
    verified = verifier.verify(cert, [])
    assert verified.chain[-1] == ec_ca.certificate


def test_csr_may_ask_for_exactly_its_own_names(ec_ca: CA) -> None:
    _, csr = make_csr(uris=["spiffe://default/web", "kuma://kuma.io/service/web"])
    assert "spiffe://default/web" in sign(ec_ca, csr).uris


def test_validity_from_the_mesh_and_capped_by_the_ca(ec_ca: CA) -> None:
    m = mesh(backend={"dpCert": {"rotation": {"expiration": "1h"}}})
    _, csr = make_csr()
    now = datetime.now(UTC)
    signed = sign(ec_ca, csr, m=m, now=now)
    assert abs(signed.not_after - (now + timedelta(hours=1))) < timedelta(seconds=1)
    late = ec_ca.not_after - timedelta(hours=2)
    capped = sign(ec_ca, csr, now=late)
    assert capped.not_after == ec_ca.not_after
    with pytest.raises(SigningError, match=r"the CA of mesh default backend ca-1 expired at "):
        sign(ec_ca, csr, now=ec_ca.not_after + timedelta(seconds=1))


def test_rsa_ca_signs_too() -> None:
    m = mesh(backend={"conf": {"caCert": {"RSAbits": 2048}}})
    ca = asyncio.run(MeshCAs(MemoryStore()).ca_for(m))
    assert ca is not None
    _, csr = make_csr(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    signed = sign(ca, csr, m=m)
    x509.load_pem_x509_certificate(signed.certificate_pem).verify_directly_issued_by(ca.certificate)


def test_refuses_a_name_the_dataplane_does_not_serve(ec_ca: CA) -> None:
    _, csr = make_csr(uris=["spiffe://default/web", "spiffe://default/other"])
    with pytest.raises(SigningError) as err:
        sign(ec_ca, csr)
    assert (
        str(err.value) == "may not claim spiffe://default/other: dataplane default.web-1 serves web"
    )


def test_refuses_other_kinds_of_names(ec_ca: CA) -> None:
    _, csr = make_csr(dns=["evil.example.com"])
    with pytest.raises(SigningError) as err:
        sign(ec_ca, csr)
    assert (
        str(err.value) == "may not claim DNS:evil.example.com: dataplane default.web-1 serves web"
    )
    _, csr = make_csr(uris=["spiffe://other-mesh/web"])
    with pytest.raises(SigningError, match="may not claim spiffe://other-mesh/web"):
        sign(ec_ca, csr)


def test_refuses_services_the_token_does_not_allow(ec_ca: CA) -> None:
    dp = dataplane(inbounds=[{"kuma.io/service": "web"}, {"kuma.io/service": "admin"}])
    _, csr = make_csr()
    assert sign(ec_ca, csr, dp=dp, allowed_services={"web", "admin", "x"}).uris
    with pytest.raises(SigningError) as err:
        sign(ec_ca, csr, dp=dp, allowed_services={"web"})
    assert str(err.value) == (
        "dataplane default.web-1 serves admin, which its dataplane token does not allow "
        "(token kuma.io/service: web)"
    )


@pytest.mark.parametrize(
    ("key", "got"),
    [
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024), "RSA 1024"),
        (lambda: ec.generate_private_key(ec.SECP521R1()), "EC secp521r1"),
        (lambda: ed25519.Ed25519PrivateKey.generate(), "Ed25519PublicKey"),
    ],
)
def test_refuses_weak_or_unsupported_keys(ec_ca: CA, key: Any, got: str) -> None:
    _, csr = make_csr(key())
    with pytest.raises(SigningError) as err:
        sign(ec_ca, csr)
    assert str(err.value) == f"csr: key must be EC P-256/P-384 or RSA >= 2048, got {got}"


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"hello",
        b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
    ],
)
def test_refuses_garbage(ec_ca: CA, garbage: bytes) -> None:
    with pytest.raises(SigningError) as err:
        sign(ec_ca, garbage)
    assert str(err.value) == "csr: not a PEM certificate signing request"


def test_refuses_a_certificate_instead_of_a_csr(ec_ca: CA) -> None:
    with pytest.raises(SigningError, match="csr: not a PEM certificate signing request"):
        sign(ec_ca, ec_ca.cert_pem)


def test_refuses_a_csr_whose_signature_does_not_verify(ec_ca: CA) -> None:
    _, csr_pem = make_csr()
    der = bytearray(x509.load_pem_x509_csr(csr_pem).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0xFF  # inside the signature
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(SigningError) as err:
        sign(ec_ca, tampered)
    assert "signature does not verify" in str(err.value)


def test_refuses_a_dataplane_of_another_mesh(ec_ca: CA) -> None:
    _, csr = make_csr()
    with pytest.raises(SigningError, match="mesh mismatch"):
        sign(ec_ca, csr, dp=dataplane(mesh_name="other"))


def test_long_service_names_get_an_empty_subject_and_a_critical_san(ec_ca: CA) -> None:
    long_name = "s" * 100
    _, csr = make_csr()
    signed = sign(ec_ca, csr, dp=dataplane(inbounds=[{"kuma.io/service": long_name}]))
    cert = x509.load_pem_x509_certificate(signed.certificate_pem)
    assert len(cert.subject) == 0
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical
    assert f"spiffe://default/{long_name}" in signed.uris


def test_now_defaults_to_the_clock(ec_ca: CA) -> None:
    _, csr = make_csr()
    signed = sign(ec_ca, csr)
    assert signed.not_before < datetime.now(UTC) < signed.not_after


def test_an_outbound_only_dataplane_is_certified_as_its_workload(ec_ca: CA) -> None:
    doc = {
        "type": "Dataplane",
        "mesh": "default",
        "name": "job-1",
        "networking": {"address": "127.0.0.1", "outbound": [{"port": 1, "tags": SVC_B}]},
    }
    _, csr = make_csr()
    with pytest.raises(SigningError, match=r"no inbound and no kuma\.io/workload label"):
        sign(ec_ca, csr, dp=parse_dataplane(doc))
    labelled = parse_dataplane({**doc, "labels": {"kuma.io/workload": "job"}})
    assert sign(ec_ca, csr, dp=labelled).uris == ["spiffe://default/job"]


SVC_B = {"kuma.io/service": "b"}
