"""The agent channel on a real CP: bad CSRs and bad tokens are refused clearly; nothing breaks."""

from __future__ import annotations

import asyncio
import json

import grpc
import httpx
import pytest

from kumadp.agent.certs import generate_key, make_csr
from kumadp.wire import agent_pb2, agent_pb2_grpc
from testkit.mesh import MeshEnv
from tests.e2e.test_mtls import enable_mtls

pytestmark = pytest.mark.e2e

DATAPLANE = {
    "type": "Dataplane",
    "mesh": "default",
    "name": "web-1",
    "networking": {
        "address": "127.0.0.1",
        "inbound": [{"port": 20001, "servicePort": 8080, "tags": {"kuma.io/service": "web"}}],
    },
}


async def _sign(
    env: MeshEnv, ca: bytes, token: str, csr: bytes
) -> agent_pb2.SignCertificateResponse:
    assert env.cp is not None
    credentials = grpc.ssl_channel_credentials(root_certificates=ca)
    async with grpc.aio.secure_channel(f"127.0.0.1:{env.cp.dp_port}", credentials) as channel:
        stub = agent_pb2_grpc.AgentChannelStub(channel)  # type: ignore[no-untyped-call]
        request = agent_pb2.SignCertificateRequest(mesh="default", name="web-1", csr_pem=csr)
        return await stub.SignCertificate(request, metadata=(("authorization", token),), timeout=10)


def test_bad_csrs_and_tokens_are_refused_with_reasons(env: MeshEnv) -> None:
    cp = env.start_cp()
    enable_mtls(env)
    token = cp.token("web-1")
    # Register web-1 the way an agent does.
    body = {
        "mesh": "default",
        "name": "web-1",
        "dataplaneToken": token,
        "dataplaneResource": json.dumps(DATAPLANE),
    }
    assert httpx.post(cp.url + "/bootstrap", json=body, timeout=10).status_code == 200

    key = generate_key()
    ca = httpx.get(cp.url + "/certs/dp-server-ca.pem", timeout=5).content

    def refused(csr: bytes, tok: str) -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            asyncio.run(_sign(env, ca, tok, csr))
        return info.value

    foreign = refused(make_csr(key, "default", ["backend"]), token)
    assert foreign.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "may not claim spiffe://default/backend" in (foreign.details() or "")

    garbage = refused(b"-----BEGIN CERTIFICATE REQUEST-----\nnope\n", token)
    assert "csr:" in (garbage.details() or "")

    httpx.put(cp.url + "/meshes/other", json={"type": "Mesh", "name": "other"}, timeout=5)
    other = refused(make_csr(key, "default", ["web"]), cp.token("web-1", mesh="other"))
    assert other.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "token is for mesh" in (other.details() or "")

    # The CP is fine and signs the right request.
    signed = asyncio.run(_sign(env, ca, token, make_csr(key, "default", ["web"])))
    assert b"BEGIN CERTIFICATE" in signed.certificate_pem and signed.backend == "ca-1"
    log = cp.proc.output()
    assert "refused to sign a certificate for default.web-1" in log
    assert "Traceback" not in log
