"""The resilience policies' models: round trips, the mesh's default policies, and validation
errors with their field paths (one table per policy type)."""

from __future__ import annotations

from typing import Any

import pytest

from kumadp.resources import ValidationError, parse_resource
from kumadp.resources.meshcircuitbreaker import default_mesh_circuit_breaker
from kumadp.resources.meshretry import MeshRetry, default_mesh_retry
from kumadp.resources.meshtimeout import (
    HttpTimeouts,
    MeshTimeout,
    TimeoutConf,
    default_mesh_timeout,
)
from kumadp.resources.targeted import Item
from kumadp.resources.targetref import TargetRef


def policy(kind: str, spec: Any, **meta: Any) -> dict[str, Any]:
    return {"type": kind, "mesh": "default", "name": "p", "spec": spec, **meta}


def errors_of(doc: Any) -> list[str]:
    with pytest.raises(ValidationError) as info:
        parse_resource(doc)
    return [str(e) for e in info.value.errors]


def to_mesh(kind: str, default: Any) -> dict[str, Any]:
    return policy(kind, {"to": [{"targetRef": {"kind": "Mesh"}, "default": default}]})


# --- shared shape (targetRef, to/from, default) ---------------------------------------------


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (policy("MeshTimeout", {}), ["spec: needs at least one item in to or from"]),
        (
            policy(
                "MeshTimeout",
                {"targetRef": {"kind": "Dataplane", "name": "a", "labels": {"b": "c"}}, "to": []},
            ),
            [
                "spec.targetRef.labels: give either name or labels, not both",
                "spec: needs at least one item in to or from",
            ],
        ),
        (
            policy(
                "MeshTimeout",
                {
                    "targetRef": {"kind": "MeshService", "name": "web", "tags": {"a": "b"}},
                    "rules": [],
                    "to": [{"targetRef": {"kind": "MeshSubset"}, "default": {}}],
                },
            ),
            [
                "spec.rules: not supported yet by kumadp",
                "spec.targetRef.tags: is not allowed for kind MeshService",
                "spec.to[0].targetRef.kind: must be one of Mesh, MeshService",
                "spec.to[0].default: must configure something (it is empty)",
            ],
        ),
        (
            policy(
                "MeshTimeout",
                {"from": [{"targetRef": {"kind": "MeshService", "name": "a"}, "default": None}]},
            ),
            [
                "spec.from[0].targetRef.kind: must be one of Mesh",
                "spec.from[0].default: is required",
            ],
        ),
    ],
)
def test_shared_shape_errors(doc: dict[str, Any], expected: list[str]) -> None:
    assert errors_of(doc) == expected


def test_top_level_kinds() -> None:
    for ref in (
        {"kind": "Mesh"},
        {"kind": "MeshSubset", "tags": {"version": "v2"}},
        {"kind": "MeshService", "name": "web"},
        {"kind": "MeshServiceSubset", "name": "web", "tags": {"version": "v2"}},
        {"kind": "Dataplane", "name": "web-1"},
        {"kind": "Dataplane", "labels": {"team": "a"}},
    ):
        doc = policy("MeshTimeout", {"targetRef": ref, "to": [_timeout_item()]})
        parsed = parse_resource(doc)
        assert parsed.to_dict() == doc


def _timeout_item() -> dict[str, Any]:
    return {"targetRef": {"kind": "Mesh"}, "default": {"connectionTimeout": "1s"}}


# --- MeshTimeout ------------------------------------------------------------------------------


def test_mesh_timeout_round_trip_and_default() -> None:
    default = default_mesh_timeout("payments")
    assert default.name == "mesh-timeout-all-payments"
    doc = default.to_dict()
    conf = {
        "connectionTimeout": "5s",
        "idleTimeout": "1h",
        "http": {"requestTimeout": "15s", "streamIdleTimeout": "30m"},
    }
    assert doc["spec"] == {
        "targetRef": {"kind": "Mesh"},
        "to": [{"targetRef": {"kind": "Mesh"}, "default": conf}],
        "from": [{"targetRef": {"kind": "Mesh"}, "default": conf}],
    }
    assert parse_resource(doc) == default
    assert default.to[0] == Item(
        TargetRef(),
        TimeoutConf("5s", "1h", HttpTimeouts(request_timeout="15s", stream_idle_timeout="30m")),
    )
    assert isinstance(default, MeshTimeout)


