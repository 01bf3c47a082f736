"""The bootstrap request and response of the contract: JSON names, round trips, field paths."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from kumadp.agent.bootstrap import BootstrapRequest as AgentRequest
from kumadp.wire.bootstrap import (
    AggregateMetrics,
    BootstrapRequest,
    BootstrapResponse,
    KumaDpVersion,
    KumaSidecarConfiguration,
    SidecarMetrics,
    SidecarNetworking,
    Version,
    WireError,
)

# What kuma-dp 2.x sends, with fields kumadp does not read (they must be ignored).
KUMA_DP_BODY: dict[str, Any] = {
    "mesh": "default",
    "name": "web-1",
    "proxyType": "dataplane",
    "dataplaneToken": "t.o.k",
    "dataplaneTokenPath": "/tmp/token",
    "dataplaneResource": json.dumps({"type": "Dataplane", "name": "web-1", "kri": "x"}),
    "version": {
        "kumaDp": {"version": "2.9.0", "gitTag": "v2.9.0", "gitCommit": "abc", "buildDate": "d"},
        "envoy": {"version": "1.40.0", "build": "abc/1.40.0", "kumaDpCompatible": True},
        "dependencies": {"coredns": "1.11"},
        "future": {"x": 1},
    },
    "caCert": "",
    "dynamicMetadata": {"k8s.pod": "web-1"},
    "dnsPort": 15053,
    "readinessPort": 9902,
    "appProbeProxyDisabled": False,
    "operatingSystem": "linux",
    "features": ["feature-tcp-accesslog-via-named-pipe", "bind-outbounds"],
    "resources": {"maxHeapSizeBytes": 0},
    "workdir": "/tmp/kuma-dp",
    "systemCaPath": "",
}


def test_a_kuma_dp_request_parses_and_unknown_fields_are_ignored() -> None:
    request = BootstrapRequest.from_json(KUMA_DP_BODY)
    assert request.mesh == "default" and request.name == "web-1"
    assert request.dataplane_token_path == "/tmp/token"
    assert json.loads(request.dataplane_resource)["kri"] == "x"
    assert request.version is not None and request.version.envoy is not None
    assert request.version.envoy.kuma_dp_compatible is True
    assert request.dynamic_metadata == {"k8s.pod": "web-1"}
    assert request.features == ("feature-tcp-accesslog-via-named-pipe", "bind-outbounds")
    assert request.dns_port == 15053 and request.workdir == "/tmp/kuma-dp"
    out = request.to_json()
    known = {k: v for k, v in KUMA_DP_BODY.items() if k not in ("resources", "systemCaPath")}
    known["version"] = {k: v for k, v in known["version"].items() if k != "future"}
    assert out == known


def test_what_the_agent_sends_is_what_the_cp_reads() -> None:
    agent = AgentRequest(
        mesh="default",
        name="web-1",
        dataplane_token="t",
        dataplane_resource={"type": "Dataplane", "mesh": "default", "name": "web-1"},
        envoy_version="1.40.0",
        envoy_build="b",
        dns_port=15053,
        features=("bind-outbounds",),
        workdir="/w",
    )
    body = json.loads(json.dumps(agent.to_json()))  # over the network
    assert BootstrapRequest.from_json(body) == agent.to_wire()


def test_absent_parts_stay_absent_and_null_is_absent() -> None:
    request = BootstrapRequest.from_json(
        {"mesh": None, "name": "a", "version": {"kumaDp": {"version": "0.1.0"}}}
    )
    assert request.mesh == "" and request.proxy_type == "dataplane"
    assert request.version == Version(kuma_dp=KumaDpVersion(version="0.1.0"))
    assert request.to_json()["version"] == {"kumaDp": {"version": "0.1.0"}}
    assert "version" not in BootstrapRequest(name="a").to_json()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"mesh": 5}, "mesh: must be a string"),
        ({"version": {"envoy": {"build": 5}}}, "version.envoy.build: must be a string"),
        ({"version": {"envoy": {"kumaDpCompatible": "yes"}}}, "kumaDpCompatible: must be true"),
        ({"version": []}, "version: must be a JSON object"),
        ({"features": ["a", 1]}, "features[1]: must be a string"),
        ({"features": "bind-outbounds"}, "features: must be a list"),
        ({"dnsPort": "15053"}, "dnsPort: must be an integer"),
        ({"readinessPort": True}, "readinessPort: must be an integer"),
        ({"dynamicMetadata": {"a": 1}}, "dynamicMetadata.a: must be a string"),
        ([1], "(body): must be a JSON object"),
    ],
)
def test_wrong_types_name_the_field(body: Any, message: str) -> None:
    with pytest.raises(WireError) as info:
        BootstrapRequest.from_json(body)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_response_round_trip() -> None:
    response = BootstrapResponse(
        b"node:\n  id: default.web-1\n",
        KumaSidecarConfiguration(
            networking=SidecarNetworking("10.0.0.1"),
            metrics=SidecarMetrics((AggregateMetrics("app", "127.0.0.1", 8080, "/metrics"),)),
        ),
    )
    body = json.loads(json.dumps(response.to_json()))
    assert body["kumaSidecarConfiguration"]["metrics"]["aggregate"][0]["port"] == 8080
    assert BootstrapResponse.from_json(body) == response
    # what the agent keeps of the sidecar configuration is what was sent
    partial = {"bootstrap": body["bootstrap"], "kumaSidecarConfiguration": {"networking": {}}}
    parsed = BootstrapResponse.from_json(partial)
    assert parsed.kuma_sidecar_configuration.to_json() == {"networking": {"address": ""}}
    assert BootstrapResponse.from_json({"bootstrap": ""}).kuma_sidecar_configuration.to_json() == {}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "bootstrap: required"),
        ({"bootstrap": "not base64!"}, "bootstrap: must be base64"),
        ({"bootstrap": 1}, "bootstrap: must be a string"),
        (
            {
                "bootstrap": "",
                "kumaSidecarConfiguration": {"metrics": {"aggregate": [{"port": "x"}]}},
            },
            "kumaSidecarConfiguration.metrics.aggregate[0].port: must be an integer",
        ),
    ],
)
def test_bad_responses_name_the_field(body: Any, message: str) -> None:
    with pytest.raises(WireError, match=re.escape(message)):
        BootstrapResponse.from_json(body)
