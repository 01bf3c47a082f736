"""Which resource types travel which way, in which order, and how a receiver checks one.

The lists come from the resource registry (``Sync``): global -> zone are Mesh, the policies,
the public token signing keys, the revocation list and each mesh's trust bundle (root
certificate and CRLs); zone -> global are Dataplane and
DataplaneInsight. They are sent in dependency order: Mesh first, then the other global
types (what tokens need), then the policies, then the rest, so a receiver never sees a
policy before its mesh.

A received document is checked with the registry's parser when its type has one; the types
without a parser have a check here (a public key must be a public key, never a private one).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from kumadp.resources import ValidationError
from kumadp.resources.model import MESH_TYPE
from kumadp.resources.registry import (
    MESH_TRUST_BUNDLE_TYPE,
    SIGNING_PUBLIC_KEY_TYPE,
    TOKEN_REVOCATIONS_TYPE,
    Registry,
    ResourceType,
    Sync,
)


def sync_types(registry: Registry, direction: Sync) -> list[ResourceType]:
    """The types of ``direction`` in the order an initial sync sends them."""

    def rank(resource_type: ResourceType) -> int:
        if resource_type.name == MESH_TYPE:
            return 0
        if not resource_type.mesh_scoped:
            return 1
        if resource_type.policy:
            return 2
        return 3

    return sorted(registry.synced(direction), key=rank)  # stable: registry order within a rank


def down_types(registry: Registry) -> list[ResourceType]:
    """What a zone receives from the global CP: the global CP's own types, then the relayed
    zone-owned ones (the other zones' ingresses)."""
    return [*sync_types(registry, Sync.GLOBAL_TO_ZONE), *registry.relayed()]


def _public_key(doc: Mapping[str, Any]) -> None:
    pem = doc.get("publicKeyPem")
    if not isinstance(pem, str) or not pem:
        raise ValidationError.single("publicKeyPem", "is required (a PEM public key)")
    if "PRIVATE" in pem or any("PRIVATE" in str(v) for v in doc.values()):
        raise ValidationError.single("publicKeyPem", "must hold a public key, never a private one")
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError):
        raise ValidationError.single("publicKeyPem", "is not a PEM public key") from None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise ValidationError.single("publicKeyPem", f"unsupported key type {type(key).__name__}")
    if not isinstance(doc.get("kid", ""), str):
        raise ValidationError.single("kid", "must be a string")


def _revocations(doc: Mapping[str, Any]) -> None:
    jtis = doc.get("jtis", [])
    if not isinstance(jtis, list) or not all(isinstance(j, str) for j in jtis):
        raise ValidationError.single("jtis", "must be a list of token ids (strings)")


def _trust_bundle(doc: Mapping[str, Any]) -> None:
    """A mesh's root certificate and CRLs: public material only, each of its kind."""
    try:
        x509.load_pem_x509_certificate(str(doc.get("caCertPem") or "").encode())
    except ValueError:
        raise ValidationError.single("caCertPem", "is not a PEM certificate") from None
    crls = [("rootCrlPem", doc.get("rootCrlPem"))]
    items = doc.get("intermediates") or []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ValidationError.single("intermediates", "must be a list of objects")
    crls += [(f"intermediates[{n}].crlPem", i.get("crlPem")) for n, i in enumerate(items)]
    for path, pem in crls:
        try:
            x509.load_pem_x509_crl(str(pem or "").encode())
        except ValueError:
            raise ValidationError.single(path, "is not a PEM CRL") from None


def _any_object(doc: Mapping[str, Any]) -> None:
    return None  # from_wire already made sure it is a JSON object of bounded size


CHECKS: dict[str, Callable[[Mapping[str, Any]], None]] = {
    SIGNING_PUBLIC_KEY_TYPE: _public_key,
    TOKEN_REVOCATIONS_TYPE: _revocations,
    MESH_TRUST_BUNDLE_TYPE: _trust_bundle,
}


def check_document(resource_type: ResourceType, doc: dict[str, Any]) -> None:
    """Raise ``ValidationError`` when ``doc`` (a copy about to be stored) is not valid."""
    if resource_type.parse is not None:
        resource_type.parse(doc)
    else:
        CHECKS.get(resource_type.name, _any_object)(doc)


__all__ = ["CHECKS", "check_document", "down_types", "sync_types"]
