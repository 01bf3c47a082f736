"""The builtin certificate authority: one CA per (mesh, mTLS backend), kept in the store.

A mesh with ``mtls.enabledBackend`` naming a ``builtin`` backend gets a self-signed CA the
first time anything asks for it (``MeshCAs.ca_for``). The CA (certificate and private key) is
stored as a resource of type ``MeshCA`` (``mesh=<mesh>``, ``name=<backend>``) so that a
restarted control plane, or a second instance on the same store, keeps signing with the same
CA. The HTTP API never exposes that type.

Once created, a CA is never changed by editing the backend's ``conf`` (as in Kuma): a
different key type or lifetime takes a new backend name.

The X.509 helpers (``new_private_key``, ``build_ca_certificate``...) are in
``kumadp.cp.x509``, shared with ``kumadp.cp.certs`` and ``kumadp.cp.server_tls`` (and
re-exported here).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from kumadp.cp.store.base import ConflictError, Store, StoredResource
from kumadp.cp.x509 import (
    BACKDATE,
    ORGANIZATION,
    PrivateKey,
    build_ca_certificate,
    build_leaf_certificate,
    fingerprint,
    key_type_name,
    new_private_key,
    private_key_pem,
    spki,
)
from kumadp.resources import Mesh, parse_duration
from kumadp.resources.registry import MESH_CA_TYPE
from kumadp.wire.names import spiffe_trust_domain

log = logging.getLogger(__name__)

DEFAULT_CA_EXPIRATION = "10y"


class CAError(Exception):
    """The mesh's CA cannot be used (unsupported backend, unreadable stored CA...)."""


@dataclass(frozen=True)
class CA:
    """A mesh CA ready to sign. ``fingerprint`` is the SHA-256 (hex) of the DER certificate;
    it changes exactly when the CA does. Key objects stay out of ``repr``.

    In a zone CP the CA is the zone's intermediate (``kumadp.cp.intermediate_ca``): its
    certificate is served after each leaf (``chain_pem``), peers are verified against the
    mesh root (``bundle_pem``) and the CRLs of the root and of every zone's intermediate
    (``crl_pem``). A standalone CP's CA is the root itself: no chain, no CRL."""

    mesh: str
    backend: str
    cert_pem: bytes = field(repr=False)
    fingerprint: str
    key_type: str  # "ecdsa-p256" or "rsa-<bits>"
    certificate: x509.Certificate = field(repr=False, compare=False)
    private_key: PrivateKey = field(repr=False, compare=False)
    chain_pem: bytes = field(default=b"", repr=False)
    bundle_pem: bytes = field(default=b"", repr=False)  # empty: the CA itself
    crl_pem: bytes = field(default=b"", repr=False)

    @property
    def generation(self) -> str:
        """Changes exactly when what a dataplane gets from this CA does (its certificate's
        issuer, the trusted roots, the CRLs)."""
        if not (self.chain_pem or self.bundle_pem or self.crl_pem):
            return self.fingerprint
        digest = hashlib.sha256(self.fingerprint.encode())
        for part in (self.chain_pem, self.bundle_pem, self.crl_pem):
            digest.update(b"|" + part)
        return digest.hexdigest()

    @property
    def not_before(self) -> datetime:
        return self.certificate.not_valid_before_utc

    @property
    def not_after(self) -> datetime:
        return self.certificate.not_valid_after_utc


@dataclass(frozen=True)
class BackendConf:
    """What kumadp reads from one ``mtls.backends[i]`` entry."""

    index: int
    name: str
    type: str
    rsa_bits: int | None
    ca_expiration: float  # seconds
    dp_cert_expiration: float  # seconds


DEFAULT_DP_CERT_EXPIRATION = "24h"


def backend_conf(mesh: Mesh, backend: str | None = None) -> BackendConf | None:
    """The configuration of ``backend`` (default: the enabled one) of ``mesh``; None when mTLS
    is off or no such backend exists. Durations are parsed here (the mesh is validated, so
    they parse)."""
    mtls = mesh.mtls or {}
    name = backend if backend is not None else mtls.get("enabledBackend")
    if not name:
        return None
    for index, raw in enumerate(mtls.get("backends") or []):
        if not isinstance(raw, dict) or raw.get("name") != name:
            continue
        ca_cert = _mapping(_mapping(raw.get("conf")).get("caCert"))
        rotation = _mapping(_mapping(raw.get("dpCert")).get("rotation"))
        bits = ca_cert.get("RSAbits")
        return BackendConf(
            index=index,
            name=name,
            type=str(raw.get("type", "builtin")),
            rsa_bits=int(bits) if bits else None,
            ca_expiration=parse_duration(ca_cert.get("expiration") or DEFAULT_CA_EXPIRATION),
            dp_cert_expiration=parse_duration(
                rotation.get("expiration") or DEFAULT_DP_CERT_EXPIRATION
            ),
        )
    return None


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _builtin_conf(mesh: Mesh) -> BackendConf | None:
    """The enabled backend's conf; None when mTLS is off; CAError unless it is builtin."""
    conf = backend_conf(mesh)
    if conf is not None and conf.type != "builtin":
        raise CAError(
            f"mtls.backends[{conf.index}]: type {conf.type} is not supported yet by kumadp"
        )
    return conf


