"""Transparent-proxy generator: passthrough listeners and clusters, and nothing at all for
dataplanes without ``transparentProxying`` (golden cases: test_generate_golden.py, cases 3N)."""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.listener.v3.listener_pb2 import Listener
from google.protobuf.message import Message

from kumadp.cp.generate import (
    PROFILES,
    Context,
    build_mesh_view,
    generate,
)
from kumadp.cp.generate.transparent import TransparentProxyGenerator
from kumadp.resources import Mesh, parse_dataplane
from kumadp.resources.model import Dataplane
from kumadp.xds import types


def _by_name(resources: dict[str, list[Message]], type_url: str) -> dict[str, Any]:
    return {r.name: r for r in resources[type_url]}  # type: ignore[attr-defined]


def _dataplane(transparent: dict[str, Any] | None) -> Dataplane:
    networking: dict[str, Any] = {
        "address": "10.0.0.1",
        "inbound": [{"port": 8080, "tags": {"kuma.io/service": "web"}}],
    }
    if transparent is not None:
        networking["transparentProxying"] = transparent
    return parse_dataplane(
        {"type": "Dataplane", "mesh": "default", "name": "web-1", "networking": networking}
    )


# --- behaviour ---


def test_in_the_default_profile() -> None:
    assert any(isinstance(g, TransparentProxyGenerator) for g in PROFILES["dataplane"].generators)


def test_nothing_without_transparent_proxying() -> None:
    dp = _dataplane(None)
    view = build_mesh_view(Mesh(name="default"), [dp])
    assert list(TransparentProxyGenerator().generate(Context(view=view, dataplane=dp))) == []
    (listener,) = generate(view, dp)[types.LISTENER]
    assert not listener.HasField("bind_to_port")  # binds, as before


def test_passthrough_listeners_and_clusters() -> None:
    dp = _dataplane({"redirectPortInbound": 16006, "redirectPortOutbound": 16001})
    resources = generate(build_mesh_view(Mesh(name="default"), [dp]), dp)
    listeners = _by_name(resources, types.LISTENER)
    clusters = _by_name(resources, types.CLUSTER)
    assert sorted(listeners) == [
        "inbound:10.0.0.1:8080",
        "inbound:passthrough:ipv4",
        "outbound:passthrough:ipv4",
    ]
    for name, port in (("outbound:passthrough:ipv4", 16001), ("inbound:passthrough:ipv4", 16006)):
        listener: Listener = listeners[name]
        assert listener.address.socket_address.address == "0.0.0.0"
        assert listener.address.socket_address.port_value == port
        assert listener.use_original_dst.value is True
        assert [f.name for f in listener.listener_filters] == [
            "envoy.filters.listener.original_dst"
        ]
        (chain,) = listener.filter_chains
        assert chain.filters[0].name == "envoy.filters.network.tcp_proxy"
        cluster: Cluster = clusters[name]
        assert cluster.type == Cluster.ORIGINAL_DST
        assert cluster.lb_policy == Cluster.CLUSTER_PROVIDED
    inbound_source = clusters["inbound:passthrough:ipv4"].upstream_bind_config.source_address
    assert (inbound_source.address, inbound_source.port_value) == ("127.0.0.6", 0)
    assert not clusters["outbound:passthrough:ipv4"].HasField("upstream_bind_config")
    # The application's own listener is reached through the inbound passthrough.
    assert listeners["inbound:10.0.0.1:8080"].bind_to_port.value is False
