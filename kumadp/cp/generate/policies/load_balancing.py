"""MeshLoadBalancingStrategy plug-in: the load balancer of each outbound service's cluster,
its hash policies, and locality-aware endpoints (``locality``).

=============  ==================================================================
loadBalancer   the cluster's ``lb_policy`` and its config (least request choice
               count and bias, ring size and hash function, Maglev table size)
hashPolicies   (RingHash, Maglev) the ``hash_policy`` of every route to the
               service; for TCP services, ``Connection`` (source IP) and
               ``FilterState`` ones on the TCP proxy
locality...    the service's ClusterLoadAssignment, rebuilt for this proxy
=============  ==================================================================
"""

from __future__ import annotations

from decimal import Decimal
from functools import partial

from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.endpoint.v3.endpoint_pb2 import ClusterLoadAssignment
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.type.v3 import hash_policy_pb2

from kumadp.cp.generate.context import Context
from kumadp.cp.generate.policies import locality
from kumadp.cp.generate.policies.edit import (
    OutboundTarget,
    configure,
    duration,
    edit_hcm,
    edit_tcp_proxy,
    editable,
    route_actions,
)
from kumadp.cp.generate.policies.rules import Rule, outbound_rules
from kumadp.cp.generate.resource_set import ResourceSet
from kumadp.resources.meshloadbalancingstrategy import (
    HashPolicy,
    LoadBalancer,
    LoadBalancingConf,
    MeshLoadBalancingStrategy,
)

LB_POLICIES = {
    "RoundRobin": Cluster.ROUND_ROBIN,
    "LeastRequest": Cluster.LEAST_REQUEST,
    "RingHash": Cluster.RING_HASH,
    "Random": Cluster.RANDOM,
    "Maglev": Cluster.MAGLEV,
}
HASH_FUNCTIONS = {
    "XXHash": Cluster.RingHashLbConfig.XX_HASH,
    "MurmurHash2": Cluster.RingHashLbConfig.MURMUR_HASH_2,
}
ACTIVE_REQUEST_BIAS_KEY = "kumadp.lb.least_request.active_request_bias"


def configure_cluster(cluster: Cluster, balancer: LoadBalancer) -> None:
    kind = balancer.type or "RoundRobin"
    cluster.lb_policy = LB_POLICIES[kind]
    for field in ("ring_hash_lb_config", "maglev_lb_config", "least_request_lb_config"):
        cluster.ClearField(field)  # type: ignore[arg-type]
    if kind == "LeastRequest" and balancer.least_request is not None:
        config = cluster.least_request_lb_config
        config.SetInParent()
        if balancer.least_request.choice_count is not None:
            config.choice_count.value = balancer.least_request.choice_count
        if balancer.least_request.active_request_bias is not None:
            config.active_request_bias.default_value = float(
                Decimal(balancer.least_request.active_request_bias)
            )
            config.active_request_bias.runtime_key = ACTIVE_REQUEST_BIAS_KEY
    elif kind == "RingHash" and balancer.ring_hash is not None:
        ring = balancer.ring_hash
        cluster.ring_hash_lb_config.SetInParent()
        if ring.hash_function is not None:
            cluster.ring_hash_lb_config.hash_function = HASH_FUNCTIONS[ring.hash_function]
        if ring.min_ring_size is not None:
            cluster.ring_hash_lb_config.minimum_ring_size.value = ring.min_ring_size
        if ring.max_ring_size is not None:
            cluster.ring_hash_lb_config.maximum_ring_size.value = ring.max_ring_size
    elif kind == "Maglev" and balancer.maglev is not None:
        cluster.maglev_lb_config.SetInParent()
        if balancer.maglev.table_size is not None:
            cluster.maglev_lb_config.table_size.value = balancer.maglev.table_size


