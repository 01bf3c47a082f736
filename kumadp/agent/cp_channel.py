"""The agent's channel to the control plane's DP server (gRPC ``AgentChannel``).

Only ``Leave`` for now: on a graceful shutdown the agent tells the CP to take its dataplane
out of every other sidecar's endpoints at once. It is best effort: the CP notices the
dropped ADS stream anyway, so a failure is logged, never raised.

The DP server's address is the one Envoy uses for ADS: the ``ads_cluster`` of the bootstrap.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import yaml

from kumadp.resources.safe_load import load_yaml
from kumadp.wire.names import AUTHORIZATION_METADATA

log = logging.getLogger(__name__)

ADS_CLUSTER = "ads_cluster"


@dataclass(frozen=True)
class DpServer:
    address: str  # "host:port" of the first DP server
    root_ca: bytes | None = None  # set when the bootstrap's ads_cluster uses TLS
    tls: bool = False
    sni: str | None = None
    # every DP server the bootstrap lists (several CP instances): tried in turn on failure
    others: tuple[str, ...] = ()

    @property
    def addresses(self) -> tuple[str, ...]:
        return (self.address, *self.others)


def dp_server_from_bootstrap(bootstrap_yaml: bytes) -> DpServer | None:
    """Where and how to reach the CP's DP servers, read from the bootstrap's
    ``ads_cluster`` (every endpoint it lists); None when there is no such cluster."""
    try:
        doc = load_yaml(bootstrap_yaml)
        clusters = doc["static_resources"]["clusters"]
        cluster = next(c for c in clusters if c.get("name") == ADS_CLUSTER)
        addresses: list[str] = []
        for group in cluster["load_assignment"]["endpoints"]:
            for endpoint in group["lb_endpoints"]:
                socket = endpoint["endpoint"]["address"]["socket_address"]
                host, port = str(socket["address"]), int(socket["port_value"])
                address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                if address not in addresses:
                    addresses.append(address)
        first, others = addresses[0], tuple(addresses[1:])
    except (yaml.YAMLError, KeyError, IndexError, TypeError, ValueError, StopIteration):
        return None
    transport = cluster.get("transport_socket")
    if not isinstance(transport, dict):
        return DpServer(first, others=others)
    tls = transport.get("typed_config") or {}
    sni = tls.get("sni") if isinstance(tls, dict) else None
    return DpServer(first, root_ca=_trusted_ca(tls), tls=True, sni=sni, others=others)


def ads_address_from_bootstrap(bootstrap_yaml: bytes) -> str | None:
    server = dp_server_from_bootstrap(bootstrap_yaml)
    return server.address if server else None


def _trusted_ca(tls: Any) -> bytes | None:
    try:
        source = tls["common_tls_context"]["validation_context"]["trusted_ca"]
    except (KeyError, TypeError):
        return None
    if not isinstance(source, dict):
        return None
    if "inline_string" in source:
        return str(source["inline_string"]).encode()
    if "inline_bytes" in source:
        try:
            return base64.b64decode(source["inline_bytes"])
        except (binascii.Error, TypeError, ValueError):
            return None
    if "filename" in source:
        try:
            with open(source["filename"], "rb") as f:
                return f.read()
        except OSError:
            return None
    return None


async def leave(
    server: DpServer | str,
    mesh: str,
    name: str,
    reason: str,
    *,
    token: str | None = None,
    timeout: float = 2.0,  # noqa: ASYNC109 (the RPC's deadline, passed to gRPC)
) -> bool:
    """Tell the CP this dataplane is leaving (each DP server in turn until one answers).
    True if the CP removed it; False if the CP did not know it or could not be reached
    (logged, never raised)."""
    if isinstance(server, str):
        server = DpServer(server)
    for address in server.addresses:
        outcome = await _leave_one(
            dataclasses.replace(server, address=address, others=()),
            mesh,
            name,
            reason,
            token=token,
            timeout=timeout,
        )
        if outcome is not None:
            return outcome
    return False


async def _leave_one(
    server: DpServer,
    mesh: str,
    name: str,
    reason: str,
    *,
    token: str | None,
    timeout: float,  # noqa: ASYNC109 (the RPC's deadline, passed to gRPC)
) -> bool | None:
    """``Leave`` on one DP server; None when it could not be reached."""
    # gRPC is imported here, not at start: it is only needed on the way out, and importing
    # it costs ~30 ms of the agent's startup.
    import grpc

    from kumadp.wire import agent_pb2, agent_pb2_grpc

    metadata = ((AUTHORIZATION_METADATA, token),) if token else None
    try:
        if server.tls:
            options = [("grpc.ssl_target_name_override", server.sni)] if server.sni else None
            credentials = grpc.ssl_channel_credentials(root_certificates=server.root_ca)
            channel = grpc.aio.secure_channel(server.address, credentials, options=options)
        else:
            channel = grpc.aio.insecure_channel(server.address)
        async with channel:
            stub = agent_pb2_grpc.AgentChannelStub(channel)  # type: ignore[no-untyped-call]
            request = agent_pb2.LeaveRequest(mesh=mesh, name=name, reason=reason)
            response = await stub.Leave(request, timeout=timeout, metadata=metadata)
    except grpc.aio.AioRpcError as exc:
        log.warning(
            "could not tell the control plane at %s that %s.%s is leaving (%s: %s); "
            "it will notice the closed stream",
            server.address,
            mesh,
            name,
            exc.code().name,
            exc.details(),
        )
        return None if exc.code() == grpc.StatusCode.UNAVAILABLE else False
    except Exception as exc:
        log.warning(
            "could not tell the control plane at %s that %s.%s is leaving: %s",
            server.address,
            mesh,
            name,
            exc,
        )
        return None
    log.info("control plane acknowledged leave of %s.%s (removed=%s)", mesh, name, response.removed)
    return bool(response.removed)
