"""MeshCircuitBreaker plug-in: connection limits (``circuit_breakers``) and outlier detection
on each outbound service's EDS cluster (``to``) and each inbound's local cluster (``from``).

Outlier detection: ``disabled: true`` removes it; otherwise every detector the conf does not
configure is switched off (its ``enforcing_*`` set to 0) and every configured one enforced
at 100 %, so only what the policies say ejects a host. ``healthyPanicThreshold`` is the
cluster's ``common_lb_config.healthy_panic_threshold``.
"""

from __future__ import annotations

from decimal import Decimal
from functools import partial

from envoy.config.cluster.v3 import circuit_breaker_pb2, outlier_detection_pb2
from envoy.config.cluster.v3.cluster_pb2 import Cluster

from kumadp.cp.generate.context import Context
from kumadp.cp.generate.policies.edit import (
    Changes,
    duration,
    editable,
    inbound_targets,
    outbound_targets,
)
from kumadp.cp.generate.policies.rules import ProxyRules
from kumadp.cp.generate.resource_set import ResourceSet
from kumadp.resources.confschema import decimal
from kumadp.resources.meshcircuitbreaker import (
    CircuitBreakerConf,
    ConnectionLimits,
    Detectors,
    MeshCircuitBreaker,
    OutlierDetection,
)

ENFORCED = 100
OFF = 0


def thresholds(limits: ConnectionLimits) -> circuit_breaker_pb2.CircuitBreakers:
    out = circuit_breaker_pb2.CircuitBreakers()
    threshold = out.thresholds.add()
    for field in (
        "max_connections",
        "max_pending_requests",
        "max_requests",
        "max_retries",
        "max_connection_pools",
    ):
        value = getattr(limits, field)
        if value is not None:
            getattr(threshold, field).value = value
    return out


def _detectors(out: outlier_detection_pb2.OutlierDetection, detectors: Detectors) -> None:
    total, gateway, local = (
        detectors.total_failures,
        detectors.gateway_failures,
        detectors.local_origin_failures,
    )
    out.enforcing_consecutive_5xx.value = ENFORCED if total is not None else OFF
    if total is not None and total.consecutive is not None:
        out.consecutive_5xx.value = total.consecutive
    out.enforcing_consecutive_gateway_failure.value = ENFORCED if gateway is not None else OFF
    if gateway is not None and gateway.consecutive is not None:
        out.consecutive_gateway_failure.value = gateway.consecutive
    out.enforcing_consecutive_local_origin_failure.value = ENFORCED if local is not None else OFF
    if local is not None and local.consecutive is not None:
        out.consecutive_local_origin_failure.value = local.consecutive
    rate = detectors.success_rate
    out.enforcing_success_rate.value = ENFORCED if rate is not None else OFF
    if rate is not None:
        if rate.minimum_hosts is not None:
            out.success_rate_minimum_hosts.value = rate.minimum_hosts
        if rate.request_volume is not None:
            out.success_rate_request_volume.value = rate.request_volume
        if rate.standard_deviation_factor is not None:
            factor = Decimal(rate.standard_deviation_factor) * 1000  # Envoy: in thousandths
            out.success_rate_stdev_factor.value = int(factor)
    failure = detectors.failure_percentage
    out.enforcing_failure_percentage.value = ENFORCED if failure is not None else OFF
    out.enforcing_failure_percentage_local_origin.value = ENFORCED if failure is not None else OFF
    if failure is not None:
        if failure.minimum_hosts is not None:
            out.failure_percentage_minimum_hosts.value = failure.minimum_hosts
        if failure.request_volume is not None:
            out.failure_percentage_request_volume.value = failure.request_volume
        if failure.threshold is not None:
            out.failure_percentage_threshold.value = failure.threshold


def outlier_detection(conf: OutlierDetection) -> outlier_detection_pb2.OutlierDetection:
    out = outlier_detection_pb2.OutlierDetection()
    if conf.interval is not None:
        out.interval.CopyFrom(duration(conf.interval))
    if conf.base_ejection_time is not None:
        out.base_ejection_time.CopyFrom(duration(conf.base_ejection_time))
    if conf.max_ejection_percent is not None:
        out.max_ejection_percent.value = conf.max_ejection_percent
    if conf.split_external_and_local_errors is not None:
        out.split_external_local_origin_errors = conf.split_external_and_local_errors
    _detectors(out, conf.detectors or Detectors())
    return out


def configure_cluster(cluster: Cluster, conf: CircuitBreakerConf) -> None:
    if conf.connection_limits is not None:
        cluster.circuit_breakers.CopyFrom(thresholds(conf.connection_limits))
    outliers = conf.outlier_detection
    if outliers is None:
        return
    if outliers.disabled:
        cluster.ClearField("outlier_detection")
    else:
        cluster.outlier_detection.CopyFrom(outlier_detection(outliers))
    if outliers.healthy_panic_threshold is not None:
        panic = decimal(outliers.healthy_panic_threshold)
        cluster.common_lb_config.healthy_panic_threshold.value = panic


class CircuitBreakerPlugin:
    policy_type = MeshCircuitBreaker.type

    def apply(self, ctx: Context, resources: ResourceSet) -> None:
        policies = ctx.view.policies_of(MeshCircuitBreaker)
        if not policies:
            return
        rules = ProxyRules(policies, ctx.dataplane, ctx.view)
        changes = Changes()
        for service, target in outbound_targets(ctx.view, resources).items():
            rule = rules.outbound(service)
            if rule is not None:
                change = partial(configure_cluster, conf=rule.conf)
                changes.add(Cluster, target.cluster, (self.policy_type, id(rule)), change)
        changes.apply(ctx.view, resources)
        for inbound in inbound_targets(ctx.dataplane):
            rule = rules.inbound(inbound.inbound)
            if rule is not None:
                configure_cluster(editable(resources, Cluster, inbound.cluster), rule.conf)
