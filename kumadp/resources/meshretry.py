"""MeshRetry (Kuma 2.x): retries of the proxy's outbound traffic (``to`` only)::

    default:
      tcp: {maxConnectAttempt: 5}                     # TCP services: connect attempts
      http:                                           # HTTP and HTTP/2 services
        numRetries: 5                                 # 0: no retries
        perTryTimeout: 16s
        backOff: {baseInterval: 25ms, maxInterval: 250ms}
        rateLimitedBackOff:
          resetHeaders: [{name: retry-after, format: Seconds}]
          maxInterval: 300s
        retryOn: [5XX, GatewayError, Reset, Retriable4xx, ConnectFailure, EnvoyRatelimited,
                  RefusedStream, Http3PostConnectFailure, HttpMethodGet, ..., 503]
        retriableResponseHeaders: [{name: x-retry, type: Exact, value: "yes"}]
        retriableRequestHeaders: [...]
        hostSelection: [{predicate: OmitPreviousHosts}]
        hostSelectionMaxAttempts: 3
      grpc:                                           # gRPC services
        numRetries: 5
        perTryTimeout: 16s
        backOff: {...}
        rateLimitedBackOff: {...}
        retryOn: [Canceled, DeadlineExceeded, Internal, ResourceExhausted, Unavailable]

Without ``retryOn`` HTTP retries on gateway errors, connect failures and refused streams, and
gRPC on those plus resets and the cancelled, resource-exhausted and unavailable statuses
(Kuma's defaults).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kumadp.resources.confschema import (
    POSITIVE_DURATION,
    UINT32,
    Conf,
    Integer,
    Kind,
    ListOf,
    Nested,
    OneOf,
    StringMap,
    Text,
    conf_field,
    seconds,
)
from kumadp.resources.errors import ErrorCollector, field_path
from kumadp.resources.targeted import TO, Item, PolicyKind, TargetedPolicy, parse_policy
from kumadp.resources.targetref import MESH, TargetRef

MESH_RETRY_TYPE = "MeshRetry"

# retryOn condition -> Envoy's retry_on value (HttpMethod*: a retriable request method)
HTTP_RETRY_ON = {
    "5XX": "5xx",
    "5xx": "5xx",
    "GatewayError": "gateway-error",
    "Reset": "reset",
    "Retriable4xx": "retriable-4xx",
    "ConnectFailure": "connect-failure",
    "EnvoyRatelimited": "envoy-ratelimited",
    "RefusedStream": "refused-stream",
    "Http3PostConnectFailure": "http3-post-connect-failure",
}
HTTP_METHOD_PREFIX = "HttpMethod"
HTTP_METHODS = ("Connect", "Delete", "Get", "Head", "Options", "Patch", "Post", "Put", "Trace")
GRPC_RETRY_ON = {
    "Canceled": "cancelled",  # Envoy's spelling (Kuma writes "canceled", which Envoy ignores)
    "DeadlineExceeded": "deadline-exceeded",
    "Internal": "internal",
    "ResourceExhausted": "resource-exhausted",
    "Unavailable": "unavailable",
}
HEADER_MATCH_TYPES = ("Exact", "Prefix", "RegularExpression", "Present", "Absent")
PREDICATES = ("OmitPreviousHosts", "OmitHostsWithTags", "OmitPreviousPriorities")
_HEADER_NAME = Text(r"[a-zA-Z0-9!#$%&'*+.^_`|~:-]+", "an HTTP header name")


class _HttpRetryOn(Kind):
    """A condition of ``HTTP_RETRY_ON``, ``HttpMethod<Method>``, or a status code."""

    names = (*HTTP_RETRY_ON, *(HTTP_METHOD_PREFIX + m for m in HTTP_METHODS))

    def parse(self, c: ErrorCollector, value: Any, path: str) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and (value in self.names or status_code(value) is not None):
            return value
        known = ", ".join(n for n in self.names if n != "5xx")
        c.add(path, f"must be one of {known}, or an HTTP status code (100-599)")
        return None


def status_code(condition: str) -> int | None:
    """The status code a retryOn condition names, if it is one."""
    return int(condition) if condition.isdigit() and 100 <= int(condition) <= 599 else None


@dataclass(frozen=True)
class BackOff(Conf):
    base_interval: str | None = conf_field(POSITIVE_DURATION)
    max_interval: str | None = conf_field(POSITIVE_DURATION)


@dataclass(frozen=True)
class ResetHeader(Conf):
    name: str | None = conf_field(_HEADER_NAME)
    format: str | None = conf_field(OneOf("Seconds", "UnixTimestamp"))

    def check(self, c: ErrorCollector, path: str) -> None:
        for key, value in (("name", self.name), ("format", self.format)):
            if value is None:
                c.add(field_path(path, key), "is required")


_RESET_HEADERS = ListOf(Nested(ResetHeader), min_items=1)


@dataclass(frozen=True)
class RateLimitedBackOff(Conf):
    reset_headers: tuple[ResetHeader, ...] | None = conf_field(_RESET_HEADERS)
    max_interval: str | None = conf_field(POSITIVE_DURATION)


@dataclass(frozen=True)
class HeaderMatch(Conf):
    type: str | None = conf_field(OneOf(*HEADER_MATCH_TYPES))
    name: str | None = conf_field(_HEADER_NAME)
    value: str | None = conf_field(Text())

    def check(self, c: ErrorCollector, path: str) -> None:
        if self.name is None:
            c.add(field_path(path, "name"), "is required")
        if self.type not in ("Present", "Absent") and self.value is None:
            c.add(field_path(path, "value"), f"is required for type {self.type or 'Exact'}")


@dataclass(frozen=True)
class Predicate(Conf):
    predicate: str | None = conf_field(OneOf(*PREDICATES))
    tags: tuple[tuple[str, str], ...] | None = conf_field(StringMap())
    update_frequency: int | None = conf_field(Integer(1, 2**31 - 1))

    def check(self, c: ErrorCollector, path: str) -> None:
        if self.predicate is None:
            c.add(field_path(path, "predicate"), "is required")
        elif self.predicate == "OmitHostsWithTags" and not self.tags:
            c.add(field_path(path, "tags"), "is required for predicate OmitHostsWithTags")


_BACK_OFF = Nested(BackOff)
_RATE_LIMITED = Nested(RateLimitedBackOff)
_HEADERS = ListOf(Nested(HeaderMatch))


def _check_back_off(c: ErrorCollector, path: str, back_off: BackOff | None) -> None:
    if back_off is None or back_off.base_interval is None or back_off.max_interval is None:
        return
    if seconds(back_off.max_interval) < seconds(back_off.base_interval):
        c.add(field_path(path, "backOff.maxInterval"), "must not be shorter than baseInterval")


@dataclass(frozen=True)
class HttpRetry(Conf):
    num_retries: int | None = conf_field(UINT32)
    per_try_timeout: str | None = conf_field(POSITIVE_DURATION)
    back_off: BackOff | None = conf_field(_BACK_OFF)  # noqa: RUF009 (an immutable conf)
    rate_limited_back_off: RateLimitedBackOff | None = conf_field(_RATE_LIMITED)  # noqa: RUF009
    retry_on: tuple[str, ...] | None = conf_field(ListOf(_HttpRetryOn(), min_items=1))
    retriable_response_headers: tuple[HeaderMatch, ...] | None = conf_field(_HEADERS)
    retriable_request_headers: tuple[HeaderMatch, ...] | None = conf_field(_HEADERS)
    host_selection: tuple[Predicate, ...] | None = conf_field(ListOf(Nested(Predicate)))
    host_selection_max_attempts: int | None = conf_field(Integer(1, 2**31 - 1))

    def check(self, c: ErrorCollector, path: str) -> None:
        _check_back_off(c, path, self.back_off)


@dataclass(frozen=True)
class GrpcRetry(Conf):
    num_retries: int | None = conf_field(UINT32)
    per_try_timeout: str | None = conf_field(POSITIVE_DURATION)
    back_off: BackOff | None = conf_field(_BACK_OFF)  # noqa: RUF009 (an immutable conf)
    rate_limited_back_off: RateLimitedBackOff | None = conf_field(_RATE_LIMITED)  # noqa: RUF009
    retry_on: tuple[str, ...] | None = conf_field(ListOf(OneOf(*GRPC_RETRY_ON), min_items=1))

    def check(self, c: ErrorCollector, path: str) -> None:
        _check_back_off(c, path, self.back_off)


@dataclass(frozen=True)
class TcpRetry(Conf):
    max_connect_attempt: int | None = conf_field(Integer(1))


_TCP, _HTTP, _GRPC = Nested(TcpRetry), Nested(HttpRetry), Nested(GrpcRetry)


@dataclass(frozen=True)
class RetryConf(Conf):
    tcp: TcpRetry | None = conf_field(_TCP)  # noqa: RUF009 (an immutable conf)
    http: HttpRetry | None = conf_field(_HTTP)  # noqa: RUF009 (an immutable conf)
    grpc: GrpcRetry | None = conf_field(_GRPC)  # noqa: RUF009 (an immutable conf)


class MeshRetry(TargetedPolicy[RetryConf]):
    type = MESH_RETRY_TYPE


KIND: PolicyKind[MeshRetry, RetryConf] = PolicyKind(MeshRetry, RetryConf, (TO,))


def parse_mesh_retry(doc: object) -> MeshRetry:
    return parse_policy(doc, KIND)


def default_mesh_retry(mesh: str) -> MeshRetry:
    """``mesh-retry-all-<mesh>``: what Kuma creates with a new mesh."""
    back_off = BackOff(base_interval="25ms", max_interval="250ms")
    conf = RetryConf(
        tcp=TcpRetry(max_connect_attempt=5),
        http=HttpRetry(num_retries=5, per_try_timeout="16s", back_off=back_off),
        grpc=GrpcRetry(
            num_retries=5,
            per_try_timeout="16s",
            back_off=back_off,
            retry_on=tuple(GRPC_RETRY_ON),
        ),
    )
    return MeshRetry(
        mesh=mesh,
        name=f"mesh-retry-all-{mesh}",
        target_ref=TargetRef(MESH),
        to=(Item(TargetRef(MESH), conf),),
    )


__all__ = [
    "GRPC_RETRY_ON",
    "HTTP_METHOD_PREFIX",
    "HTTP_RETRY_ON",
    "KIND",
    "MESH_RETRY_TYPE",
    "BackOff",
    "GrpcRetry",
    "HeaderMatch",
    "HttpRetry",
    "MeshRetry",
    "Predicate",
    "RateLimitedBackOff",
    "ResetHeader",
    "RetryConf",
    "TcpRetry",
    "default_mesh_retry",
    "parse_mesh_retry",
    "status_code",
]
