"""Answers the control plane's reads of this proxy's Envoy admin API (Kuma's
``/meshes/{mesh}/dataplanes/{name}/xds``, ``/stats``, ``/clusters``).

The request comes down the ``Watch`` stream; the answer goes back with ``AdminReply``. Only
``GET`` of ``ALLOWED_PATHS`` is served, whatever the request asks: the CP can read Envoy's
config and counters, never change them (no ``/quitquitquit``, no ``/drain_listeners``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlsplit

from kumadp.agent.admin import AdminError, EnvoyAdmin
from kumadp.agent.cp_watch import CpLink

log = logging.getLogger(__name__)

ALLOWED_PATHS = frozenset({"/config_dump", "/stats", "/clusters"})
MAX_BODY = 8 * 1024 * 1024  # a config dump of a big mesh is a few MiB


class AdminRelay:
    """``on_request`` is the ``CpWatch`` callback; each request is answered in a task."""

    def __init__(self, link: CpLink, admin: EnvoyAdmin, timeout: float = 5.0) -> None:
        self._link = link
        self._admin = admin
        self._timeout = timeout
        self._tasks: set[asyncio.Task[None]] = set()
        self.answered = 0

    def on_request(self, request: Any) -> None:
        task = asyncio.get_running_loop().create_task(self._answer(request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def read(self, path: str) -> tuple[int, bytes, str, str]:
        """(status, body, content type, error) of ``GET path`` on Envoy's admin API."""
        parts = urlsplit(path)
        if parts.scheme or parts.netloc or parts.path not in ALLOWED_PATHS:
            allowed = ", ".join(sorted(ALLOWED_PATHS))
            return 0, b"", "", f"path {parts.path!r} is not served (only {allowed})"
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            response = await self._admin.get(target)
        except AdminError as exc:
            return 0, b"", "", str(exc)
        body = response.content
        if len(body) > MAX_BODY:
            return 0, b"", "", f"Envoy's answer is larger than {MAX_BODY} bytes"
        return response.status_code, body, response.headers.get("content-type", ""), ""

    async def _answer(self, request: Any) -> None:
        import grpc

        from kumadp.wire import agent_pb2

        status, body, content_type, error = await self.read(request.path)
        reply = agent_pb2.AdminResponse(
            mesh=self._link.mesh,
            name=self._link.name,
            id=request.id,
            status=status,
            body=body,
            content_type=content_type,
            error=error,
        )
        try:
            await self._link.stub().AdminReply(
                reply, timeout=self._timeout, metadata=self._link.metadata
            )
        except grpc.aio.AioRpcError as exc:
            log.warning("could not answer the CP's admin request: %s", exc.details())
            return
        self.answered += 1

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


__all__ = ["ALLOWED_PATHS", "AdminRelay"]
