"""``kumadp ctl get control-planes``: the CP instances sharing a store (``GET
/control-planes``), which one leads, whether each is online."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kumadp.ctl import tables
from kumadp.ctl.client import ApiClient, CtlError, NotFoundError
from kumadp.ctl.resources import check_format, dump

NAMES = ("control-planes", "control-plane", "controlplanes", "cp", "cps")
HEADERS = ("ID", "LEADER", "STATUS", "DP SERVER", "API", "STARTED", "LAST HEARTBEAT")


def _row(item: dict[str, Any], now: datetime) -> list[str]:
    return [
        str(item.get("id", "")),
        "yes" if item.get("leader") else "no",
        "Online" if item.get("online") else "Offline",
        str(item.get("dpServer", "")),
        str(item.get("apiServer", "")),
        tables.ago(item.get("startTime"), now),
        tables.ago(item.get("heartbeatTime"), now),
    ]


def get_control_planes(client: ApiClient, output: str = "table") -> str:
    fmt = check_format(output)
    try:
        items = client.list_items("/control-planes")
    except NotFoundError:
        raise CtlError(
            f"the control plane at {client.base_url} does not serve /control-planes"
        ) from None
    if fmt != "table":
        return dump({"total": len(items), "items": items, "next": None}, fmt)
    now = datetime.now(UTC)
    return tables.render_table(HEADERS, [_row(item, now) for item in items])


__all__ = ["NAMES", "get_control_planes"]
