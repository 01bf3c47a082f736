"""Envoy's Secret Discovery Service, served by the agent on a local Unix socket.

Envoy gets its mesh identity (certificate chain + private key) and the mesh CA from here,
so the private key exists only in the agent's memory and in the gRPC message on the socket
(mode 0600, in the work dir): never on disk, never on the network.

This module is the *source* of the secrets (what exists, set by the certificate manager)
and the socket; the protocol is the shared state-of-the-world server of ``kumadp.xds``,
configured for secrets: each response carries the requested secrets that exist, its version
is a digest of their content, so the same content is never re-sent (a NACKed version stays
NACKed until the content changes). An Envoy that asks before the agent has an identity
simply waits: its listener keeps warming (make-before-break) until ``set_identity`` pushes
to every open stream.

Secrets, with Kuma's names (``kumadp.wire.names``):
- ``identity_secret_name(mesh)``: ``tls_certificate{certificate_chain, private_key}``
- ``mesh_ca_secret_name(mesh)``: ``validation_context{trusted_ca}``
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

from kumadp.wire.names import identity_secret_name, mesh_ca_secret_name
from kumadp.xds import types
from kumadp.xds.cache import SnapshotCache
from kumadp.xds.grpc_adapter import add_sds_to_server
from kumadp.xds.server import NoopCallbacks, SotwOptions, SotwServer
from kumadp.xds.snapshot import Snapshot

log = logging.getLogger(__name__)

_MAX_UNIX_PATH = 107  # sun_path is 108 bytes with the terminating NUL

SDS = SotwOptions(
    type_urls=frozenset({types.SECRET}),
    require_node_id=False,
    version_per_selection=True,
    send_empty=False,
    wildcard_types=frozenset(),
)


class _Secrets:
    """The secrets every stream is served from, whatever its node: one snapshot, replaced
    (and every waiting stream woken) when a secret changes."""

    _KEY = ""

    def __init__(self) -> None:
        self._cache = SnapshotCache()
        self._by_name: dict[str, secret_pb2.Secret] = {}

    def update(self, secrets: list[secret_pb2.Secret]) -> bool:
        """Add or replace ``secrets``; whether anything changed."""
        changed = [s for s in secrets if self._by_name.get(s.name) != s]
        if not changed:
            return False
        self._by_name.update((s.name, s) for s in changed)
        self._cache.set_snapshot(self._KEY, Snapshot.build({types.SECRET: self._by_name.values()}))
        return True

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def get_snapshot(self, node_id: str) -> Snapshot | None:
        return self._cache.get_snapshot(self._KEY)

    async def next_snapshot(self, node_id: str, known: object | None) -> Snapshot:
        return await self._cache.next_snapshot(self._KEY, known)


class _Counters(NoopCallbacks):
    def __init__(self) -> None:
        self.pushes = 0  # responses sent
        self.acks = 0
        self.nacks = 0
        self.last_nack: str | None = None  # Envoy's error message of the last NACK

    async def on_stream_open(
        self, stream_id: int, node_id: str, node: base_pb2.Node, metadata: Mapping[str, str]
    ) -> None:
        log.debug("SDS stream %d opened by %s", stream_id, node_id or "an unnamed node")

    def on_ack(self, node_id: str, type_url: str, version: str) -> None:
        self.acks += 1

    def on_nack(self, node_id: str, type_url: str, version: str, error_detail: str) -> None:
        self.nacks += 1
        self.last_nack = error_detail

    def on_response_sent(self, node_id: str, type_url: str, version: str, nonce: str) -> None:
        self.pushes += 1


class SdsServer:
    """The SDS component: ``run(stop)`` serves ``unix:<socket_path>`` until ``stop``."""

    name = "sds-server"

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = Path(socket_path)
        self.started = asyncio.Event()
        self._secrets = _Secrets()
        self._counters = _Counters()
        self._server = SotwServer(self._secrets, self._counters, SDS)

    # -- counters, for metrics and insights ---------------------------------------------------
    @property
    def pushes(self) -> int:
        return self._counters.pushes

    @property
    def acks(self) -> int:
        return self._counters.acks

    @property
    def nacks(self) -> int:
        return self._counters.nacks

    @property
    def last_nack(self) -> str | None:
        return self._counters.last_nack

    @property
    def open_streams(self) -> int:
        return self._server.open_streams

    @property
    def subscribed_names(self) -> set[str]:
        """Every secret name some open stream asked for."""
        return self._server.subscribed_names(types.SECRET)

    # -- the source -------------------------------------------------------------------------
    def set_identity(
        self, mesh: str, cert_pem: bytes, key_pem: bytes, ca_pem: bytes, crl_pem: bytes = b""
    ) -> None:
        """Serve a new identity for ``mesh`` and push it to every open stream at once.
        ``crl_pem`` (multi-zone): peers are also checked against these CRLs."""
        identity = secret_pb2.Secret(name=identity_secret_name(mesh))
        identity.tls_certificate.certificate_chain.inline_bytes = cert_pem
        identity.tls_certificate.private_key.inline_bytes = key_pem
        ca = secret_pb2.Secret(name=mesh_ca_secret_name(mesh))
        ca.validation_context.trusted_ca.inline_bytes = ca_pem
        if crl_pem:
            ca.validation_context.crl.inline_bytes = crl_pem
        if self._secrets.update([identity, ca]):
            log.info(
                "SDS: new identity for mesh %s; pushing to %d stream(s)", mesh, self.open_streams
            )

    def has_identity(self, mesh: str) -> bool:
        return identity_secret_name(mesh) in self._secrets

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
        add_sds_to_server(server, self._server)
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


def _remove_stale_socket(path: Path) -> None:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(f"SDS socket path {path} exists and is not a socket; not removing it")
    log.info("removing stale SDS socket %s", path)
    path.unlink()
