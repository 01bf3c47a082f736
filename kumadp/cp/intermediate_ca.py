"""Zone intermediate CAs: how a zone CP gets a CA of its own without the mesh's root key
ever leaving the global CP.

- The zone CP makes a key for each mTLS mesh and asks the global CP (over KDS, one unary
  call) to certify it: ``make_request`` gives the key, a PKCS#10 request and an empty CRL
  already signed with the new key.
- The global CP signs with the mesh root (``sign_intermediate``): CA:TRUE with path length 0
  (it may sign dataplanes, never another CA), keyCertSign and cRLSign only, the subject the
  policy dictates (``intermediate_subject``: the mesh, the zone, the key's id, so every
  intermediate has a name of its own), one SAN: the mesh's SPIFFE trust domain.
- **No name constraint**: Envoy 1.40 (BoringSSL) enforces URI name constraints by the URI's
  host, and a dataplane's certificate carries ``kuma://<tag>/<value>`` SANs whose hosts are
  tag keys; a constraint permitting only ``spiffe://<mesh>`` makes Envoy refuse them
  (``tests/e2e/test_zone_ca_envoy.py`` shows both). The trust-domain rule is enforced
  instead by this signing policy (the CSR may ask for nothing but ``spiffe://<mesh>``) and by
  the zone's signer (``kumadp.cp.certs``: a leaf's SPIFFE ids are in its CA's mesh), and
  meshes never share a root.
- **Revocation** is by CRL. Once a CRL is configured, Envoy wants one for every CA of a
  chain: the root's (which lists the revoked intermediates, ``build_crl`` on the global CP)
  and each intermediate's. That is why the zone sends, with its request, an empty CRL signed
  by the new key: the global CP checks it (issuer, signature) and passes it to every zone
  with the root's (``MeshTrustBundle``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from kumadp.cp.ca import CA, ORGANIZATION, PrivateKey, new_private_key, spki
from kumadp.cp.certs import SigningError, check_csr_key, load_csr
from kumadp.cp.x509 import CA_KEY_USAGE
from kumadp.wire.names import spiffe_trust_domain

BACKDATE = timedelta(seconds=10)
DEFAULT_LIFETIME = 30 * 86400.0  # renewed at half its life
CRL_BACKDATE = timedelta(hours=1)  # a CRL "issued" an hour ago: tolerates clock skew
CRL_HORIZON = timedelta(days=100 * 365)  # the zone's own CRL never needs re-issuing
MAX_PEM = 64 * 1024


class IntermediateRefused(Exception):
    """The global CP will not sign this request; the message says why. ``transient``: it
    may succeed later without anything changing on the zone's side (a root not made yet)."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


def key_id(public_key: object) -> str:
    """16 hex characters of the SHA-256 of the key's SubjectPublicKeyInfo."""
    return hashlib.sha256(spki(public_key)).hexdigest()[:16]


