"""MeshHealthCheck (Kuma 2.x): active health checks of the endpoints of the proxy's outbound
services (``to`` only)::

    default:
      interval: 1m                   # between checks (default 1m)
      timeout: 15s                   # for an answer (default 15s)
      unhealthyThreshold: 5          # failures before a host is unhealthy (default 5)
      healthyThreshold: 1            # successes before it is healthy again (default 1)
      initialJitter: 1s
      intervalJitter: 1s
      intervalJitterPercent: 10
      healthyPanicThreshold: 50      # below this % of healthy hosts, use them all
      failTrafficOnPanic: false      # ... or fail every request instead
      noTrafficInterval: 1m          # while the cluster has had no traffic yet
      eventLogPath: /tmp/hc.log
      alwaysLogHealthCheckFailures: false
      reuseConnection: true
      tcp: {disabled: false, send: <base64>, receive: [<base64>, ...]}
      http:
        disabled: false
        path: /health                # default /
        requestHeadersToAdd: {set: [{name: x-hc, value: "1"}], add: [...]}
        expectedStatuses: [200, 204] # default 200
      grpc: {disabled: false, serviceName: health, authority: backend}

The check used follows the service's protocol: gRPC services get the gRPC check, HTTP ones
the HTTP check, anything else the TCP check; when the protocol's check is disabled, the TCP
check (if not disabled itself); no check at all when that is disabled too.
"""

from __future__ import annotations

from dataclasses import dataclass

from kumadp.resources.confschema import (
    BOOL,
    DURATION,
    POSITIVE_DURATION,
    Conf,
    Integer,
    ListOf,
    Nested,
    Percent,
    Text,
    conf_field,
)
from kumadp.resources.errors import ErrorCollector, field_path
from kumadp.resources.targeted import TO, PolicyKind, TargetedPolicy, parse_policy

MESH_HEALTH_CHECK_TYPE = "MeshHealthCheck"
_HEADER_NAME = Text(r"[a-zA-Z0-9!#$%&'*+.^_`|~:-]+", "an HTTP header name")
_POSITIVE = Integer(1, 2**31 - 1)


@dataclass(frozen=True)
class TcpCheck(Conf):
    disabled: bool | None = conf_field(BOOL)
    send: str | None = conf_field(Text(base64=True))
    receive: tuple[str, ...] | None = conf_field(ListOf(Text(base64=True)))


@dataclass(frozen=True)
class HeaderValue(Conf):
    name: str | None = conf_field(_HEADER_NAME)
    value: str | None = conf_field(Text())

    def check(self, c: ErrorCollector, path: str) -> None:
        for key, found in (("name", self.name), ("value", self.value)):
            if found is None:
                c.add(field_path(path, key), "is required")


_HEADER_VALUES = ListOf(Nested(HeaderValue))


@dataclass(frozen=True)
class HeaderModifier(Conf):
    set: tuple[HeaderValue, ...] | None = conf_field(_HEADER_VALUES)
    add: tuple[HeaderValue, ...] | None = conf_field(_HEADER_VALUES)


_HEADERS = Nested(HeaderModifier)


@dataclass(frozen=True)
class HttpCheck(Conf):
    disabled: bool | None = conf_field(BOOL)
    path: str | None = conf_field(Text(r"/\S*", "an absolute path such as /health"))
    request_headers_to_add: HeaderModifier | None = conf_field(_HEADERS)  # noqa: RUF009
    expected_statuses: tuple[int, ...] | None = conf_field(ListOf(Integer(100, 599), 1))


@dataclass(frozen=True)
class GrpcCheck(Conf):
    disabled: bool | None = conf_field(BOOL)
    service_name: str | None = conf_field(Text())
    authority: str | None = conf_field(Text())


_TCP, _HTTP, _GRPC = Nested(TcpCheck), Nested(HttpCheck), Nested(GrpcCheck)


@dataclass(frozen=True)
class HealthCheckConf(Conf):
    interval: str | None = conf_field(POSITIVE_DURATION)
    timeout: str | None = conf_field(POSITIVE_DURATION)
    unhealthy_threshold: int | None = conf_field(_POSITIVE)
    healthy_threshold: int | None = conf_field(_POSITIVE)
    initial_jitter: str | None = conf_field(DURATION)
    interval_jitter: str | None = conf_field(DURATION)
    interval_jitter_percent: int | None = conf_field(Integer(0, 100))
    healthy_panic_threshold: int | str | None = conf_field(Percent())
    fail_traffic_on_panic: bool | None = conf_field(BOOL)
    no_traffic_interval: str | None = conf_field(POSITIVE_DURATION)
    event_log_path: str | None = conf_field(Text())
    always_log_health_check_failures: bool | None = conf_field(BOOL)
    reuse_connection: bool | None = conf_field(BOOL)
    tcp: TcpCheck | None = conf_field(_TCP)  # noqa: RUF009 (an immutable conf)
    http: HttpCheck | None = conf_field(_HTTP)  # noqa: RUF009 (an immutable conf)
    grpc: GrpcCheck | None = conf_field(_GRPC)  # noqa: RUF009 (an immutable conf)


# What a check gets for a field no MeshHealthCheck sets (Kuma's defaults).
DEFAULTS = HealthCheckConf(interval="1m", timeout="15s", unhealthy_threshold=5, healthy_threshold=1)


class MeshHealthCheck(TargetedPolicy[HealthCheckConf]):
    type = MESH_HEALTH_CHECK_TYPE


KIND: PolicyKind[MeshHealthCheck, HealthCheckConf] = PolicyKind(
    MeshHealthCheck, HealthCheckConf, (TO,)
)


def parse_mesh_health_check(doc: object) -> MeshHealthCheck:
    return parse_policy(doc, KIND)


__all__ = [
    "DEFAULTS",
    "KIND",
    "MESH_HEALTH_CHECK_TYPE",
    "GrpcCheck",
    "HeaderModifier",
    "HeaderValue",
    "HealthCheckConf",
    "HttpCheck",
    "MeshHealthCheck",
    "TcpCheck",
    "parse_mesh_health_check",
]
