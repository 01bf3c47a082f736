"""X.509 helpers shared by the mesh CAs (``kumadp.cp.ca``), the CSR signing policy
(``kumadp.cp.certs``) and the DP server's own certificate (``kumadp.cp.server_tls``)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

BACKDATE = timedelta(seconds=10)  # not-before = now - 10 s: tolerate small clock skew
ORGANIZATION = "kumadp"

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
# A CA's key signs certificates and CRLs, nothing else (roots and zone intermediates)
CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def new_private_key(rsa_bits: int | None = None) -> PrivateKey:
    """EC P-256, or RSA with ``rsa_bits`` when given."""
    if rsa_bits:
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    return ec.generate_private_key(ec.SECP256R1())


def key_type_name(key: PrivateKey | Any) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return {"secp256r1": "ecdsa-p256", "secp384r1": "ecdsa-p384"}.get(
            key.curve.name, f"ecdsa-{key.curve.name}"
        )
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"rsa-{key.key_size}"
    return type(key).__name__


def private_key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def spki(public_key: Any) -> bytes:
    """The DER SubjectPublicKeyInfo of a public key: compares keys of any type."""
    return bytes(
        public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def build_ca_certificate(
    key: PrivateKey,
    subject: x509.Name,
    *,
    not_before: datetime,
    not_after: datetime,
    uri: str | None = None,
    path_length: int | None = None,
) -> x509.Certificate:
    """A self-signed CA certificate: CA:true and keyCertSign+cRLSign (both critical), SKI
    (and AKI), an optional URI SAN."""
    public_key = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            CA_KEY_USAGE,
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False
        )
    )
    if uri is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False
        )
    return builder.sign(key, hashes.SHA256())


def build_leaf_certificate(
    ca_key: PrivateKey,
    ca_cert: x509.Certificate,
    public_key: Any,
    *,
    subject: x509.Name,
    names: list[x509.GeneralName],
    not_before: datetime,
    not_after: datetime,
    usages: list[x509.ObjectIdentifier],
    key_encipherment: bool = False,
) -> x509.Certificate:
    """An end-entity certificate signed by ``ca_cert``: CA:false and digitalSignature (both
    critical), the given extended key usages, SANs (critical when the subject is empty, as
    RFC 5280 asks), SKI and AKI."""
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=key_encipherment,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=len(subject) == 0)
        .sign(ca_key, hashes.SHA256())
    )


__all__ = [
    "BACKDATE",
    "ORGANIZATION",
    "PrivateKey",
    "build_ca_certificate",
    "build_leaf_certificate",
    "fingerprint",
    "key_type_name",
    "new_private_key",
    "private_key_pem",
    "spki",
]
