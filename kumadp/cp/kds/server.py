"""The global CP's KDS server (``--kds-port`` 5685, TLS): the three methods of
``kumadp.kds.v1.KDS``, registered generically (``kumadp/wire/kds.proto`` says why).

Glue only: who calls comes from the call's metadata (``ZoneIdentity``); ``ZoneRegistry``
says whether that zone CP may hold the zone (a refusal ends the call with ALREADY_EXISTS
and its reason); the protocol is ``kumadp.xds`` (a delta server per global -> zone stream,
a delta client per zone -> global stream, roles inverted on the zone's call); what is sent
is the ``StoreSource``'s, what is received goes through a ``GlobalReceiver``. A session
the registry ends (heartbeat timeout, taken over) ends its streams with ABORTED.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any, TypeAlias, TypeVar

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2

from kumadp.cp.kds.global_receiver import GlobalReceiver
from kumadp.cp.kds.relay import RelaySource, ZoneView
from kumadp.cp.kds.source import StoreSource
from kumadp.cp.kds.zones import Session, ZoneIdentity, ZoneRefused, ZoneRegistry
from kumadp.cp.server_tls import ServerCertificate
from kumadp.cp.store.base import Store
from kumadp.resources import ValidationError
from kumadp.resources.registry import ResourceType
from kumadp.resources.zones import check_zone_name
from kumadp.wire import kds as wire
from kumadp.wire.kds_pb2 import (
    IntermediateCARequest,
    IntermediateCAResponse,
    ZoneHealthCheckRequest,
    ZoneHealthCheckResponse,
)
from kumadp.xds.delta import DeltaServer, DeltaSource, Nack, NoopDeltaCallbacks
from kumadp.xds.delta_client import DeltaClient
from kumadp.xds.grpc_adapter import ServicerClientStream, serve_stream
from kumadp.xds.stream import Code, StreamRejected

log = logging.getLogger(__name__)

DeltaRequest: TypeAlias = discovery_pb2.DeltaDiscoveryRequest
DeltaResponse: TypeAlias = discovery_pb2.DeltaDiscoveryResponse
Tap = Callable[[str, bytes], None]  # (method, serialised message), every message both ways
# Hook for zone authentication (zone tokens): raise StreamRejected to refuse a call.
Authenticate = Callable[[ZoneIdentity, Mapping[str, str]], Awaitable[None]]
# Hook signing a zone's intermediate CA (zone name, request); raise StreamRejected to refuse.
SignIntermediate = Callable[[str, IntermediateCARequest], Awaitable[IntermediateCAResponse]]
M = TypeVar("M")
MAX_METADATA_VALUE = 253


def identity_of(metadata: Mapping[str, str], peer: str) -> ZoneIdentity:
    """The caller, from its metadata. Raises StreamRejected for a missing or bad zone name."""
    zone = metadata.get(wire.ZONE_METADATA, "")
    try:
        check_zone_name(zone, wire.ZONE_METADATA)
    except ValidationError as exc:
        raise StreamRejected(Code.INVALID_ARGUMENT, f"metadata {exc}") from None
    instance = metadata.get(wire.INSTANCE_METADATA) or peer
    return ZoneIdentity(
        zone=zone,
        instance=instance[:MAX_METADATA_VALUE],
        session=(metadata.get(wire.SESSION_METADATA) or instance)[:MAX_METADATA_VALUE],
        version=metadata.get(wire.VERSION_METADATA, "")[:MAX_METADATA_VALUE],
    )


def _metadata(context: grpc.aio.ServicerContext[Any, Any]) -> dict[str, str]:
    return {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}


class _Counting(NoopDeltaCallbacks):
    """Counts a global -> zone stream's responses, ACKs and NACKs in the ZoneInsight."""

    def __init__(self, zones: ZoneRegistry, session: Session) -> None:
        self._zones, self._session = zones, session

    def on_response_sent(self, node_id: str, response: DeltaResponse) -> None:
        self._zones.count(self._session, response.type_url, "responsesSent")

    def on_ack(self, node_id: str, type_url: str, version: str) -> None:
        self._zones.count(self._session, type_url, "responsesAcknowledged")

    def on_nack(self, node_id: str, rejected: Nack) -> None:
        self._zones.count(self._session, rejected.type_url, "responsesRejected")


