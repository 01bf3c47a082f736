"""Generated config with mesh mTLS on: TLS and RBAC shape, the MeshTrafficPermission plug-in,
and its semantics (policies/rbac.py) checked by evaluating the RBAC principals (golden
cases: test_generate_golden.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.listener.v3.listener_components_pb2 import Filter
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf.message import Message

from kumadp.cp.generate import (
    MtlsContext,
    build_mesh_view,
    generate,
    mtls_context_for,
)
from kumadp.cp.generate.policies import rbac
from kumadp.cp.generate.resource_set import name_of
from kumadp.resources.model import Dataplane, Inbound, Mesh, Networking, Outbound
from kumadp.resources.policies import (
    ALLOW,
    ALLOW_WITH_SHADOW_DENY,
    DENY,
    MESH,
    MESH_SERVICE,
    MESH_SUBSET,
    From,
    MeshTrafficPermission,
    TargetRef,
    default_traffic_permission,
)
from kumadp.xds import types
from tests.unit.golden import TESTDATA, load_case

Resources = dict[str, list[Message]]
NO_PERMISSION = TESTDATA / "dataplane" / "15-mtls-no-permission"


def _by_name(resources: Resources, type_url: str) -> dict[str, Any]:
    return {name_of(r): r for r in resources[type_url]}


def _unpack(filter_: Filter, message: Message) -> Any:
    assert filter_.typed_config.Unpack(message), filter_.name
    return message


def _dp(
    name: str,
    inbound: Sequence[Inbound] = (),
    outbound: Sequence[Outbound] = (),
    mesh: str = "default",
) -> Dataplane:
    networking = Networking(address="10.0.0.1", inbound=tuple(inbound), outbound=tuple(outbound))
    return Dataplane(mesh=mesh, name=name, networking=networking)


def _inbound(service: str, port: int, tags: Mapping[str, str] | None = None) -> Inbound:
    all_tags = {"kuma.io/service": service, **(tags or {})}
    return Inbound(port=port, tags=all_tags, service_port=port + 1000)


def _mtp(
    name: str, target: TargetRef, *items: tuple[TargetRef, str], mesh: str = "default"
) -> MeshTrafficPermission:
    return MeshTrafficPermission(
        mesh=mesh,
        name=name,
        target_ref=target,
        from_=tuple(From(ref, action) for ref, action in items),
    )


def _svc(name: str) -> TargetRef:
    return TargetRef(MESH_SERVICE, name=name)


def _subset(**tags: str) -> TargetRef:
    return TargetRef(MESH_SUBSET, tags=dict(tags))


# --- mtls_context_for ---


@pytest.mark.parametrize(
    ("mtls", "expected"),
    [
        (None, None),
        ({"backends": [{"name": "ca-1", "type": "builtin"}]}, None),  # none enabled
        ({"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}, "STRICT"),
        (
            {
                "enabledBackend": "ca-1",
                "backends": [{"name": "ca-1", "type": "builtin", "mode": "PERMISSIVE"}],
            },
            "PERMISSIVE",
        ),
        ({"enabledBackend": "gone", "backends": []}, None),
    ],
)
def test_mtls_context_for(mtls: dict[str, Any] | None, expected: str | None) -> None:
    context = mtls_context_for(Mesh(name="m1", mtls=mtls))
    if expected is None:
        assert context is None
        return
    assert context == MtlsContext(
        identity_secret="identity_cert:secret:m1", ca_secret="mesh_ca:secret:m1", mode=expected
    )


def test_for_mesh_rejects_an_unknown_mode() -> None:
    with pytest.raises(ValueError, match="STRICT, PERMISSIVE"):
        MtlsContext.for_mesh("default", "OFF")


# --- TLS shape ---


def _strict_resources(mode: str = "STRICT", protocol: str | None = None) -> Resources:
    tags = {} if protocol is None else {"kuma.io/protocol": protocol}
    web = _dp("web-1", [_inbound("web", 7000, tags)], [Outbound(9000, {"kuma.io/service": "b"})])
    view = build_mesh_view(Mesh(name="default"), [web], [default_traffic_permission("default")])
    return generate(view, web, mtls=MtlsContext.for_mesh("default", mode))


def test_inbound_requires_a_mesh_client_certificate() -> None:
    listener: Listener = _by_name(_strict_resources(), types.LISTENER)["inbound:10.0.0.1:7000"]
    (chain,) = listener.filter_chains
    assert chain.transport_socket.name == "envoy.transport_sockets.tls"
    context = tls_pb2.DownstreamTlsContext()
    assert chain.transport_socket.typed_config.Unpack(context)
    assert context.require_client_certificate.value is True
    common = context.common_tls_context
    assert [s.name for s in common.tls_certificate_sds_secret_configs] == [
        "identity_cert:secret:default"
    ]
    combined = common.combined_validation_context
    assert combined.validation_context_sds_secret_config.name == "mesh_ca:secret:default"
    (san,) = combined.default_validation_context.match_typed_subject_alt_names
    assert san.matcher.prefix == "spiffe://default/"
    assert list(common.alpn_protocols) == ["kuma"]
    sds = common.tls_certificate_sds_secret_configs[0].sds_config.api_config_source
    assert sds.grpc_services[0].envoy_grpc.cluster_name == "sds_cluster"
    # RBAC first, then the TCP proxy
    assert [f.name for f in chain.filters] == [
        "envoy.filters.network.rbac",
        "envoy.filters.network.tcp_proxy",
    ]
    assert not listener.listener_filters
    assert not listener.HasField("default_filter_chain")


def test_http_inbound_lets_the_connection_manager_detect_http2() -> None:
    listener = _by_name(_strict_resources(protocol="grpc"), types.LISTENER)["inbound:10.0.0.1:7000"]
    (chain,) = listener.filter_chains
    context = tls_pb2.DownstreamTlsContext()
    assert chain.transport_socket.typed_config.Unpack(context)
    assert list(context.common_tls_context.alpn_protocols) == ["h2", "http/1.1"]
    assert chain.filters[0].name == "envoy.filters.network.rbac"


def test_outbound_cluster_originates_mtls() -> None:
    cluster: Cluster = _by_name(_strict_resources(), types.CLUSTER)["b"]
    context = tls_pb2.UpstreamTlsContext()
    assert cluster.transport_socket.typed_config.Unpack(context)
    assert context.sni == "b{mesh=default}"
    common = context.common_tls_context
    assert list(common.alpn_protocols) == ["kuma"]
    (san,) = (
        common.combined_validation_context.default_validation_context.match_typed_subject_alt_names
    )
    assert san.matcher.exact == "spiffe://default/b"
    # the local application is not in the mesh: plaintext
    local = _by_name(_strict_resources(), types.CLUSTER)["localhost:8000"]
    assert not local.HasField("transport_socket")


def test_permissive_inbound_has_a_plaintext_default_chain() -> None:
    listener = _by_name(_strict_resources("PERMISSIVE"), types.LISTENER)["inbound:10.0.0.1:7000"]
    assert [f.name for f in listener.listener_filters] == ["envoy.filters.listener.tls_inspector"]
    (secure,) = listener.filter_chains
    assert secure.filter_chain_match.transport_protocol == "tls"
    assert list(secure.filter_chain_match.application_protocols) == ["kuma"]
    assert secure.filters[0].name == "envoy.filters.network.rbac"
    plain = listener.default_filter_chain
    assert not plain.HasField("transport_socket")
    assert [f.name for f in plain.filters] == ["envoy.filters.network.tcp_proxy"]


def test_without_mtls_nothing_changes() -> None:
    web = _dp("web-1", [_inbound("web", 7000)], [Outbound(9000, {"kuma.io/service": "b"})])
    view = build_mesh_view(Mesh(name="default"), [web], [default_traffic_permission("default")])
    plain = generate(view, web)
    assert plain == generate(build_mesh_view(Mesh(name="default"), [web]), web)
    for cluster in plain[types.CLUSTER]:
        assert not cluster.HasField("transport_socket")
    for listener in plain[types.LISTENER]:
        assert [f.name for f in listener.filter_chains[0].filters] != [rbac.NETWORK_RBAC]
        assert not listener.filter_chains[0].HasField("transport_socket")


def test_no_permission_denies_everything() -> None:
    resources = load_case(NO_PERMISSION).generate()
    listener = _by_name(resources, types.LISTENER)["inbound:10.0.0.1:10001"]
    config = _unpack(listener.filter_chains[0].filters[0], network_rbac_pb2.RBAC())
    assert config.HasField("rules")  # present and empty: deny (absent would allow all)
    assert config.rules.action == rbac_pb2.RBAC.ALLOW
    assert not config.rules.policies


def test_mesh_view_keeps_the_meshs_permissions_sorted() -> None:
    a = default_traffic_permission("default")
    b = _mtp("b", TargetRef(MESH), (TargetRef(MESH), DENY))
    other = default_traffic_permission("other")
    view = build_mesh_view(Mesh(name="default"), [], [b, other, a])
    assert view.policies("MeshTrafficPermission") == (a, b)
    assert view.policies_of(MeshTrafficPermission) == (a, b)
    assert build_mesh_view(Mesh(name="default"), []).policies("MeshTrafficPermission") == ()


# --- permission semantics: evaluate the RBAC principals against caller certificates ---


def _matches(principal: rbac_pb2.Principal, sans: frozenset[str]) -> bool:
    kind = principal.WhichOneof("identifier")
    if kind == "any":
        return True
    if kind == "authenticated":
        return principal.authenticated.principal_name.exact in sans
    if kind == "and_ids":
        return all(_matches(p, sans) for p in principal.and_ids.ids)
    if kind == "or_ids":
        return any(_matches(p, sans) for p in principal.or_ids.ids)
    if kind == "not_id":
        return not _matches(principal.not_id, sans)
    raise AssertionError(f"unexpected principal {kind}")


def _allows(rules: rbac_pb2.RBAC, sans: frozenset[str]) -> bool:
    assert rules.action == rbac_pb2.RBAC.ALLOW
    return any(_matches(p, sans) for policy in rules.policies.values() for p in policy.principals)


def _caller(service: str, **tags: str) -> frozenset[str]:
    """The URI SANs of a caller's certificate, as the CA issues them."""
    all_tags = {"kuma.io/service": service, **tags}
    return frozenset(
        [f"spiffe://default/{service}", *(f"kuma://{k}/{v}" for k, v in all_tags.items())]
    )