@pytest.mark.parametrize(
    ("default", "expected"),
    [
        (
            {"connectionTimeout": "0s"},
            ["spec.to[0].default.connectionTimeout: must be greater than 0"],
        ),
        (
            {"idleTimeout": 5},
            ["spec.to[0].default.idleTimeout: must be a duration string such as 5s or 1h30m"],
        ),
        (
            {"http": {"requestTimeout": "5 s", "timeout": "1s"}},
            [
                'spec.to[0].default.http.timeout: unknown field (did you mean "requestTimeout"?)',
                'spec.to[0].default.http.requestTimeout: invalid duration "5 s": unexpected '
                '"5 s", expected e.g. 30s, 1h30m, 500ms, 24h (units: ns, us, ms, s, m, h, d, y)',
            ],
        ),
        ({"http": "x"}, ["spec.to[0].default.http: must be an object"]),
    ],
)
def test_mesh_timeout_errors(default: Any, expected: list[str]) -> None:
    assert errors_of(to_mesh("MeshTimeout", default)) == expected


# --- MeshRetry --------------------------------------------------------------------------------


def test_mesh_retry_default_round_trips() -> None:
    default = default_mesh_retry("default")
    assert default.name == "mesh-retry-all-default"
    assert parse_resource(default.to_dict()) == default
    conf = default.to[0].default
    assert conf.tcp is not None and conf.tcp.max_connect_attempt == 5
    assert conf.http is not None and conf.http.retry_on is None  # Kuma's defaults apply
    assert conf.grpc is not None and conf.grpc.retry_on == (
        "Canceled",
        "DeadlineExceeded",
        "Internal",
        "ResourceExhausted",
        "Unavailable",
    )


def test_mesh_retry_status_codes_may_be_numbers() -> None:
    found = parse_resource(to_mesh("MeshRetry", {"http": {"retryOn": ["503", 409, "5xx"]}}))
    assert isinstance(found, MeshRetry)
    http = found.to[0].default.http
    assert http is not None and http.retry_on == ("503", "409", "5xx")


@pytest.mark.parametrize(
    ("default", "expected"),
    [
        (
            {"http": {"retryOn": ["Sometimes", 700]}},
            [
                "spec.to[0].default.http.retryOn[0]: must be one of 5XX, GatewayError, Reset, "
                "Retriable4xx, ConnectFailure, EnvoyRatelimited, RefusedStream, "
                "Http3PostConnectFailure, HttpMethodConnect, HttpMethodDelete, HttpMethodGet, "
                "HttpMethodHead, HttpMethodOptions, HttpMethodPatch, HttpMethodPost, "
                "HttpMethodPut, HttpMethodTrace, or an HTTP status code (100-599)",
                "spec.to[0].default.http.retryOn[1]: must be one of 5XX, GatewayError, Reset, "
                "Retriable4xx, ConnectFailure, EnvoyRatelimited, RefusedStream, "
                "Http3PostConnectFailure, HttpMethodConnect, HttpMethodDelete, HttpMethodGet, "
                "HttpMethodHead, HttpMethodOptions, HttpMethodPatch, HttpMethodPost, "
                "HttpMethodPut, HttpMethodTrace, or an HTTP status code (100-599)",
            ],
        ),
        (
            {"grpc": {"retryOn": ["Unknown"], "numRetries": -1}},
            [
                "spec.to[0].default.grpc.numRetries: must be 0-4294967295",
                "spec.to[0].default.grpc.retryOn[0]: must be one of Canceled, DeadlineExceeded, "
                "Internal, ResourceExhausted, Unavailable",
            ],
        ),
        (
            {"http": {"backOff": {"baseInterval": "1s", "maxInterval": "10ms"}}},
            ["spec.to[0].default.http.backOff.maxInterval: must not be shorter than baseInterval"],
        ),
        (
            {"http": {"backOff": {"baseInterval": "0s"}}},
            ["spec.to[0].default.http.backOff.baseInterval: must be greater than 0"],
        ),
        (
            {"tcp": {"maxConnectAttempt": 0}},
            ["spec.to[0].default.tcp.maxConnectAttempt: must be 1-4294967295"],
        ),
        (
            {
                "http": {
                    "retriableResponseHeaders": [
                        {"type": "Prefix"},
                        {"name": "a b", "type": "Absent"},
                    ],
                    "hostSelection": [{"predicate": "OmitHostsWithTags"}, {}],
                    "rateLimitedBackOff": {"resetHeaders": [{"name": "retry-after"}]},
                }
            },
            [
                "spec.to[0].default.http.rateLimitedBackOff.resetHeaders[0].format: is required",
                "spec.to[0].default.http.retriableResponseHeaders[0].name: is required",
                "spec.to[0].default.http.retriableResponseHeaders[0].value: is required for "
                "type Prefix",
                "spec.to[0].default.http.retriableResponseHeaders[1].name: must be an HTTP "
                "header name",
                "spec.to[0].default.http.hostSelection[0].tags: is required for predicate "
                "OmitHostsWithTags",
                "spec.to[0].default.http.hostSelection[1].predicate: is required",
            ],
        ),
    ],
)
def test_mesh_retry_errors(default: Any, expected: list[str]) -> None:
    assert errors_of(to_mesh("MeshRetry", default)) == expected


