"""MeshHealthCheck plug-in: an active health check on each outbound service's EDS cluster.

The merged conf is completed with ``meshhealthcheck.DEFAULTS`` (interval 1m, timeout 15s,
thresholds 5 and 1); the checker follows the service's protocol (see the policy's module).
An endpoint failing ``unhealthyThreshold`` checks is unhealthy and gets no traffic, before
any request has hit it. Checks go through the cluster's transport socket, so under mTLS
they reach the endpoint's inbound listener as a mesh client (MeshTrafficPermission applies).
"""

from __future__ import annotations

import base64
from functools import partial

from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.core.v3 import base_pb2
from envoy.config.core.v3.health_check_pb2 import HealthCheck
from envoy.type.v3 import http_pb2, range_pb2

from kumadp.cp.generate import protocol
from kumadp.cp.generate.context import Context
from kumadp.cp.generate.outbound import service_protocol
from kumadp.cp.generate.policies.edit import configure, duration
from kumadp.cp.generate.policies.rules import outbound_rules
from kumadp.cp.generate.resource_set import ResourceSet
from kumadp.resources.confschema import decimal, merge
from kumadp.resources.meshhealthcheck import (
    DEFAULTS,
    GrpcCheck,
    HeaderModifier,
    HealthCheckConf,
    HttpCheck,
    MeshHealthCheck,
    TcpCheck,
)

DEFAULT_PATH = "/"


def _payload(text: str) -> HealthCheck.Payload:
    return HealthCheck.Payload(binary=base64.b64decode(text))


def _tcp(check: HealthCheck, conf: TcpCheck) -> None:
    check.tcp_health_check.SetInParent()
    if conf.send is not None:
        check.tcp_health_check.send.CopyFrom(_payload(conf.send))
    for block in conf.receive or ():
        check.tcp_health_check.receive.append(_payload(block))


def _headers(headers: HeaderModifier | None) -> list[base_pb2.HeaderValueOption]:
    if headers is None:
        return []
    out = []
    for values, action in (
        (headers.set, base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD),
        (headers.add, base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD),
    ):
        for header in values or ():
            out.append(
                base_pb2.HeaderValueOption(
                    header=base_pb2.HeaderValue(key=header.name or "", value=header.value or ""),
                    append_action=action,
                )
            )
    return out


def _http(check: HealthCheck, conf: HttpCheck, http2: bool) -> None:
    http = check.http_health_check
    http.path = conf.path or DEFAULT_PATH
    http.request_headers_to_add.extend(_headers(conf.request_headers_to_add))
    for status in conf.expected_statuses or ():
        http.expected_statuses.append(range_pb2.Int64Range(start=status, end=status + 1))
    if http2:
        http.codec_client_type = http_pb2.HTTP2


def _grpc(check: HealthCheck, conf: GrpcCheck) -> None:
    check.grpc_health_check.SetInParent()
    if conf.service_name is not None:
        check.grpc_health_check.service_name = conf.service_name
    if conf.authority is not None:
        check.grpc_health_check.authority = conf.authority


def health_check(conf: HealthCheckConf, proto: str) -> HealthCheck | None:
    """The check for a service of protocol ``proto``; None when its checks are disabled."""
    full = merge(DEFAULTS, conf)
    assert full is not None
    check = HealthCheck(
        interval=duration(full.interval or "1m"),
        timeout=duration(full.timeout or "15s"),
    )
    check.unhealthy_threshold.value = full.unhealthy_threshold or 5
    check.healthy_threshold.value = full.healthy_threshold or 1
    tcp, http, grpc = full.tcp or TcpCheck(), full.http or HttpCheck(), full.grpc or GrpcCheck()
    proto = protocol.normalise(proto)
    if proto == protocol.GRPC and not grpc.disabled:
        _grpc(check, grpc)
    elif proto in (protocol.HTTP, protocol.HTTP2) and not http.disabled:
        _http(check, http, protocol.uses_http2(proto))
    elif not tcp.disabled:
        _tcp(check, tcp)
    else:
        return None
    for name in ("initial_jitter", "interval_jitter", "no_traffic_interval"):
        value = getattr(full, name)
        if value is not None:
            getattr(check, name).CopyFrom(duration(value))
    if full.interval_jitter_percent is not None:
        check.interval_jitter_percent = full.interval_jitter_percent
    if full.event_log_path is not None:
        check.event_log_path = full.event_log_path
    if full.always_log_health_check_failures is not None:
        check.always_log_health_check_failures = full.always_log_health_check_failures
    if full.reuse_connection is not None:
        check.reuse_connection.value = full.reuse_connection
    return check


def configure_cluster(cluster: Cluster, conf: HealthCheckConf, proto: str) -> None:
    check = health_check(conf, proto)
    if check is not None:
        del cluster.health_checks[:]
        cluster.health_checks.append(check)
    if conf.healthy_panic_threshold is not None:
        panic = decimal(conf.healthy_panic_threshold)
        cluster.common_lb_config.healthy_panic_threshold.value = panic
    if conf.fail_traffic_on_panic is not None:
        zone_aware = cluster.common_lb_config.zone_aware_lb_config
        zone_aware.fail_traffic_on_panic = conf.fail_traffic_on_panic


class HealthCheckPlugin:
    policy_type = MeshHealthCheck.type

    def apply(self, ctx: Context, resources: ResourceSet) -> None:
        for service, target, rule in outbound_rules(
            ctx.view, ctx.dataplane, resources, MeshHealthCheck
        ):
            proto = service_protocol(ctx.view, service) if target.http else protocol.TCP
            conf = rule.conf
            change = partial(configure_cluster, conf=conf, proto=proto)
            key = (self.policy_type, id(rule), proto)
            configure(ctx.view, resources, Cluster, target.cluster, key, change)