class KdsServer:
    """Component: the gRPC server zone CPs dial."""

    name = "kds-server"

    def __init__(
        self,
        *,
        address: str,
        port: int,
        tls: ServerCertificate,
        store: Store,
        source: StoreSource,
        zones: ZoneRegistry,
        down: Sequence[ResourceType],
        up: Sequence[ResourceType],
        authenticate: Authenticate | None = None,
        sign_intermediate: SignIntermediate | None = None,
        tap: Tap | None = None,
        relay: RelaySource | None = None,
    ) -> None:
        self._address, self._port, self._tls = address, port, tls
        self._store, self._source, self._zones = store, source, zones
        self._relay = relay  # the zones' ingresses, passed on to the other zones
        self._down = [t.name for t in down] + list(relay.type_urls if relay else ())
        self._up = list(up)
        self._authenticate = authenticate
        self._sign_intermediate = sign_intermediate
        self._tap = tap
        self._node = base_pb2.Node(id="global")
        self.bound_port: int | None = None

    # -- the gRPC server -------------------------------------------------------------------
    def handler(self) -> grpc.GenericRpcHandler:
        methods = {
            wire.GLOBAL_TO_ZONE_METHOD: grpc.stream_stream_rpc_method_handler(
                self._global_to_zone,
                request_deserializer=self._decode(wire.GLOBAL_TO_ZONE_METHOD, DeltaRequest),
                response_serializer=self._encode(wire.GLOBAL_TO_ZONE_METHOD),
            ),
            wire.ZONE_TO_GLOBAL_METHOD: grpc.stream_stream_rpc_method_handler(
                self._zone_to_global,
                request_deserializer=self._decode(wire.ZONE_TO_GLOBAL_METHOD, DeltaResponse),
                response_serializer=self._encode(wire.ZONE_TO_GLOBAL_METHOD),
            ),
            wire.HEALTH_CHECK_METHOD: grpc.unary_unary_rpc_method_handler(
                self._health_check,
                request_deserializer=ZoneHealthCheckRequest.FromString,
                response_serializer=ZoneHealthCheckResponse.SerializeToString,
            ),
            wire.SIGN_INTERMEDIATE_METHOD: grpc.unary_unary_rpc_method_handler(
                self._sign,
                request_deserializer=self._decode(
                    wire.SIGN_INTERMEDIATE_METHOD, IntermediateCARequest
                ),
                response_serializer=self._encode(wire.SIGN_INTERMEDIATE_METHOD),
            ),
        }
        return grpc.method_handlers_generic_handler(wire.SERVICE, methods)

    def _decode(self, method: str, message: type[M]) -> Callable[[bytes], M]:
        parse: Callable[[bytes], M] = message.FromString  # type: ignore[attr-defined]

        def decode(data: bytes) -> M:
            if self._tap is not None:
                self._tap(method, data)
            return parse(data)

        return decode

    def _encode(self, method: str) -> Callable[[Any], bytes]:
        def encode(message: Any) -> bytes:
            data: bytes = message.SerializeToString()
            if self._tap is not None:
                self._tap(method, data)
            return data

        return encode

    async def run(self, stop: asyncio.Event) -> None:
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", wire.MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", wire.MAX_MESSAGE_BYTES),
                ("grpc.keepalive_time_ms", 15_000),
                ("grpc.keepalive_timeout_ms", 10_000),
                ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
                ("grpc.keepalive_permit_without_calls", 1),
            ]
        )
        server.add_generic_rpc_handlers((self.handler(),))
        chain = self._tls.cert_pem
        if self._tls.ca_pem and self._tls.ca_pem.strip() not in chain:
            chain = chain.rstrip(b"\n") + b"\n" + self._tls.ca_pem  # lets zones pin the CA
        credentials = grpc.ssl_server_credentials([(self._tls.key_pem, chain)])
        target = f"{self._address}:{self._port}"
        self.bound_port = server.add_secure_port(target, credentials)
        if not self.bound_port:
            raise OSError(f"cannot listen on {target} (KDS server)")
        await server.start()
        log.info("KDS server listening on %s:%d (TLS)", self._address, self.bound_port)
        try:
            await stop.wait()
        finally:
            await server.stop(grace=1.0)

    # -- the methods -----------------------------------------------------------------------
    async def _global_to_zone(
        self,
        requests: Any,
        context: grpc.aio.ServicerContext[DeltaRequest, DeltaResponse],
    ) -> None:
        session = await self._open(context)
        try:
            zone = session.identity.zone
            source: DeltaSource = self._source
            if self._relay is not None:
                source = ZoneView(self._source, self._relay, zone)
            server = DeltaServer(source, _Counting(self._zones, session), type_urls=self._down)
            what = f"KDS global-to-zone of zone {session.identity.zone}"
            await self._until_ended(
                session, serve_stream(server.handle_stream, requests, context, what), context
            )
        finally:
            self._zones.close_stream(session)

    async def _zone_to_global(
        self,
        responses: Any,
        context: grpc.aio.ServicerContext[DeltaResponse, DeltaRequest],
    ) -> None:
        session = await self._open(context)
        try:
            receiver = GlobalReceiver(self._store, self._up, session.identity.zone)

            def counted(type_url: str, accepted: bool) -> None:
                answer = "responsesAcknowledged" if accepted else "responsesRejected"
                self._zones.count(session, type_url, "responsesSent", answer)

            client = DeltaClient(
                self._node,
                [t.name for t in self._up],
                receiver,
                initial_versions=await receiver.initial_versions(),
                on_reply=counted,
            )
            stream = ServicerClientStream(responses, context)
            await self._until_ended(session, client.run(stream), context)
        finally:
            self._zones.close_stream(session)

    async def _health_check(
        self,
        request: ZoneHealthCheckRequest,
        context: grpc.aio.ServicerContext[ZoneHealthCheckRequest, ZoneHealthCheckResponse],
    ) -> ZoneHealthCheckResponse:
        identity = await self._identify(context)
        try:
            self._zones.heartbeat(identity)
        except ZoneRefused as exc:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(exc))
        response = ZoneHealthCheckResponse()
        response.interval.FromTimedelta(timedelta(seconds=self._zones.health_interval))
        return response

    async def _sign(
        self,
        request: IntermediateCARequest,
        context: grpc.aio.ServicerContext[IntermediateCARequest, IntermediateCAResponse],
    ) -> IntermediateCAResponse:
        """A zone's intermediate CA: only from the connection that holds the zone now."""
        identity = await self._identify(context)
        session = self._zones.session(identity.zone)
        if session is None or session.identity.session != identity.session:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"zone {identity.zone}: sign an intermediate CA over the connection that "
                "holds the zone (open the sync streams first)",
            )
        if self._sign_intermediate is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "no intermediate CAs here")
        assert self._sign_intermediate is not None
        try:
            return await self._sign_intermediate(identity.zone, request)
        except StreamRejected as rejected:
            log.warning(
                "KDS: intermediate CA of zone %s for mesh %s refused: %s",
                identity.zone, request.mesh, rejected.message,
            )  # fmt: skip
            await context.abort(grpc.StatusCode[rejected.code.name], rejected.message)
            raise

    # -- helpers ---------------------------------------------------------------------------
    async def _identify(self, context: grpc.aio.ServicerContext[Any, Any]) -> ZoneIdentity:
        metadata = _metadata(context)
        try:
            identity = identity_of(metadata, context.peer())
            if self._authenticate is not None:
                await self._authenticate(identity, metadata)
        except StreamRejected as rejected:
            log.warning("KDS call from %s refused: %s", context.peer(), rejected.message)
            await context.abort(grpc.StatusCode[rejected.code.name], rejected.message)
            raise
        return identity

    async def _open(self, context: grpc.aio.ServicerContext[Any, Any]) -> Session:
        identity = await self._identify(context)
        try:
            return await self._zones.open_stream(identity)
        except ZoneRefused as exc:
            log.warning("KDS: zone %s refused: %s", identity.zone, exc)
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(exc))
            raise

    @staticmethod
    async def _until_ended(
        session: Session, work: Awaitable[None], context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        """Run ``work`` (a stream) until it ends, or the registry ends the session."""
        task = asyncio.ensure_future(work)
        ended = asyncio.ensure_future(session.ended.wait())
        try:
            await asyncio.wait({task, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if not task.cancelled() and task.exception() is None:
            return
        if task.cancelled():  # the registry ended the session
            zone = session.identity.zone
            await context.abort(
                grpc.StatusCode.ABORTED, f"KDS connection of zone {zone} {session.reason}"
            )
        task.result()  # raise what the stream failed with


__all__ = ["Authenticate", "KdsServer", "SignIntermediate", "Tap", "identity_of"]
