"""Generators: behaviour (golden cases: test_generate_golden.py)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.extensions.filters.network.tcp_proxy.v3.tcp_proxy_pb2 import TcpProxy
from google.protobuf.message import Message

from kumadp.cp import generate as gen
from kumadp.cp.generate import (
    Context,
    GenerationError,
    Profile,
    build_mesh_view,
    generate,
    resource_to_dict,
    run_profile,
)
from kumadp.cp.generate.inbound import InboundGenerator
from kumadp.cp.generate.outbound import service_protocol
from kumadp.cp.generate.protocol import common_protocol
from kumadp.resources.model import Dataplane, Inbound, Mesh, Networking, Outbound
from kumadp.xds import types

# --- building models ---


def _dp(name: str, address: str, inbound: Iterable[Inbound] = (), **kwargs: Any) -> Dataplane:
    outbound = tuple(kwargs.pop("outbound", ()))
    networking = Networking(address=address, inbound=tuple(inbound), outbound=outbound)
    return Dataplane(mesh=kwargs.pop("mesh", "default"), name=name, networking=networking)


def _inbound(service: str, port: int, protocol: str | None = None, **kwargs: Any) -> Inbound:
    tags = {"kuma.io/service": service}
    if protocol is not None:
        tags["kuma.io/protocol"] = protocol
    return Inbound(port=port, tags=tags, service_port=kwargs.pop("service_port", port), **kwargs)


def _outbound(service: str, port: int, address: str = "127.0.0.1") -> Outbound:
    return Outbound(port=port, tags={"kuma.io/service": service}, address=address)


def _by_name(resources: dict[str, list[Message]], type_url: str) -> dict[str, Any]:
    return {gen.resource_set.name_of(r): r for r in resources[type_url]}


# --- behaviour ---


def test_mesh_view_indexes_inbounds_by_service() -> None:
    dps = [
        _dp("b-2", "10.0.0.2", [_inbound("b", 7000)]),
        _dp("b-1", "10.0.0.1", [_inbound("b", 7000), _inbound("c", 7001, "http")]),
        _dp("x-1", "10.0.0.9", [_inbound("b", 7000)], mesh="other"),
    ]
    view = build_mesh_view(Mesh(name="default"), dps)
    assert [dp.name for dp in view.dataplanes] == ["b-1", "b-2"]
    assert list(view.endpoints) == ["b", "c"]
    assert [(e.address, e.port, e.dataplane) for e in view.endpoints["b"]] == [
        ("10.0.0.1", 7000, "b-1"),
        ("10.0.0.2", 7000, "b-2"),
    ]
    assert view.endpoints["c"][0].tags == {"kuma.io/service": "c", "kuma.io/protocol": "http"}


def test_mesh_view_uses_advertised_address_unless_inbound_has_one() -> None:
    dp = Dataplane(
        mesh="default",
        name="nat-1",
        networking=Networking(
            address="10.0.0.1",
            advertised_address="192.0.2.1",
            inbound=(_inbound("a", 1000), _inbound("a", 1001, address="10.0.0.7")),
        ),
    )
    view = build_mesh_view(Mesh(name="default"), [dp])
    assert [e.address for e in view.endpoints["a"]] == ["10.0.0.7", "192.0.2.1"]


@pytest.mark.parametrize(
    ("protocols", "expected"),
    [
        ([], "tcp"),
        (["http"], "http"),
        (["http", "http"], "http"),
        (["http", "tcp"], "tcp"),
        (["http", "http2"], "tcp"),
        (["grpc", "grpc"], "grpc"),
        (["grpc", "http2"], "http2"),
        (["kafka"], "tcp"),
    ],
)
def test_common_protocol(protocols: list[str], expected: str) -> None:
    assert common_protocol(protocols) == expected


def test_outbound_protocol_comes_from_endpoints() -> None:
    caller = _dp("web-1", "127.0.0.1", outbound=[_outbound("b", 9000), _outbound("c", 9001)])
    dps = [
        caller,
        _dp("b-1", "10.0.0.1", [_inbound("b", 7000, "http")]),
        _dp("b-2", "10.0.0.2", [_inbound("b", 7000, "tcp")]),
        _dp("c-1", "10.0.0.3", [_inbound("c", 7000, "http")]),
    ]
    view = build_mesh_view(Mesh(name="default"), dps)
    assert service_protocol(view, "b") == "tcp"
    assert service_protocol(view, "c") == "http"
    listeners = _by_name(generate(view, caller), types.LISTENER)
    b_filter = listeners["outbound:127.0.0.1:9000"].filter_chains[0].filters[0]
    c_filter = listeners["outbound:127.0.0.1:9001"].filter_chains[0].filters[0]
    assert b_filter.name == "envoy.filters.network.tcp_proxy"
    assert c_filter.name == "envoy.filters.network.http_connection_manager"


def test_outbound_endpoints_are_those_of_the_service_only() -> None:
    caller = _dp("web-1", "127.0.0.1", [_inbound("web", 7000)], outbound=[_outbound("b", 9000)])
    dps = [caller, _dp("b-1", "10.0.0.1", [_inbound("b", 7000), _inbound("other", 7001)])]
    resources = generate(build_mesh_view(Mesh(name="default"), dps), caller)
    (assignment,) = resources[types.ENDPOINT]
    assert assignment.cluster_name == "b"
    (locality,) = assignment.endpoints
    addresses = [
        (e.endpoint.address.socket_address.address, e.endpoint.address.socket_address.port_value)
        for e in locality.lb_endpoints
    ]
    assert addresses == [("10.0.0.1", 7000)]


def test_two_outbounds_of_one_service_share_a_cluster() -> None:
    caller = _dp(
        "web-1", "127.0.0.1", outbound=[_outbound("b", 9000), _outbound("b", 80, "10.1.1.1")]
    )
    resources = generate(build_mesh_view(Mesh(name="default"), [caller]), caller)
    assert [c.name for c in resources[types.CLUSTER]] == ["b"]
    assert [a.cluster_name for a in resources[types.ENDPOINT]] == ["b"]
    assert [li.name for li in resources[types.LISTENER]] == [
        "outbound:10.1.1.1:80",
        "outbound:127.0.0.1:9000",
    ]


def test_every_type_url_is_present_and_routes_are_inline() -> None:
    dp = _dp("web-1", "127.0.0.1", [_inbound("web", 7000, "http")])
    resources = generate(build_mesh_view(Mesh(name="default"), [dp]), dp)
    assert list(resources) == list(types.ADS_ORDER)
    assert resources[types.ROUTE] == []
    assert resources[types.SECRET] == []


def test_inbound_to_a_host_name_resolves_it() -> None:
    dp = _dp("web-1", "127.0.0.1", [_inbound("web", 7000, service_address="app.local")])
    resources = generate(build_mesh_view(Mesh(name="default"), [dp]), dp)
    (cluster,) = resources[types.CLUSTER]
    assert cluster.type == Cluster.STRICT_DNS
    endpoint = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint
    assert endpoint.address.socket_address.address == "app.local"


def test_resource_to_dict_unpacks_typed_configs() -> None:
    dp = _dp("web-1", "127.0.0.1", [_inbound("web", 7000)])
    (listener,) = generate(build_mesh_view(Mesh(name="default"), [dp]), dp)[types.LISTENER]
    as_dict = resource_to_dict(listener)
    typed = as_dict["filterChains"][0]["filters"][0]["typedConfig"]
    assert typed["@type"] == "type.googleapis.com/" + TcpProxy.DESCRIPTOR.full_name
    assert typed["cluster"] == "localhost:7000"
    assert as_dict["trafficDirection"] == "INBOUND"


class _Broken:
    name = "broken"

    def generate(self, ctx: Context) -> Iterable[Message]:
        yield Listener(name="fine")
        raise RuntimeError("boom")


def test_generator_error_names_the_generator() -> None:
    dp = _dp("web-1", "127.0.0.1")
    ctx = Context(view=build_mesh_view(Mesh(name="default"), [dp]), dataplane=dp)
    with pytest.raises(GenerationError, match=r"generator 'broken' failed .*default\.web-1.*boom"):
        run_profile(ctx, Profile("dataplane", (InboundGenerator(), _Broken())))


def test_conflicting_resources_are_an_error_of_the_generator() -> None:
    # Kuma names the local cluster after the service port only: two inbounds forwarding to
    # the same port on different addresses cannot both have it.
    dp = _dp(
        "web-1",
        "127.0.0.1",
        [
            _inbound("a", 7000, service_port=8080),
            _inbound("b", 7001, service_port=8080, service_address="127.0.0.2"),
        ],
    )
    with pytest.raises(GenerationError, match=r"'inbound'.*localhost:8080") as info:
        generate(build_mesh_view(Mesh(name="default"), [dp]), dp)
    assert info.value.generator == "inbound"


def test_public_surface() -> None:
    assert set(gen.__all__) >= {
        "Endpoint",
        "GenerationError",
        "MeshView",
        "build_mesh_view",
        "generate",
        "resource_to_dict",
        "resources_to_yaml",
    }
    for name in gen.__all__:
        assert hasattr(gen, name), name
