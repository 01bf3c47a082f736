"""The agent's own key and certificate signing request, and what it needs to read from a
certificate.

The private key is made here, kept in memory only and handed to Envoy over the SDS Unix
socket; the control plane only ever sees the CSR. The CSR states the identities the agent
asks for (``spiffe://<mesh>/<service>`` URI SANs); the control plane decides what it signs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kumadp.wire.names import spiffe_id

PrivateKey = ec.EllipticCurvePrivateKey


def generate_key() -> PrivateKey:
    """A fresh EC P-256 private key, in memory."""
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: PrivateKey) -> bytes:
    """The key as unencrypted PKCS#8 PEM, for Envoy (over SDS only; never written to disk)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _check_name(kind: str, value: str) -> None:
    if not value:
        raise ValueError(f"{kind}: must not be empty")
    if any(c.isspace() or c in "/?#" for c in value):
        raise ValueError(f"{kind} {value!r}: must not contain whitespace, '/', '?' or '#'")


def make_csr(key: PrivateKey, mesh: str, services: list[str]) -> bytes:
    """A PEM PKCS#10 request with one URI SAN ``spiffe://<mesh>/<service>`` per service
    (sorted, without duplicates), signed with ``key`` (SHA-256)."""
    _check_name("mesh", mesh)
    for service in services:
        _check_name("service", service)
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    uris = [spiffe_id(mesh, service) for service in sorted(set(services))]
    if uris:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]),
            critical=False,
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class CertInfo:
    """What the agent reads from its leaf certificate (the first one in a PEM chain)."""

    not_before: datetime  # aware, UTC
    not_after: datetime  # aware, UTC
    uris: tuple[str, ...]
    serial: int

    @property
    def lifetime_seconds(self) -> float:
        return (self.not_after - self.not_before).total_seconds()


def load_leaf(cert_pem: bytes) -> x509.Certificate:
    """The first certificate of a PEM chain; ValueError when there is none."""
    certs = x509.load_pem_x509_certificates(cert_pem)
    if not certs:  # pragma: no cover - cryptography raises on empty input already
        raise ValueError("no certificate in PEM")
    return certs[0]


def cert_info(cert_pem: bytes) -> CertInfo:
    cert = load_leaf(cert_pem)
    return CertInfo(
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        uris=cert_uris(cert),
        serial=cert.serial_number,
    )


def cert_uris(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(san.get_values_for_type(x509.UniformResourceIdentifier))


def not_before(cert_pem: bytes) -> datetime:
    return load_leaf(cert_pem).not_valid_before_utc


def not_after(cert_pem: bytes) -> datetime:
    return load_leaf(cert_pem).not_valid_after_utc


def matches_key(cert_pem: bytes, key: PrivateKey) -> bool:
    """True when the leaf certificate certifies ``key``'s public key."""
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return load_leaf(cert_pem).public_key().public_bytes(*fmt) == key.public_key().public_bytes(
        *fmt
    )


def utc_from_unix(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
