"""``GET /control-planes``: the control plane instances sharing this one's store.

``{total, items, next}``; each item ``{id, leader, online, dpServer, apiServer, mode,
version, startTime, heartbeatTime}``, the instance answering first. ``leader`` comes from the
leader lease as the store has it right now; ``online``: its heartbeat is recent.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from kumadp.cp.api.bodies import format_time
from kumadp.cp.election import Election
from kumadp.cp.instances import Instances


def control_plane_routes(instances: Instances, election: Election) -> list[BaseRoute]:
    async def list_instances(request: Request) -> Response:
        leader = await election.leader_id()
        items: list[dict[str, Any]] = []
        for info, live in await instances.all():
            item: dict[str, Any] = {
                "id": info.id,
                "leader": info.id == leader,
                "online": live,
                "dpServer": info.dp_server,
                "apiServer": info.api,
                "mode": info.mode,
                "version": info.version,
            }
            if info.started is not None:
                item["startTime"] = format_time(info.started)
            if info.heartbeat is not None:
                item["heartbeatTime"] = format_time(info.heartbeat)
            items.append(item)
        return JSONResponse({"total": len(items), "items": items, "next": None})

    return [Route("/control-planes", list_instances, methods=["GET"])]


__all__ = ["control_plane_routes"]
