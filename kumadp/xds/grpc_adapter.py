"""The only xDS code that touches grpc.aio: servicers that delegate to the protocol servers.

- ``add_ads_to_server``: Envoy's ADS, state of the world and/or delta (the other answers
  UNIMPLEMENTED);
- ``add_sds_to_server``: Envoy's SDS (``StreamSecrets``, ``FetchSecrets``) over a
  state-of-the-world server configured for secrets;
- ``serve_stream``: the one-line delegation any servicer method uses (KDS too);
- ``GrpcClientStream``: a client call as the ``DeltaClient`` wants it;
- roles inverted (KDS's zone-to-global stream: the side that dials serves resources):
  ``ServicerClientStream`` is a servicer call as the ``DeltaClient`` wants it, and
  ``CallServerStream`` a client call as the ``DeltaServer`` wants it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Generic, TypeAlias, TypeVar

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc

from kumadp.xds.delta import DeltaServer
from kumadp.xds.server import SotwServer
from kumadp.xds.stream import StreamRejected, XdsStream

log = logging.getLogger(__name__)

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Request: TypeAlias = discovery_pb2.DiscoveryRequest
Response: TypeAlias = discovery_pb2.DiscoveryResponse
DeltaRequest: TypeAlias = discovery_pb2.DeltaDiscoveryRequest
DeltaResponse: TypeAlias = discovery_pb2.DeltaDiscoveryResponse
Context: TypeAlias = "grpc.aio.ServicerContext[Request, Response]"
DeltaContext: TypeAlias = "grpc.aio.ServicerContext[DeltaRequest, DeltaResponse]"


class GrpcStream(Generic[Req, Resp]):
    """``XdsStream`` over a grpc.aio request iterator and servicer context."""

    def __init__(
        self, request_iterator: AsyncIterator[Req], context: grpc.aio.ServicerContext[Req, Resp]
    ) -> None:
        self._requests = request_iterator
        self._context = context
        self._metadata = {
            key: value
            for key, value in (context.invocation_metadata() or ())
            if isinstance(value, str)  # "-bin" keys carry bytes
        }

    @property
    def metadata(self) -> Mapping[str, str]:
        return self._metadata

    def requests(self) -> AsyncIterator[Req]:
        return self._requests

    async def send(self, response: Resp) -> None:
        await self._context.write(response)


async def serve_stream(
    handle: Callable[[XdsStream[Req, Resp]], Awaitable[None]],
    request_iterator: AsyncIterator[Req],
    context: grpc.aio.ServicerContext[Req, Resp],
    what: str,
) -> None:
    """Run ``handle`` (a server's ``handle_stream``) on a grpc.aio stream; a
    ``StreamRejected`` ends the call with its status."""
    try:
        await handle(GrpcStream(request_iterator, context))
    except StreamRejected as rejected:
        log.info("%s stream from %s rejected: %s", what, context.peer(), rejected.message)
        await context.abort(grpc.StatusCode[rejected.code.name], rejected.message)


class AdsServicer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    def __init__(self, sotw: SotwServer | None, delta: DeltaServer | None = None) -> None:
        self._sotw = sotw
        self._delta = delta

    async def StreamAggregatedResources(
        self, request_iterator: AsyncIterator[Request], context: Context
    ) -> None:
        if self._sotw is None:
            await context.abort(
                grpc.StatusCode.UNIMPLEMENTED, "only delta ADS is served (api_type DELTA_GRPC)"
            )
        else:
            await serve_stream(self._sotw.handle_stream, request_iterator, context, "ADS")

    async def DeltaAggregatedResources(
        self, request_iterator: AsyncIterator[DeltaRequest], context: DeltaContext
    ) -> None:
        if self._delta is None:
            await context.abort(
                grpc.StatusCode.UNIMPLEMENTED,
                "only state-of-the-world ADS is served (api_type GRPC)",
            )
        else:
            await serve_stream(self._delta.handle_stream, request_iterator, context, "delta ADS")


def add_ads_to_server(
    server: grpc.aio.Server, ads: SotwServer | None, delta: DeltaServer | None = None
) -> AdsServicer:
    """Register Envoy's ADS on a grpc.aio server (before ``server.start()``)."""
    servicer = AdsServicer(ads, delta)
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(servicer, server)
    return servicer


class SdsServicer(sds_pb2_grpc.SecretDiscoveryServiceServicer):  # type: ignore[misc]
    def __init__(self, sds: SotwServer) -> None:
        self._sds = sds

    async def StreamSecrets(
        self, request_iterator: AsyncIterator[Request], context: Context
    ) -> None:
        await serve_stream(self._sds.handle_stream, request_iterator, context, "SDS")

    async def FetchSecrets(self, request: Request, context: Context) -> Response:
        try:
            response = self._sds.fetch(request)
        except StreamRejected as rejected:
            await context.abort(grpc.StatusCode[rejected.code.name], rejected.message)
        if response is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "no such secret yet")
        return response

    async def DeltaSecrets(
        self, request_iterator: AsyncIterator[DeltaRequest], context: DeltaContext
    ) -> None:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED, "only state-of-the-world SDS (StreamSecrets) is served"
        )


def add_sds_to_server(server: grpc.aio.Server, sds: SotwServer) -> SdsServicer:
    """Register Envoy's SDS on a grpc.aio server (before ``server.start()``)."""
    servicer = SdsServicer(sds)
    sds_pb2_grpc.add_SecretDiscoveryServiceServicer_to_server(servicer, server)
    return servicer


class GrpcClientStream:
    """A grpc.aio stream-stream call as a ``DeltaClientStream``."""

    def __init__(self, call: grpc.aio.StreamStreamCall[DeltaRequest, DeltaResponse]) -> None:
        self._call = call

    async def send(self, request: DeltaRequest) -> None:
        await self._call.write(request)

    async def responses(self) -> AsyncIterator[DeltaResponse]:
        while True:
            response = await self._call.read()
            if response is grpc.aio.EOF:
                return
            yield response


class ServicerClientStream:
    """The requesting role on a servicer call (a ``DeltaClientStream``): the peer that
    dialled sends responses, this side answers with requests."""

    def __init__(
        self,
        responses: AsyncIterator[DeltaResponse],
        context: grpc.aio.ServicerContext[DeltaResponse, DeltaRequest],
    ) -> None:
        self._responses = responses
        self._context = context

    async def send(self, request: DeltaRequest) -> None:
        await self._context.write(request)

    def responses(self) -> AsyncIterator[DeltaResponse]:
        return self._responses


class CallServerStream:
    """The serving role on a client call (an ``XdsStream`` for the ``DeltaServer``): this
    side dialled, the peer sends the requests."""

    def __init__(
        self,
        call: grpc.aio.StreamStreamCall[DeltaResponse, DeltaRequest],
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        self._call = call
        self._metadata = dict(metadata or {})

    @property
    def metadata(self) -> Mapping[str, str]:
        return self._metadata

    async def requests(self) -> AsyncIterator[DeltaRequest]:
        while True:
            request = await self._call.read()
            if request is grpc.aio.EOF:
                return
            yield request

    async def send(self, response: DeltaResponse) -> None:
        await self._call.write(response)
