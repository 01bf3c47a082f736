"""Several CP addresses: the CLI's list, and the bootstrap client trying them in order."""

from __future__ import annotations

import dataclasses
import json

import httpx
import pytest

from kumadp.agent.bootstrap import BootstrapClient, BootstrapFailed
from kumadp.agent.config import AgentConfig, check_local
from kumadp.agent.errors import ConfigError
from kumadp.cli.run import _split_addresses
from tests.unit.test_agent_bootstrap import OK_BODY, REQUEST


def test_addresses_from_flags_and_env() -> None:
    assert _split_addresses(None) == ["https://localhost:5678"]  # kuma-dp's default
    assert _split_addresses(["http://a:5681", "http://b:5681"]) == [
        "http://a:5681",
        "http://b:5681",
    ]
    # KUMA_CONTROL_PLANE_URL may hold a comma-separated list
    assert _split_addresses(["http://a:5681, http://b:5681,http://a:5681"]) == [
        "http://a:5681",
        "http://b:5681",
    ]


def test_every_address_is_checked() -> None:
    config = AgentConfig(
        cp_addresses=["http://a:5681", "cp-b:5681"],
        dataplane="type: Dataplane\nmesh: default\nname: web-1\nnetworking:\n"
        "  address: 127.0.0.1\n  inbound:\n  - port: 1\n    servicePort: 2\n"
        "    tags: {kuma.io/service: web}\n",
    )
    with pytest.raises(ConfigError, match="--cp-address: 'cp-b:5681' is not an http"):
        check_local(config)


def _client(handler: httpx.MockTransport, *addresses: str, timeout: float = 5.0) -> BootstrapClient:
    return BootstrapClient(
        list(addresses),
        transport=handler,
        timeout=timeout,
        initial_backoff=0.01,
        max_backoff=0.02,
    )


async def test_first_address_that_answers_wins() -> None:
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        if request.url.host == "cp-a":
            raise httpx.ConnectError("refused")
        if request.url.host == "cp-b":
            return httpx.Response(503, text="starting")
        return httpx.Response(200, json=OK_BODY)

    client = _client(httpx.MockTransport(handle), "http://cp-a:5681", "http://cp-b", "http://cp-c/")
    result = await client.fetch(REQUEST)
    assert seen == ["cp-a", "cp-b", "cp-c"]  # one round, no backoff in between
    assert result.cp_address == "http://cp-c"


async def test_rounds_with_backoff_until_one_answers() -> None:
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        if request.url.host == "cp-b" and len(seen) >= 5:
            return httpx.Response(200, json=OK_BODY)
        raise httpx.ConnectError("refused")

    client = _client(httpx.MockTransport(handle), "http://cp-a", "http://cp-b")
    result = await client.fetch(REQUEST)
    assert seen[:6] == ["cp-a", "cp-b", "cp-a", "cp-b", "cp-a", "cp-b"]
    assert result.cp_address == "http://cp-b"


async def test_per_address_requests() -> None:
    bodies: dict[str, dict[str, object]] = {}

    def handle(request: httpx.Request) -> httpx.Response:
        bodies[request.url.host] = json.loads(request.content)
        if request.url.host == "cp-a":
            return httpx.Response(502)
        return httpx.Response(200, json=OK_BODY)

    client = _client(httpx.MockTransport(handle), "http://cp-a", "http://cp-b")
    await client.fetch(REQUEST, lambda a: dataclasses.replace(REQUEST, ca_cert=f"ca of {a}"))
    assert bodies["cp-a"]["caCert"] == "ca of http://cp-a"
    assert bodies["cp-b"]["caCert"] == "ca of http://cp-b"


async def test_a_rejection_fails_at_once() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.host == "cp-a":
            return httpx.Response(422, json={"title": "bad token"})
        return httpx.Response(200, json=OK_BODY)

    client = _client(httpx.MockTransport(handle), "http://cp-a", "http://cp-b")
    with pytest.raises(BootstrapFailed, match=r"cp-a rejected the bootstrap request.*bad token"):
        await client.fetch(REQUEST)


async def test_giving_up_names_every_address() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.host == "cp-a":
            raise httpx.ConnectError("refused")
        return httpx.Response(404)

    client = _client(httpx.MockTransport(handle), "http://cp-a", "http://cp-b", timeout=0.2)
    with pytest.raises(BootstrapFailed) as info:
        await client.fetch(REQUEST)
    message = str(info.value)
    assert "any of the control planes at http://cp-a, http://cp-b within 0.2s" in message
    assert "http://cp-a: ConnectError: refused" in message
    assert "http://cp-b: HTTP 404" in message