def hash_policies(balancer: LoadBalancer) -> tuple[HashPolicy, ...]:
    if balancer.type == "RingHash" and balancer.ring_hash is not None:
        return balancer.ring_hash.hash_policies or ()
    if balancer.type == "Maglev" and balancer.maglev is not None:
        return balancer.maglev.hash_policies or ()
    return ()


def route_hash_policy(policy: HashPolicy) -> rc.RouteAction.HashPolicy:
    out = rc.RouteAction.HashPolicy(terminal=bool(policy.terminal))
    if policy.type == "Header" and policy.header is not None:
        out.header.header_name = policy.header.name or ""
    elif policy.type == "Cookie" and policy.cookie is not None:
        out.cookie.name = policy.cookie.name or ""
        if policy.cookie.ttl is not None:
            out.cookie.ttl.CopyFrom(duration(policy.cookie.ttl))
        if policy.cookie.path is not None:
            out.cookie.path = policy.cookie.path
    elif policy.type == "Connection" and policy.connection is not None:
        out.connection_properties.source_ip = bool(policy.connection.source_ip)
    elif policy.type == "QueryParameter" and policy.query_parameter is not None:
        out.query_parameter.name = policy.query_parameter.name or ""
    elif policy.type == "FilterState" and policy.filter_state is not None:
        out.filter_state.key = policy.filter_state.key or ""
    return out


def tcp_hash_policy(policy: HashPolicy) -> hash_policy_pb2.HashPolicy | None:
    if policy.type == "Connection" and policy.connection and policy.connection.source_ip:
        return hash_policy_pb2.HashPolicy(source_ip=hash_policy_pb2.HashPolicy.SourceIp())
    if policy.type == "FilterState" and policy.filter_state is not None:
        return hash_policy_pb2.HashPolicy(
            filter_state=hash_policy_pb2.HashPolicy.FilterState(key=policy.filter_state.key or "")
        )
    return None


def _listener(listener: Listener, policies: tuple[HashPolicy, ...]) -> None:
    def hcm(manager: hcm_pb2.HttpConnectionManager) -> None:
        for action in route_actions(manager):
            del action.hash_policy[:]
            action.hash_policy.extend(route_hash_policy(p) for p in policies)

    def tcp(proxy: tcp_proxy_pb2.TcpProxy) -> None:
        del proxy.hash_policy[:]
        found = [tcp_hash_policy(p) for p in policies]
        proxy.hash_policy.extend(p for p in found if p is not None)

    edit_hcm(listener, hcm)
    edit_tcp_proxy(listener, tcp)


def _apply(
    ctx: Context,
    resources: ResourceSet,
    target: OutboundTarget,
    rule: Rule[LoadBalancingConf],
) -> None:
    conf = rule.conf
    awareness = conf.locality_awareness
    balancer = conf.load_balancer
    if balancer is not None:
        key = (MeshLoadBalancingStrategy.type, id(rule))
        change = partial(configure_cluster, balancer=balancer)
        configure(ctx.view, resources, Cluster, target.cluster, key, change)
        policies = hash_policies(balancer)
        if policies:
            edit = partial(_listener, policies=policies)
            for name in target.listeners:
                configure(ctx.view, resources, Listener, name, key, edit)
    if awareness is None:
        return
    endpoints = ctx.view.endpoints_of(target.service)
    assignment = locality.locality_assignment(target.cluster, endpoints, ctx.dataplane, awareness)
    if assignment is None:
        return
    current = editable(resources, ClusterLoadAssignment, target.cluster)
    current.CopyFrom(assignment)
    if locality.uses_locality_weights(awareness):
        cluster = editable(resources, Cluster, target.cluster)
        cluster.common_lb_config.locality_weighted_lb_config.SetInParent()


class LoadBalancingPlugin:
    policy_type = MeshLoadBalancingStrategy.type

    def apply(self, ctx: Context, resources: ResourceSet) -> None:
        for _service, target, rule in outbound_rules(
            ctx.view, ctx.dataplane, resources, MeshLoadBalancingStrategy
        ):
            _apply(ctx, resources, target, rule)
