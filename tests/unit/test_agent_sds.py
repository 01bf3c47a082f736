"""The agent's SDS server: a real grpc.aio server on a Unix socket, driven by a grpc.aio
client playing Envoy."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc

from kumadp.agent import certs
from kumadp.agent.sds import SdsServer
from kumadp.wire.names import identity_secret_name, mesh_ca_secret_name
from kumadp.xds.types import SECRET as SECRET_TYPE
from testkit.procs import until
from tests.unit.test_agent_certs import TestCa

DEADLINE = 10.0
ID = identity_secret_name("default")
CA = mesh_ca_secret_name("default")


async def read(call: Any) -> discovery_pb2.DiscoveryResponse:
    response = await asyncio.wait_for(call.read(), DEADLINE)
    assert response is not grpc.aio.EOF
    assert isinstance(response, discovery_pb2.DiscoveryResponse)
    return response


def request(
    names: list[str],
    *,
    version: str = "",
    nonce: str = "",
    error: str | None = None,
    node: str = "default.web-1",
) -> discovery_pb2.DiscoveryRequest:
    req = discovery_pb2.DiscoveryRequest(
        type_url=SECRET_TYPE, resource_names=names, version_info=version, response_nonce=nonce
    )
    req.node.id = node
    if error is not None:
        req.error_detail.code = 3
        req.error_detail.message = error
    return req


def secrets(response: discovery_pb2.DiscoveryResponse) -> dict[str, secret_pb2.Secret]:
    out = {}
    for packed in response.resources:
        secret = secret_pb2.Secret()
        assert packed.Unpack(secret)
        out[secret.name] = secret
    return out


class Identity:
    """A fresh key and certificate from the test CA, as the rotation would make them."""

    def __init__(self, ca: TestCa, service: str = "web") -> None:
        key = certs.generate_key()
        self.key_pem = certs.key_pem(key)
        self.cert_pem = ca.issue(key.public_key(), uris=[f"spiffe://{ca.mesh}/{service}"])
        self.ca_pem = ca.pem

    def install(self, sds: SdsServer, mesh: str = "default") -> None:
        sds.set_identity(mesh, self.cert_pem, self.key_pem, self.ca_pem)


@pytest.fixture
def ca() -> TestCa:
    return TestCa("default")


@contextlib.asynccontextmanager
async def running(path: Path) -> AsyncIterator[SdsServer]:
    server = SdsServer(path)
    stop = asyncio.Event()
    task = asyncio.create_task(server.run(stop))
    try:
        await asyncio.wait_for(server.started.wait(), DEADLINE)
        yield server
    finally:
        stop.set()
        await asyncio.wait_for(task, DEADLINE)


@contextlib.asynccontextmanager
async def client(path: Path) -> AsyncIterator[sds_pb2_grpc.SecretDiscoveryServiceStub]:
    async with grpc.aio.insecure_channel(f"unix:{path}") as channel:
        yield sds_pb2_grpc.SecretDiscoveryServiceStub(channel)


def file_mode(path: Path) -> int | None:
    try:
        return path.lstat().st_mode
    except FileNotFoundError:
        return None


def write(path: Path, text: str) -> None:
    path.write_text(text)


def read_text(path: Path) -> str:
    return path.read_text()


@pytest.fixture
def sock(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "sds.sock"


async def test_socket_is_0600_stale_one_replaced_and_removed_on_stop(sock: Path) -> None:
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock))  # left behind by a killed agent
    stale.close()
    async with running(sock):
        mode = file_mode(sock)
        assert mode is not None and stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o600
    assert file_mode(sock) is None


async def test_refuses_to_remove_a_file_that_is_not_a_socket(sock: Path) -> None:
    write(sock, "important")
    with pytest.raises(OSError, match="exists and is not a socket"):
        await SdsServer(sock).run(asyncio.Event())
    assert read_text(sock) == "important"


async def test_waits_for_an_identity_then_pushes_ack_and_rotation(sock: Path, ca: TestCa) -> None:
    async with running(sock) as sds, client(sock) as stub:
        call = stub.StreamSecrets()
        await call.write(request([ID, CA]))
        # Envoy asked before any identity exists: nothing is sent, the stream just waits
        await until(lambda: sds.subscribed_names == {ID, CA}, "the request")
        assert sds.pushes == 0 and sds.open_streams == 1

        first = Identity(ca)
        first.install(sds)
        response = await read(call)
        assert response.type_url == SECRET_TYPE and response.version_info and response.nonce
        got = secrets(response)
        assert set(got) == {ID, CA}
        assert got[ID].tls_certificate.certificate_chain.inline_bytes == first.cert_pem
        assert got[ID].tls_certificate.private_key.inline_bytes == first.key_pem
        assert got[CA].validation_context.trusted_ca.inline_bytes == ca.pem
        assert sds.pushes == 1

        # ACK; the same content again is no news
        await call.write(request([ID, CA], version=response.version_info, nonce=response.nonce))
        await until(lambda: sds.acks == 1, "the ACK")
        first.install(sds)
        assert sds.pushes == 1

        # a rotation is pushed at once, with a new version and nonce
        second = Identity(ca)
        second.install(sds)
        pushed = await read(call)
        assert pushed.version_info != response.version_info and pushed.nonce != response.nonce
        assert secrets(pushed)[ID].tls_certificate.certificate_chain.inline_bytes == (
            second.cert_pem
        )
        await call.write(request([ID, CA], version=pushed.version_info, nonce=pushed.nonce))
        await until(lambda: sds.acks == 2, "the second ACK")
        assert sds.nacks == 0 and sds.pushes == 2
        await call.done_writing()
        assert await asyncio.wait_for(call.read(), DEADLINE) == grpc.aio.EOF
        await until(lambda: sds.open_streams == 0, "the stream closed")


async def test_pushes_to_every_open_stream(sock: Path, ca: TestCa) -> None:
    async with running(sock) as sds, client(sock) as stub:
        Identity(ca).install(sds)
        calls = [stub.StreamSecrets() for _ in range(3)]
        for call in calls:
            await call.write(request([ID]))
        firsts = [await read(call) for call in calls]
        for call, first in zip(calls, firsts, strict=True):
            await call.write(request([ID], version=first.version_info, nonce=first.nonce))
        await until(lambda: sds.acks == 3, "three ACKs")
        new = Identity(ca)
        new.install(sds)
        for call in calls:
            pushed = await read(call)
            assert secrets(pushed)[ID].tls_certificate.certificate_chain.inline_bytes == (
                new.cert_pem
            )
        assert sds.pushes == 6
        for call in calls:
            call.cancel()


async def test_nack_is_counted_and_not_resent(
    sock: Path, ca: TestCa, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(sock) as sds, client(sock) as stub:
        good = Identity(ca)
        good.install(sds)
        call = stub.StreamSecrets()
        await call.write(request([ID, CA]))
        first = await read(call)
        await call.write(request([ID, CA], version=first.version_info, nonce=first.nonce))
        await until(lambda: sds.acks == 1, "the ACK")

        bad = Identity(ca)
        bad.key_pem = certs.key_pem(certs.generate_key())  # does not match the certificate
        bad.install(sds)
        rejected = await read(call)
        await call.write(
            request(
                [ID, CA],
                version=first.version_info,  # Envoy keeps the last good version
                nonce=rejected.nonce,
                error="Failed to load certificate chain: key values mismatch",
            )
        )
        await until(lambda: sds.nacks == 1, "the NACK")
        assert sds.last_nack == "Failed to load certificate chain: key values mismatch"
        assert "key values mismatch" in caplog.text
        bad.install(sds)  # the same content again: not re-sent
        assert sds.pushes == 2

        fixed = Identity(ca)
        fixed.install(sds)
        resent = await read(call)
        assert secrets(resent)[ID].tls_certificate.private_key.inline_bytes == fixed.key_pem
        assert sds.pushes == 3 and sds.acks == 1
        call.cancel()


async def test_resource_names_filter_and_grow(sock: Path, ca: TestCa) -> None:
    other_ca = TestCa("payments")
    async with running(sock) as sds, client(sock) as stub:
        Identity(ca).install(sds)
        call = stub.StreamSecrets()
        await call.write(request([CA]))
        first = await read(call)
        assert set(secrets(first)) == {CA}

        # Envoy adds a name on the same stream (with its ACK): both are sent
        await call.write(request([CA, ID], version=first.version_info, nonce=first.nonce))
        both = await read(call)
        assert set(secrets(both)) == {CA, ID}
        assert both.version_info != first.version_info

        # another mesh's secrets are not sent to a stream that did not ask for them
        await call.write(request([CA, ID], version=both.version_info, nonce=both.nonce))
        await until(lambda: sds.acks == 2, "the ACK of both")
        Identity(other_ca, "db").install(sds, "payments")
        other = stub.StreamSecrets()
        await other.write(request([identity_secret_name("payments")]))
        got = secrets(await read(other))
        assert list(got) == ["identity_cert:secret:payments"]
        chain = got["identity_cert:secret:payments"].tls_certificate.certificate_chain
        uris = certs.cert_info(chain.inline_bytes).uris
        assert uris == ("spiffe://payments/db",)
        assert sds.pushes == 3  # the first stream got nothing new

        # a name nobody has yet: the stream waits, and gets it when it exists
        third = stub.StreamSecrets()
        await third.write(request([identity_secret_name("billing")]))
        await until(lambda: "identity_cert:secret:billing" in sds.subscribed_names, "request")
        assert sds.pushes == 3
        Identity(TestCa("billing")).install(sds, "billing")
        assert list(secrets(await read(third))) == ["identity_cert:secret:billing"]
        for c in (call, other, third):
            c.cancel()


async def test_stale_nonce_is_ignored(sock: Path, ca: TestCa) -> None:
    async with running(sock) as sds, client(sock) as stub:
        Identity(ca).install(sds)
        call = stub.StreamSecrets()
        await call.write(request([ID]))
        first = await read(call)
        Identity(ca).install(sds)
        second = await read(call)
        # Envoy's ACK of the first response arrives after the second was sent: ignored
        await call.write(request([ID], version=first.version_info, nonce=first.nonce))
        await call.write(request([ID], version=second.version_info, nonce=second.nonce))
        await until(lambda: sds.acks == 1, "the ACK of the latest")
        assert sds.acks == 1 and sds.nacks == 0 and sds.pushes == 2
        call.cancel()


async def test_fetch_and_delta(sock: Path, ca: TestCa) -> None:
    async with running(sock) as sds, client(sock) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.FetchSecrets(request([ID]), timeout=DEADLINE)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        Identity(ca).install(sds)
        response = await stub.FetchSecrets(request([CA]), timeout=DEADLINE)
        assert set(secrets(response)) == {CA} and response.version_info

        delta = stub.DeltaSecrets()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await asyncio.wait_for(delta.read(), DEADLINE)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED

        wrong = stub.StreamSecrets()
        await wrong.write(discovery_pb2.DiscoveryRequest(type_url="type.googleapis.com/x.Cluster"))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await asyncio.wait_for(wrong.read(), DEADLINE)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_stop_closes_open_streams(sock: Path, ca: TestCa) -> None:
    server = SdsServer(sock)
    stop = asyncio.Event()
    task = asyncio.create_task(server.run(stop))
    await asyncio.wait_for(server.started.wait(), DEADLINE)
    async with client(sock) as stub:
        call = stub.StreamSecrets()
        await call.write(request([ID]))
        await until(lambda: server.open_streams == 1, "the stream")
        stop.set()
        await asyncio.wait_for(task, DEADLINE)
        with pytest.raises(grpc.aio.AioRpcError):
            await asyncio.wait_for(call.read(), DEADLINE)
    assert file_mode(sock) is None and server.open_streams == 0


async def test_crls_go_into_the_validation_context_only_when_given(sock: Path, ca: TestCa) -> None:
    """Multi-zone: the CRLs of the root and of every zone's intermediate are checked by
    Envoy; without CRLs (standalone) no CRL check is configured at all."""
    async with running(sock) as sds, client(sock) as stub:
        call = stub.StreamSecrets()
        await call.write(request([ID, CA]))
        identity = Identity(ca)
        identity.install(sds)
        plain = secrets(await read(call))[CA].validation_context
        assert not plain.HasField("crl")
        await call.write(request([ID, CA], version="1", nonce="x"))
        sds.set_identity("default", identity.cert_pem, identity.key_pem, ca.pem, b"CRLS")
        checked = secrets(await read(call))[CA].validation_context
        assert checked.crl.inline_bytes == b"CRLS"
        assert checked.trusted_ca.inline_bytes == ca.pem
        await call.done_writing()
