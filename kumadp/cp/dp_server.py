"""The CP's "DP server" on 5678, as Kuma's: ``POST /bootstrap`` over HTTPS (kuma-dp's default
``--cp-address https://HOST:5678``), Envoy's ADS stream and the agent channel over gRPC, all
with TLS (the CP's own certificate) on one port, shared by ``kumadp.cp.dp_front``: a router
that sends each connection, by the ALPN protocols its ClientHello offers, to the gRPC server
or to an HTTP/1.1 server (the ``http_app``), both on private Unix sockets.

This is glue: xDS stream events feed authentication, the dataplane lifecycle and the
reconciler. Protocol logic lives in ``kumadp.xds``; the agent channel in
``kumadp.cp.agent_service``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any

import grpc
import uvicorn
from google.protobuf.json_format import MessageToDict
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from kumadp.cp.agent_service import AgentChannelService
from kumadp.cp.auth import AuthError, DpAuth, token_from_metadata
from kumadp.cp.dp_front import Backends, DpFront
from kumadp.cp.insights import InsightStore
from kumadp.cp.reconcile import Reconciler
from kumadp.cp.registration import DataplaneRegistry, parse_node_id
from kumadp.cp.server_tls import ServerCertificate
from kumadp.cp.zone_proxies import zone_proxy_name
from kumadp.cp.zone_proxy_streams import ZoneProxyStreams
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
        zone_proxies: ZoneProxyStreams | None = None,
    ) -> None:
        self._lifecycle = lifecycle
        self._reconciler = reconciler
        self._auth = auth
        self._insights = insights
        self._zone_proxies = zone_proxies  # node ids ".<name>": a zone's ingress or egress
        self.nacks = 0
        self.acks = 0
        self.streams = 0

    async def on_stream_open(
        self, stream_id: int, node_id: str, node: Any, metadata: Mapping[str, str]
    ) -> None:
        zone_proxy = zone_proxy_name(node_id)
        if zone_proxy is not None:
            if self._zone_proxies is None:
                raise StreamRejected(
                    Code.FAILED_PRECONDITION,
                    "zone ingresses and egresses connect to a zone control plane",
                )
            await self._zone_proxies.on_stream_open(
                stream_id, zone_proxy, metadata, node_version(node)
            )
            self.streams += 1
            return
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
        zone_proxy = zone_proxy_name(node_id)
        if zone_proxy is not None:
            if self._zone_proxies is not None:
                self.streams = max(0, self.streams - 1)
                await self._zone_proxies.on_stream_closed(stream_id, zone_proxy)
            return
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
        if (proxy := zone_proxy_name(node_id)) is not None:
            if self._zone_proxies is not None:
                self._zone_proxies.on_ack(proxy, type_url)
            return
        if self._insights is not None and (node := parse_node_id(node_id)) is not None:
            self._insights.acked(node, type_url)
        if type_url == xds_types.LISTENER:
            key = parse_node_id(node_id)
            if key is not None:
                self._lifecycle.listeners_acked(key)

    def on_nack(self, node_id: str, type_url: str, version: str, error_detail: str) -> None:
        self.nacks += 1
        if (proxy := zone_proxy_name(node_id)) is not None:
            if self._zone_proxies is not None:
                self._zone_proxies.on_nack(proxy, type_url, version, error_detail)
            return
        if self._insights is not None and (key := parse_node_id(node_id)) is not None:
            self._insights.nacked(key, type_url, version, error_detail)

    def on_response_sent(self, node_id: str, type_url: str, version: str, nonce: str) -> None:
        if (proxy := zone_proxy_name(node_id)) is not None:
            if self._zone_proxies is not None:
                self._zone_proxies.on_response_sent(proxy, type_url)
            return
        if self._insights is not None and (key := parse_node_id(node_id)) is not None:
            self._insights.response_sent(key, type_url)


async def _no_bootstrap(scope: Scope, receive: Receive, send: Send) -> None:
    """The HTTP side of a DP server without a bootstrap handler."""
    body = {"title": "Not Found", "details": "this DP server serves no HTTP requests"}
    await JSONResponse(body, status_code=404)(scope, receive, send)


class _Uvicorn(uvicorn.Server):
    # Signals are handled once, by the command; uvicorn must not install its own.
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.contextmanager
def _private_dir() -> Generator[Path, None, None]:
    """A 0700 directory for the private sockets (and the TLS files uvicorn reads)."""
    path = Path(tempfile.mkdtemp(prefix="kumadp-dp-server-"))
    try:
        os.chmod(path, 0o700)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class DpServer:
    """Component: the DP port (``dp_front``) and the two servers behind it."""

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
        http_app: ASGIApp | None = None,
        zone_proxies: ZoneProxyStreams | None = None,
    ) -> None:
        self._address = address
        self._port = port
        self._tls = tls
        self.callbacks = XdsCallbacks(lifecycle, reconciler, auth, insights, zone_proxies)
        self._ads = AdsServer(cache, self.callbacks)
        self._agent = agent_channel
        self._http_app = http_app or _no_bootstrap
        self.bound_port: int | None = None
        self.front: DpFront | None = None

    def _grpc_server(self, socket: Path) -> grpc.aio.Server:
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
        target = f"unix:{socket}"
        if self._tls is not None:
            credentials = grpc.ssl_server_credentials([(self._tls.key_pem, self._tls.cert_pem)])
            bound = server.add_secure_port(target, credentials)
        else:
            bound = server.add_insecure_port(target)
        if not bound:
            raise OSError(f"cannot listen on {target} (DP server, gRPC)")
        return server

    def _http_server(self, directory: Path) -> _Uvicorn:
        tls: dict[str, Any] = {}
        if self._tls is not None:
            cert, key = directory / "tls.crt", directory / "tls.key"
            for path, data in ((cert, self._tls.cert_pem), (key, self._tls.key_pem)):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
            tls = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
        config = uvicorn.Config(
            self._http_app,
            uds=str(directory / "http.sock"),
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
            **tls,
        )
        return _Uvicorn(config)

    async def run(self, stop: asyncio.Event) -> None:
        with _private_dir() as directory:
            grpc_socket, http_socket = directory / "grpc.sock", directory / "http.sock"
            server = self._grpc_server(grpc_socket)
            await server.start()
            http = self._http_server(directory)
            serving = asyncio.create_task(http.serve(), name="dp-server-http")
            front = self.front = DpFront(
                Backends(str(http_socket), str(grpc_socket)), tls=bool(self._tls)
            )
            try:
                while not http.started:
                    if serving.done():
                        serving.result()
                        raise OSError("the DP server's HTTP side did not start")
                    await asyncio.sleep(0.01)
                target = f"{self._address}:{self._port}"
                try:
                    self.bound_port = await front.serve(self._address, self._port)
                except OSError as exc:
                    raise OSError(
                        f"cannot listen on {target} (DP server): {exc.strerror or exc}"
                    ) from exc
                log.info(
                    "DP server (bootstrap over HTTPS, ADS + agent channel over gRPC) listening on "
                    "%s:%d (%s)",
                    self._address,
                    self.bound_port,
                    "TLS" if self._tls else "plaintext",
                )
                await stop.wait()
            finally:
                front.close()
                http.should_exit = True
                await server.stop(grace=1.0)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(serving, 3)
                await front.wait_closed()