def _inbound_of(tags: Mapping[str, str], name: str = "backend-1") -> tuple[Dataplane, Inbound]:
    """A dataplane with one inbound carrying ``tags``, and that inbound."""
    inbound = Inbound(port=10001, tags=dict(tags), service_port=8080)
    networking = Networking(address="10.0.0.2", inbound=(inbound,))
    return Dataplane(mesh="default", name=name, networking=networking), inbound


def _decide(
    permissions: Sequence[MeshTrafficPermission],
    callers: Mapping[str, frozenset[str]],
    service: str = "backend",
    tags: Mapping[str, str] | None = None,
    shadow: bool = False,
) -> dict[str, bool]:
    inbound_tags = {"kuma.io/service": service, **(tags or {})}
    dataplane, inbound = _inbound_of(inbound_tags)
    rules = rbac.rules_for(permissions, dataplane, inbound)
    compiled = rbac.rbac_rules(rules, "default", shadow=shadow)
    return {name: _allows(compiled, sans) for name, sans in callers.items()}


CALLERS = {
    "web": _caller("web"),
    "admin": _caller("admin", team="ops"),
    "pay": _caller("pay", team="payments", env="prod"),
    "pay-dev": _caller("pay", team="payments", env="dev"),
}
MESH_REF = TargetRef(MESH)
BACKEND = _svc("backend")


