"""``kumadp ctl get zones``, ``inspect zones`` and the zones' intermediate CAs, over an
``ApiClient`` (a global CP's API).

A zone's STATUS: ``Disabled`` (``enabled: false``), ``Online`` (a KDS subscription with a
connect time and no disconnect time), else ``Offline``. DATAPLANES: online/total of the
zone's dataplanes in the global CP's inventory (``kuma.io/zone``).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from kumadp.ctl import tables
from kumadp.ctl.client import ApiClient, CtlError, NotFoundError, segment

ZONE_HEADERS = ("NAME", "STATUS", "LAST CONNECTED", "CP VERSION", "DATAPLANES")
INSPECT_ZONE_HEADERS = (*ZONE_HEADERS, "AGE")
CA_HEADERS = ("ZONE", "MESH", "SERIAL", "NOT AFTER", "STATUS")


def zone_status(overview: dict[str, Any]) -> str:
    zone = overview.get("zone")
    if isinstance(zone, dict) and zone.get("enabled") is False:
        return "Disabled"
    return "Online" if tables.is_online(overview.get("zoneInsight")) else "Offline"


def _overviews(client: ApiClient) -> list[dict[str, Any]]:
    try:
        return client.list_items("/zones+insights")
    except NotFoundError:
        raise CtlError(
            f"the control plane at {client.base_url} lists no zones (zones are kept by a "
            "global control plane)"
        ) from None


def _dataplane_counts(client: ApiClient) -> tuple[Counter[str], Counter[str]]:
    online: Counter[str] = Counter()
    total: Counter[str] = Counter()
    try:
        items = client.list_items("/dataplanes+insights")
    except NotFoundError:
        return online, total
    for item in items:
        zone = tables.zone_of(item)
        if zone:
            total[zone] += 1
            if tables.is_online(item.get("dataplaneInsight")):
                online[zone] += 1
    return online, total


def _latest(insight: Any) -> dict[str, Any] | None:
    """The subscription that connected last."""
    subs = insight.get("subscriptions") if isinstance(insight, dict) else None
    found = [s for s in subs or () if isinstance(s, dict)]
    epoch = datetime.min.replace(tzinfo=UTC)
    return max(
        reversed(found),
        key=lambda s: tables.parse_time(s.get("connectTime")) or epoch,
        default=None,
    )


def _cp_version(sub: dict[str, Any] | None) -> str:
    version = sub.get("version") if sub else None
    kuma_cp = version.get("kumaCp") if isinstance(version, dict) else None
    value = kuma_cp.get("version") if isinstance(kuma_cp, dict) else None
    return str(value) if value else tables.MISSING


def zone_rows(client: ApiClient, now: datetime | None = None, *, age: bool = False) -> str:
    """The zones table (``inspect``: with the zone's age)."""
    now = now or datetime.now(UTC)
    online, total = _dataplane_counts(client)
    rows = []
    for overview in _overviews(client):
        name = str(overview.get("name") or tables.MISSING)
        latest = _latest(overview.get("zoneInsight"))
        row = [
            name,
            zone_status(overview),
            tables.ago(latest.get("connectTime"), now) if latest else tables.MISSING,
            _cp_version(latest),
            f"{online[name]}/{total[name]}",
        ]
        if age:
            row.append(tables.age(overview.get("creationTime"), now))
        rows.append(row)
    return tables.render_table(INSPECT_ZONE_HEADERS if age else ZONE_HEADERS, rows)


def zone_overviews(client: ApiClient) -> dict[str, Any]:
    """``-o json|yaml``: Kuma's ZoneOverview list."""
    items = _overviews(client)
    return {"total": len(items), "items": items, "next": None}


# -- intermediate CAs --------------------------------------------------------------------


def zone_cas(client: ApiClient, zone: str, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    try:
        body = client.get_object(f"/zones/{segment(zone)}/ca")
    except NotFoundError:
        raise CtlError(f'zone "{zone}" not found (ask the global control plane)') from None
    rows = []
    for item in body.get("intermediates") or []:
        if not isinstance(item, dict):
            continue
        status = "revoked" if item.get("revoked") else ("live" if item.get("live") else "expired")
        rows.append(
            [
                zone,
                str(item.get("mesh") or tables.MISSING),
                str(item.get("serial") or tables.MISSING),
                tables.until(item.get("notAfter"), now),
                status,
            ]
        )
    text = tables.render_table(CA_HEADERS, rows)
    if body.get("refused"):
        text += f"zone {zone} gets no new intermediate CA until: kumadp ctl allow zone-ca\n"
    return text


def revoke_zone_ca(client: ApiClient, zone: str, mesh: str | None) -> str:
    body: dict[str, Any] = {"mesh": mesh} if mesh else {}
    try:
        resp = client.request("POST", f"/zones/{segment(zone)}/ca/revoke", json=body)
    except NotFoundError:
        raise CtlError(f'zone "{zone}" not found (ask the global control plane)') from None
    revoked = resp.json().get("revoked") or []
    where = f"mesh {mesh}" if mesh else "every mesh"
    lines = [f"revoked {len(revoked)} intermediate CA(s) of zone {zone} ({where}):"]
    lines += [f"  mesh {r.get('mesh')} serial {r.get('serial')}" for r in revoked]
    lines.append(f"zone {zone} gets no new one until: kumadp ctl allow zone-ca --zone {zone}")
    return "\n".join(lines) + "\n"


def allow_zone_ca(client: ApiClient, zone: str) -> str:
    try:
        client.request("POST", f"/zones/{segment(zone)}/ca/allow", json={})
    except NotFoundError:
        raise CtlError(f'zone "{zone}" not found (ask the global control plane)') from None
    return f"zone {zone} may get intermediate CAs again\n"


__all__ = [
    "CA_HEADERS",
    "INSPECT_ZONE_HEADERS",
    "ZONE_HEADERS",
    "allow_zone_ca",
    "revoke_zone_ca",
    "zone_cas",
    "zone_overviews",
    "zone_rows",
    "zone_status",
]
