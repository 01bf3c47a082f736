"""What every zone needs to verify every other zone's dataplanes: the global CP keeps one
``MeshTrustBundle`` per mTLS mesh (named after its enabled backend), synced to the zones.

::

    type: MeshTrustBundle
    mesh: default
    name: ca-1
    caCertPem: <the mesh root certificate>
    rootCrlPem: <the root's CRL: the revoked zone intermediates>
    crlNumber: 3
    revokedSerials: [<hex>...]
    intermediates: [{zone, serial, notAfter, crlPem}]   # live ones, with their own CRLs

Only public material: certificates and CRLs (``kumadp.cp.kds.mapping`` would refuse a
private key anyway). The root's CRL is signed again only when the revoked set (or the root)
changes, so an unchanged bundle is never rewritten. Expired intermediates are dropped (their
records too) at their expiry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from kumadp.cp.ca import CA, MeshCAs
from kumadp.cp.insights import parse_time
from kumadp.cp.intermediate_ca import build_crl
from kumadp.cp.provisioners import MeshWorker
from kumadp.cp.store.base import ChangeEvent, Store, StoredResource
from kumadp.cp.zone_cas import is_live
from kumadp.resources.model import MESH_TYPE
from kumadp.resources.registry import (
    MESH_CA_TYPE,
    MESH_TRUST_BUNDLE_TYPE,
    ZONE_INTERMEDIATE_CA_TYPE,
)

log = logging.getLogger(__name__)


class TrustBundlePublisher(MeshWorker):
    """Component (global CP, leader only): every mTLS mesh's ``MeshTrustBundle``."""

    name = "trust-bundle-publisher"
    watched = (MESH_TYPE, MESH_CA_TYPE, ZONE_INTERMEDIATE_CA_TYPE, MESH_TRUST_BUNDLE_TYPE)

    def __init__(
        self,
        store: Store,
        cas: MeshCAs,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(store)
        self._cas = cas
        self._clock = clock
        self._expiries: dict[str, datetime] = {}  # mesh -> its first intermediate to expire

    def meshes_for(self, event: ChangeEvent) -> Iterable[str]:
        return (event.name,) if event.type == MESH_TYPE else (event.mesh,)

    async def known_meshes(self) -> set[str]:
        found = await super().known_meshes()
        for type_name in (MESH_TRUST_BUNDLE_TYPE, ZONE_INTERMEDIATE_CA_TYPE):
            found |= {r.mesh for r in await self._store.list(type_name)}
        return found

    def due(self) -> float | None:
        return self.seconds_until(self._expiries, self._clock())

    async def process(self, mesh: str) -> None:
        self._expiries.pop(mesh, None)
        stored, conf = await self.mesh_backend(mesh)
        bundles = await self._store.list(MESH_TRUST_BUNDLE_TYPE, mesh)
        for bundle in bundles:
            if conf is None or bundle.name != conf.name:
                await self._store.delete(MESH_TRUST_BUNDLE_TYPE, mesh, bundle.name)
        records = await self._store.list(ZONE_INTERMEDIATE_CA_TYPE, mesh)
        if stored is None:  # the mesh is gone: so are its intermediates
            for record in records:
                await self._store.delete(ZONE_INTERMEDIATE_CA_TYPE, mesh, record.name)
            return
        if conf is None or conf.type != "builtin":
            return
        root = await self._cas.get(mesh, conf.name)
        if root is None:
            return  # the CA provisioner makes it; its event brings this mesh back
        now = self._clock()
        mine: list[StoredResource] = []
        for record in records:
            not_after = parse_time(record.spec.get("notAfter"))
            if not_after is None or not_after <= now:
                await self._store.delete(ZONE_INTERMEDIATE_CA_TYPE, mesh, record.name)
                continue
            if record.spec.get("backend") == conf.name and _issued_by(record, root):
                mine.append(record)
                first = self._expiries.get(mesh)
                self._expiries[mesh] = not_after if first is None else min(first, not_after)
        current = next((b for b in bundles if b.name == conf.name), None)
        doc = await self._bundle(mesh, conf.name, root, mine, current, now)
        _, created = await self._store.put(MESH_TRUST_BUNDLE_TYPE, mesh, conf.name, doc)
        if created:
            log.info("published the trust bundle of mesh %s (backend %s)", mesh, conf.name)

    async def _bundle(
        self,
        mesh: str,
        backend: str,
        root: CA,
        records: list[StoredResource],
        current: StoredResource | None,
        now: datetime,
    ) -> dict[str, Any]:
        revoked: dict[int, datetime] = {}
        for record in records:
            if record.spec.get("revoked"):
                when = parse_time(record.spec.get("revokedAt")) or now
                revoked[int(str(record.spec["serial"]), 16)] = when
        serials = sorted(format(s, "x") for s in revoked)
        root_pem = root.cert_pem.decode()
        previous = current.spec if current is not None else {}
        crl = str(previous.get("rootCrlPem") or "")
        number = int(previous.get("crlNumber") or 0)
        stale = previous.get("caCertPem") != root_pem or previous.get("revokedSerials") != serials
        if not crl or stale:
            number += 1
            crl = (
                await asyncio.to_thread(
                    build_crl,
                    root.private_key,
                    root.certificate.subject,
                    revoked,
                    number=number,
                    next_update=root.not_after,
                    now=now,
                )
            ).decode()
            log.info(
                "mesh %s: root CRL #%d lists %d revoked zone intermediate(s)",
                mesh, number, len(serials),
            )  # fmt: skip
        live = sorted(
            (r for r in records if is_live(r.spec, now)),
            key=lambda r: (str(r.spec.get("zone")), str(r.spec.get("serial"))),
        )
        return {
            "type": MESH_TRUST_BUNDLE_TYPE,
            "mesh": mesh,
            "name": backend,
            "caCertPem": root_pem,
            "rootCrlPem": crl,
            "crlNumber": number,
            "revokedSerials": serials,
            "intermediates": [
                {
                    "zone": r.spec.get("zone"),
                    "serial": r.spec.get("serial"),
                    "notAfter": r.spec.get("notAfter"),
                    "crlPem": r.spec.get("crlPem"),
                }
                for r in live
            ],
        }


def _issued_by(record: StoredResource, root: CA) -> bool:
    """Whether a recorded intermediate was signed by this root (a root made again after
    its MeshCA was deleted does not vouch for the old one's intermediates)."""
    return record.spec.get("rootFingerprint") == root.fingerprint


__all__ = ["TrustBundlePublisher"]