class MeshCAs:
    """The CAs of every mesh, created on first use and kept in ``store``.

    Safe against concurrent callers: one lock per (mesh, backend) in this process, and
    ``put(expected_version=0)`` + re-read against another control plane on the same store.
    """

    def __init__(self, store: Store, *, create: bool = True) -> None:
        """``create=False`` (a zone CP): never make a CA here, only read stored ones."""
        self._store = store
        self._create = create
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        # (mesh, backend) -> (stored certificates and CRLs, CA): no re-parsing on every call
        self._cache: dict[tuple[str, str], tuple[str, CA]] = {}

    async def ca_for(self, mesh: Mesh) -> CA | None:
        """The CA of the mesh's enabled backend (created and stored on first use); None when
        mTLS is off. Raises CAError for a backend kumadp cannot serve."""
        conf = _builtin_conf(mesh)
        if conf is None:
            return None
        if not self._create:
            return await self._load(mesh.name, conf.name)
        key = (mesh.name, conf.name)
        found = await self._load(*key)
        if found is not None:
            return found
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            found = await self._load(*key)
            if found is not None:
                return found
            spec = await asyncio.to_thread(_new_ca_spec, mesh.name, conf)
            try:
                stored, _ = await self._store.put(
                    MESH_CA_TYPE, mesh.name, conf.name, spec, expected_version=0
                )
            except ConflictError:
                # another control plane created it first: use theirs
                found = await self._load(*key)
                if found is None:  # pragma: no cover - created then deleted at once
                    raise CAError(
                        f"mesh {mesh.name}: CA of backend {conf.name} vanished while creating it"
                    ) from None
                return found
            log.info(
                "created CA for mesh %s backend %s (%s)", mesh.name, conf.name, spec["keyType"]
            )
            return self._parse(stored)

    async def current(self, mesh: Mesh) -> CA | None:
        """The stored CA of the mesh's enabled backend, never creating one (what the config
        generation path reads; ``kumadp.cp.provisioners.CaProvisioner`` creates it).
        Raises CAError for a backend kumadp cannot serve."""
        conf = _builtin_conf(mesh)
        return None if conf is None else await self._load(mesh.name, conf.name)

    async def get(self, mesh: str, backend: str) -> CA | None:
        """The stored CA of (mesh, backend), without creating one."""
        return await self._load(mesh, backend)

    async def delete_mesh(self, mesh: str) -> int:
        """Forget every CA of ``mesh`` (when the mesh is deleted); returns how many."""
        removed = 0
        for res in await self._store.list(MESH_CA_TYPE, mesh):
            if await self._store.delete(MESH_CA_TYPE, mesh, res.name):
                removed += 1
            self._cache.pop((mesh, res.name), None)
        return removed

    async def _load(self, mesh: str, backend: str) -> CA | None:
        stored = await self._store.get(MESH_CA_TYPE, mesh, backend)
        if stored is None:
            self._cache.pop((mesh, backend), None)
            return None
        return self._parse(stored)

    def _parse(self, stored: StoredResource) -> CA:
        key = (stored.mesh, stored.name)
        spec = stored.spec
        text = "|".join(str(spec.get(f) or "") for f in ("certPem", "rootPem", "trustCrlsPem"))
        cached = self._cache.get(key)
        if cached is not None and cached[0] == text:
            return cached[1]
        ca = ca_from_spec(spec)
        self._cache[key] = (text, ca)
        return ca


def ca_from_spec(spec: dict[str, Any]) -> CA:
    """A ``CA`` from a stored ``MeshCA`` document. Raises CAError when it is unusable."""
    mesh, name = spec.get("mesh", ""), spec.get("name", "")
    where = f"stored CA of mesh {mesh} backend {name}"
    try:
        cert = x509.load_pem_x509_certificate(str(spec["certPem"]).encode())
        key = serialization.load_pem_private_key(str(spec["keyPem"]).encode(), password=None)
    except (KeyError, ValueError, TypeError) as e:
        raise CAError(f"{where}: unreadable certificate or key ({e})") from e
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise CAError(f"{where}: unsupported key type {type(key).__name__}")
    if spki(key.public_key()) != spki(cert.public_key()):
        raise CAError(f"{where}: the key does not match the certificate")
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    root = str(spec.get("rootPem") or "").encode()  # a zone's intermediate: the mesh root
    return CA(
        mesh=mesh,
        backend=name,
        cert_pem=cert_pem,
        fingerprint=fingerprint(cert),
        key_type=str(spec.get("keyType") or key_type_name(key)),
        certificate=cert,
        private_key=key,
        chain_pem=cert_pem if root else b"",
        bundle_pem=root,
        crl_pem=str(spec.get("trustCrlsPem") or "").encode(),
    )


def _new_ca_spec(mesh: str, conf: BackendConf) -> dict[str, Any]:
    key = new_private_key(conf.rsa_bits)
    now = datetime.now(UTC)
    cert = build_ca_certificate(
        key,
        x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, mesh),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            ]
        ),
        not_before=now - BACKDATE,
        not_after=now + timedelta(seconds=conf.ca_expiration),
        uri=spiffe_trust_domain(mesh),
    )
    return {
        "type": MESH_CA_TYPE,
        "mesh": mesh,
        "name": conf.name,
        "certPem": cert.public_bytes(serialization.Encoding.PEM).decode(),
        "keyPem": private_key_pem(key).decode(),
        "keyType": key_type_name(key),
    }


__all__ = [
    "BACKDATE",
    "CA",
    "DEFAULT_CA_EXPIRATION",
    "DEFAULT_DP_CERT_EXPIRATION",
    "MESH_CA_TYPE",
    "ORGANIZATION",
    "BackendConf",
    "CAError",
    "MeshCAs",
    "PrivateKey",
    "backend_conf",
    "build_ca_certificate",
    "build_leaf_certificate",
    "ca_from_spec",
    "fingerprint",
    "key_type_name",
    "new_private_key",
    "private_key_pem",
    "spki",
]