def test_mesh_retry_has_no_from() -> None:
    doc = policy("MeshRetry", {"from": [{"targetRef": {"kind": "Mesh"}, "default": {}}]})
    assert errors_of(doc) == [
        "spec.from: unknown field",
        "spec: needs at least one item in to",
    ]


# --- MeshCircuitBreaker -----------------------------------------------------------------------


def test_mesh_circuit_breaker_default_round_trips() -> None:
    default = default_mesh_circuit_breaker("default")
    assert default.name == "mesh-circuit-breaker-all-default"
    assert parse_resource(default.to_dict()) == default
    outliers = default.to_dict()["spec"]["to"][0]["default"]["outlierDetection"]
    assert outliers["detectors"]["successRate"]["standardDeviationFactor"] == "1.9"
    assert outliers["maxEjectionPercent"] == 20


@pytest.mark.parametrize(
    ("default", "expected"),
    [
        (
            {"outlierDetection": {"maxEjectionPercent": 101, "healthyPanicThreshold": "x"}},
            [
                "spec.to[0].default.outlierDetection.maxEjectionPercent: must be 0-100",
                "spec.to[0].default.outlierDetection.healthyPanicThreshold: must be an integer "
                'or a decimal number in a string, e.g. "1.9"',
            ],
        ),
        (
            {
                "outlierDetection": {
                    "detectors": {
                        "successRate": {"standardDeviationFactor": "-1"},
                        "failurePercentage": {"threshold": 200},
                        "totalFailures": {"consecutive": "5"},
                    }
                }
            },
            [
                "spec.to[0].default.outlierDetection.detectors.totalFailures.consecutive: "
                "must be an integer",
                "spec.to[0].default.outlierDetection.detectors.successRate."
                "standardDeviationFactor: must be at least 0",
                "spec.to[0].default.outlierDetection.detectors.failurePercentage.threshold: "
                "must be 0-100",
            ],
        ),
        (
            {"connectionLimits": {"maxConnections": -1, "max": 1}},
            [
                "spec.to[0].default.connectionLimits.max: unknown field",
                "spec.to[0].default.connectionLimits.maxConnections: must be 0-4294967295",
            ],
        ),
        (
            {"outlierDetection": {"interval": "0s"}},
            ["spec.to[0].default.outlierDetection.interval: must be greater than 0"],
        ),
    ],
)
def test_mesh_circuit_breaker_errors(default: Any, expected: list[str]) -> None:
    assert errors_of(to_mesh("MeshCircuitBreaker", default)) == expected


# --- MeshHealthCheck --------------------------------------------------------------------------


def test_mesh_health_check_round_trips() -> None:
    doc = to_mesh(
        "MeshHealthCheck",
        {
            "interval": "10s",
            "healthyPanicThreshold": "12.5",
            "http": {
                "path": "/health",
                "expectedStatuses": [200],
                "requestHeadersToAdd": {"set": [{"name": "x-a", "value": "b"}]},
            },
            "tcp": {"send": "cGluZw==", "receive": ["cG9uZw=="]},
        },
    )
    found = parse_resource(doc)
    assert parse_resource(found.to_dict()) == found
    assert found.to_dict()["spec"]["to"] == doc["spec"]["to"]


@pytest.mark.parametrize(
    ("default", "expected"),
    [
        (
            {"unhealthyThreshold": 0, "intervalJitterPercent": 101},
            [
                "spec.to[0].default.unhealthyThreshold: must be 1-2147483647",
                "spec.to[0].default.intervalJitterPercent: must be 0-100",
            ],
        ),
        (
            {"http": {"path": "health", "expectedStatuses": [99]}},
            [
                "spec.to[0].default.http.path: must be an absolute path such as /health",
                "spec.to[0].default.http.expectedStatuses[0]: must be 100-599",
            ],
        ),
        (
            {"tcp": {"send": "not base64!"}, "http": {"requestHeadersToAdd": {"add": [{}]}}},
            [
                "spec.to[0].default.tcp.send: must be base64",
                "spec.to[0].default.http.requestHeadersToAdd.add[0].name: is required",
                "spec.to[0].default.http.requestHeadersToAdd.add[0].value: is required",
            ],
        ),
        (
            {"timeout": "-1s"},
            [
                'spec.to[0].default.timeout: invalid duration "-1s": unexpected "-1s", '
                "expected e.g. 30s, 1h30m, 500ms, 24h (units: ns, us, ms, s, m, h, d, y)"
            ],
        ),
    ],
)
def test_mesh_health_check_errors(default: Any, expected: list[str]) -> None:
    assert errors_of(to_mesh("MeshHealthCheck", default)) == expected


