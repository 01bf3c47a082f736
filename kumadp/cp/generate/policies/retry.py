"""MeshRetry plug-in: a retry policy on the routes of each outbound service (HTTP, HTTP/2:
the ``http`` conf; gRPC: ``grpc``), or connect attempts on its TCP proxy (``tcp``).

``numRetries: 0`` means no retry policy at all. HttpMethod conditions become retriable
``:method`` request headers, status codes ``retriable_status_codes`` (with
``retriable-status-codes`` in ``retry_on``). Kuma applies ``http`` to ``http`` services only;
kumadp also to ``http2`` ones (the same HTTP semantics).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial

from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.retry.host.omit_host_metadata.v3 import omit_host_metadata_config_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.extensions.retry.priority.previous_priorities.v3 import (
    previous_priorities_config_pb2,
)
from envoy.type.matcher.v3 import regex_pb2, string_pb2

from kumadp.cp.generate import protocol
from kumadp.cp.generate.context import Context
from kumadp.cp.generate.outbound import service_protocol
from kumadp.cp.generate.policies.edit import (
    Changes,
    duration,
    edit_hcm,
    edit_tcp_proxy,
    route_actions,
)
from kumadp.cp.generate.policies.rules import outbound_rules
from kumadp.cp.generate.resource_set import ResourceSet
from kumadp.resources.meshretry import (
    GRPC_RETRY_ON,
    HTTP_METHOD_PREFIX,
    HTTP_RETRY_ON,
    BackOff,
    GrpcRetry,
    HeaderMatch,
    HttpRetry,
    MeshRetry,
    Predicate,
    RateLimitedBackOff,
    RetryConf,
    status_code,
)

HTTP_DEFAULT_RETRY_ON = "gateway-error,connect-failure,refused-stream"
GRPC_DEFAULT_RETRY_ON = (
    "cancelled,connect-failure,gateway-error,refused-stream,reset,resource-exhausted,unavailable"
)
RETRIABLE_STATUS_CODES = "retriable-status-codes"
PREVIOUS_HOSTS = "envoy.retry_host_predicates.previous_hosts"
OMIT_HOST_METADATA = "envoy.retry_host_predicates.omit_host_metadata"
PREVIOUS_PRIORITIES = "envoy.retry_priorities.previous_priorities"
LB_METADATA = "envoy.lb"
_FORMATS = {"Seconds": rc.RetryPolicy.SECONDS, "UnixTimestamp": rc.RetryPolicy.UNIX_TIMESTAMP}


def header_matcher(match: HeaderMatch) -> rc.HeaderMatcher:
    kind = match.type or "Exact"
    matcher = rc.HeaderMatcher(name=match.name or "")
    if kind in ("Present", "Absent"):
        matcher.present_match = kind == "Present"
    elif kind == "Prefix":
        matcher.string_match.CopyFrom(string_pb2.StringMatcher(prefix=match.value or ""))
    elif kind == "RegularExpression":
        regex = regex_pb2.RegexMatcher(regex=match.value or "")
        matcher.string_match.CopyFrom(string_pb2.StringMatcher(safe_regex=regex))
    else:
        matcher.string_match.CopyFrom(string_pb2.StringMatcher(exact=match.value or ""))
    return matcher


def _back_off(policy: rc.RetryPolicy, back_off: BackOff | None) -> None:
    if back_off is None:
        return
    policy.retry_back_off.SetInParent()
    if back_off.base_interval is not None:
        policy.retry_back_off.base_interval.CopyFrom(duration(back_off.base_interval))
    if back_off.max_interval is not None:
        policy.retry_back_off.max_interval.CopyFrom(duration(back_off.max_interval))


def _rate_limited(policy: rc.RetryPolicy, back_off: RateLimitedBackOff | None) -> None:
    if back_off is None:
        return
    out = policy.rate_limited_retry_back_off
    for header in back_off.reset_headers or ():
        out.reset_headers.add(name=header.name or "", format=_FORMATS[header.format or "Seconds"])
    if back_off.max_interval is not None:
        out.max_interval.CopyFrom(duration(back_off.max_interval))


def _predicates(policy: rc.RetryPolicy, predicates: Iterable[Predicate]) -> None:
    for predicate in predicates:
        if predicate.predicate == "OmitPreviousHosts":
            host = policy.retry_host_predicate.add(name=PREVIOUS_HOSTS)
            host.typed_config.Pack(previous_hosts_pb2.PreviousHostsPredicate())
        elif predicate.predicate == "OmitHostsWithTags":
            config = omit_host_metadata_config_pb2.OmitHostMetadataConfig()
            config.metadata_match.filter_metadata[LB_METADATA].update(dict(predicate.tags or ()))
            host = policy.retry_host_predicate.add(name=OMIT_HOST_METADATA)
            host.typed_config.Pack(config)
        else:
            priorities = previous_priorities_config_pb2.PreviousPrioritiesConfig(
                update_frequency=predicate.update_frequency or 2
            )
            policy.retry_priority.name = PREVIOUS_PRIORITIES
            policy.retry_priority.typed_config.Pack(priorities)


def _common(conf: HttpRetry | GrpcRetry) -> rc.RetryPolicy:
    policy = rc.RetryPolicy()
    if conf.num_retries is not None:
        policy.num_retries.value = conf.num_retries
    if conf.per_try_timeout is not None:
        policy.per_try_timeout.CopyFrom(duration(conf.per_try_timeout))
    _back_off(policy, conf.back_off)
    _rate_limited(policy, conf.rate_limited_back_off)
    return policy


def http_retry_policy(conf: HttpRetry) -> rc.RetryPolicy | None:
    if conf.num_retries == 0:
        return None
    policy = _common(conf)
    conditions: list[str] = []
    for condition in conf.retry_on or ():
        code = status_code(condition)
        if code is not None:
            policy.retriable_status_codes.append(code)
        elif condition.startswith(HTTP_METHOD_PREFIX):
            method = condition.removeprefix(HTTP_METHOD_PREFIX).upper()
            policy.retriable_request_headers.append(
                header_matcher(HeaderMatch(name=":method", value=method))
            )
        elif HTTP_RETRY_ON[condition] not in conditions:
            conditions.append(HTTP_RETRY_ON[condition])
    if policy.retriable_status_codes:
        conditions.append(RETRIABLE_STATUS_CODES)
    policy.retry_on = ",".join(conditions) or HTTP_DEFAULT_RETRY_ON
    for match in conf.retriable_request_headers or ():
        policy.retriable_request_headers.append(header_matcher(match))
    for match in conf.retriable_response_headers or ():
        policy.retriable_headers.append(header_matcher(match))
    _predicates(policy, conf.host_selection or ())
    if conf.host_selection_max_attempts is not None:
        policy.host_selection_retry_max_attempts = conf.host_selection_max_attempts
    return policy


def grpc_retry_policy(conf: GrpcRetry) -> rc.RetryPolicy | None:
    if conf.num_retries == 0:
        return None
    policy = _common(conf)
    conditions = [GRPC_RETRY_ON[c] for c in conf.retry_on or ()]
    policy.retry_on = ",".join(conditions) or GRPC_DEFAULT_RETRY_ON
    return policy


def route_retry_policy(conf: RetryConf, proto: str) -> rc.RetryPolicy | None:
    """What the routes to a service of protocol ``proto`` get (None: nothing)."""
    if protocol.normalise(proto) == protocol.GRPC:
        return grpc_retry_policy(conf.grpc) if conf.grpc is not None else None
    if protocol.is_http(proto):
        return http_retry_policy(conf.http) if conf.http is not None else None
    return None


def _listener(listener: Listener, conf: RetryConf, proto: str) -> None:
    policy = route_retry_policy(conf, proto)

    def hcm(manager: hcm_pb2.HttpConnectionManager) -> None:
        for action in route_actions(manager):
            action.retry_policy.CopyFrom(policy)

    def tcp(proxy: tcp_proxy_pb2.TcpProxy) -> None:
        if conf.tcp is not None and conf.tcp.max_connect_attempt is not None:
            proxy.max_connect_attempts.value = conf.tcp.max_connect_attempt

    if policy is not None:
        edit_hcm(listener, hcm)
    if conf.tcp is not None and not protocol.is_http(proto):
        edit_tcp_proxy(listener, tcp)


def _applies(conf: RetryConf, proto: str) -> bool:
    """Whether ``conf`` has a part for a service of protocol ``proto``."""
    if protocol.normalise(proto) == protocol.GRPC:
        return conf.grpc is not None
    if protocol.is_http(proto):
        return conf.http is not None
    return conf.tcp is not None


class RetryPlugin:
    policy_type = MeshRetry.type

    def apply(self, ctx: Context, resources: ResourceSet) -> None:
        changes = Changes()
        for service, target, rule in outbound_rules(ctx.view, ctx.dataplane, resources, MeshRetry):
            proto = service_protocol(ctx.view, service) if target.http else protocol.TCP
            conf = rule.conf
            if not _applies(conf, proto):
                continue
            key = (self.policy_type, id(rule), proto)
            changes.add_all(
                Listener, target.listeners, key, partial(_listener, conf=conf, proto=proto)
            )
        changes.apply(ctx.view, resources)
