"""Envoy's Secret Discovery Service, served by the agent on a local Unix socket.

Envoy gets its mesh identity (certificate chain + private key) and the mesh CA from here,
so the private key exists only in the agent's memory and in the gRPC message on the socket
(mode 0600, in the work dir): never on disk, never on the network.

Protocol: state-of-the-world xDS, like ADS. Each stream remembers the secret names Envoy
asked for, the nonce and version it was last sent, and what Envoy ACKed. A response carries
the requested secrets that exist; its version is a digest of their content, so the same
content is never re-sent (a NACKed version stays NACKed until the content changes). An
Envoy that asks before the agent has an identity simply waits: its listener keeps warming
(make-before-break) until ``set_identity`` pushes to every open stream.

Secrets, with Kuma's names:
- ``identity_cert:secret:<mesh>``: ``tls_certificate{certificate_chain, private_key}``
- ``mesh_ca:secret:<mesh>``: ``validation_context{trusted_ca}``
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import os
import stat
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias, cast

import grpc
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc
from google.protobuf import any_pb2

log = logging.getLogger(__name__)

SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
_MAX_UNIX_PATH = 107  # sun_path is 108 bytes with the terminating NUL

Request: TypeAlias = discovery_pb2.DiscoveryRequest
Response: TypeAlias = discovery_pb2.DiscoveryResponse


def identity_secret_name(mesh: str) -> str:
    return f"identity_cert:secret:{mesh}"


def ca_secret_name(mesh: str) -> str:
    return f"mesh_ca:secret:{mesh}"


_PUSH = object()  # queued to a stream when the secrets changed
_EOF = object()  # queued when Envoy closed its side


@dataclass(eq=False)
class _Stream:
    id: int
    peer: str
    events: asyncio.Queue[object] = field(default_factory=asyncio.Queue)
    node_id: str = ""
    names: tuple[str, ...] = ()
    subscribed: bool = False  # a first request has arrived
    nonce: str = ""  # nonce of the last response sent
    sent: tuple[str, tuple[str, ...]] | None = None  # (version, names) last sent
    acked_version: str = ""


class SdsServer:
    """The SDS component: ``run(stop)`` serves ``unix:<socket_path>`` until ``stop``."""

    name = "sds-server"

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = Path(socket_path)
        self.started = asyncio.Event()
        # counters, for metrics and insights
        self.pushes = 0  # responses sent
        self.acks = 0
        self.nacks = 0
        self.last_nack: str | None = None  # Envoy's error message of the last NACK
        self._secrets: dict[str, secret_pb2.Secret] = {}
        self._streams: set[_Stream] = set()
        self._ids = itertools.count(1)
        self._nonces = itertools.count(1)

    # -- state ----------------------------------------------------------------------------
    @property
    def open_streams(self) -> int:
        return len(self._streams)

    @property
    def subscribed_names(self) -> set[str]:
        """Every secret name some open stream asked for."""
        return {name for stream in self._streams for name in stream.names}

    def set_identity(self, mesh: str, cert_pem: bytes, key_pem: bytes, ca_pem: bytes) -> None:
        """Serve a new identity for ``mesh`` and push it to every open stream at once."""
        identity = secret_pb2.Secret(name=identity_secret_name(mesh))
        identity.tls_certificate.certificate_chain.inline_bytes = cert_pem
        identity.tls_certificate.private_key.inline_bytes = key_pem
        ca = secret_pb2.Secret(name=ca_secret_name(mesh))
        ca.validation_context.trusted_ca.inline_bytes = ca_pem
        changed = False
        for secret in (identity, ca):
            if self._secrets.get(secret.name) != secret:
                self._secrets[secret.name] = secret
                changed = True
        if changed:
            log.info(
                "SDS: new identity for mesh %s; pushing to %d stream(s)", mesh, self.open_streams
            )
            for stream in self._streams:
                stream.events.put_nowait(_PUSH)

    def has_identity(self, mesh: str) -> bool:
        return identity_secret_name(mesh) in self._secrets

    def _select(self, names: Iterable[str]) -> list[secret_pb2.Secret]:
        """The requested secrets that exist, by name (no names: all of them)."""
        wanted = sorted(set(names)) or sorted(self._secrets)
        return [self._secrets[name] for name in wanted if name in self._secrets]

    @staticmethod
    def _version(secrets: list[secret_pb2.Secret]) -> str:
        digest = hashlib.sha256()
        for secret in secrets:
            digest.update(secret.SerializeToString(deterministic=True))
        return digest.hexdigest()[:16]

    def _response(self, secrets: list[secret_pb2.Secret], version: str) -> Response:
        response = Response(
            version_info=version, type_url=SECRET_TYPE, nonce=str(next(self._nonces))
        )
        for secret in secrets:
            packed = any_pb2.Any()
            packed.Pack(secret, deterministic=True)
            response.resources.append(packed)
        return response

    # -- the component ----------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        path = self.socket_path
        if len(os.fsencode(path)) > _MAX_UNIX_PATH:
            raise OSError(
                f"SDS socket path {path} is longer than {_MAX_UNIX_PATH} bytes; "
                "use a shorter work dir"
            )
        _remove_stale_socket(path)
        server = grpc.aio.server()
        sds_pb2_grpc.add_SecretDiscoveryServiceServicer_to_server(_Servicer(self), server)
        old_umask = os.umask(0o177)  # the socket is born 0600: no window for other users
        try:
            bound = server.add_insecure_port(f"unix:{path}")
        except RuntimeError as exc:
            raise OSError(f"SDS server cannot listen on unix:{path}: {exc}") from exc
        finally:
            os.umask(old_umask)
        if not bound:
            raise OSError(f"SDS server cannot listen on unix:{path}")
        try:
            os.chmod(path, 0o600)
            await server.start()
            self.started.set()
            log.info("SDS server listening on unix:%s", path)
            await stop.wait()
        finally:
            self.started.clear()
            await server.stop(grace=None)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    # -- streams ----------------------------------------------------------------------------
    async def stream(
        self,
        requests: AsyncIterator[Request],
        context: grpc.aio.ServicerContext[Request, Response],
    ) -> None:
        stream = _Stream(id=next(self._ids), peer=context.peer())
        self._streams.add(stream)
        reader = asyncio.create_task(_read(requests, stream.events))
        try:
            while (event := await stream.events.get()) is not _EOF:
                if event is not _PUSH:
                    request = cast(Request, event)
                    if request.type_url and request.type_url != SECRET_TYPE:
                        await context.abort(
                            grpc.StatusCode.INVALID_ARGUMENT,
                            f"this server only serves {SECRET_TYPE}, not {request.type_url}",
                        )
                    self._on_request(stream, request)
                if stream.subscribed:
                    await self._maybe_send(stream, context)
        finally:
            self._streams.discard(stream)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            log.debug("SDS stream %d (%s) closed", stream.id, stream.node_id)

    def _on_request(self, stream: _Stream, request: Request) -> None:
        if request.node.id:
            stream.node_id = request.node.id
        if request.response_nonce:
            if request.response_nonce != stream.nonce:
                log.debug(
                    "SDS stream %d: stale nonce %s ignored", stream.id, request.response_nonce
                )
                return
            if request.HasField("error_detail"):
                self.nacks += 1
                self.last_nack = request.error_detail.message
                log.warning(
                    "Envoy %s rejected secrets %s (version %s): %s",
                    stream.node_id or stream.peer,
                    ", ".join(stream.names) or "(all)",
                    stream.sent[0] if stream.sent else "",
                    request.error_detail.message,
                )
            else:
                self.acks += 1
                stream.acked_version = request.version_info
                log.debug("SDS stream %d ACKed version %s", stream.id, request.version_info)
        elif not stream.subscribed:
            log.debug(
                "SDS stream %d from %s asks for %s",
                stream.id,
                request.node.id or stream.peer,
                list(request.resource_names),
            )
        stream.names = tuple(request.resource_names)
        stream.subscribed = True

    async def _maybe_send(
        self, stream: _Stream, context: grpc.aio.ServicerContext[Request, Response]
    ) -> None:
        secrets = self._select(stream.names)
        if not secrets:
            return  # nothing to give yet: Envoy waits (its listener keeps warming)
        key = (self._version(secrets), tuple(s.name for s in secrets))
        if key == stream.sent:
            return  # the same content: never re-send (not even after a NACK)
        response = self._response(secrets, key[0])
        await context.write(response)
        stream.sent, stream.nonce = key, response.nonce
        self.pushes += 1
        log.debug("SDS stream %d: sent %s version %s", stream.id, key[1], key[0])

    async def fetch(
        self, request: Request, context: grpc.aio.ServicerContext[Request, Response]
    ) -> Response:
        secrets = self._select(request.resource_names)
        if not secrets:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "no such secret yet")
        return self._response(secrets, self._version(secrets))


async def _read(requests: AsyncIterator[Request], events: asyncio.Queue[object]) -> None:
    try:
        async for request in requests:
            events.put_nowait(request)
    except (grpc.aio.AioRpcError, grpc.RpcError):
        pass
    finally:
        events.put_nowait(_EOF)


def _remove_stale_socket(path: Path) -> None:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(f"SDS socket path {path} exists and is not a socket; not removing it")
    log.info("removing stale SDS socket %s", path)
    path.unlink()


class _Servicer(sds_pb2_grpc.SecretDiscoveryServiceServicer):  # type: ignore[misc]
    def __init__(self, sds: SdsServer) -> None:
        self._sds = sds

    async def StreamSecrets(
        self,
        request_iterator: AsyncIterator[Request],
        context: grpc.aio.ServicerContext[Request, Response],
    ) -> None:
        await self._sds.stream(request_iterator, context)

    async def FetchSecrets(
        self, request: Request, context: grpc.aio.ServicerContext[Request, Response]
    ) -> Response:
        return await self._sds.fetch(request, context)

    async def DeltaSecrets(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest],
        context: grpc.aio.ServicerContext[
            discovery_pb2.DeltaDiscoveryRequest, discovery_pb2.DeltaDiscoveryResponse
        ],
    ) -> None:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED, "only state-of-the-world SDS (StreamSecrets) is served"
        )
