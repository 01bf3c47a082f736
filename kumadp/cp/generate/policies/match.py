"""Which proxies a policy's top-level ``targetRef`` selects (Kuma 2.x), for every plug-in.

``Mesh``: everything; ``MeshService``: the inbounds of the named ``kuma.io/service``;
``MeshSubset``: the inbounds carrying every tag of the subset.
"""

from __future__ import annotations

from collections.abc import Mapping

from kumadp.resources.model import Dataplane, Inbound
from kumadp.resources.policies import MESH_SERVICE, MESH_SUBSET, TargetRef
from kumadp.resources.targetref import DATAPLANE, MESH, MESH_SERVICE_SUBSET, tags_match


def selects_inbound(ref: TargetRef, service: str, tags: Mapping[str, str]) -> bool:
    """Whether a top-level ``targetRef`` selects an inbound of ``service`` with ``tags``."""
    if ref.kind == MESH_SERVICE:
        return ref.name == service
    if ref.kind == MESH_SUBSET:
        return all(tags.get(key) == value for key, value in ref.tags.items())
    return True  # Mesh


# --- every top-level kind (the resilience policies; see kumadp.resources.targetref) ---------


def selects_dataplane_inbound(ref: TargetRef, dataplane: Dataplane, inbound: Inbound) -> bool:
    """Whether a top-level ``targetRef`` of any kind selects this inbound of ``dataplane``."""
    if ref.kind == DATAPLANE:
        return selects_dataplane(ref, dataplane)
    if ref.kind == MESH_SERVICE_SUBSET:
        return ref.name == inbound.service and tags_match(ref.tags, inbound.tags)
    return selects_inbound(ref, inbound.service, inbound.tags)


def selects_dataplane(ref: TargetRef, dataplane: Dataplane) -> bool:
    """Whether a top-level ``targetRef`` selects the proxy: ``Dataplane`` by name or labels,
    the others when they select at least one of its inbounds (its outbound traffic is then
    theirs, as in Kuma)."""
    if ref.kind == MESH:
        return True
    if ref.kind == DATAPLANE:
        if ref.name is not None:
            return ref.name == dataplane.name
        return tags_match(ref.labels, dataplane.labels)
    return any(
        selects_dataplane_inbound(ref, dataplane, inbound)
        for inbound in dataplane.networking.inbound
    )
