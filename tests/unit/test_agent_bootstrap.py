"""The bootstrap client against httpx.MockTransport: request shape, retries, failures."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import httpx
import pytest

from kumadp import __version__
from kumadp.agent.bootstrap import BootstrapClient, BootstrapFailed, BootstrapRequest

BOOTSTRAP_YAML = b"node:\n  id: default.web-1\n"
OK_BODY = {
    "bootstrap": base64.b64encode(BOOTSTRAP_YAML).decode(),
    "kumaSidecarConfiguration": {"networking": {"address": "127.0.0.1"}},
}
REQUEST = BootstrapRequest(
    mesh="default",
    name="web-1",
    dataplane_token="t.o.k",
    dataplane_resource={"type": "Dataplane", "mesh": "default", "name": "web-1"},
    envoy_version="1.40.0",
    envoy_build="abc/1.40.0/Clean/RELEASE/BoringSSL",
    dns_port=15053,
    readiness_port=9902,
    workdir="/tmp/wd",
)


def client(
    handler: Callable[[httpx.Request], httpx.Response], timeout: float = 5.0
) -> BootstrapClient:
    return BootstrapClient(
        "http://cp.test:5681/",
        transport=httpx.MockTransport(handler),
        timeout=timeout,
        initial_backoff=0.01,
        max_backoff=0.02,
    )


class Script:
    """Answers the given responses in order, then repeats the last; records requests."""

    def __init__(self, *responses: httpx.Response | Exception) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


async def test_request_fields_and_success() -> None:
    script = Script(httpx.Response(200, json=OK_BODY))
    result = await client(script).fetch(REQUEST)
    assert result.bootstrap_yaml == BOOTSTRAP_YAML
    assert result.sidecar_config == {"networking": {"address": "127.0.0.1"}}
    (request,) = script.requests
    assert request.method == "POST"
    assert str(request.url) == "http://cp.test:5681/bootstrap"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["accept"] == "application/json"
    body = json.loads(request.content)
    assert body["mesh"] == "default"
    assert body["name"] == "web-1"
    assert body["proxyType"] == "dataplane"
    assert body["dataplaneToken"] == "t.o.k"
    assert isinstance(body["dataplaneResource"], str)
    assert json.loads(body["dataplaneResource"])["name"] == "web-1"
    assert body["version"]["kumaDp"]["version"] == __version__
    assert set(body["version"]["kumaDp"]) == {"version", "gitTag", "gitCommit", "buildDate"}
    assert body["version"]["envoy"] == {
        "version": "1.40.0",
        "build": "abc/1.40.0/Clean/RELEASE/BoringSSL",
        "kumaDpCompatible": True,
    }
    assert body["dnsPort"] == 15053
    assert body["readinessPort"] == 9902
    assert body["workdir"] == "/tmp/wd"
    assert body["caCert"] == ""
    assert body["features"] == []
    assert body["operatingSystem"]


async def test_without_resource_sends_empty_string() -> None:
    script = Script(httpx.Response(200, json=OK_BODY))
    await client(script).fetch(BootstrapRequest(mesh="default", name="web-1"))
    assert json.loads(script.requests[0].content)["dataplaneResource"] == ""


async def test_404_with_empty_body_is_retried(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="kumadp.agent.bootstrap")
    script = Script(httpx.Response(404), httpx.Response(404), httpx.Response(200, json=OK_BODY))
    result = await client(script).fetch(REQUEST)
    assert result.bootstrap_yaml == BOOTSTRAP_YAML
    assert len(script.requests) == 3
    assert "dataplane not found yet, retrying" in caplog.text


async def test_422_fails_at_once_with_the_cps_message() -> None:
    body = {
        "title": "Could not bootstrap",
        "details": "Resource is not valid",
        "causes": [{"field": "dataplaneToken", "message": "token is required"}],
    }
    script = Script(httpx.Response(422, json=body))
    with pytest.raises(BootstrapFailed) as info:
        await client(script).fetch(REQUEST)
    assert len(script.requests) == 1
    message = str(info.value)
    assert "HTTP 422" in message
    assert "cp.test:5681" in message
    assert "Resource is not valid" in message
    assert "dataplaneToken: token is required" in message


async def test_404_with_a_body_fails_at_once() -> None:
    script = Script(httpx.Response(404, text="mesh not found"))
    with pytest.raises(BootstrapFailed, match="mesh not found"):
        await client(script).fetch(REQUEST)
    assert len(script.requests) == 1


async def test_5xx_and_connection_errors_are_retried() -> None:
    script = Script(
        httpx.ConnectError("connection refused"),
        httpx.Response(500, text="boom"),
        httpx.Response(503),
        httpx.Response(200, json=OK_BODY),
    )
    result = await client(script).fetch(REQUEST)
    assert result.bootstrap_yaml == BOOTSTRAP_YAML
    assert len(script.requests) == 4


async def test_deadline_gives_a_clear_error() -> None:
    script = Script(httpx.ConnectError("connection refused"))
    with pytest.raises(BootstrapFailed) as info:
        await client(script, timeout=0.2).fetch(REQUEST)
    message = str(info.value)
    assert "http://cp.test:5681" in message
    assert "within 0.2s" in message
    assert "connection refused" in message
    assert len(script.requests) >= 2


async def test_invalid_response_body() -> None:
    script = Script(httpx.Response(200, json={"bootstrap": "%%% not base64"}))
    with pytest.raises(BootstrapFailed, match="invalid bootstrap response"):
        await client(script).fetch(REQUEST)


async def test_real_connection_refused(unused_tcp_port: int) -> None:
    bc = BootstrapClient(
        f"http://127.0.0.1:{unused_tcp_port}", timeout=0.3, initial_backoff=0.01, max_backoff=0.05
    )
    with pytest.raises(BootstrapFailed, match=f"127.0.0.1:{unused_tcp_port}.*last failure"):
        await bc.fetch(REQUEST)
