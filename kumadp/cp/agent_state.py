"""The other consumer of a mesh state: what the agents' ``Watch`` streams get through the
hub (``kumadp.cp.agent_hub``): the mesh's name tables and each dataplane's identity. The
hub drops repeats, so publishing an unchanged state costs nothing on the wire."""

from __future__ import annotations

import hashlib
import logging

from kumadp.cp.agent_hub import AgentHub
from kumadp.cp.mesh_state import MeshState
from kumadp.cp.nametable import build_name_table
from kumadp.resources.model import Dataplane
from kumadp.wire import agent_pb2

log = logging.getLogger(__name__)


class AgentStatePublisher:
    def __init__(self, hub: AgentHub) -> None:
        self._hub = hub

    def publish(self, state: MeshState, only: str | None = None) -> None:
        """Name tables and identities of the mesh. ``only``: just that dataplane's identity
        (its stream opened; the rest is unchanged)."""
        mesh = state.mesh.name
        if state.vips is not None:
            if state.tables is None:
                state.tables = tuple(
                    build_name_table(state.vips, loopback=loopback) for loopback in (False, True)
                )
            for loopback, table in zip((False, True), state.tables, strict=True):
                self._hub.publish_names(mesh, loopback, table)
        if state.ca_pending:
            # mTLS is on and the CA is being created: announcing "mTLS off" meanwhile would
            # make agents drop their certificates. The CA's creation brings a new state.
            log.debug("mesh %s: no CA yet, identities wait for it", mesh)
            return
        for dataplane in state.all_dataplanes.values():
            if only is None or dataplane.name == only:
                self._hub.publish_identity(mesh, dataplane.name, identity(state, dataplane))


def identity(state: MeshState, dataplane: Dataplane) -> agent_pb2.MeshIdentity:
    """The ``MeshIdentity`` of ``dataplane``; ``generation`` changes exactly when something
    that goes into its certificate does."""
    services = sorted(set(dataplane.identity_services))
    enabled = state.mtls is not None and state.ca is not None
    backend = state.ca.backend if (enabled and state.ca) else ""
    fingerprint = state.ca.fingerprint if (enabled and state.ca) else ""
    generation = state.ca.generation if (enabled and state.ca) else ""
    tags = sorted({f"{k}={v}" for i in dataplane.networking.inbound for k, v in i.tags.items()})
    digest = hashlib.sha256(
        "|".join([str(enabled), backend, generation, *services, *tags]).encode()
    ).hexdigest()[:16]
    return agent_pb2.MeshIdentity(
        mtls_enabled=enabled,
        backend=backend,
        ca_fingerprint=fingerprint,
        services=services,
        generation=digest,
    )


__all__ = ["AgentStatePublisher", "identity"]