def test_default_permission_allows_everyone() -> None:
    decided = _decide([default_traffic_permission("default")], CALLERS)
    assert all(decided.values())


def test_no_permission_allows_no_one() -> None:
    assert not any(_decide([], CALLERS).values())


def test_deny_wins_over_allow_for_the_same_caller() -> None:
    permissions = [
        _mtp("a", BACKEND, (_svc("web"), ALLOW), (_svc("admin"), ALLOW)),
        _mtp("b", MESH_REF, (_svc("web"), DENY)),
    ]
    assert _decide(permissions, CALLERS) == {
        "web": False,
        "admin": True,
        "pay": False,
        "pay-dev": False,
    }


def test_deny_one_caller_from_allow_all() -> None:
    permissions = [
        default_traffic_permission("default"),
        _mtp("no-web", BACKEND, (_svc("web"), DENY)),
    ]
    assert _decide(permissions, CALLERS) == {
        "web": False,
        "admin": True,
        "pay": True,
        "pay-dev": True,
    }


def test_more_specific_caller_selector_wins() -> None:
    # everyone denied, payments in prod allowed, except the service "pay" itself
    permissions = [
        _mtp(
            "p",
            BACKEND,
            (MESH_REF, DENY),
            (_subset(team="payments", env="prod"), ALLOW),
            (_svc("admin"), ALLOW),
        )
    ]
    assert _decide(permissions, CALLERS) == {
        "web": False,
        "admin": True,
        "pay": True,
        "pay-dev": False,  # every tag of the subset must match
    }
    permissions.append(_mtp("q", BACKEND, (_svc("pay"), DENY)))
    assert _decide(permissions, CALLERS)["pay"] is False


