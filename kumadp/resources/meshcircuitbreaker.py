"""MeshCircuitBreaker (Kuma 2.x): connection limits and outlier detection (passive health
checking), outbound (``to``) and inbound (``from``)::

    default:
      connectionLimits:
        maxConnections: 1024        # to the upstream cluster
        maxPendingRequests: 1024    # waiting for a connection
        maxRequests: 1024           # in flight (HTTP)
        maxRetries: 1024            # retries in flight
        maxConnectionPools: 1024
      outlierDetection:
        disabled: false
        interval: 10s               # between ejection sweeps
        baseEjectionTime: 30s       # times the number of ejections so far
        maxEjectionPercent: 20      # of the cluster's hosts (at least one is ejectable)
        splitExternalAndLocalErrors: false
        healthyPanicThreshold: 50   # below this % of healthy hosts, use them all
        detectors:
          totalFailures: {consecutive: 5}        # 5xx / connection failures
          gatewayFailures: {consecutive: 5}      # 502, 503, 504
          localOriginFailures: {consecutive: 5}  # with splitExternalAndLocalErrors
          successRate: {minimumHosts: 5, requestVolume: 100, standardDeviationFactor: "1.9"}
          failurePercentage: {minimumHosts: 5, requestVolume: 50, threshold: 85}

A detector takes part only when it is configured (Kuma's rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from kumadp.resources.confschema import (
    BOOL,
    POSITIVE_DURATION,
    UINT32,
    Conf,
    Integer,
    Nested,
    Percent,
    conf_field,
)
from kumadp.resources.targeted import FROM, TO, Item, PolicyKind, TargetedPolicy, parse_policy
from kumadp.resources.targetref import MESH, TargetRef

MESH_CIRCUIT_BREAKER_TYPE = "MeshCircuitBreaker"
_PERCENT = Integer(0, 100)


@dataclass(frozen=True)
class ConnectionLimits(Conf):
    max_connections: int | None = conf_field(UINT32)
    max_connection_pools: int | None = conf_field(UINT32)
    max_pending_requests: int | None = conf_field(UINT32)
    max_retries: int | None = conf_field(UINT32)
    max_requests: int | None = conf_field(UINT32)


@dataclass(frozen=True)
class Consecutive(Conf):
    consecutive: int | None = conf_field(UINT32)


@dataclass(frozen=True)
class SuccessRate(Conf):
    minimum_hosts: int | None = conf_field(UINT32)
    request_volume: int | None = conf_field(UINT32)
    standard_deviation_factor: int | str | None = conf_field(Percent(high=None))


@dataclass(frozen=True)
class FailurePercentage(Conf):
    request_volume: int | None = conf_field(UINT32)
    minimum_hosts: int | None = conf_field(UINT32)
    threshold: int | None = conf_field(_PERCENT)


_CONSECUTIVE = Nested(Consecutive)
_SUCCESS_RATE = Nested(SuccessRate)
_FAILURE_PERCENTAGE = Nested(FailurePercentage)


@dataclass(frozen=True)
class Detectors(Conf):
    total_failures: Consecutive | None = conf_field(_CONSECUTIVE)  # noqa: RUF009 (immutable)
    gateway_failures: Consecutive | None = conf_field(_CONSECUTIVE)  # noqa: RUF009
    local_origin_failures: Consecutive | None = conf_field(_CONSECUTIVE)  # noqa: RUF009
    success_rate: SuccessRate | None = conf_field(_SUCCESS_RATE)  # noqa: RUF009
    failure_percentage: FailurePercentage | None = conf_field(_FAILURE_PERCENTAGE)  # noqa: RUF009


_DETECTORS = Nested(Detectors)


@dataclass(frozen=True)
class OutlierDetection(Conf):
    disabled: bool | None = conf_field(BOOL)
    interval: str | None = conf_field(POSITIVE_DURATION)
    base_ejection_time: str | None = conf_field(POSITIVE_DURATION)
    max_ejection_percent: int | None = conf_field(_PERCENT)
    split_external_and_local_errors: bool | None = conf_field(BOOL)
    detectors: Detectors | None = conf_field(_DETECTORS)  # noqa: RUF009 (an immutable conf)
    healthy_panic_threshold: int | str | None = conf_field(Percent(Decimal(100)))


_LIMITS, _OUTLIERS = Nested(ConnectionLimits), Nested(OutlierDetection)


@dataclass(frozen=True)
class CircuitBreakerConf(Conf):
    connection_limits: ConnectionLimits | None = conf_field(_LIMITS)  # noqa: RUF009 (immutable)
    outlier_detection: OutlierDetection | None = conf_field(_OUTLIERS)  # noqa: RUF009


class MeshCircuitBreaker(TargetedPolicy[CircuitBreakerConf]):
    type = MESH_CIRCUIT_BREAKER_TYPE


KIND: PolicyKind[MeshCircuitBreaker, CircuitBreakerConf] = PolicyKind(
    MeshCircuitBreaker, CircuitBreakerConf, (TO, FROM)
)


def parse_mesh_circuit_breaker(doc: object) -> MeshCircuitBreaker:
    return parse_policy(doc, KIND)


def default_mesh_circuit_breaker(mesh: str) -> MeshCircuitBreaker:
    """``mesh-circuit-breaker-all-<mesh>``: what Kuma creates with a new mesh."""
    conf = CircuitBreakerConf(
        connection_limits=ConnectionLimits(
            max_connections=1024, max_pending_requests=1024, max_requests=1024, max_retries=1024
        ),
        outlier_detection=OutlierDetection(
            disabled=False,
            interval="10s",
            base_ejection_time="30s",
            max_ejection_percent=20,
            split_external_and_local_errors=False,
            detectors=Detectors(
                total_failures=Consecutive(5),
                gateway_failures=Consecutive(5),
                local_origin_failures=Consecutive(5),
                success_rate=SuccessRate(
                    minimum_hosts=5, request_volume=100, standard_deviation_factor="1.9"
                ),
                failure_percentage=FailurePercentage(
                    request_volume=50, minimum_hosts=5, threshold=85
                ),
            ),
        ),
    )
    return MeshCircuitBreaker(
        mesh=mesh,
        name=f"mesh-circuit-breaker-all-{mesh}",
        target_ref=TargetRef(MESH),
        to=(Item(TargetRef(MESH), conf),),
    )


__all__ = [
    "KIND",
    "MESH_CIRCUIT_BREAKER_TYPE",
    "CircuitBreakerConf",
    "ConnectionLimits",
    "Consecutive",
    "Detectors",
    "FailurePercentage",
    "MeshCircuitBreaker",
    "OutlierDetection",
    "SuccessRate",
    "default_mesh_circuit_breaker",
    "parse_mesh_circuit_breaker",
]
