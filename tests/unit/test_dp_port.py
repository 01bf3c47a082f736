"""The DP server port (issue 16, item 1): ``POST /bootstrap`` over HTTPS and gRPC on one
TLS port, as Kuma's 5678: the router's ClientHello parsing, a real DP server answering
kuma-dp's exact request and the agent channel on the same port, and the agent's clear
errors for the wrong address or an untrusted certificate."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml

from kumadp.agent.bootstrap import BootstrapClient, BootstrapFailed, BootstrapRequest
from kumadp.cp.defaults import ensure_default_mesh
from kumadp.cp.dp_front import (
    GRPC,
    HTTP,
    NeedMore,
    NotTls,
    client_hello_alpn,
    route,
)
from kumadp.cp.runtime import ControlPlane, ControlPlaneConfig
from kumadp.cp.store import MemoryStore
from kumadp.resources.model import DATAPLANE_TYPE
from kumadp.wire import agent_pb2, agent_pb2_grpc
from testkit.procs import envoy_binary, free_port, until

KUMA = Path(__file__).parent / "testdata" / "kuma"


def client_hello(alpn: list[str] | None) -> bytes:
    """The first flight of a real TLS client offering ``alpn``."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if alpn is not None:
        context.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="cp.example")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


@pytest.mark.parametrize(
    ("alpn", "expected"),
    [
        (None, HTTP),  # Go's http.Transport with a TLS config: no ALPN (kuma-dp)
        (["http/1.1"], HTTP),
        (["h2", "http/1.1"], HTTP),  # curl: the server prefers http/1.1
        (["h2"], GRPC),  # Envoy's ADS cluster, grpcio
        (["grpc-exp", "h2"], GRPC),
    ],
)
def test_the_router_reads_alpn_from_the_client_hello(alpn: list[str] | None, expected: str) -> None:
    hello = client_hello(alpn)
    assert client_hello_alpn(hello) == (alpn or [])
    assert route(hello, tls=True) == expected
    for cut in (3, 5, 40, len(hello) - 1):  # not all there yet
        assert route(hello[:cut], tls=True) is None
        with pytest.raises(NeedMore):
            client_hello_alpn(hello[:cut])


def test_a_client_hello_over_two_records() -> None:
    hello = client_hello(["h2"])
    body = hello[5:]
    first, second = body[:100], body[100:]
    split = b"".join(
        b"\x16\x03\x01" + len(part).to_bytes(2, "big") + part for part in (first, second)
    )
    assert client_hello_alpn(split) == ["h2"]


