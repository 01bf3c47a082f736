"""The signing policy: which certificate a dataplane's CSR may get.

The agent makes its own key and sends only a PKCS#10 request. The control plane takes nothing
from that request but the public key: the identity in the certificate comes from the
dataplane resource in the store (its inbound ``kuma.io/service`` values and tags), and a
request that asks for anything else is refused, so a compromised sidecar cannot obtain a
certificate for a service it does not serve. The request's subject and extensions are never
copied.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kumadp.cp.ca import (
    BACKDATE,
    CA,
    DEFAULT_DP_CERT_EXPIRATION,
    backend_conf,
    build_leaf_certificate,
    key_type_name,
)
from kumadp.resources import Dataplane, Mesh, parse_duration
from kumadp.resources.model import SERVICE_TAG, WORKLOAD_LABEL
from kumadp.wire.names import SPIFFE_SCHEME, kuma_tag_uri, spiffe_id, spiffe_prefix

_ALLOWED_CURVES = ("secp256r1", "secp384r1")
_MIN_RSA_BITS = 2048
_CN_MAX = 64  # X.520 upper bound of commonName


class SigningError(Exception):
    """The CSR is refused; the message says why (safe to show to the agent)."""


@dataclass(frozen=True)
class SignedCertificate:
    certificate_pem: bytes  # the leaf, then the CA's chain (a zone's intermediate)
    ca_bundle_pem: bytes  # what peers are verified against: the mesh root
    backend: str
    not_before: datetime
    not_after: datetime
    uris: list[str]
    crl_pem: bytes = b""  # multi-zone: the CRLs Envoy checks peers against


def dataplane_uris(dataplane: Dataplane) -> list[str]:
    """The URI SANs a dataplane's certificate carries: ``spiffe://<mesh>/<service>`` for each
    distinct inbound service, then ``kuma://<tag>/<value>`` for each distinct inbound tag,
    each group sorted."""
    services = sorted(set(dataplane.identity_services))
    tags = sorted({(k, v) for i in dataplane.networking.inbound for k, v in i.tags.items()})
    return [spiffe_id(dataplane.mesh, s) for s in services] + [kuma_tag_uri(k, v) for k, v in tags]


def sign_dataplane_csr(
    ca: CA,
    mesh: Mesh,
    dataplane: Dataplane,
    csr_pem: bytes,
    *,
    now: datetime | None = None,
    allowed_services: set[str] | None = None,
) -> SignedCertificate:
    """Check ``csr_pem`` against the stored ``dataplane`` (and the services its token allows,
    when ``allowed_services`` is given) and sign it with ``ca``. Raises SigningError with a
    message naming the problem. CPU only: call it through ``asyncio.to_thread`` when RSA CAs
    are in play."""
    who = f"dataplane {dataplane.mesh}.{dataplane.name}"
    if not (ca.mesh == mesh.name == dataplane.mesh):
        raise SigningError(
            f"{who}: mesh mismatch (CA of mesh {ca.mesh}, mesh {mesh.name}, "
            f"dataplane in mesh {dataplane.mesh})"
        )
    csr = load_csr(csr_pem)
    public_key = csr.public_key()
    check_csr_key(public_key)

    services = sorted(set(dataplane.identity_services))
    if not services:
        raise SigningError(
            f"{who} has no inbound and no {WORKLOAD_LABEL} label: it has no identity to certify"
        )
    uris = dataplane_uris(dataplane)
    _check_trust_domain(uris, ca.mesh)
    _check_requested_names(csr, set(uris), f"{who} serves {', '.join(services)}")
    if allowed_services is not None:
        for service in services:
            if service not in allowed_services:
                allowed = ", ".join(sorted(allowed_services)) or "none"
                raise SigningError(
                    f"{who} serves {service}, which its dataplane token does not allow "
                    f"(token {SERVICE_TAG}: {allowed})"
                )

    now = (now or datetime.now(UTC)).astimezone(UTC)
    if ca.not_after <= now:
        raise SigningError(
            f"the CA of mesh {ca.mesh} backend {ca.backend} expired at {_when(ca.not_after)}"
        )
    conf = backend_conf(mesh, ca.backend)
    lifetime = (
        conf.dp_cert_expiration if conf is not None else parse_duration(DEFAULT_DP_CERT_EXPIRATION)
    )
    not_before = max(now - BACKDATE, ca.not_before)
    not_after = min(now + timedelta(seconds=lifetime), ca.not_after)

    subject = (
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, services[0])])
        if len(services[0]) <= _CN_MAX
        else x509.Name([])
    )
    cert = build_leaf_certificate(
        ca.private_key,
        ca.certificate,
        public_key,
        subject=subject,
        names=[x509.UniformResourceIdentifier(u) for u in uris],
        not_before=not_before,
        not_after=not_after,
        usages=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        key_encipherment=True,
    )
    return SignedCertificate(
        certificate_pem=cert.public_bytes(serialization.Encoding.PEM) + ca.chain_pem,
        ca_bundle_pem=ca.bundle_pem or ca.cert_pem,
        backend=ca.backend,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        uris=uris,
        crl_pem=ca.crl_pem,
    )


def _check_trust_domain(uris: list[str], mesh: str) -> None:
    """Every SPIFFE id of a leaf is in its CA's mesh: the rule a zone's intermediate CA,
    which carries no name constraint, must keep (``kumadp.cp.intermediate_ca``)."""
    domain = spiffe_prefix(mesh)
    for uri in uris:
        if uri.startswith(SPIFFE_SCHEME) and not uri.startswith(domain):
            raise SigningError(f"may not claim {uri}: outside the trust domain {domain[:-1]}")


def load_csr(csr_pem: bytes | str) -> x509.CertificateSigningRequest:
    data = csr_pem.encode() if isinstance(csr_pem, str) else csr_pem
    try:
        csr = x509.load_pem_x509_csr(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise SigningError("csr: not a PEM certificate signing request") from e
    try:
        valid = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm):
        valid = False
    if not valid:
        raise SigningError("csr: the signature does not verify with the request's own key")
    return csr


def check_csr_key(public_key: object) -> None:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.name in _ALLOWED_CURVES:
            return
        got = f"EC {public_key.curve.name}"
    elif isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size >= _MIN_RSA_BITS:
            return
        got = f"RSA {public_key.key_size}"
    else:
        got = key_type_name(public_key)
    raise SigningError(f"csr: key must be EC P-256/P-384 or RSA >= {_MIN_RSA_BITS}, got {got}")


def _check_requested_names(
    csr: x509.CertificateSigningRequest, allowed: set[str], serves: str
) -> None:
    """Refuse a request for any SAN the dataplane may not have (first one named)."""
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return
    except ValueError as e:  # a malformed extension
        raise SigningError(f"csr: unreadable extensions ({e})") from e
    for name in san:
        if isinstance(name, x509.UniformResourceIdentifier) and name.value in allowed:
            continue
        raise SigningError(f"may not claim {_general_name(name)}: {serves}")


def _general_name(name: x509.GeneralName) -> str:
    if isinstance(name, x509.UniformResourceIdentifier):
        return name.value
    if isinstance(name, x509.DNSName):
        return f"DNS:{name.value}"
    if isinstance(name, x509.IPAddress):
        return f"IP:{name.value}"
    if isinstance(name, x509.RFC822Name):
        return f"email:{name.value}"
    if isinstance(name, x509.DirectoryName):
        return f"DirName:{name.value.rfc4514_string()}"
    return f"{type(name).__name__}:{name.value!r}"


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = [
    "SignedCertificate",
    "SigningError",
    "check_csr_key",
    "dataplane_uris",
    "load_csr",
    "sign_dataplane_csr",
]
