"""The global CP's book of zone intermediate CAs: it signs them with the mesh root, records
each one it signed, revokes them, and refuses a zone an admin cut off.

Stored (never synced, never served by the resource routes):

- ``ZoneIntermediateCA`` (mesh-scoped, ``<zone>.<serial hex>``): ``zone, backend, serial,
  certPem, crlPem`` (the zone's own CRL), ``notBefore, notAfter, revoked, revokedAt,
  rootFingerprint`` (the root that signed it);
- ``ZoneCARefusal`` (global, named after the zone): the meshes (none listed = every mesh)
  for which the zone gets no new intermediate, and when that was decided.

Revoking (``revoke``: the API's ``POST /zones/{zone}/ca/revoke``, ``kumadp ctl revoke
zone-ca``) marks the zone's current intermediates revoked and writes the refusal; the
``TrustBundlePublisher`` then puts their serials in the root's CRL, which every zone's
Envoys check. ``allow`` lifts the refusal (the revoked ones stay revoked).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kumadp.cp.ca import MeshCAs, backend_conf
from kumadp.cp.insights import format_time, parse_time
from kumadp.cp.intermediate_ca import (
    DEFAULT_LIFETIME,
    IntermediateRefused,
    SignedIntermediate,
    sign_intermediate,
)
from kumadp.cp.store.base import Store, StoredResource
from kumadp.resources import ValidationError, parse_mesh
from kumadp.resources.model import MESH_TYPE
from kumadp.resources.registry import (
    MESH_TRUST_BUNDLE_TYPE,
    ZONE_CA_REFUSAL_TYPE,
    ZONE_INTERMEDIATE_CA_TYPE,
)
from kumadp.wire.kds_pb2 import IntermediateCARequest, IntermediateCAResponse
from kumadp.xds.stream import Code, StreamRejected

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Issued:
    """What the zone gets back."""

    cert_pem: bytes
    root_pem: bytes
    root_crl_pem: bytes


def record_name(zone: str, serial_hex: str) -> str:
    return f"{zone}.{serial_hex}"


def is_live(spec: dict[str, Any], now: datetime) -> bool:
    """Not revoked and not expired."""
    not_after = parse_time(spec.get("notAfter"))
    return not spec.get("revoked") and not_after is not None and not_after > now


class ZoneCAs:
    def __init__(
        self,
        store: Store,
        cas: MeshCAs,
        *,
        lifetime: float = DEFAULT_LIFETIME,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._cas = cas
        self.lifetime = lifetime
        self._clock = clock

    # -- signing ---------------------------------------------------------------------------
    async def sign(
        self, zone: str, mesh_name: str, backend: str, csr_pem: bytes, crl_pem: bytes
    ) -> Issued:
        """Sign zone ``zone``'s intermediate for ``mesh_name``. Raises IntermediateRefused."""
        refusal = await self.refusal(zone, mesh_name)
        if refusal is not None:
            raise IntermediateRefused(refusal)
        stored = await self._store.get(MESH_TYPE, "", mesh_name)
        if stored is None:
            raise IntermediateRefused(f'mesh "{mesh_name}" does not exist', transient=True)
        try:
            mesh = parse_mesh(stored.spec)
        except ValidationError as exc:  # pragma: no cover - the store holds valid meshes
            raise IntermediateRefused(f'mesh "{mesh_name}" is invalid: {exc}') from None
        conf = backend_conf(mesh)
        if conf is None or conf.name != backend or conf.type != "builtin":
            enabled = conf.name if conf is not None else "none (mTLS is off)"
            raise IntermediateRefused(
                f'mesh "{mesh_name}": backend {backend} is not its enabled builtin mTLS '
                f"backend ({enabled})",
                transient=True,
            )
        root = await self._cas.current(mesh)
        if root is None:
            raise IntermediateRefused(
                f'mesh "{mesh_name}": its root CA is not created yet', transient=True
            )
        signed = await asyncio.to_thread(
            sign_intermediate,
            root,
            zone,
            csr_pem,
            crl_pem,
            lifetime=self.lifetime,
            now=self._clock(),
        )
        await self._record(mesh_name, zone, backend, signed, root.fingerprint)
        log.info(
            "signed the intermediate CA of zone %s for mesh %s (serial %s, valid until %s)",
            zone, mesh_name, signed.serial_hex, format_time(signed.not_after),
        )  # fmt: skip
        bundle = await self._store.get(MESH_TRUST_BUNDLE_TYPE, mesh_name, backend)
        root_crl = str(bundle.spec.get("rootCrlPem") or "") if bundle is not None else ""
        return Issued(signed.cert_pem, root.cert_pem, root_crl.encode())

    async def handle(self, zone: str, request: IntermediateCARequest) -> IntermediateCAResponse:
        """``sign`` as the KDS server's ``sign_intermediate`` hook."""
        try:
            issued = await self.sign(
                zone, request.mesh, request.backend, request.csr_pem, request.crl_pem
            )
        except IntermediateRefused as exc:
            code = Code.FAILED_PRECONDITION if exc.transient else Code.PERMISSION_DENIED
            raise StreamRejected(code, str(exc)) from None
        return IntermediateCAResponse(
            certificate_pem=issued.cert_pem,
            root_pem=issued.root_pem,
            root_crl_pem=issued.root_crl_pem,
        )

    async def _record(
        self, mesh: str, zone: str, backend: str, signed: SignedIntermediate, root: str
    ) -> None:
        name = record_name(zone, signed.serial_hex)
        doc = {
            "type": ZONE_INTERMEDIATE_CA_TYPE,
            "mesh": mesh,
            "name": name,
            "zone": zone,
            "backend": backend,
            "serial": signed.serial_hex,
            "certPem": signed.cert_pem.decode(),
            "crlPem": signed.crl_pem.decode(),
            "notBefore": format_time(signed.not_before),
            "notAfter": format_time(signed.not_after),
            "revoked": False,
            "rootFingerprint": root,
        }
        await self._store.put(ZONE_INTERMEDIATE_CA_TYPE, mesh, name, doc)

    # -- revocation ------------------------------------------------------------------------
    async def refusal(self, zone: str, mesh: str) -> str | None:
        """Why ``zone`` may get no intermediate for ``mesh``; None when it may."""
        stored = await self._store.get(ZONE_CA_REFUSAL_TYPE, "", zone)
        if stored is None:
            return None
        meshes = stored.spec.get("meshes") or []
        if meshes and mesh not in meshes:
            return None
        return (
            f"the intermediate CAs of zone {zone} were revoked by an admin at "
            f"{stored.spec.get('revokedAt', '?')}: it gets no new one for mesh {mesh} until "
            f"an admin allows it (kumadp ctl allow zone-ca --zone {zone})"
        )

    async def revoke(self, zone: str, mesh: str | None = None) -> list[dict[str, str]]:
        """Revoke every live intermediate of ``zone`` (in ``mesh``, else in every mesh) and
        refuse it new ones; the revoked ones, as ``{mesh, serial}``."""
        when = format_time(self._clock())
        refusal = await self._store.get(ZONE_CA_REFUSAL_TYPE, "", zone)
        meshes: list[str] = list(refusal.spec.get("meshes") or []) if refusal else []
        if mesh is None:
            meshes = []  # every mesh
        elif refusal is None or meshes:
            meshes = sorted({*meshes, mesh})
        await self._store.put(
            ZONE_CA_REFUSAL_TYPE,
            "",
            zone,
            {"type": ZONE_CA_REFUSAL_TYPE, "name": zone, "meshes": meshes, "revokedAt": when},
        )
        revoked = []
        for stored in await self.records(zone=zone, mesh=mesh):
            if stored.spec.get("revoked"):
                continue
            doc = {**stored.spec, "revoked": True, "revokedAt": when}
            await self._store.put(ZONE_INTERMEDIATE_CA_TYPE, stored.mesh, stored.name, doc)
            revoked.append({"mesh": stored.mesh, "serial": str(stored.spec.get("serial"))})
        log.warning(
            "revoked %d intermediate CA(s) of zone %s (%s); it gets no new one until allowed",
            len(revoked), zone, f"mesh {mesh}" if mesh else "every mesh",
        )  # fmt: skip
        return revoked

    async def allow(self, zone: str) -> bool:
        """Lift the refusal of ``zone``: it may get new intermediates (revoked ones stay
        revoked). False when it was not refused."""
        lifted = await self._store.delete(ZONE_CA_REFUSAL_TYPE, "", zone)
        if lifted:
            log.info("zone %s may get intermediate CAs again", zone)
        return lifted

    # -- reading ---------------------------------------------------------------------------
    async def records(
        self, *, zone: str | None = None, mesh: str | None = None
    ) -> list[StoredResource]:
        return [
            r
            for r in await self._store.list(ZONE_INTERMEDIATE_CA_TYPE, mesh)
            if zone is None or r.spec.get("zone") == zone
        ]

    async def overview(self, zone: str) -> dict[str, Any]:
        """What the API shows for a zone: its intermediates (no key, no CRL) and refusal."""
        now = self._clock()
        items = []
        for stored in await self.records(zone=zone):
            spec = stored.spec
            items.append(
                {
                    "mesh": stored.mesh,
                    "backend": spec.get("backend"),
                    "serial": spec.get("serial"),
                    "notBefore": spec.get("notBefore"),
                    "notAfter": spec.get("notAfter"),
                    "revoked": bool(spec.get("revoked")),
                    **({"revokedAt": spec["revokedAt"]} if spec.get("revokedAt") else {}),
                    "live": is_live(spec, now),
                }
            )
        refusal = await self._store.get(ZONE_CA_REFUSAL_TYPE, "", zone)
        out: dict[str, Any] = {"zone": zone, "intermediates": items, "refused": refusal is not None}
        if refusal is not None:
            out["refusal"] = {k: v for k, v in refusal.spec.items() if k not in ("type", "name")}
        return out


__all__ = ["Issued", "ZoneCAs", "is_live", "record_name"]
