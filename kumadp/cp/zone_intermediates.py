"""A zone CP's own intermediate CA for each mTLS mesh (``kumadp.cp.intermediate_ca``).

For every mesh with a builtin mTLS backend the zone makes a key, asks the global CP to sign
it (over KDS: ``signer``) and stores the result as the mesh's ``MeshCA`` (the key sealed like
any CA key), with the mesh root (``rootPem``) and the CRLs its Envoys check peers against
(``trustCrlsPem``: the root's, every zone's intermediate's, its own). The reconciler and the
certificate signer read that ``MeshCA`` as they read a standalone CP's root: dataplanes get
leaf + intermediate, and trust the root.

- **Renewal** at half the intermediate's life: a new key, signed; it is *used* once the
  global CP's trust bundle lists it (so the other zones have its CRL before they meet its
  certificates), or at three quarters of the old one's life at the latest.
- **A new root** (another backend, a CA made again): a new intermediate at once.
- **Failures** (global unreachable, a refusal) are retried with capped backoff; the zone
  keeps serving with what it has. Without any intermediate the mesh waits, as a standalone
  CP's waits for its CA (``MeshStateBuilder(ca_from_global=True)``): running dataplanes keep
  their certificates and config, new ones do not start serving; never a fallback to
  plaintext, and the log says what it waits for.
- **Revoked** (the bundle's root CRL lists this zone's serial): logged as an error; a new
  one is asked for, which the global CP refuses until an admin allows it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kumadp.cp.ca import BackendConf, CAError, ca_from_spec, private_key_pem
from kumadp.cp.insights import format_time, parse_time
from kumadp.cp.intermediate_ca import check_signed, make_request
from kumadp.cp.kds.client import KdsConnectionError
from kumadp.cp.provisioners import MeshWorker
from kumadp.cp.store.base import ChangeEvent, Store
from kumadp.cp.x509 import PrivateKey, key_type_name
from kumadp.lifecycle import Backoff
from kumadp.resources.model import MESH_TYPE
from kumadp.resources.registry import MESH_CA_TYPE, MESH_TRUST_BUNDLE_TYPE
from kumadp.wire import kds as wire
from kumadp.wire.kds_pb2 import IntermediateCARequest, IntermediateCAResponse

log = logging.getLogger(__name__)

Signer = Callable[[IntermediateCARequest], Awaitable[IntermediateCAResponse]]
RENEW_AT = 0.5  # of the intermediate's life
SWITCH_AT_LATEST = 0.75


@dataclass(frozen=True)
class _Signed:
    backend: str
    key: PrivateKey
    cert_pem: bytes
    root_pem: bytes
    root_crl_pem: bytes
    crl_pem: bytes
    serial: str
    not_before: datetime
    not_after: datetime


def trust_crls(bundle: dict[str, Any] | None, root_pem: str, own_crl: str) -> str:
    """The CRLs a zone's Envoys check: the root's and every live intermediate's from the
    bundle, and the zone's own. Empty (no CRL check at all) while no bundle of this root is
    here: Envoy refuses every chain whose CA has no CRL, so half a set would cut traffic."""
    if bundle is None or bundle.get("caCertPem") != root_pem or not bundle.get("rootCrlPem"):
        return ""
    parts = [str(bundle["rootCrlPem"])]
    for item in bundle.get("intermediates") or ():
        if isinstance(item, dict) and item.get("crlPem"):
            parts.append(str(item["crlPem"]))
    parts.append(own_crl)
    unique = list(dict.fromkeys(p.strip() + "\n" for p in parts if p.strip()))
    return "".join(unique)


class ZoneIntermediates(MeshWorker):
    """Component (zone CP, leader only): keeps each mTLS mesh's intermediate CA."""

    name = "zone-intermediate-ca"
    watched = (MESH_TYPE, MESH_TRUST_BUNDLE_TYPE, MESH_CA_TYPE)

    def __init__(
        self,
        store: Store,
        zone: str,
        signer: Signer,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        backoff: Callable[[], Backoff] = lambda: Backoff(1.0, 60.0),
    ) -> None:
        super().__init__(store)
        self._zone = zone
        self._signer = signer
        self._clock = clock
        self._new_backoff = backoff
        self._pending: dict[str, _Signed] = {}  # mesh -> signed, not yet in use
        self._timers: dict[str, datetime] = {}  # mesh -> when to look again
        self._retries: dict[str, Backoff] = {}
        self._revoked: set[str] = set()  # serials already reported
        self.obtained = 0

    def meshes_for(self, event: ChangeEvent) -> Iterable[str]:
        return (event.name,) if event.type == MESH_TYPE else (event.mesh,)

    async def known_meshes(self) -> set[str]:
        return await super().known_meshes() | {r.mesh for r in await self._store.list(MESH_CA_TYPE)}

    def due(self) -> float | None:
        return self.seconds_until(self._timers, self._clock())

    # -- one mesh --------------------------------------------------------------------------
    async def process(self, mesh: str) -> None:
        self._timers.pop(mesh, None)
        stored, conf = await self.mesh_backend(mesh)
        if stored is None:
            for ca in await self._store.list(MESH_CA_TYPE, mesh):
                await self._store.delete(MESH_CA_TYPE, mesh, ca.name)
        if conf is None or conf.type != "builtin":
            self._pending.pop(mesh, None)
            return
        bundle = await self._bundle(mesh, conf.name)
        current = await self._store.get(MESH_CA_TYPE, mesh, conf.name)
        spec = current.spec if current is not None else None
        now = self._clock()
        if spec is not None and spec.get("zone") != self._zone:
            # e.g. the root of a standalone run on this store: a zone holds no root key
            await self._store.delete(MESH_CA_TYPE, mesh, conf.name)
            log.warning(
                "zone %s: removed a CA of mesh %s that is not this zone's", self._zone, mesh
            )
            spec = None
        if spec is not None:
            self._report_revoked(mesh, spec, bundle)
        if spec is None or not self._usable(spec, bundle, now):
            pending = self._pending.pop(mesh, None)
            if pending is None or not self._fits(pending, bundle, now):
                pending = await self._obtain(mesh, conf)
            if pending is not None:
                await self._install(mesh, pending, bundle)
            elif spec is not None:
                await self._refresh_trust(mesh, conf.name, spec, bundle)
            return
        if not await self._renew(mesh, conf, spec, bundle, now):
            await self._refresh_trust(mesh, conf.name, spec, bundle)

    async def _renew(
        self,
        mesh: str,
        conf: BackendConf,
        spec: dict[str, Any],
        bundle: dict[str, Any] | None,
        now: datetime,
    ) -> bool:
        """Renew at half its life; True when a new intermediate was put in use."""
        not_before = parse_time(spec.get("notBefore")) or now
        not_after = parse_time(spec.get("notAfter")) or now
        life = not_after - not_before
        renew_at, switch_at = not_before + life * RENEW_AT, not_before + life * SWITCH_AT_LATEST
        pending = self._pending.get(mesh)
        if pending is None and now >= renew_at:
            pending = await self._obtain(mesh, conf)
            if pending is None:
                return False  # retried on the timer _obtain set
            self._pending[mesh] = pending
        if pending is None:
            self._timers[mesh] = renew_at
            return False
        listed = any(
            isinstance(i, dict) and i.get("serial") == pending.serial
            for i in (bundle or {}).get("intermediates") or ()
        )
        if listed or now >= switch_at:
            del self._pending[mesh]
            await self._install(mesh, pending, bundle)
            return True
        self._timers[mesh] = switch_at  # or sooner: the bundle's change brings us back
        return False

    def _report_revoked(
        self, mesh: str, spec: dict[str, Any], bundle: dict[str, Any] | None
    ) -> None:
        serial = str(spec.get("serial"))
        if bundle is None or serial not in (bundle.get("revokedSerials") or ()):
            return
        if serial not in self._revoked:
            self._revoked.add(serial)
            log.error(
                "the intermediate CA of zone %s for mesh %s (serial %s) was REVOKED by the "
                "global control plane: no Envoy trusts this zone's dataplanes any more",
                self._zone, mesh, serial,
            )  # fmt: skip

    def _usable(self, spec: dict[str, Any], bundle: dict[str, Any] | None, now: datetime) -> bool:
        """An intermediate of this zone, readable, not expired, of the bundle's root."""
        not_after = parse_time(spec.get("notAfter"))
        if spec.get("zone") != self._zone or not_after is None or not_after <= now:
            return False
        if bundle is not None and bundle.get("caCertPem") != spec.get("rootPem"):
            return False  # the mesh has a new root
        if bundle is not None and str(spec.get("serial")) in (bundle.get("revokedSerials") or ()):
            return False  # revoked: ask for a new one (refused until an admin allows it)
        try:
            ca_from_spec(spec)
        except CAError as exc:
            log.error("zone intermediate CA: %s; getting a new one", exc)
            return False
        return True

    @staticmethod
    def _fits(pending: _Signed, bundle: dict[str, Any] | None, now: datetime) -> bool:
        if pending.not_after <= now:
            return False
        return bundle is None or bundle.get("caCertPem") == pending.root_pem.decode()

    # -- signing ---------------------------------------------------------------------------
    async def _obtain(self, mesh: str, conf: BackendConf) -> _Signed | None:
        """A new intermediate signed by the global CP; None (and a retry timer) on failure."""
        try:
            request = await asyncio.to_thread(
                make_request, mesh, self._zone, rsa_bits=conf.rsa_bits
            )
            response = await self._signer(
                IntermediateCARequest(
                    mesh=mesh,
                    backend=conf.name,
                    csr_pem=request.csr_pem,
                    crl_pem=request.crl_pem,
                )
            )
            cert = check_signed(response.certificate_pem, request.key, response.root_pem)
        except Exception as exc:  # the signer's errors say why (refused, not connected...)
            backoff = self._retries.setdefault(mesh, self._new_backoff())
            delay = backoff.next()
            self._timers[mesh] = self._clock() + timedelta(seconds=delay)
            level = logging.INFO if isinstance(exc, KdsConnectionError) else logging.WARNING
            log.log(
                level,
                "zone %s: no intermediate CA for mesh %s yet: %s; retrying in %.1fs",
                self._zone, mesh, _describe(exc), delay,
            )  # fmt: skip
            return None
        self._retries.pop(mesh, None)
        self.obtained += 1
        return _Signed(
            backend=conf.name,
            key=request.key,
            cert_pem=bytes(response.certificate_pem),
            root_pem=bytes(response.root_pem),
            root_crl_pem=bytes(response.root_crl_pem),
            crl_pem=request.crl_pem,
            serial=format(cert.serial_number, "x"),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
        )

    async def _install(self, mesh: str, signed: _Signed, bundle: dict[str, Any] | None) -> None:
        root_pem = signed.root_pem.decode()
        own_crl = signed.crl_pem.decode()
        trust = trust_crls(bundle, root_pem, own_crl)
        if not trust and signed.root_crl_pem:
            trust = trust_crls(
                {"caCertPem": root_pem, "rootCrlPem": signed.root_crl_pem.decode()},
                root_pem,
                own_crl,
            )
        doc = {
            "type": MESH_CA_TYPE,
            "mesh": mesh,
            "name": signed.backend,
            "certPem": signed.cert_pem.decode(),
            "keyPem": private_key_pem(signed.key).decode(),
            "keyType": key_type_name(signed.key),
            "rootPem": root_pem,
            "rootCrlPem": signed.root_crl_pem.decode(),
            "crlPem": own_crl,
            "trustCrlsPem": trust,
            "zone": self._zone,
            "serial": signed.serial,
            "notBefore": format_time(signed.not_before),
            "notAfter": format_time(signed.not_after),
        }
        await self._store.put(MESH_CA_TYPE, mesh, signed.backend, doc)
        life = signed.not_after - signed.not_before
        self._timers[mesh] = signed.not_before + life * RENEW_AT
        log.info(
            "zone %s: intermediate CA of mesh %s in use (serial %s, valid until %s)",
            self._zone, mesh, signed.serial, format_time(signed.not_after),
        )  # fmt: skip

    async def _refresh_trust(
        self, mesh: str, backend: str, spec: dict[str, Any], bundle: dict[str, Any] | None
    ) -> None:
        """Keep ``trustCrlsPem`` in step with the bundle (a revocation, another zone's new
        intermediate); no write when nothing changed."""
        root_pem, own = str(spec.get("rootPem") or ""), str(spec.get("crlPem") or "")
        trust = trust_crls(bundle, root_pem, own)
        if not trust and bundle is None:
            return  # keep what the signing answer gave until the bundle arrives
        if trust != spec.get("trustCrlsPem"):
            await self._store.put(MESH_CA_TYPE, mesh, backend, {**spec, "trustCrlsPem": trust})
            log.info("zone %s: CRLs of mesh %s updated from the trust bundle", self._zone, mesh)

    async def _bundle(self, mesh: str, backend: str) -> dict[str, Any] | None:
        """The global CP's ``MeshTrustBundle`` of (mesh, backend), as synced here."""
        for stored in await self._store.list(MESH_TRUST_BUNDLE_TYPE, mesh):
            labels = stored.spec.get("labels") or {}
            if (labels.get(wire.DISPLAY_NAME_LABEL) or stored.name) == backend:
                return stored.spec
        return None


def _describe(exc: BaseException) -> str:
    details = getattr(exc, "details", None)
    if callable(details):  # a gRPC error: its code and the global CP's reason
        code = exc.code() if hasattr(exc, "code") else None  # type: ignore[attr-defined]
        return f"{getattr(code, 'name', code)}: {details()}"
    return str(exc) or type(exc).__name__


__all__ = ["RENEW_AT", "Signer", "ZoneIntermediates", "trust_crls"]
