"""The dataplane profile: a sidecar beside one application instance.

Generators: its inbounds (to the local application), its explicit outbounds, a listener per
service VIP (bind-outbounds or transparent proxy) and the transparent proxy's passthrough
listeners. Plug-ins: MeshTrafficPermission (RBAC on the mTLS inbounds), then the resilience
policies (MeshTimeout, MeshRetry, MeshCircuitBreaker, MeshHealthCheck,
MeshLoadBalancingStrategy), each on the clusters, listeners and routes of the outbound
services and inbounds its rules select (``kumadp.cp.generate.policies.rules``); after
MeshRetry, the mesh's locality-aware routing makes retries leave a failing zone
(``policies.locality_failover``).
"""

from __future__ import annotations

from kumadp.cp.generate.context import Context
from kumadp.cp.generate.inbound import InboundGenerator
from kumadp.cp.generate.outbound import OutboundGenerator
from kumadp.cp.generate.policies.circuit_breaker import CircuitBreakerPlugin
from kumadp.cp.generate.policies.health_check import HealthCheckPlugin
from kumadp.cp.generate.policies.load_balancing import LoadBalancingPlugin
from kumadp.cp.generate.policies.locality_failover import LocalityFailoverPlugin
from kumadp.cp.generate.policies.retry import RetryPlugin
from kumadp.cp.generate.policies.timeout import TimeoutPlugin
from kumadp.cp.generate.policies.traffic_permission import TrafficPermissionPlugin
from kumadp.cp.generate.profile import DATAPLANE, Profile
from kumadp.cp.generate.transparent import TransparentProxyGenerator
from kumadp.cp.generate.vip import VipOutboundGenerator

PROFILE: Profile[Context] = Profile(
    DATAPLANE,
    generators=(
        InboundGenerator(),
        OutboundGenerator(),
        VipOutboundGenerator(),
        TransparentProxyGenerator(),
    ),
    plugins=(
        TrafficPermissionPlugin(),
        TimeoutPlugin(),
        RetryPlugin(),
        LocalityFailoverPlugin(),  # the mesh's routing: retries leave a failing zone
        CircuitBreakerPlugin(),
        HealthCheckPlugin(),
        LoadBalancingPlugin(),
    ),
)
