"""The agent channel (``kumadp.agent.v1.AgentChannel``) on the DP server: Leave,
SignCertificate, Watch and ReportInsight, each authenticated with the dataplane token."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc

from kumadp.cp.agent_hub import AgentHub
from kumadp.cp.auth import AuthError, DpAuth, allowed_services, token_from_metadata
from kumadp.cp.ca import CAError, MeshCAs
from kumadp.cp.certs import SigningError, sign_dataplane_csr
from kumadp.cp.insights import InsightStore
from kumadp.cp.registration import DataplaneRegistry
from kumadp.cp.store.base import Store
from kumadp.cp.zone_proxies import ZoneProxies
from kumadp.resources import ValidationError, parse_dataplane, parse_mesh
from kumadp.resources.model import DATAPLANE_TYPE, MESH_TYPE
from kumadp.resources.safe_load import load_json
from kumadp.wire import agent_pb2, agent_pb2_grpc

log = logging.getLogger(__name__)

MAX_INSIGHT_BYTES = 64 * 1024  # an agent's report is a few KiB


class AgentChannelService(agent_pb2_grpc.AgentChannelServicer):
    def __init__(
        self,
        *,
        store: Store,
        registrations: DataplaneRegistry,
        auth: DpAuth,
        cas: MeshCAs,
        hub: AgentHub,
        refresh_agent_state: Callable[[str], Awaitable[None]],
        insights: InsightStore | None = None,
        zone_proxies: ZoneProxies | None = None,
    ) -> None:
        self._store = store
        self._zone_proxies = zone_proxies  # mesh "": a zone ingress or egress (zone token)
        self._registrations = registrations
        self._auth = auth
        self._cas = cas
        self._hub = hub
        self._refresh = refresh_agent_state
        self._insights = insights
        self.signed = 0
        self.insight_reports = 0

    async def _authenticate(
        self, context: grpc.aio.ServicerContext, mesh: str, name: str
    ) -> set[str] | None:
        metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        if not mesh and name and self._zone_proxies is not None:
            await self._authenticate_zone_proxy(context, name, metadata)
            return None
        if not mesh or not name:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "mesh and name are required")
        try:
            claims = await self._auth.check(token_from_metadata(metadata), mesh, name)
        except AuthError as exc:
            log.warning("agent channel: %s", exc)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        return allowed_services(claims)

    async def _authenticate_zone_proxy(
        self, context: grpc.aio.ServicerContext, name: str, metadata: dict[str, str]
    ) -> None:
        assert self._zone_proxies is not None
        proxy_type = await self._zone_proxies.proxy_type_of(name)
        if proxy_type is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f'zone proxy ".{name}" is not known to this zone'
            )
        assert proxy_type is not None
        try:
            await self._zone_proxies.authenticate(token_from_metadata(metadata), proxy_type, name)
        except AuthError as exc:
            log.warning("agent channel: %s", exc)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))

    async def Leave(
        self, request: agent_pb2.LeaveRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.LeaveResponse:
        await self._authenticate(context, request.mesh, request.name)
        if not request.mesh and self._zone_proxies is not None:
            return agent_pb2.LeaveResponse(removed=await self._zone_proxies.leave(request.name))
        removed = await self._registrations.leave((request.mesh, request.name))
        return agent_pb2.LeaveResponse(removed=removed)

    async def SignCertificate(
        self, request: agent_pb2.SignCertificateRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.SignCertificateResponse:
        mesh_name, name = request.mesh, request.name
        services = await self._authenticate(context, mesh_name, name)
        stored_dp = await self._store.get(DATAPLANE_TYPE, mesh_name, name)
        stored_mesh = await self._store.get(MESH_TYPE, "", mesh_name)
        if stored_dp is None or stored_mesh is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"dataplane {mesh_name}.{name} is not registered"
            )
        assert stored_dp is not None and stored_mesh is not None
        try:
            mesh = parse_mesh(stored_mesh.spec)
            dataplane = parse_dataplane(stored_dp.spec)
        except ValidationError as exc:  # pragma: no cover - the store only holds valid data
            await context.abort(grpc.StatusCode.INTERNAL, f"stored resource is invalid: {exc}")
            raise
        try:
            ca = await self._cas.ca_for(mesh)
        except CAError as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
            raise
        if ca is None:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, f'mTLS is not enabled on mesh "{mesh_name}"'
            )
        assert ca is not None
        try:
            # RSA CAs sign in milliseconds: keep the event loop free.
            signed = await asyncio.to_thread(
                sign_dataplane_csr,
                ca,
                mesh,
                dataplane,
                request.csr_pem,
                allowed_services=services,
            )
        except SigningError as exc:
            log.warning("refused to sign a certificate for %s.%s: %s", mesh_name, name, exc)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
            raise
        self.signed += 1
        log.info(
            "signed a certificate for %s.%s (%s), valid until %s",
            mesh_name,
            name,
            ", ".join(signed.uris),
            signed.not_after.isoformat(),
        )
        return agent_pb2.SignCertificateResponse(
            certificate_pem=signed.certificate_pem,
            ca_bundle_pem=signed.ca_bundle_pem,
            backend=signed.backend,
            not_before_unix=int(signed.not_before.timestamp()),
            not_after_unix=int(signed.not_after.timestamp()),
            crl_pem=signed.crl_pem,
        )

    async def Watch(
        self, request: agent_pb2.WatchRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[agent_pb2.AgentUpdate]:
        await self._authenticate(context, request.mesh, request.name)
        await self._refresh(request.mesh)
        async for update in self._hub.watch(request.mesh, request.name, list(request.features)):
            yield update

    async def ReportInsight(
        self, request: agent_pb2.InsightReport, context: grpc.aio.ServicerContext
    ) -> agent_pb2.InsightAck:
        await self._authenticate(context, request.mesh, request.name)
        if self._insights is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "insights are not kept here")
        assert self._insights is not None
        if len(request.insight_json.encode()) > MAX_INSIGHT_BYTES:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"insight_json: larger than {MAX_INSIGHT_BYTES} bytes",
            )
        try:
            report = load_json(request.insight_json)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"insight_json: {exc}")
            raise
        if not isinstance(report, dict):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "insight_json: must be a JSON object"
            )
        if await self._store.get(DATAPLANE_TYPE, request.mesh, request.name) is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"dataplane {request.mesh}.{request.name} is not registered",
            )
        self._insights.report((request.mesh, request.name), report)
        self.insight_reports += 1
        return agent_pb2.InsightAck()

    async def AdminReply(
        self, request: agent_pb2.AdminResponse, context: grpc.aio.ServicerContext
    ) -> agent_pb2.AdminAck:
        await self._authenticate(context, request.mesh, request.name)
        if not self._hub.answer_admin(request.mesh, request.name, request):
            log.debug(
                "admin reply %s of %s.%s: no request waits for it",
                request.id,
                request.mesh,
                request.name,
            )
        return agent_pb2.AdminAck()
