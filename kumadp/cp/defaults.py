"""What a mesh starts with: the ``default`` mesh of a new control plane, and the policies
created with every new mesh (as Kuma does). Used by the API (mesh creation) and the runtime
(first start); domain code, it never imports the API."""

from __future__ import annotations

import logging

from kumadp.cp.store.base import ConflictError, Store
from kumadp.resources import default_traffic_permission
from kumadp.resources.model import DEFAULT_MESH, MESH_TYPE, Mesh

log = logging.getLogger(__name__)


async def create_default_policies(store: Store, mesh: str, model: Mesh | None = None) -> None:
    """What Kuma creates with a new mesh: a MeshTrafficPermission ``allow-all-<mesh>``, so
    that a mesh made by the CP lets every service call every other. Left alone if a
    policy of that name already exists, or when the mesh's ``skipCreatingInitialPolicies``
    names its type (or ``*``)."""
    policy = default_traffic_permission(mesh)
    if model is not None and model.skips_initial_policy(policy.type):
        log.info('mesh "%s" skips creating its initial %s', mesh, policy.type)
        return
    try:
        await store.put(policy.type, mesh, policy.name, policy.to_dict(), 0)
    except ConflictError:
        return
    log.info('created MeshTrafficPermission "%s" in mesh "%s"', policy.name, mesh)


async def ensure_default_mesh(store: Store) -> None:
    """Create the ``default`` mesh (with its default policies) unless it exists."""
    if await store.get(MESH_TYPE, "", DEFAULT_MESH) is None:
        await store.put(MESH_TYPE, "", DEFAULT_MESH, Mesh(name=DEFAULT_MESH).to_dict(), 0)
        log.info('created the "%s" mesh', DEFAULT_MESH)
        await create_default_policies(store, DEFAULT_MESH)  # allow-all, as Kuma


__all__ = ["create_default_policies", "ensure_default_mesh"]
