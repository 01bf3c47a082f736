"""Inbound generator: a listener per inbound, forwarding to the local application (mTLS
terminated when the mesh has it on; no policy: those are plug-ins, applied afterwards)."""

from __future__ import annotations

from collections.abc import Iterator

from google.protobuf.message import Message

from kumadp.cp.generate import clusters, listeners, names, protocol, tls
from kumadp.cp.generate.context import Context

DEFAULT_SERVICE_ADDRESS = "127.0.0.1"


class InboundGenerator:
    name = "inbound"

    def generate(self, ctx: Context) -> Iterator[Message]:
        dataplane = ctx.dataplane
        for inbound in dataplane.networking.inbound:
            if not inbound.has_listener:
                continue  # state Ignored: Kuma makes no listener (the identity stays)
            proto = protocol.normalise(inbound.protocol)
            cluster_name = names.local_cluster(inbound.service_port)
            cluster = clusters.static_cluster(
                cluster_name,
                inbound.service_address or DEFAULT_SERVICE_ADDRESS,
                inbound.service_port,
            )
            if protocol.uses_http2(proto):
                clusters.use_http2(cluster)
            yield cluster

            address = dataplane.inbound_address(inbound)
            filters = listeners.proxy_filters(
                proto,
                stat_prefix=names.stat_prefix(cluster_name),
                cluster=cluster_name,
                route_name=names.inbound_route(inbound.service),
                virtual_host=inbound.service,
            )
            listener = listeners.listener(
                names.inbound_listener(address, inbound.port),
                address,
                inbound.port,
                listeners.INBOUND,
                filters,
            )
            if ctx.mtls is not None:
                # policies that need the caller's identity (MeshTrafficPermission) add their
                # filters to the mTLS chains afterwards: see kumadp.cp.generate.policies
                tls.terminate_mtls(listener, ctx.mtls, ctx.mesh, proto)
            if dataplane.networking.transparent_proxying is not None:
                # iptables sends inbound traffic to inbound:passthrough (transparent.py), which
                # hands it to this listener; the application may bind the port itself.
                listener.bind_to_port.value = False
            yield listener
