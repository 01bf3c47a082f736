"""A simulated xDS client: speaks state-of-the-world ADS like an Envoy would, without Envoy.

For control-plane benchmarks (hundreds of "dataplanes" in one Python process) and for
poking at a CP by hand::

    python -m testkit.ads_client --target 127.0.0.1:5678 --ca-cert ca.pem \
        --node default.web-1 [--token-file web-1.token]

Per stream it sends the node id ``<mesh>.<name>`` (and the ``authorization`` metadata when it
has a token), asks for CDS and LDS, then EDS for the EDS clusters it got and RDS for the route
configurations its listeners load, and ACKs every response (NACKs nothing: it does not check
the config). It records when each type first (and last) arrived, keeps the latest endpoints
of every cluster, and lets a caller wait for an endpoint to appear.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Iterable
from pathlib import Path

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from kumadp.xds import types

_HCM_URL = "type.googleapis.com/" + hcm_pb2.HttpConnectionManager.DESCRIPTOR.full_name

Endpoint = tuple[str, int]


def channel(target: str, ca_pem: bytes | None = None, *, shared: bool = False) -> grpc.aio.Channel:
    """A channel to the CP's DP server (TLS when ``ca_pem`` is given). Unless ``shared``, the
    channel gets its own connection: gRPC otherwise shares one among channels with the same
    target and options, and a benchmark of N dataplanes must hold N connections."""
    options: list[tuple[str, int | str]] = [("grpc.max_receive_message_length", 64 << 20)]
    if not shared:
        options.append(("grpc.use_local_subchannel_pool", 1))
    if ca_pem is None:
        return grpc.aio.insecure_channel(target, options=options)
    credentials = grpc.ssl_channel_credentials(root_certificates=ca_pem)
    return grpc.aio.secure_channel(target, credentials, options=options)


class AdsClient:
    """One simulated dataplane: ``await run(channel)`` until cancelled or the CP ends it."""

    def __init__(self, node_id: str, *, token: str | None = None) -> None:
        self.node_id = node_id
        self.metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ()
        )
        self.started: float | None = None  # monotonic: the stream was opened
        self.first: dict[str, float] = {}  # type URL -> first response (monotonic)
        self.last: dict[str, float] = {}  # type URL -> latest response (monotonic)
        self.responses: dict[str, int] = {}
        self.versions: dict[str, str] = {}
        self.clusters: set[str] = set()
        self.listeners: set[str] = set()
        self.routes: set[str] = set()
        self.endpoints: dict[str, set[Endpoint]] = {}  # cluster -> its endpoints, latest
        self.complete = asyncio.Event()  # everything of the initial snapshot has arrived
        self.complete_at: float | None = None
        self._eds_names: tuple[str, ...] = ()
        self._rds_names: tuple[str, ...] = ()
        self._nonces: dict[str, str] = {}
        self._watches: list[tuple[str, Endpoint, asyncio.Future[float]]] = []

    # -- what callers use --------------------------------------------------------------
    def watch_endpoint(self, cluster: str, endpoint: Endpoint) -> asyncio.Future[float]:
        """A future set to the arrival time (monotonic) of the first EDS response from now
        on in which ``cluster`` has ``endpoint``."""
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._watches.append((cluster, endpoint, future))
        return future

    async def run(self, chan: grpc.aio.Channel) -> None:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(chan)
        call = stub.StreamAggregatedResources(metadata=self.metadata)
        self.started = time.monotonic()
        node = base_pb2.Node(id=self.node_id, user_agent_name="kumadp-ads-client")
        await call.write(discovery_pb2.DiscoveryRequest(node=node, type_url=types.CLUSTER))
        await call.write(discovery_pb2.DiscoveryRequest(type_url=types.LISTENER))
        try:
            while True:
                response = await call.read()
                if response is grpc.aio.EOF:
                    return
                for request in self.on_response(response, time.monotonic()):
                    await call.write(request)
        finally:
            call.cancel()

    # -- the protocol ------------------------------------------------------------------
    def on_response(
        self, response: discovery_pb2.DiscoveryResponse, now: float
    ) -> list[discovery_pb2.DiscoveryRequest]:
        """Record ``response``; the requests to send back (its ACK, maybe new subscriptions)."""
        url = response.type_url
        self.first.setdefault(url, now)
        self.last[url] = now
        self.responses[url] = self.responses.get(url, 0) + 1
        self.versions[url] = response.version_info
        self._nonces[url] = response.nonce
        out: list[discovery_pb2.DiscoveryRequest] = []
        if url == types.CLUSTER:
            out.append(self._ack(response, ()))
            eds = self._on_clusters(response.resources)
            if eds != self._eds_names:
                self._eds_names = eds
                out.append(self._subscribe(types.ENDPOINT, eds))
        elif url == types.LISTENER:
            out.append(self._ack(response, ()))
            rds = self._on_listeners(response.resources)
            if rds != self._rds_names:
                self._rds_names = rds
                out.append(self._subscribe(types.ROUTE, rds))
        elif url == types.ENDPOINT:
            self._on_endpoints(response.resources, now)
            out.append(self._ack(response, self._eds_names))
        elif url == types.ROUTE:
            self.routes = set()
            for any_msg in response.resources:
                route = route_pb2.RouteConfiguration()
                any_msg.Unpack(route)
                self.routes.add(route.name)
            out.append(self._ack(response, self._rds_names))
        else:
            out.append(self._ack(response, ()))
        self._check_complete(now)
        return out

    def _ack(
        self, response: discovery_pb2.DiscoveryResponse, names: Iterable[str]
    ) -> discovery_pb2.DiscoveryRequest:
        return discovery_pb2.DiscoveryRequest(
            version_info=response.version_info,
            response_nonce=response.nonce,
            type_url=response.type_url,
            resource_names=list(names),
        )

    def _subscribe(self, url: str, names: tuple[str, ...]) -> discovery_pb2.DiscoveryRequest:
        return discovery_pb2.DiscoveryRequest(
            version_info=self.versions.get(url, ""),
            response_nonce=self._nonces.get(url, ""),
            type_url=url,
            resource_names=list(names),
        )

    def _on_clusters(self, resources: Iterable[object]) -> tuple[str, ...]:
        self.clusters = set()
        eds: set[str] = set()
        for any_msg in resources:
            cluster = cluster_pb2.Cluster()
            any_msg.Unpack(cluster)  # type: ignore[attr-defined]
            self.clusters.add(cluster.name)
            if cluster.type == cluster_pb2.Cluster.EDS:
                eds.add(cluster.eds_cluster_config.service_name or cluster.name)
        return tuple(sorted(eds))

    def _on_listeners(self, resources: Iterable[object]) -> tuple[str, ...]:
        self.listeners = set()
        rds: set[str] = set()
        for any_msg in resources:
            listener = listener_pb2.Listener()
            any_msg.Unpack(listener)  # type: ignore[attr-defined]
            self.listeners.add(listener.name)
            for chain in listener.filter_chains:
                for f in chain.filters:
                    if f.typed_config.type_url != _HCM_URL:
                        continue
                    hcm = hcm_pb2.HttpConnectionManager()
                    f.typed_config.Unpack(hcm)
                    if hcm.HasField("rds"):
                        rds.add(hcm.rds.route_config_name)
        return tuple(sorted(rds))

    def _on_endpoints(self, resources: Iterable[object], now: float) -> None:
        for any_msg in resources:
            cla = endpoint_pb2.ClusterLoadAssignment()
            any_msg.Unpack(cla)  # type: ignore[attr-defined]
            self.endpoints[cla.cluster_name] = {
                (
                    lb.endpoint.address.socket_address.address,
                    lb.endpoint.address.socket_address.port_value,
                )
                for locality in cla.endpoints
                for lb in locality.lb_endpoints
            }
        if self._watches:
            waiting = []
            for cluster, endpoint, future in self._watches:
                if future.done():
                    continue
                if endpoint in self.endpoints.get(cluster, ()):
                    future.set_result(now)
                else:
                    waiting.append((cluster, endpoint, future))
            self._watches = waiting

    def _check_complete(self, now: float) -> None:
        if self.complete.is_set():
            return
        needed = [types.CLUSTER, types.LISTENER]
        if self._eds_names:
            needed.append(types.ENDPOINT)
        if self._rds_names:
            needed.append(types.ROUTE)
        if types.CLUSTER in self.first and types.LISTENER in self.first:
            if all(url in self.first for url in needed):
                self.complete_at = now
                self.complete.set()


async def _main(args: argparse.Namespace, ca: bytes | None, token: str | None) -> None:
    client = AdsClient(args.node, token=token)
    async with channel(args.target, ca) as chan:
        task = asyncio.create_task(client.run(chan))
        try:
            await asyncio.wait_for(client.complete.wait(), args.timeout)
        finally:
            task.cancel()
    assert client.started is not None
    for url, at in sorted(client.first.items(), key=lambda kv: kv[1]):
        short = types.SHORT_NAMES.get(url, url)
        print(
            f"{short}: version {client.versions[url]} after {(at - client.started) * 1000:.1f} ms"
        )
    print(f"clusters {sorted(client.clusters)}")
    print(f"listeners {sorted(client.listeners)}")
    for cluster, endpoints in sorted(client.endpoints.items()):
        print(f"endpoints {cluster}: {sorted(endpoints)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="HOST:PORT of the CP's DP server")
    parser.add_argument("--ca-cert", help="the DP server's CA (PEM); without it: plaintext")
    parser.add_argument("--node", required=True, help="<mesh>.<name>")
    parser.add_argument("--token-file")
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    ca = Path(args.ca_cert).read_bytes() if args.ca_cert else None
    token = Path(args.token_file).read_text().strip() if args.token_file else None
    asyncio.run(_main(args, ca, token))


if __name__ == "__main__":
    main()
