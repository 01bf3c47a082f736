"""What a mesh starts with: the ``default`` mesh of a new control plane, and the policies
created with every new mesh (as Kuma does). Used by the API (mesh creation) and the runtime
(first start); domain code, it never imports the API."""

from __future__ import annotations

import logging

from kumadp.cp.store.base import ConflictError, Store
from kumadp.resources.initial_policies import initial_policies
from kumadp.resources.model import DEFAULT_MESH, MESH_TYPE, Mesh

log = logging.getLogger(__name__)


async def create_default_policies(store: Store, mesh: Mesh | str) -> None:
    """What Kuma creates with a new mesh (``kumadp.resources.initial_policies``): allow-all
    (MeshTrafficPermission), timeouts, a circuit breaker and retries for every service,
    less the types the mesh's ``skipCreatingInitialPolicies`` names. A policy whose name is
    taken already is left alone."""
    model = mesh if isinstance(mesh, Mesh) else Mesh(name=mesh)
    for policy in initial_policies(model.name, model.skip_creating_initial_policies):
        kind, name = policy.type, policy.name
        try:
            await store.put(kind, model.name, name, policy.to_dict(), 0)
        except ConflictError:
            continue
        log.info('created %s "%s" in mesh "%s"', kind, name, model.name)


async def ensure_default_mesh(store: Store) -> None:
    """Create the ``default`` mesh (with its default policies) unless it exists."""
    if await store.get(MESH_TYPE, "", DEFAULT_MESH) is None:
        await store.put(MESH_TYPE, "", DEFAULT_MESH, Mesh(name=DEFAULT_MESH).to_dict(), 0)
        log.info('created the "%s" mesh', DEFAULT_MESH)
        await create_default_policies(store, DEFAULT_MESH)  # as Kuma


__all__ = ["create_default_policies", "ensure_default_mesh"]
