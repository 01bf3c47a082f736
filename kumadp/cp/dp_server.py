"""The CP's "DP server" on 5678: Envoy's ADS stream and the agent channel, on one gRPC server
with TLS (the CP's own certificate).

This is glue: xDS stream events feed authentication, the dataplane lifecycle and the
reconciler. Protocol logic lives in ``kumadp.xds``; the agent channel in
``kumadp.cp.agent_service``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from kumadp.cp.agent_service import AgentChannelService
from kumadp.cp.auth import AuthError, DpAuth, token_from_metadata
from kumadp.cp.insights import InsightStore
from kumadp.cp.reconcile import Reconciler
from kumadp.cp.registration import DataplaneRegistry, parse_node_id
from kumadp.cp.server_tls import ServerCertificate
from kumadp.wire import agent_pb2_grpc
from kumadp.xds import types as xds_types
from kumadp.xds.cache import SnapshotCache
from kumadp.xds.grpc_adapter import add_ads_to_server
from kumadp.xds.server import AdsServer
from kumadp.xds.stream import Code, StreamRejected

log = logging.getLogger(__name__)


def node_version(node: Any) -> dict[str, Any]:
    """``version`` ({kumaDp, envoy}) from the Envoy node metadata the bootstrap set."""
    try:
        metadata = MessageToDict(node.metadata) if node is not None else {}
    except Exception:  # pragma: no cover - defensive: metadata is a Struct
        return {}
    version = metadata.get("version")
    return version if isinstance(version, dict) else {}


def node_resource(node: Any) -> str:
    """``dataplane.resource`` (the resource as JSON) from the Envoy node metadata."""
    try:
        metadata = MessageToDict(node.metadata) if node is not None else {}
    except Exception:  # pragma: no cover - defensive: metadata is a Struct
        return ""
    resource = metadata.get("dataplane.resource")
    return resource if isinstance(resource, str) else ""


def node_features(node: Any) -> frozenset[str]:
    """``features`` from the Envoy node metadata the bootstrap set."""
    try:
        metadata = MessageToDict(node.metadata) if node is not None else {}
    except Exception:  # pragma: no cover - defensive: metadata is a Struct
        return frozenset()
    features = metadata.get("features") or []
    return frozenset(f for f in features if isinstance(f, str))


class XdsCallbacks:
    """Connects ADS stream events to authentication, the lifecycle and the reconciler."""

    def __init__(
        self,
        lifecycle: DataplaneRegistry,
        reconciler: Reconciler,
        auth: DpAuth | None = None,
        insights: InsightStore | None = None,
    ) -> None:
        self._lifecycle = lifecycle
        self._reconciler = reconciler
        self._auth = auth
        self._insights = insights
        self.nacks = 0
        self.acks = 0
        self.streams = 0

    async def on_stream_open(
        self, stream_id: int, node_id: str, node: Any, metadata: Mapping[str, str]
    ) -> None:
        key = parse_node_id(node_id)
        if key is None:
            raise StreamRejected(
                Code.INVALID_ARGUMENT,
                f'node id "{node_id}" is not "<mesh>.<name>"',
            )
        if self._auth is not None:
            try:
                await self._auth.check(token_from_metadata(metadata), *key)
            except AuthError as exc:
                log.warning("xDS stream of %s refused: %s", node_id, exc)
                raise StreamRejected(Code.UNAUTHENTICATED, str(exc)) from exc
        self._lifecycle.stream_opened(key)
        try:
            known = await self._reconciler.node_connected(key, node_features(node))
            if not known and await self._lifecycle.restore(key, node_resource(node)):
                known = await self._reconciler.node_connected(key, node_features(node))
        except BaseException:
            await self.on_stream_closed(stream_id, node_id)
            raise
        if not known:
            await self.on_stream_closed(stream_id, node_id)
            raise StreamRejected(
                Code.NOT_FOUND,
                f"dataplane {node_id} is not known to this control plane (bootstrap first)",
            )
        self.streams += 1
        if self._insights is not None:
            self._insights.stream_opened(stream_id, key, node_version(node))
        log.info("xDS stream %d opened by %s", stream_id, node_id)

    async def on_stream_closed(self, stream_id: int, node_id: str) -> None:
        key = parse_node_id(node_id)
        if key is None:
            return
        self.streams = max(0, self.streams - 1)
        if self._insights is not None:
            self._insights.stream_closed(stream_id)
        self._lifecycle.stream_closed(key)
        self._reconciler.node_disconnected(key)
        log.info("xDS stream %d of %s closed", stream_id, node_id)

    def on_ack(self, node_id: str, type_url: str, version: str) -> None:
        self.acks += 1
        if self._insights is not None and (node := parse_node_id(node_id)) is not None:
            self._insights.acked(node, type_url)
        if type_url == xds_types.LISTENER:
            key = parse_node_id(node_id)
            if key is not None:
                self._lifecycle.listeners_acked(key)

    def on_nack(self, node_id: str, type_url: str, version: str, error_detail: str) -> None:
        self.nacks += 1
        if self._insights is not None and (key := parse_node_id(node_id)) is not None:
            self._insights.nacked(key, type_url, version, error_detail)

    def on_response_sent(self, node_id: str, type_url: str, version: str, nonce: str) -> None:
        if self._insights is not None and (key := parse_node_id(node_id)) is not None:
            self._insights.response_sent(key, type_url)


class DpServer:
    """Component: the gRPC server on the DP port."""

    name = "dp-server"

    def __init__(
        self,
        *,
        address: str,
        port: int,
        cache: SnapshotCache,
        lifecycle: DataplaneRegistry,
        reconciler: Reconciler,
        agent_channel: AgentChannelService,
        auth: DpAuth | None = None,
        tls: ServerCertificate | None = None,
        insights: InsightStore | None = None,
    ) -> None:
        self._address = address
        self._port = port
        self._tls = tls
        self.callbacks = XdsCallbacks(lifecycle, reconciler, auth, insights)
        self._ads = AdsServer(cache, self.callbacks)
        self._agent = agent_channel
        self.bound_port: int | None = None

    async def run(self, stop: asyncio.Event) -> None:
        server = grpc.aio.server(
            options=[
                ("grpc.keepalive_time_ms", 30_000),
                ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.max_concurrent_streams", 10_000),
            ]
        )
        add_ads_to_server(server, self._ads)
        agent_pb2_grpc.add_AgentChannelServicer_to_server(self._agent, server)
        target = f"{self._address}:{self._port}"
        if self._tls is not None:
            credentials = grpc.ssl_server_credentials([(self._tls.key_pem, self._tls.cert_pem)])
            self.bound_port = server.add_secure_port(target, credentials)
        else:
            self.bound_port = server.add_insecure_port(target)
        if not self.bound_port:
            raise OSError(f"cannot listen on {target} (DP server)")
        await server.start()
        log.info(
            "DP server (ADS + agent channel) listening on %s (%s)",
            target,
            "TLS" if self._tls else "plaintext",
        )
        try:
            await stop.wait()
        finally:
            await server.stop(grace=1.0)
