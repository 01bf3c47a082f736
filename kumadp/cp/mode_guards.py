"""What each control-plane mode refuses, and what a zone CP adds to its dataplanes.

- A zone CP does not accept writes of what the global CP owns (``Sync.GLOBAL_TO_ZONE``:
  Mesh, policies): they are applied on the global CP and arrive over KDS. It stamps
  ``kuma.io/zone: <zone>`` on every inbound of its dataplanes (a dataplane claiming another
  zone is refused with the field's path).
- A global CP does not accept writes of what zones own (``Sync.ZONE_TO_GLOBAL``: its
  dataplanes are copies from the zones), and no dataplane connects to it: its bootstrap
  answers a 4xx and its DP port refuses ADS streams and agent calls with
  FAILED_PRECONDITION, all with ``GLOBAL_REFUSES_DATAPLANES``.

Domain code: the API maps ``WriteGuard``'s answers to HTTP, nothing here knows HTTP.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc

from kumadp.cp.bootstrap import BootstrapError, ErrorKind
from kumadp.cp.server_tls import ServerCertificate
from kumadp.resources.model import Dataplane
from kumadp.resources.registry import Model, ResourceType, Sync
from kumadp.resources.zone_proxies import ZoneEgress, ZoneIngress, in_zone
from kumadp.resources.zones import stamp_zone_tag

log = logging.getLogger(__name__)

GLOBAL_REFUSES_DATAPLANES = "global control plane: connect dataplanes to a zone control plane"


class WriteGuard:
    """Which API writes a mode refuses, and how a zone CP completes what it accepts."""

    def __init__(self, mode: str, zone: str | None = None) -> None:
        self.mode = mode
        self.zone = zone

    def refusal(self, kind: ResourceType) -> str | None:
        """Why ``kind`` may not be written (PUT or DELETE) here; None when it may."""
        if self.mode == "zone" and kind.sync is Sync.GLOBAL_TO_ZONE:
            return (
                f"zone control plane: {kind.name} is managed by the global control plane: "
                "apply it on the global control plane (zones receive it over KDS)"
            )
        if self.mode == "global" and kind.sync is Sync.ZONE_TO_GLOBAL:
            return (
                f"global control plane: {kind.name} resources belong to the zones: "
                "apply them on their zone control plane"
            )
        return None

    def admit(self, kind: ResourceType, model: Model) -> Model:
        """The resource to store for an accepted write; raises ``ValidationError``."""
        if self.zone is not None and isinstance(model, Dataplane):
            return stamp_zone_tag(model, self.zone)
        if self.zone is not None and isinstance(model, ZoneIngress | ZoneEgress):
            return in_zone(model, self.zone)  # a zone proxy is this zone's
        return model


class RefusingBootstrap:
    """The global CP's ``POST /bootstrap`` (a ``BootstrapHandler``): always refused."""

    async def handle(self, body: dict[str, Any], host: str) -> dict[str, Any]:
        raise BootstrapError(ErrorKind.INVALID, GLOBAL_REFUSES_DATAPLANES)


class _Refuse(grpc.GenericRpcHandler):
    """Every method of every service: FAILED_PRECONDITION with the reason. A streaming
    handler answers unary and streaming calls alike (on the wire they only differ in how
    many messages flow), and no message type is needed to refuse."""

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method = details.method  # type: ignore[attr-defined]

        async def refuse(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
            log.info("refused %s from %s: dataplanes connect to zones", method, context.peer())
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, GLOBAL_REFUSES_DATAPLANES)

        return grpc.stream_stream_rpc_method_handler(refuse)


class RefusingDpServer:
    """Component: the global CP's DP port, refusing ADS streams and agent-channel calls
    with a clear status instead of "connection refused"."""

    name = "dp-server"

    def __init__(self, *, address: str, port: int, tls: ServerCertificate | None) -> None:
        self._address, self._port, self._tls = address, port, tls
        self.bound_port: int | None = None

    async def run(self, stop: asyncio.Event) -> None:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((_Refuse(),))
        target = f"{self._address}:{self._port}"
        if self._tls is not None:
            credentials = grpc.ssl_server_credentials([(self._tls.key_pem, self._tls.cert_pem)])
            self.bound_port = server.add_secure_port(target, credentials)
        else:
            self.bound_port = server.add_insecure_port(target)
        if not self.bound_port:
            raise OSError(f"cannot listen on {target} (DP server)")
        await server.start()
        log.info("DP server on %s refuses dataplanes (global control plane)", target)
        try:
            await stop.wait()
        finally:
            await server.stop(grace=0.5)


__all__ = [
    "GLOBAL_REFUSES_DATAPLANES",
    "RefusingBootstrap",
    "RefusingDpServer",
    "WriteGuard",
]
