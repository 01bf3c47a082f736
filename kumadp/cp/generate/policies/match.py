"""Which proxies and inbounds a policy's top-level ``targetRef`` selects (Kuma 2.x), for every
plug-in.

- ``Mesh``: every inbound (of proxies of its ``proxyTypes``, when given: kumadp's proxies are
  all ``Sidecar``s);
- ``MeshSubset``: the inbounds carrying every tag of the subset (same ``proxyTypes`` rule);
- ``MeshService``: the inbounds of the named ``kuma.io/service``;
- ``MeshServiceSubset``: those of them that also carry every tag of the subset;
- ``Dataplane``: every inbound of the dataplane named ``name``, of the dataplanes carrying
  every one of ``labels``, or of every dataplane; ``sectionName`` keeps only the inbound of
  that name (an inbound without a name answers to its port).

Inbound policies (MeshTrafficPermission, the resilience policies' ``from``) use
``selects``/``selected_inbounds``; policies that configure the proxy as a whole (its outbounds)
use ``selects_proxy``: a proxy is selected when at least one of its inbounds is (its outbound
traffic is then theirs, as in Kuma), or as a whole by ``Mesh``/``Dataplane``.
"""

from __future__ import annotations

from collections.abc import Mapping

from kumadp.resources.model import SERVICE_TAG, Dataplane, Inbound
from kumadp.resources.targetref import (
    DATAPLANE,
    MESH,
    MESH_SERVICE,
    MESH_SERVICE_SUBSET,
    MESH_SUBSET,
    SIDECAR,
    TargetRef,
    tags_match,
)


def _has_tags(tags: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    return tags_match(wanted, tags)


def _sidecar(ref: TargetRef) -> bool:
    return not ref.proxy_types or SIDECAR in ref.proxy_types


def selects_proxy(ref: TargetRef, dataplane: Dataplane) -> bool:
    """Whether a top-level ``targetRef`` applies to ``dataplane`` at all (to at least one of
    its inbounds, or to it as a whole for ``Mesh``/``Dataplane``)."""
    if ref.kind == MESH:
        return _sidecar(ref)
    if ref.kind == DATAPLANE and ref.section_name is None:
        return _selects_dataplane(ref, dataplane)
    return bool(selected_inbounds(ref, dataplane))


def _selects_dataplane(ref: TargetRef, dataplane: Dataplane) -> bool:
    if ref.name is not None:
        return dataplane.name == ref.name
    if ref.labels:
        return _has_tags(dataplane.labels, ref.labels)
    return True


def selects(ref: TargetRef, dataplane: Dataplane, inbound: Inbound) -> bool:
    """Whether a top-level ``targetRef`` selects ``inbound`` of ``dataplane``."""
    if ref.kind == DATAPLANE:
        if not _selects_dataplane(ref, dataplane):
            return False
        return ref.section_name is None or inbound.section_name == ref.section_name
    if ref.kind in (MESH, MESH_SUBSET) and not _sidecar(ref):
        return False
    return selects_inbound(ref, inbound.service, inbound.tags)


def selected_inbounds(ref: TargetRef, dataplane: Dataplane) -> list[Inbound]:
    """The inbounds of ``dataplane`` a top-level ``targetRef`` selects, in order."""
    return [i for i in dataplane.networking.inbound if selects(ref, dataplane, i)]


def selects_inbound(ref: TargetRef, service: str, tags: Mapping[str, str]) -> bool:
    """Whether a top-level ``targetRef`` of a tag-based kind (every kind but ``Dataplane``,
    which needs the dataplane: ``selects``) selects an inbound of ``service`` with ``tags``."""
    if ref.kind == MESH_SERVICE:
        return ref.name == service
    if ref.kind == MESH_SERVICE_SUBSET:
        return ref.name == service and _has_tags(tags, ref.tags)
    if ref.kind == MESH_SUBSET:
        return _has_tags(tags, ref.tags)
    if ref.kind == MESH:
        return True
    return False


def caller_tags(ref: TargetRef) -> dict[str, str]:
    """The tags a ``from`` targetRef asks of a caller (its ``kuma.io/service`` included for
    the service kinds): what its certificate's ``kuma://`` SANs must show."""
    tags = dict(ref.tags)
    if ref.kind in (MESH_SERVICE, MESH_SERVICE_SUBSET) and ref.name is not None:
        tags[SERVICE_TAG] = ref.name
    return tags


__all__ = ["caller_tags", "selected_inbounds", "selects", "selects_inbound", "selects_proxy"]