def test_subset_with_more_tags_is_more_specific() -> None:
    permissions = [
        _mtp(
            "p",
            MESH_REF,
            (_subset(team="payments"), ALLOW),
            (_subset(team="payments", env="dev"), DENY),
        )
    ]
    assert _decide(permissions, CALLERS) == {
        "web": False,
        "admin": False,
        "pay": True,
        "pay-dev": False,
    }


def test_allow_with_shadow_deny_allows_and_shadow_denies() -> None:
    permissions = [
        default_traffic_permission("default"),
        _mtp("shadow", BACKEND, (_svc("web"), ALLOW_WITH_SHADOW_DENY)),
    ]
    assert all(_decide(permissions, CALLERS).values())
    assert _decide(permissions, CALLERS, shadow=True) == {
        "web": False,
        "admin": True,
        "pay": True,
        "pay-dev": True,
    }
    rules = rbac.rules_for(permissions, *_inbound_of({"kuma.io/service": "backend"}))
    config = _unpack(rbac.rbac_filter(rules, "default", "x."), network_rbac_pb2.RBAC())
    assert config.HasField("shadow_rules")
    no_shadow = _unpack(rbac.rbac_filter(rules[:1], "default", "x."), network_rbac_pb2.RBAC())
    assert not no_shadow.HasField("shadow_rules")


@pytest.mark.parametrize(
    ("target", "applies"),
    [
        (TargetRef(MESH), True),
        (_svc("backend"), True),
        (_svc("web"), False),
        (_subset(version="v2"), True),
        (_subset(version="v2", zone="east"), False),
        (_subset(**{"kuma.io/service": "backend"}), True),
    ],
)
def test_which_permissions_apply_to_an_inbound(target: TargetRef, applies: bool) -> None:
    permission = _mtp("p", target, (MESH_REF, ALLOW))
    tags = {"kuma.io/service": "backend", "version": "v2"}
    assert bool(rbac.rules_for([permission], *_inbound_of(tags))) is applies


def test_principals_are_spiffe_ids_and_tag_uris() -> None:
    assert rbac.principal(_svc("web"), "m") == rbac_pb2.Principal(
        authenticated=rbac_pb2.Principal.Authenticated(principal_name={"exact": "spiffe://m/web"})
    )
    both = rbac.principal(_subset(b="2", a="1"), "m")
    assert [p.authenticated.principal_name.exact for p in both.and_ids.ids] == [
        "kuma://a/1",
        "kuma://b/2",
    ]
    assert rbac.principal(MESH_REF, "m") == rbac_pb2.Principal(any=True)


def test_permissions_of_a_mesh_are_matched_per_inbound() -> None:
    backend = _dp("backend-1", [_inbound("backend", 7000), _inbound("admin", 7001)])
    permissions = [_mtp("p", BACKEND, (MESH_REF, ALLOW))]
    view = build_mesh_view(Mesh(name="default"), [backend], permissions)
    listeners = _by_name(
        generate(view, backend, mtls=MtlsContext.for_mesh("default")), types.LISTENER
    )

    def rules_of(name: str) -> rbac_pb2.RBAC:
        rbac_filter = listeners[name].filter_chains[0].filters[0]
        config: network_rbac_pb2.RBAC = _unpack(rbac_filter, network_rbac_pb2.RBAC())
        assert config.stat_prefix == name.replace(":", "_").replace(".", "_") + "."
        return config.rules

    assert _allows(rules_of("inbound:10.0.0.1:7000"), CALLERS["web"])
    assert not _allows(rules_of("inbound:10.0.0.1:7001"), CALLERS["web"])
