"""The only code that touches grpc.aio for ADS: a servicer delegating to ``AdsServer``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from kumadp.xds.server import AdsServer, StreamRejected

log = logging.getLogger(__name__)


class _GrpcStream:
    """``AdsStream`` over a grpc.aio request iterator and servicer context."""

    def __init__(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest],
        context: grpc.aio.ServicerContext[
            discovery_pb2.DiscoveryRequest, discovery_pb2.DiscoveryResponse
        ],
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

    def requests(self) -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
        return self._requests

    async def send(self, response: discovery_pb2.DiscoveryResponse) -> None:
        await self._context.write(response)


class AdsServicer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    def __init__(self, ads: AdsServer) -> None:
        self._ads = ads

    async def StreamAggregatedResources(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest],
        context: grpc.aio.ServicerContext[
            discovery_pb2.DiscoveryRequest, discovery_pb2.DiscoveryResponse
        ],
    ) -> None:
        try:
            await self._ads.handle_stream(_GrpcStream(request_iterator, context))
        except StreamRejected as rejected:
            log.info("ADS stream from %s rejected: %s", context.peer(), rejected.message)
            await context.abort(rejected.code, rejected.message)

    async def DeltaAggregatedResources(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest],
        context: grpc.aio.ServicerContext[
            discovery_pb2.DeltaDiscoveryRequest, discovery_pb2.DeltaDiscoveryResponse
        ],
    ) -> None:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED, "only state-of-the-world ADS is served (api_type GRPC)"
        )


def add_ads_to_server(server: grpc.aio.Server, ads: AdsServer) -> AdsServicer:
    """Register the ADS service on a grpc.aio server (before ``server.start()``)."""
    servicer = AdsServicer(ads)
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(servicer, server)
    return servicer
