"""Virtual IPs: one address per (mesh, ``kuma.io/service``), persisted in the store.

Each service of a mesh gets a VIP from ``cidr`` (Kuma's ``KUMA_DNS_SERVER_CIDR``,
240.0.0.0/4) and a loopback address from ``loopback_cidr`` (127.1.0.0/16) for agents that
run with ``--bind-outbounds``: their Envoy binds the outbound listeners to it, so no
iptables rule is needed to reach it.

Allocation is hash-then-probe: a service starts at ``sha256("<mesh>/<service>") mod size``
in the pool and takes the first free address from there (wrapping around). So a service gets
the same address whatever order services appear in, and usually even after its record was
lost (a memory store, a wiped database); two services never share one address.

The allocation of a mesh is one store resource (type ``VirtualIPs``, name ``vips``), written
with compare-and-swap (``expected_version``) and retried on conflict, so several control
plane instances on one store agree. A service that disappears keeps its addresses for a
grace period (its ``lastSeen`` is set) and gets them back if it returns in time.

``sync`` writes only when something changed: the store emits an event for every write, and
a write per pass would wake every consumer for nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kumadp.cp.store.base import ConflictError, Store, StoredResource
from kumadp.resources.registry import VIRTUAL_IPS_TYPE

log = logging.getLogger(__name__)

RESOURCE_NAME = "vips"

DEFAULT_CIDR = "240.0.0.0/4"
DEFAULT_LOOPBACK_CIDR = "127.1.0.0/16"
DEFAULT_GRACE_PERIOD = timedelta(hours=1)

_MAX_ATTEMPTS = 10  # compare-and-swap rounds before giving up

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class VipError(Exception):
    """VIP allocation failed."""


class VipPoolExhaustedError(VipError):
    """Some services got no address: the pool is full. ``partial`` holds what was allocated
    (and stored), so a caller can keep serving the services that fit."""

    def __init__(self, message: str, partial: VipMap, missing: tuple[str, ...]) -> None:
        super().__init__(message)
        self.partial = partial
        self.missing = missing


@dataclass(frozen=True)
class VipEntry:
    vip: str
    loopback: str
    last_seen: datetime | None = None  # set while the service is gone (grace period)

    @property
    def active(self) -> bool:
        return self.last_seen is None


@dataclass(frozen=True)
class VipMap:
    """The addresses of one mesh's services at one store version (immutable).

    Services in their grace period are included (``entry.active`` is False): their names
    keep resolving and their listeners keep answering (503: no endpoints) until released.
    """

    mesh: str
    version: int  # store version of the VirtualIPs resource; 0 = nothing stored
    entries: Mapping[str, VipEntry] = field(default_factory=dict)

    def vip(self, service: str) -> str:
        return self.entries[service].vip

    def loopback(self, service: str) -> str:
        return self.entries[service].loopback

    def items(self) -> list[tuple[str, VipEntry]]:
        """(service, entry) sorted by service."""
        return sorted(self.entries.items())

    def addresses(self, *, loopback: bool = False) -> dict[str, str]:
        """service -> the address a dataplane uses: the VIP, or the loopback address for an
        agent running with ``--bind-outbounds`` (what ``generate(vips=...)`` takes)."""
        return {
            service: entry.loopback if loopback else entry.vip for service, entry in self.items()
        }

    def __contains__(self, service: object) -> bool:
        return service in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.entries))


class _Pool:
    """The usable addresses of a CIDR, as integers: the network address is skipped, and for
    IPv4 (prefix up to /30) the broadcast one too (240.0.0.0/4 ends in 255.255.255.255)."""

    def __init__(self, network: IPNetwork) -> None:
        self.network = network
        first = int(network.network_address)
        size = network.num_addresses
        if network.version == 4 and network.prefixlen <= 30:
            first, size = first + 1, size - 2
        elif network.version == 6 and network.prefixlen <= 126:
            first, size = first + 1, size - 1
        if size < 1:
            raise ValueError(f"CIDR {network} has no usable address")
        self.first = first
        self.size = size

    def __contains__(self, address: int) -> bool:
        return self.first <= address < self.first + self.size

    def to_text(self, address: int) -> str:
        return str(ipaddress.ip_address(address))

    def pick(self, key: str, used: set[int]) -> int | None:
        """The first free address at or after the hash of ``key``; None when full."""
        taken = sum(1 for a in used if a in self)
        if taken >= self.size:
            return None
        start = int.from_bytes(hashlib.sha256(key.encode()).digest()[:16], "big") % self.size
        # At most ``taken`` addresses are in use, so a free one comes within taken+1 steps.
        for step in range(taken + 1):
            candidate = self.first + (start + step) % self.size
            if candidate not in used:
                return candidate
        raise AssertionError("unreachable: pool has a free address")


def _network(cidr: str, what: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(cidr, strict=False)
    except ValueError as e:
        raise ValueError(f"{what}: invalid CIDR {cidr!r}: {e}") from e


def _parse_address(text: object) -> int | None:
    if not isinstance(text, str):
        return None
    try:
        return int(ipaddress.ip_address(text))
    except ValueError:
        return None


def _parse_time(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _format_time(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).isoformat(timespec="seconds")


def _entries_from_spec(spec: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    services = spec.get("services")
    if not isinstance(services, dict):
        return {}
    return {str(s): e for s, e in services.items() if isinstance(e, dict)}


class VipAllocator:
    """Allocates and persists the VIPs of every mesh; see the module docstring.

    ``sync(mesh, services)`` is what ``kumadp.cp.provisioners.VipProvisioner`` calls (the
    reconciler only ``get``s); concurrent calls for one mesh are serialised, and several
    allocators on one store agree through the store's compare-and-swap.
    """

    def __init__(
        self,
        store: Store,
        *,
        cidr: str = DEFAULT_CIDR,
        loopback_cidr: str = DEFAULT_LOOPBACK_CIDR,
        grace_period: timedelta = DEFAULT_GRACE_PERIOD,
    ) -> None:
        self._store = store
        self._pool = _Pool(_network(cidr, "VIP CIDR"))
        loopback = _network(loopback_cidr, "loopback CIDR")
        if not loopback.is_loopback:
            raise ValueError(f"loopback CIDR {loopback} is not a loopback range (127.0.0.0/8)")
        self._loopback_pool = _Pool(loopback)
        if grace_period < timedelta(0):
            raise ValueError("VIP grace period must not be negative")
        self._grace = grace_period
        self._locks: dict[str, asyncio.Lock] = {}
        # mesh -> (version, creation time, map) of the last stored resource parsed: a
        # resource deleted and created again restarts at version 1, its creation time differs
        self._cache: dict[str, tuple[int, datetime, VipMap]] = {}

    @property
    def cidr(self) -> str:
        return str(self._pool.network)

    @property
    def loopback_cidr(self) -> str:
        return str(self._loopback_pool.network)

    async def get(self, mesh: str) -> VipMap:
        """The stored allocation of ``mesh``, without changing anything."""
        return self._load(mesh, await self._store.get(VIRTUAL_IPS_TYPE, mesh, RESOURCE_NAME))

    async def sync(self, mesh: str, services: Iterable[str], now: datetime | None = None) -> VipMap:
        """Make the allocation of ``mesh`` match ``services`` (every ``kuma.io/service`` of
        its dataplanes): new services get addresses, missing ones start (or finish) their
        grace period, returning ones keep theirs. Writes the store only on a change.

        Raises VipPoolExhaustedError (with the partial, stored map) when the pool is full.
        """
        wanted = frozenset(services)
        when = (now or datetime.now(UTC)).astimezone(UTC)
        lock = self._locks.setdefault(mesh, asyncio.Lock())
        async with lock:
            for _ in range(_MAX_ATTEMPTS):
                stored = await self._store.get(VIRTUAL_IPS_TYPE, mesh, RESOURCE_NAME)
                current = self._load(mesh, stored)
                entries, missing = self._plan(mesh, current, wanted, when)
                if entries == dict(current.entries) and self._same_cidrs(stored):
                    result = current
                else:
                    try:
                        written, _ = await self._store.put(
                            VIRTUAL_IPS_TYPE,
                            mesh,
                            RESOURCE_NAME,
                            self._spec(mesh, entries),
                            expected_version=current.version,
                        )
                    except ConflictError:
                        log.debug("VIPs of mesh %s changed meanwhile; retrying", mesh)
                        continue
                    result = self._load(mesh, written)
                    self._log_changes(mesh, current, result)
                if missing:
                    raise VipPoolExhaustedError(
                        f"mesh {mesh!r}: VIP pool {self.cidr} or loopback pool "
                        f"{self.loopback_cidr} is full ({len(result)} services hold "
                        f"addresses); no address for: {', '.join(missing)}",
                        partial=result,
                        missing=missing,
                    )
                return result
        raise VipError(
            f"mesh {mesh!r}: could not store VIPs after {_MAX_ATTEMPTS} attempts "
            "(concurrent writers kept changing them)"
        )

    async def forget(self, mesh: str) -> None:
        """Drop the allocation of a deleted mesh."""
        async with self._locks.setdefault(mesh, asyncio.Lock()):
            await self._store.delete(VIRTUAL_IPS_TYPE, mesh, RESOURCE_NAME)
            self._cache.pop(mesh, None)

    # -- helpers -----------------------------------------------------------------------
    def _load(self, mesh: str, stored: StoredResource | None) -> VipMap:
        """Parse a stored allocation (cached by version). Records that are broken, outside
        today's pools or duplicated are dropped here, so ``_plan`` re-allocates them."""
        if stored is None:
            return VipMap(mesh=mesh, version=0)
        cached = self._cache.get(mesh)
        if cached is not None and cached[:2] == (stored.version, stored.creation_time):
            return cached[2]
        entries: dict[str, VipEntry] = {}
        used: set[int] = set()
        for service, record in sorted(_entries_from_spec(stored.spec).items()):
            vip = _parse_address(record.get("vip"))
            loopback = _parse_address(record.get("loopback"))
            if (
                vip is None
                or loopback is None
                or vip not in self._pool
                or loopback not in self._loopback_pool
                or vip in used
                or loopback in used
            ):
                log.warning(
                    "mesh %s: stored addresses of service %r are invalid, outside %s / %s "
                    "or taken; allocating new ones",
                    mesh,
                    service,
                    self.cidr,
                    self.loopback_cidr,
                )
                continue
            used.update((vip, loopback))
            entries[service] = VipEntry(
                vip=self._pool.to_text(vip),
                loopback=self._loopback_pool.to_text(loopback),
                last_seen=_parse_time(record.get("lastSeen")),
            )
        result = VipMap(mesh=mesh, version=stored.version, entries=entries)
        self._cache[mesh] = (stored.version, stored.creation_time, result)
        return result

    def _plan(
        self, mesh: str, current: VipMap, wanted: frozenset[str], now: datetime
    ) -> tuple[dict[str, VipEntry], tuple[str, ...]]:
        """The entries after this sync, and the services that did not fit."""
        entries: dict[str, VipEntry] = {}
        for service, entry in current.items():
            if service in wanted:
                entries[service] = VipEntry(entry.vip, entry.loopback)  # back: clear lastSeen
            elif entry.last_seen is None:
                entries[service] = VipEntry(entry.vip, entry.loopback, now)  # just gone
            elif now - entry.last_seen < self._grace:
                entries[service] = entry  # still in its grace period
            # else: released
        used = {int(ipaddress.ip_address(e.vip)) for e in entries.values()}
        used |= {int(ipaddress.ip_address(e.loopback)) for e in entries.values()}
        missing: list[str] = []
        for service in sorted(wanted - entries.keys()):
            key = f"{mesh}/{service}"
            vip = self._pool.pick(key, used)
            loopback = self._loopback_pool.pick(key, used | ({vip} if vip is not None else set()))
            if vip is None or loopback is None:
                missing.append(service)
                continue
            used.update((vip, loopback))
            entries[service] = VipEntry(
                self._pool.to_text(vip), self._loopback_pool.to_text(loopback)
            )
        return entries, tuple(missing)

    def _same_cidrs(self, stored: StoredResource | None) -> bool:
        if stored is None:
            return True  # nothing stored and nothing to store
        return (
            stored.spec.get("cidr") == self.cidr
            and stored.spec.get("loopbackCidr") == self.loopback_cidr
        )

    def _spec(self, mesh: str, entries: Mapping[str, VipEntry]) -> dict[str, Any]:
        return {
            "type": VIRTUAL_IPS_TYPE,
            "mesh": mesh,
            "name": RESOURCE_NAME,
            "cidr": self.cidr,
            "loopbackCidr": self.loopback_cidr,
            "services": {
                service: {
                    "vip": entry.vip,
                    "loopback": entry.loopback,
                    "lastSeen": _format_time(entry.last_seen),
                }
                for service, entry in sorted(entries.items())
            },
        }

    @staticmethod
    def _log_changes(mesh: str, before: VipMap, after: VipMap) -> None:
        for service, entry in after.items():
            if service not in before:
                log.info("mesh %s: service %s has VIP %s", mesh, service, entry.vip)
        for service in before:
            if service not in after:
                log.info("mesh %s: released the VIP of service %s", mesh, service)


__all__ = [
    "DEFAULT_CIDR",
    "DEFAULT_GRACE_PERIOD",
    "DEFAULT_LOOPBACK_CIDR",
    "VIRTUAL_IPS_TYPE",
    "VipAllocator",
    "VipEntry",
    "VipError",
    "VipMap",
    "VipPoolExhaustedError",
]
