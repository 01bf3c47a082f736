"""Profiles per proxy type and policy plug-ins: the registry, running order, error naming,
and resources shared between proxies staying untouched when a plug-in changes them."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.listener.v3.listener_pb2 import Listener

from kumadp.cp.generate import (
    POLICY_TYPES,
    PROFILES,
    PROXY_TYPES,
    Context,
    GenerationError,
    MtlsContext,
    Policy,
    Profile,
    ResourceSet,
    build_mesh_view,
    generate,
    generate_for,
    profile_for,
    run_profile,
)
from kumadp.cp.generate.policies.traffic_permission import TrafficPermissionPlugin
from kumadp.resources.model import Dataplane, Inbound, Mesh, Networking, Outbound
from kumadp.resources.policies import default_traffic_permission
from kumadp.xds import types

RBAC = "envoy.filters.network.rbac"


def _dp(name: str, *inbound: Inbound, outbound: tuple[Outbound, ...] = ()) -> Dataplane:
    networking = Networking(address="10.0.0.1", inbound=inbound, outbound=outbound)
    return Dataplane(mesh="default", name=name, networking=networking)


def _inbound(service: str, port: int) -> Inbound:
    return Inbound(port=port, tags={"kuma.io/service": service}, service_port=port + 1000)


WEB = _dp("web-1", _inbound("web", 7000), outbound=(Outbound(9000, {"kuma.io/service": "b"}),))
DATAPLANE = PROFILES["dataplane"]


def _ctx(*dataplanes: Dataplane, mtls: bool = False) -> Context:
    view = build_mesh_view(
        Mesh(name="default"), dataplanes or (WEB,), [default_traffic_permission("default")]
    )
    context = MtlsContext.for_mesh("default") if mtls else None
    return Context(view=view, dataplane=(dataplanes or (WEB,))[0], mtls=context)


@dataclass
class _Recorder:
    """A plug-in that records what it saw and renames the inbound listener's stat prefix."""

    policy_type: str
    seen: list[str] = field(default_factory=list)

    def apply(self, ctx: Context, resources: ResourceSet) -> None:
        self.seen.append(f"{self.policy_type}:{','.join(resources.names(Listener))}")
        listener = resources.edit(Listener, "inbound:10.0.0.1:7000")
        assert listener is not None
        listener.stat_prefix += self.policy_type


class _Broken:
    policy_type = "MeshBroken"

    def apply(self, ctx: Context, resources: ResourceSet) -> None:
        raise RuntimeError("boom")


class _Slower:
    """Edits the (shared, memoized) cluster of service b."""

    policy_type = "MeshSlow"

    def apply(self, ctx: Context, resources: ResourceSet) -> None:
        cluster = resources.edit(Cluster, "b")
        assert cluster is not None
        cluster.connect_timeout.seconds = 99


def _with_plugins(*plugins: object) -> Profile:
    return Profile("dataplane", DATAPLANE.generators, tuple(plugins))  # type: ignore[arg-type]


def test_a_profile_per_proxy_type() -> None:
    assert tuple(PROFILES) == PROXY_TYPES == ("dataplane", "ingress", "egress")
    for proxy_type, profile in PROFILES.items():
        assert profile.proxy_type == proxy_type
        assert profile_for(proxy_type) is profile
    assert [g.name for g in DATAPLANE.generators] == [
        "inbound",
        "outbound",
        "vip-outbound",
        "transparent-proxy",
    ]
    assert [p.policy_type for p in DATAPLANE.plugins] == [
        "MeshTrafficPermission",
        "MeshTimeout",
        "MeshRetry",
        "Mesh",  # routing.localityAwareLoadBalancing on the retries (not a policy type)
        "MeshCircuitBreaker",
        "MeshHealthCheck",
        "MeshLoadBalancingStrategy",
    ]
    assert POLICY_TYPES == (
        "Mesh",
        "MeshCircuitBreaker",
        "MeshHealthCheck",
        "MeshLoadBalancingStrategy",
        "MeshRetry",
        "MeshTimeout",
        "MeshTrafficPermission",
    )


def test_generate_for_is_generate() -> None:
    ctx = _ctx(mtls=True)
    assert generate_for("dataplane", ctx).to_dict() == generate(ctx.view, WEB, mtls=ctx.mtls)