def test_what_is_not_tls() -> None:
    with pytest.raises(NotTls):
        route(b"GET / HTTP/1.1\r\n\r\n", tls=True)
    assert route(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", tls=False) == GRPC
    assert route(b"PRI * HT", tls=False) is None
    assert route(b"POST /bootstrap HTTP/1.1\r\n", tls=False) == HTTP


# --- a real DP server -------------------------------------------------------------------------


@dataclass
class Running:
    cp: ControlPlane
    store: MemoryStore
    port: int

    @property
    def ca(self) -> bytes:
        assert self.cp.tls is not None
        return self.cp.tls.ca_pem

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"


@pytest.fixture
async def dp_port() -> AsyncIterator[Running]:
    store = MemoryStore()
    await ensure_default_mesh(store)
    config = ControlPlaneConfig(store="memory", dp_auth="none", dp_port=free_port())
    config.address = "127.0.0.1"
    cp = ControlPlane(config, store)
    stop = asyncio.Event()
    task = asyncio.create_task(cp.dp_server.run(stop))
    try:
        await until(lambda: cp.dp_server.bound_port is not None or task.done())
        assert cp.dp_server.bound_port is not None, task
        yield Running(cp, store, cp.dp_server.bound_port)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        cp.registrations.close()


def kuma_dp_request() -> dict[str, Any]:
    body = json.loads((KUMA / "kuma-dp-bootstrap-request.json").read_text())
    assert isinstance(body, dict)
    return body


async def test_kuma_dps_exact_request_over_https_on_the_dp_port(
    dp_port: Running, tmp_path: Path
) -> None:
    context = ssl.create_default_context(cadata=dp_port.ca.decode())
    async with httpx.AsyncClient(verify=context) as client:
        response = await client.post(f"{dp_port.url}/bootstrap", json=kuma_dp_request())
    assert response.status_code == 200, response.text
    assert response.http_version == "HTTP/1.1"
    body = response.json()
    assert body["kumaSidecarConfiguration"]["networking"] == {"address": "127.0.0.1"}
    bootstrap = yaml.safe_load(base64.b64decode(body["bootstrap"]))
    assert bootstrap["node"]["id"] == "default.backend-1"
    ads = bootstrap["static_resources"]["clusters"][0]
    socket = ads["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert socket["socket_address"] == {"address": "localhost", "port_value": dp_port.port}
    stored = await dp_port.store.get(DATAPLANE_TYPE, "default", "backend-1")
    assert stored is not None and "kri" not in stored.spec
    assert stored.spec["labels"]["app"] == "backend"
    assert dp_port.cp.dp_server.front is not None
    assert dp_port.cp.dp_server.front.routed[HTTP] == 1
    envoy = envoy_binary()
    if envoy is None:
        pytest.skip("no envoy binary to validate the bootstrap with")
    path = tmp_path / "bootstrap.yaml"
    path.write_text(yaml.safe_dump(bootstrap))
    validate = await asyncio.create_subprocess_exec(
        envoy,
        "--mode",
        "validate",
        "-c",
        str(path),
        "-l",
        "error",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(validate.communicate(), 60)
    assert validate.returncode == 0, output.decode()


async def test_grpc_on_the_same_port(dp_port: Running) -> None:
    credentials = grpc.ssl_channel_credentials(root_certificates=dp_port.ca)
    async with grpc.aio.secure_channel(f"localhost:{dp_port.port}", credentials) as channel:
        stub = agent_pb2_grpc.AgentChannelStub(channel)  # type: ignore[no-untyped-call]
        request = agent_pb2.LeaveRequest(mesh="default", name="nobody", reason="test")
        response = await stub.Leave(request, timeout=10)
    assert response.removed is False
    assert dp_port.cp.dp_server.front is not None
    assert dp_port.cp.dp_server.front.routed[GRPC] == 1


async def test_other_paths_and_plain_http_are_told_where_to_go(dp_port: Running) -> None:
    context = ssl.create_default_context(cadata=dp_port.ca.decode())
    async with httpx.AsyncClient(verify=context) as client:
        response = await client.get(f"{dp_port.url}/meshes")
    assert response.status_code == 404
    assert "API port (5681" in response.json()["detail"]
    async with httpx.AsyncClient() as client:
        plain = await client.post(f"http://127.0.0.1:{dp_port.port}/bootstrap", json={})
    assert plain.status_code == 400
    assert plain.text == "Client sent an HTTP request to an HTTPS server.\n"


# --- the agent's side ---------------------------------------------------------------------------


def agent_request() -> BootstrapRequest:
    doc = json.loads(kuma_dp_request()["dataplaneResource"])
    return BootstrapRequest(mesh="default", name="backend-1", dataplane_resource=doc)


def bootstrap_client(url: str, verify: bool | ssl.SSLContext = True) -> BootstrapClient:
    return BootstrapClient(url, timeout=5, initial_backoff=0.01, max_backoff=0.05, verify=verify)


async def test_the_agent_bootstraps_from_the_dp_port(dp_port: Running) -> None:
    verify = ssl.create_default_context(cadata=dp_port.ca.decode())
    result = await bootstrap_client(dp_port.url, verify).fetch(agent_request())
    assert b"default.backend-1" in result.bootstrap_yaml
    skipped = await bootstrap_client(dp_port.url, verify=False).fetch(agent_request())
    assert skipped.bootstrap_yaml


async def test_an_untrusted_certificate_fails_at_once_saying_what_to_pass(
    dp_port: Running,
) -> None:
    with pytest.raises(BootstrapFailed) as failed:
        await asyncio.wait_for(bootstrap_client(dp_port.url).fetch(agent_request()), 4)
    message = str(failed.value)
    assert message.startswith(f"the control plane's certificate at {dp_port.url} is not trusted")
    assert "--ca-cert-file" in message and "--skip-verify" in message
    assert "KUMA_CONTROL_PLANE_TLS_SKIP_VERIFY" in message


async def test_the_wrong_scheme_for_a_port_fails_at_once_saying_which(dp_port: Running) -> None:
    plain = f"http://127.0.0.1:{dp_port.port}"
    with pytest.raises(BootstrapFailed) as failed:
        await bootstrap_client(plain).fetch(agent_request())
    assert str(failed.value) == (
        f"{plain} is an HTTPS port (the control plane's DP server): "
        f"use https://127.0.0.1:{dp_port.port}"
    )

    async def plain_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(plain_http, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(BootstrapFailed) as failed:
            await bootstrap_client(f"https://127.0.0.1:{port}").fetch(agent_request())
    finally:
        server.close()
    assert str(failed.value) == (
        f"https://127.0.0.1:{port} does not speak TLS: use http://127.0.0.1:{port} for the "
        "control plane's API port, or https://HOST:5678 for its DP server port"
    )


def test_how_the_agent_trusts_the_cp(dp_port_ca: bytes) -> None:
    from kumadp.agent.cp_trust import cp_verify, dp_server_ca

    assert cp_verify("", skip_verify=True) is False
    assert cp_verify("") is True  # the system trust store
    assert isinstance(cp_verify(dp_port_ca.decode()), ssl.SSLContext)
    # what Envoy is told to trust: the given CA; under --skip-verify the CP's own
    assert dp_server_ca("https://cp:5678", "PEM") == "PEM"
    assert dp_server_ca("https://cp:5678", "", skip_verify=True) == ""


@pytest.fixture
def dp_port_ca() -> bytes:
    from kumadp.cp.server_tls import ensure_server_certificate

    return ensure_server_certificate(None, []).ca_pem


def test_the_ca_from_the_environment_wins_over_the_file(tmp_path: Path) -> None:
    from kumadp.agent.config import AgentConfig, check_local

    dp = tmp_path / "dp.yaml"
    dp.write_text(yaml.safe_dump(json.loads(kuma_dp_request()["dataplaneResource"])))
    file = tmp_path / "ca.pem"
    file.write_text("FROM FILE")
    config = AgentConfig(dataplane_file=str(dp), ca_cert_file=str(file))
    assert check_local(config).ca_cert == "FROM FILE"
    config.ca_cert = "FROM ENV"
    assert check_local(config).ca_cert == "FROM ENV"
