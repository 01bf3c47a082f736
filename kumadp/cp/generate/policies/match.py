"""Which proxies a policy's top-level ``targetRef`` selects (Kuma 2.x), for every plug-in.

``Mesh``: everything; ``MeshService``: the inbounds of the named ``kuma.io/service``;
``MeshSubset``: the inbounds carrying every tag of the subset.
"""

from __future__ import annotations

from collections.abc import Mapping

from kumadp.resources.policies import MESH_SERVICE, MESH_SUBSET, TargetRef


def selects_inbound(ref: TargetRef, service: str, tags: Mapping[str, str]) -> bool:
    """Whether a top-level ``targetRef`` selects an inbound of ``service`` with ``tags``."""
    if ref.kind == MESH_SERVICE:
        return ref.name == service
    if ref.kind == MESH_SUBSET:
        return all(tags.get(key) == value for key, value in ref.tags.items())
    return True  # Mesh
