"""VIP outbound listeners: behaviour (golden cases: test_generate_golden.py, cases 2N)."""

from __future__ import annotations

from typing import Any

from envoy.config.listener.v3.listener_pb2 import Listener
from google.protobuf.message import Message

from kumadp.cp.generate import build_mesh_view, generate
from kumadp.cp.generate.resource_set import name_of
from kumadp.cp.store import MemoryStore
from kumadp.cp.vips import VipAllocator
from kumadp.resources.model import Dataplane, Inbound, Mesh, Networking, Outbound
from kumadp.xds import types

TCP_PROXY = "envoy.filters.network.tcp_proxy"
HCM = "envoy.filters.network.http_connection_manager"


def _listeners(resources: dict[str, list[Message]]) -> dict[str, Listener]:
    return {name_of(r): r for r in resources[types.LISTENER]}


def _filter_name(listener: Listener) -> str:
    name: str = listener.filter_chains[0].filters[0].name
    return name


# --- behaviour ---


def _inbound(service: str, port: int, protocol: str = "tcp") -> Inbound:
    tags = {"kuma.io/service": service, "kuma.io/protocol": protocol}
    return Inbound(port=port, tags=tags, service_port=port)


def _dp(
    name: str, address: str, *inbound: Inbound, outbound: tuple[Outbound, ...] = ()
) -> Dataplane:
    networking = Networking(address=address, inbound=inbound, outbound=outbound)
    return Dataplane(mesh="default", name=name, networking=networking)


def _mesh() -> tuple[Dataplane, list[Dataplane]]:
    caller = _dp("web-1", "10.0.0.10", _inbound("web", 8080, "http"))
    others = [
        _dp("backend-1", "10.0.0.1", _inbound("backend", 7000, "http")),
        _dp("api-1", "10.0.0.2", _inbound("api", 7001, "grpc")),
        _dp("db-1", "10.0.0.3", _inbound("db", 5432)),
    ]
    return caller, [caller, *others]


VIPS = {"web": "240.0.0.1", "backend": "240.0.0.2", "api": "240.0.0.3", "db": "240.0.0.4"}


def _run(caller: Dataplane, dps: list[Dataplane], **kwargs: Any) -> dict[str, list[Message]]:
    return generate(build_mesh_view(Mesh(name="default"), dps), caller, **kwargs)


def test_nothing_changes_without_vips_or_without_a_mode() -> None:
    caller, dps = _mesh()
    plain = _run(caller, dps)
    assert _run(caller, dps, vips={}, transparent_proxy=True) == plain
    assert _run(caller, dps, vips={}, bind_outbounds=True) == plain
    # a VIP the host does not own cannot be bound: no listener rather than a rejected update
    assert _run(caller, dps, vips=VIPS) == plain


def test_transparent_proxy_listeners_do_not_bind() -> None:
    caller, dps = _mesh()
    resources = _run(caller, dps, vips=VIPS, transparent_proxy=True)
    listeners = _listeners(resources)
    vip_listeners = {n: li for n, li in listeners.items() if n.startswith("outbound:")}
    assert sorted(vip_listeners) == [
        "outbound:240.0.0.1:80",
        "outbound:240.0.0.1:8080",
        "outbound:240.0.0.2:7000",
        "outbound:240.0.0.2:80",
        "outbound:240.0.0.3:7001",
        "outbound:240.0.0.3:80",
        "outbound:240.0.0.4:5432",
        "outbound:240.0.0.4:80",
    ]
    for listener in vip_listeners.values():
        assert listener.HasField("bind_to_port") and not listener.bind_to_port.value
    assert _filter_name(listeners["outbound:240.0.0.2:80"]) == HCM
    assert _filter_name(listeners["outbound:240.0.0.4:80"]) == TCP_PROXY
    assert _filter_name(listeners["outbound:240.0.0.3:80"]) == HCM  # grpc
    clusters = {c.name: c for c in resources[types.CLUSTER]}
    assert set(clusters) >= {"web", "backend", "api", "db"}
    assert "envoy.extensions.upstreams.http.v3.HttpProtocolOptions" in (
        clusters["api"].typed_extension_protocol_options
    )
    assert {a.cluster_name for a in resources[types.ENDPOINT]} == {
        "web",
        "backend",
        "api",
        "db",
    }


def test_bind_outbounds_listeners_bind_their_loopback_address() -> None:
    caller, dps = _mesh()
    loopback = {s: f"127.1.0.{i}" for i, s in enumerate(sorted(VIPS), start=1)}
    listeners = _listeners(_run(caller, dps, vips=loopback, bind_outbounds=True))
    backend = listeners["outbound:127.1.0.2:80"]
    assert backend.address.socket_address.address == "127.1.0.2"
    assert backend.address.socket_address.port_value == 80
    assert not backend.HasField("bind_to_port")  # Envoy's default: bind


def test_explicit_outbounds_share_the_cluster_and_win_on_a_clash() -> None:
    explicit = (
        Outbound(port=15432, tags={"kuma.io/service": "db"}, address="127.0.0.1"),
        # the same address and port as backend's VIP listener, routed elsewhere
        Outbound(port=80, tags={"kuma.io/service": "api"}, address="240.0.0.2"),
    )
    caller = _dp("web-1", "10.0.0.10", _inbound("web", 8080, "http"), outbound=explicit)
    _, dps = _mesh()
    resources = _run(caller, [caller, *dps[1:]], vips=VIPS, transparent_proxy=True)
    listeners = _listeners(resources)
    clash = listeners["outbound:240.0.0.2:80"]
    assert not clash.HasField("bind_to_port")  # the explicit one
    hcm = clash.filter_chains[0].filters[0]
    assert b"outbound:api" in hcm.typed_config.value
    names = [c.name for c in resources[types.CLUSTER]]
    assert names.count("db") == 1


def test_service_without_endpoints_gets_port_80_only() -> None:
    caller, dps = _mesh()
    listeners = _listeners(
        _run(caller, dps, vips={**VIPS, "gone": "240.0.0.9"}, transparent_proxy=True)
    )
    assert [n for n in listeners if n.startswith("outbound:240.0.0.9:")] == [
        "outbound:240.0.0.9:80"
    ]


async def test_allocator_addresses_feed_the_generator() -> None:
    caller, dps = _mesh()
    vips = await VipAllocator(MemoryStore()).sync("default", {"web", "backend", "api", "db"})
    listeners = _listeners(
        _run(caller, dps, vips=vips.addresses(loopback=True), bind_outbounds=True)
    )
    assert f"outbound:{vips.loopback('backend')}:80" in listeners
    assert f"outbound:{vips.loopback('db')}:5432" in listeners
