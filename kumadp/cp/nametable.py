"""The per-mesh name table the CP pushes to agents: ``<service>.mesh`` -> address.

Names follow Kuma: ``<service>.mesh`` in lower case, plus, when the service name has ``_``,
the variant with every ``_`` replaced by ``.`` (``backend_default_svc_80`` is also
``backend.default.svc.80.mesh``). A service whose name does not make a valid DNS name is
left out (logged once). When two services would get the same name, a service's own name
wins over another's ``_`` variant, then the first service in sorted order.

Services in their VIP grace period stay in the table: their address is still reserved and
their listeners answer (no endpoints: 503 or a reset) until the VIP is released.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import re

from kumadp.cp.vips import VipMap
from kumadp.wire.agent_pb2 import NameRecord, NameTable

log = logging.getLogger(__name__)

MESH_DOMAIN = "mesh"
DEFAULT_TTL = 30  # seconds, Kuma's

_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_MAX_NAME = 253
_warned: set[str] = set()
_MAX_WARNED = 10_000


def is_dns_name(name: str) -> bool:
    """Labels of 1-63 letters, digits, ``_`` or inner ``-``; at most 253 characters."""
    return len(name) <= _MAX_NAME and all(_LABEL.match(label) for label in name.split("."))


def service_names(service: str) -> list[str]:
    """The names of ``service`` (own name first), without the invalid ones."""
    base = service.lower()
    candidates = [f"{base}.{MESH_DOMAIN}"]
    if "_" in base:
        candidates.append(f"{base.replace('_', '.')}.{MESH_DOMAIN}")
    return [name for name in candidates if is_dns_name(name)]


def _warn_once(message: str, *args: object) -> None:
    """Log a problem of the table once, not on every rebuild."""
    key = message % args
    if key in _warned:
        return
    if len(_warned) < _MAX_WARNED:
        _warned.add(key)
    log.warning(message, *args)


def build_name_table(vips: VipMap, *, loopback: bool, ttl: int = DEFAULT_TTL) -> NameTable:
    """The name table of ``vips``' mesh: records sorted by name, ``version`` a hash of the
    content (same table, same version, on any CP instance). ``loopback`` (agents with
    ``--bind-outbounds``) gives each service's loopback address instead of its VIP."""
    chosen: dict[str, tuple[int, str, str]] = {}  # name -> (rank, service, address)
    for service, entry in vips.items():
        names = service_names(service)
        if not names:
            _warn_once("service %r is not a valid DNS name: no .%s name", service, MESH_DOMAIN)
            continue
        address = entry.loopback if loopback else entry.vip
        for rank, name in enumerate(names):
            # rank 0 = the service's own name; items() is sorted, so ties keep the first
            taken = chosen.get(name)
            if taken is None or rank < taken[0]:
                if taken is not None:
                    _warn_once("name %s of service %r hides %r", name, service, taken[1])
                chosen[name] = (rank, service, address)
            elif taken[1] != service:
                _warn_once("name %s of service %r is taken by %r", name, service, taken[1])
    table = NameTable(ttl_seconds=ttl)
    for name in sorted(chosen):
        address = chosen[name][2]
        record = table.records.add(name=name)
        if ipaddress.ip_address(address).version == 4:
            record.ipv4.append(address)
        else:
            record.ipv6.append(address)
    table.version = hashlib.sha256(table.SerializeToString(deterministic=True)).hexdigest()[:16]
    return table


def name_records(table: NameTable) -> dict[str, NameRecord]:
    """name -> record, for lookups (tests, diagnostics)."""
    return {record.name: record for record in table.records}


__all__ = ["DEFAULT_TTL", "build_name_table", "is_dns_name", "name_records", "service_names"]
