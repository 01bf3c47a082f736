"""The policies a new mesh starts with, as Kuma 2.x creates them: ``allow-all-<mesh>``
(MeshTrafficPermission), ``mesh-timeout-all-<mesh>``, ``mesh-circuit-breaker-all-<mesh>``
and ``mesh-retry-all-<mesh>``. The mesh's ``skipCreatingInitialPolicies`` (``["*"]``, or
policy types) leaves some or all of them out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from kumadp.resources.meshcircuitbreaker import (
    MESH_CIRCUIT_BREAKER_TYPE,
    default_mesh_circuit_breaker,
)
from kumadp.resources.meshretry import MESH_RETRY_TYPE, default_mesh_retry
from kumadp.resources.meshtimeout import MESH_TIMEOUT_TYPE, default_mesh_timeout
from kumadp.resources.policies import MESH_TRAFFIC_PERMISSION_TYPE, default_traffic_permission

SKIP_ALL = "*"


class InitialPolicy(Protocol):
    @property
    def type(self) -> str: ...

    @property
    def name(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


# type -> what builds its initial policy for a mesh, in creation order
_BUILDERS: dict[str, Callable[[str], InitialPolicy]] = {
    MESH_TRAFFIC_PERMISSION_TYPE: default_traffic_permission,
    MESH_TIMEOUT_TYPE: default_mesh_timeout,
    MESH_CIRCUIT_BREAKER_TYPE: default_mesh_circuit_breaker,
    MESH_RETRY_TYPE: default_mesh_retry,
}
INITIAL_POLICY_TYPES = tuple(_BUILDERS)


def initial_policies(mesh: str, skip: tuple[str, ...] = ()) -> list[InitialPolicy]:
    """The initial policies of ``mesh`` (models with ``type``, ``name`` and ``to_dict``),
    without the types in ``skip`` (``"*"``: none at all)."""
    if SKIP_ALL in skip:
        return []
    return [build(mesh) for kind, build in _BUILDERS.items() if kind not in skip]


__all__ = ["INITIAL_POLICY_TYPES", "SKIP_ALL", "InitialPolicy", "initial_policies"]
