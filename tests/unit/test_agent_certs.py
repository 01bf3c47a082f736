"""The agent's key and CSR, and reading certificates; ``TestCa`` is shared by the SDS and
rotation tests (a throwaway CA that signs CSRs like the control plane does)."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kumadp.agent import certs

UTC = dt.UTC


class TestCa:
    """A throwaway mesh CA (``CN=<mesh>``, URI ``spiffe://<mesh>``)."""

    __test__ = False  # not a test class

    def __init__(self, mesh: str = "default") -> None:
        self.mesh = mesh
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, mesh)])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"spiffe://{mesh}")]),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        public_key: ec.EllipticCurvePublicKey,
        *,
        uris: list[str] | None = None,
        dns: list[str] | None = None,
        not_before: float | None = None,
        lifetime: float = 3600.0,
    ) -> bytes:
        start = dt.datetime.fromtimestamp(
            time.time() - 10 if not_before is None else not_before, UTC
        )
        names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris or []]
        names += [x509.DNSName(d) for d in dns or []]
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + dt.timedelta(seconds=lifetime))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=True)
        return builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    def sign_csr(self, csr_pem: bytes, **kwargs: float) -> bytes:
        csr = x509.load_pem_x509_csr(csr_pem)
        assert csr.is_signature_valid
        public_key = csr.public_key()
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        try:
            san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            uris = san.get_values_for_type(x509.UniformResourceIdentifier)
        except x509.ExtensionNotFound:
            uris = []
        return self.issue(public_key, uris=uris, **kwargs)  # type: ignore[arg-type]


def test_key_is_p256_and_fresh_each_time() -> None:
    first, second = certs.generate_key(), certs.generate_key()
    assert isinstance(first.curve, ec.SECP256R1)
    assert first.private_numbers() != second.private_numbers()
    pem = certs.key_pem(first)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    assert loaded.private_numbers() == first.private_numbers()


def test_csr_states_the_spiffe_ids_and_is_signed_by_the_key() -> None:
    key = certs.generate_key()
    pem = certs.make_csr(key, "payments", ["web", "backend", "web"])
    assert pem.startswith(b"-----BEGIN CERTIFICATE REQUEST-----")
    csr = x509.load_pem_x509_csr(pem)
    assert csr.is_signature_valid
    assert isinstance(csr.signature_hash_algorithm, hashes.SHA256)
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    assert csr.public_key().public_bytes(serialization.Encoding.DER, public) == (
        key.public_key().public_bytes(serialization.Encoding.DER, public)
    )
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://payments/backend",
        "spiffe://payments/web",
    ]
    assert san.get_values_for_type(x509.DNSName) == []
    # no private key material in the request
    assert b"PRIVATE" not in pem


def test_csr_without_services_has_no_san() -> None:
    csr = x509.load_pem_x509_csr(certs.make_csr(certs.generate_key(), "default", []))
    with pytest.raises(x509.ExtensionNotFound):
        csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)


@pytest.mark.parametrize(
    ("mesh", "services", "message"),
    [
        ("", ["web"], "mesh: must not be empty"),
        ("default", [""], "service: must not be empty"),
        ("default", ["a/b"], "service 'a/b'"),
        ("de fault", ["web"], "mesh 'de fault'"),
    ],
)
def test_csr_refuses_names_that_break_the_uri(mesh: str, services: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        certs.make_csr(certs.generate_key(), mesh, services)


def test_reads_validity_uris_and_key_match() -> None:
    ca = TestCa("default")
    key = certs.generate_key()
    start = 1_800_000_000.0
    pem = ca.issue(
        key.public_key(), uris=["spiffe://default/web"], dns=["x"], not_before=start, lifetime=60
    )
    info = certs.cert_info(pem + ca.pem)  # a chain: the leaf comes first
    assert info.not_before == dt.datetime.fromtimestamp(start, UTC)
    assert info.not_after == dt.datetime.fromtimestamp(start + 60, UTC)
    assert info.not_before.tzinfo is not None
    assert info.lifetime_seconds == 60
    assert info.uris == ("spiffe://default/web",)
    assert info.serial == x509.load_pem_x509_certificate(pem).serial_number
    assert certs.not_before(pem) == info.not_before and certs.not_after(pem) == info.not_after
    assert certs.matches_key(pem, key)
    assert not certs.matches_key(pem, certs.generate_key())
    assert certs.cert_info(ca.pem).uris == ("spiffe://default",)
    with pytest.raises(ValueError):
        certs.cert_info(b"not a certificate")
