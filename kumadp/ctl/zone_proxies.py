"""Zone ingresses' and egresses' table rows for ``kumadp ctl``: ``get`` (their resources) and
``inspect`` (status, and the services an ingress makes available to the other zones; see
``kumadp.ctl.zone_inspect``). On the global CP they list every zone's."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kumadp.ctl import tables

INGRESS_HEADERS = ("NAME", "ZONE", "ADDRESS", "ADVERTISED ADDRESS", "AGE")
EGRESS_HEADERS = ("NAME", "ZONE", "ADDRESS", "AGE")
INSPECT_INGRESS_HEADERS = (
    "ZONE",
    "NAME",
    "STATUS",
    "LAST CONNECTED",
    "ADVERTISED ADDRESS",
    "AVAILABLE SERVICES",
)
INSPECT_EGRESS_HEADERS = ("ZONE", "NAME", "STATUS", "LAST CONNECTED", "ADDRESS")


def _get(doc: Any, *keys: str) -> Any:
    for key in keys:
        doc = doc.get(key) if isinstance(doc, dict) else None
    return doc


def address(networking: Any, host: str = "address", port: str = "port") -> str:
    address, number = _get(networking, host), _get(networking, port)
    return f"{address}:{number}" if address and number else tables.MISSING


def zone(doc: dict[str, Any], spec: Any) -> str:
    return str(_get(spec, "zone") or tables.zone_of(doc) or tables.MISSING)


def display_name(doc: dict[str, Any]) -> str:
    """The name its zone gave it (a copy's is hashed)."""
    labels = doc.get("labels")
    if not isinstance(labels, dict):
        labels = {}
    return str(labels.get("kuma.io/display-name") or doc.get("name") or tables.MISSING)


def ingress_row(doc: dict[str, Any], now: datetime) -> list[str]:
    return [
        str(doc.get("name") or tables.MISSING),
        zone(doc, doc),
        address(doc.get("networking")),
        address(doc.get("networking"), "advertisedAddress", "advertisedPort"),
        tables.age(doc.get("creationTime"), now),
    ]


def egress_row(doc: dict[str, Any], now: datetime) -> list[str]:
    return [
        str(doc.get("name") or tables.MISSING),
        zone(doc, doc),
        address(doc.get("networking")),
        tables.age(doc.get("creationTime"), now),
    ]


def services_cell(services: Any) -> str:
    """``backend (default, 2), web (default, 1)``; ``-`` when none."""
    out = []
    for item in services if isinstance(services, list) else []:
        service = _get(item, "tags", "kuma.io/service")
        if service:
            out.append(f"{service} ({_get(item, 'mesh') or 'default'}, {_get(item, 'instances')})")
    return ", ".join(out) or tables.MISSING


def last_connected(insight: Any, now: datetime) -> str:
    subs = _get(insight, "subscriptions")
    times = (
        [s.get("connectTime") for s in subs if isinstance(s, dict)]
        if isinstance(subs, list)
        else []
    )
    latest = max((t for t in times if isinstance(t, str)), default=None)
    return tables.ago(latest, now) if latest else tables.MISSING


def cross_zone_notes(items: list[dict[str, Any]]) -> list[str]:
    """The reasons dataplanes reach no other zone (``crossZone`` of their insights), once
    each, for under the ``inspect dataplanes`` table."""
    seen: dict[str, None] = {}
    for item in items:
        reason = _get(item, "dataplaneInsight", "crossZone", "reason")
        if isinstance(reason, str) and reason:
            seen.setdefault(reason, None)
    return [f"Note: {reason}" for reason in seen]


__all__ = [
    "EGRESS_HEADERS",
    "INGRESS_HEADERS",
    "INSPECT_EGRESS_HEADERS",
    "INSPECT_INGRESS_HEADERS",
    "address",
    "cross_zone_notes",
    "display_name",
    "egress_row",
    "ingress_row",
    "last_connected",
    "services_cell",
    "zone",
]
