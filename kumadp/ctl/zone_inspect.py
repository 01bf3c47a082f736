"""``kumadp ctl inspect zoneingresses|zoneegresses``: each proxy's zone, status and last
connection, and for an ingress the services it makes available to the other zones."""

from __future__ import annotations

from datetime import UTC, datetime

from kumadp.ctl import tables
from kumadp.ctl import zone_proxies as zp
from kumadp.ctl.client import ApiClient, CtlError, NotFoundError
from kumadp.ctl.resources import check_format, dump


def inspect_zone_proxies(
    client: ApiClient, proxy_type: str, *, output: str = "table", now: datetime | None = None
) -> str:
    """``inspect zoneingresses`` / ``inspect zoneegresses``."""
    fmt = check_format(output)
    path = "/zoneingresses+insights" if proxy_type == "ingress" else "/zoneegressoverviews"
    try:
        items = client.list_items(path)
    except NotFoundError:
        raise CtlError(
            f"the control plane at {client.base_url} does not serve {path} (zone ingresses "
            "and egresses are listed by zone and global control planes)"
        ) from None
    if fmt != "table":
        return dump({"total": len(items), "items": items, "next": None}, fmt)
    moment = now or datetime.now(UTC)
    rows = []
    for item in items:
        key = "zoneIngress" if proxy_type == "ingress" else "zoneEgress"
        spec, insight = item.get(key) or {}, item.get(f"{key}Insight") or {}
        status = "Online" if tables.is_online(insight) else "Offline"
        common = [
            zp.zone(item, spec),
            zp.display_name(item),
            status,
            zp.last_connected(insight, moment),
        ]
        if proxy_type == "ingress":
            net = spec.get("networking")
            advertised = zp.address(net, "advertisedAddress", "advertisedPort")
            rows.append([*common, advertised, zp.services_cell(spec.get("availableServices"))])
        else:
            rows.append([*common, zp.address(spec.get("networking"))])
    headers = zp.INSPECT_INGRESS_HEADERS if proxy_type == "ingress" else zp.INSPECT_EGRESS_HEADERS
    return tables.render_table(headers, sorted(rows))


__all__ = ["inspect_zone_proxies"]