def intermediate_subject(mesh: str, zone: str, public_key: object) -> x509.Name:
    """The only subject a zone's intermediate may have: unique per key, so every
    intermediate's CRL is told apart by its issuer name."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"zone {zone}"[:64]),
            x509.NameAttribute(NameOID.COMMON_NAME, mesh),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, key_id(public_key)),
        ]
    )


def build_crl(
    key: PrivateKey,
    issuer: x509.Name,
    revoked: dict[int, datetime],
    *,
    number: int,
    next_update: datetime,
    now: datetime | None = None,
) -> bytes:
    """A CRL (PEM) of ``issuer``, signed with ``key``, listing ``revoked`` {serial: when}."""
    now = now or datetime.now(UTC)
    last = now - CRL_BACKDATE
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer)
        .last_update(last)
        .next_update(max(next_update, last + timedelta(seconds=1)))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
    )
    for serial, when in sorted(revoked.items()):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class IntermediateRequest:
    """What a zone CP keeps (the key) and sends (the CSR and its CRL) for one mesh."""

    key: PrivateKey
    csr_pem: bytes
    crl_pem: bytes


def make_request(
    mesh: str, zone: str, *, rsa_bits: int | None = None, now: datetime | None = None
) -> IntermediateRequest:
    """A new key (EC P-256, or RSA like the mesh root), its CSR and its empty CRL."""
    key = new_private_key(rsa_bits)
    subject = intermediate_subject(mesh, zone, key.public_key())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(spiffe_trust_domain(mesh))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    now = now or datetime.now(UTC)
    crl = build_crl(key, subject, {}, number=1, next_update=now + CRL_HORIZON, now=now)
    return IntermediateRequest(key, csr.public_bytes(serialization.Encoding.PEM), crl)


@dataclass(frozen=True)
class SignedIntermediate:
    cert_pem: bytes
    serial: int
    not_before: datetime
    not_after: datetime
    crl_pem: bytes  # the zone's CRL, checked

    @property
    def serial_hex(self) -> str:
        return format(self.serial, "x")


def sign_intermediate(
    root: CA,
    zone: str,
    csr_pem: bytes,
    crl_pem: bytes,
    *,
    lifetime: float = DEFAULT_LIFETIME,
    now: datetime | None = None,
) -> SignedIntermediate:
    """The global CP's signing policy. Raises IntermediateRefused naming what is wrong."""
    mesh = root.mesh
    if len(csr_pem) > MAX_PEM or len(crl_pem) > MAX_PEM:
        raise IntermediateRefused(f"csr_pem and crl_pem: at most {MAX_PEM} bytes each")
    try:
        csr = load_csr(csr_pem)
        public_key = csr.public_key()
        check_csr_key(public_key)
    except SigningError as exc:
        raise IntermediateRefused(str(exc)) from None
    expected = intermediate_subject(mesh, zone, public_key)
    if csr.subject != expected:
        raise IntermediateRefused(
            f"csr: subject must be {expected.rfc4514_string()}, not {csr.subject.rfc4514_string()}"
        )
    trust_domain = spiffe_trust_domain(mesh)
    _check_names(csr, trust_domain)
    _check_crl(crl_pem, expected, public_key)
    now = (now or datetime.now(UTC)).astimezone(UTC)
    if root.not_after <= now:
        raise IntermediateRefused(f"the root CA of mesh {mesh} expired")
    not_before = max(now - BACKDATE, root.not_before)
    not_after = min(now + timedelta(seconds=lifetime), root.not_after)
    root_ski = root.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    cert = (
        x509.CertificateBuilder()
        .subject_name(expected)
        .issuer_name(root.certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            CA_KEY_USAGE,
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski.value),
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(trust_domain)]),
            critical=False,
        )
        .sign(root.private_key, hashes.SHA256())
    )
    return SignedIntermediate(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        serial=cert.serial_number,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        crl_pem=crl_pem,
    )


def _check_names(csr: x509.CertificateSigningRequest, trust_domain: str) -> None:
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return
    except ValueError as exc:
        raise IntermediateRefused(f"csr: unreadable extensions ({exc})") from None
    for name in san:
        if not (isinstance(name, x509.UniformResourceIdentifier) and name.value == trust_domain):
            raise IntermediateRefused(
                f"csr: an intermediate may only name {trust_domain} (the mesh's trust "
                f"domain), not {name.value!r}"
            )


def _check_crl(crl_pem: bytes, issuer: x509.Name, public_key: object) -> None:
    try:
        crl = x509.load_pem_x509_crl(crl_pem)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise IntermediateRefused("crl: not a PEM certificate revocation list") from None
    if crl.issuer != issuer:
        raise IntermediateRefused("crl: its issuer must be the intermediate's subject")
    if not isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise IntermediateRefused("crl: unsupported key")  # pragma: no cover - checked above
    try:
        valid = crl.is_signature_valid(public_key)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        valid = False
    if not valid:
        raise IntermediateRefused("crl: not signed with the requested key")
    if crl.next_update_utc is None or crl.next_update_utc <= datetime.now(UTC):
        raise IntermediateRefused("crl: its next update is in the past")


def check_signed(cert_pem: bytes, key: PrivateKey, root_pem: bytes) -> x509.Certificate:
    """The zone's check of what the global CP answered: a CA for ``key``, path length 0,
    signed by the root in ``root_pem``. Raises ValueError naming what is wrong."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    root = x509.load_pem_x509_certificate(root_pem)
    if spki(cert.public_key()) != spki(key.public_key()):
        raise ValueError("the intermediate certifies another key")
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    if not constraints.ca or constraints.path_length != 0:
        raise ValueError("the intermediate is not a CA with path length 0")
    try:
        cert.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise ValueError(f"the intermediate is not signed by the mesh root ({exc})") from None
    return cert


__all__ = [
    "DEFAULT_LIFETIME",
    "IntermediateRefused",
    "IntermediateRequest",
    "SignedIntermediate",
    "build_crl",
    "check_signed",
    "intermediate_subject",
    "key_id",
    "make_request",
    "sign_intermediate",
]