@pytest.mark.parametrize("proxy_type", ["ingress", "egress"])
def test_zone_proxies_have_a_context_of_their_own(proxy_type: str) -> None:
    ctx = _ctx()
    with pytest.raises(GenerationError, match=rf"^generator '{proxy_type}-listener' failed"):
        generate_for(proxy_type, ctx)  # a dataplane's context is no zone proxy's
    with pytest.raises(ValueError, match=f"proxy type {proxy_type}: generate it with"):
        generate(ctx.view, WEB, proxy_type=proxy_type)


def test_unknown_proxy_type() -> None:
    with pytest.raises(
        ValueError, match="proxy type: must be one of dataplane, ingress, egress, not 'sidecar'"
    ):
        generate_for("sidecar", _ctx())


def test_plugins_run_after_the_generators_in_order() -> None:
    first, second = _Recorder("MeshA"), _Recorder("MeshB")
    resources = run_profile(_ctx(), _with_plugins(first, second))
    assert first.seen == ["MeshA:inbound:10.0.0.1:7000,outbound:127.0.0.1:9000"]
    assert second.seen == ["MeshB:inbound:10.0.0.1:7000,outbound:127.0.0.1:9000"]
    listener = resources.get(Listener, "inbound:10.0.0.1:7000")
    assert listener is not None and listener.stat_prefix == "MeshAMeshB"


def test_plugin_error_names_the_policy_type() -> None:
    with pytest.raises(
        GenerationError,
        match=r"^policy plug-in 'MeshBroken' failed for dataplane default\.web-1: boom$",
    ) as info:
        run_profile(_ctx(), _with_plugins(_Broken()))
    assert info.value.generator == "MeshBroken"


def test_a_plugin_changes_a_private_copy_of_shared_resources() -> None:
    other = _dp(
        "web-2", _inbound("web", 7000), outbound=(Outbound(9000, {"kuma.io/service": "b"}),)
    )
    ctx = _ctx(WEB, other)
    changed = run_profile(ctx, _with_plugins(_Slower())).to_dict()
    (cluster,) = (c for c in changed[types.CLUSTER] if c.name == "b")
    assert cluster.connect_timeout.seconds == 99
    # the other dataplane of the view shares the memoized cluster: unchanged for it
    plain = run_profile(
        Context(view=ctx.view, dataplane=other), Profile("dataplane", DATAPLANE.generators)
    ).to_dict()
    (shared,) = (c for c in plain[types.CLUSTER] if c.name == "b")
    assert shared.connect_timeout.seconds == 5


def test_generators_apply_no_policy() -> None:
    resources = run_profile(_ctx(mtls=True), Profile("dataplane", DATAPLANE.generators)).to_dict()
    (inbound,) = (li for li in resources[types.LISTENER] if li.name.startswith("inbound:"))
    (chain,) = inbound.filter_chains
    assert chain.HasField("transport_socket")  # mTLS is the generator's
    assert [f.name for f in chain.filters] == ["envoy.filters.network.tcp_proxy"]


def test_traffic_permission_plugin_once_per_listener() -> None:
    # two identical inbounds make one listener: it gets one RBAC filter, not two
    twice = _dp("web-1", _inbound("web", 7000), _inbound("web", 7000))
    resources = run_profile(_ctx(twice, mtls=True), DATAPLANE).to_dict()
    (listener,) = resources[types.LISTENER]
    assert [f.name for f in listener.filter_chains[0].filters] == [
        RBAC,
        "envoy.filters.network.tcp_proxy",
    ]


def test_traffic_permission_plugin_needs_mtls() -> None:
    resources = ResourceSet()
    TrafficPermissionPlugin().apply(_ctx(), resources)  # no mTLS: nothing to look for
    assert all(not found for found in resources.to_dict().values())


def test_view_keeps_policies_by_type() -> None:
    @dataclass(frozen=True)
    class MeshTimeout:
        mesh: str
        name: str
        type = "MeshTimeout"

    allow = default_traffic_permission("default")
    policies: list[Policy] = [
        MeshTimeout("default", "b"),
        MeshTimeout("other", "x"),
        MeshTimeout("default", "a"),
        allow,
    ]
    view = build_mesh_view(Mesh(name="default"), [], policies)
    assert view.policies("MeshTimeout") == (
        MeshTimeout("default", "a"),
        MeshTimeout("default", "b"),
    )
    assert view.policies_of(MeshTimeout) == view.policies("MeshTimeout")
    assert view.policies("MeshTrafficPermission") == (allow,)
    assert view.policies("MeshRetry") == ()