# --- MeshLoadBalancingStrategy ----------------------------------------------------------------


def test_mesh_load_balancing_strategy_round_trips() -> None:
    default = {
        "localityAwareness": {
            "localZone": {
                "affinityTags": [{"key": "rack", "weight": 90}, {"key": "x", "weight": 1}]
            },
            "crossZone": {
                "failover": [
                    {"from": {"zones": ["a"]}, "to": {"type": "Only", "zones": ["b"]}},
                    {"to": {"type": "Any"}},
                ],
                "failoverThreshold": {"percentage": 70},
            },
        },
        "loadBalancer": {
            "type": "RingHash",
            "ringHash": {
                "hashPolicies": [
                    {"type": "Connection", "connection": {"sourceIP": True}},
                    {"type": "FilterState", "filterState": {"key": "k"}},
                ]
            },
        },
    }
    found = parse_resource(to_mesh("MeshLoadBalancingStrategy", default))
    assert found.to_dict()["spec"]["to"][0]["default"] == default


@pytest.mark.parametrize(
    ("default", "expected"),
    [
        (
            {"loadBalancer": {"ringHash": {}}},
            ["spec.to[0].default.loadBalancer.type: is required"],
        ),
        (
            {"loadBalancer": {"type": "Random", "ringHash": {"minRingSize": 10, "maxRingSize": 5}}},
            [
                "spec.to[0].default.loadBalancer.ringHash.minRingSize: must not be greater than "
                "maxRingSize",
            ],
        ),
        (
            {"loadBalancer": {"type": "Random", "ringHash": {"minRingSize": 10}}},
            ["spec.to[0].default.loadBalancer.ringHash: is only allowed for type RingHash"],
        ),
        (
            {"loadBalancer": {"type": "Maglev", "maglev": {"tableSize": 100}}},
            ["spec.to[0].default.loadBalancer.maglev.tableSize: must be a prime number"],
        ),
        (
            {"loadBalancer": {"type": "LeastRequest", "leastRequest": {"choiceCount": 1}}},
            ["spec.to[0].default.loadBalancer.leastRequest.choiceCount: must be 2-4294967295"],
        ),
        (
            {
                "loadBalancer": {
                    "type": "RingHash",
                    "ringHash": {"hashPolicies": [{"type": "Header"}, {"type": "Nope"}]},
                }
            },
            [
                "spec.to[0].default.loadBalancer.ringHash.hashPolicies[0].header: is required "
                "for type Header",
                "spec.to[0].default.loadBalancer.ringHash.hashPolicies[1].type: must be one of "
                "Header, Cookie, Connection, QueryParameter, FilterState",
            ],
        ),
        (
            {
                "localityAwareness": {
                    "crossZone": {
                        "failover": [
                            {"to": {"type": "Only"}},
                            {"to": {"type": "Any", "zones": ["a"]}},
                            {"from": {"zones": []}, "to": {"type": "AnyExcept", "zones": ["b"]}},
                            {},
                        ],
                        "failoverThreshold": {"percentage": 0},
                    },
                    "localZone": {"affinityTags": [{"key": "a", "weight": 1}, {}]},
                }
            },
            [
                "spec.to[0].default.localityAwareness.localZone.affinityTags[1].key: is required",
                "spec.to[0].default.localityAwareness.crossZone.failover[0].to.zones: is "
                "required for type Only",
                "spec.to[0].default.localityAwareness.crossZone.failover[1].to.zones: is not "
                "allowed for type Any",
                "spec.to[0].default.localityAwareness.crossZone.failover[2].from.zones: needs "
                "at least 1 item",
                "spec.to[0].default.localityAwareness.crossZone.failover[3].to: is required",
                "spec.to[0].default.localityAwareness.crossZone.failoverThreshold.percentage: "
                "must be greater than 0",
            ],
        ),
    ],
)
def test_mesh_load_balancing_strategy_errors(default: Any, expected: list[str]) -> None:
    assert errors_of(to_mesh("MeshLoadBalancingStrategy", default)) == expected
